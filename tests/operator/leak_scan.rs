//! No token value leaks: a representative run — issue, scheduled and
//! requested rotation, revocation, tampering, a deleted Secret, expiry, verification over
//! HTTP (TokenReview, `Authorization: Bearer`, `X-API-Key`) — while every
//! value that ever sits in a Secret is collected. Then no value, nor its
//! 43-character secret part, may appear in:
//! - the operator binary's stderr at `RUST_LOG=debug` (and the panic report, if any);
//! - in-process logs at `trace` for every crate (kube-client, hyper, the
//!   controller, the verifier and the emulator itself);
//! - Events (events.k8s.io/v1 and core/v1), ApiTokens and ApiKeys (spec,
//!   status, annotations, managed fields);
//! - `/metrics` of the admin port and any `/metrics` the verifier answers.
//!
//! The forged values written into Secrets while tampering are scanned for too.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::isolated::Isolated;
use crate::support::ports::free_ports;
use crate::support::process::{OperatorProcess, listening_addr};
use crate::support::temp_dir::temp_dir;
use crate::support::*;
use apikey_operator::api::{ApiKey, ApiToken, REVOKE_ANNOTATION, ROTATE_ANNOTATION};
use apikey_operator::token::{self, TokenId, TokenKind};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

/// Token values look like `akpat_<16-char id>_<43-char secret><6-char checksum>`.
fn secret_part(value: &str) -> &str {
    let after_id = value.match_indices('_').nth(1).map_or(0, |(i, _)| i + 1);
    &value[after_id..(after_id + 43).min(value.len())]
}

/// Every value ever seen in a Secret of the namespace (collected every 20 ms).
#[derive(Clone, Default)]
struct Values(Arc<Mutex<BTreeSet<String>>>);

impl Values {
    fn add(&self, v: String) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(v);
    }
    fn all(&self) -> BTreeSet<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    async fn collect(&self, secrets: &Api<Secret>) {
        if let Ok(list) = secrets.list(&ListParams::default()).await {
            for s in list.items {
                for v in s.data.unwrap_or_default().into_values() {
                    if let Ok(v) = String::from_utf8(v.0)
                        && v.len() > 60
                    {
                        self.add(v);
                    }
                }
            }
        }
    }
}

/// Fails naming every place where a value or its secret part shows up.
fn assert_no_leak(values: &BTreeSet<String>, haystacks: &[(&str, &str)]) {
    let mut leaks = Vec::new();
    for value in values {
        let secret = secret_part(value);
        assert_eq!(secret.len(), 43, "not a token value: {value:?}");
        for (place, text) in haystacks {
            if text.contains(value.as_str()) || text.contains(secret) {
                leaks.push(format!("{}… in {place}", &value[..24]));
            }
        }
    }
    assert!(leaks.is_empty(), "token values leaked: {leaks:#?}");
}

const MANIFESTS: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: robot, namespace: leaks}
---
apiVersion: apikeys.dev/v1alpha1
kind: ApiKey
metadata: {name: alice, namespace: leaks}
spec:
  owner: {kind: User, name: alice}
---
apiVersion: apikeys.dev/v1alpha1
kind: ApiKey
metadata: {name: robot, namespace: leaks}
spec:
  owner: {kind: ServiceAccount, name: robot}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: leaks}
spec:
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec: {containers: [{name: app, image: app}]}
---
apiVersion: apikeys.dev/v1alpha1
kind: ApiToken
metadata: {name: plain, namespace: leaks}
spec:
  apiKeyRef: {name: alice}
---
apiVersion: apikeys.dev/v1alpha1
kind: ApiToken
metadata: {name: rotating, namespace: leaks}
spec:
  apiKeyRef: {name: robot}
  expiration: {lifetime: 1h}
  rotation:
    renewBefore: 59m58s
    gracePeriod: 1m
    restartTargets: [{kind: Deployment, name: app}]
---
apiVersion: apikeys.dev/v1alpha1
kind: ApiToken
metadata: {name: short, namespace: leaks}
spec:
  apiKeyRef: {name: alice}
  expiration: {lifetime: 3s}
---
apiVersion: apikeys.dev/v1alpha1
kind: ApiToken
metadata: {name: deleted, namespace: leaks}
spec:
  apiKeyRef: {name: robot}
  secret: {name: deleted-secret, key: api-key}
"#;
const NS: &str = "leaks";

/// The scenario: issue, rotate on request and on schedule, revoke, tamper, delete a
/// Secret, expire, and verify every value over HTTP. Returns the forged values.
async fn scenario(client: &Client, verifier: SocketAddr, values: &Values) -> Vec<String> {
    apikey_operator::cli::apply::apply_manifests(client, "scenario", MANIFESTS)
        .await
        .expect("manifests applied");
    let tokens: Api<ApiToken> = Api::namespaced(client.clone(), NS);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let collector = tokio::spawn({
        let (values, secrets) = (values.clone(), secrets.clone());
        async move {
            loop {
                values.collect(&secrets).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    for name in ["plain", "rotating", "short", "deleted"] {
        wait_for(&tokens, name, "Ready", token_condition("Ready", "True")).await;
    }

    // Requested rotations.
    for request in ["first", "second"] {
        tokens
            .patch(
                "plain",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {ROTATE_ANNOTATION: request}}})),
            )
            .await
            .expect("rotate request");
        wait_for(&tokens, "plain", "the rotation", |t: Option<&ApiToken>| {
            t.and_then(|t| t.status.as_ref()).is_some_and(|s| {
                s.last_rotation_request.as_deref().map(String::as_str) == Some(request)
                    && s.hash.is_some()
            })
        })
        .await;
    }

    // A revocation: the values in grace go with the current one.
    tokens
        .patch(
            "plain",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {REVOKE_ANNOTATION: "leaked"}}})),
        )
        .await
        .expect("revoke request");
    wait_for(
        &tokens,
        "plain",
        "the revocation",
        |t: Option<&ApiToken>| {
            t.and_then(|t| t.status.as_ref()).is_some_and(|s| {
                s.last_revocation_request.as_deref().map(String::as_str) == Some("leaked")
                    && s.hash.is_some()
                    && s.pending.is_none()
            })
        },
    )
    .await;

    // Tampering: a well-formed forged value with the token's real id.
    let plain = tokens.get("plain").await.expect("plain");
    let id = plain
        .status
        .as_ref()
        .and_then(|s| s.token_id.clone())
        .expect("token id");
    let forged = token::generate(TokenKind::Personal, &TokenId::parse(&id).expect("id"))
        .expose_secret()
        .to_owned();
    let before = plain.status.and_then(|s| s.hash);
    secrets
        .patch(
            "plain",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"token": ByteString(forged.clone().into_bytes())}})),
        )
        .await
        .expect("tamper");
    wait_for(&tokens, "plain", "the reissue", |t: Option<&ApiToken>| {
        t.and_then(|t| t.status.as_ref())
            .is_some_and(|s| s.hash.is_some() && s.hash != before)
    })
    .await;

    // A deleted Secret is reissued.
    let before = tokens
        .get("deleted")
        .await
        .expect("deleted")
        .status
        .and_then(|s| s.hash);
    secrets
        .delete("deleted-secret", &Default::default())
        .await
        .expect("Secret deleted");
    wait_for(&tokens, "deleted", "the reissue", |t: Option<&ApiToken>| {
        t.and_then(|t| t.status.as_ref())
            .is_some_and(|s| s.hash.is_some() && s.hash != before)
    })
    .await;

    // Renewals (every 2 s) and the expiry of `short` (3 s).
    wait_for(
        &tokens,
        "rotating",
        "two rotations",
        |t: Option<&ApiToken>| {
            t.and_then(|t| t.status.as_ref())
                .is_some_and(|s| s.rotations.unwrap_or(0) >= 2)
        },
    )
    .await;
    wait_for(
        &tokens,
        "short",
        "Expired",
        token_condition("Expired", "True"),
    )
    .await;

    // Verify every value seen, and the forged one, in all three ways.
    values.collect(&secrets).await;
    for value in values.all().iter().chain([&forged]) {
        let _ = authenticated(verifier, value).await;
        for header in ["Authorization", "X-API-Key"] {
            let v = if header == "Authorization" {
                format!("Bearer {value}")
            } else {
                value.clone()
            };
            let _ =
                crate::support::http::request(verifier, "GET", "/auth", &[(header, &v)], "").await;
        }
    }
    let current = secret_value(&secrets.get("rotating").await.expect("Secret"), "token");
    assert!(
        authenticated(verifier, &current).await,
        "the scenario verifies real values"
    );
    collector.abort();
    vec![forged]
}

/// Everything the API holds about the run, as text.
async fn api_texts(client: &Client) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let ev: Api<k8s_openapi::api::events::v1::Event> = Api::all(client.clone());
    let list = ev.list(&Default::default()).await.expect("events");
    assert!(!list.items.is_empty(), "the run published Events");
    out.push((
        "events.k8s.io Events".into(),
        serde_json::to_string(&list).expect("json"),
    ));
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::all(client.clone());
    let list = core.list(&Default::default()).await.expect("core events");
    out.push((
        "core Events".into(),
        serde_json::to_string(&list).expect("json"),
    ));
    let tokens: Api<ApiToken> = Api::all(client.clone());
    let list = tokens.list(&Default::default()).await.expect("tokens");
    out.push((
        "ApiTokens".into(),
        serde_json::to_string(&list).expect("json"),
    ));
    let keys: Api<ApiKey> = Api::all(client.clone());
    let list = keys.list(&Default::default()).await.expect("keys");
    out.push((
        "ApiKeys".into(),
        serde_json::to_string(&list).expect("json"),
    ));
    let deployments: Api<Deployment> = Api::all(client.clone());
    let list = deployments
        .list(&Default::default())
        .await
        .expect("deployments");
    out.push((
        "Deployments".into(),
        serde_json::to_string(&list).expect("json"),
    ));
    out
}

async fn metrics(addr: SocketAddr) -> String {
    let (_, _, body) = crate::support::http::request(addr, "GET", "/metrics", &[], "").await;
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_binary_at_debug_never_logs_or_publishes_a_value() {
    let cluster = Cluster::start(NS).await;
    let dir = temp_dir("leaks");
    let kubeconfig = dir.join("kubeconfig");
    cluster
        .emulator
        .write_kubeconfig(&kubeconfig)
        .expect("kubeconfig");
    let [admin_port] = free_ports();
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
    let log = dir.join("operator.log");
    let mut operator = OperatorProcess::spawn(
        &kubeconfig,
        &[
            ("RUST_LOG", "debug"),
            ("APIKEY_OPERATOR_ADMIN_ADDR", &admin.to_string()),
        ],
        &log,
    );
    let verifier = listening_addr(&operator.wait_for_log("verifier listening", DEADLINE).await);
    let values = Values::default();
    let forged = scenario(&cluster.client, verifier, &values).await;
    assert!(operator.running(), "the operator is still running");

    let admin_metrics = metrics(admin).await;
    assert!(
        admin_metrics.contains("apikey_operator_values_issued_total"),
        "the admin port served the operator's metrics: {admin_metrics}"
    );
    let verifier_metrics = metrics(verifier).await;
    let mut all = values.all();
    assert!(all.len() >= 8, "only {} values collected", all.len());
    all.extend(forged);
    operator.kill();
    let log_text = std::fs::read_to_string(&log).expect("log");
    assert!(
        log_text.contains("DEBUG"),
        "the operator logged at debug level"
    );
    assert!(
        !log_text.contains("panicked at"),
        "the operator panicked:\n{log_text}"
    );
    let api = api_texts(&cluster.client).await;
    let mut haystacks: Vec<(&str, &str)> = vec![
        ("the operator's log (RUST_LOG=debug)", &log_text),
        ("the admin /metrics", &admin_metrics),
        ("the verifier's /metrics", &verifier_metrics),
    ];
    haystacks.extend(api.iter().map(|(p, t)| (p.as_str(), t.as_str())));
    assert_no_leak(&all, &haystacks);
    println!(
        "{} values scanned in {} KiB of debug log, {} KiB of API objects",
        all.len(),
        log_text.len() / 1024,
        api.iter().map(|(_, t)| t.len()).sum::<usize>() / 1024
    );
}

#[test]
fn trace_logs_of_every_crate_in_process_never_hold_a_value() {
    let (test, logs) = Isolated::with_trace_logs();
    test.block_on(async {
        let values = Values::default();
        let cluster = Cluster::start(NS).await;
        let operator = cluster.controller();
        let verifier = InProcessVerifier::start(cluster.client.clone()).await;
        let forged = scenario(&cluster.client, verifier.addr, &values).await;
        let verifier_metrics = metrics(verifier.addr).await;
        let api = api_texts(&cluster.client).await;
        assert!(operator.is_running(), "the controller is still running");
        operator.stop().await;
        let text = logs.text();
        assert!(
            text.contains("TRACE") && text.contains("kube_client"),
            "the capture holds trace logs of the kube client"
        );
        let mut all = values.all();
        assert!(all.len() >= 8, "only {} values collected", all.len());
        all.extend(forged);
        let mut haystacks: Vec<(&str, &str)> = vec![
            ("in-process trace logs", &text),
            ("the verifier's /metrics", &verifier_metrics),
        ];
        haystacks.extend(api.iter().map(|(p, t)| (p.as_str(), t.as_str())));
        assert_no_leak(&all, &haystacks);
        assert_eq!(test.panics(), 0, "something panicked");
        println!(
            "{} values scanned in {} KiB of trace logs",
            all.len(),
            text.len() / 1024
        );
    });
}

/// The scan itself finds a value, or only its secret part, where it should not be.
#[test]
fn the_scan_finds_a_planted_value() {
    let id = TokenId::generate();
    let value = token::generate(TokenKind::ServiceAccount, &id)
        .expose_secret()
        .to_owned();
    let values = BTreeSet::from([value.clone()]);
    assert_no_leak(&values, &[("clean", "nothing to see")]);
    let secret_only = format!("prefix {} suffix", secret_part(&value));
    for planted in [value.as_str(), secret_only.as_str()] {
        let found = std::panic::catch_unwind(|| assert_no_leak(&values, &[("log", planted)]));
        assert!(found.is_err(), "the scan missed {planted:?}");
    }
}
