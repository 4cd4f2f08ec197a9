//! RBAC kinds decoded as `kubectl create role|clusterrole|rolebinding|...` sends them,
//! compared with the JSON Go writes for the same objects.

use super::*;

#[test]
fn rbac_kinds_decode_as_kubectl_create_sends_them() {
    let rule = rbac::PolicyRule {
        verbs: vec!["get".into(), "list".into()],
        api_groups: vec![String::new()],
        resources: vec!["secrets".into()],
        resource_names: vec!["s1".into()],
        non_resource_ur_ls: vec![],
    };
    let role = rbac::Role {
        metadata: Some(go_meta("reader")),
        rules: vec![rule],
    };
    let aggregated = rbac::ClusterRole {
        metadata: Some(go_meta("agg")),
        rules: vec![],
        aggregation_rule: Some(rbac::AggregationRule {
            cluster_role_selectors: vec![meta::LabelSelector {
                match_labels: labels(&[("a", "b")]),
                match_expressions: vec![],
            }],
        }),
    };
    let subjects = vec![
        rbac::Subject {
            kind: Some("User".into()),
            api_group: Some("rbac.authorization.k8s.io".into()),
            name: Some("alice".into()),
            namespace: Some(String::new()),
        },
        rbac::Subject {
            kind: Some("ServiceAccount".into()),
            api_group: Some(String::new()),
            name: Some("robot".into()),
            namespace: Some("default".into()),
        },
    ];
    let role_ref = |kind: &str, name: &str| rbac::RoleRef {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: Some(kind.into()),
        name: Some(name.into()),
    };
    let binding = rbac::RoleBinding {
        metadata: Some(go_meta("rb")),
        subjects: subjects.clone(),
        role_ref: Some(role_ref("Role", "reader")),
    };
    let cluster_binding = rbac::ClusterRoleBinding {
        metadata: Some(go_meta("crb")),
        subjects: subjects[..1].to_vec(),
        role_ref: Some(role_ref("ClusterRole", "agg")),
    };
    let gv = "rbac.authorization.k8s.io/v1";
    let subjects_json = json!([
        {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"},
        {"kind": "ServiceAccount", "name": "robot", "namespace": "default"},
    ]);
    check_table(vec![
        (
            "role",
            envelope(gv, "Role", &role),
            expect(gv, "Role"),
            json!({"apiVersion": gv, "kind": "Role", "metadata": {"name": "reader"},
                   "rules": [{"verbs": ["get", "list"], "apiGroups": [""],
                              "resources": ["secrets"], "resourceNames": ["s1"]}]}),
        ),
        (
            // `rules` has no omitempty: kubectl's own JSON says `"rules": null` here too.
            "aggregated clusterrole",
            envelope(gv, "ClusterRole", &aggregated),
            expect(gv, "ClusterRole"),
            json!({"apiVersion": gv, "kind": "ClusterRole", "metadata": {"name": "agg"},
                   "rules": null,
                   "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]}}),
        ),
        (
            "rolebinding",
            envelope(gv, "RoleBinding", &binding),
            expect(gv, "RoleBinding"),
            json!({"apiVersion": gv, "kind": "RoleBinding", "metadata": {"name": "rb"},
                   "subjects": subjects_json,
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                               "name": "reader"}}),
        ),
        (
            "clusterrolebinding",
            envelope(gv, "ClusterRoleBinding", &cluster_binding),
            expect(gv, "ClusterRoleBinding"),
            json!({"apiVersion": gv, "kind": "ClusterRoleBinding", "metadata": {"name": "crb"},
                   "subjects": [subjects_json[0].clone()],
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                               "name": "agg"}}),
        ),
    ]);
}
