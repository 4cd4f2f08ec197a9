//! Deletion: finalizers hold it, ownerReference garbage collection (background, foreground,
//! orphan), a namespace's contents, and deletecollection with a selector.

use super::*;
use crate::support::*;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_hold_deletion() {
    let (_emu, client) = start().await;
    install_crd(&client, WIDGET_CRD).await;
    let api = widgets(&client, "default");
    let mut w = widget("f", 1);
    w.metadata.finalizers = Some(vec!["test/hold".into()]);
    api.create(&PostParams::default(), &w).await.unwrap();
    let d = api.delete("f", &DeleteParams::default()).await.unwrap();
    let obj = d.left().expect("object returned while finalizers remain");
    assert!(obj.metadata.deletion_timestamp.is_some());
    assert_eq!(obj.metadata.generation, Some(2));
    let cur = api.get("f").await.unwrap();
    assert!(cur.metadata.deletion_timestamp.is_some());
    // No new finalizers once deleting.
    let add = Patch::Merge(json!({"metadata": {"finalizers": ["test/hold", "test/other"]}}));
    assert_eq!(
        api_code(api.patch("f", &PatchParams::default(), &add).await).0,
        422
    );
    // Spec updates are still allowed while terminating; clearing finalizers removes it.
    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_code(api.get("f").await).0, 404);
}

async fn owner_and_dependents(client: &kube::Client, blocking: bool) -> (Api<ConfigMap>, String) {
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let owner = cms
        .create(&PostParams::default(), &cm("owner", &[]))
        .await
        .unwrap();
    let uid = owner.metadata.uid.unwrap();
    for n in ["dep1", "dep2"] {
        let mut c = cm(n, &[]);
        c.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: "owner".into(),
                uid: uid.clone(),
                block_owner_deletion: Some(blocking),
                ..Default::default()
            },
        ]);
        if n == "dep1" {
            c.metadata.finalizers = Some(vec!["test/hold".into()]);
        }
        cms.create(&PostParams::default(), &c).await.unwrap();
    }
    (cms, uid)
}

async fn gone(api: &Api<ConfigMap>, name: &str) {
    eventually(&format!("{name} deleted"), T, || async move {
        api.get_opt(name).await.unwrap().is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_background() {
    let (_emu, client) = start().await;
    let (cms, _) = owner_and_dependents(&client, false).await;
    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    assert!(
        cms.get_opt("owner").await.unwrap().is_none(),
        "owner goes first"
    );
    gone(&cms, "dep2").await;
    let dep1 = eventually("dep1 terminating", T, || async {
        cms.get("dep1")
            .await
            .ok()
            .filter(|c| c.metadata.deletion_timestamp.is_some())
    })
    .await;
    assert!(dep1.metadata.finalizers.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_foreground() {
    let (_emu, client) = start().await;
    let (cms, _) = owner_and_dependents(&client, true).await;
    let d = cms
        .delete("owner", &DeleteParams::foreground())
        .await
        .unwrap();
    let owner = d.left().unwrap();
    assert!(
        owner
            .metadata
            .finalizers
            .unwrap()
            .contains(&"foregroundDeletion".to_string())
    );
    gone(&cms, "dep2").await;
    // dep1 is blocked by its own finalizer, so the owner waits for it.
    let o = cms.get("owner").await.unwrap();
    assert!(o.metadata.deletion_timestamp.is_some());
    cms.patch(
        "dep1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    gone(&cms, "dep1").await;
    gone(&cms, "owner").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_orphan() {
    let (_emu, client) = start().await;
    let (cms, _) = owner_and_dependents(&client, true).await;
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..Default::default()
    };
    cms.delete("owner", &dp).await.unwrap();
    gone(&cms, "owner").await;
    for n in ["dep1", "dep2"] {
        let c = cms.get(n).await.unwrap();
        assert!(
            c.metadata.owner_references.is_none(),
            "{n} keeps no ownerReference"
        );
        assert!(c.metadata.deletion_timestamp.is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_removes_contents() {
    let (_emu, client) = start().await;
    install_crd(&client, WIDGET_CRD).await;
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap();
    nss.create(&PostParams::default(), &ns).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    cms.create(&PostParams::default(), &cm("c", &[]))
        .await
        .unwrap();
    let api = widgets(&client, "doomed");
    let mut w = widget("w", 1);
    w.metadata.finalizers = Some(vec!["test/hold".into()]);
    api.create(&PostParams::default(), &w).await.unwrap();

    nss.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let cur = nss.get("doomed").await.unwrap();
    assert_eq!(cur.status.unwrap().phase.as_deref(), Some("Terminating"));
    gone(&cms, "c").await;
    assert_eq!(
        api_code(cms.create(&PostParams::default(), &cm("late", &[])).await).0,
        403
    );
    // The widget's finalizer keeps the namespace alive until it is released.
    assert!(nss.get_opt("doomed").await.unwrap().is_some());
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually("namespace gone", T, || async {
        nss.get_opt("doomed").await.unwrap().is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_collection_with_selector() {
    let (_emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for (n, l) in [("a", "x"), ("b", "x"), ("c", "y")] {
        cms.create(&PostParams::default(), &cm(n, &[("g", l)]))
            .await
            .unwrap();
    }
    let deleted = cms
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("g=x"),
        )
        .await
        .unwrap()
        .left()
        .expect("the deleted objects");
    // The answer lists what was deleted (it listed nothing for built-ins).
    let mut names: Vec<_> = deleted
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b"]);
    let left: Vec<_> = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(left, ["c"]);
}
