//! Writes: create, get, update and delete with the status codes and reasons of a real server,
//! generateName and dry run, generation and status subresource isolation, every patch type,
//! server-side apply with conflicts and managedFields, and label and annotation syntax.

use super::*;
use crate::support::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_with_status_codes_and_reasons() {
    let (_emu, client) = start().await;
    install_crd(&client, WIDGET_CRD).await;
    let api = widgets(&client, "default");
    let created = api
        .create(&PostParams::default(), &widget("w1", 1))
        .await
        .unwrap();
    let md = &created.metadata;
    assert!(md.uid.is_some() && md.creation_timestamp.is_some());
    assert_eq!(md.generation, Some(1));
    assert_eq!(md.namespace.as_deref(), Some("default"));
    assert_eq!(
        api_code(api.create(&PostParams::default(), &widget("w1", 1)).await),
        (409, "AlreadyExists".into())
    );
    assert_eq!(api_code(api.get("nope").await), (404, "NotFound".into()));
    // Update with a stale resourceVersion conflicts; with the current one it succeeds.
    let mut stale = created.clone();
    stale.data["spec"]["size"] = json!(2);
    let updated = api
        .replace("w1", &PostParams::default(), &stale)
        .await
        .unwrap();
    assert_eq!(
        api_code(api.replace("w1", &PostParams::default(), &stale).await),
        (409, "Conflict".into())
    );
    assert!(
        updated
            .metadata
            .resource_version
            .as_ref()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > created
                .metadata
                .resource_version
                .as_ref()
                .unwrap()
                .parse::<u64>()
                .unwrap()
    );
    // Creating in a namespace that does not exist is 404.
    let missing = widgets(&client, "no-such-ns");
    assert_eq!(
        api_code(
            missing
                .create(&PostParams::default(), &widget("w", 1))
                .await
        )
        .0,
        404
    );
    // Invalid names are 422 with a field cause.
    match api
        .create(&PostParams::default(), &widget("Bad_Name", 1))
        .await
    {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
            assert!(
                s.message
                    .starts_with("Widget.test.apikeys.dev \"Bad_Name\" is invalid: metadata.name"),
                "{}",
                s.message
            );
        }
        other => panic!("expected 422, got {other:?}"),
    }
    let deleted = api.delete("w1", &DeleteParams::default()).await.unwrap();
    // Gone at once (no finalizers): a Success Status naming it, as upstream.
    let status = deleted.right().expect("a Status, not the object");
    assert_eq!(
        status.status,
        Some(kube::core::response::StatusSummary::Success)
    );
    assert_eq!(status.details.expect("details").name, "w1");
    assert_eq!(api_code(api.get("w1").await).0, 404);
    assert_eq!(
        api_code(api.delete("w1", &DeleteParams::default()).await).0,
        404
    );
    // Built-ins answer a delete with a Success Status.
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("c", &[]))
        .await
        .unwrap();
    assert!(
        cms.delete("c", &DeleteParams::default())
            .await
            .unwrap()
            .is_right()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_name_and_dry_run() {
    let (emu, client) = start().await;
    install_crd(&client, WIDGET_CRD).await;
    let api = widgets(&client, "default");
    let mut w = widget("", 1);
    w.metadata.name = None;
    w.metadata.generate_name = Some("gen-".into());
    let a = api.create(&PostParams::default(), &w).await.unwrap();
    let b = api.create(&PostParams::default(), &w).await.unwrap();
    let (na, nb) = (a.metadata.name.unwrap(), b.metadata.name.unwrap());
    assert!(na.starts_with("gen-") && na.len() == 9 && na != nb);

    let rv = emu.resource_version();
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    api.create(&dry, &widget("dry", 1)).await.unwrap();
    assert_eq!(api_code(api.get("dry").await).0, 404);
    let pp = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    let p = api
        .patch(&na, &pp, &Patch::Merge(json!({"spec": {"size": 7}})))
        .await
        .unwrap();
    assert_eq!(p.data["spec"]["size"], 7);
    assert_eq!(api.get(&na).await.unwrap().data["spec"]["size"], 1);
    let dp = DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    api.delete(&na, &dp).await.unwrap();
    assert!(api.get(&na).await.is_ok());
    assert_eq!(emu.resource_version(), rv, "dry runs commit nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_and_status_subresource_isolation() {
    let (_emu, client) = start().await;
    install_crd(&client, WIDGET_CRD).await;
    let api = widgets(&client, "default");
    let mut w = widget("w", 1);
    w.data["status"] = json!({"conditions": [{"type": "Ready", "status": "True"}]});
    let created = api.create(&PostParams::default(), &w).await.unwrap();
    assert!(
        created.data.get("status").is_none(),
        "status is dropped on create"
    );

    // Metadata-only change: no generation bump.
    let p = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.generation, Some(1));
    // Status written on the main resource is ignored.
    let p = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": []}})),
        )
        .await
        .unwrap();
    assert!(p.data.get("status").is_none());
    // Status subresource changes status only, without a generation bump.
    let s = api
        .patch_status("w", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 99}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}})))
        .await
        .unwrap();
    assert_eq!(s.data["spec"]["size"], 1);
    assert_eq!(s.data["status"]["conditions"][0]["status"], "True");
    assert_eq!(s.metadata.generation, Some(1));
    // Spec change bumps generation; status survives a main-resource replace.
    let mut cur = api.get("w").await.unwrap();
    cur.data["spec"]["size"] = json!(2);
    cur.data["status"] = json!({"conditions": []});
    let r = api
        .replace("w", &PostParams::default(), &cur)
        .await
        .unwrap();
    assert_eq!(r.metadata.generation, Some(2));
    assert_eq!(r.data["status"]["conditions"][0]["type"], "Ready");
    // A no-op write does not bump the resourceVersion.
    let again = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(again.metadata.resource_version, r.metadata.resource_version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_types() {
    let (_emu, client) = start().await;
    install_crd(&client, WIDGET_CRD).await;
    let api = widgets(&client, "default");
    api.create(&PostParams::default(), &widget("w", 1))
        .await
        .unwrap();
    let pp = PatchParams::default();
    let jp: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/spec/size", "value": 3},
        {"op": "add", "path": "/spec/items", "value": ["a"]},
    ]))
    .unwrap();
    let p = api.patch("w", &pp, &Patch::<()>::Json(jp)).await.unwrap();
    assert_eq!(
        (
            p.data["spec"]["size"].clone(),
            p.data["spec"]["items"].clone()
        ),
        (json!(3), json!(["a"]))
    );
    // A failing JSON patch test op is rejected.
    let bad: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/spec/size", "value": 9}])).unwrap();
    assert_eq!(
        api_code(api.patch("w", &pp, &Patch::<()>::Json(bad)).await).0,
        422
    );
    // Merge patch: null deletes, lists replace.
    let p = api
        .patch(
            "w",
            &pp,
            &Patch::Merge(json!({"spec": {"items": null, "ownerRef": {"name": "o"}}})),
        )
        .await
        .unwrap();
    assert!(p.data["spec"].get("items").is_none());
    assert_eq!(p.data["spec"]["ownerRef"]["name"], "o");
    // Merge patch carrying a stale resourceVersion conflicts.
    let stale = Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "spec": {"size": 4}}));
    assert_eq!(api_code(api.patch("w", &pp, &stale).await).0, 409);
    // Strategic merge is refused for custom resources, as on a real server.
    assert_eq!(
        api_code(
            api.patch("w", &pp, &Patch::Strategic(json!({"spec": {"size": 5}})))
                .await
        )
        .0,
        415
    );
    // Strategic merge on a built-in merges containers by name.
    let deps: Api<Deployment> = Api::default_namespaced(client.clone());
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"name": "one", "image": "x"}, {"name": "two", "image": "y"}]}}}
    }))
    .unwrap();
    deps.create(&PostParams::default(), &d).await.unwrap();
    let p = deps
        .patch("d", &pp, &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "two", "image": "z"}]}}}})))
        .await
        .unwrap();
    let containers = p.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(containers.len(), 2);
    assert_eq!(containers[1].image.as_deref(), Some("z"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_conflicts_force_and_managed_fields() {
    let (_emu, client) = start().await;
    install_crd(&client, WIDGET_CRD).await;
    let api = widgets(&client, "default");
    let a = PatchParams::apply("manager-a");
    let obj = json!({"apiVersion": "test.apikeys.dev/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1, "items": ["x"]}});
    let created = api.patch("w", &a, &Patch::Apply(&obj)).await.unwrap();
    let mf = created.metadata.managed_fields.unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(
        (mf[0].manager.as_deref(), mf[0].operation.as_deref()),
        (Some("manager-a"), Some("Apply"))
    );

    // Another manager changing an owned field conflicts and the message names the owner.
    let b = PatchParams::apply("manager-b");
    let other = json!({"apiVersion": "test.apikeys.dev/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 2}});
    match api.patch("w", &b, &Patch::Apply(&other)).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
            assert!(
                s.message
                    .contains("conflict with \"manager-a\": .spec.size"),
                "{}",
                s.message
            );
        }
        r => panic!("expected conflict, got {r:?}"),
    }
    // Applying the same value shares ownership without conflict.
    let same = json!({"apiVersion": "test.apikeys.dev/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}});
    api.patch("w", &b, &Patch::Apply(&same)).await.unwrap();
    // Force takes the field over.
    let forced = api
        .patch("w", &b.clone().force(), &Patch::Apply(&other))
        .await
        .unwrap();
    assert_eq!(forced.data["spec"]["size"], 2);
    // Manager A re-applies without items: the field it alone owned is removed.
    let a_again = json!({"apiVersion": "test.apikeys.dev/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}});
    let r = api.patch("w", &a, &Patch::Apply(&a_again)).await.unwrap();
    assert!(r.data["spec"].get("items").is_none(), "{:?}", r.data);
    assert_eq!(r.data["spec"]["size"], 2);
    // Apply without fieldManager is a 400.
    let no_manager = PatchParams::default();
    assert_eq!(
        api_code(api.patch("w", &no_manager, &Patch::Apply(&same)).await).0,
        400
    );

    // Status by SSA on the status subresource, the way controllers write it.
    let status = json!({"apiVersion": "test.apikeys.dev/v1", "kind": "Widget", "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let s = api
        .patch_status(
            "w",
            &PatchParams::apply("ctrl").force(),
            &Patch::Apply(&status),
        )
        .await
        .unwrap();
    assert_eq!(s.data["status"]["conditions"][0]["status"], "True");
    assert_eq!(s.data["spec"]["size"], 2);
    let entry = s
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .find(|m| m.manager.as_deref() == Some("ctrl"))
        .unwrap();
    assert_eq!(entry.subresource.as_deref(), Some("status"));
}

fn api_message(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(s) => (s.code, s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_and_annotation_syntax_is_validated_on_every_write() {
    let (_emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let long = "a".repeat(64);
    for (labels, why) in [
        (
            vec![("app", long.as_str())],
            "must be no more than 63 characters",
        ),
        (vec![("app", "-x")], "a valid label must be an empty string"),
        (vec![("bad key", "x")], "name part must consist of"),
        (
            vec![("Upper.Case/x", "x")],
            "prefix part a lowercase RFC 1123",
        ),
    ] {
        let err = cms
            .create(&PostParams::default(), &cm("labelled", &labels))
            .await
            .expect_err("invalid label");
        let (code, message) = api_message(err);
        assert_eq!(code, 422, "{message}");
        assert!(
            message.contains("metadata.labels: Invalid value") && message.contains(why),
            "{message}"
        );
    }
    let ok = "a".repeat(63);
    cms.create(
        &PostParams::default(),
        &cm(
            "labelled",
            &[("x.example.com/app", ok.as_str()), ("empty", "")],
        ),
    )
    .await
    .expect("valid labels");
    // Updates and patches are checked too.
    let err = cms
        .patch(
            "labelled",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": long}}})),
        )
        .await
        .expect_err("invalid label on patch");
    assert_eq!(api_message(err).0, 422);
    let err = cms
        .patch(
            "labelled",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"no spaces": "x"}}})),
        )
        .await
        .expect_err("invalid annotation key");
    let (code, message) = api_message(err);
    assert_eq!(code, 422);
    assert!(
        message.contains("metadata.annotations: Invalid value"),
        "{message}"
    );
    let huge = "x".repeat(256 * 1024 + 1);
    let err = cms
        .patch(
            "labelled",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"big": huge}}})),
        )
        .await
        .expect_err("annotations too large");
    let (code, message) = api_message(err);
    assert_eq!(code, 422);
    assert!(
        message.contains("must have at most 262144 bytes"),
        "{message}"
    );
}

/// Every namespace has a ServiceAccount `default`, the seeded ones and a new one, as
/// kube-controller-manager makes it upstream, again when it is deleted; deleting the namespace
/// takes it along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_gets_a_default_service_account() {
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    let (_emu, client) = start().await;
    for ns in ["default", "kube-system", "kube-public"] {
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
        assert!(sas.get_opt("default").await.unwrap().is_some(), "{ns}");
    }
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap();
    nss.create(&PostParams::default(), &ns).await.unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "team");
    let sa = sas
        .get("default")
        .await
        .expect("the namespace's default ServiceAccount");
    assert!(sa.metadata.uid.is_some());
    // Deleted, it is made again, a new object.
    sas.delete("default", &DeleteParams::default())
        .await
        .unwrap();
    let again = sas.get("default").await.expect("made again");
    assert_ne!(again.metadata.uid, sa.metadata.uid);
    // A dry run creates nothing, the ServiceAccount included.
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "dry"}})).unwrap();
    nss.create(
        &PostParams {
            dry_run: true,
            ..Default::default()
        },
        &ns,
    )
    .await
    .unwrap();
    let dry: Api<ServiceAccount> = Api::namespaced(client.clone(), "dry");
    assert!(dry.get_opt("default").await.unwrap().is_none());

    nss.delete("team", &DeleteParams::default()).await.unwrap();
    eventually("namespace gone", T, || async {
        nss.get_opt("team").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(sas.get_opt("default").await.unwrap().is_none());
}
