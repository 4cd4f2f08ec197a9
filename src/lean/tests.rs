use kube::ResourceExt;
use serde_json::json;

use super::*;
use crate::api::ApiToken;

fn token_json() -> serde_json::Value {
    json!({
        "apiVersion": "apikeys.dev/v1alpha1",
        "kind": "ApiToken",
        "metadata": {
            "name": "t", "namespace": "ns", "uid": "u-1", "resourceVersion": "7",
            "labels": {"team": "a"},
            "annotations": {"apikeys.dev/rotate": "now"},
            "managedFields": [{
                "manager": "kubectl", "operation": "Update", "apiVersion": "apikeys.dev/v1alpha1",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:apiKeyRef": {}}}
            }],
            "ownerReferences": [{
                "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiKey", "name": "k",
                "uid": "u-k", "controller": true
            }]
        },
        "spec": {"apiKeyRef": {"name": "k"}, "displayName": "managedFields"},
        "status": {"tokenId": "abc", "conditions": [{
            "type": "Ready", "status": "True", "reason": "Issued", "message": "m",
            "lastTransitionTime": "2026-01-01T00:00:00Z"
        }]}
    })
}

#[test]
fn decodes_everything_but_the_field_managers() {
    let text = token_json().to_string();
    let lean: Lean<ApiToken> = serde_json::from_str(&text).expect("decodes");
    let lean = lean.into_result().expect("a valid token");
    let full: ApiToken = serde_json::from_str(&text).expect("decodes");
    assert_eq!(full.managed_fields().len(), 1, "the fixture has a manager");
    assert!(lean.managed_fields().is_empty());
    let mut expected = full;
    expected.metadata.managed_fields = None;
    assert_eq!(lean, expected);
}

#[test]
fn escaped_keys_decode_and_unreadable_metadata_is_an_error() {
    // An escaped key cannot be borrowed; it still matches its field.
    let text =
        r#"{"metadata":{"na\u006de":"t","managedFields":[]},"spec":{"apiKeyRef":{"name":"k"}}}"#;
    let lean: Lean<ApiToken> = serde_json::from_str(text).expect("decodes");
    assert_eq!(lean.into_result().expect("valid").name_any(), "t");
    // Nothing to name the object by: the plain decoder's error.
    for bad in [
        r#"{"metadata":[],"spec":{"apiKeyRef":{"name":"k"}}}"#,
        r#"{"metadata":{"name":7},"spec":{"apiKeyRef":{"name":"k"}}}"#,
        r#"{"metadata":{},"spec":{}}"#,
    ] {
        let filtered = serde_json::from_str::<Lean<ApiToken>>(bad).map(|_| ());
        let filtered = filtered.expect_err("must not decode").to_string();
        let plain = serde_json::from_str::<ApiToken>(bad).map(|_| ());
        let plain = without_position(&plain.expect_err("must not decode"));
        assert!(
            filtered.starts_with(&plain),
            "{bad}: {filtered:?} is not the plain decoder's {plain:?}"
        );
    }
}

/// One object the types cannot read is a stand-in with its name and the
/// reason, and the rest of its list decodes.
#[test]
fn an_undecodable_object_leaves_its_list_readable() {
    let mut far = token_json();
    far["metadata"]["name"] = json!("far");
    far["status"]["lastUsedAt"] = json!("9999-12-31T23:59:59Z");
    let mut odd = token_json();
    odd["metadata"]["name"] = json!("odd");
    odd["spec"]["expiration"] = json!({"expiresAt": "2030-01-01T00:00:00Zt"});
    let list = json!({"items": [token_json(), far, odd]}).to_string();
    #[derive(Deserialize)]
    struct List {
        items: Vec<Lean<ApiToken>>,
    }
    let List { items } = serde_json::from_str(&list).expect("the list decodes");
    let mut items = items.into_iter().map(Lean::into_result);
    assert_eq!(items.next().unwrap().expect("valid").name_any(), "t");
    for (name, reason) in [
        ("far", "status.lastUsedAt: failed to convert"),
        ("odd", "spec.expiration.expiresAt: parsed value"),
    ] {
        let (stub, why) = items.next().unwrap().expect_err("cannot be decoded");
        assert_eq!(stub.name_any(), name);
        assert_eq!(stub.namespace().as_deref(), Some("ns"));
        assert_eq!(stub.uid().as_deref(), Some("u-1"));
        assert!(why.starts_with(reason), "{name}: {why}");
    }
}

/// A token named `name`, decodable or not.
fn lean(name: &str, decodable: bool) -> Lean<ApiToken> {
    let mut object = token_json();
    object["metadata"]["name"] = json!(name);
    if !decodable {
        object["status"]["lastUsedAt"] = json!("9999-12-31T23:59:59Z");
    }
    serde_json::from_value(object).expect("decodes as Lean")
}

/// Each object reported: its name and why.
type Reported = Arc<Mutex<Vec<(String, String)>>>;

/// An [`Undecodables`] whose reports are kept in the returned list.
fn tracker() -> (Undecodables<ApiToken>, Reported) {
    let reported = Arc::new(Mutex::new(Vec::new()));
    let list = reported.clone();
    let report = move |stub: &ApiToken, why: &str| {
        let mut list = list.lock().unwrap();
        list.push((stub.name_any(), why.to_owned()));
    };
    (Undecodables::new(report, Gauge::default()), reported)
}

/// A watch hands such an object on as deleted, and a relist leaves it
/// out; each time, the report names it.
#[test]
fn an_undecodable_object_is_handed_on_as_deleted() {
    let (undecodables, reported) = tracker();
    let name = |event: Event<Lean<ApiToken>>| match Lean::event(event, &undecodables) {
        Some(Event::Apply(t)) => format!("apply {}", t.name_any()),
        Some(Event::InitApply(t)) => format!("init {}", t.name_any()),
        Some(Event::Delete(t)) => format!("delete {}", t.name_any()),
        Some(_) => "other".to_owned(),
        None => "none".to_owned(),
    };
    assert_eq!(name(Event::Apply(lean("t", true))), "apply t");
    assert_eq!(name(Event::InitApply(lean("t", true))), "init t");
    assert!(reported.lock().unwrap().is_empty());
    assert_eq!(name(Event::Apply(lean("t", false))), "delete t");
    assert_eq!(name(Event::InitApply(lean("t", false))), "none");
    assert_eq!(name(Event::Delete(lean("t", false))), "delete t");
    let reported = reported.lock().unwrap();
    assert_eq!(reported.len(), 2, "{reported:?}");
    assert!(
        reported
            .iter()
            .all(|(n, why)| n == "t" && why.contains("timestamp"))
    );
}

/// The set of undecodable objects: an object leaves it when deleted, or
/// only once its readable version is in the store (settled), or when a
/// finished relist no longer finds it unreadable.
#[test]
fn undecodable_objects_are_tracked_until_readable_or_deleted() {
    let (undecodables, _) = tracker();
    let tracked = |names: &[&str]| {
        let count = undecodables.count.get();
        assert_eq!(count, names.len() as i64, "count, expecting {names:?}");
        for name in ["a", "b", "c"] {
            let object = ObjectRef::new(name).within("ns");
            let expected = names.contains(&name);
            assert_eq!(undecodables.contains(&object), expected, "{name}");
        }
    };
    // Seen and passed through a store: each event as a watch would.
    let pass = |event: Event<Lean<ApiToken>>| {
        if let Some(event) = Lean::event(event, &undecodables) {
            undecodables.settle(&event);
        }
    };
    pass(Event::Apply(lean("a", false)));
    pass(Event::Apply(lean("b", false)));
    tracked(&["a", "b"]);

    // Readable again: still tracked until the store has it.
    let readable = Lean::event(Event::Apply(lean("a", true)), &undecodables).expect("event");
    tracked(&["a", "b"]);
    undecodables.settle(&readable);
    tracked(&["b"]);

    // Deleted while unreadable.
    pass(Event::Delete(lean("b", false)));
    tracked(&[]);

    // A relist: a stays unreadable, b turns readable, c is gone. Until it
    // is done, the store still holds what it held before.
    pass(Event::Apply(lean("b", false)));
    pass(Event::Apply(lean("c", false)));
    pass(Event::Init);
    pass(Event::InitApply(lean("a", false)));
    pass(Event::InitApply(lean("b", true)));
    tracked(&["a", "b", "c"]);
    pass(Event::InitDone);
    tracked(&["a"]);
}

#[test]
fn metadata_alone_skips_the_field_managers() {
    #[derive(Deserialize)]
    struct Only {
        #[serde(deserialize_with = "metadata")]
        metadata: ObjectMeta,
    }
    let only: Only = serde_json::from_value(token_json()).expect("decodes");
    assert!(only.metadata.managed_fields.is_none());
    assert_eq!(only.metadata.uid.as_deref(), Some("u-1"));
}
