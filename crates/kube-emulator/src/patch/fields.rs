//! Field paths and sets as managedFields track them: the leaves a manager can own, reading and
//! writing at a path, `fieldsV1` encoding, and the leaves a write changed. Used by
//! `managed_fields` and `apply`.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// A leaf path of a managed field (lists are atomic, so a list is a leaf).
pub type FieldPath = Vec<String>;
pub type FieldSet = BTreeSet<FieldPath>;

/// Leaf paths of an object that field managers can own: labels, annotations, finalizers and
/// ownerReferences under metadata, and every top-level field other than apiVersion/kind/metadata.
pub fn owned_leaves(obj: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    for (mut prefix, v) in owned_roots(obj) {
        leaves(v, &mut prefix, &mut out);
    }
    out
}

fn leaves(v: &Value, prefix: &mut Vec<String>, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                prefix.push(k.clone());
                leaves(c, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

pub fn at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for seg in path {
        cur = cur.as_object()?.get(seg)?;
    }
    Some(cur)
}

pub(super) fn set_at(v: &mut Value, path: &[String], value: Value) {
    let mut cur = v;
    for seg in path {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Value::Object(m) = cur else { return };
        cur = m.entry(seg.clone()).or_insert(Value::Null);
    }
    *cur = value;
}

pub(super) fn remove_at(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = &mut *v;
    for seg in parents {
        match cur.as_object_mut().and_then(|m| m.get_mut(seg)) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
    // A map emptied by the removal goes too: nobody owns it any more, and the
    // real server drops it (a left-over `{}` would fail `required` checks).
    if !parents.is_empty()
        && at(v, parents)
            .and_then(Value::as_object)
            .is_some_and(|m| m.is_empty())
    {
        remove_at(v, parents);
    }
}

pub(super) fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Serializes a field set as `fieldsV1` (`{"f:spec":{"f:x":{}}}`).
pub fn encode_fields(set: &FieldSet) -> Value {
    let mut root = Value::Object(Map::new());
    for path in set {
        let mut cur = &mut root;
        for seg in path {
            let Value::Object(m) = cur else { break };
            cur = m
                .entry(format!("f:{seg}"))
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    root
}

/// Parses `fieldsV1`; list element keys (`k:`, `v:`, `i:`) make their list an atomic leaf.
pub fn decode_fields(v: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    decode_into(v, &mut Vec::new(), &mut out);
    out
}

fn decode_into(v: &Value, prefix: &mut Vec<String>, out: &mut FieldSet) {
    let Some(m) = v.as_object() else { return };
    let children: Vec<(&String, &Value)> = m.iter().filter(|(k, _)| *k != ".").collect();
    if children.is_empty() || children.iter().any(|(k, _)| !k.starts_with("f:")) {
        if !prefix.is_empty() {
            out.insert(prefix.clone());
        }
        return;
    }
    for (k, c) in children {
        prefix.push(k[2..].to_string());
        decode_into(c, prefix, out);
        prefix.pop();
    }
}

/// The owned leaves (`owned_leaves`) of `new` whose value differs from
/// `old`'s at the same path (all of them without `old`), and those of `old`
/// that `new` lacks. One walk of both objects that skips equal subtrees:
/// building every leaf path of both was most of a merge patch's cost.
pub(super) fn changed_leaves(old: Option<&Value>, new: &Value) -> (FieldSet, FieldSet) {
    let mut changed = FieldSet::new();
    let mut removed = FieldSet::new();
    for (mut prefix, v) in owned_roots(new) {
        let before = old.and_then(|o| at(o, &prefix));
        unequal_leaves(v, before, false, &mut prefix, &mut changed);
    }
    if let Some(old) = old {
        for (mut prefix, v) in owned_roots(old) {
            let after = at(new, &prefix);
            unequal_leaves(v, after, true, &mut prefix, &mut removed);
        }
    }
    (changed, removed)
}

/// The subtrees field managers can own, with their paths (see `owned_leaves`).
fn owned_roots(obj: &Value) -> Vec<(FieldPath, &Value)> {
    let Some(map) = obj.as_object() else {
        return Vec::new();
    };
    let mut roots = Vec::new();
    for (k, v) in map {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                for mk in ["labels", "annotations", "finalizers", "ownerReferences"] {
                    if let Some(mv) = v.get(mk) {
                        roots.push((vec!["metadata".to_string(), mk.to_string()], mv));
                    }
                }
            }
            _ => roots.push((vec![k.clone()], v)),
        }
    }
    roots
}

/// Leaves under `v` whose counterpart in `other` is not equal or, with
/// `only_missing`, absent.
fn unequal_leaves(
    v: &Value,
    other: Option<&Value>,
    only_missing: bool,
    prefix: &mut FieldPath,
    out: &mut FieldSet,
) {
    if other == Some(v) {
        return;
    }
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                prefix.push(k.clone());
                let o = other.and_then(Value::as_object).and_then(|o| o.get(k));
                unequal_leaves(c, o, only_missing, prefix, out);
                prefix.pop();
            }
        }
        _ if !only_missing || other.is_none() => {
            out.insert(prefix.clone());
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `changed_leaves` finds what comparing every leaf path of both objects finds.
    #[test]
    fn changed_leaves_match_a_leaf_by_leaf_comparison() {
        let by_leaf = |old: Option<&Value>, new: &Value| {
            let changed: FieldSet = owned_leaves(new)
                .into_iter()
                .filter(|p| old.is_none_or(|o| at(o, p) != at(new, p)))
                .collect();
            let removed: FieldSet = old
                .map(owned_leaves)
                .unwrap_or_default()
                .into_iter()
                .filter(|p| at(new, p).is_none())
                .collect();
            (changed, removed)
        };
        let base = json!({"apiVersion": "v1", "kind": "X",
            "metadata": {"name": "a", "resourceVersion": "1", "labels": {"a": "1", "b": "2"},
                "ownerReferences": [{"uid": "u"}]},
            "spec": {"s": 1, "nested": {"x": [1, 2], "y": {"z": true}}, "empty": {}},
            "status": {"n": 1}});
        let variants = [
            json!({"apiVersion": "v2", "kind": "Y",
                "metadata": {"name": "a", "resourceVersion": "2", "labels": {"a": "1", "b": "2"},
                    "ownerReferences": [{"uid": "u"}]},
                "spec": {"s": 1, "nested": {"x": [1, 2], "y": {"z": true}}, "empty": {}},
                "status": {"n": 1}}),
            json!({"metadata": {"labels": {"a": "1", "c": "3"}, "annotations": {"k": "v"}},
                "spec": {"s": 2, "nested": {"x": [2], "y": "scalar"}, "empty": {"now": 1}}}),
            json!({"metadata": {"name": "a"}, "spec": {"s": {"deeper": 1}, "nested": {}},
                "status": null}),
            json!({"spec": 1}),
            json!({}),
        ];
        let mut pairs = vec![(None, base.clone()), (Some(base.clone()), base.clone())];
        for v in &variants {
            pairs.push((Some(base.clone()), v.clone()));
            pairs.push((Some(v.clone()), base.clone()));
            pairs.push((None, v.clone()));
        }
        for (old, new) in &pairs {
            assert_eq!(
                changed_leaves(old.as_ref(), new),
                by_leaf(old.as_ref(), new),
                "old {old:?}, new {new}"
            );
        }
    }

    #[test]
    fn fields_round_trip() {
        let obj = json!({"spec": {"a": 1, "b": {"c": [1]}}, "metadata": {"labels": {"x": "y"}}});
        let set = owned_leaves(&obj);
        assert_eq!(decode_fields(&encode_fields(&set)), set);
    }
}
