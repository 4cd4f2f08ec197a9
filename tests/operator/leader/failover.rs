//! Failover of two replicas with leader election: the leader is
//! SIGKILLed while it rotates many tokens. The other replica must take over
//! within the lease duration, every token must rotate exactly once per
//! request (no double rotation, none lost), values issued after the kill
//! must not be lost, and every Secret must hold the value status records.
//!
//! Each trial asks all tokens to rotate (a new `apikeys.dev/rotate` value),
//! waits until the leader has answered some of them, kills it, starts a
//! fresh replica in its place and checks convergence. 2 trials by default,
//! 10 with `APIKEY_SOAK=1`. Short lease timings: 3 s lease, 2 s renew
//! deadline, 250 ms retry, as in leader/election.rs.

use super::{LEASE, LEASE_NAME, holder};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::isolated::Isolated;
use crate::support::process::operator_binary;
use crate::support::temp_dir::temp_dir;
use crate::support::*;
use apikey_operator::api::{ApiKey, ApiToken, ROTATE_ANNOTATION};
use apikey_operator::token;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams};

const NS: &str = "failover";

struct Replica {
    identity: String,
    child: Child,
}

impl Replica {
    fn start(identity: String, kubeconfig: &Path, log: &Path) -> Replica {
        let stderr = std::fs::File::options()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(operator_binary())
            .args(["run", "--kubeconfig"])
            .arg(kubeconfig)
            .args(["--webhook-addr", "127.0.0.1:0"])
            .args([
                "--leader-elect",
                "--leader-election-namespace",
                NS,
                "--leader-election-identity",
                &identity,
                "--lease-duration",
                "3s",
                "--renew-deadline",
                "2s",
                "--retry-period",
                "250ms",
                "--verify-addr",
                "127.0.0.1:0",
                "--admin-addr",
                "127.0.0.1:0",
            ])
            .env_remove("KUBECONFIG")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("apikey-operator starts");
        Replica { identity, child }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every token's spec: the key, and a grace period longer than a trial.
const TOKEN_SPEC: &str = "{apiKeyRef: {name: alice}, rotation: {gracePeriod: 1m}}";

/// Every token is Ready with no pending value, answered `request` (if any),
/// and its Secret holds the value status records. Returns rotations by token.
async fn converged(
    tokens: &Api<ApiToken>,
    secrets: &Api<Secret>,
    names: &[String],
    request: Option<&str>,
) -> Result<BTreeMap<String, i64>, String> {
    let list = tokens
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    let secret_list = secrets
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut rotations = BTreeMap::new();
    for name in names {
        let t = list
            .items
            .iter()
            .find(|t| t.metadata.name.as_deref() == Some(name))
            .ok_or(format!("{name} missing"))?;
        let s = t.status.clone().unwrap_or_default();
        let ready = s
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if !ready || s.pending.is_some() {
            return Err(format!("{name} not settled: {s:?}"));
        }
        if request.is_some() && s.last_rotation_request.as_deref().map(String::as_str) != request {
            return Err(format!("{name} has not answered {request:?} yet"));
        }
        let secret = secret_list
            .items
            .iter()
            .find(|x| x.metadata.name.as_deref() == Some(name))
            .ok_or(format!("{name}: no Secret"))?;
        let value = secret_value(secret, "token");
        if s.hash.as_deref() != Some(token::hash_value(&value).as_str()) {
            return Err(format!(
                "{name}: the Secret does not hold the recorded value"
            ));
        }
        rotations.insert(name.clone(), s.rotations.unwrap_or(0));
    }
    Ok(rotations)
}

#[test]
fn killing_the_leader_mid_rotation_loses_and_doubles_nothing() {
    let test = Isolated::new();
    test.block_on(async {
        let trials = if soak() { 10 } else { 2 };
        let count = 50;
        let cluster = Cluster::start(NS).await;
        let dir = temp_dir("failover");
        let kubeconfig = dir.join("kubeconfig");
        cluster
            .emulator
            .write_kubeconfig(&kubeconfig)
            .expect("kubeconfig");
        let verifier = InProcessVerifier::start(cluster.client.clone()).await;
        let leases: Api<Lease> = cluster.api(NS);
        let tokens: Api<ApiToken> = cluster.api(NS);
        let secrets: Api<Secret> = cluster.api(NS);
        let keys: Api<ApiKey> = cluster.api(NS);

        let mut next_id = 0;
        let mut start = |dir: &Path| {
            next_id += 1;
            let identity = format!("replica-{next_id}");
            let log = dir.join(format!("{identity}.log"));
            Replica::start(identity, &kubeconfig, &log)
        };
        let mut replicas = vec![start(&dir), start(&dir)];
        let first = eventually("a leader", || async { holder(&leases).await }).await;
        println!("first leader: {first}");

        create_key(&keys, "alice", "User", "alice").await;
        let mut names: Vec<String> = (0..count).map(|i| format!("t{i:02}")).collect();
        for name in &names {
            create_token(&tokens, name, TOKEN_SPEC).await;
        }
        eventually_within("every token issued", Duration::from_secs(60), || async {
            converged(&tokens, &secrets, &names, None).await.ok()
        })
        .await;

        // Rotate requests each token got while it had a value: its expected `status.rotations`.
        let mut requests: BTreeMap<String, i64> = BTreeMap::new();
        for trial in 1..=trials {
            let leader_id = eventually("a leader", || async { holder(&leases).await }).await;
            let request = format!("trial-{trial}");
            let patch = Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {ROTATE_ANNOTATION: request}}
            }));
            futures::future::join_all(names.iter().map(|name| {
                let (tokens, patch) = (tokens.clone(), patch.clone());
                async move {
                    tokens
                        .patch(name, &PatchParams::default(), &patch)
                        .await
                        .expect("rotate request")
                }
            }))
            .await;
            for name in &names {
                *requests.entry(name.clone()).or_default() += 1;
            }

            // Kill the leader once it has answered some of the requests.
            let answered = eventually("the leader to start rotating", || {
                let (tokens, request) = (tokens.clone(), request.clone());
                async move {
                    let list = tokens.list(&ListParams::default()).await.ok()?;
                    let n = list
                        .items
                        .iter()
                        .filter(|t| {
                            t.status.as_ref().is_some_and(|s| {
                                s.last_rotation_request.as_deref() == Some(&request)
                                    || s.pending.is_some()
                            })
                        })
                        .count();
                    (n > 0).then_some(n)
                }
            })
            .await;
            let index = replicas
                .iter()
                .position(|r| r.identity == leader_id)
                .expect("the leader is one of ours");
            let killed_at = Instant::now();
            replicas.remove(index).kill();

            // Tokens created while there is no leader must not be lost.
            let fresh: Vec<String> = (0..5).map(|i| format!("new{trial}-{i}")).collect();
            for name in &fresh {
                create_token(&tokens, name, TOKEN_SPEC).await;
            }
            let next = eventually_within("a new leader", LEASE * 4, || {
                let (leases, leader_id) = (leases.clone(), leader_id.clone());
                async move { holder(&leases).await.filter(|h| *h != leader_id) }
            })
            .await;
            let took = killed_at.elapsed();
            println!(
                "trial {trial}: killed {leader_id} after {answered}/{count} requests answered or \
                 pending; {next} took over after {took:?}"
            );
            assert!(
                took <= LEASE + Duration::from_secs(2),
                "takeover took {took:?}, more than the lease duration ({LEASE:?}) plus slack"
            );
            replicas.push(start(&dir));

            let rotations = eventually_within(
                "every token to answer the request and converge",
                Duration::from_secs(60),
                || async {
                    converged(&tokens, &secrets, &names, Some(&request))
                        .await
                        .ok()
                },
            )
            .await;
            for (name, n) in &rotations {
                let expected = requests[name];
                assert_eq!(
                    *n, expected,
                    "{name}: {n} rotations after {expected} requests"
                );
            }
            for name in &names {
                let expected_rotations = requests[name];
                let rotated: i32 = counted_events_for(&cluster.client, NS, name)
                    .await
                    .iter()
                    .filter(|(_, reason, _, _)| reason == "Rotated")
                    .map(|(_, _, _, n)| n)
                    .sum();
                assert!(
                    rotated as i64 <= expected_rotations,
                    "{name}: {rotated} Rotated events for {expected_rotations} requests"
                );
            }
            eventually_within(
                "the fresh tokens issued",
                Duration::from_secs(60),
                || async { converged(&tokens, &secrets, &fresh, None).await.ok() },
            )
            .await;
            names.extend(fresh);
            // The verifier accepts every current value.
            let list = secrets.list(&ListParams::default()).await.expect("Secrets");
            for secret in &list.items {
                let value = secret_value(secret, "token");
                eventually("the verifier to accept the value", || {
                    let ok = verifier.verify(&value).is_ok();
                    async move { ok.then_some(()) }
                })
                .await;
            }
        }
        let lease = leases.get(LEASE_NAME).await.expect("lease");
        assert_eq!(
            lease.spec.and_then(|s| s.lease_transitions),
            Some(trials),
            "one takeover per kill"
        );
        assert_eq!(test.panics(), 0);
        drop(replicas);
    });
}
