//! Patch application (JSON patch, JSON merge patch, strategic merge as "merge with name-keyed
//! lists") and server-side apply with managedFields tracking. Pure functions over JSON values;
//! `ops` decides which object they run on and stores the result.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::error::ApiError;

/// A leaf path of a managed field (lists are atomic, so a list is a leaf).
pub type FieldPath = Vec<String>;
pub type FieldSet = BTreeSet<FieldPath>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Option<PatchKind> {
        match ct.split(';').next().unwrap_or_default().trim() {
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchKind::Apply)
            }
            _ => None,
        }
    }
}

/// Applies an RFC 6902 patch.
pub fn json_patch(target: &mut Value, body: &[u8]) -> Result<(), ApiError> {
    let ops: json_patch::Patch = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(target, &ops).map_err(|e| {
        ApiError::new(
            422,
            "Invalid",
            format!("the JSON patch could not be applied: {e}"),
        )
    })
}

/// Applies an RFC 7386 merge patch.
pub fn merge_patch(target: &mut Value, body: &[u8]) -> Result<(), ApiError> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid merge patch: {e}")))?;
    if !patch.is_object() {
        return Err(ApiError::bad_request("a merge patch must be a JSON object"));
    }
    json_patch::merge(target, &patch);
    Ok(())
}

/// List fields merged by their `name` key under strategic merge; every other list is replaced.
const NAME_KEYED_LISTS: &[&str] = &[
    "containers",
    "initContainers",
    "ephemeralContainers",
    "env",
    "volumes",
    "imagePullSecrets",
];

/// Strategic merge patch, reduced to: merge patch, name-keyed merge for the lists above,
/// `$patch: replace|delete` on maps and list items, and other `$` directives dropped.
pub fn strategic_patch(target: &mut Value, body: &[u8]) -> Result<(), ApiError> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid strategic merge patch: {e}")))?;
    if !patch.is_object() {
        return Err(ApiError::bad_request(
            "a strategic merge patch must be a JSON object",
        ));
    }
    strategic_merge(target, &patch);
    Ok(())
}

fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(pmap) = patch else {
        *target = patch.clone();
        return;
    };
    match pmap.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = pmap.clone();
            replaced.remove("$patch");
            *target = Value::Object(replaced);
            return;
        }
        Some("delete") => {
            *target = Value::Null;
            return;
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(tmap) = target else { return };
    for (k, v) in pmap {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            tmap.remove(k);
            continue;
        }
        match (tmap.get_mut(k), v) {
            (Some(Value::Array(cur)), Value::Array(items))
                if NAME_KEYED_LISTS.contains(&k.as_str()) =>
            {
                merge_named_list(cur, items);
            }
            (Some(cur @ Value::Object(_)), Value::Object(_)) => strategic_merge(cur, v),
            _ => {
                let mut fresh = Value::Null;
                strategic_merge_new(&mut fresh, v);
                tmap.insert(k.clone(), fresh);
            }
        }
    }
}

fn strategic_merge_new(target: &mut Value, v: &Value) {
    if v.is_object() {
        strategic_merge(target, v);
    } else {
        *target = v.clone();
    }
}

fn merge_named_list(cur: &mut Vec<Value>, items: &[Value]) {
    for item in items {
        let Some(name) = item["name"].as_str() else {
            continue;
        };
        let pos = cur.iter().position(|c| c["name"].as_str() == Some(name));
        let delete = item["$patch"].as_str() == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                cur.remove(i);
            }
            (Some(i), false) => strategic_merge(&mut cur[i], item),
            (None, true) => {}
            (None, false) => {
                let mut fresh = Value::Null;
                strategic_merge(&mut fresh, item);
                cur.push(fresh);
            }
        }
    }
}

// ---- managed fields ----

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

fn set_at(v: &mut Value, path: &[String], value: Value) {
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

fn remove_at(v: &mut Value, path: &[String]) {
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

fn overlaps(a: &[String], b: &[String]) -> bool {
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

/// One `metadata.managedFields` entry, decoded.
#[derive(Debug, Clone)]
pub struct ManagerEntry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub subresource: String,
    pub time: String,
    pub fields: FieldSet,
    /// The entry as stored, written back as is while nothing in it changes
    /// (encoding every manager's fields again was 7% of a write, callgrind).
    /// Whatever changes the entry in this module sets it to `None`.
    raw: Option<Value>,
}

impl ManagerEntry {
    fn same_owner(&self, manager: &str, operation: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }

    /// How conflicts name this manager (the real server adds the API version for updaters).
    fn display(&self) -> String {
        if self.operation == "Update" {
            format!("\"{}\" using {}", self.manager, self.api_version)
        } else {
            format!("\"{}\"", self.manager)
        }
    }
}

#[cfg(test)]
pub fn read_managers(obj: &Value) -> Vec<ManagerEntry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(decode_manager)
        .collect()
}

/// Like `read_managers`, but moves the entries out of `obj` and keeps each
/// one as stored for `write_managers`.
fn take_managers(obj: &mut Value) -> Vec<ManagerEntry> {
    let Some(Value::Array(list)) = obj["metadata"]
        .as_object_mut()
        .and_then(|m| m.remove("managedFields"))
    else {
        return Vec::new();
    };
    list.into_iter()
        .map(|raw| {
            let mut entry = decode_manager(&raw);
            entry.raw = Some(raw);
            entry
        })
        .collect()
}

fn decode_manager(e: &Value) -> ManagerEntry {
    ManagerEntry {
        manager: e["manager"].as_str().unwrap_or_default().to_string(),
        operation: e["operation"].as_str().unwrap_or("Update").to_string(),
        api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
        subresource: e["subresource"].as_str().unwrap_or_default().to_string(),
        time: e["time"].as_str().unwrap_or_default().to_string(),
        fields: decode_fields(&e["fieldsV1"]),
        raw: None,
    }
}

fn write_managers(obj: &mut Value, entries: Vec<ManagerEntry>) {
    let list: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            if let Some(raw) = e.raw {
                return raw;
            }
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": encode_fields(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = Value::String(e.subresource);
            }
            v
        })
        .collect();
    if list.is_empty() {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    } else {
        obj["metadata"]["managedFields"] = Value::Array(list);
    }
}

/// Identity of the writer for managedFields.
#[derive(Debug, Clone)]
pub struct Writer<'a> {
    pub manager: &'a str,
    pub subresource: &'a str,
    pub api_version: &'a str,
    pub now: &'a str,
}

/// Records a non-apply write: fields that changed between `old` and `new` move to `writer`.
pub fn record_update(old: Option<&Value>, new: &mut Value, writer: &Writer) {
    let (changed, removed) = changed_leaves(old, new);
    if changed.is_empty() && removed.is_empty() {
        return;
    }
    let mut entries = take_managers(new);
    for e in &mut entries {
        let before = e.fields.len();
        e.fields
            .retain(|f| !changed.iter().chain(removed.iter()).any(|c| overlaps(f, c)));
        if e.fields.len() != before {
            e.raw = None;
        }
    }
    match entries
        .iter_mut()
        .find(|e| e.same_owner(writer.manager, "Update", writer.subresource))
    {
        Some(e) => {
            e.fields.extend(changed);
            e.time = writer.now.to_string();
            e.api_version = writer.api_version.to_string();
            e.raw = None;
        }
        None => entries.push(ManagerEntry {
            manager: writer.manager.to_string(),
            operation: "Update".into(),
            api_version: writer.api_version.to_string(),
            subresource: writer.subresource.to_string(),
            time: writer.now.to_string(),
            fields: changed,
            raw: None,
        }),
    }
    write_managers(new, entries);
}

/// The owned leaves (`owned_leaves`) of `new` whose value differs from
/// `old`'s at the same path (all of them without `old`), and those of `old`
/// that `new` lacks. One walk of both objects that skips equal subtrees:
/// building every leaf path of both was most of a merge patch's cost.
fn changed_leaves(old: Option<&Value>, new: &Value) -> (FieldSet, FieldSet) {
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

/// Server-side apply of `applied` (an object of the same kind) onto `current` (None to create).
/// Returns the merged object with updated managedFields, or the conflicts as (manager, field).
pub fn server_side_apply(
    current: Option<&Value>,
    applied: &Value,
    writer: &Writer,
    force: bool,
) -> Result<Value, Vec<(String, String)>> {
    let empty = json!({});
    let base = current.unwrap_or(&empty);
    let mut merged = base.clone();
    let mut entries = take_managers(&mut merged);
    let applied_set = owned_leaves(applied);
    // An empty map in the configuration asserts no value for what lies below it.
    let asserting: Vec<&FieldPath> = applied_set
        .iter()
        .filter(|p| !matches!(at(applied, p), Some(Value::Object(m)) if m.is_empty()))
        .collect();

    // Conflicts: another owner holds an overlapping field whose value would change.
    let mut conflicts = Vec::new();
    let mut forced: Vec<(usize, FieldPath)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if e.same_owner(writer.manager, "Apply", writer.subresource) {
            continue;
        }
        for owned in &e.fields {
            for mine in &asserting {
                if !overlaps(owned, mine) {
                    continue;
                }
                let deeper = if owned.len() >= mine.len() {
                    owned
                } else {
                    mine
                };
                if at(base, deeper) != at(applied, deeper) {
                    if force {
                        forced.push((i, owned.clone()));
                    } else {
                        conflicts.push((e.display(), format!(".{}", owned.join("."))));
                    }
                }
            }
        }
    }
    if !conflicts.is_empty() {
        conflicts.sort();
        conflicts.dedup();
        return Err(conflicts);
    }
    for (i, path) in forced {
        entries[i].fields.remove(&path);
        entries[i].raw = None;
    }

    // Fields this manager applied before but no longer does are removed unless someone else owns them.
    if let Some(mine) = entries
        .iter()
        .find(|e| e.same_owner(writer.manager, "Apply", writer.subresource))
    {
        for path in &mine.fields {
            let kept = asserting.iter().any(|p| overlaps(p, path));
            let shared = entries.iter().any(|e| {
                !e.same_owner(writer.manager, "Apply", writer.subresource)
                    && e.fields.iter().any(|p| overlaps(p, path))
            });
            if !kept && !shared {
                remove_at(&mut merged, path);
            }
        }
    }
    for path in &applied_set {
        match at(applied, path) {
            // An empty map creates the map but keeps what others set inside it.
            Some(Value::Object(m))
                if m.is_empty() && at(&merged, path).is_some_and(Value::is_object) => {}
            Some(v) => set_at(&mut merged, path, v.clone()),
            None => {}
        }
    }
    for key in ["apiVersion", "kind"] {
        if let Some(v) = applied.get(key) {
            merged[key] = v.clone();
        }
    }
    for key in ["name", "namespace", "generateName"] {
        if current.is_none()
            && let Some(v) = applied["metadata"].get(key)
        {
            merged["metadata"][key] = v.clone();
        }
    }

    entries.retain(|e| !e.same_owner(writer.manager, "Apply", writer.subresource));
    entries.push(ManagerEntry {
        manager: writer.manager.to_string(),
        operation: "Apply".into(),
        api_version: writer.api_version.to_string(),
        subresource: writer.subresource.to_string(),
        time: writer.now.to_string(),
        fields: applied_set,
        raw: None,
    });
    write_managers(&mut merged, entries);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(m: &'static str) -> Writer<'static> {
        Writer {
            manager: m,
            subresource: "",
            api_version: "v1",
            now: "2024-01-01T00:00:00Z",
        }
    }

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

    #[test]
    fn apply_conflicts_then_force_moves_ownership() {
        let a = server_side_apply(None, &json!({"spec": {"x": 1}}), &writer("a"), false).unwrap();
        let err = server_side_apply(Some(&a), &json!({"spec": {"x": 2}}), &writer("b"), false)
            .unwrap_err();
        assert_eq!(err, vec![("\"a\"".to_string(), ".spec.x".to_string())]);
        // Same value: shared ownership, no conflict.
        assert!(
            server_side_apply(Some(&a), &json!({"spec": {"x": 1}}), &writer("b"), false).is_ok()
        );
        let forced =
            server_side_apply(Some(&a), &json!({"spec": {"x": 2}}), &writer("b"), true).unwrap();
        assert_eq!(forced["spec"]["x"], 2);
        let managers = read_managers(&forced);
        assert_eq!(managers.len(), 1);
        assert_eq!(managers[0].manager, "b");
    }

    #[test]
    fn untouched_managers_are_written_back_as_stored() {
        let a = server_side_apply(
            None,
            &json!({"spec": {"x": 1, "y": 1}}),
            &writer("a"),
            false,
        )
        .unwrap();
        let stored_a = a["metadata"]["managedFields"][0].clone();
        // b applies a field of its own: a's entry is kept exactly as stored.
        let b =
            server_side_apply(Some(&a), &json!({"spec": {"z": 1}}), &writer("b"), false).unwrap();
        let managers = b["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(managers.len(), 2);
        assert_eq!(managers[0], stored_a);
        // An update taking over one of a's fields re-encodes a's entry without it.
        let mut updated = b.clone();
        updated["spec"]["x"] = json!(2);
        record_update(Some(&b), &mut updated, &writer("c"));
        let a_now = read_managers(&updated)
            .into_iter()
            .find(|e| e.manager == "a")
            .unwrap();
        assert_eq!(
            a_now.fields,
            decode_fields(&json!({"f:spec": {"f:y": {}}})),
            "a keeps spec.y only"
        );
        // Forcing b over a's last field drops a's entry altogether.
        let forced = server_side_apply(
            Some(&updated),
            &json!({"spec": {"y": 5, "z": 1}}),
            &writer("b"),
            true,
        )
        .unwrap();
        assert!(read_managers(&forced).iter().all(|e| e.manager != "a"));
    }

    #[test]
    fn apply_removes_fields_dropped_from_config() {
        let a = server_side_apply(
            None,
            &json!({"spec": {"x": 1, "y": 2}}),
            &writer("a"),
            false,
        )
        .unwrap();
        let b =
            server_side_apply(Some(&a), &json!({"spec": {"x": 1}}), &writer("a"), false).unwrap();
        assert_eq!(b["spec"], json!({"x": 1}));
    }

    #[test]
    fn strategic_merge_keys_containers_by_name() {
        let mut t = json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}});
        strategic_patch(
            &mut t,
            br#"{"spec":{"containers":[{"name":"b","image":"2"}],"$setElementOrder/containers":[]}}"#,
        )
        .unwrap();
        assert_eq!(t["spec"]["containers"][0]["image"], "1");
        assert_eq!(t["spec"]["containers"][1]["image"], "2");
    }
}
