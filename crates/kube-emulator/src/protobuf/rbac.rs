//! `rbac.authorization.k8s.io/v1` Role, ClusterRole, RoleBinding, ClusterRoleBinding (what
//! `kubectl create role|clusterrole|rolebinding|clusterrolebinding` sends). Every field is
//! converted.

use k8s_pb::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef,
    Subject,
};
use serde_json::Value;

use super::go_json::{GoJson, Unconverted, or_zero, strings};
use super::meta::{label_selector, object_meta};

pub(super) fn role(r: Role) -> Result<Value, Unconverted> {
    let Role { metadata, rules } = r;
    Ok(GoJson::new()
        .always("metadata", object_meta(metadata))
        .always_list("rules", policy_rules(rules))
        .end())
}

pub(super) fn cluster_role(r: ClusterRole) -> Result<Value, Unconverted> {
    let ClusterRole {
        metadata,
        rules,
        aggregation_rule,
    } = r;
    let aggregation_rule = aggregation_rule.map(|a| {
        let AggregationRule {
            cluster_role_selectors,
        } = a;
        GoJson::new()
            .nonempty(
                "clusterRoleSelectors",
                cluster_role_selectors
                    .into_iter()
                    .map(label_selector)
                    .collect(),
            )
            .end()
    });
    Ok(GoJson::new()
        .always("metadata", object_meta(metadata))
        .always_list("rules", policy_rules(rules))
        .ptr("aggregationRule", aggregation_rule)
        .end())
}

pub(super) fn role_binding(b: RoleBinding) -> Result<Value, Unconverted> {
    let RoleBinding {
        metadata,
        subjects,
        role_ref,
    } = b;
    Ok(binding(metadata, subjects, role_ref))
}

pub(super) fn cluster_role_binding(b: ClusterRoleBinding) -> Result<Value, Unconverted> {
    let ClusterRoleBinding {
        metadata,
        subjects,
        role_ref,
    } = b;
    Ok(binding(metadata, subjects, role_ref))
}

fn binding(
    metadata: Option<k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
    subjects: Vec<Subject>,
    role_ref: Option<RoleRef>,
) -> Value {
    let RoleRef {
        api_group,
        kind,
        name,
    } = role_ref.unwrap_or_default();
    GoJson::new()
        .always("metadata", object_meta(metadata))
        .nonempty("subjects", subjects.into_iter().map(subject).collect())
        .always(
            "roleRef",
            GoJson::new()
                .always("apiGroup", or_zero(api_group))
                .always("kind", or_zero(kind))
                .always("name", or_zero(name))
                .end(),
        )
        .end()
}

fn subject(s: Subject) -> Value {
    let Subject {
        kind,
        api_group,
        name,
        namespace,
    } = s;
    GoJson::new()
        .always("kind", or_zero(kind))
        .omitempty("apiGroup", api_group)
        .always("name", or_zero(name))
        .omitempty("namespace", namespace)
        .end()
}

fn policy_rules(rules: Vec<PolicyRule>) -> Value {
    rules
        .into_iter()
        .map(|r| {
            let PolicyRule {
                verbs,
                api_groups,
                resources,
                resource_names,
                non_resource_ur_ls,
            } = r;
            GoJson::new()
                .always_list("verbs", strings(verbs))
                .nonempty("apiGroups", strings(api_groups))
                .nonempty("resources", strings(resources))
                .nonempty("resourceNames", strings(resource_names))
                .nonempty("nonResourceURLs", strings(non_resource_ur_ls))
                .end()
        })
        .collect()
}
