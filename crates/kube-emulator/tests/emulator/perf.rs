//! Throughput probe for the benchmark document (ignored by default; not a timed assertion):
//! concurrent small creates through kube::Client while 10 watchers follow every event.
//! Run: cargo test --release -p kube-emulator --test emulator perf -- --ignored --nocapture

use std::time::Instant;

use crate::support::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "throughput probe, run by hand"]
async fn writes_per_second_with_ten_watchers() {
    const WRITES: usize = 20_000;
    const CLIENTS: usize = 32;
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let rv = emu.resource_version().to_string();
    let mut watchers = Vec::new();
    for _ in 0..10 {
        let mut stream = cms
            .watch(&WatchParams::default(), &rv)
            .await
            .unwrap()
            .boxed();
        watchers.push(tokio::spawn(async move {
            let mut n = 0;
            while let Some(ev) = stream.try_next().await.unwrap() {
                if let WatchEvent::Added(_) = ev {
                    n += 1;
                    if n == WRITES {
                        return Instant::now();
                    }
                }
            }
            panic!("watch ended after {n} events");
        }));
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let cms = cms.clone();
        tasks.push(tokio::spawn(async move {
            for i in (c..WRITES).step_by(CLIENTS) {
                let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("cm-{i}"), "labels": {"bench": "yes"}},
                    "data": {"k": "v"},
                }))
                .unwrap();
                cms.create(&PostParams::default(), &cm).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let written = start.elapsed();
    let mut last = start;
    for w in watchers {
        last = last.max(w.await.unwrap());
    }
    println!(
        "{WRITES} creates by {CLIENTS} clients in {written:?} = {:.0} writes/s; all 10 watchers caught up {:?} after the last write",
        WRITES as f64 / written.as_secs_f64(),
        last.saturating_duration_since(start + written)
    );
}

/// What the state file's journal costs a write: creates of small ConfigMaps, one client after
/// the other and 32 at once, without and with a state file (each answered after its fsync).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "cost probe, run by hand"]
async fn write_latency_with_and_without_a_state_file() {
    const WRITES: usize = 1_000;
    let dir = temp_dir("perf-state");
    for state in [false, true] {
        for clients in [1, 32] {
            let path = dir.join(format!("state-{clients}.json"));
            let cfg = kube_emulator::EmulatorConfig {
                state_file: state.then_some(path),
                ..quick_config()
            };
            let (_emu, client) = start_with(cfg).await;
            let cms: Api<ConfigMap> = Api::default_namespaced(client);
            let start = Instant::now();
            let tasks: Vec<_> = (0..clients)
                .map(|c| {
                    let cms = cms.clone();
                    tokio::spawn(async move {
                        for i in (c..WRITES).step_by(clients) {
                            let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                                "metadata": {"name": format!("cm-{i}")}, "data": {"k": "v"},
                            }))
                            .unwrap();
                            cms.create(&PostParams::default(), &cm).await.unwrap();
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            let per = start.elapsed() / WRITES as u32;
            eprintln!("state file: {state}, clients: {clients}: {per:?} per write");
        }
    }
}
