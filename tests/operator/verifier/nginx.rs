//! A real NGINX with `auth_request` in front of an upstream, asking the
//! verifier's `/auth`. Needs the `nginx` binary (with the auth_request
//! module), so it is ignored by `cargo test`; `tests/operator/verifier/nginx.sh`
//! installs NGINX and runs it. The NGINX configuration used here is the one
//! documented in docs/verifier.md.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use apikey_operator::api::{ApiKey, ApiToken};
use apikey_operator::clock::SystemClock;
use apikey_operator::token::{TokenId, TokenKind, generate};
use apikey_operator::verifier::HeaderNames;
use apikey_operator::verifier::http::{AppState, router};
use apikey_operator::verifier::index::Index;
use apikey_operator::verifier::last_used::UsageRecorder;
use apikey_operator::verifier::metrics::Metrics;
use apikey_operator::verifier::watch::Readiness;
use serde_json::json;

use crate::support::ports::free_ports;
use crate::support::temp_dir::temp_dir;

const ID: &str = "nginxnginxnginx0";

/// The server blocks of docs/verifier.md, with test ports and paths.
fn nginx_conf(dir: &Path, port: u16, upstream: u16, verifier: SocketAddr) -> String {
    let d = dir.display();
    format!(
        r#"
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;

    # The protected upstream: echoes the identity headers it was given.
    server {{
        listen 127.0.0.1:{upstream};
        location / {{
            return 200 "user=$http_x_auth_user groups=$http_x_auth_groups token=$http_x_auth_apitoken authorization=[$http_authorization]\n";
        }}
    }}

    server {{
        listen 127.0.0.1:{port};

        location / {{
            auth_request /_apikey_auth;
            auth_request_set $auth_user   $upstream_http_x_auth_user;
            auth_request_set $auth_groups $upstream_http_x_auth_groups;
            auth_request_set $auth_token  $upstream_http_x_auth_apitoken;
            auth_request_set $auth_challenge $upstream_http_www_authenticate;
            add_header WWW-Authenticate $auth_challenge always;

            proxy_set_header X-Auth-User     $auth_user;
            proxy_set_header X-Auth-Groups   $auth_groups;
            proxy_set_header X-Auth-ApiToken $auth_token;
            # Do not pass the token on to the upstream.
            proxy_set_header Authorization "";
            proxy_set_header X-API-Key "";
            proxy_pass http://127.0.0.1:{upstream};
        }}

        location = /_apikey_auth {{
            internal;
            proxy_pass http://{verifier}/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
        }}
    }}
}}
"#
    )
}

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(port: u16, headers: &[(&str, &str)]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(mut stream) => {
                let mut request =
                    "GET /app/x HTTP/1.1\r\nHost: test\r\nConnection: close\r\n".to_owned();
                for (name, value) in headers {
                    request.push_str(&format!("{name}: {value}\r\n"));
                }
                request.push_str("\r\n");
                stream.write_all(request.as_bytes()).expect("write");
                let mut response = String::new();
                stream.read_to_string(&mut response).expect("read");
                return response;
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(err) => panic!("NGINX did not start listening: {err}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the nginx binary; run tests/operator/verifier/nginx.sh"]
async fn nginx_auth_request_passes_identity_and_rejects_bad_tokens() {
    if Command::new("nginx").arg("-v").output().is_err() {
        panic!("nginx is not installed; tests/operator/verifier/nginx.sh installs it");
    }
    let value = generate(TokenKind::Personal, &TokenId::parse(ID).expect("id"));
    let forged = generate(TokenKind::Personal, &TokenId::parse(ID).expect("id"));
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
    let mut index = Index::new();
    index.upsert_key(&key);
    index.upsert_token(&token);
    let state = Arc::new(AppState {
        index: Arc::new(RwLock::new(index)),
        readiness: Arc::new(Readiness::default()),
        clock: Arc::new(SystemClock),
        metrics: Arc::new(Metrics::new()),
        usage: Arc::new(UsageRecorder::default()),
        extra_groups: Vec::new(),
        headers: HeaderNames::default(),
        audiences: Vec::new(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let verifier = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router(state)).await });

    // Declared before the nginx guard, so nginx stops before it is removed.
    let dir = temp_dir("nginx");
    let [port, upstream] = free_ports();
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(&dir, port, upstream, verifier)).expect("conf");
    let _nginx = Nginx(
        Command::new("nginx")
            .arg("-p")
            .arg(&*dir)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx"),
    );

    let bearer = format!("Bearer {}", value.expose_secret());
    let secret = value.expose_secret()[23..].to_owned();
    tokio::task::spawn_blocking(move || {
        let ok = get(port, &[("Authorization", &bearer)]);
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(
            ok.contains("user=alice groups=system:authenticated token=ci authorization=[]"),
            "{ok}"
        );
        assert!(
            !ok.contains(&secret),
            "the token reached the upstream: {ok}"
        );

        let ok = get(port, &[("X-API-Key", &bearer["Bearer ".len()..])]);
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");

        let none = get(port, &[]);
        assert!(none.starts_with("HTTP/1.1 401"), "{none}");
        assert!(
            none.contains("WWW-Authenticate: Bearer realm=\"apikey-operator\""),
            "{none}"
        );

        let forged = get(
            port,
            &[(
                "Authorization",
                &format!("Bearer {}", forged.expose_secret()),
            )],
        );
        assert!(forged.starts_with("HTTP/1.1 401"), "{forged}");
        assert!(
            forged.contains("error_description=\"mismatch\""),
            "{forged}"
        );
    })
    .await
    .expect("requests");
}
