//! `kubectl get apitokens` (the machine's real kubectl) against the emulator
//! shows key, ready, expires, last rotation and age for tokens in each state.

use std::process::Command;

use crate::support::*;
use apikey_operator::api::{ApiKey, ApiToken};
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;

const NS: &str = "cols";

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs (is /usr/bin/kubectl installed?)");
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

// kubectl blocks its thread; a second worker keeps the emulator serving.
/// Splits kubectl's table output into trimmed cells at the header's column offsets.
fn columns(out: &str) -> Vec<Vec<String>> {
    let mut lines = out.lines();
    let header = lines.next().expect("a header line");
    let mut starts = vec![0];
    let bytes = header.as_bytes();
    for i in 1..bytes.len() {
        if bytes[i - 1] == b' ' && bytes[i] != b' ' {
            starts.push(i);
        }
    }
    std::iter::once(header)
        .chain(lines)
        .map(|line| {
            starts
                .iter()
                .enumerate()
                .map(|(n, &from)| {
                    let to = starts
                        .get(n + 1)
                        .copied()
                        .unwrap_or(line.len())
                        .min(line.len());
                    line.get(from.min(line.len())..to)
                        .unwrap_or("")
                        .trim()
                        .to_owned()
                })
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_apitokens_shows_each_state_at_a_glance() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    let keys = cluster.api::<ApiKey>(NS);
    let tokens = cluster.api::<ApiToken>(NS);
    create_key(&keys, "alice", "User", "alice").await;
    let foreign: Secret = apply_yaml("metadata: {name: taken}\ndata: {token: eA==}");
    cluster
        .api::<Secret>(NS)
        .create(&PostParams::default(), &foreign)
        .await
        .expect("secret");
    for (name, spec) in [
        ("forever", "{apiKeyRef: {name: alice}}"),
        (
            "dated",
            "{apiKeyRef: {name: alice}, expiration: {expiresAt: '2099-01-01T00:00:00Z'}}",
        ),
        (
            "past",
            "{apiKeyRef: {name: alice}, expiration: {expiresAt: '2020-01-01T00:00:00Z'}}",
        ),
        ("clash", "{apiKeyRef: {name: alice}, secret: {name: taken}}"),
        ("nokey", "{apiKeyRef: {name: nobody}}"),
    ] {
        create_token(&tokens, name, spec).await;
    }
    wait_for(
        &tokens,
        "forever",
        "Ready",
        token_condition("Ready", "True"),
    )
    .await;
    wait_for(&tokens, "dated", "Ready", token_condition("Ready", "True")).await;
    wait_for(
        &tokens,
        "past",
        "Expired",
        token_condition("Expired", "True"),
    )
    .await;
    wait_for(
        &tokens,
        "clash",
        "SecretConflict",
        token_reason("SecretConflict"),
    )
    .await;
    wait_for(
        &tokens,
        "nokey",
        "ApiKeyNotFound",
        token_reason("ApiKeyNotFound"),
    )
    .await;
    apikey_operator::cli::rotate(cluster.client.clone(), NS, "forever", "r1", Some(DEADLINE))
        .await
        .expect("rotate");

    let dir = crate::support::temp_dir::temp_dir("kubectl");
    let kubeconfig = dir.join("kubeconfig");
    cluster
        .emulator
        .write_kubeconfig(&kubeconfig)
        .expect("kubeconfig");

    // Empty cells (a missing field) print as blanks, so columns are cut at the header's offsets.
    let out = kubectl(&kubeconfig, &["get", "apitokens", "-n", NS]);
    let table = columns(&out);
    assert_eq!(
        table[0],
        ["NAME", "KEY", "READY", "EXPIRES", "LAST-ROTATION", "AGE"],
        "{out}"
    );
    let row = |name: &str| {
        table
            .iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("row {name} in:\n{out}"))
            .clone()
    };

    let forever = row("forever");
    assert_eq!(&forever[1..4], ["alice", "True", ""], "{out}");
    assert!(
        forever[4].ends_with('s'),
        "last rotation shown as an age: {out}"
    );
    assert_eq!(
        &row("dated")[1..5],
        ["alice", "True", "2099-01-01T00:00:00Z", ""],
        "{out}"
    );
    assert_eq!(
        &row("past")[1..5],
        ["alice", "False", "2020-01-01T00:00:00Z", ""],
        "{out}"
    );
    assert_eq!(&row("clash")[1..5], ["alice", "False", "", ""], "{out}");
    assert_eq!(&row("nokey")[1..5], ["nobody", "False", "", ""], "{out}");
    assert_eq!(table.len(), 6, "{out}");
    for r in &table[1..] {
        assert!(
            r[5].ends_with('s') || r[5].ends_with('m'),
            "age column: {out}"
        );
    }

    // -o wide adds the reason, the Secret and the token id.
    let wide = kubectl(&kubeconfig, &["get", "apitokens", "-n", NS, "-o", "wide"]);
    let header: Vec<&str> = wide
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "KEY",
            "READY",
            "REASON",
            "EXPIRES",
            "LAST-ROTATION",
            "SECRET",
            "TOKEN-ID",
            "AGE"
        ]
    );
    let clash = wide
        .lines()
        .find(|l| l.starts_with("clash"))
        .expect("clash row");
    assert!(clash.contains("SecretConflict"), "{wide}");

    // The short name and the category work too.
    let short = kubectl(&kubeconfig, &["get", "apit", "-n", NS, "-o", "name"]);
    assert_eq!(short.lines().count(), 5, "{short}");
    let category = kubectl(
        &kubeconfig,
        &["get", "apikey-operator", "-n", NS, "-o", "name"],
    );
    assert!(
        category.contains("apikey.apikeys.dev/alice")
            && category.contains("apitoken.apikeys.dev/forever"),
        "{category}"
    );
}
