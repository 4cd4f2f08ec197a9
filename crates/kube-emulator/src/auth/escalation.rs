//! Escalation prevention on RBAC writes, as kube-apiserver's policy-based RBAC storage does
//! it: a Role or ClusterRole may only hold rules its writer holds (or may `escalate`), a binding
//! may only grant a role whose rules its writer holds (or may `bind`), an aggregationRule needs
//! cluster-admin, and a binding's roleRef never changes. Called by `ops` on every RBAC write.

use serde_json::Value;

use super::rbac::{self, CLUSTER_ROLES, GROUP, ROLES, Rule};
use super::{Attributes, MASTERS, decide};
use crate::error::{ApiError, field_error};
use crate::ops::WriteCtx;
use crate::schema::FieldErrorKind;
use crate::store::State;
use crate::user::UserInfo;

fn rules_of(obj: &Value) -> Vec<Rule> {
    obj["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(Rule::from_json)
        .collect()
}

fn escalation_forbidden(
    ctx: &WriteCtx,
    name: &str,
    missing: &[Rule],
    errors: &[String],
) -> ApiError {
    let user = &ctx.user;
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    let mut msg = format!(
        "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        user.username,
        groups.join(" "),
        rbac::compact_missing(missing).join("\n")
    );
    if !errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{}]", errors.join(" ")));
    }
    ApiError::forbidden_resource(GROUP, &ctx.def.plural, name, &msg)
}

fn allowed_to(
    st: &State,
    user: &UserInfo,
    verb: &str,
    resource: &str,
    ns: &str,
    name: &str,
) -> bool {
    decide(
        &st.policy,
        user,
        &Attributes::resource(verb, GROUP, resource, ns, name),
    )
    .allowed
}

/// Whether `ctx.user` may store `obj` (a Role, ClusterRole or binding) in place of `old`.
pub fn check_rbac_write(
    st: &State,
    ctx: &WriteCtx,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let binding = ctx.def.plural.ends_with("bindings");
    if binding
        && let Some(old) = old
        && old["roleRef"] != obj["roleRef"]
    {
        let r = &old["roleRef"];
        let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
        return Err(ApiError::invalid(
            &ctx.def,
            name,
            &[field_error(
                "roleRef",
                FieldErrorKind::Invalid,
                format!(
                    "Invalid value: rbac.RoleRef{{APIGroup:{:?}, Kind:{:?}, Name:{:?}}}: cannot change roleRef",
                    s("apiGroup"),
                    s("kind"),
                    s("name")
                ),
            )],
        ));
    }
    let user = &ctx.user;
    if user.groups.iter().any(|g| g == MASTERS) {
        return Ok(());
    }
    // The request's own name: none on create, as upstream reads it from the URL.
    let request_name = if old.is_some() { name } else { "" };
    if binding {
        let kind = obj["roleRef"]["kind"].as_str().unwrap_or_default();
        let role = obj["roleRef"]["name"].as_str().unwrap_or_default();
        let (resource, key, role_ns) = match kind {
            "Role" => ("roles", ROLES, ctx.namespace.as_str()),
            _ => ("clusterroles", CLUSTER_ROLES, ""),
        };
        if allowed_to(st, user, "bind", resource, &ctx.namespace, role) {
            return Ok(());
        }
        let Some(role_obj) = st.get(key, role_ns, role) else {
            let def = st
                .registry
                .lookup(GROUP, "v1", resource)
                .ok_or_else(|| ApiError::no_route(resource))?;
            return Err(ApiError::not_found(&def, role));
        };
        let (owner, errors) = st.policy.rules_for(user, &ctx.namespace);
        let missing = rbac::uncovered(&owner, &rules_of(role_obj));
        if missing.is_empty() {
            return Ok(());
        }
        return Err(escalation_forbidden(ctx, name, &missing, &errors));
    }
    if allowed_to(
        st,
        user,
        "escalate",
        &ctx.def.plural,
        &ctx.namespace,
        request_name,
    ) {
        return Ok(());
    }
    let (owner, errors) = st.policy.rules_for(user, &ctx.namespace);
    let aggregation = &obj["aggregationRule"];
    if !aggregation.is_null()
        && old.is_none_or(|o| o["aggregationRule"] != *aggregation)
        && !rbac::uncovered(&owner, &rbac::full_authority()).is_empty()
    {
        return Err(ApiError::forbidden_resource(
            GROUP,
            &ctx.def.plural,
            name,
            "must have cluster-admin privileges to use the aggregationRule",
        ));
    }
    let missing = rbac::uncovered(&owner, &rules_of(obj));
    if missing.is_empty() {
        Ok(())
    } else {
        Err(escalation_forbidden(ctx, name, &missing, &errors))
    }
}
