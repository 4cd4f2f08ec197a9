//! Structural pruning (structuralpruning): unknown fields go unless
//! `x-kubernetes-preserve-unknown-fields` keeps them, and non-nullable nulls without a default
//! are dropped. Runs first in `validate_and_prune` (in `mod.rs`), before `defaults`.

use serde_json::Value;

use super::access::{Additional, additional, items, props, sbool, sget};

pub(super) fn prune(v: &mut Value, s: Option<&Value>, is_root: bool) {
    if let Some(s) = s
        && sbool(s, "x-kubernetes-preserve-unknown-fields")
    {
        skip_prune(v, s, is_root);
        return;
    }
    match v {
        Value::Object(m) => {
            let Some(s) = s else {
                m.clear();
                return;
            };
            let embedded = is_root || sbool(s, "x-kubernetes-embedded-resource");
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let child = props(s).and_then(|p| p.get(&k));
                let sub = match (child, additional(s)) {
                    (Some(c), _) => Some(Some(c)),
                    (None, Additional::Schema(a)) => Some(Some(a)),
                    (None, Additional::Bool(true)) => Some(None),
                    _ => None,
                };
                match sub {
                    Some(sub) => {
                        if let Some(cv) = m.get_mut(&k) {
                            prune(cv, sub, false);
                        }
                    }
                    None => {
                        m.remove(&k);
                    }
                }
            }
        }
        Value::Array(a) => {
            let it = s.and_then(items);
            for x in a {
                prune(x, it, false);
            }
        }
        _ => {}
    }
}

fn skip_prune(v: &mut Value, s: &Value, is_root: bool) {
    match v {
        Value::Object(m) => {
            let embedded = is_root || sbool(s, "x-kubernetes-embedded-resource");
            for (k, cv) in m.iter_mut() {
                if embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(c) = props(s).and_then(|p| p.get(k)) {
                    prune(cv, Some(c), false);
                } else if let Additional::Schema(a) = additional(s) {
                    prune(cv, Some(a), false);
                }
            }
        }
        Value::Array(a) => {
            if let Some(it) = items(s) {
                for x in a {
                    skip_prune(x, it, false);
                }
            }
        }
        _ => {}
    }
}

/// Drops `null`s of non-nullable properties that have no default.
pub(super) fn prune_nulls(v: &mut Value, s: &Value) {
    match v {
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let sub = match (props(s).and_then(|p| p.get(&k)), additional(s)) {
                    (Some(c), _) => Some((c, true)),
                    (None, Additional::Schema(a)) => Some((a, false)),
                    _ => None,
                };
                let Some((sub, is_prop)) = sub else { continue };
                let drop = is_prop
                    && m.get(&k).is_some_and(Value::is_null)
                    && !sbool(sub, "nullable")
                    && sget(sub, "default").is_none();
                if drop {
                    m.remove(&k);
                } else if let Some(cv) = m.get_mut(&k) {
                    prune_nulls(cv, sub);
                }
            }
        }
        Value::Array(a) => {
            if let Some(it) = items(s) {
                for x in a {
                    prune_nulls(x, it);
                }
            }
        }
        _ => {}
    }
}
