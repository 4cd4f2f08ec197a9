//! Embedded resources (schemaobjectmeta.Validate): an `x-kubernetes-embedded-resource` below
//! the root needs `kind` and `apiVersion`. Run by `validate_and_prune` (in `mod.rs`) when
//! `Prepared` says the schema has any; `lists` is the other structural walk.

use serde_json::Value;

use super::FieldError;
use super::access::{Additional, additional, items, props, sbool};
use super::paths::{Seg, field_path};

pub(super) fn validate_embedded<'a>(
    s: &Value,
    v: &'a Value,
    path: &mut Vec<Seg<'a>>,
    is_root: bool,
    out: &mut Vec<FieldError>,
) {
    match v {
        Value::Object(m) => {
            if !is_root && sbool(s, "x-kubernetes-embedded-resource") {
                let empty = |k: &str| m.get(k).and_then(Value::as_str).is_none_or(str::is_empty);
                if empty("kind") {
                    path.push(Seg::Field("kind"));
                    out.push(FieldError::required(field_path(path), "must not be empty"));
                    path.pop();
                }
                if empty("apiVersion") {
                    path.push(Seg::Field("apiVersion"));
                    out.push(FieldError::required(field_path(path), "must not be empty"));
                    path.pop();
                }
            }
            for (k, cv) in m {
                if let Some(ps) = props(s).and_then(|p| p.get(k)) {
                    path.push(Seg::Field(k));
                    validate_embedded(ps, cv, path, false, out);
                    path.pop();
                } else if let Additional::Schema(a) = additional(s) {
                    path.push(Seg::Key(k));
                    validate_embedded(a, cv, path, false, out);
                    path.pop();
                }
            }
        }
        Value::Array(a) => {
            if let Some(it) = items(s) {
                for (i, x) in a.iter().enumerate() {
                    path.push(Seg::Index(i));
                    validate_embedded(it, x, path, false, out);
                    path.pop();
                }
            }
        }
        _ => {}
    }
}
