//! `meta.k8s.io/v1` Table output for `kubectl get`: CRD additionalPrinterColumns evaluated with a
//! small JSONPath subset, and fixed columns for the built-ins. Pure; `http` decides when to use it.

use serde_json::{Value, json};

use super::registry::ResourceDef;

/// Does the Accept header ask for a Table?
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

struct Column {
    name: String,
    kind: String,
    format: String,
    description: String,
    priority: i64,
    path: Option<String>,
}

fn column(name: &str, kind: &str, format: &str, description: &str, path: Option<&str>) -> Column {
    Column {
        name: name.into(),
        kind: kind.into(),
        format: format.into(),
        description: description.into(),
        priority: 0,
        path: path.map(str::to_string),
    }
}

/// Upstream's Event columns (the ones `kubectl get events` shows, then the wide ones, which
/// are priority 1): its Table has no leading Name column.
fn event_columns() -> Vec<Column> {
    let wide = |mut c: Column| {
        c.priority = 1;
        c
    };
    vec![
        column(
            "Last Seen",
            "string",
            "",
            "The time at which the most recent occurrence of this event was recorded.",
            None,
        ),
        column(
            "Type",
            "string",
            "",
            "Type of this event (Normal, Warning), new types could be added in the future",
            None,
        ),
        column(
            "Reason",
            "string",
            "",
            "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
            None,
        ),
        column(
            "Object",
            "string",
            "",
            "The object that this event is about.",
            None,
        ),
        wide(column(
            "Subobject",
            "string",
            "",
            "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.",
            None,
        )),
        wide(column(
            "Source",
            "string",
            "",
            "The component reporting this event.",
            None,
        )),
        column(
            "Message",
            "string",
            "",
            "A human-readable description of the status of this operation.",
            None,
        ),
        wide(column(
            "First Seen",
            "string",
            "",
            "The time at which the event was first recorded.",
            None,
        )),
        wide(column(
            "Count",
            "string",
            "",
            "The number of times this event has occurred.",
            None,
        )),
        wide(column(
            "Name",
            "string",
            "name",
            "Name must be unique within a namespace.",
            None,
        )),
    ]
}

/// One Event's cells, as upstream's printer makes them from the core/v1 form: times since the
/// last and first occurrence (a series' last observation and count when it has one), the object
/// as `kind/name` in lower case, the source as `component, host`.
fn event_cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let core;
    let obj = if obj["apiVersion"] == "events.k8s.io/v1" {
        core = crate::events::to_core_v1(obj.clone());
        &core
    } else {
        obj
    };
    let since = |v: &Value| {
        v.as_str()
            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
            .map(|t| human_duration(now.duration_since(t).as_secs()))
    };
    let first = since(&obj["firstTimestamp"])
        .or_else(|| since(&obj["eventTime"]))
        .unwrap_or_else(|| "<unknown>".into());
    let mut last = since(&obj["lastTimestamp"]).unwrap_or_else(|| first.clone());
    let mut count = obj["count"].as_i64().unwrap_or(0);
    if obj["series"].is_object() {
        last = since(&obj["series"]["lastObservedTime"]).unwrap_or_else(|| "<unknown>".into());
        count = obj["series"]["count"].as_i64().unwrap_or(0);
    } else if count == 0 {
        count = 1;
    }
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let involved = &obj["involvedObject"];
    let kind = text(&involved["kind"]).to_lowercase();
    let target = match involved["name"].as_str().filter(|n| !n.is_empty()) {
        Some(name) => format!("{kind}/{name}"),
        None => kind,
    };
    let first_set = |a: &Value, b: &Value| {
        let a = a.as_str().unwrap_or_default();
        if a.is_empty() { text(b) } else { a.to_string() }
    };
    let component = first_set(&obj["source"]["component"], &obj["reportingComponent"]);
    let instance = first_set(&obj["source"]["host"], &obj["reportingInstance"]);
    let source = if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last),
        json!(text(&obj["type"])),
        json!(text(&obj["reason"])),
        json!(target),
        json!(text(&involved["fieldPath"])),
        json!(source),
        json!(text(&obj["message"]).trim()),
        json!(first),
        json!(count),
        json!(text(&obj["metadata"]["name"])),
    ]
}

fn is_event(def: &ResourceDef) -> bool {
    def.plural == "events" && (def.group.is_empty() || def.group == "events.k8s.io")
}

fn columns(def: &ResourceDef, version: &str) -> Vec<Column> {
    if is_event(def) {
        return event_columns();
    }
    let mut cols = vec![column(
        "Name",
        "string",
        "name",
        "Name must be unique within a namespace.",
        Some(".metadata.name"),
    )];
    let age = || {
        column(
            "Age",
            "date",
            "",
            "CreationTimestamp",
            Some(".metadata.creationTimestamp"),
        )
    };
    if let Some(custom) = &def.custom {
        match custom
            .printer_columns
            .get(version)
            .filter(|c| !c.is_empty())
        {
            Some(defs) => {
                for c in defs {
                    cols.push(Column {
                        name: c["name"].as_str().unwrap_or_default().into(),
                        kind: c["type"].as_str().unwrap_or("string").into(),
                        format: c["format"].as_str().unwrap_or_default().into(),
                        description: c["description"].as_str().unwrap_or_default().into(),
                        priority: c["priority"].as_i64().unwrap_or(0),
                        path: c["jsonPath"].as_str().map(str::to_string),
                    });
                }
            }
            None => cols.push(age()),
        }
        return cols;
    }
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "secrets") => {
            cols.push(column(
                "Type",
                "string",
                "",
                "The type of the secret",
                Some(".type"),
            ));
            cols.push(column(
                "Data",
                "integer",
                "",
                "The number of data items",
                None,
            ));
        }
        ("", "configmaps") => cols.push(column(
            "Data",
            "integer",
            "",
            "The number of data items",
            None,
        )),
        ("", "namespaces") => cols.push(column(
            "Status",
            "string",
            "",
            "The phase of the namespace",
            Some(".status.phase"),
        )),
        ("", "serviceaccounts") => cols.push(column(
            "Secrets",
            "integer",
            "",
            "The number of secrets",
            None,
        )),
        ("coordination.k8s.io", "leases") => cols.push(column(
            "Holder",
            "string",
            "",
            "The holder of the lease",
            Some(".spec.holderIdentity"),
        )),
        ("apps", _) => cols.push(column("Ready", "string", "", "Ready replicas", None)),
        ("apiextensions.k8s.io", _) => {
            cols.push(column(
                "Created At",
                "date",
                "",
                "CreationTimestamp",
                Some(".metadata.creationTimestamp"),
            ));
            return cols;
        }
        _ => {}
    }
    cols.push(age());
    cols
}

fn count(v: &Value) -> Value {
    json!(v.as_object().map(|m| m.len()).unwrap_or(0))
}

fn cell(def: &ResourceDef, col: &Column, obj: &Value, now: jiff::Timestamp) -> Value {
    match (def.plural.as_str(), col.name.as_str(), col.path.is_none()) {
        ("secrets", "Data", true) => {
            let n = count(&obj["data"]).as_u64().unwrap_or(0)
                + count(&obj["stringData"]).as_u64().unwrap_or(0);
            return json!(n);
        }
        ("configmaps", "Data", true) => {
            let n = count(&obj["data"]).as_u64().unwrap_or(0)
                + count(&obj["binaryData"]).as_u64().unwrap_or(0);
            return json!(n);
        }
        ("serviceaccounts", "Secrets", true) => {
            return json!(obj["secrets"].as_array().map(Vec::len).unwrap_or(0));
        }
        (_, "Ready", true) => {
            let ready = obj["status"]["readyReplicas"].as_i64().unwrap_or(0);
            let want = obj["spec"]["replicas"].as_i64().unwrap_or(1);
            return json!(format!("{ready}/{want}"));
        }
        _ => {}
    }
    let Some(path) = &col.path else {
        return Value::Null;
    };
    let Some(value) = eval_jsonpath(obj, path).into_iter().next() else {
        return Value::Null;
    };
    match col.kind.as_str() {
        "date" if col.name == "Created At" => value.clone(),
        "date" => match value
            .as_str()
            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        {
            Some(t) => json!(human_duration(now.duration_since(t).as_secs())),
            None => Value::Null,
        },
        "string" => match value {
            Value::String(s) => json!(s),
            other => json!(other.to_string()),
        },
        "integer" | "number" | "boolean" => value.clone(),
        _ => json!(value.to_string()),
    }
}

/// A Table of the given objects; `include_object` is the `includeObject` parameter.
pub fn table(
    def: &ResourceDef,
    version: &str,
    objects: &[&Value],
    rv: &str,
    include_object: &str,
    headers: bool,
) -> Value {
    let cols = columns(def, version);
    let now = jiff::Timestamp::now();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let cells: Vec<Value> = if is_event(def) {
                event_cells(obj, now)
            } else {
                cols.iter().map(|c| cell(def, c, obj, now)).collect()
            };
            let object = match include_object {
                "None" => Value::Null,
                "Object" => (*obj).clone(),
                _ => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": partial_metadata(&obj["metadata"]),
                }),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "rows": rows,
    });
    if headers {
        t["columnDefinitions"] = json!(cols
            .iter()
            .map(|c| json!({"name": c.name, "type": c.kind, "format": c.format, "description": c.description, "priority": c.priority}))
            .collect::<Vec<_>>());
    } else {
        t["columnDefinitions"] = json!([]);
    }
    t
}

fn partial_metadata(md: &Value) -> Value {
    let mut m = md.clone();
    if let Some(o) = m.as_object_mut() {
        o.remove("managedFields");
    }
    m
}

/// Kubernetes' `duration.HumanDuration`, as kubectl shows ages.
pub fn human_duration(secs: i64) -> String {
    if secs < 0 {
        return "<invalid>".into();
    }
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        if secs % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", secs % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if h < 24 * 365 * 2 {
        format!("{d}d")
    } else {
        let y = d / 365;
        if y < 8 {
            format!("{y}y{}d", d % 365)
        } else {
            format!("{y}y")
        }
    }
}

#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    All,
    Filter(String, String),
}

fn parse_jsonpath(path: &str) -> Option<Vec<Step>> {
    let p = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut steps = Vec::new();
    let mut rest = p.strip_prefix('$').unwrap_or(p);
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end > 0 {
                steps.push(Step::Field(r[..end].to_string()));
            }
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = r[..end].trim();
            // Filters contain ']' only inside quotes in practice; find the closing ")]".
            if inner.starts_with("?(") {
                let close = r.find(")]")?;
                let expr = &r[2..close];
                let (lhs, rhs) = expr.split_once("==")?;
                let key = lhs.trim().strip_prefix("@.")?.to_string();
                let val = rhs
                    .trim()
                    .trim_matches(|c| c == '"' || c == '\'')
                    .to_string();
                steps.push(Step::Filter(key, val));
                rest = &r[close + 2..];
                continue;
            }
            if inner == "*" {
                steps.push(Step::All);
            } else if let Some(key) = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
                steps.push(Step::Field(key.to_string()));
            } else {
                steps.push(Step::Index(inner.parse().ok()?));
            }
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(steps)
}

/// Evaluates the JSONPath subset printer columns use; returns all matches in order.
pub fn eval_jsonpath<'a>(obj: &'a Value, path: &str) -> Vec<&'a Value> {
    let Some(steps) = parse_jsonpath(path) else {
        return Vec::new();
    };
    let mut cur = vec![obj];
    for step in &steps {
        let mut next = Vec::new();
        for v in cur {
            match step {
                Step::Field(f) => next.extend(v.get(f.as_str())),
                Step::Index(i) => next.extend(v.get(*i)),
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter(key, val) => {
                    for item in v.as_array().into_iter().flatten() {
                        let mut x = item;
                        for seg in key.split('.') {
                            x = &x[seg];
                        }
                        let s = match x {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        if s == *val {
                            next.push(item);
                        }
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_subset() {
        let obj = json!({"spec": {"ref": {"name": "k"}}, "status": {"conditions": [
            {"type": "Other", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(eval_jsonpath(&obj, ".spec.ref.name"), vec![&json!("k")]);
        assert_eq!(
            eval_jsonpath(&obj, r#".status.conditions[?(@.type=="Ready")].status"#),
            vec![&json!("True")]
        );
        assert_eq!(
            eval_jsonpath(&obj, ".status.conditions[0].type"),
            vec![&json!("Other")]
        );
        assert!(eval_jsonpath(&obj, ".spec.missing").is_empty());
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(3600 * 5 + 60), "5h1m");
        assert_eq!(human_duration(86400 * 3), "3d");
    }
}
