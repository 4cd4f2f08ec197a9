//! The example of README.md, run as a test; `readme_shows_this_example` keeps the two equal.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube_emulator::{Emulator, EmulatorConfig};

#[tokio::test]
async fn configmaps_round_trip() -> Result<(), Box<dyn std::error::Error>> {
    let emu = Emulator::start(EmulatorConfig::default()).await?; // port 0: a free one
    let client = emu.client().await?; // namespace "default"
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let before = emu.stats();
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(serde_json::json!({
            "metadata": {"name": "settings"}, "data": {"mode": "fast"}
        }))?,
    )
    .await?;
    assert_eq!((emu.stats() - before).writes, 1); // request counters by verb
    let kubeconfig = std::env::temp_dir().join("emulator.kubeconfig");
    emu.write_kubeconfig(&kubeconfig)?; // for kubectl --kubeconfig …
    emu.set_available(false); // 503 + Retry-After: 1, watches closed
    emu.shutdown().await?; // compacts state_file if set
    Ok(())
}

#[test]
fn readme_shows_this_example() {
    let readme = include_str!("../../README.md");
    let this = include_str!("readme_example.rs");
    let example = this
        .split_once("\n\n")
        .and_then(|(_, rest)| rest.split_once("\n#[test]"))
        .map(|(example, _)| example)
        .expect("the example sits between the module doc and this test");
    assert!(
        readme.contains(example),
        "README.md's example differs from tests/emulator/readme_example.rs; copy the file's example into the README"
    );
}
