//! ClusterRole aggregation as the controller-manager's clusterroleaggregation controller does
//! it: an aggregated role's rules are the rules of the ClusterRoles its selectors match (sorted
//! by name, itself skipped, exact duplicates dropped), written back into the stored object and
//! repeated until nothing changes, so chains such as view → edit → admin settle.

use serde_json::{Value, json};

use super::rbac::CLUSTER_ROLES;
use crate::ops::{self, WriteCtx};
use crate::selector::LabelSelector;
use crate::store::State;

/// A `metav1.LabelSelector` in the selector string syntax.
fn selector_string(sel: &Value) -> String {
    let mut terms = Vec::new();
    for (k, v) in sel["matchLabels"].as_object().into_iter().flatten() {
        terms.push(format!("{k}={}", v.as_str().unwrap_or_default()));
    }
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match e["operator"].as_str() {
            Some("In") => terms.push(format!("{key} in ({})", values.join(","))),
            Some("NotIn") => terms.push(format!("{key} notin ({})", values.join(","))),
            Some("Exists") => terms.push(key.to_owned()),
            Some("DoesNotExist") => terms.push(format!("!{key}")),
            _ => {}
        }
    }
    terms.join(",")
}

/// Recomputes every aggregated ClusterRole until a fixed point (bounded, for cycles).
pub fn aggregate(st: &mut State) {
    let Some(def) = st.registry.lookup(super::rbac::GROUP, "v1", "clusterroles") else {
        return;
    };
    for _ in 0..10 {
        let roles: Vec<(String, std::sync::Arc<Value>)> = st
            .range(CLUSTER_ROLES, None, None)
            .map(|((_, n), o)| (n.clone(), o.clone()))
            .collect();
        let mut changed = Vec::new();
        for (name, role) in &roles {
            let Some(selectors) = role["aggregationRule"]["clusterRoleSelectors"].as_array() else {
                continue;
            };
            let selectors: Vec<LabelSelector> = selectors
                .iter()
                .filter_map(|s| LabelSelector::parse(&selector_string(s)).ok())
                .collect();
            let mut rules: Vec<Value> = Vec::new();
            for (other_name, other) in &roles {
                if other_name == name || !selectors.iter().any(|s| s.matches(other)) {
                    continue;
                }
                for r in other["rules"].as_array().into_iter().flatten() {
                    if !rules.contains(r) {
                        rules.push(r.clone());
                    }
                }
            }
            let current = role["rules"].as_array().cloned().unwrap_or_default();
            if current != rules {
                let mut updated = (**role).clone();
                updated["rules"] = json!(rules);
                changed.push((name.clone(), role.clone(), updated));
            }
        }
        if changed.is_empty() {
            return;
        }
        let mut ctx = WriteCtx::system(def.clone(), "");
        ctx.manager = "clusterrole-aggregation-controller".into();
        for (name, old, updated) in changed {
            if let Err(e) = ops::update_stored(st, &ctx, &old, updated) {
                tracing::warn!(clusterrole = %name, error = %e, "cannot store aggregated rules");
            }
        }
    }
}
