//! Strategic merge patch, reduced: a merge patch whose name-keyed lists (containers, env, …)
//! merge by `name`, with `$patch: replace|delete` honoured and other directives dropped.
//! Built-in kinds only (`ops` refuses it for custom resources); JSON and merge are in `mod.rs`.

use serde_json::{Map, Value};

use crate::error::ApiError;

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
