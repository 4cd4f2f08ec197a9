//! The machine's kubectl (/usr/bin/kubectl) against the emulator: apply (client- and server-side),
//! get with printer columns, describe, explain, patch, wait, delete and `get -w`.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use crate::support::*;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

const WIDGET: &str = "apiVersion: test.apikeys.dev/v1
kind: Widget
metadata:
  name: w1
  labels: {app: demo}
spec:
  size: 3
  ownerRef: {name: alice}
";

async fn with_crd() -> (kube_emulator::Emulator, kube::Client, Kubectl) {
    let (emu, client) = start().await;
    let k = Kubectl::new(&emu);
    let crd = k.write("crd.yaml", WIDGET_CRD);
    assert!(k.ok(&["apply", "-f", &crd]).await.contains("created"));
    (emu, client, k)
}

fn lines(s: &str) -> Vec<Vec<String>> {
    s.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_get_columns_describe_explain() {
    let (_emu, _client, k) = with_crd().await;
    let w = k.write("w1.yaml", WIDGET);
    assert!(
        k.ok(&["apply", "-f", &w])
            .await
            .contains("widget.test.apikeys.dev/w1 created")
    );
    assert!(k.ok(&["apply", "-f", &w]).await.contains("unchanged"));
    let changed = k.write("w1b.yaml", &WIDGET.replace("size: 3", "size: 4"));
    assert!(
        k.ok(&["apply", "-f", &changed])
            .await
            .contains("configured")
    );
    let size = k
        .ok(&[
            "get",
            "widget",
            "w1",
            "-o",
            "jsonpath={.spec.size} {.metadata.generation}",
        ])
        .await;
    assert_eq!(size, "4 2");

    // Printer columns from the CRD; the date column renders as an age.
    for args in [
        &["get", "widgets"][..],
        &["get", "wdg"],
        &["get", "testing"],
    ] {
        let out = lines(&k.ok(args).await);
        assert_eq!(out[0], ["NAME", "OWNER", "READY", "AGE"], "{args:?}");
        assert_eq!(&out[1][..2], ["w1", "alice"]);
        assert!(
            out[1][2].ends_with('s') || out[1][2].ends_with('m'),
            "age cell: {:?}",
            out[1]
        );
    }
    let described = k.ok(&["describe", "widget", "w1"]).await;
    for needle in ["Name:         w1", "Kind:         Widget", "Size:", "alice"] {
        assert!(
            described.contains(needle),
            "describe lacks {needle:?}:\n{described}"
        );
    }
    let explained = k.ok(&["explain", "widgets.spec"]).await;
    assert!(
        explained.contains("Desired state of the widget."),
        "{explained}"
    );
    assert!(
        explained.contains("size\t<integer> -required-"),
        "{explained}"
    );
    let explained = k.ok(&["explain", "widget.spec.size"]).await;
    assert!(explained.contains("How big the widget is."), "{explained}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_wait_and_delete() {
    let (_emu, client, k) = with_crd().await;
    let w = k.write("w1.yaml", WIDGET);
    k.ok(&["apply", "-f", &w]).await;
    k.ok(&[
        "patch",
        "widget",
        "w1",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"size":5}}"#,
    ])
    .await;
    k.ok(&[
        "patch",
        "widget",
        "w1",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/size","value":6}]"#,
    ])
    .await;
    assert_eq!(
        k.ok(&["get", "widget", "w1", "-o", "jsonpath={.spec.size}"])
            .await,
        "6"
    );

    // kubectl wait blocks until the controller-like write below sets Ready.
    let mut wait = k.command(&[
        "wait",
        "--for=condition=Ready",
        "widget/w1",
        "--timeout=20s",
    ]);
    let waiter = tokio::task::spawn_blocking(move || wait.output().expect("kubectl wait runs"));
    let status = json!({"apiVersion": "test.apikeys.dev/v1", "kind": "Widget",
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    widgets(&client, "default")
        .patch_status("w1", &PatchParams::apply("ctrl"), &Patch::Apply(&status))
        .await
        .unwrap();
    let out = waiter.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("condition met"));
    let row = lines(&k.ok(&["get", "widget", "w1"]).await);
    assert_eq!(&row[1][..3], ["w1", "alice", "True"]);

    // Status via kubectl's --subresource flag.
    k.ok(&[
        "patch",
        "widget",
        "w1",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"False"}]}}"#,
    ])
    .await;
    assert_eq!(lines(&k.ok(&["get", "widget", "w1"]).await)[1][2], "False");

    assert!(k.ok(&["delete", "widget", "w1"]).await.contains("deleted"));
    let out = k.run(&["get", "widget", "w1"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NotFound"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_conflicts() {
    let (_emu, _client, k) = with_crd().await;
    let w = k.write("w1.yaml", WIDGET);
    assert!(
        k.ok(&["apply", "--server-side", "-f", &w])
            .await
            .contains("serverside-applied")
    );
    let other = k.write("w1-other.yaml", &WIDGET.replace("size: 3", "size: 8"));
    let out = k
        .run(&[
            "apply",
            "--server-side",
            "--field-manager=other",
            "-f",
            &other,
        ])
        .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"conflict with "kubectl": .spec.size"#),
        "{err}"
    );
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        &other,
    ])
    .await;
    assert_eq!(
        k.ok(&["get", "widget", "w1", "-o", "jsonpath={.spec.size}"])
            .await,
        "8"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_streams_changes() {
    let (_emu, client, k) = with_crd().await;
    // Make sure discovery knows the new kind before starting the long-running watch.
    k.ok(&["get", "widgets"]).await;
    let mut child = k
        .command(&["get", "widgets", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let api = widgets(&client, "default");
    api.create(&PostParams::default(), &widget("watched", 1))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut next_matching = async |needle: &[&str]| {
        tokio::time::timeout(Duration::from_secs(15), async {
            while let Some(line) = rx.recv().await {
                seen.push(line.clone());
                if needle.iter().all(|n| line.contains(n)) {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false)
    };
    // The object is listed (or watched) as ADDED, then the change arrives as MODIFIED.
    let added = next_matching(&["ADDED", "watched"]).await;
    api.patch(
        "watched",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"ownerRef": {"name": "bob"}}})),
    )
    .await
    .unwrap();
    let modified = added && next_matching(&["MODIFIED", "watched", "bob"]).await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(modified, "kubectl get -w output: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtins_apply_and_columns() {
    let (_emu, _client) = start().await;
    let k = Kubectl::new(&_emu);
    let manifest = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: a, image: nginx}
      - {name: b, image: busybox}
---
apiVersion: v1
kind: Secret
metadata: {name: s1}
type: Opaque
stringData: {a: b, c: d}
";
    let path = k.write("m.yaml", manifest);
    k.ok(&["apply", "-f", &path]).await;
    let updated = k.write(
        "m2.yaml",
        &manifest.replace("image: busybox", "image: busybox:2"),
    );
    k.ok(&["apply", "-f", &updated]).await;
    let images = k
        .ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[*].image}",
        ])
        .await;
    assert_eq!(images, "nginx busybox:2");
    let out = lines(&k.ok(&["get", "secrets"]).await);
    assert_eq!(out[0], ["NAME", "TYPE", "DATA", "AGE"]);
    assert_eq!(&out[1][..3], ["s1", "Opaque", "2"]);
    assert!(k.ok(&["get", "ns"]).await.contains("kube-system"));
    k.ok(&["delete", "-f", &updated]).await;
    assert!(k.ok(&["get", "secrets"]).await.is_empty());
}
