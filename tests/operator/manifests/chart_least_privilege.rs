//! The chart's least privilege (issue 22, item 9), by content: the verifier in
//! its own Deployment under an account that reads keys and tokens and writes
//! only `lastUsedAt`, over TLS by default; roles for people that join the
//! built-in ones and never grant status; NetworkPolicies for the served ports.
//! `chart_rbac` runs both Deployments on these permissions.

use super::helm_chart::{args_of, find, helm, rules, template};
use serde_json::{Value, json};

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    find(docs, kind)
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn owned(rules: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    rules
        .iter()
        .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_verifier_runs_alone_over_tls_from_the_operators_secret() {
    let helm = require_helm!();
    let docs = template(&helm, &["verifier.audiences={aud-a,aud-b}"], &[]);
    let operator = named(&docs, "Deployment", "ako-apikey-operator");
    let verifier = named(&docs, "Deployment", "ako-apikey-operator-verifier");
    let args = args_of(verifier);
    for want in [
        "--components=verifier",
        "--verify-addr=0.0.0.0:8443",
        "--verify-tls-cert=/etc/apikey-operator/tls/tls.crt",
        "--verify-tls-key=/etc/apikey-operator/tls/tls.key",
        "--audience=aud-a",
        "--audience=aud-b",
    ] {
        assert!(args.contains(&want), "{want} missing from {args:?}");
    }
    assert!(
        !args
            .iter()
            .any(|a| a.starts_with("--leader") || a.starts_with("--webhook")),
        "{args:?}"
    );
    let pod = &verifier["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "ako-apikey-operator-verifier");
    // Only the serving pair is mounted, never the CA's key.
    assert_eq!(
        pod["volumes"][0]["secret"],
        json!({"secretName": "ako-apikey-operator-verifier-tls", "items": [
            {"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}]})
    );
    // The operator makes that Secret and publishes the CA; it serves no verifier.
    let args = args_of(operator);
    for want in [
        "--components=controller,webhook",
        "--verify-cert-secret=ako-apikey-operator-verifier-tls",
        "--verify-cert-service=ako-apikey-operator-verifier",
        "--verify-ca-configmap=ako-apikey-operator-verifier-ca",
    ] {
        assert!(args.contains(&want), "{want} missing from {args:?}");
    }
    assert!(!args.iter().any(|a| a.starts_with("--verify-addr")));
    // Neither Deployment's selector matches the other's pods.
    let labels = |d: &Value| d["spec"]["template"]["metadata"]["labels"].clone();
    let matches = |d: &Value, pod: &Value| {
        let selector = d["spec"]["selector"]["matchLabels"].as_object().cloned();
        selector
            .expect("matchLabels")
            .iter()
            .all(|(k, v)| pod[k] == *v)
    };
    assert!(!matches(operator, &labels(verifier)));
    assert!(!matches(verifier, &labels(operator)));
    let service = named(&docs, "Service", "ako-apikey-operator-verifier");
    assert!(matches(
        &json!({"spec": {"selector": {"matchLabels": service["spec"]["selector"]}}}),
        &labels(verifier)
    ));
    assert_eq!(find(&docs, "PodDisruptionBudget").len(), 2);

    // In the operator's pods, it serves with the certificate it makes.
    let together = template(&helm, &["verifier.separate=false"], &[]);
    let deployments = find(&together, "Deployment");
    assert_eq!(deployments.len(), 1);
    let args = args_of(deployments[0]);
    assert!(!args.iter().any(|a| a.starts_with("--components")));
    assert!(args.contains(&"--verify-cert-secret=ako-apikey-operator-verifier-tls"));
    assert!(!args.iter().any(|a| a.starts_with("--verify-tls-cert")));

    // Plain HTTP only when asked for.
    let plain = template(&helm, &["verifier.tls.enabled=false"], &[]);
    let all = serde_json::to_string(&plain).expect("json");
    assert!(!all.contains("--verify-tls") && !all.contains("--verify-cert"));
    assert!(!all.contains("verifier-tls"), "no Secret, no Role for it");
}

#[test]
fn the_verifiers_account_reads_keys_and_tokens_and_writes_only_last_used() {
    let helm = require_helm!();
    let want = owned(&[
        ("apikeys.dev", "apikeys", "get,list,watch"),
        ("apikeys.dev", "apitokens", "get,list,watch"),
        ("apikeys.dev", "apitokens/status", "patch"),
        // Which ServiceAccounts exist (metadata only): a ServiceAccount key's values stop
        // with its ServiceAccount.
        ("", "serviceaccounts", "list,watch"),
    ]);
    let docs = template(&helm, &[], &[]);
    let role = named(&docs, "ClusterRole", "ako-apikey-operator-verifier");
    assert_eq!(rules(&[role]), want);
    let binding = named(&docs, "ClusterRoleBinding", "ako-apikey-operator-verifier");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "ako-apikey-operator-verifier",
            "namespace": "apikey-system"}])
    );
    // No other role names the verifier's account.
    let bound: Vec<&Value> = ["ClusterRoleBinding", "RoleBinding"]
        .iter()
        .flat_map(|kind| find(&docs, kind))
        .filter(|b| b["subjects"][0]["name"] == "ako-apikey-operator-verifier")
        .collect();
    assert_eq!(bound.len(), 1);

    let namespaced = template(&helm, &["watchNamespace=team-a"], &[]);
    let role = named(&namespaced, "Role", "ako-apikey-operator-verifier");
    assert_eq!(role["metadata"]["namespace"], "team-a");
    assert_eq!(rules(&[role]), want);
}

#[test]
fn roles_for_people_join_view_edit_and_admin_and_never_grant_status() {
    let helm = require_helm!();
    let docs = template(&helm, &[], &[]);
    let aggregates = |role: &Value| -> Vec<String> {
        let labels = role["metadata"]["labels"].as_object().cloned();
        let mut out: Vec<String> = labels
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, v)| v == "true")
            .filter_map(|(k, _)| {
                k.strip_prefix("rbac.authorization.k8s.io/aggregate-to-")
                    .map(str::to_owned)
            })
            .collect();
        out.sort();
        out
    };
    let view = named(&docs, "ClusterRole", "ako-apikey-operator-apikeys-view");
    let edit = named(&docs, "ClusterRole", "ako-apikey-operator-apikeys-edit");
    assert_eq!(aggregates(view), ["admin", "edit", "view"]);
    assert_eq!(aggregates(edit), ["admin", "edit"]);
    assert_eq!(
        rules(&[view]),
        owned(&[
            ("apikeys.dev", "apikeys", "get,list,watch"),
            ("apikeys.dev", "apitokens", "get,list,watch"),
        ])
    );
    let edit_verbs = "get,list,watch,create,update,patch,delete,deletecollection";
    assert_eq!(
        rules(&[edit]),
        owned(&[
            ("apikeys.dev", "apikeys", edit_verbs),
            ("apikeys.dev", "apitokens", edit_verbs),
        ])
    );
    let off = template(&helm, &["rbac.userRoles.aggregate=false"], &[]);
    let edit = named(&off, "ClusterRole", "ako-apikey-operator-apikeys-edit");
    assert!(aggregates(edit).is_empty());
}

#[test]
fn network_policies_admit_only_the_served_ports() {
    let helm = require_helm!();
    let docs = template(&helm, &[], &[]);
    let ingress = |name: &str| -> Vec<(String, Value)> {
        let policy = named(&docs, "NetworkPolicy", name);
        assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));
        policy["spec"]["ingress"]
            .as_array()
            .expect("ingress")
            .iter()
            .map(|rule| {
                let port = rule["ports"][0]["port"].as_str().expect("a named port");
                (port.to_owned(), rule["from"].clone())
            })
            .collect()
    };
    let in_cluster = json!([{"namespaceSelector": {}}]);
    assert_eq!(
        ingress("ako-apikey-operator"),
        [
            ("webhook".to_owned(), Value::Null),
            ("admin".to_owned(), in_cluster.clone()),
        ]
    );
    assert_eq!(
        ingress("ako-apikey-operator-verifier"),
        [
            ("verify".to_owned(), Value::Null),
            ("admin".to_owned(), in_cluster),
        ]
    );
    // Each policy selects its Deployment's pods, and names only ports they declare.
    for (policy, deployment) in [
        ("ako-apikey-operator", "ako-apikey-operator"),
        (
            "ako-apikey-operator-verifier",
            "ako-apikey-operator-verifier",
        ),
    ] {
        let policy = named(&docs, "NetworkPolicy", policy);
        let pod = &named(&docs, "Deployment", deployment)["spec"]["template"];
        let selector = policy["spec"]["podSelector"]["matchLabels"]
            .as_object()
            .expect("selector");
        assert!(
            selector
                .iter()
                .all(|(k, v)| pod["metadata"]["labels"][k] == *v)
        );
        let declared: Vec<&Value> = pod["spec"]["containers"][0]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| &p["name"])
            .collect();
        for rule in policy["spec"]["ingress"].as_array().expect("ingress") {
            assert!(declared.contains(&&rule["ports"][0]["port"]), "{rule}");
        }
    }
}
