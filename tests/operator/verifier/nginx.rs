//! A real NGINX running the `server` block of docs/forward-auth.md as written (only its listen port,
//! the two addresses and the CA file replaced: `nginx_gateway.rs`) in front of a backend that
//! records every request it gets, asking this process's verifier over HTTPS with a certificate
//! made as the chart's operator makes it. Clients forge every identity header; the backend must
//! see the verifier's values only. A gateway trusting another CA refuses the verifier. Needs `nginx` with the auth_request module (Debian's `nginx`): without
//! it the test skips with a note, unless `APIKEY_NGINX_REQUIRED=1` (set by `.ci/run`, which
//! installs it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, RwLock};

use apikey_operator::api::{ApiKey, ApiToken};
use apikey_operator::clock::SystemClock;
use apikey_operator::serve::{TlsSource, serve};
use apikey_operator::token::{TokenId, TokenKind, generate};
use apikey_operator::verifier::HeaderNames;
use apikey_operator::verifier::http::{AppState, router};
use apikey_operator::verifier::index::Index;
use apikey_operator::verifier::last_used::UsageRecorder;
use apikey_operator::verifier::metrics::Metrics;
use apikey_operator::verifier::watch::Readiness;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::json;

use super::gateway_docs::identity_headers;
use super::nginx_gateway::{nginx_binary, start_gateway, verifier_cert};
use crate::support::DEADLINE;

/// Header names and values, in order, duplicates kept.
type Headers = Vec<(String, String)>;

const ID: &str = "nginxnginxnginx0";
/// A token valid for the audience `other` only; the doc's route requires `billing`.
const OTHER_AUDIENCE_ID: &str = "nginxnginxnginx1";

/// The backend: records the headers of every request, answers 200.
#[derive(Clone, Default)]
struct Backend(Arc<Mutex<Vec<HeaderMap>>>);

impl Backend {
    fn received(&self) -> Vec<HeaderMap> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

async fn record(State(backend): State<Backend>, headers: HeaderMap) -> &'static str {
    backend
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(headers);
    "backend\n"
}

/// A response's status and head (status line and headers), read over a fresh connection.
struct Response {
    status: u16,
    head: String,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Vec<&str> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect()
    }
}

fn get(addr: SocketAddr, path: &str, headers: &[(String, String)]) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {head}"));
    Response {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// Forged values for every identity header: as named, in capitals, and under the aliases
/// (`_`, `.`) that CGI-style backends read as the same header.
fn forged_headers() -> Headers {
    identity_headers()
        .iter()
        .flat_map(|name| {
            let value = format!("forged-{name}");
            [
                name.clone(),
                name.to_ascii_uppercase(),
                name.replace('-', "_"),
                name.replace('-', "."),
            ]
            .map(|alias| (alias, value.clone()))
        })
        .chain([("X-Auth-User".into(), "system:admin".into())])
        .collect()
}

/// The backend's headers, for failure messages: token headers redacted.
fn describe(headers: &HeaderMap) -> String {
    headers
        .iter()
        .map(|(name, value)| match name.as_str() {
            "authorization" | "x-api-key" => format!("{name}: <redacted>\n"),
            _ => format!("{name}: {}\n", value.to_str().unwrap_or("<not text>")),
        })
        .collect()
}

/// The identity headers of what the backend got, under CGI-style normalized names, so that an
/// alias counts as the header it stands for.
fn identity_seen(headers: &HeaderMap) -> Headers {
    let identity = identity_headers();
    let mut seen: Headers = headers
        .iter()
        .map(|(name, value)| {
            let normalized: String = name
                .as_str()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            (
                normalized,
                value.to_str().unwrap_or("<not text>").to_owned(),
            )
        })
        .filter(|(name, _)| identity.contains(name))
        .collect();
    seen.sort();
    seen
}

fn objects() -> (ApiKey, ApiToken, ApiToken, [String; 3]) {
    let value = generate(TokenKind::Personal, &TokenId::parse(ID).expect("id"));
    let other = generate(
        TokenKind::Personal,
        &TokenId::parse(OTHER_AUDIENCE_ID).expect("id"),
    );
    let wrong = generate(TokenKind::Personal, &TokenId::parse(ID).expect("id"));
    let key: ApiKey = serde_json::from_value(json!({
        "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiKey",
        "metadata": { "name": "key", "namespace": "team-a", "uid": "k1" },
        "spec": { "owner": { "kind": "User", "name": "alice" } },
        "status": { "principal": "alice", "conditions": [{ "type": "Ready", "status": "True",
            "reason": "OwnerResolved", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z" }] },
    }))
    .expect("key");
    let token: ApiToken = serde_json::from_value(json!({
        "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken",
        "metadata": { "name": "ci", "namespace": "team-a", "uid": "t1" },
        "spec": { "apiKeyRef": { "name": "key" } },
        "status": { "tokenId": ID, "hash": value.hash().as_str() },
    }))
    .expect("token");
    let other_token: ApiToken = serde_json::from_value(json!({
        "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken",
        "metadata": { "name": "elsewhere", "namespace": "team-a", "uid": "t2" },
        "spec": { "apiKeyRef": { "name": "key" }, "audiences": ["other"] },
        "status": { "tokenId": OTHER_AUDIENCE_ID, "hash": other.hash().as_str() },
    }))
    .expect("token");
    let values = [value, other, wrong].map(|v| v.expose_secret().to_owned());
    (key, token, other_token, values)
}

/// A verifier's two listeners: HTTPS for NGINX, plain HTTP for the test's own look at its answers.
#[derive(Clone, Copy)]
struct Verifier {
    https: SocketAddr,
    http: SocketAddr,
}

/// A verifier on ports of its own, serving `index` with identity headers named `headers`, over
/// HTTPS with `tls`.
async fn start_verifier(index: Index, headers: HeaderNames, tls: Arc<dyn TlsSource>) -> Verifier {
    let state = Arc::new(AppState {
        index: Arc::new(RwLock::new(index)),
        readiness: Arc::new(Readiness::default()),
        clock: Arc::new(SystemClock),
        metrics: Arc::new(Metrics::new()),
        usage: Arc::new(UsageRecorder::default()),
        extra_groups: Vec::new(),
        headers,
        // Tokens that list no audience are valid for the doc's route audience.
        audiences: vec!["billing".into()],
    });
    let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
    let (https, http) = (bind().await.expect("bind"), bind().await.expect("bind"));
    let addrs = Verifier {
        https: https.local_addr().expect("addr"),
        http: http.local_addr().expect("addr"),
    };
    let app = router(state);
    let forever = std::future::pending::<()>;
    tokio::spawn(serve(https, app.clone(), Some(tls), forever()));
    tokio::spawn(serve(http, app, None, forever()));
    addrs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_from_the_docs_passes_only_the_verifiers_identity_headers() {
    let Some(binary) = nginx_binary() else {
        return;
    };
    let (key, token, other_token, [value, other_audience, wrong]) = objects();
    let index = || {
        let mut index = Index::new();
        index.upsert_key(&key);
        index.upsert_token(&token);
        index.upsert_token(&other_token);
        index
    };
    let cert = verifier_cert();
    let verifier = start_verifier(index(), HeaderNames::default(), cert.store.clone()).await;
    // One whose user header is renamed (`--verify-header user=X-Forwarded-User`) while the
    // gateway still copies X-Auth-User: the copy is empty, and NGINX sends none.
    let mut renamed = HeaderNames::default();
    renamed.set("user=X-Forwarded-User").expect("rename");
    let renamed_verifier = start_verifier(index(), renamed, cert.store.clone()).await;
    // The same verifier's certificate, and a gateway that trusts another CA.
    let stranger = verifier_cert();
    let backend = Backend::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let backend_addr = listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .fallback(record)
        .with_state(backend.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    tokio::task::spawn_blocking(move || {
        let gateway = start_gateway(&binary, backend_addr, verifier.https, &cert.ca_file);
        check_through_nginx(
            gateway.addr,
            verifier.http,
            &backend,
            &value,
            &other_audience,
            &wrong,
        );
        drop(gateway);

        let gateway = start_gateway(&binary, backend_addr, renamed_verifier.https, &cert.ca_file);
        let mut headers = forged_headers();
        headers.push(("Authorization".into(), format!("Bearer {value}")));
        let response = get(gateway.addr, "/app/x", &headers);
        assert_eq!(response.status, 200, "{}", response.head);
        let received = backend.received();
        let got = received.last().expect("a request at the backend");
        let user = HeaderNames::default().user;
        let seen = identity_seen(got);
        assert!(
            !seen.iter().any(|(name, _)| *name == user.as_str()),
            "{user} reached the backend, though the verifier sent none:\n{}",
            describe(got)
        );
        assert_eq!(
            seen.len(),
            5,
            "the other identity headers:\n{}",
            describe(got)
        );
        drop(gateway);

        // `proxy_ssl_verify on` as written: a verifier whose certificate another CA signed is
        // refused, and nothing reaches the backend.
        let gateway = start_gateway(&binary, backend_addr, verifier.https, &stranger.ca_file);
        let before = backend.received().len();
        let bearer = [("Authorization".to_owned(), format!("Bearer {value}"))];
        let response = get(gateway.addr, "/app/x", &bearer);
        assert_eq!(
            response.status, 500,
            "an untrusted verifier: {}",
            response.head
        );
        assert_eq!(
            backend.received().len(),
            before,
            "the request reached the backend"
        );
    })
    .await
    .expect("requests");
}

fn check_through_nginx(
    gateway: SocketAddr,
    verifier: SocketAddr,
    backend: &Backend,
    value: &str,
    other_audience: &str,
    wrong: &str,
) {
    let names = HeaderNames::default();
    let mut expected: Headers = [
        (&names.user, "alice"),
        (&names.uid, "t1"),
        (&names.groups, "system:authenticated"),
        (&names.namespace, "team-a"),
        (&names.api_key, "key"),
        (&names.api_token, "ci"),
    ]
    .map(|(name, v)| (name.as_str().to_owned(), v.to_owned()))
    .into();
    expected.sort();

    // What the verifier itself answers: the values the backend must get, and nothing else.
    let bearer = format!("Bearer {value}");
    let answer = get(
        verifier,
        "/auth",
        &[("Authorization".into(), bearer.clone())],
    );
    assert_eq!(answer.status, 200, "{}", answer.head);
    let mut answered: Headers = expected
        .iter()
        .map(|(name, _)| (name.clone(), answer.header(name).join(",")))
        .collect();
    answered.sort();
    assert_eq!(answered, expected, "the verifier's own answer");

    let forged = forged_headers();
    let with = |extra: &[(&str, &str)]| -> Headers {
        let mut headers = forged.clone();
        headers.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        headers
    };

    // Accepted, by either header, and whatever audience the client names: the backend gets
    // exactly the verifier's identity, no forged value under any spelling, and no token.
    let accepted = [
        ("Bearer", with(&[("Authorization", &bearer)])),
        ("X-API-Key", with(&[("X-API-Key", value)])),
        (
            "Bearer with a client-sent X-Auth-Audience",
            with(&[("Authorization", &bearer), ("X-Auth-Audience", "other")]),
        ),
    ];
    for (case, headers) in accepted {
        let before = backend.received().len();
        let response = get(gateway, "/app/x", &headers);
        assert_eq!(response.status, 200, "{case}: {}", response.head);
        assert_eq!(response.body, "backend\n", "{case}");
        let received = backend.received();
        assert_eq!(
            received.len(),
            before + 1,
            "{case}: requests at the backend"
        );
        let got = received.last().expect("one request");
        assert_eq!(
            identity_seen(got),
            expected,
            "{case}: the identity headers the backend got:\n{}",
            describe(got)
        );
        for (name, value) in got {
            let value = value.to_str().unwrap_or("");
            assert!(
                !forged.iter().any(|(_, f)| f == value),
                "{case}: the forged {name} reached the backend:\n{}",
                describe(got)
            );
        }
        for token_header in ["authorization", "x-api-key"] {
            assert!(
                !got.contains_key(token_header),
                "{case}: the backend got {token_header}:\n{}",
                describe(got)
            );
        }
    }

    // Refused: the client gets the verifier's status (and on a 401 its challenge, once), the
    // backend nothing. NGINX sends a 403 without the challenge.
    let refused: [(&str, Headers, u16, Option<&str>); 3] = [
        (
            "no token",
            with(&[]),
            401,
            Some("Bearer realm=\"apikey-operator\""),
        ),
        (
            "a wrong token",
            with(&[("Authorization", &format!("Bearer {wrong}"))]),
            401,
            Some(
                "Bearer realm=\"apikey-operator\", error=\"invalid_token\", error_description=\"mismatch\"",
            ),
        ),
        (
            "a token for another audience, naming it",
            with(&[
                ("Authorization", &format!("Bearer {other_audience}")),
                ("X-Auth-Audience", "other"),
            ]),
            403,
            None,
        ),
    ];
    for (case, headers, status, challenge) in refused {
        let before = backend.received().len();
        let response = get(gateway, "/app/x", &headers);
        assert_eq!(response.status, status, "{case}: {}", response.head);
        if let Some(challenge) = challenge {
            assert_eq!(
                response.header("WWW-Authenticate"),
                [challenge],
                "{case}: {}",
                response.head
            );
        }
        assert_eq!(
            backend.received().len(),
            before,
            "{case}: the request reached the backend"
        );
    }
}
