//! The server itself: a state file keeps objects and resourceVersions across restarts, and the
//! request counters count by verb.

use super::*;
use crate::support::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube_emulator::{Emulator, EmulatorConfig};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_file_persists_objects_and_resource_versions() {
    let dir = temp_dir("state");
    let path = dir.join("state.json");
    let cfg = EmulatorConfig {
        state_file: Some(path.clone()),
        ..quick_config()
    };
    let (emu, client) = start_with(cfg.clone()).await;
    install_crd(&client, WIDGET_CRD).await;
    widgets(&client, "default")
        .create(&PostParams::default(), &widget("kept", 4))
        .await
        .unwrap();
    let rv = emu.resource_version();
    emu.shutdown().await.unwrap();

    let emu = Emulator::start(cfg).await.unwrap();
    let client = emu.client().await.unwrap();
    assert_eq!(
        widgets(&client, "default").get("kept").await.unwrap().data["spec"]["size"],
        4
    );
    assert!(emu.resource_version() >= rv);
    let c = Api::<ConfigMap>::default_namespaced(client)
        .create(&PostParams::default(), &cm("new", &[]))
        .await
        .unwrap();
    assert!(c.metadata.resource_version.unwrap().parse::<u64>().unwrap() > rv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_requests_by_verb() {
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("c", &[]))
        .await
        .unwrap();
    let before = emu.stats();
    cms.get("c").await.unwrap();
    cms.list(&ListParams::default()).await.unwrap();
    let d = emu.stats() - before;
    assert_eq!((d.get, d.list, d.writes), (1, 1, 0));
    cms.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "w"}})),
    )
    .await
    .unwrap();
    assert_eq!((emu.stats() - before).writes, 1);

    // Refused requests (503 while unavailable) are counted as their verb too.
    emu.set_available(false);
    let mut cfg = kube::Config::new(emu.url().parse().unwrap());
    cfg.default_retry = false;
    let no_retry: Api<ConfigMap> = Api::default_namespaced(kube::Client::try_from(cfg).unwrap());
    let before = emu.stats();
    assert_eq!(api_code(no_retry.get("c").await).0, 503);
    assert_eq!(
        api_code(no_retry.delete("c", &DeleteParams::default()).await).0,
        503
    );
    let d = emu.stats() - before;
    emu.set_available(true);
    assert_eq!((d.get, d.delete, d.writes), (1, 1, 1));
}
