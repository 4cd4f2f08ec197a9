//! The state file: every answered write is in the journal before the answer, so an emulator
//! that never shut down (dropped here; `kill -9` of `apikey-operator local` in the operator's
//! tests) restarts with it; resourceVersions keep increasing; the journal is compacted into
//! the snapshot; a torn last journal line is ignored; both files are private (0600), and a
//! state file others may read is refused.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;
use crate::support::*;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_emulator::{Emulator, EmulatorConfig, EmulatorError};
use serde_json::json;

fn journal(state: &Path) -> PathBuf {
    PathBuf::from(format!("{}.journal", state.display()))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn state_config(path: &Path) -> EmulatorConfig {
    EmulatorConfig {
        state_file: Some(path.to_owned()),
        ..quick_config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_writes_survive_an_emulator_that_never_shut_down() {
    let dir = temp_dir("state-crash");
    let path = dir.join("state.json");
    let (emu, client) = start_with(state_config(&path)).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    for name in ["kept", "gone"] {
        cms.create(&PostParams::default(), &cm(name, &[]))
            .await
            .unwrap();
    }
    let secret = serde_json::from_value(json!({
        "metadata": {"name": "s"}, "stringData": {"token": "the value"}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let patch = json!({"data": {"k": "patched"}});
    let patched = cms
        .patch("kept", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    cms.delete("gone", &DeleteParams::default()).await.unwrap();
    let rv = emu.resource_version();
    assert!(size(&journal(&path)) > 0, "the writes are in the journal");
    drop(emu); // no shutdown: nothing is saved on the way out

    let (emu, client) = start_with(state_config(&path)).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let kept = cms.get("kept").await.unwrap();
    assert_eq!(kept.data.unwrap()["k"], "patched");
    assert_eq!(
        kept.metadata.resource_version,
        patched.metadata.resource_version
    );
    assert_eq!(api_code(cms.get("gone").await).0, 404);
    let s = Api::<Secret>::default_namespaced(client)
        .get("s")
        .await
        .unwrap();
    assert_eq!(s.data.unwrap()["token"].0, b"the value");
    assert!(
        emu.resource_version() >= rv,
        "resourceVersions never go back"
    );
    let c = cms
        .create(&PostParams::default(), &cm("after", &[]))
        .await
        .unwrap();
    assert!(c.metadata.resource_version.unwrap().parse::<u64>().unwrap() > rv);
    // Start compacted the journal into the snapshot.
    drop(emu);
    let snapshot = std::fs::read_to_string(&path).unwrap();
    assert!(snapshot.contains("\"kept\"") && !snapshot.contains("\"gone\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_files_are_private_and_a_readable_one_is_refused() {
    let dir = temp_dir("state-mode");
    let path = dir.join("state.json");
    let (emu, client) = start_with(state_config(&path)).await;
    Api::<ConfigMap>::default_namespaced(client)
        .create(&PostParams::default(), &cm("c", &[]))
        .await
        .unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&journal(&path)), 0o600);
    emu.shutdown().await.unwrap();
    assert_eq!(mode(&path), 0o600, "the compacted snapshot too");
    assert_eq!(
        size(&journal(&path)),
        0,
        "a clean shutdown empties the journal"
    );

    for file in [path.clone(), journal(&path)] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = Emulator::start(state_config(&path)).await.unwrap_err();
        assert!(
            matches!(&refused, EmulatorError::StateNotPrivate { mode: 0o644, .. }),
            "{refused:?}"
        );
        let message = refused.to_string();
        assert!(
            message.contains(&format!("chmod 600 {}", file.display())),
            "{message}"
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let (_emu, client) = start_with(state_config(&path)).await;
    Api::<ConfigMap>::default_namespaced(client)
        .get("c")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_is_compacted_when_it_outgrows_the_snapshot() {
    let dir = temp_dir("state-compact");
    let path = dir.join("state.json");
    let (emu, client) = start_with(state_config(&path)).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    cms.create(&PostParams::default(), &cm("big", &[]))
        .await
        .unwrap();
    let base = size(&path);
    // 40 writes of 64 KiB: 2.6 MB of journal, past the 1 MiB (and 2× snapshot) limit.
    let mut largest = 0;
    for i in 0..40 {
        let patch = json!({"data": {"k": format!("{i:02}").repeat(32 * 1024)}});
        cms.patch("big", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        largest = largest.max(size(&journal(&path)));
    }
    assert!(
        largest < 1024 * 1024 + 128 * 1024,
        "journal reached {largest} bytes"
    );
    assert!(
        size(&path) > base,
        "the snapshot holds the compacted changes"
    );
    drop(emu);
    let (_emu, client) = start_with(state_config(&path)).await;
    let big = Api::<ConfigMap>::default_namespaced(client)
        .get("big")
        .await
        .unwrap();
    assert_eq!(big.data.unwrap()["k"], "39".repeat(32 * 1024));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_journal_line_is_ignored() {
    let dir = temp_dir("state-torn");
    let path = dir.join("state.json");
    let (emu, client) = start_with(state_config(&path)).await;
    Api::<ConfigMap>::default_namespaced(client)
        .create(&PostParams::default(), &cm("c", &[]))
        .await
        .unwrap();
    let rv = emu.resource_version();
    drop(emu);
    // A write cut short by a crash: never answered, so never relied on.
    let mut text = std::fs::read(journal(&path)).unwrap();
    text.extend_from_slice(br#"{"rv":999999,"resource":"/configmaps","obj"#);
    std::fs::write(journal(&path), text).unwrap();
    let (emu, client) = start_with(state_config(&path)).await;
    Api::<ConfigMap>::default_namespaced(client)
        .get("c")
        .await
        .unwrap();
    assert!(emu.resource_version() >= rv && emu.resource_version() < 999999);
}
