//! The Helm chart: `helm lint` and `helm template` with the optional parts
//! on and off, checks of what the rendered manifests promise (hardened pod,
//! least-privilege RBAC), and the rendered manifests applied to the emulator
//! by server-side apply.
//!
//! Needs `helm` (scripts/install-helm.sh installs it; CI does); skips with a
//! note when it is missing so that a plain `cargo test` works anywhere.
//!
//! Kinds the emulator does not serve are checked here by content only and
//! not applied: RBAC (ClusterRole, ClusterRoleBinding, Role, RoleBinding),
//! Service, PodDisruptionBudget, ServiceMonitor, PrometheusRule,
//! ValidatingAdmissionPolicy and its binding, NetworkPolicy ([`NOT_SERVED`]).
//! The verifier's own Deployment, the user roles and the NetworkPolicies are
//! checked in `chart_least_privilege`.

use std::path::PathBuf;
use std::process::Command;

use crate::support::Cluster;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery;
use serde::Deserialize;
use serde_json::Value;

pub(super) const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/apikey-operator");

/// Rendered kinds the emulator does not serve; anything else must apply.
const NOT_SERVED: &[&str] = &[
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "PodDisruptionBudget",
    "ServiceMonitor",
    "PrometheusRule",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "NetworkPolicy",
];

/// Every optional part on.
const ALL_ON: &[&str] = &[
    "admissionPolicy.enabled=true",
    "metrics.serviceMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "metrics.dashboard.enabled=true",
    "rbac.restartTargets=true",
    "verifier.clientCA.configMapName=apiserver-client-ca",
    "verifier.audiences={https://kubernetes.default.svc,gateway}",
];

pub(super) fn helm() -> Option<PathBuf> {
    let cached = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/apikey-operator-tools/bin/helm"));
    cached.filter(|p| p.is_file()).or_else(|| {
        Command::new("helm")
            .arg("version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|_| PathBuf::from("helm"))
    })
}

macro_rules! require_helm {
    () => {
        match helm() {
            Some(h) => h,
            None => {
                eprintln!("skipped: helm not installed (run scripts/install-helm.sh)");
                return;
            }
        }
    };
}

pub(super) fn run(helm: &PathBuf, args: &[&str]) -> String {
    let out = Command::new(helm).args(args).output().expect("helm runs");
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

pub(super) fn template(helm: &PathBuf, sets: &[&str], extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", "ako", CHART, "--namespace", "apikey-system"];
    for set in sets {
        args.extend(["--set", set]);
    }
    args.extend(extra);
    let text = run(helm, &args);
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

pub(super) fn find<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn lint_passes_with_and_without_the_optional_parts() {
    let helm = require_helm!();
    run(&helm, &["lint", "--strict", CHART]);
    let mut args = vec!["lint", "--strict", CHART];
    for set in ALL_ON {
        args.extend(["--set", set]);
    }
    run(&helm, &args);
    for set in [
        "watchNamespace=team-a",
        "verifier.separate=false",
        "verifier.tls.enabled=false",
        "verifier.tlsSecretName=my-tls",
        "networkPolicy.enabled=false",
        "rbac.userRoles.create=false",
    ] {
        run(&helm, &["lint", "--strict", CHART, "--set", set]);
    }
}

pub(super) fn args_of(deployment: &Value) -> Vec<&str> {
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

#[test]
fn the_pods_are_hardened_and_probed_on_the_admin_port() {
    let helm = require_helm!();
    let docs = template(&helm, &[], &[]);
    let deployments = find(&docs, "Deployment");
    assert_eq!(deployments.len(), 2, "the operator and the verifier");
    for deployment in &deployments {
        hardened_and_probed(deployment);
    }
    let args = args_of(deployments[0]);
    for want in [
        "run",
        "--leader-elect",
        "--components=controller,webhook",
        "--admin-addr=0.0.0.0:9090",
        "--webhook-addr=0.0.0.0:9443",
    ] {
        assert!(args.contains(&want), "{want} missing from {args:?}");
    }
    assert_eq!(deployments[0]["spec"]["replicas"], 2);
    assert_eq!(deployments[1]["spec"]["replicas"], 2);
    let services: Vec<&str> = find(&docs, "Service")
        .iter()
        .filter_map(|s| s["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        services,
        [
            "ako-apikey-operator-verifier",
            "ako-apikey-operator-metrics",
            "ako-apikey-operator-webhook"
        ]
    );
}

fn hardened_and_probed(deployment: &Value) {
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(container["resources"]["limits"]["memory"].is_string());
    assert!(container["resources"]["requests"]["cpu"].is_string());
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "admin");
}

#[test]
fn rbac_is_least_privilege() {
    let helm = require_helm!();
    let rules_of = |docs: &[Value], kind: &str| -> Vec<(String, String, String)> {
        let operators = find(docs, kind)
            .into_iter()
            .filter(|r| !is_verifier_or_user_role(r))
            .collect::<Vec<_>>();
        rules(&operators)
    };
    let docs = template(&helm, &[], &[]);
    let rules = rules_of(&docs, "ClusterRole");
    let expected = [
        ("apikeys.dev", "apikeys", "get,list,watch,patch"),
        ("apikeys.dev", "apitokens", "get,list,watch,patch"),
        ("apikeys.dev", "apikeys/status", "patch"),
        ("apikeys.dev", "apitokens/status", "patch"),
        ("", "secrets", "get,list,watch,create,patch,delete"),
        ("", "serviceaccounts", "get,list,watch"),
        ("events.k8s.io", "events", "create,patch"),
        // The admission webhook: access reviews, and its own configuration's caBundle.
        ("authorization.k8s.io", "subjectaccessreviews", "create"),
        (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            "get,list,watch,update",
        ),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
        .collect();
    assert_eq!(rules, expected);
    assert_eq!(
        rules_of(&docs, "Role"),
        [
            // The webhook's certificate Secret (get and update by name; create cannot be).
            ("".to_owned(), "secrets".to_owned(), "get,update".to_owned()),
            ("".to_owned(), "secrets".to_owned(), "create".to_owned()),
            // The verifier's: its certificate Secret and its CA's ConfigMap, by name.
            ("".to_owned(), "secrets".to_owned(), "get,update".to_owned()),
            (
                "".to_owned(),
                "configmaps".to_owned(),
                "get,update".to_owned()
            ),
            ("".to_owned(), "secrets".to_owned(), "create".to_owned()),
            ("".to_owned(), "configmaps".to_owned(), "create".to_owned()),
            (
                "coordination.k8s.io".to_owned(),
                "leases".to_owned(),
                "get,create,update".to_owned()
            ),
        ]
    );
    // Only the configuration of this release, only the Secret of this release.
    let named = |kind: &str, resource: &str| -> Vec<String> {
        find(&docs, kind)
            .iter()
            .flat_map(|r| r["rules"].as_array().into_iter().flatten())
            .filter(|rule| rule["resources"][0] == resource && rule["verbs"][0] != "create")
            .flat_map(|rule| {
                rule["resourceNames"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        named("ClusterRole", "validatingwebhookconfigurations"),
        ["ako-apikey-operator"]
    );
    assert_eq!(
        named("Role", "secrets"),
        [
            "ako-apikey-operator-webhook-tls",
            "ako-apikey-operator-verifier-tls"
        ]
    );
    assert_eq!(
        named("Role", "configmaps"),
        ["ako-apikey-operator-verifier-ca"]
    );
    let all = serde_json::to_string(&docs).expect("json");
    assert!(!all.contains("\"*\""), "no wildcards anywhere");

    let with_targets = template(&helm, &["rbac.restartTargets=true"], &[]);
    let rules = rules_of(&with_targets, "ClusterRole");
    for workload in ["deployments", "statefulsets", "daemonsets"] {
        assert!(rules.contains(&("apps".into(), workload.into(), "get,patch".into())));
    }

    let namespaced = template(&helm, &["watchNamespace=team-a"], &[]);
    // Only the webhook's cluster-scoped needs (and the roles for people) stay in ClusterRoles.
    let cluster_roles: Vec<&Value> = find(&namespaced, "ClusterRole");
    let names: Vec<&str> = cluster_roles
        .iter()
        .filter_map(|r| r["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "ako-apikey-operator-webhook",
            "ako-apikey-operator-apikeys-view",
            "ako-apikey-operator-apikeys-edit"
        ]
    );
    let roles = find(&namespaced, "Role");
    assert!(roles.iter().any(|r| r["metadata"]["namespace"] == "team-a"));
}

/// The verifier's role and the roles for people, checked in `chart_least_privilege`.
fn is_verifier_or_user_role(role: &Value) -> bool {
    let name = role["metadata"]["name"].as_str().unwrap_or_default();
    name.ends_with("-verifier") || name.contains("-apikeys-")
}

/// Every (apiGroup, resource, verbs) the roles grant, in order.
pub(super) fn rules(roles: &[&Value]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for role in roles {
        for rule in role["rules"].as_array().expect("rules") {
            for group in rule["apiGroups"].as_array().expect("groups") {
                for resource in rule["resources"].as_array().expect("resources") {
                    let verbs: Vec<&str> = rule["verbs"]
                        .as_array()
                        .expect("verbs")
                        .iter()
                        .filter_map(Value::as_str)
                        .collect();
                    out.push((
                        group.as_str().unwrap_or_default().to_owned(),
                        resource.as_str().unwrap_or_default().to_owned(),
                        verbs.join(","),
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn several_replicas_need_leader_election() {
    let helm = require_helm!();
    let out = Command::new(&helm)
        .args([
            "template",
            "ako",
            CHART,
            "--set",
            "leaderElection.enabled=false",
        ])
        .output()
        .expect("helm runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs leaderElection.enabled=true"));
}

/// Applies every rendered document the emulator serves, by server-side apply; the kinds applied.
pub(super) async fn apply_rendered(cluster: &Cluster, docs: Vec<Value>) -> Vec<String> {
    let mut applied = Vec::new();
    for doc in docs {
        let object: DynamicObject = serde_json::from_value(doc).expect("object");
        let types = object.types.clone().expect("apiVersion and kind");
        let gvk = GroupVersionKind::try_from(&types).expect("gvk");
        let name = object.metadata.name.clone().expect("name");
        let Ok((resource, caps)) = discovery::pinned_kind(&cluster.client, &gvk).await else {
            assert!(
                NOT_SERVED.contains(&types.kind.as_str()),
                "{} is not served by the emulator and not in the documented skip list",
                types.kind
            );
            continue;
        };
        let api: Api<DynamicObject> = match caps.scope {
            discovery::Scope::Namespaced => Api::namespaced_with(
                cluster.client.clone(),
                object
                    .metadata
                    .namespace
                    .as_deref()
                    .unwrap_or("apikey-system"),
                &resource,
            ),
            discovery::Scope::Cluster => Api::all_with(cluster.client.clone(), &resource),
        };
        api.patch(
            &name,
            &PatchParams::apply("helm-test").force(),
            &Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {} {name}: {e}", types.kind));
        applied.push(types.kind);
    }
    applied
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_manifests_apply_to_the_emulator() {
    let helm = require_helm!();
    let docs = template(&helm, ALL_ON, &["--include-crds"]);
    let cluster = Cluster::start("apikey-system").await;
    let applied = apply_rendered(&cluster, docs).await;
    for kind in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "Deployment",
        "ConfigMap",
        "ClusterRole",
        "ValidatingWebhookConfiguration",
    ] {
        assert!(
            applied.iter().any(|k| k == kind),
            "{kind} was not applied: {applied:?}"
        );
    }
}
