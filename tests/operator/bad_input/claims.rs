//! Simultaneous claims of two tokens on one Secret.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::support::isolated::Isolated;
use crate::support::*;
use apikey_operator::api::{ApiKey, ApiToken};
use apikey_operator::cli::apply::apply_manifests;
use apikey_operator::token;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;

/// Pairs of tokens that name the same Secret, woken at the same moment (their
/// key becomes Ready when its ServiceAccount appears): exactly one of each pair gets it, the other gets SecretConflict, and the
/// Secret never changes hands (its controller never changes once set).
#[test]
fn simultaneous_claims_on_one_secret_never_take_it_over() {
    let test = Isolated::new();
    test.block_on(async {
        const NS: &str = "claims";
        let pairs = if soak() { 100 } else { 12 };
        let cluster = Cluster::start(NS).await;
        let client = cluster.client.clone();
        let operator = cluster.controller();
        let verifier = InProcessVerifier::start(client.clone()).await;
        apply_manifests(
            &client,
            "key",
            "apiVersion: apikeys.dev/v1alpha1\nkind: ApiKey\nmetadata: {name: alice, namespace: claims}\nspec:\n  owner: {kind: ServiceAccount, name: robot}\n",
        )
        .await
        .expect("key");
        let keys: Api<ApiKey> = cluster.api(NS);
        wait_for(&keys, "alice", "not Ready", key_ready("False")).await;

        // Every controller uid each Secret ever had, in order.
        let owners: Arc<std::sync::Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
        let recorder = tokio::spawn({
            let (owners, api) = (owners.clone(), cluster.api::<Secret>(NS));
            async move {
                let mut events = watcher::watcher(api, watcher::Config::default())
                    .default_backoff()
                    .applied_objects()
                    .boxed();
                while let Some(Ok(secret)) = events.next().await {
                    let Some(controller) = secret
                        .owner_references()
                        .iter()
                        .find(|o| o.controller == Some(true))
                        .map(|o| o.uid.clone())
                    else {
                        continue;
                    };
                    let mut owners = owners.lock().unwrap_or_else(|e| e.into_inner());
                    let seq = owners.entry(secret.name_any()).or_default();
                    if seq.last() != Some(&controller) {
                        seq.push(controller);
                    }
                }
            }
        });

        let tokens: Api<ApiToken> = cluster.api(NS);
        let manifest = |name: String, secret: &str| -> ApiToken {
            apply_yaml(&format!(
                "apiVersion: apikeys.dev/v1alpha1\nkind: ApiToken\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  apiKeyRef: {{name: alice}}\n  secret: {{name: {secret}}}\n"
            ))
        };
        let creates = (0..pairs).flat_map(|i| {
            ["a", "b"].map(|side| {
                let tokens = tokens.clone();
                let token = manifest(format!("claim{i}-{side}"), &format!("shared{i}"));
                async move {
                    tokens
                        .create(&PostParams::default(), &token)
                        .await
                        .expect("token created")
                }
            })
        });
        futures::future::join_all(creates).await;
        // All wait for their key; its ServiceAccount appearing wakes them all at once.
        for i in 0..pairs {
            for side in ["a", "b"] {
                wait_for(
                    &tokens,
                    &format!("claim{i}-{side}"),
                    "ApiKeyNotReady",
                    token_reason("ApiKeyNotReady"),
                )
                .await;
            }
        }
        apply_manifests(
            &client,
            "sa",
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: robot, namespace: claims}\n",
        )
        .await
        .expect("ServiceAccount");

        for i in 0..pairs {
            let (a, b) = (format!("claim{i}-a"), format!("claim{i}-b"));
            let outcome = eventually(&format!("pair {i} to settle"), || {
                let tokens = tokens.clone();
                let (a, b) = (a.clone(), b.clone());
                async move {
                    let reason = |t: &ApiToken| {
                        t.status
                            .as_ref()
                            .and_then(|s| ready_reason_of(&s.conditions))
                            .map(|(_, r, _)| r)
                            .unwrap_or_default()
                    };
                    let (ta, tb) = (tokens.get(&a).await.ok()?, tokens.get(&b).await.ok()?);
                    match (reason(&ta).as_str(), reason(&tb).as_str()) {
                        ("Issued", "SecretConflict") => Some((ta, tb)),
                        ("SecretConflict", "Issued") => Some((tb, ta)),
                        _ => None,
                    }
                }
            })
            .await;
            let (winner, loser) = outcome;
            let secret = cluster
                .api::<Secret>(NS)
                .get(&format!("shared{i}"))
                .await
                .expect("Secret");
            let value = secret_value(&secret, "token");
            assert_eq!(
                winner.status.as_ref().and_then(|s| s.hash.clone()),
                Some(token::hash_value(&value).as_str().to_owned()),
                "pair {i}: the Secret holds the winner's value"
            );
            // The verifier's index follows its own watch, a moment behind the GET above.
            eventually(
                &format!("pair {i}: the verifier to accept the value"),
                || {
                    let accepted = verifier.verify(&value).is_ok();
                    async move { accepted.then_some(()) }
                },
            )
            .await;
            assert_eq!(
                loser.status.as_ref().and_then(|s| s.hash.clone()),
                None,
                "pair {i}: the loser records no value"
            );
            let seq = eventually("the Secret's owner recorded", || {
                let seq = owners
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&format!("shared{i}"))
                    .cloned()
                    .unwrap_or_default();
                async move { (!seq.is_empty()).then_some(seq) }
            })
            .await;
            assert_eq!(
                seq,
                vec![winner.uid().expect("uid")],
                "pair {i}: the Secret changed hands"
            );
        }
        recorder.abort();
        assert!(operator.is_running());
        assert_eq!(test.panics(), 0);
    });
}
