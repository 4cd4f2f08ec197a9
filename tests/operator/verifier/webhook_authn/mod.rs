//! The verifier under Kubernetes' own webhook token authenticator: the upstream server of the
//! fidelity tests (`support::upstream`, k8s.io/apiserver from Debian's packages) started with
//! kube-apiserver's `--authentication-token-webhook-*` flags and docs/verifier.md's kubeconfig,
//! pointed at this process's verifier over TLS, asked with ApiToken values as bearer tokens
//! (kubectl and a kube client). It answers SelfSubjectReview, so a test sees whom it
//! authenticated. `front` stands between the two where a test needs faults. Every test skips
//! with a note when the upstream build is missing, unless `APIKEY_UPSTREAM_REQUIRED=1` (CI).

mod audiences;
mod doc_config;
mod front;
mod identity;
mod outage;
mod revocation;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use apikey_operator::certs::Authority;
use apikey_operator::verifier::watch::SharedIndex;
use apikey_operator::verifier::{self, VerifierConfig};
use k8s_openapi::api::core::v1::Secret;
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support::temp_dir::{TempDir, temp_dir};
use crate::support::upstream::Upstream;
use crate::support::*;

pub(super) const NS: &str = "webhook";

/// A CA and a serving certificate for 127.0.0.1 from it, as PEM files in a test directory.
pub(super) struct Pki {
    pub dir: TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn new(tag: &str) -> Pki {
        let dir = temp_dir(tag);
        let now = jiff::Timestamp::now();
        let authority = Authority::new(now).expect("CA");
        let serving = authority
            .issue(&["127.0.0.1".to_owned()], now)
            .expect("serving certificate");
        let (ca, cert, key) = (dir.join("ca.crt"), dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&ca, &authority.cert_pem).expect("write CA");
        std::fs::write(&cert, &serving.cert_pem).expect("write certificate");
        std::fs::write(&key, &serving.key_pem).expect("write key");
        Pki { dir, ca, cert, key }
    }
}

/// A verifier served in this process until stopped or dropped.
pub(super) struct RunningVerifier {
    pub addr: SocketAddr,
    pub index: SharedIndex,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningVerifier {
    /// Serves `cfg` (port 0 picks one) and waits until its watches synced.
    pub async fn start(client: kube::Client, cfg: VerifierConfig) -> RunningVerifier {
        let bound = verifier::bind(client, cfg).await.expect("verifier binds");
        let addr = bound.local_addr();
        let readiness = bound.readiness();
        let index = bound.index();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = bound
                .run(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        eventually("the verifier to be ready", || {
            let ready = readiness.ready();
            async move { ready.then_some(()) }
        })
        .await;
        RunningVerifier {
            addr,
            index,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Over TLS with `pki`'s serving certificate.
    pub async fn start_tls(client: kube::Client, pki: &Pki, audiences: &[&str]) -> RunningVerifier {
        let mut cfg = VerifierConfig {
            addr: "127.0.0.1:0".parse().expect("addr"),
            tls: Some((pki.cert.clone(), pki.key.clone())),
            ..Default::default()
        };
        if !audiences.is_empty() {
            cfg.audiences = audiences.iter().map(|a| (*a).to_owned()).collect();
        }
        RunningVerifier::start(client, cfg).await
    }
}

impl Drop for RunningVerifier {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The upstream server with the webhook token authenticator configured by `kubeconfig` (written
/// into `dir`) and `flags` (kube-apiserver's, plus the wrapper's own). `None`: skipped.
pub(super) async fn start_upstream(
    test: &str,
    dir: &Path,
    kubeconfig: &str,
    flags: Vec<String>,
) -> Option<Upstream> {
    let file = dir.join("apikey-webhook.yaml");
    std::fs::write(&file, kubeconfig).expect("write the webhook kubeconfig");
    let mut args = vec![format!(
        "--authentication-token-webhook-config-file={}",
        file.display()
    )];
    args.extend(flags);
    Upstream::start_with(test, &args).await
}

/// Who the upstream server says `value` is (its SelfSubjectReview's `status.userInfo`), or the
/// HTTP status it refused with. A kube client with the value as its bearer token.
pub(super) async fn whoami(upstream: &Upstream, value: &str) -> Result<Value, u16> {
    let kubeconfig = Kubeconfig::read_from(&upstream.kubeconfig).expect("kubeconfig");
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("config");
    config.auth_info = AuthInfo {
        token: Some(value.to_owned().into()),
        ..Default::default()
    };
    let client = kube::Client::try_from(config).expect("client");
    let body =
        serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let request = axum::http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
        .header("Content-Type", "application/json")
        .body(body.to_string().into_bytes())
        .expect("request");
    match client.request::<Value>(request).await {
        Ok(review) => Ok(review["status"]["userInfo"].clone()),
        Err(kube::Error::Api(status)) => Err(status.code),
        Err(e) => panic!("SelfSubjectReview to the upstream server: {e}"),
    }
}

/// `kubectl auth whoami -o json` against the upstream server with `value` as the token: the
/// user info, or kubectl's error output.
pub(super) async fn kubectl_whoami(upstream: &Upstream, value: &str) -> Result<Value, String> {
    let (server, ca, value) = (upstream.server_url(), upstream.ca_file(), value.to_owned());
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("kubectl")
            .env("KUBECONFIG", "/dev/null")
            .arg(format!("--server={server}"))
            .arg(format!("--certificate-authority={}", ca.display()))
            .arg(format!("--token={value}"))
            .args(["auth", "whoami", "-o", "json"])
            .output()
            .expect("kubectl runs (is /usr/bin/kubectl installed?)");
        if out.status.success() {
            let review: Value = serde_json::from_slice(&out.stdout).expect("kubectl's JSON");
            Ok(review["status"]["userInfo"].clone())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    })
    .await
    .expect("kubectl task")
}

/// The token's current value, once it is Ready.
pub(super) async fn value_of(cluster: &Cluster, name: &str) -> String {
    ready_token(&cluster.api(NS), name).await;
    let secret = cluster.api::<Secret>(NS).get(name).await.expect("Secret");
    secret_value(&secret, "token")
}

/// Polls `whoami` every 50 ms until the upstream server refuses `value` with 401; how long that
/// took from `since`. Fails after `within`.
pub(super) async fn refused_after(
    upstream: &Upstream,
    value: &str,
    since: Instant,
    within: Duration,
) -> Duration {
    loop {
        if whoami(upstream, value).await == Err(401) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < within,
            "the upstream server still accepts the value after {within:?}\n{}",
            upstream.server_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
