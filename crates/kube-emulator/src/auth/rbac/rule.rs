//! One RBAC `PolicyRule` read from JSON and printed as Go prints it, and the pure matcher
//! (`rule_allows`, `rbac.RuleAllows`) that says whether it allows a request.

use serde_json::Value;

use crate::auth::attributes::Attributes;

/// One `PolicyRule`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

impl Rule {
    pub fn from_json(v: &Value) -> Rule {
        Rule {
            verbs: strings(&v["verbs"]),
            api_groups: strings(&v["apiGroups"]),
            resources: strings(&v["resources"]),
            resource_names: strings(&v["resourceNames"]),
            non_resource_urls: strings(&v["nonResourceURLs"]),
        }
    }

    /// The rule as escalation errors print it (`rbacv1helpers.CompactString`).
    pub fn compact_string(&self) -> String {
        let q = |list: &[String]| {
            let items: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
            format!("[{}]", items.join(" "))
        };
        let mut parts = Vec::new();
        for (k, list) in [
            ("APIGroups", &self.api_groups),
            ("Resources", &self.resources),
            ("NonResourceURLs", &self.non_resource_urls),
            ("ResourceNames", &self.resource_names),
            ("Verbs", &self.verbs),
        ] {
            if !list.is_empty() {
                parts.push(format!("{k}:{}", q(list)));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }
}

pub(super) fn has(list: &[String], item: &str) -> bool {
    list.iter().any(|s| s == item)
}

/// Whether `rule` allows the request (`rbac.RuleAllows`): `*` matches any verb, group and
/// resource (subresources too), `*/sub` any resource's `sub`, and a rule with resourceNames
/// never matches a request without a name.
pub fn rule_allows(rule: &Rule, a: &Attributes) -> bool {
    let verb = has(&rule.verbs, "*") || has(&rule.verbs, &a.verb);
    if !verb {
        return false;
    }
    if !a.resource_request {
        return rule.non_resource_urls.iter().any(|u| {
            u == "*" || *u == a.path || u.strip_suffix('*').is_some_and(|p| a.path.starts_with(p))
        });
    }
    let group = has(&rule.api_groups, "*") || has(&rule.api_groups, &a.api_group);
    let resource = has(&rule.resources, "*")
        || if a.subresource.is_empty() {
            has(&rule.resources, &a.resource)
        } else {
            rule.resources.iter().any(|r| {
                r.split_once('/').is_some_and(|(res, sub)| {
                    sub == a.subresource && (res == "*" || res == a.resource)
                })
            })
        };
    let name = rule.resource_names.is_empty()
        || (!a.name.is_empty() && has(&rule.resource_names, &a.name));
    group && resource && name
}
