//! Events: core/v1 and events.k8s.io/v1 are two views of one store, as in kube-apiserver. An
//! Event written through either API is read, selected and watched through both, with the
//! fields renamed as upstream's `pkg/apis/events/v1` conversion renames them (`note` ↔
//! `message`, `regarding` ↔ `involvedObject`, `reportingController` ↔ `reportingComponent`,
//! `deprecated*` ↔ `source`, `firstTimestamp`, `lastTimestamp`, `count`).

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Event as CoreEvent, ObjectReference, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent};
use kube::runtime::events::{Event as Publish, EventType, Recorder, Reporter};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::*;
use crate::support::*;

async fn secret(client: &kube::Client, name: &str) -> Secret {
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let s = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap()
}

fn names<K: Resource>(items: Vec<K>) -> Vec<String> {
    let mut v: Vec<String> = items
        .into_iter()
        .filter_map(|e| e.meta().name.clone())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_written_through_either_api_is_read_through_both() {
    let (_emu, client) = start().await;
    let s = secret(&client, "s").await;
    let reference = s.object_ref(&());
    let uid = s.uid().unwrap();
    let v1: Api<Event> = Api::default_namespaced(client.clone());
    let core: Api<CoreEvent> = Api::default_namespaced(client.clone());
    let written = serde_json::from_value(json!({
        "metadata": {"name": "by-events-api"},
        "eventTime": "2025-01-01T00:00:00.000000Z",
        "regarding": reference, "note": "a note", "reason": "Issued", "type": "Normal",
        "action": "Issue", "reportingController": "ctl", "reportingInstance": "ctl-0",
        "deprecatedCount": 1,
    }))
    .unwrap();
    let created = v1.create(&PostParams::default(), &written).await.unwrap();
    assert_eq!(created.note.as_deref(), Some("a note"));
    let seen = core.get("by-events-api").await.unwrap();
    assert_eq!(seen.message.as_deref(), Some("a note"));
    assert_eq!(seen.involved_object.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(seen.reporting_component.as_deref(), Some("ctl"));
    assert_eq!(seen.reporting_instance.as_deref(), Some("ctl-0"));
    assert_eq!(seen.count, Some(1));
    assert_eq!(seen.action.as_deref(), Some("Issue"));
    assert_eq!(
        seen.metadata.resource_version,
        created.metadata.resource_version
    );
    assert_eq!(seen.metadata.uid, created.metadata.uid);

    let written = serde_json::from_value(json!({
        "metadata": {"name": "by-core-api"}, "involvedObject": reference,
        "message": "a message", "reason": "Rotated", "type": "Warning",
        "source": {"component": "kubelet", "host": "node-1"}, "count": 3,
        "firstTimestamp": "2025-01-01T00:00:00Z", "lastTimestamp": "2025-01-02T00:00:00Z",
    }))
    .unwrap();
    core.create(&PostParams::default(), &written).await.unwrap();
    let seen = v1.get("by-core-api").await.unwrap();
    assert_eq!(seen.note.as_deref(), Some("a message"));
    assert_eq!(
        seen.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("s")
    );
    assert_eq!(seen.deprecated_count, Some(3));
    let source = seen.deprecated_source.unwrap();
    assert_eq!(source.component.as_deref(), Some("kubelet"));
    assert_eq!(source.host.as_deref(), Some("node-1"));
    assert!(seen.deprecated_first_timestamp.is_some());
    assert!(seen.deprecated_last_timestamp.is_some());

    // Both lists hold both, as one store.
    let both = ["by-core-api", "by-events-api"];
    assert_eq!(
        names(core.list(&ListParams::default()).await.unwrap().items),
        both
    );
    assert_eq!(
        names(v1.list(&ListParams::default()).await.unwrap().items),
        both
    );

    v1.delete("by-core-api", &DeleteParams::default())
        .await
        .unwrap();
    let gone = core.get("by-core-api").await.unwrap_err();
    assert!(matches!(gone, kube::Error::Api(e) if e.code == 404));
    let gone = v1.get("by-core-api").await.unwrap_err();
    assert!(
        matches!(&gone, kube::Error::Api(e) if e.message == r#"events.events.k8s.io "by-core-api" not found"#),
        "{gone:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_selectors_of_both_apis_select_the_same_events() {
    let (_emu, client) = start().await;
    let s = secret(&client, "s").await;
    let other = secret(&client, "other").await;
    let uid = s.uid().unwrap();
    let v1: Api<Event> = Api::default_namespaced(client.clone());
    let core: Api<CoreEvent> = Api::default_namespaced(client.clone());
    for (name, about, controller) in [("e1", &s, "ctl"), ("e2", &other, "other-ctl")] {
        let e = serde_json::from_value(json!({
            "metadata": {"name": name}, "eventTime": "2025-01-01T00:00:00.000000Z",
            "regarding": about.object_ref(&()), "reason": "Issued", "type": "Normal",
            "action": "Issue", "reportingController": controller, "reportingInstance": "x",
        }))
        .unwrap();
        v1.create(&PostParams::default(), &e).await.unwrap();
    }
    // What `kubectl describe` asks for (core/v1, involvedObject.*).
    let describe = format!(
        "involvedObject.name=s,involvedObject.namespace=default,involvedObject.kind=Secret,involvedObject.uid={uid}"
    );
    let by = |api: &Api<CoreEvent>, sel: String| {
        let api = api.clone();
        async move {
            names(
                api.list(&ListParams::default().fields(&sel))
                    .await
                    .unwrap()
                    .items,
            )
        }
    };
    assert_eq!(by(&core, describe).await, ["e1"]);
    assert_eq!(by(&core, "reportingComponent=ctl".into()).await, ["e1"]);
    // `source` falls back to reportingComponent when source.component is empty.
    assert_eq!(by(&core, "source=other-ctl".into()).await, ["e2"]);
    assert_eq!(by(&core, "involvedObject.name!=s".into()).await, ["e2"]);
    let by_v1 = |sel: &str| {
        let (v1, sel) = (v1.clone(), sel.to_string());
        async move {
            names(
                v1.list(&ListParams::default().fields(&sel))
                    .await
                    .unwrap()
                    .items,
            )
        }
    };
    assert_eq!(
        by_v1(&format!("regarding.name=s,regarding.uid={uid}")).await,
        ["e1"]
    );
    assert_eq!(by_v1("reportingController=other-ctl").await, ["e2"]);
    assert_eq!(
        by_v1("regarding.kind=Secret,type=Normal").await,
        ["e1", "e2"]
    );
    // Each API accepts only its own labels, as upstream's field label conversions.
    let refused = v1
        .list(&ListParams::default().fields("involvedObject.name=s"))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, kube::Error::Api(e) if e.code == 400),
        "{refused:?}"
    );
    let refused = core
        .list(&ListParams::default().fields("regarding.name=s"))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, kube::Error::Api(e) if e.code == 400),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_of_either_api_see_writes_through_the_other() {
    let (_emu, client) = start().await;
    let s = secret(&client, "s").await;
    let v1: Api<Event> = Api::default_namespaced(client.clone());
    let core: Api<CoreEvent> = Api::default_namespaced(client.clone());
    let rv = core
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let wp = kube::api::WatchParams::default().fields("metadata.name=mine");
    let mut v1_watch = v1.watch(&wp, &rv).await.unwrap().boxed();
    let core_wp = kube::api::WatchParams::default().fields("involvedObject.name=s");
    let mut core_watch = core.watch(&core_wp, &rv).await.unwrap().boxed();
    let e = serde_json::from_value(json!({
        "metadata": {"name": "mine"}, "involvedObject": s.object_ref(&()),
        "message": "from core", "reason": "R", "type": "Normal",
    }))
    .unwrap();
    core.create(&PostParams::default(), &e).await.unwrap();
    let next = next_change(&mut v1_watch).await;
    match next {
        Some(WatchEvent::Added(ev)) => {
            assert_eq!(ev.note.as_deref(), Some("from core"));
            assert_eq!(ev.regarding.and_then(|r| r.name).as_deref(), Some("s"));
        }
        other => panic!("expected ADDED, got {other:?}"),
    }
    let next = next_change(&mut core_watch).await;
    assert!(matches!(next, Some(WatchEvent::Added(_))));
    let patch = json!({"note": "patched through events.k8s.io", "series": {"count": 2, "lastObservedTime": "2025-01-01T00:00:01.000000Z"}});
    v1.patch("mine", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    match next_change(&mut core_watch).await {
        Some(WatchEvent::Modified(ev)) => {
            assert_eq!(ev.message.as_deref(), Some("patched through events.k8s.io"));
            assert_eq!(ev.series.and_then(|s| s.count), Some(2));
        }
        other => panic!("expected MODIFIED, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_runtime_recorder_events_show_as_core_events() {
    let (_emu, client) = start().await;
    let s = secret(&client, "s").await;
    let reporter = Reporter {
        controller: "apikey-operator".into(),
        instance: Some("local".into()),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let reference: ObjectReference = s.object_ref(&());
    let event = Publish {
        type_: EventType::Normal,
        reason: "Issued".into(),
        note: Some("value issued".into()),
        action: "Issue".into(),
        secondary: None,
    };
    // The second publish of the same event is a merge patch of its series.
    recorder.publish(&event, &reference).await.unwrap();
    recorder.publish(&event, &reference).await.unwrap();
    let core: Api<CoreEvent> = Api::default_namespaced(client);
    let sel = format!("involvedObject.uid={}", s.uid().unwrap());
    let list = core
        .list(&ListParams::default().fields(&sel))
        .await
        .unwrap()
        .items;
    assert_eq!(list.len(), 1, "{list:?}");
    let e = &list[0];
    assert_eq!(e.message.as_deref(), Some("value issued"));
    assert_eq!(e.reporting_component.as_deref(), Some("apikey-operator"));
    assert_eq!(e.series.as_ref().and_then(|s| s.count), Some(2));
}

/// `kubectl get events` shows upstream's columns (last seen, type, reason, `kind/name`,
/// message; `-o wide` adds subobject, source, first seen, count and name), for an Event of
/// kube-runtime's recorder (a series) and a core/v1 one, through either API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_events_shows_upstreams_columns() {
    let (emu, client) = start().await;
    let s = secret(&client, "s").await;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "apikey-operator".into(),
            instance: Some("local".into()),
        },
    );
    let event = Publish {
        type_: EventType::Warning,
        reason: "InvalidSpec".into(),
        note: Some("spec.rotation.every is not a duration  ".into()),
        action: "Validate".into(),
        secondary: None,
    };
    recorder.publish(&event, &s.object_ref(&())).await.unwrap();
    recorder.publish(&event, &s.object_ref(&())).await.unwrap();
    let core: Api<CoreEvent> = Api::default_namespaced(client.clone());
    let old = serde_json::from_value(json!({
        "metadata": {"name": "old"},
        "involvedObject": {"kind": "Secret", "name": "s", "namespace": "default", "fieldPath": "data"},
        "reason": "Issued", "type": "Normal", "message": "issued",
        "firstTimestamp": "2020-01-01T00:00:00Z", "lastTimestamp": "2020-01-01T00:00:00Z",
        "count": 3, "source": {"component": "ctl", "host": "node-1"},
    }))
    .unwrap();
    core.create(&PostParams::default(), &old).await.unwrap();

    let k = Kubectl::new(&emu);
    // Cells cut at the header's column starts: an empty cell stays in its column.
    let rows = |out: &str| -> Vec<Vec<String>> {
        let header = out.lines().next().unwrap_or_default();
        let mut starts: Vec<usize> = header
            .match_indices(|c: char| c != ' ')
            .map(|(i, _)| i)
            .filter(|&i| i == 0 || header[..i].ends_with("  "))
            .collect();
        starts.push(usize::MAX);
        out.lines()
            .map(|line| {
                starts
                    .windows(2)
                    .map(|w| {
                        line.get(w[0]..w[1].min(line.len()))
                            .unwrap_or("")
                            .trim()
                            .to_string()
                    })
                    .collect()
            })
            .collect()
    };
    for resource in ["events", "events.v1.events.k8s.io"] {
        let out = k.ok(&["get", resource, "--sort-by=.metadata.name"]).await;
        let table = rows(&out);
        assert_eq!(
            table[0],
            ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
            "{out}"
        );
        assert!(
            table.iter().any(
                |r| r[1..] == ["Normal", "Issued", "secret/s", "issued"] && r[0].contains('y')
            ),
            "{out}"
        );
        assert!(
            table.iter().any(|r| r[1..]
                == [
                    "Warning",
                    "InvalidSpec",
                    "secret/s",
                    "spec.rotation.every is not a duration"
                ]),
            "{out}"
        );
        let wide = k.ok(&["get", resource, "-o", "wide"]).await;
        let table = rows(&wide);
        assert_eq!(
            table[0],
            [
                "LAST SEEN",
                "TYPE",
                "REASON",
                "OBJECT",
                "SUBOBJECT",
                "SOURCE",
                "MESSAGE",
                "FIRST SEEN",
                "COUNT",
                "NAME"
            ],
            "{wide}"
        );
        assert!(
            table
                .iter()
                .any(|r| r.contains(&"apikey-operator, local".to_string()) && r[8] == "2"),
            "{wide}"
        );
        assert!(
            table
                .iter()
                .any(|r| r[4] == "data" && r[5] == "ctl, node-1" && r[8] == "3" && r[9] == "old"),
            "{wide}"
        );
    }
}

/// The next event of `watch` that is not a bookmark (the server may send one whenever its
/// bookmark timer fires, before or between the changes a test waits for), within `T`.
async fn next_change<K>(
    watch: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<K>>> + Unpin),
) -> Option<WatchEvent<K>> {
    let change = async {
        loop {
            match watch.try_next().await.unwrap() {
                Some(WatchEvent::Bookmark(_)) => continue,
                other => return other,
            }
        }
    };
    tokio::time::timeout(T, change)
        .await
        .expect("a change within the deadline")
}
