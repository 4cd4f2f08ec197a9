//! The endpoints without a network: requests go through the router with
//! `tower::ServiceExt::oneshot` against an index filled by hand.

use std::sync::{Arc, RwLock};

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use jiff::Timestamp;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::token::TokenValue;
use crate::verifier::index::tests::{ID, issued, key_json, ready_key, token_json, value};
use crate::verifier::index::{Index, KeyHeaders};
use crate::verifier::watch::Kind;

struct FixedClock(Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

const NOW: &str = "2026-06-01T12:00:30Z";

struct Fixture {
    state: Arc<AppState>,
    value: TokenValue,
    expired: TokenValue,
}

fn fixture_with(headers: HeaderNames, principal_key: ApiKeyFixture) -> Fixture {
    let v = value(ID);
    let expired_id = "expiredexpired00";
    let expired = value(expired_id);
    let mut index = Index::new();
    crate::verifier::index::tests::with_service_accounts(&mut index);
    index.upsert_key(&match principal_key {
        ApiKeyFixture::User => ready_key(),
        ApiKeyFixture::ServiceAccount => {
            let mut key = key_json("key", true, Some("system:serviceaccount:ns:robot"));
            key.spec.owner.kind = crate::api::OwnerKind::ServiceAccount;
            // The audiences its tokens are valid for, which a review may ask for.
            key.spec.token_defaults = Some(crate::api::TokenDefaults {
                audiences: vec!["https://api.example.com".into(), "vault".into()],
                ..Default::default()
            });
            key
        }
    });
    index.upsert_token(&token_json("tok", false, issued(&v)));
    index.upsert_token(&token_json(
        "old",
        false,
        json!({ "tokenId": expired_id, "hash": expired.hash().as_str(), "expiresAt": "2026-06-01T12:00:00Z" }),
    ));
    let readiness = Arc::new(Readiness::default());
    readiness.mark(Kind::Token);
    readiness.mark(Kind::Key);
    readiness.mark(Kind::ServiceAccount);
    let state = Arc::new(AppState {
        index: Arc::new(RwLock::new(index)),
        readiness,
        clock: Arc::new(FixedClock(NOW.parse().expect("timestamp"))),
        metrics: Arc::new(Metrics::new()),
        usage: Arc::new(UsageRecorder::default()),
        extra_groups: vec!["tenants".into(), "system:authenticated".into()],
        headers,
        audiences: Vec::new(),
    });
    Fixture {
        state,
        value: v,
        expired,
    }
}

enum ApiKeyFixture {
    User,
    ServiceAccount,
}

fn fixture() -> Fixture {
    fixture_with(HeaderNames::default(), ApiKeyFixture::User)
}

async fn send(state: &Arc<AppState>, request: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let response = router(state.clone())
        .oneshot(request)
        .await
        .expect("router is infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn review(body: impl Into<Body>) -> Request<Body> {
    Request::post(TOKEN_REVIEW_PATH)
        .header("content-type", "application/json")
        .body(body.into())
        .expect("request")
}

fn review_of(token: &str, audiences: &[&str]) -> Request<Body> {
    let mut spec = json!({ "token": token });
    if !audiences.is_empty() {
        spec["audiences"] = json!(audiences);
    }
    review(
        json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec })
            .to_string(),
    )
}

fn secret_part(v: &TokenValue) -> &str {
    &v.expose_secret()[23..]
}

#[tokio::test]
async fn token_review_authenticates_a_user_token() {
    let f = fixture();
    let (status, headers, body) = send(&f.state, review_of(f.value.expose_secret(), &[])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers.get(CACHE_CONTROL).map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
    let body: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        body,
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "metadata": { "creationTimestamp": null },
            "spec": {},
            "status": {
                "authenticated": true,
                "user": {
                    "username": "alice",
                    "uid": "uid-tok",
                    "groups": ["system:authenticated", "tenants"],
                    "extra": {
                        "apikeys.dev/apikey": ["key"],
                        "apikeys.dev/apitoken": ["tok"],
                        "apikeys.dev/namespace": ["ns"],
                    },
                },
            },
        })
    );
    assert_eq!(f.state.usage.take().len(), 1, "use is recorded");
}

#[tokio::test]
async fn token_review_gives_service_accounts_their_groups_and_echoes_audiences() {
    let f = fixture_with(HeaderNames::default(), ApiKeyFixture::ServiceAccount);
    let (_, _, body) = send(
        &f.state,
        review_of(
            f.value.expose_secret(),
            &["https://api.example.com", "vault"],
        ),
    )
    .await;
    let body: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        body["status"]["user"]["username"],
        "system:serviceaccount:ns:robot"
    );
    assert_eq!(
        body["status"]["user"]["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:ns",
            "system:authenticated",
            "tenants"
        ])
    );
    assert_eq!(
        body["status"]["audiences"],
        json!(["https://api.example.com", "vault"])
    );
}

#[tokio::test]
async fn token_review_rejections_say_why_without_the_token() {
    let f = fixture();
    let forged = value(ID);
    let cases = [
        (
            f.expired.expose_secret().to_owned(),
            "the value has expired",
        ),
        (forged.expose_secret().to_owned(), "does not match"),
        ("not-a-token".to_owned(), "not an apikey-operator token"),
        (String::new(), "spec.token is empty"),
    ];
    for (token, reason) in cases {
        let (status, _, body) = send(&f.state, review_of(&token, &["aud"])).await;
        assert_eq!(status, StatusCode::OK, "{reason}");
        let parsed: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(parsed["status"]["authenticated"], false, "{reason}");
        assert!(parsed["status"].get("user").is_none());
        assert!(parsed["status"].get("audiences").is_none());
        let error = parsed["status"]["error"].as_str().expect("error");
        assert!(error.contains(reason), "{error}");
        if token.len() > 30 {
            assert!(!body.contains(&token[23..]), "{body}");
        }
    }
    assert!(f.state.usage.take().is_empty());
}

#[tokio::test]
async fn token_review_accepts_v1beta1_and_answers_in_kind() {
    let f = fixture();
    let request = json!({
        "apiVersion": "authentication.k8s.io/v1beta1",
        "kind": "TokenReview",
        "spec": { "token": f.value.expose_secret() },
    });
    let (_, _, body) = send(&f.state, review(request.to_string())).await;
    let body: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["apiVersion"], "authentication.k8s.io/v1beta1");
    assert_eq!(body["status"]["authenticated"], true);
}

#[tokio::test]
async fn token_review_bad_requests_get_400_without_echo() {
    let f = fixture();
    let token = f.value.expose_secret();
    let too_big = format!(
        "{{\"spec\":{{\"token\":\"{}\"}}}}",
        "a".repeat(MAX_BODY_BYTES)
    );
    let cases: Vec<(String, StatusCode, &str)> = vec![
        (
            "{not json".into(),
            StatusCode::BAD_REQUEST,
            "is not valid JSON",
        ),
        (
            format!("{{\"spec\": \"{token}\"}}"),
            StatusCode::BAD_REQUEST,
            "does not have the TokenReview fields",
        ),
        (
            format!("{{\"spec\": {{\"token\": \"{token}\""),
            StatusCode::BAD_REQUEST,
            "ends before the JSON is complete",
        ),
        (
            json!({ "kind": "SubjectAccessReview", "spec": { "token": token } }).to_string(),
            StatusCode::BAD_REQUEST,
            "expected kind TokenReview",
        ),
        (
            json!({ "apiVersion": "v1", "spec": { "token": token } }).to_string(),
            StatusCode::BAD_REQUEST,
            "expected kind TokenReview",
        ),
        (too_big, StatusCode::PAYLOAD_TOO_LARGE, ""),
    ];
    for (request, expected, message) in cases {
        let (status, _, body) = send(&f.state, review(request)).await;
        assert_eq!(status, expected, "{body}");
        assert!(body.contains(message), "{body}");
        assert!(!body.contains(secret_part(&f.value)), "{body}");
    }
}

fn auth(headers: &[(&str, &str)]) -> Request<Body> {
    let mut request = Request::get("/auth");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Body::empty()).expect("request")
}

#[test]
fn the_key_headers_made_at_indexing_are_the_ones_made_per_request() {
    for kind in [ApiKeyFixture::User, ApiKeyFixture::ServiceAccount] {
        let f = fixture_with(HeaderNames::default(), kind);
        let index = f.state.index.read().expect("index");
        let now = NOW.parse().expect("timestamp");
        let (identity, _) = index
            .verify_noting_use(f.value.expose_secret(), now)
            .expect("accepted");
        let made_now = KeyHeaders::new(
            Some(identity.username),
            identity.namespace,
            identity.api_key,
        );
        assert_eq!(identity.key_headers, &made_now);
        let answer = identity_response(&f.state, &identity);
        assert_eq!(answer.status(), StatusCode::OK);
        let header = |name: &str| answer.headers().get(name).cloned();
        assert_eq!(header("x-auth-user"), made_now.username);
        assert_eq!(header("x-auth-namespace"), made_now.namespace);
        assert_eq!(header("x-auth-apikey"), made_now.api_key);
    }
}

#[tokio::test]
async fn forward_auth_answers_with_identity_headers() {
    let f = fixture();
    let bearer = format!("Bearer {}", f.value.expose_secret());
    for request in [
        auth(&[("authorization", &bearer)]),
        auth(&[("authorization", &bearer.replace("Bearer", "bearer"))]),
        auth(&[("x-api-key", f.value.expose_secret())]),
        auth(&[
            ("authorization", "Basic Zm9vOmJhcg=="),
            ("x-api-key", f.value.expose_secret()),
        ]),
        Request::post("/auth/some/upstream/path?x=1")
            .header("authorization", &bearer)
            .body(Body::from("ignored"))
            .expect("request"),
    ] {
        let (status, headers, _) = send(&f.state, request).await;
        assert_eq!(status, StatusCode::OK);
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(get("x-auth-user").as_deref(), Some("alice"));
        assert_eq!(get("x-auth-uid").as_deref(), Some("uid-tok"));
        assert_eq!(
            get("x-auth-groups").as_deref(),
            Some("system:authenticated,tenants")
        );
        assert_eq!(get("x-auth-namespace").as_deref(), Some("ns"));
        assert_eq!(get("x-auth-apikey").as_deref(), Some("key"));
        assert_eq!(get("x-auth-apitoken").as_deref(), Some("tok"));
    }
}

#[tokio::test]
async fn forward_auth_header_names_are_configurable() {
    let mut names = HeaderNames::default();
    names.set("user=X-Forwarded-User").expect("valid");
    names.set("groups = X-Forwarded-Groups").expect("valid");
    assert!(matches!(names.set("user"), Err(HeaderNameError::Syntax(_))));
    assert!(matches!(
        names.set("email=X-Email"),
        Err(HeaderNameError::UnknownField(_))
    ));
    assert!(matches!(
        names.set("user=Bad Header"),
        Err(HeaderNameError::InvalidName(_))
    ));
    names.check().expect("each field its own header");
    let f = fixture_with(names, ApiKeyFixture::User);
    let (status, headers, _) =
        send(&f.state, auth(&[("x-api-key", f.value.expose_secret())])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers.get("x-forwarded-user").map(|v| v.as_bytes()),
        Some(&b"alice"[..])
    );
    assert!(headers.get("x-forwarded-groups").is_some());
    assert!(headers.get("x-auth-user").is_none());
}

#[tokio::test]
async fn forward_auth_challenges_without_echoing_the_token() {
    let f = fixture();
    let forged = value(ID);
    let expired = format!("Bearer {}", f.expired.expose_secret());
    let forged = format!("Bearer {}", forged.expose_secret());
    let cases: Vec<(Request<Body>, &str)> = vec![
        (auth(&[]), "Bearer realm=\"apikey-operator\""),
        (
            auth(&[("authorization", "Bearer ")]),
            "Bearer realm=\"apikey-operator\"",
        ),
        (
            auth(&[("authorization", "Basic Zm9vOmJhcg==")]),
            "Bearer realm=\"apikey-operator\"",
        ),
        (
            auth(&[("authorization", &expired)]),
            "Bearer realm=\"apikey-operator\", error=\"invalid_token\", error_description=\"expired\"",
        ),
        (
            auth(&[("authorization", &forged)]),
            "Bearer realm=\"apikey-operator\", error=\"invalid_token\", error_description=\"mismatch\"",
        ),
        (
            auth(&[("x-api-key", "garbage")]),
            "Bearer realm=\"apikey-operator\", error=\"invalid_token\", error_description=\"malformed\"",
        ),
    ];
    for (request, challenge) in cases {
        let (status, headers, body) = send(&f.state, request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            headers.get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()),
            Some(challenge)
        );
        assert!(!body.contains(secret_part(&f.expired)), "{body}");
        assert!(headers.get("x-auth-user").is_none());
    }
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let f = fixture();
    let get = |path: &str| Request::get(path).body(Body::empty()).expect("request");
    assert_eq!(send(&f.state, get("/healthz")).await.0, StatusCode::OK);
    assert_eq!(send(&f.state, get("/readyz")).await.0, StatusCode::OK);

    let mut index = Index::new();
    index.upsert_key(&ready_key());
    let unsynced = Arc::new(AppState {
        index: Arc::new(RwLock::new(index)),
        readiness: Arc::new(Readiness::default()),
        clock: f.state.clock.clone(),
        metrics: Arc::new(Metrics::new()),
        usage: Arc::new(UsageRecorder::default()),
        extra_groups: Vec::new(),
        headers: HeaderNames::default(),
        audiences: Vec::new(),
    });
    let (status, _, body) = send(&unsynced, get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("not synced"), "{body}");

    f.state.metrics.set_index_size(2, 1);
    send(&f.state, review_of(f.value.expose_secret(), &[])).await;
    send(&f.state, auth(&[("x-api-key", f.expired.expose_secret())])).await;
    send(&f.state, auth(&[])).await;
    let (status, _, text) = send(&f.state, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        "apikey_verifier_requests_total{endpoint=\"tokenreview\",result=\"ok\"} 1",
        "apikey_verifier_requests_total{endpoint=\"auth\",result=\"expired\"} 1",
        "apikey_verifier_requests_total{endpoint=\"auth\",result=\"no_credentials\"} 1",
        "apikey_verifier_request_duration_seconds_count{endpoint=\"auth\"} 2",
        "apikey_verifier_index_tokens 2",
        "apikey_verifier_index_keys 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains(secret_part(&f.value)));
}

#[test]
fn identity_headers_may_not_take_reserved_or_shared_names() {
    let settings = |s: &[&str]| -> Vec<String> { s.iter().map(|s| (*s).to_owned()).collect() };
    // A user name in Cache-Control would replace `no-store`; one in Authorization would be
    // passed on as a credential.
    for name in [
        "Cache-Control",
        "content-type",
        "Authorization",
        "X-API-Key",
        "Set-Cookie",
    ] {
        let err =
            HeaderNames::from_settings(&settings(&[&format!("user={name}")])).expect_err(name);
        assert!(
            matches!(err, HeaderNameError::Reserved { field: "user", .. }),
            "{name}: {err}"
        );
        assert!(err.to_string().contains("a header of its own"), "{err}");
    }
    let err = HeaderNames::from_settings(&settings(&["user=X-Auth-Uid"])).expect_err("shared");
    assert_eq!(
        err,
        HeaderNameError::Shared {
            first: "user",
            second: "uid",
            name: "x-auth-uid".into()
        }
    );
    // Checked once all settings are in: two fields may swap their headers.
    let swapped = HeaderNames::from_settings(&settings(&["user=X-Auth-Uid", "uid=X-Auth-User"]))
        .expect("swapped");
    assert_eq!(swapped.user.as_str(), "x-auth-uid");
    assert_eq!(swapped.uid.as_str(), "x-auth-user");
}
