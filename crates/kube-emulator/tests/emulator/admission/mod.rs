//! Validating admission webhooks, phrased as they would pass on a real kube-apiserver: a test
//! webhook server (hyper + rustls, certificates in `fixtures/admission/`) records every
//! AdmissionReview it gets and answers with what the test says; the tests look at what reached
//! it and at what the client got back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube_emulator::{Emulator, EmulatorConfig, UserInfo};
use serde_json::{Value, json};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

mod delivery;
mod mutating;
mod policies;
mod requests;

const CA: &[u8] = include_bytes!("../fixtures/admission/ca.pem");
const OTHER_CA: &[u8] = include_bytes!("../fixtures/admission/other-ca.pem");
const SERVER_CERT: &[u8] = include_bytes!("../fixtures/admission/server.pem");
const SERVER_KEY: &[u8] = include_bytes!("../fixtures/admission/server-key.pem");

/// What the webhook answers to one AdmissionReview request: the `response` (its `uid` is
/// filled in from the request unless the answer sets one).
type Answer = dyn Fn(&Value) -> Value + Send + Sync;

/// One AdmissionReview as the webhook server received it.
#[derive(Debug, Clone)]
struct Seen {
    path_and_query: String,
    request: Value,
}

struct WebhookServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn allow() -> Value {
    json!({"allowed": true})
}

fn deny(message: &str) -> Value {
    json!({"allowed": false, "status": {"message": message}})
}

impl WebhookServer {
    /// Serves HTTPS on 127.0.0.1 with the fixture certificate; answers after `delay`.
    async fn start(
        delay: Duration,
        answer: impl Fn(&Value) -> Value + Send + Sync + 'static,
    ) -> WebhookServer {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(SERVER_CERT)
            .collect::<Result<_, _>>()
            .expect("fixture certificate parses");
        let key = PrivateKeyDer::from_pem_slice(SERVER_KEY).expect("fixture key parses");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server TLS config");
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("webhook server binds");
        let addr = listener.local_addr().expect("webhook server address");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let answer: Arc<Answer> = Arc::new(answer);
        let recorded = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, seen, answer) = (acceptor.clone(), recorded.clone(), answer.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        respond(req, delay, seen.clone(), answer.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        WebhookServer { addr, seen, task }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }

    /// Names of the objects (or old objects) the webhook was asked about, in order.
    fn names(&self) -> Vec<String> {
        self.seen()
            .iter()
            .map(|s| s.request["name"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

async fn respond(
    req: hyper::Request<Incoming>,
    delay: Duration,
    seen: Arc<Mutex<Vec<Seen>>>,
    answer: Arc<Answer>,
) -> Result<hyper::Response<Full<Bytes>>, hyper::Error> {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let body = req.into_body().collect().await?.to_bytes();
    let review: Value = serde_json::from_slice(&body).unwrap_or_default();
    let request = review["request"].clone();
    seen.lock().expect("seen lock").push(Seen {
        path_and_query,
        request: request.clone(),
    });
    tokio::time::sleep(delay).await;
    let mut response = answer(&request);
    if response.get("uid").is_none() {
        response["uid"] = request["uid"].clone();
    }
    let reply = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
    Ok(hyper::Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(reply.to_string())))
        .expect("response builds"))
}

fn ca_bundle(pem: &[u8]) -> Value {
    serde_json::to_value(ByteString(pem.to_vec())).expect("caBundle encodes")
}

/// A webhook entry calling `url`, for `rules`, allowed to see dry runs.
fn hook(name: &str, url: &str, rules: Value) -> Value {
    json!({
        "name": name,
        "clientConfig": {"url": url, "caBundle": ca_bundle(CA)},
        "rules": rules,
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": 5,
    })
}

fn configmap_rules(operations: &[&str]) -> Value {
    json!([{"operations": operations, "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}])
}

async fn install(client: &kube::Client, name: &str, hooks: Vec<Value>) {
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let config: ValidatingWebhookConfiguration =
        serde_json::from_value(json!({"metadata": {"name": name}, "webhooks": hooks}))
            .expect("configuration parses");
    configs
        .create(&PostParams::default(), &config)
        .await
        .expect("webhook configuration is created");
}

async fn start(cfg: EmulatorConfig) -> (Emulator, kube::Client) {
    let emu = Emulator::start(cfg).await.expect("emulator starts");
    let client = emu.client().await.expect("client for the emulator");
    (emu, client)
}

fn configmap(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .expect("configmap parses")
}

fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> kube::core::Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}
