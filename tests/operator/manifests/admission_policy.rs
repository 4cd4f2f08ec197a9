//! The chart's ValidatingAdmissionPolicy (personal keys only for oneself),
//! evaluated with the Kubernetes CEL libraries (kube-cel) against sample
//! `object` / `request` / `params`. The expressions are read from the chart
//! template itself, so the test and the chart cannot drift apart.

use kube::core::cel::{AdmissionRequest, VapEvaluator, VapExpression};
use serde::Deserialize;
use serde_json::{Value, json};

const TEMPLATE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/charts/apikey-operator/templates/admission-policy.yaml"
));

/// The template with its Helm directives blanked: lines that are only a
/// directive go, inline `{{ … }}` become `templated`.
fn untemplated() -> String {
    let inline = regex::Regex::new(r"\{\{[^}]*\}\}").expect("regex");
    TEMPLATE
        .lines()
        .filter(|line| {
            let t = line.trim();
            !(t.starts_with("{{") && t.ends_with("}}"))
        })
        .map(|line| inline.replace_all(line, "templated").into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

struct Policy {
    match_conditions: Vec<String>,
    validations: Vec<VapExpression>,
}

fn policy() -> Policy {
    let text = untemplated();
    let policy = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("template documents are YAML"))
        .find(|doc| doc["kind"] == "ValidatingAdmissionPolicy")
        .expect("the template has a ValidatingAdmissionPolicy");
    let spec = &policy["spec"];
    assert_eq!(spec["failurePolicy"], "Fail");
    assert_eq!(
        spec["matchConstraints"]["resourceRules"][0]["resources"],
        json!(["apikeys"])
    );
    let match_conditions = spec["matchConditions"]
        .as_array()
        .expect("matchConditions")
        .iter()
        .map(|c| c["expression"].as_str().expect("expression").to_owned())
        .collect();
    let validations = spec["validations"]
        .as_array()
        .expect("validations")
        .iter()
        .map(|v| VapExpression {
            expression: v["expression"].as_str().expect("expression").to_owned(),
            message: v["message"].as_str().map(str::to_owned),
            message_expression: v["messageExpression"].as_str().map(str::to_owned),
        })
        .collect();
    Policy {
        match_conditions,
        validations,
    }
}

fn key(owner_kind: &str, owner_name: &str) -> Value {
    json!({
        "apiVersion": "apikeys.dev/v1alpha1",
        "kind": "ApiKey",
        "metadata": {"name": "k", "namespace": "team-a"},
        "spec": {"owner": {"kind": owner_kind, "name": owner_name}},
    })
}

fn request(username: &str, groups: &[&str]) -> AdmissionRequest {
    AdmissionRequest {
        operation: "CREATE".into(),
        username: username.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        name: "k".into(),
        namespace: "team-a".into(),
        ..Default::default()
    }
}

/// The params ConfigMap as the chart renders it for `adminGroups`.
fn params(admin_groups: &[&str]) -> Value {
    json!({"data": {"adminGroups": admin_groups.join(",")}})
}

/// `None` when the policy does not apply (a match condition is false),
/// otherwise the denial messages (empty: admitted).
fn admit(object: Value, req: AdmissionRequest, admin_groups: &[&str]) -> Option<Vec<String>> {
    let policy = policy();
    let evaluator = VapEvaluator::builder()
        .object(object)
        .request(req)
        .params(params(admin_groups))
        .build();
    let conditions: Vec<VapExpression> = policy
        .match_conditions
        .iter()
        .map(|e| VapExpression {
            expression: e.clone(),
            message: None,
            message_expression: None,
        })
        .collect();
    for result in evaluator.evaluate(&conditions) {
        assert!(
            result
                .message
                .as_deref()
                .is_none_or(|m| !m.contains("error")),
            "match condition {} failed to evaluate: {:?}",
            result.expression,
            result.message
        );
        if !result.passed {
            return None;
        }
    }
    Some(
        evaluator
            .evaluate(&policy.validations)
            .into_iter()
            .filter(|r| !r.passed)
            .map(|r| r.message.unwrap_or_default())
            .collect(),
    )
}

const ADMINS: &[&str] = &["system:masters", "platform-admins"];

#[test]
fn a_user_may_create_a_personal_key_for_themselves() {
    let verdict = admit(
        key("User", "alice@example.com"),
        request("alice@example.com", &["system:authenticated"]),
        ADMINS,
    );
    assert_eq!(verdict, Some(vec![]));
}

#[test]
fn a_user_may_not_create_a_personal_key_for_someone_else() {
    let verdict = admit(
        key("User", "bob@example.com"),
        request("alice@example.com", &["system:authenticated", "developers"]),
        ADMINS,
    )
    .expect("the policy applies to personal keys");
    assert_eq!(verdict.len(), 1, "{verdict:?}");
    assert!(
        verdict[0].contains("spec.owner.name must be alice@example.com"),
        "the message names the allowed owner: {}",
        verdict[0]
    );
}

#[test]
fn admin_group_members_may_create_personal_keys_for_anyone() {
    let verdict = admit(
        key("User", "bob@example.com"),
        request("carol", &["system:authenticated", "platform-admins"]),
        ADMINS,
    );
    assert_eq!(verdict, Some(vec![]));
}

#[test]
fn admin_groups_match_whole_names_only() {
    let verdict = admit(
        key("User", "bob@example.com"),
        request("mallory", &["platform-admin", "admins"]),
        ADMINS,
    )
    .expect("applies");
    assert_eq!(verdict.len(), 1);
}

#[test]
fn service_account_keys_are_not_restricted_by_the_policy() {
    let verdict = admit(
        key("ServiceAccount", "ci-bot"),
        request("alice@example.com", &["system:authenticated"]),
        ADMINS,
    );
    assert_eq!(verdict, None, "the match condition excludes them");
}

#[test]
fn updates_by_the_owner_pass_and_by_others_are_denied() {
    let mut req = request("alice@example.com", &[]);
    req.operation = "UPDATE".into();
    assert_eq!(
        admit(key("User", "alice@example.com"), req.clone(), ADMINS),
        Some(vec![])
    );
    req.username = "bob@example.com".into();
    assert_eq!(
        admit(key("User", "alice@example.com"), req, ADMINS).map(|v| v.len()),
        Some(1)
    );
}
