//! The `Policy` index: stored bindings by subject with the rules of the roles they reference,
//! so a decision reads only the requester's own grants.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::{CLUSTER_ROLE_BINDINGS, CLUSTER_ROLES, GROUP, ROLE_BINDINGS, ROLES, Rule, rule_allows};
use crate::auth::attributes::Attributes;
use crate::store::State;
use crate::user::UserInfo;

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
