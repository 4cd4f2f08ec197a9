//! Discovery and CRDs: built-in kinds and custom resources listed, CRDs established and served
//! in both scopes, custom resources validated against their schema, a deleted CRD's objects
//! deleted, and other built-in kinds stored.

use super::*;
use crate::support::*;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_lists_builtins_and_crds() {
    let (_emu, client) = start().await;
    install_crd(&client, WIDGET_CRD).await;
    let v = client.apiserver_version().await.unwrap();
    assert_eq!(v.major, "1");
    let groups = client.list_api_groups().await.unwrap();
    let names: Vec<_> = groups.groups.iter().map(|g| g.name.as_str()).collect();
    for g in [
        "apps",
        "coordination.k8s.io",
        "events.k8s.io",
        "apiextensions.k8s.io",
        "test.apikeys.dev",
    ] {
        assert!(names.contains(&g), "{g} missing from {names:?}");
    }
    let res = client
        .list_api_group_resources("test.apikeys.dev/v1")
        .await
        .unwrap();
    let w = res.resources.iter().find(|r| r.name == "widgets").unwrap();
    assert_eq!(w.short_names.as_deref(), Some(&["wdg".to_string()][..]));
    assert!(res.resources.iter().any(|r| r.name == "widgets/status"));
    let core = client.list_core_api_resources("v1").await.unwrap();
    for r in [
        "namespaces",
        "secrets",
        "configmaps",
        "serviceaccounts",
        "events",
    ] {
        assert!(core.resources.iter().any(|x| x.name == r), "{r}");
    }
    // Default namespaces exist at start.
    let nss: Api<Namespace> = Api::all(client.clone());
    for ns in ["default", "kube-system", "kube-public"] {
        assert!(nss.get(ns).await.is_ok(), "{ns}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_gets_established_and_serves_both_scopes() {
    let (_emu, client) = start().await;
    install_crd(&client, WIDGET_CRD).await;
    install_crd(&client, GADGET_CRD).await;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let crd = crds.get("widgets.test.apikeys.dev").await.unwrap();
    let conds = crd.status.unwrap().conditions.unwrap();
    for t in ["Established", "NamesAccepted"] {
        assert!(
            conds.iter().any(|c| c.type_ == t && c.status == "True"),
            "{t}"
        );
    }
    let gadgets: Api<DynamicObject> = Api::all_with(client.clone(), &gadget_resource());
    let g: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "test.apikeys.dev/v1", "kind": "Gadget", "metadata": {"name": "g1"}, "spec": {"x": 1}
    }))
    .unwrap();
    let created = gadgets.create(&PostParams::default(), &g).await.unwrap();
    assert_eq!(created.metadata.namespace, None);
    assert_eq!(gadgets.get("g1").await.unwrap().data["spec"]["x"], 1);
    // A CRD whose name is not plural.group is invalid.
    let mut bad: serde_json::Value = serde_yaml::from_str(GADGET_CRD).unwrap();
    bad["metadata"]["name"] = json!("wrong.name");
    let bad = serde_json::from_value(bad).unwrap();
    assert_eq!(
        api_code(crds.create(&PostParams::default(), &bad).await).0,
        422
    );
}

/// A custom resource is checked against its CRD's schema: a violation is 422 Invalid naming the
/// field, unknown fields are pruned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_are_validated_against_the_schema() {
    let (_emu, client) = start().await;
    install_crd(&client, WIDGET_CRD).await;
    let api = widgets(&client, "default");
    let mut w = widget("v", 0);
    w.data["spec"]["unknown"] = json!(1);
    match api.create(&PostParams::default(), &w).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
            assert!(
                s.message
                    .starts_with("Widget.test.apikeys.dev \"v\" is invalid: spec.size"),
                "{}",
                s.message
            );
        }
        r => panic!("expected 422, got {r:?}"),
    }
    let ok = api
        .create(&PostParams::default(), &{
            let mut w = widget("p", 1);
            w.data["spec"]["unknown"] = json!(1);
            w
        })
        .await
        .unwrap();
    assert!(
        ok.data["spec"].get("unknown").is_none(),
        "unknown fields are pruned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_crd_deletes_its_objects_and_stops_serving() {
    let (_emu, client) = start().await;
    install_crd(&client, WIDGET_CRD).await;
    let api = widgets(&client, "default");
    api.create(&PostParams::default(), &widget("w", 1))
        .await
        .unwrap();
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    crds.delete("widgets.test.apikeys.dev", &DeleteParams::default())
        .await
        .unwrap();
    eventually("CRD gone", T, || async {
        crds.get_opt("widgets.test.apikeys.dev")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(api_code(api.list(&ListParams::default()).await).0, 404);
    // Re-creating the CRD serves an empty collection.
    install_crd(&client, WIDGET_CRD).await;
    assert!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_builtin_kinds_are_stored() {
    use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::{Event, ServiceAccount};
    let (_emu, client) = start().await;
    let pp = PostParams::default();
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "leader"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}})).unwrap();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let l = leases.create(&pp, &lease).await.unwrap();
    // Leader election style compare-and-swap on the lease.
    let mut take = l.clone();
    take.spec.as_mut().unwrap().holder_identity = Some("b".into());
    leases.replace("leader", &pp, &take).await.unwrap();
    assert_eq!(api_code(leases.replace("leader", &pp, &take).await).0, 409);
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "sa"}})).unwrap();
    Api::<ServiceAccount>::default_namespaced(client.clone())
        .create(&pp, &sa)
        .await
        .unwrap();
    let ev: Event = serde_json::from_value(json!({"metadata": {"name": "e1"}, "involvedObject": {"kind": "Widget", "name": "w"}, "reason": "Issued", "type": "Normal"})).unwrap();
    let events: Api<Event> = Api::default_namespaced(client.clone());
    events.create(&pp, &ev).await.unwrap();
    assert_eq!(
        events
            .list(&ListParams::default().fields("involvedObject.name=w"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let ev2: k8s_openapi::api::events::v1::Event = serde_json::from_value(json!({"metadata": {"name": "e2"}, "eventTime": "2025-01-01T00:00:00.000000Z", "reason": "Issued", "action": "Issue", "reportingController": "x", "reportingInstance": "y", "type": "Normal"})).unwrap();
    Api::<k8s_openapi::api::events::v1::Event>::default_namespaced(client.clone())
        .create(&pp, &ev2)
        .await
        .unwrap();
    let tpl = json!({"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}});
    let sts: StatefulSet =
        serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": tpl})).unwrap();
    Api::<StatefulSet>::default_namespaced(client.clone())
        .create(&pp, &sts)
        .await
        .unwrap();
    let ds: DaemonSet =
        serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": tpl})).unwrap();
    Api::<DaemonSet>::default_namespaced(client.clone())
        .create(&pp, &ds)
        .await
        .unwrap();
}
