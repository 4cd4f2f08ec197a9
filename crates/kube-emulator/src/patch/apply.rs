//! Server-side apply: conflicts with other managers (or, forced, taking their fields over),
//! removal of fields a manager stopped applying, the merge, and the manager's `Apply` entry.
//! Uses `fields` and `managed_fields`; `ops::apply` decides what it runs on.

use serde_json::{Value, json};

use super::fields::{FieldPath, at, overlaps, owned_leaves, remove_at, set_at};
use super::managed_fields::{ManagerEntry, Writer, take_managers, write_managers};

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
    use crate::patch::fields::decode_fields;
    use crate::patch::managed_fields::{read_managers, record_update};

    fn writer(m: &'static str) -> Writer<'static> {
        Writer {
            manager: m,
            subresource: "",
            api_version: "v1",
            now: "2024-01-01T00:00:00Z",
        }
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
}
