//! RBAC as kube-apiserver evaluates it: the rule matcher (`rule_allows`, pure), the `Policy`
//! index built from the stored Roles, ClusterRoles and bindings (bindings indexed by subject, so
//! a decision reads only the requester's own grants), and `covers`, the escalation comparison.
//! `auth` rebuilds the index when an RBAC object changes and asks it on every request.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;

use super::attributes::Attributes;
use crate::store::State;
use crate::user::UserInfo;

pub const GROUP: &str = "rbac.authorization.k8s.io";
pub const ROLES: &str = "rbac.authorization.k8s.io/roles";
pub const CLUSTER_ROLES: &str = "rbac.authorization.k8s.io/clusterroles";
pub const ROLE_BINDINGS: &str = "rbac.authorization.k8s.io/rolebindings";
pub const CLUSTER_ROLE_BINDINGS: &str = "rbac.authorization.k8s.io/clusterrolebindings";

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

fn has(list: &[String], item: &str) -> bool {
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

/// A subject of a binding, as the index keys it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    User(String),
    Group(String),
}

/// The rules one binding gives, or why they could not be read.
#[derive(Debug)]
struct Grant {
    rules: Result<Arc<[Rule]>, String>,
    /// `ClusterRoleBinding "x" of ClusterRole "y"`, for the allow reason.
    binding: String,
}

#[derive(Debug, Default)]
struct Grants {
    by_user: HashMap<String, Vec<Arc<Grant>>>,
    by_group: HashMap<String, Vec<Arc<Grant>>>,
}

impl Grants {
    fn add(&mut self, subject: Subject, grant: Arc<Grant>) {
        match subject {
            Subject::User(u) => self.by_user.entry(u).or_default().push(grant),
            Subject::Group(g) => self.by_group.entry(g).or_default().push(grant),
        }
    }

    /// The requester's grants with the subject that matched, user first then groups.
    fn of<'a>(&'a self, user: &'a UserInfo) -> impl Iterator<Item = (&'a Arc<Grant>, String)> + 'a {
        let users = self
            .by_user
            .get(&user.username)
            .into_iter()
            .flatten()
            .map(move |g| (g, user_subject(&user.username)));
        let groups = user.groups.iter().flat_map(move |grp| {
            self.by_group
                .get(grp)
                .into_iter()
                .flatten()
                .map(move |g| (g, format!("Group {grp:?}")))
        });
        users.chain(groups)
    }
}

/// `User "alice"`, or `ServiceAccount "name/ns"` for service accounts, as allow reasons say.
fn user_subject(username: &str) -> String {
    match username
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'))
    {
        Some((ns, name)) => format!("ServiceAccount \"{name}/{ns}\""),
        None => format!("User {username:?}"),
    }
}

/// An authorization decision: RBAC allows or has no opinion, with a reason either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Why it allowed, or the role resolution errors when it did not (may be empty).
    pub reason: String,
}

/// The stored RBAC objects, read once per change: bindings by subject with their rules.
#[derive(Debug, Default)]
pub struct Policy {
    cluster: Grants,
    namespaced: HashMap<String, Grants>,
}

fn role_rules(obj: Option<&Arc<Value>>) -> Option<Arc<[Rule]>> {
    let obj = obj?;
    Some(
        obj["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .map(Rule::from_json)
            .collect(),
    )
}

impl Policy {
    /// Reads every stored binding and the role it references.
    pub fn build(st: &State) -> Policy {
        let mut policy = Policy::default();
        let mut cluster_rules: HashMap<&str, Arc<[Rule]>> = HashMap::new();
        for ((_, name), obj) in st.range(CLUSTER_ROLES, None, None) {
            if let Some(r) = role_rules(Some(obj)) {
                cluster_rules.insert(name, r);
            }
        }
        let resolve = |kind: &str, ns: &str, name: &str| -> Result<Arc<[Rule]>, String> {
            let found = match kind {
                "ClusterRole" => cluster_rules.get(name).cloned(),
                "Role" => role_rules(st.get(ROLES, ns, name)),
                _ => None,
            };
            found.ok_or_else(|| format!("{}.{GROUP} {name:?} not found", kind.to_lowercase()))
        };
        for ((_, name), obj) in st.range(CLUSTER_ROLE_BINDINGS, None, None) {
            let role = obj["roleRef"]["name"].as_str().unwrap_or_default();
            let kind = obj["roleRef"]["kind"].as_str().unwrap_or_default();
            let grant = Arc::new(Grant {
                rules: if kind == "ClusterRole" {
                    resolve(kind, "", role)
                } else {
                    Err(format!("clusterrolebinding {name:?} references a {kind}"))
                },
                binding: format!("ClusterRoleBinding {name:?} of {kind} {role:?}"),
            });
            for s in subjects(obj, None) {
                policy.cluster.add(s, grant.clone());
            }
        }
        for ((ns, name), obj) in st.range(ROLE_BINDINGS, None, None) {
            let role = obj["roleRef"]["name"].as_str().unwrap_or_default();
            let kind = obj["roleRef"]["kind"].as_str().unwrap_or_default();
            let grant = Arc::new(Grant {
                rules: resolve(kind, ns, role),
                binding: format!("RoleBinding \"{name}/{ns}\" of {kind} {role:?}"),
            });
            let grants = policy.namespaced.entry(ns.clone()).or_default();
            for s in subjects(obj, Some(ns)) {
                grants.add(s, grant.clone());
            }
        }
        policy
    }

    fn scopes<'a>(&'a self, namespace: &str) -> impl Iterator<Item = &'a Grants> + 'a {
        let ns = (!namespace.is_empty())
            .then(|| self.namespaced.get(namespace))
            .flatten();
        std::iter::once(&self.cluster).chain(ns)
    }

    /// RBAC's answer for `user` doing `a` (`system:masters` is decided before this).
    pub fn decide(&self, user: &UserInfo, a: &Attributes) -> Decision {
        let mut errors = Vec::new();
        let namespace = if a.resource_request {
            a.namespace.as_str()
        } else {
            ""
        };
        for grants in self.scopes(namespace) {
            for (grant, subject) in grants.of(user) {
                match &grant.rules {
                    Ok(rules) => {
                        if rules.iter().any(|r| rule_allows(r, a)) {
                            return Decision {
                                allowed: true,
                                reason: format!("RBAC: allowed by {} to {subject}", grant.binding),
                            };
                        }
                    }
                    Err(e) => errors.push(e.clone()),
                }
            }
        }
        let reason = match errors.len() {
            0 => String::new(),
            1 => format!("RBAC: {}", errors[0]),
            _ => format!("RBAC: [{}]", errors.join(", ")),
        };
        Decision {
            allowed: false,
            reason,
        }
    }

    /// Every rule `user` holds in `namespace` (cluster-wide ones included), with resolution
    /// errors, for escalation checks and SelfSubjectRulesReview.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<Rule>, Vec<String>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for grants in self.scopes(namespace) {
            for (grant, _) in grants.of(user) {
                match &grant.rules {
                    Ok(r) => rules.extend(r.iter().cloned()),
                    Err(e) => errors.push(e.clone()),
                }
            }
        }
        (rules, errors)
    }
}

/// The subjects of a binding; a ServiceAccount subject without a namespace takes the
/// RoleBinding's (and never matches in a ClusterRoleBinding).
fn subjects(binding: &Value, ns: Option<&str>) -> Vec<Subject> {
    let mut out = Vec::new();
    for s in binding["subjects"].as_array().into_iter().flatten() {
        let name = s["name"].as_str().unwrap_or_default().to_owned();
        match s["kind"].as_str() {
            Some("User") => out.push(Subject::User(name)),
            Some("Group") => out.push(Subject::Group(name)),
            Some("ServiceAccount") => {
                let sa_ns = s["namespace"].as_str().filter(|n| !n.is_empty()).or(ns);
                if let Some(sa_ns) = sa_ns {
                    out.push(Subject::User(format!(
                        "system:serviceaccount:{sa_ns}:{name}"
                    )));
                }
            }
            _ => {}
        }
    }
    out
}

/// One group × resource × verb (× name) or URL × verb piece of a rule (`BreakdownRule`).
fn breakdown(rule: &Rule) -> Vec<Rule> {
    let mut out = Vec::new();
    for g in &rule.api_groups {
        for r in &rule.resources {
            for v in &rule.verbs {
                let one = |names: Vec<String>| Rule {
                    verbs: vec![v.clone()],
                    api_groups: vec![g.clone()],
                    resources: vec![r.clone()],
                    resource_names: names,
                    non_resource_urls: Vec::new(),
                };
                if rule.resource_names.is_empty() {
                    out.push(one(Vec::new()));
                } else {
                    out.extend(rule.resource_names.iter().map(|n| one(vec![n.clone()])));
                }
            }
        }
    }
    for u in &rule.non_resource_urls {
        for v in &rule.verbs {
            out.push(Rule {
                verbs: vec![v.clone()],
                non_resource_urls: vec![u.clone()],
                ..Rule::default()
            });
        }
    }
    out
}

fn has_all(set: &[String], items: &[String]) -> bool {
    items.iter().all(|i| has(set, i))
}

fn rule_covers(owner: &Rule, sub: &Rule) -> bool {
    let verbs = has(&owner.verbs, "*") || has_all(&owner.verbs, &sub.verbs);
    let groups = has(&owner.api_groups, "*") || has_all(&owner.api_groups, &sub.api_groups);
    let resources = has(&owner.resources, "*")
        || sub.resources.iter().all(|r| {
            has(&owner.resources, r)
                || r.split_once('/')
                    .is_some_and(|(_, s)| has(&owner.resources, &format!("*/{s}")))
        });
    let urls = sub.non_resource_urls.iter().all(|p| {
        owner.non_resource_urls.iter().any(|o| {
            o == p
                || o.strip_suffix('*')
                    .is_some_and(|pre| p.starts_with(pre.trim_end_matches('*')))
        })
    });
    let names = owner.resource_names.is_empty()
        || (!sub.resource_names.is_empty() && has_all(&owner.resource_names, &sub.resource_names));
    verbs && groups && resources && names && urls
}

/// The pieces of `servant` that `owner` does not cover (`validation.Covers`); empty when
/// holding `owner` is enough to grant `servant`.
pub fn uncovered(owner: &[Rule], servant: &[Rule]) -> Vec<Rule> {
    servant
        .iter()
        .flat_map(breakdown)
        .filter(|sub| !owner.iter().any(|o| rule_covers(o, sub)))
        .collect()
}

/// Missing rules merged per group/resource/name with their verbs (`CompactRules`), printed
/// and sorted as escalation errors list them.
pub fn compact_missing(missing: &[Rule]) -> Vec<String> {
    let mut merged: Vec<Rule> = Vec::new();
    for m in missing {
        let simple = m.non_resource_urls.is_empty()
            && m.api_groups.len() == 1
            && m.resources.len() == 1
            && m.resource_names.len() <= 1;
        if let Some(existing) = merged.iter_mut().find(|e| {
            simple
                && e.non_resource_urls.is_empty()
                && e.api_groups == m.api_groups
                && e.resources == m.resources
                && e.resource_names == m.resource_names
        }) {
            for v in &m.verbs {
                if !has(&existing.verbs, v) {
                    existing.verbs.push(v.clone());
                }
            }
        } else {
            merged.push(m.clone());
        }
    }
    let set: BTreeSet<String> = merged.iter().map(Rule::compact_string).collect();
    set.into_iter().collect()
}

/// Rules that grant everything (`cluster-admin`): what using an aggregationRule needs.
pub fn full_authority() -> Vec<Rule> {
    let all = || vec!["*".to_owned()];
    vec![
        Rule {
            verbs: all(),
            api_groups: all(),
            resources: all(),
            ..Rule::default()
        },
        Rule {
            verbs: all(),
            non_resource_urls: all(),
            ..Rule::default()
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> Rule {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Rule {
            verbs: v(verbs),
            api_groups: v(groups),
            resources: v(resources),
            resource_names: v(names),
            non_resource_urls: Vec::new(),
        }
    }

    fn urls(verbs: &[&str], urls: &[&str]) -> Rule {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Rule {
            verbs: v(verbs),
            non_resource_urls: v(urls),
            ..Rule::default()
        }
    }

    #[test]
    fn resource_rules_match_as_rbac_does() {
        let get = |res: &str, name: &str| Attributes::resource("get", "", res, "ns", name);
        let cases: Vec<(Rule, Attributes, bool, &str)> = vec![
            (
                rule(&["get"], &[""], &["secrets"], &[]),
                get("secrets", "s"),
                true,
                "plain",
            ),
            (
                rule(&["list"], &[""], &["secrets"], &[]),
                get("secrets", "s"),
                false,
                "other verb",
            ),
            (
                rule(&["*"], &[""], &["secrets"], &[]),
                get("secrets", "s"),
                true,
                "verb *",
            ),
            (
                rule(&["get"], &["apps"], &["secrets"], &[]),
                get("secrets", "s"),
                false,
                "other group",
            ),
            (
                rule(&["get"], &["*"], &["secrets"], &[]),
                get("secrets", "s"),
                true,
                "group *",
            ),
            (
                rule(&["get"], &[""], &["*"], &[]),
                get("secrets", "s"),
                true,
                "resource *",
            ),
            (
                rule(&["get"], &[""], &["*"], &[]),
                get("serviceaccounts/token", "s"),
                true,
                "* covers subresources",
            ),
            (
                rule(&["get"], &[""], &["serviceaccounts"], &[]),
                get("serviceaccounts/token", "s"),
                false,
                "resource is not its subresource",
            ),
            (
                rule(&["get"], &[""], &["serviceaccounts/token"], &[]),
                get("serviceaccounts/token", "s"),
                true,
                "exact subresource",
            ),
            (
                rule(&["get"], &[""], &["*/token"], &[]),
                get("serviceaccounts/token", "s"),
                true,
                "*/sub",
            ),
            (
                rule(&["get"], &[""], &["*/status"], &[]),
                get("serviceaccounts/token", "s"),
                false,
                "*/other",
            ),
            (
                rule(&["get"], &[""], &["serviceaccounts/*"], &[]),
                get("serviceaccounts/token", "s"),
                false,
                "res/* is literal",
            ),
            (
                rule(&["get"], &[""], &["serviceaccounts/token"], &[]),
                get("serviceaccounts", "s"),
                false,
                "subresource rule on resource",
            ),
            (
                rule(&["get"], &[""], &["secrets"], &["s"]),
                get("secrets", "s"),
                true,
                "named",
            ),
            (
                rule(&["get"], &[""], &["secrets"], &["t"]),
                get("secrets", "s"),
                false,
                "other name",
            ),
            (
                rule(&["list"], &[""], &["secrets"], &["s"]),
                Attributes::resource("list", "", "secrets", "ns", ""),
                false,
                "named rule, unnamed list",
            ),
            (
                rule(&["create"], &[""], &["secrets"], &["s"]),
                Attributes::resource("create", "", "secrets", "ns", ""),
                false,
                "named rule, create",
            ),
            (
                rule(&["impersonate"], &[""], &["users"], &["bob"]),
                Attributes::resource("impersonate", "", "users", "", "bob"),
                true,
                "custom verb",
            ),
            (
                rule(&["get"], &["*"], &["*"], &[]),
                Attributes::non_resource("get", "/version"),
                false,
                "resource rule, path request",
            ),
        ];
        for (r, a, want, why) in cases {
            assert_eq!(rule_allows(&r, &a), want, "{why}");
        }
    }

    #[test]
    fn non_resource_rules_match_paths_and_prefixes() {
        let cases = [
            (urls(&["get"], &["/version"]), "/version", true),
            (urls(&["get"], &["/version"]), "/version/", false),
            (urls(&["get"], &["/apis/*"]), "/apis/apps/v1", true),
            (urls(&["get"], &["/apis/*"]), "/apis", false),
            (urls(&["get"], &["*"]), "/anything", true),
            (urls(&["post"], &["*"]), "/anything", false),
        ];
        for (r, path, want) in cases {
            assert_eq!(
                rule_allows(&r, &Attributes::non_resource("get", path)),
                want,
                "{path}"
            );
        }
        let resource_rule = rule(&["*"], &["*"], &["*"], &[]);
        assert!(!rule_allows(
            &resource_rule,
            &Attributes::non_resource("get", "/api")
        ));
    }

    #[test]
    fn covers_breaks_rules_down_as_upstream() {
        let owner = vec![
            rule(&["get", "list"], &[""], &["secrets"], &[]),
            rule(&["*"], &["apps"], &["*/status"], &[]),
            rule(&["get"], &[""], &["configmaps"], &["a"]),
            urls(&["get"], &["/healthz*"]),
        ];
        let cases: Vec<(Rule, usize)> = vec![
            (rule(&["get"], &[""], &["secrets"], &[]), 0),
            (rule(&["get", "delete"], &[""], &["secrets"], &[]), 1),
            (rule(&["patch"], &["apps"], &["deployments/status"], &[]), 0),
            (rule(&["patch"], &["apps"], &["deployments"], &[]), 1),
            (rule(&["get"], &[""], &["configmaps"], &["a"]), 0),
            (rule(&["get"], &[""], &["configmaps"], &["a", "b"]), 1),
            (rule(&["get"], &[""], &["configmaps"], &[]), 1),
            (urls(&["get"], &["/healthz/ping"]), 0),
            (urls(&["get", "post"], &["/healthz"]), 1),
        ];
        for (servant, missing) in cases {
            assert_eq!(
                uncovered(&owner, std::slice::from_ref(&servant)).len(),
                missing,
                "{servant:?}"
            );
        }
        assert!(uncovered(&full_authority(), &owner).is_empty());
    }

    #[test]
    fn missing_rules_print_compact_as_go() {
        let missing = uncovered(
            &[],
            &[rule(&["delete", "get"], &["apps"], &["deployments"], &[])],
        );
        assert_eq!(
            compact_missing(&missing),
            ["{APIGroups:[\"apps\"], Resources:[\"deployments\"], Verbs:[\"delete\" \"get\"]}"]
        );
    }
}
