//! `metadata.managedFields` entries: decoded from and written back to the object (untouched
//! entries as stored), the writer's identity, and the `Update` entries non-apply writes record.
//! Field sets are in `fields`; `apply` records `Apply` entries.

use serde_json::{Value, json};

use super::fields::{FieldSet, changed_leaves, decode_fields, encode_fields, overlaps};

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
    pub(super) raw: Option<Value>,
}

impl ManagerEntry {
    pub(super) fn same_owner(&self, manager: &str, operation: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }

    /// How conflicts name this manager (the real server adds the API version for updaters).
    pub(super) fn display(&self) -> String {
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
pub(super) fn take_managers(obj: &mut Value) -> Vec<ManagerEntry> {
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

pub(super) fn write_managers(obj: &mut Value, entries: Vec<ManagerEntry>) {
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
