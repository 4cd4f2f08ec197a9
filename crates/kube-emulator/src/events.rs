//! Events: one store, two views. events.k8s.io/v1 Events are stored as core/v1 Events and
//! converted on the way in and out, field by field as upstream's `pkg/apis/events/v1`
//! conversion does, so an Event written through either API is read and watched through both.
//! `ops` converts writes and answers; `http` renames events.k8s.io field selector labels.

use serde_json::{Map, Value};

/// The store key both Event resources share.
pub const CORE_KEY: &str = "/events";

/// core/v1 field ↔ events.k8s.io/v1 field; every other field has the same name in both
/// (`reason`, `type`, `action`, `eventTime`, `series`, `related`, `reportingInstance`).
const RENAMED: [(&str, &str); 7] = [
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

/// A stored core/v1 Event as events.k8s.io/v1 serves it.
pub fn to_events_v1(core: &Value) -> Value {
    let mut out = core.clone();
    if let Some(m) = out.as_object_mut() {
        rename(m, true);
    }
    out["apiVersion"] = Value::from("events.k8s.io/v1");
    out
}

/// An events.k8s.io/v1 Event as it is stored (core/v1).
pub fn to_core_v1(mut events: Value) -> Value {
    if let Some(m) = events.as_object_mut() {
        rename(m, false);
    }
    events["apiVersion"] = Value::from("v1");
    events
}

/// Moves each renamed field to its name in the other version. A field that already has a
/// target name is unknown in the source version (upstream's decoder would have dropped it),
/// so it is dropped rather than let collide.
fn rename(m: &mut Map<String, Value>, from_core: bool) {
    let direction = |(core, events)| {
        if from_core {
            (core, events)
        } else {
            (events, core)
        }
    };
    for pair in RENAMED {
        m.remove(direction(pair).1);
    }
    for pair in RENAMED {
        let (from, to) = direction(pair);
        if let Some(v) = m.remove(from) {
            m.insert(to.to_string(), v);
        }
    }
}

/// Field selector labels of events.k8s.io/v1 Events beyond `metadata.name`/`namespace`.
pub const EVENTS_V1_FIELDS: &[&str] = &[
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reason",
    "reportingController",
    "source",
    "type",
];

/// The core/v1 label an events.k8s.io/v1 field selector label stands for (upstream's
/// `AddFieldLabelConversionsForEvent`); other labels are the same in both.
pub fn core_field_label(label: &str) -> String {
    match label {
        "reportingController" => "reportingComponent".to_string(),
        _ => match label.strip_prefix("regarding.") {
            Some(field) => format!("involvedObject.{field}"),
            None => label.to_string(),
        },
    }
}

/// The value a core/v1 Event's `source` field label selects on: `source.component`, else
/// `reportingComponent` (upstream's `ToSelectableFields`).
pub fn source_label(core: &Value) -> &str {
    match core["source"]["component"].as_str() {
        Some(c) if !c.is_empty() => c,
        _ => core["reportingComponent"].as_str().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_renamed_field_round_trips() {
        let core = json!({
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "ns"},
            "involvedObject": {"kind": "Secret", "name": "s"}, "message": "m",
            "source": {"component": "c", "host": "h"}, "firstTimestamp": "2024-01-01T00:00:00Z",
            "lastTimestamp": "2024-01-02T00:00:00Z", "count": 3, "reportingComponent": "rc",
            "reportingInstance": "ri", "reason": "R", "type": "Normal", "action": "A",
            "eventTime": "2024-01-01T00:00:00.000000Z", "series": {"count": 2},
            "related": {"kind": "Pod"},
        });
        let events = to_events_v1(&core);
        assert_eq!(
            events,
            json!({
                "apiVersion": "events.k8s.io/v1", "kind": "Event",
                "metadata": {"name": "e", "namespace": "ns"},
                "regarding": {"kind": "Secret", "name": "s"}, "note": "m",
                "deprecatedSource": {"component": "c", "host": "h"},
                "deprecatedFirstTimestamp": "2024-01-01T00:00:00Z",
                "deprecatedLastTimestamp": "2024-01-02T00:00:00Z", "deprecatedCount": 3,
                "reportingController": "rc", "reportingInstance": "ri", "reason": "R",
                "type": "Normal", "action": "A", "eventTime": "2024-01-01T00:00:00.000000Z",
                "series": {"count": 2}, "related": {"kind": "Pod"},
            })
        );
        assert_eq!(to_core_v1(events), core);
    }

    #[test]
    fn fields_unknown_in_the_source_version_are_dropped() {
        let sent = json!({"apiVersion": "events.k8s.io/v1", "note": "n", "message": "stray"});
        assert_eq!(
            to_core_v1(sent),
            json!({"apiVersion": "v1", "message": "n"})
        );
    }

    #[test]
    fn field_labels_map_to_core() {
        assert_eq!(core_field_label("regarding.uid"), "involvedObject.uid");
        assert_eq!(
            core_field_label("reportingController"),
            "reportingComponent"
        );
        assert_eq!(core_field_label("type"), "type");
        let ev = json!({"source": {}, "reportingComponent": "ctl"});
        assert_eq!(source_label(&ev), "ctl");
    }
}
