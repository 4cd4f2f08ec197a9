//! List types (structurallisttype.ValidateListSetsAndMaps): `set` and `map` lists must not
//! hold duplicates, map-list items need their keys; and the correlation of list items with their
//! old values that ratcheting in `keywords` and `cel` relies on.

use serde_json::{Map, Value};

use super::FieldError;
use super::access::{Additional, additional, items, props, sget, sstr};
use super::paths::{Seg, child, field_path};

pub(super) fn validate_lists<'a>(
    s: &Value,
    v: &'a Value,
    path: &mut Vec<Seg<'a>>,
    out: &mut Vec<FieldError>,
) {
    match v {
        Value::Object(m) => {
            for (k, cv) in m {
                if let Some(ps) = props(s).and_then(|p| p.get(k)) {
                    path.push(Seg::Field(k));
                    validate_lists(ps, cv, path, out);
                    path.pop();
                } else if let Additional::Schema(a) = additional(s) {
                    path.push(Seg::Key(k));
                    validate_lists(a, cv, path, out);
                    path.pop();
                }
            }
        }
        Value::Array(a) => {
            match sstr(s, "x-kubernetes-list-type") {
                Some("set") => {
                    for (i, x) in a.iter().enumerate() {
                        let earlier = a[..i].iter().filter(|y| *y == x).count();
                        if earlier == 1 {
                            path.push(Seg::Index(i));
                            out.push(FieldError::duplicate(field_path(path), x));
                            path.pop();
                        }
                    }
                }
                Some("map") => {
                    let keys = map_keys(s);
                    let mut seen: Vec<Vec<Value>> = Vec::new();
                    for (i, x) in a.iter().enumerate() {
                        path.push(Seg::Index(i));
                        match key_tuple(s, &keys, x) {
                            Some(t) => {
                                if seen.contains(&t) {
                                    let km: Map<String, Value> =
                                        keys.iter().cloned().zip(t.iter().cloned()).collect();
                                    out.push(FieldError::duplicate(
                                        field_path(path),
                                        &Value::Object(km),
                                    ));
                                } else {
                                    seen.push(t);
                                }
                            }
                            None if x.is_object() => {
                                for k in &keys {
                                    if x.get(k).is_none() {
                                        let missing = child(path, Seg::Field(k));
                                        out.push(FieldError::required(field_path(&missing), ""));
                                    }
                                }
                            }
                            None => {}
                        }
                        path.pop();
                    }
                }
                _ => {}
            }
            if let Some(it) = items(s) {
                for (i, x) in a.iter().enumerate() {
                    path.push(Seg::Index(i));
                    validate_lists(it, x, path, out);
                    path.pop();
                }
            }
        }
        _ => {}
    }
}

/// The old list item correlated with `item` (only `x-kubernetes-list-type: map`
/// lists correlate, by their keys; sets correlate by value).
pub(super) fn correlate_item<'a>(s: &Value, old: &'a [Value], item: &Value) -> Option<&'a Value> {
    match sstr(s, "x-kubernetes-list-type") {
        Some("map") => {
            let keys = map_keys(s);
            let want = key_tuple(s, &keys, item)?;
            old.iter()
                .find(|o| key_tuple(s, &keys, o).as_ref() == Some(&want))
        }
        Some("set") => old.iter().find(|o| *o == item),
        _ => None,
    }
}

fn map_keys(s: &Value) -> Vec<String> {
    sget(s, "x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The key values of a map-list element (a missing key takes its default).
fn key_tuple(s: &Value, keys: &[String], item: &Value) -> Option<Vec<Value>> {
    let m = item.as_object()?;
    let item_props = items(s).and_then(props);
    keys.iter()
        .map(|k| {
            m.get(k).cloned().or_else(|| {
                item_props
                    .and_then(|p| p.get(k))
                    .and_then(|ks| sget(ks, "default"))
                    .cloned()
            })
        })
        .collect()
}
