//! Asking the webhooks of a `Pending` write: HTTPS POSTs of the AdmissionReview (TLS checked
//! against the webhook's `caBundle`, services resolved through `EmulatorConfig::service_addrs`),
//! in parallel as upstream's validating dispatcher, and their answers turned into what the
//! client gets, in upstream's words (`errors/statuserror.go`, `util/webhook/error.go`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use super::matching::{Endpoint, Webhook};
use super::{Call, Pending};
use crate::error::ApiError;

/// Where webhook Services are reached: (namespace, name, port) → a local address.
pub type ServiceAddrs = HashMap<(String, String, u16), SocketAddr>;

/// Largest webhook answer read (upstream's limit on webhook responses is about 3 MiB too).
const MAX_RESPONSE: usize = 3 * 1024 * 1024;

/// Asks every webhook of `pending` at once; Ok when all allowed (or failed open), else the
/// first error in webhook order.
pub async fn dispatch(pending: &Pending, services: &ServiceAddrs) -> Result<(), ApiError> {
    let asks = pending.calls.iter().map(|c| ask(c, services, false));
    let outcomes = futures::future::join_all(asks).await;
    outcomes.into_iter().try_for_each(|o| o.map(|_| ()))
}

/// Asks the mutating webhooks of `pending` one after the other, each about the object as the
/// ones before it patched it; the object they leave (None for a delete).
pub async fn dispatch_mutating(
    pending: &Pending,
    services: &ServiceAddrs,
) -> Result<Option<Arc<Value>>, ApiError> {
    let mut object = pending.object.as_deref().cloned();
    for call in &pending.calls {
        let mut call = call.clone();
        let sent = &mut call.review["request"]["object"];
        if let Some(current) = &object {
            let api_version = sent["apiVersion"].clone();
            *sent = current.clone();
            sent["apiVersion"] = api_version;
        }
        let Some(patch) = ask(&call, services, true).await? else {
            continue;
        };
        let Some(current) = object.as_mut() else {
            return Err(ApiError::internal(&format!(
                "admission webhook {:?} attempted to modify the object, which is not supported for this operation",
                call.webhook.name
            )));
        };
        let api_version = current["apiVersion"].clone();
        let mut patched = call.review["request"]["object"].clone();
        json_patch::patch(&mut patched, &patch).map_err(|e| ApiError::internal(&e.to_string()))?;
        patched["apiVersion"] = api_version;
        *current = patched;
    }
    Ok(object.map(Arc::new))
}

/// Why a call gave no verdict; `Fail` turns it into a 500, `Ignore` lets the write through.
struct CallFailed(String);

/// What a webhook answered: Err for a denial or a failure that counts, else the patch a
/// mutating webhook returned.
async fn ask(
    call: &Call,
    services: &ServiceAddrs,
    mutating: bool,
) -> Result<Option<json_patch::Patch>, ApiError> {
    let hook = &call.webhook;
    if call.dry_run && !matches!(hook.side_effects.as_str(), "None" | "NoneOnDryRun") {
        return Err(ApiError::bad_request(format!(
            "admission webhook {:?} does not support dry run",
            hook.name
        )));
    }
    let answer = post(call, services)
        .await
        .and_then(|r| verdict(call, &r, mutating));
    match answer {
        Ok(Verdict::Allowed(patch)) => Ok(patch),
        Ok(Verdict::Denied(denial)) => Err(denial),
        Err(CallFailed(_)) if hook.fail_open => Ok(None),
        Err(CallFailed(reason)) => Err(ApiError::internal(&format!(
            "failed calling webhook {:?}: {reason}",
            hook.name
        ))),
    }
}

/// The URL as upstream's client posts to it (with `?timeout=`), the TLS server name, and the
/// `host:port` to connect to (resolved when connecting) or why there is none.
fn target(
    hook: &Webhook,
    services: &ServiceAddrs,
) -> Result<(String, String, Result<String, String>), CallFailed> {
    let timeout = format!("timeout={}s", hook.timeout_seconds);
    match &hook.endpoint {
        Endpoint::Url(url) => {
            let uri: axum::http::Uri = url
                .parse()
                .map_err(|e| CallFailed(format!("could not get REST client: {e}")))?;
            let host = uri.host().unwrap_or_default();
            let port = uri.port_u16().unwrap_or(443);
            let sep = if url.contains('?') { '&' } else { '?' };
            Ok((
                format!("{url}{sep}{timeout}"),
                host.trim_matches(['[', ']']).to_string(),
                Ok(format!("{host}:{port}")),
            ))
        }
        Endpoint::Service {
            namespace,
            name,
            port,
            path,
        } => {
            let host = format!("{name}.{namespace}.svc");
            let addr = services
                .get(&(namespace.clone(), name.clone(), *port))
                .map(SocketAddr::to_string)
                .ok_or_else(|| {
                    format!(
                        "service \"{namespace}/{name}\" port {port} has no address in the emulator's service_addrs"
                    )
                });
            Ok((format!("https://{host}:{port}{path}?{timeout}"), host, addr))
        }
    }
}

/// Which kept connections a call may use: the same address, server name and trusted CAs.
#[derive(Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    addr: String,
    host: String,
    ca_bundle: Vec<u8>,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Connections kept open between calls, as upstream's HTTP transport keeps them (a TLS
/// handshake per admission request would cost more than the request), and the TLS settings
/// per CA bundle (whose session cache then resumes).
#[derive(Default)]
struct Pool {
    idle: HashMap<PoolKey, Vec<Sender>>,
    configs: HashMap<Vec<u8>, Arc<ClientConfig>>,
}

/// Idle connections kept per key.
const MAX_IDLE: usize = 32;

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    static POOL: std::sync::LazyLock<std::sync::Mutex<Pool>> =
        std::sync::LazyLock::new(Default::default);
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A kept connection for `key` (`true`), else a new one.
async fn connection(key: &PoolKey) -> Result<(Sender, bool), String> {
    let kept = {
        let mut pool = pool();
        let idle = pool.idle.entry(key.clone()).or_default();
        std::iter::from_fn(|| idle.pop()).find(|sender| !sender.is_closed())
    };
    match kept {
        Some(sender) => Ok((sender, true)),
        None => connect(key).await.map(|sender| (sender, false)),
    }
}

/// A new TCP connection and TLS session to `key`'s address, verified against its CA bundle.
async fn connect(key: &PoolKey) -> Result<Sender, String> {
    let tls = {
        let mut pool = pool();
        match pool.configs.get(&key.ca_bundle) {
            Some(config) => config.clone(),
            None => {
                let config = Arc::new(tls_config(&key.ca_bundle)?);
                pool.configs.insert(key.ca_bundle.clone(), config.clone());
                config
            }
        }
    };
    let server_name = ServerName::try_from(key.host.clone()).map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect(key.addr.as_str())
        .await
        .map_err(|e| go_words(&e, &key.addr))?;
    let stream = TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(|e| go_words(&e, &key.addr))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Keeps `sender` for the next call to `key`, if it can take one.
fn keep(key: PoolKey, sender: Sender) {
    if sender.is_closed() {
        return;
    }
    let mut pool = pool();
    let idle = pool.idle.entry(key).or_default();
    if idle.len() < MAX_IDLE {
        idle.push(sender);
    }
}

fn tls_config(ca_bundle: &[u8]) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_bundle) {
        let cert = cert.map_err(|e| format!("unable to load root certificates: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("unable to load root certificates: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Go's words for the usual transport failures, so that messages read as upstream's.
fn go_words(e: &std::io::Error, addr: &str) -> String {
    if e.kind() == std::io::ErrorKind::ConnectionRefused {
        return format!("dial tcp {addr}: connect: connection refused");
    }
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return match tls {
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
                "tls: failed to verify certificate: x509: certificate signed by unknown authority"
                    .to_string()
            }
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            ) => format!(
                "tls: failed to verify certificate: x509: certificate is not valid for {addr}"
            ),
            other => format!("tls: {other}"),
        };
    }
    e.to_string()
}

async fn post(call: &Call, services: &ServiceAddrs) -> Result<Value, CallFailed> {
    let hook = &call.webhook;
    let (url, host, addr) = target(hook, services)?;
    let failed = |why: String| CallFailed(format!("failed to call webhook: Post {url:?}: {why}"));
    let addr = addr.map_err(&failed)?;
    let uri: axum::http::Uri = url.parse().map_err(|e| failed(format!("{e}")))?;
    let body = serde_json::to_vec(&call.review).unwrap_or_default();
    let exchange = async {
        let key = PoolKey {
            addr: addr.clone(),
            host: host.clone(),
            ca_bundle: hook.ca_bundle.clone(),
        };
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let request =
            axum::http::Request::post(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
                .header("host", authority)
                .header("content-type", "application/json")
                .header("accept", "application/json, */*")
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| e.to_string())?;
        let (mut sender, reused) = connection(&key).await?;
        let response = match sender.send_request(request.clone()).await {
            Ok(response) => response,
            // A kept connection the server closed meanwhile: once more on a fresh one.
            Err(_) if reused => {
                sender = connect(&key).await?;
                sender
                    .send_request(request)
                    .await
                    .map_err(|e| e.to_string())?
            }
            Err(e) => return Err(e.to_string()),
        };
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        keep(key, sender);
        if !status.is_success() {
            return Err(format!(
                "an error on the server ({:?}) has prevented the request from succeeding",
                String::from_utf8_lossy(&bytes)
            ));
        }
        serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string())
    };
    match tokio::time::timeout(Duration::from_secs(hook.timeout_seconds), exchange).await {
        Ok(Ok(review)) => Ok(review),
        Ok(Err(why)) => Err(failed(why)),
        Err(_) => Err(failed("context deadline exceeded".into())),
    }
}

/// A webhook's well-formed answer.
enum Verdict {
    /// Allowed, with the JSON patch a mutating webhook asks for.
    Allowed(Option<json_patch::Patch>),
    Denied(ApiError),
}

/// upstream `VerifyAdmissionResponse` then `ToStatusErr` and the mutating dispatcher's patch
/// decoding.
fn verdict(call: &Call, review: &Value, mutating: bool) -> Result<Verdict, CallFailed> {
    let invalid = |why: String| CallFailed(format!("received invalid webhook response: {why}"));
    let response = &review["response"];
    if !response.is_object() {
        return Err(invalid("webhook response was absent".into()));
    }
    let uid = response["uid"].as_str().unwrap_or_default();
    if uid != call.uid {
        return Err(invalid(format!(
            "expected response.uid={:?}, got {uid:?}",
            call.uid
        )));
    }
    let (api_version, kind) = (
        review["apiVersion"].as_str().unwrap_or_default(),
        review["kind"].as_str().unwrap_or_default(),
    );
    if (api_version, kind) != ("admission.k8s.io/v1", "AdmissionReview") {
        return Err(invalid(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {api_version}, Kind={kind}"
        )));
    }
    let patch = response["patch"].as_str().filter(|p| !p.is_empty());
    let patch_type = response["patchType"].as_str();
    match (mutating, patch, patch_type) {
        (false, Some(_), _) => {
            return Err(invalid(
                "validating webhook may not return response.patch".into(),
            ));
        }
        (false, None, Some(_)) => {
            return Err(invalid(
                "validating webhook may not return response.patchType".into(),
            ));
        }
        (true, Some(_), None) => {
            return Err(invalid(
                "webhook returned response.patch but not response.patchType".into(),
            ));
        }
        (true, None, Some(_)) => {
            return Err(invalid(
                "webhook returned response.patchType but not response.patch".into(),
            ));
        }
        _ => {}
    }
    if response["allowed"].as_bool() != Some(true) {
        return Ok(Verdict::Denied(denial(
            &call.webhook.name,
            &response["status"],
        )));
    }
    let Some(patch) = patch else {
        return Ok(Verdict::Allowed(None));
    };
    if patch_type != Some("JSONPatch") {
        return Err(CallFailed(format!(
            "unsupported patch type {:?}",
            patch_type.unwrap_or_default()
        )));
    }
    let decoded = super::matching::base64_decode(patch)
        .and_then(|bytes| serde_json::from_slice::<json_patch::Patch>(&bytes).ok())
        .ok_or_else(|| CallFailed("received undecodable patch in webhook response".to_string()))?;
    Ok(Verdict::Allowed(Some(decoded)))
}

/// The client's error for a denial: the webhook's Status, at least 400, `Failure`, and the
/// message prefixed with the webhook's name.
pub(super) fn denial(hook: &str, result: &Value) -> ApiError {
    let mut status = match result {
        Value::Object(_) => result.clone(),
        _ => json!({}),
    };
    let code = status["code"].as_u64().unwrap_or(0);
    if code < 400 {
        status["code"] = json!(400);
    }
    if matches!(status["status"].as_str(), None | Some("") | Some("Success")) {
        status["status"] = json!("Failure");
    }
    let denied_by = format!("admission webhook {hook:?} denied the request");
    let message = match (status["message"].as_str(), status["reason"].as_str()) {
        (Some(m), _) if !m.is_empty() => format!("{denied_by}: {m}"),
        (_, Some(r)) if !r.is_empty() => format!("{denied_by}: {r}"),
        _ => format!("{denied_by} without explanation"),
    };
    status["message"] = json!(message);
    status["kind"] = json!("Status");
    status["apiVersion"] = json!("v1");
    if !status["metadata"].is_object() {
        status["metadata"] = json!({});
    }
    ApiError::admission_denial(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> Call {
        let hook = super::super::matching::compile(&json!({"webhooks": [
            {"name": "w.x.dev", "clientConfig": {"url": "https://127.0.0.1:1/"}, "sideEffects": "None"}
        ]}));
        Call {
            webhook: Arc::new(hook.into_iter().next().expect("one webhook")),
            uid: "u1".into(),
            review: json!({}),
            dry_run: false,
        }
    }

    /// The outcome of an answer in words: allowed (with a patch or not), denied, or failed.
    fn outcome(mutating: bool, response: Value) -> String {
        let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
        match verdict(&call(), &review, mutating) {
            Ok(Verdict::Allowed(None)) => "allowed".into(),
            Ok(Verdict::Allowed(Some(p))) => format!("patched {}", p.0.len()),
            Ok(Verdict::Denied(e)) => format!("denied {}", e.code),
            Err(CallFailed(why)) => why,
        }
    }

    #[tokio::test]
    async fn dry_runs_are_refused_to_webhooks_with_side_effects() {
        // v1 configurations cannot say so (422 when stored); the dispatcher checks anyway.
        for (effects, refused) in [
            ("Some", true),
            ("Unknown", true),
            ("None", false),
            ("NoneOnDryRun", false),
        ] {
            let mut c = call();
            let mut hook = super::super::matching::compile(&json!({"webhooks": [
                {"name": "w.x.dev", "clientConfig": {"url": "https://127.0.0.1:1/"}, "sideEffects": effects,
                 "failurePolicy": "Ignore"}
            ]}));
            c.webhook = Arc::new(hook.remove(0));
            c.dry_run = true;
            // Allowed ones go on to call a port nothing listens on, and fail open.
            let outcome = ask(&c, &ServiceAddrs::new(), false).await;
            match outcome {
                Err(e) => {
                    assert!(refused, "{effects}");
                    assert_eq!(
                        (e.code, e.message.as_str()),
                        (
                            400,
                            "admission webhook \"w.x.dev\" does not support dry run"
                        )
                    );
                }
                Ok(_) => assert!(!refused, "{effects}"),
            }
        }
    }

    #[test]
    fn answers_are_checked_as_upstream() {
        // `[{"op":"remove","path":"/a"}]`
        let patch = "W3sib3AiOiJyZW1vdmUiLCJwYXRoIjoiL2EifV0=";
        let cases = [
            (false, json!({"uid": "u1", "allowed": true}), "allowed"),
            (false, json!({"uid": "u1", "allowed": false}), "denied 400"),
            (
                false,
                json!({"uid": "u2", "allowed": true}),
                "received invalid webhook response: expected response.uid=\"u1\", got \"u2\"",
            ),
            (
                false,
                json!({"uid": "u1", "allowed": true, "patch": patch, "patchType": "JSONPatch"}),
                "received invalid webhook response: validating webhook may not return response.patch",
            ),
            (
                false,
                json!({"uid": "u1", "allowed": true, "patchType": "JSONPatch"}),
                "received invalid webhook response: validating webhook may not return response.patchType",
            ),
            (
                true,
                json!({"uid": "u1", "allowed": true, "patch": patch, "patchType": "JSONPatch"}),
                "patched 1",
            ),
            (
                true,
                json!({"uid": "u1", "allowed": true, "patch": patch}),
                "received invalid webhook response: webhook returned response.patch but not response.patchType",
            ),
            (
                true,
                json!({"uid": "u1", "allowed": true, "patch": "!!", "patchType": "JSONPatch"}),
                "received undecodable patch in webhook response",
            ),
            (
                true,
                json!({"uid": "u1", "allowed": true, "patch": patch, "patchType": "Merge"}),
                "unsupported patch type \"Merge\"",
            ),
        ];
        for (mutating, response, want) in cases {
            assert_eq!(outcome(mutating, response.clone()), want, "{response}");
        }
        let wrong_kind = json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "response": {"uid": "u1"}});
        assert!(
            matches!(verdict(&call(), &wrong_kind, false), Err(CallFailed(w)) if w.ends_with("got admission.k8s.io/v1beta1, Kind=AdmissionReview"))
        );
        assert!(
            matches!(verdict(&call(), &json!({}), false), Err(CallFailed(w)) if w.ends_with("webhook response was absent"))
        );
    }

    #[test]
    fn denials_read_as_upstream() {
        let cases = [
            (
                json!(null),
                400,
                "admission webhook \"w.x.dev\" denied the request without explanation",
            ),
            (
                json!({"message": "no"}),
                400,
                "admission webhook \"w.x.dev\" denied the request: no",
            ),
            (
                json!({"reason": "Nope", "code": 200}),
                400,
                "admission webhook \"w.x.dev\" denied the request: Nope",
            ),
            (
                json!({"message": "no", "code": 403, "reason": "Forbidden"}),
                403,
                "admission webhook \"w.x.dev\" denied the request: no",
            ),
        ];
        for (result, code, message) in cases {
            let e = denial("w.x.dev", &result);
            let status = e.to_status();
            assert_eq!(e.code, code);
            assert_eq!(status["code"], code);
            assert_eq!(status["message"], message);
            assert_eq!(status["status"], "Failure");
            assert_eq!(status["kind"], "Status");
        }
        assert_eq!(
            denial("w", &json!({"code": 403, "reason": "Forbidden"})).to_status()["reason"],
            "Forbidden"
        );
    }
}
