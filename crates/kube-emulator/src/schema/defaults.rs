//! Structural defaulting (structuraldefaulting): `default`s fill absent fields and
//! non-nullable nulls. Runs in `validate_and_prune` (in `mod.rs`) after `prune`, before any
//! validation.

use serde_json::Value;

use super::access::{Additional, additional, items, props, sbool, sget};

fn non_nullable_null(v: &Value, s: &Value) -> bool {
    v.is_null() && !sbool(s, "nullable")
}

pub(super) fn apply_defaults(v: &mut Value, s: &Value) {
    match v {
        Value::Object(m) => {
            if let Some(p) = props(s) {
                for (k, ps) in p {
                    if let Some(d) = sget(ps, "default") {
                        let missing = m.get(k).is_none_or(|cv| non_nullable_null(cv, ps));
                        if missing {
                            m.insert(k.clone(), d.clone());
                        }
                    }
                }
            }
            for (k, cv) in m.iter_mut() {
                if let Some(ps) = props(s).and_then(|p| p.get(k)) {
                    apply_defaults(cv, ps);
                } else if let Additional::Schema(a) = additional(s) {
                    match sget(a, "default") {
                        Some(d) if non_nullable_null(cv, a) => *cv = d.clone(),
                        _ => apply_defaults(cv, a),
                    }
                }
            }
        }
        Value::Array(arr) => {
            if let Some(it) = items(s) {
                for x in arr {
                    match sget(it, "default") {
                        Some(d) if non_nullable_null(x, it) => *x = d.clone(),
                        _ => apply_defaults(x, it),
                    }
                }
            }
        }
        _ => {}
    }
}
