//! What the operator's and the verifier's ServiceAccounts may do: the RBAC
//! rules, as data. `local` grants exactly these to the ServiceAccounts it
//! runs the parts as, and `tests/operator/manifests/rbac_source.rs` checks
//! that the Helm chart renders the same rules (the chart is written by hand
//! for its conditionals; this is the one definition both are held to), so a
//! permission the chart forgets fails in `local` and in the tests as it would
//! on a cluster.

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use kube::api::ObjectMeta;

/// Which ServiceAccount a role is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Account {
    /// The controller and the webhook (and the verifier when not separate).
    Operator,
    /// The verifier in its own Deployment.
    Verifier,
}

/// A role: cluster-wide, or in a namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleSpec {
    pub name: String,
    /// `None`: a ClusterRole and ClusterRoleBinding; else a Role and RoleBinding there.
    pub namespace: Option<String>,
    pub account: Account,
    pub rules: Vec<PolicyRule>,
}

/// The settings of an installation that decide the rules (the chart's values).
#[derive(Clone, Debug)]
pub struct Install {
    /// The prefix of every name (the chart's fullname).
    pub fullname: String,
    /// Where the operator runs (the release namespace).
    pub namespace: String,
    /// `watchNamespace`: namespaced roles there instead of cluster-wide ones.
    pub watch_namespace: Option<String>,
    /// `rbac.restartTargets`.
    pub restart_targets: bool,
    /// `webhook.certManager.enabled`: cert-manager, not the operator, manages the
    /// webhook's certificate and `caBundle`.
    pub cert_manager: bool,
    /// The operator makes the verifier's certificate (`verifier.tls.enabled` without
    /// `verifier.tlsSecretName`).
    pub verifier_managed_tls: bool,
    /// `verifier.separate`: the verifier has its own ServiceAccount.
    pub verifier_separate: bool,
    /// `leaderElection.enabled`.
    pub leader_election: bool,
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
    PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

fn named(mut rule: PolicyRule, names: &[&str]) -> PolicyRule {
    rule.resource_names = Some(names.iter().map(|s| (*s).to_owned()).collect());
    rule
}

/// The roles of an installation, in the order the chart renders them.
pub fn roles(install: &Install) -> Vec<RoleSpec> {
    let full = &install.fullname;
    let scope = install.watch_namespace.clone();
    let release = Some(install.namespace.clone());
    let mut operator = vec![
        // Watch keys and tokens; patch for adopting tokens (ownerReferences).
        rule(
            &["apikeys.dev"],
            &["apikeys", "apitokens"],
            &["get", "list", "watch", "patch"],
        ),
        rule(
            &["apikeys.dev"],
            &["apikeys/status", "apitokens/status"],
            &["patch"],
        ),
        // The values live in Secrets the operator creates and owns.
        rule(
            &[""],
            &["secrets"],
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        // A ServiceAccount owner must exist before its key's tokens get values.
        rule(&[""], &["serviceaccounts"], &["get", "list", "watch"]),
        rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
    ];
    if install.restart_targets {
        operator.push(rule(
            &["apps"],
            &["deployments", "statefulsets", "daemonsets"],
            &["get", "patch"],
        ));
    }
    let mut out = vec![RoleSpec {
        name: full.clone(),
        namespace: scope.clone(),
        account: Account::Operator,
        rules: operator,
    }];
    let mut webhook = vec![rule(
        &["authorization.k8s.io"],
        &["subjectaccessreviews"],
        &["create"],
    )];
    if !install.cert_manager {
        webhook.push(named(
            rule(
                &["admissionregistration.k8s.io"],
                &["validatingwebhookconfigurations"],
                &["get", "list", "watch", "update"],
            ),
            &[full],
        ));
    }
    out.push(RoleSpec {
        name: format!("{full}-webhook"),
        namespace: None,
        account: Account::Operator,
        rules: webhook,
    });
    if !install.cert_manager {
        out.push(RoleSpec {
            name: format!("{full}-webhook-tls"),
            namespace: release.clone(),
            account: Account::Operator,
            rules: vec![
                named(
                    rule(&[""], &["secrets"], &["get", "update"]),
                    &[&format!("{full}-webhook-tls")],
                ),
                rule(&[""], &["secrets"], &["create"]),
            ],
        });
    }
    if install.verifier_managed_tls {
        out.push(RoleSpec {
            name: format!("{full}-verifier-tls"),
            namespace: release.clone(),
            account: Account::Operator,
            rules: vec![
                named(
                    rule(&[""], &["secrets"], &["get", "update"]),
                    &[&format!("{full}-verifier-tls")],
                ),
                named(
                    rule(&[""], &["configmaps"], &["get", "update"]),
                    &[&format!("{full}-verifier-ca")],
                ),
                rule(&[""], &["secrets", "configmaps"], &["create"]),
            ],
        });
    }
    if install.verifier_separate {
        out.push(RoleSpec {
            name: format!("{full}-verifier"),
            namespace: scope,
            account: Account::Verifier,
            rules: verifier_rules(),
        });
    }
    if install.leader_election {
        out.push(RoleSpec {
            name: format!("{full}-leader-election"),
            namespace: release,
            account: Account::Operator,
            rules: vec![rule(
                &["coordination.k8s.io"],
                &["leases"],
                &["get", "create", "update"],
            )],
        });
    }
    out
}

/// What the verifier reads and writes: keys and tokens (hashes in their
/// status, never Secrets), which ServiceAccounts exist (their metadata: a
/// ServiceAccount key's values stop with it), and `status.lastUsedAt`.
pub fn verifier_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            &["apikeys.dev"],
            &["apikeys", "apitokens"],
            &["get", "list", "watch"],
        ),
        rule(&["apikeys.dev"], &["apitokens/status"], &["patch"]),
        rule(&[""], &["serviceaccounts"], &["list", "watch"]),
    ]
}

/// The namespace `install.namespace`, the ServiceAccounts `operator` and `verifier` in it (one,
/// when they are the same) and the roles of `install` bound to them: what an install's RBAC
/// amounts to, for `local` and the benchmark to apply.
pub fn install_objects(
    install: &Install,
    operator: &str,
    verifier: &str,
) -> Vec<serde_json::Value> {
    let ns = install.namespace.as_str();
    let mut out = vec![serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": ns}})];
    let mut accounts = vec![operator];
    if verifier != operator {
        accounts.push(verifier);
    }
    for account in accounts {
        out.push(
            serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": account, "namespace": ns}}),
        );
    }
    out.extend(objects(&roles(install), (ns, operator), (ns, verifier)));
    out
}

/// A ServiceAccount: namespace and name.
pub type ServiceAccountName<'a> = (&'a str, &'a str);

/// The role objects and their bindings, each to the ServiceAccount its
/// [`Account`] names, ready to apply.
pub fn objects(
    roles: &[RoleSpec],
    operator: ServiceAccountName<'_>,
    verifier: ServiceAccountName<'_>,
) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for role in roles {
        let (sa_namespace, sa_name) = match role.account {
            Account::Operator => operator,
            Account::Verifier => verifier,
        };
        let metadata = ObjectMeta {
            name: Some(role.name.clone()),
            namespace: role.namespace.clone(),
            ..ObjectMeta::default()
        };
        let subject = Subject {
            kind: "ServiceAccount".to_owned(),
            name: sa_name.to_owned(),
            namespace: Some(sa_namespace.to_owned()),
            ..Subject::default()
        };
        let kind = if role.namespace.is_some() {
            "Role"
        } else {
            "ClusterRole"
        };
        let role_ref = RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: kind.to_owned(),
            name: role.name.clone(),
        };
        let rules = Some(role.rules.clone());
        let (object, binding) = match role.namespace {
            None => (
                serde_json::to_value(ClusterRole {
                    metadata: metadata.clone(),
                    rules,
                    ..ClusterRole::default()
                }),
                serde_json::to_value(ClusterRoleBinding {
                    metadata,
                    role_ref,
                    subjects: Some(vec![subject]),
                }),
            ),
            Some(_) => (
                serde_json::to_value(Role {
                    metadata: metadata.clone(),
                    rules,
                }),
                serde_json::to_value(RoleBinding {
                    metadata,
                    role_ref,
                    subjects: Some(vec![subject]),
                }),
            ),
        };
        out.extend(object.into_iter().chain(binding));
    }
    out
}
