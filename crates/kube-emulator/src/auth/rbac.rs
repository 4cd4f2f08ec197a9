//! RBAC as kube-apiserver evaluates it: the rule matcher (`rule_allows`, pure), the `Policy`
//! index built from the stored Roles, ClusterRoles and bindings (bindings indexed by subject, so
//! a decision reads only the requester's own grants), and `covers`, the escalation comparison.
//! `auth` rebuilds the index when an RBAC object changes and asks it on every request.

mod covers;
mod policy;
mod rule;

pub use covers::{compact_missing, full_authority, uncovered};
pub use policy::{Decision, Policy};
pub use rule::{Rule, rule_allows};

pub const GROUP: &str = "rbac.authorization.k8s.io";
pub const ROLES: &str = "rbac.authorization.k8s.io/roles";
pub const CLUSTER_ROLES: &str = "rbac.authorization.k8s.io/clusterroles";
pub const ROLE_BINDINGS: &str = "rbac.authorization.k8s.io/rolebindings";
pub const CLUSTER_ROLE_BINDINGS: &str = "rbac.authorization.k8s.io/clusterrolebindings";

#[cfg(test)]
mod tests;
