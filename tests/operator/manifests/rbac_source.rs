//! The chart's RBAC is the one `apikey_operator::rbac` defines (which `local` grants): for each
//! combination of the values that change it, every Role and ClusterRole the chart renders for the
//! operator and the verifier has exactly the rules, scope and ServiceAccount of the definition.

use super::helm_chart::{find, helm, template};
use apikey_operator::rbac::{self, Account, Install};
use serde_json::Value;

const RELEASE_NS: &str = "apikey-system";
const FULLNAME: &str = "ako-apikey-operator";

/// kind, name, namespace, the ServiceAccount bound, and the rules as JSON.
type Rendered = (String, String, Option<String>, String, Value);

fn rendered(docs: &[Value]) -> Vec<Rendered> {
    let bound = |kind: &str, name: &str| -> String {
        find(docs, &format!("{kind}Binding"))
            .into_iter()
            .find(|b| b["roleRef"]["name"] == name && b["roleRef"]["kind"] == kind)
            .map(|b| {
                b["subjects"][0]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .unwrap_or_else(|| panic!("no binding of {kind} {name}"))
    };
    let mut out = Vec::new();
    for kind in ["ClusterRole", "Role"] {
        for role in find(docs, kind) {
            let name = role["metadata"]["name"].as_str().unwrap_or_default();
            // The roles for people (aggregated into view/edit/admin) bind no account.
            if name.ends_with("-apikeys-view") || name.ends_with("-apikeys-edit") {
                continue;
            }
            out.push((
                kind.to_owned(),
                name.to_owned(),
                role["metadata"]["namespace"].as_str().map(str::to_owned),
                bound(kind, name),
                role["rules"].clone(),
            ));
        }
    }
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

fn defined(install: &Install) -> Vec<Rendered> {
    let mut out: Vec<Rendered> = rbac::roles(install)
        .into_iter()
        .map(|role| {
            let account = match role.account {
                Account::Operator => FULLNAME.to_owned(),
                Account::Verifier => format!("{FULLNAME}-verifier"),
            };
            (
                if role.namespace.is_some() {
                    "Role"
                } else {
                    "ClusterRole"
                }
                .to_owned(),
                role.name,
                role.namespace,
                account,
                serde_json::to_value(&role.rules).expect("rules as JSON"),
            )
        })
        .collect();
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

#[test]
fn the_charts_rbac_is_the_one_the_operator_defines() {
    let helm = require_helm!();
    let default = Install {
        fullname: FULLNAME.to_owned(),
        namespace: RELEASE_NS.to_owned(),
        watch_namespace: None,
        restart_targets: false,
        cert_manager: false,
        verifier_managed_tls: true,
        verifier_separate: true,
        leader_election: true,
    };
    let cases: Vec<(&[&str], Install)> = vec![
        (&[], default.clone()),
        (
            &["watchNamespace=team-a"],
            Install {
                watch_namespace: Some("team-a".to_owned()),
                ..default.clone()
            },
        ),
        (
            &["rbac.restartTargets=true"],
            Install {
                restart_targets: true,
                ..default.clone()
            },
        ),
        (
            &["webhook.certManager.enabled=true"],
            Install {
                cert_manager: true,
                ..default.clone()
            },
        ),
        (
            &["verifier.separate=false"],
            Install {
                verifier_separate: false,
                ..default.clone()
            },
        ),
        (
            &["verifier.tls.enabled=false"],
            Install {
                verifier_managed_tls: false,
                ..default.clone()
            },
        ),
        (
            &["leaderElection.enabled=false", "replicaCount=1"],
            Install {
                leader_election: false,
                ..default.clone()
            },
        ),
    ];
    for (sets, install) in cases {
        let docs = template(&helm, sets, &[]);
        assert_eq!(rendered(&docs), defined(&install), "with {sets:?}");
    }
}
