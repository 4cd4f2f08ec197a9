//! Every manifest under examples/ applied to the emulator with a running
//! controller, as a user would with `kubectl apply -f examples/`: each token
//! reaches the state its comment promises. Applied twice with kubectl to
//! `local`, as Argo CD keeps syncing the folder, nothing changes the second
//! time: no two files define one object differently.
//!
//! Not applied: examples/argocd/ (an Argo CD Application, a kind the
//! emulator does not serve; its health check is tested in manifests/argocd_health.rs).

use std::path::Path;

use crate::support::local::{kubectl, kubectl_with_input, start_ready};
use crate::support::temp_dir::temp_dir;
use crate::support::{Cluster, eventually, token_condition, token_reason, wait_for};
use apikey_operator::api::ApiToken;
use apikey_operator::api::conditions::{READY, reason};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_applies_and_reaches_its_documented_state() {
    let cluster = Cluster::start("scratch").await;
    let _operator = cluster.controller();
    let applied = apikey_operator::cli::apply::apply_path(&cluster.client, Path::new(EXAMPLES))
        .await
        .expect("examples apply");
    assert!(applied >= 12, "applied only {applied} objects");

    let tokens: Api<ApiToken> = cluster.api("examples");
    for name in ["alice-laptop", "deployer", "contractor-q1"] {
        wait_for(&tokens, name, "Ready", token_condition(READY, "True")).await;
    }
    wait_for(
        &tokens,
        "alice-old-ci",
        "Ready=False, reason Disabled",
        token_reason(reason::DISABLED),
    )
    .await;

    // The personal token's value lives 90 days.
    let laptop = tokens.get("alice-laptop").await.expect("token");
    let status = laptop.status.expect("status");
    let lifetime = status
        .expires_at
        .expect("expiresAt")
        .0
        .duration_since(status.issued_at.expect("issuedAt").0);
    assert_eq!(lifetime.as_hours(), 90 * 24);

    // The absolute expiry applies to the value.
    let contractor = tokens.get("contractor-q1").await.expect("token");
    assert_eq!(
        contractor
            .status
            .and_then(|s| s.expires_at)
            .map(|t| t.0.to_string()),
        Some("2099-03-31T23:59:59Z".to_owned())
    );

    // The service-account token: value in the named Secret under "token",
    // rotation scheduled 30 days out, and the consumer rolled onto it.
    let secrets: Api<Secret> = cluster.api("examples");
    let secret = secrets.get("deployer-api-token").await.expect("secret");
    assert!(crate::support::secret_value(&secret, "token").starts_with("aksat_"));
    let deployer = tokens.get("deployer").await.expect("token");
    let status = deployer.status.expect("status");
    let next = status.next_rotation_at.expect("nextRotationAt").0;
    assert_eq!(
        next.duration_since(status.issued_at.expect("issuedAt").0)
            .as_hours(),
        30 * 24
    );
    let deployments: Api<Deployment> = cluster.api("examples");
    crate::support::eventually("the consumer Deployment rolled", || async {
        let d = deployments.get("deployer").await.ok()?;
        let annotations = d.spec?.template.metadata?.annotations?;
        annotations
            .get("token-hash.apikeys.dev/deployer")
            .filter(|v| !v.is_empty())
            .map(|_| ())
    })
    .await;

    // The disabled token has no value anywhere.
    assert!(
        secrets
            .get_opt("alice-old-ci")
            .await
            .expect("get")
            .is_none(),
        "a disabled token keeps no Secret"
    );
}

/// Ready=True, or for a disabled token Ready=False with reason Disabled.
fn in_documented_state(token: &ApiToken) -> bool {
    let want = if token.spec.disabled {
        ("False", reason::DISABLED)
    } else {
        ("True", reason::ISSUED)
    };
    token.status.as_ref().is_some_and(|s| {
        s.pending.is_none()
            && s.conditions
                .iter()
                .any(|c| c.type_ == READY && (c.status.as_str(), c.reason.as_str()) == want)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_the_examples_twice_with_kubectl_changes_nothing() {
    let dir = temp_dir("examples-twice");
    let (_local, kubeconfig) = start_ready(&dir, &[]).await;

    let apply = ["apply", "-f", EXAMPLES];
    let (ok, first) = kubectl_with_input(&kubeconfig, &apply, "").await;
    assert!(ok, "kubectl apply -f examples/: {first}");
    let (ok, second) = kubectl_with_input(&kubeconfig, &apply, "").await;
    assert!(ok, "kubectl apply -f examples/ again: {second}");
    assert_eq!(
        first.lines().count(),
        second.lines().count(),
        "{first}\n{second}"
    );
    let changed: Vec<&str> = second
        .lines()
        .filter(|l| !l.ends_with(" unchanged"))
        .collect();
    assert!(
        changed.is_empty(),
        "the second apply changed {changed:?}; first apply:\n{first}"
    );

    let names = eventually("every token in its documented state", || async {
        let json = kubectl(&kubeconfig, &["get", "apitokens", "-A", "-o", "json"]).await?;
        let list: kube::core::ObjectList<ApiToken> = serde_json::from_str(&json).ok()?;
        let names: Vec<String> = list
            .items
            .iter()
            .map(|t| t.metadata.name.clone().unwrap_or_default())
            .collect();
        (names.len() >= 5 && list.items.iter().all(in_documented_state)).then_some(names)
    })
    .await;
    assert!(names.iter().any(|n| n == "alice-old-ci"), "{names:?}");
}

/// The Argo CD Application syncs examples/ and excludes only folders that exist there.
#[test]
fn the_argo_cd_application_excludes_only_what_exists() {
    let text = std::fs::read_to_string(Path::new(EXAMPLES).join("argocd/application.yaml"))
        .expect("application.yaml");
    let app: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
    let source = &app["spec"]["source"];
    assert_eq!(source["path"].as_str(), Some("examples"));
    let Some(exclude) = source["directory"]["exclude"].as_str() else {
        return;
    };
    for pattern in exclude.trim_matches(['{', '}']).split(',') {
        let folder = pattern.trim().trim_end_matches("/*");
        assert!(
            Path::new(EXAMPLES).join(folder).is_dir(),
            "exclude names {pattern:?}, which is not a folder of examples/"
        );
    }
}
