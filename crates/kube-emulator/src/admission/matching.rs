//! Which stored validating webhooks a write goes to: the webhook configurations compiled once
//! when they are stored, and the pure predicates of upstream's `predicates/` (rules with their
//! scope and `*/status`-style subresources, label selectors). `mod.rs` runs them at the gate.

use std::sync::Arc;

use kube::core::cel::{CompiledVapExpression, VapError, VapEvaluator, VapExpression};
use serde_json::Value;

/// One `rules[]` entry (`RuleWithOperations`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    pub operations: Vec<String>,
    pub api_groups: Vec<String>,
    pub api_versions: Vec<String>,
    pub resources: Vec<String>,
    /// `Cluster`, `Namespaced` or `*` (the default).
    pub scope: String,
    /// A policy rule's `resourceNames`; empty: any name.
    pub resource_names: Vec<String>,
}

/// What a rule is matched against: the request's resource and operation.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub operation: &'a str,
    pub group: &'a str,
    pub version: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    /// The request's namespace (a Namespace's own name for namespaces).
    pub namespace: &'a str,
    pub name: &'a str,
}

fn exact_or_wildcard(items: &[String], requested: &str) -> bool {
    items.iter().any(|i| i == "*" || i == requested)
}

/// upstream `rules.Matcher.Matches`: `*` is every resource but no subresource, `pods/*` pods and
/// all its subresources, `*/status` the status of everything; Namespaces are cluster-scoped.
pub fn rule_matches(rule: &Rule, t: &Target<'_>) -> bool {
    let is_namespaces = t.group.is_empty() && t.version == "v1" && t.resource == "namespaces";
    let scope = match rule.scope.as_str() {
        "" | "*" => true,
        "Namespaced" => !is_namespaces && !t.namespace.is_empty(),
        "Cluster" => is_namespaces || t.namespace.is_empty(),
        _ => false,
    };
    let resource = rule.resources.iter().any(|r| {
        let (res, sub) = r.split_once('/').unwrap_or((r, ""));
        (res == "*" || res == t.resource) && (sub == "*" || sub == t.subresource)
    });
    scope
        && (rule.resource_names.is_empty() || rule.resource_names.iter().any(|n| n == t.name))
        && exact_or_wildcard(&rule.operations, t.operation)
        && exact_or_wildcard(&rule.api_groups, t.group)
        && exact_or_wildcard(&rule.api_versions, t.version)
        && resource
}

/// A `metav1.LabelSelector` (`matchLabels`, `matchExpressions`) against an object's labels;
/// null or `{}` selects everything. Err for an operator the API does not define.
pub fn selector_matches(selector: &Value, labels: &Value) -> Result<bool, String> {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    if let Some(m) = selector["matchLabels"].as_object() {
        for (k, v) in m {
            if label(k) != v.as_str() {
                return Ok(false);
            }
        }
    }
    for e in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let ok = match e["operator"].as_str().unwrap_or_default() {
            "In" => label(key).is_some_and(|l| values.contains(&l)),
            "NotIn" => label(key).is_none_or(|l| !values.contains(&l)),
            "Exists" => label(key).is_some(),
            "DoesNotExist" => label(key).is_none(),
            other => return Err(format!("{other:?} is not a valid label selector operator")),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether a selector selects everything (upstream skips the namespace lookup then).
pub fn selector_is_empty(selector: &Value) -> bool {
    selector["matchLabels"]
        .as_object()
        .is_none_or(|m| m.is_empty())
        && selector["matchExpressions"]
            .as_array()
            .is_none_or(|a| a.is_empty())
}

/// Where a webhook is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Url(String),
    /// Resolved through `EmulatorConfig::service_addrs`.
    Service {
        namespace: String,
        name: String,
        port: u16,
        path: String,
    },
}

/// A CEL `matchConditions` entry, compiled when the configuration is stored.
#[derive(Debug)]
pub struct Condition {
    pub expression: String,
    pub program: Result<CompiledVapExpression, VapError>,
}

/// One `webhooks[]` entry of a stored ValidatingWebhookConfiguration.
#[derive(Debug)]
pub struct Webhook {
    pub name: String,
    pub endpoint: Endpoint,
    /// PEM certificates the serving certificate must chain to.
    pub ca_bundle: Vec<u8>,
    pub rules: Vec<Rule>,
    pub namespace_selector: Value,
    pub object_selector: Value,
    pub conditions: Vec<Condition>,
    /// `failurePolicy: Ignore`.
    pub fail_open: bool,
    /// `matchPolicy: Equivalent` (the default): other served versions of the resource match too.
    pub match_equivalent: bool,
    pub side_effects: String,
    pub timeout_seconds: u64,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

pub(super) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// `rules` or `resourceRules` entries.
pub fn rules(v: &Value) -> Vec<Rule> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|r| Rule {
            operations: strings(&r["operations"]),
            api_groups: strings(&r["apiGroups"]),
            api_versions: strings(&r["apiVersions"]),
            resources: strings(&r["resources"]),
            scope: r["scope"].as_str().unwrap_or("*").to_string(),
            resource_names: strings(&r["resourceNames"]),
        })
        .collect()
}

/// One CEL expression compiled for admission (`object`, `oldObject`, `request`, …).
pub fn compile_expression(
    expression: &str,
    message_expression: Option<&str>,
) -> Result<CompiledVapExpression, VapError> {
    let expression = VapExpression {
        expression: expression.to_string(),
        message: None,
        message_expression: message_expression.map(str::to_string),
    };
    VapEvaluator::builder()
        .build()
        .compile_expressions(std::slice::from_ref(&expression))
        .pop()
        .unwrap_or_else(|| unreachable!("one compiled expression per expression"))
}

/// `matchConditions` entries.
pub fn conditions(v: &Value) -> Vec<Condition> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let expression = c["expression"].as_str().unwrap_or_default();
            Condition {
                expression: expression.to_string(),
                program: compile_expression(expression, None),
            }
        })
        .collect()
}

/// The webhooks of one configuration object as the gate uses them.
pub fn compile(config: &Value) -> Vec<Webhook> {
    let mut out = Vec::new();
    for w in config["webhooks"].as_array().into_iter().flatten() {
        let cc = &w["clientConfig"];
        let endpoint = match cc["url"].as_str() {
            Some(url) => Endpoint::Url(url.to_string()),
            None => Endpoint::Service {
                namespace: cc["service"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                name: cc["service"]["name"].as_str().unwrap_or_default().into(),
                port: cc["service"]["port"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(443),
                path: cc["service"]["path"].as_str().unwrap_or("/").into(),
            },
        };
        let rules = rules(&w["rules"]);
        let conditions = conditions(&w["matchConditions"]);
        out.push(Webhook {
            name: w["name"].as_str().unwrap_or_default().to_string(),
            endpoint,
            ca_bundle: cc["caBundle"]
                .as_str()
                .and_then(base64_decode)
                .unwrap_or_default(),
            rules,
            namespace_selector: w["namespaceSelector"].clone(),
            object_selector: w["objectSelector"].clone(),
            conditions,
            fail_open: w["failurePolicy"].as_str() == Some("Ignore"),
            match_equivalent: w["matchPolicy"].as_str() != Some("Exact"),
            side_effects: w["sideEffects"].as_str().unwrap_or_default().to_string(),
            timeout_seconds: w["timeoutSeconds"].as_u64().unwrap_or(10).clamp(1, 30),
        });
    }
    out
}

/// All stored configurations' webhooks, in configuration-name order as upstream sorts them.
pub fn compile_all<'a>(configs: impl Iterator<Item = &'a Value>) -> Arc<[Arc<Webhook>]> {
    configs
        .flat_map(compile)
        .map(Arc::new)
        .collect::<Vec<_>>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(ops: &[&str], groups: &[&str], resources: &[&str], scope: &str) -> Rule {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        Rule {
            operations: s(ops),
            api_groups: s(groups),
            api_versions: vec!["*".into()],
            resources: s(resources),
            scope: scope.into(),
            resource_names: Vec::new(),
        }
    }

    fn target<'a>(
        op: &'a str,
        group: &'a str,
        res: &'a str,
        sub: &'a str,
        ns: &'a str,
    ) -> Target<'a> {
        Target {
            operation: op,
            group,
            version: "v1",
            resource: res,
            subresource: sub,
            namespace: ns,
            name: "n",
        }
    }

    #[test]
    fn rules_match_as_upstream() {
        let cases = [
            // (rule, target, matches)
            (
                rule(&["CREATE"], &[""], &["secrets"], "*"),
                target("CREATE", "", "secrets", "", "a"),
                true,
            ),
            (
                rule(&["CREATE"], &[""], &["secrets"], "*"),
                target("UPDATE", "", "secrets", "", "a"),
                false,
            ),
            (
                rule(&["*"], &[""], &["secrets"], "*"),
                target("DELETE", "", "secrets", "", "a"),
                true,
            ),
            (
                rule(&["*"], &["apps"], &["secrets"], "*"),
                target("CREATE", "", "secrets", "", "a"),
                false,
            ),
            (
                rule(&["*"], &["*"], &["*"], "*"),
                target("CREATE", "x.dev", "widgets", "", "a"),
                true,
            ),
            // `*` is no subresource; `*/*` and `x/*` are all of them and, as upstream's code reads,
            // the resource itself.
            (
                rule(&["*"], &["*"], &["*"], "*"),
                target("UPDATE", "x.dev", "widgets", "status", "a"),
                false,
            ),
            (
                rule(&["*"], &["*"], &["*/*"], "*"),
                target("UPDATE", "x.dev", "widgets", "status", "a"),
                true,
            ),
            (
                rule(&["*"], &["*"], &["*/status"], "*"),
                target("UPDATE", "x.dev", "widgets", "status", "a"),
                true,
            ),
            (
                rule(&["*"], &["*"], &["*/status"], "*"),
                target("UPDATE", "x.dev", "widgets", "", "a"),
                false,
            ),
            (
                rule(&["*"], &["*"], &["widgets/*"], "*"),
                target("UPDATE", "x.dev", "widgets", "", "a"),
                true,
            ),
            (
                rule(&["*"], &["*"], &["widgets/status"], "*"),
                target("UPDATE", "x.dev", "gadgets", "status", "a"),
                false,
            ),
            // Scope: namespaces are cluster-scoped even though their requests carry a namespace.
            (
                rule(&["*"], &["*"], &["*"], "Namespaced"),
                target("CREATE", "", "secrets", "", "a"),
                true,
            ),
            (
                rule(&["*"], &["*"], &["*"], "Namespaced"),
                target("CREATE", "", "namespaces", "", "a"),
                false,
            ),
            (
                rule(&["*"], &["*"], &["*"], "Cluster"),
                target("CREATE", "", "namespaces", "", "a"),
                true,
            ),
            (
                rule(&["*"], &["*"], &["*"], "Cluster"),
                target("CREATE", "x.dev", "gizmos", "", ""),
                true,
            ),
            (
                rule(&["*"], &["*"], &["*"], "Cluster"),
                target("CREATE", "", "secrets", "", "a"),
                false,
            ),
            (
                rule(&["*"], &["*"], &["*"], "Bogus"),
                target("CREATE", "", "secrets", "", "a"),
                false,
            ),
        ];
        for (i, (r, t, want)) in cases.iter().enumerate() {
            assert_eq!(rule_matches(r, t), *want, "case {i}: {r:?} against {t:?}");
        }
    }

    #[test]
    fn label_selectors_match_as_upstream() {
        let labels = json!({"team": "a", "tier": "web"});
        let cases = [
            (json!(null), Ok(true)),
            (json!({}), Ok(true)),
            (json!({"matchLabels": {"team": "a"}}), Ok(true)),
            (json!({"matchLabels": {"team": "b"}}), Ok(false)),
            (
                json!({"matchLabels": {"team": "a", "tier": "db"}}),
                Ok(false),
            ),
            (
                json!({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]}),
                Ok(true),
            ),
            (
                json!({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]}),
                Ok(false),
            ),
            (
                json!({"matchExpressions": [{"key": "gone", "operator": "NotIn", "values": ["a"]}]}),
                Ok(true),
            ),
            (
                json!({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}),
                Ok(true),
            ),
            (
                json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}),
                Ok(false),
            ),
            (
                json!({"matchExpressions": [{"key": "gone", "operator": "In", "values": ["a"]}]}),
                Ok(false),
            ),
            (
                json!({"matchExpressions": [{"key": "tier", "operator": "Gt", "values": ["1"]}]}),
                Err("\"Gt\" is not a valid label selector operator".to_string()),
            ),
        ];
        for (sel, want) in cases {
            assert_eq!(selector_matches(&sel, &labels), want, "{sel}");
        }
        assert_eq!(
            selector_matches(&json!({"matchLabels": {"a": "b"}}), &json!(null)),
            Ok(false)
        );
        assert!(selector_is_empty(&json!({"matchLabels": {}})));
        assert!(!selector_is_empty(
            &json!({"matchExpressions": [{"key": "a", "operator": "Exists"}]})
        ));
    }

    #[test]
    fn configurations_compile_with_upstream_defaults() {
        let hooks = compile(&json!({"webhooks": [
            {"name": "a.x.dev", "clientConfig": {"service": {"namespace": "ns", "name": "svc"}, "caBundle": "aGVsbG8="},
             "sideEffects": "None", "admissionReviewVersions": ["v1"]},
            {"name": "b.x.dev", "clientConfig": {"url": "https://127.0.0.1:1/v"}, "failurePolicy": "Ignore",
             "matchPolicy": "Exact", "timeoutSeconds": 99, "sideEffects": "None",
             "matchConditions": [{"name": "c", "expression": "object != null"}]},
        ]}));
        assert_eq!(
            hooks[0].endpoint,
            Endpoint::Service {
                namespace: "ns".into(),
                name: "svc".into(),
                port: 443,
                path: "/".into()
            }
        );
        assert_eq!(hooks[0].ca_bundle, b"hello");
        assert!(!hooks[0].fail_open && hooks[0].match_equivalent);
        assert_eq!(hooks[0].timeout_seconds, 10);
        assert!(hooks[1].fail_open && !hooks[1].match_equivalent);
        assert_eq!(hooks[1].timeout_seconds, 30);
        assert!(hooks[1].conditions[0].program.is_ok());
    }
}
