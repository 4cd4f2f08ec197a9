//! A verifier served in this process, and asking one over HTTP whether it authenticates a value.

use super::http;
use super::wait::eventually;
use kube::Client;
use tokio::sync::oneshot;

/// A verifier served in this process, until dropped.
pub struct InProcessVerifier {
    pub addr: std::net::SocketAddr,
    pub index: apikey_operator::verifier::watch::SharedIndex,
    _stop: oneshot::Sender<()>,
}

impl InProcessVerifier {
    /// Binds 127.0.0.1:0, serves, and waits until its watches synced.
    pub async fn start(client: Client) -> InProcessVerifier {
        let cfg = apikey_operator::verifier::VerifierConfig {
            addr: "127.0.0.1:0".parse().expect("addr"),
            ..Default::default()
        };
        let verifier = apikey_operator::verifier::bind(client, cfg)
            .await
            .expect("verifier binds");
        let addr = verifier.local_addr();
        let index = verifier.index();
        let readiness = verifier.readiness();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(verifier.run(async move {
            let _ = stopped.await;
        }));
        eventually("the verifier to be ready", || {
            let ready = readiness.ready();
            async move { ready.then_some(()) }
        })
        .await;
        InProcessVerifier {
            addr,
            index,
            _stop: stop,
        }
    }

    /// The index's verdict on `value` now (no HTTP, no usage recorded).
    pub fn verify(
        &self,
        value: &str,
    ) -> Result<apikey_operator::verifier::Identity, apikey_operator::verifier::Reject> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index.verify(value, jiff::Timestamp::now())
    }
}

/// A TokenReview request body for `value`.
pub fn token_review_body(value: &str) -> String {
    serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": value},
    })
    .to_string()
}

/// The verifier's answer to a TokenReview of `value` over HTTP (which must be a 200).
pub async fn token_review(addr: std::net::SocketAddr, value: &str) -> serde_json::Value {
    let (status, _, body) = http::request(
        addr,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        &[],
        &token_review_body(value),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("TokenReview JSON")
}

/// Whether the verifier at `addr` authenticates `value` (TokenReview over HTTP).
pub async fn authenticated(addr: std::net::SocketAddr, value: &str) -> bool {
    token_review(addr, value).await["status"]["authenticated"] == serde_json::json!(true)
}
