//! Revocation through the upstream server's caches: after a delete, a disable, a rotation
//! without grace or a `revoke`, the upstream refuses the old value once its cached answer ends.
//! Each value's answer is cached fresh (a cache miss) right before the change, the worst case;
//! the figures are printed (`--nocapture`) and bounded generously, not timed to the millisecond.

use std::time::{Duration, Instant};

use apikey_operator::api::ApiToken;
use apikey_operator::verifier::DEFAULT_AUDIENCE;
use apikey_operator::verifier::watch::SharedIndex;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

use super::{
    NS, Pki, RunningVerifier, doc_config, refused_after, start_upstream, value_of, whoami,
};
use crate::support::upstream::Upstream;
use crate::support::*;

/// Slack on top of the caches' TTLs before a test fails: the watch event, a busy machine.
const SLACK: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug)]
enum Change {
    Delete,
    Disable,
    RotateWithoutGrace,
    Revoke,
}

impl Change {
    async fn apply(self, cluster: &Cluster, name: &str) {
        let tokens = cluster.api::<ApiToken>(NS);
        let client = cluster.client.clone();
        match self {
            Change::Delete => {
                tokens
                    .delete(name, &DeleteParams::default())
                    .await
                    .expect("delete");
            }
            Change::Disable => {
                tokens
                    .patch(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"disabled": true}})),
                    )
                    .await
                    .expect("disable");
            }
            Change::RotateWithoutGrace => {
                apikey_operator::cli::rotate(client, NS, name, "now-1", None)
                    .await
                    .expect("rotate");
            }
            Change::Revoke => {
                apikey_operator::cli::revoke(client, NS, name, "leak-1", None)
                    .await
                    .expect("revoke");
            }
        }
    }
}

/// Until when the verifier and then the upstream server accepted `value` after `change`, the
/// upstream's answer for it having been cached just before.
async fn measure(
    cluster: &Cluster,
    index: &SharedIndex,
    upstream: &Upstream,
    name: &str,
    change: Change,
    cache: Duration,
) -> (Duration, Duration) {
    let value = value_of(cluster, name).await;
    assert!(
        whoami(upstream, &value).await.is_ok(),
        "{name} authenticates"
    );
    // The first answer may have been cached a moment ago: ask again once it has surely ended,
    // so that this answer is a fresh one.
    tokio::time::sleep(cache + Duration::from_millis(200)).await;
    assert!(
        whoami(upstream, &value).await.is_ok(),
        "{name} authenticates"
    );
    let start = Instant::now();
    change.apply(cluster, name).await;
    let verifier = {
        let (index, value) = (index.clone(), value.clone());
        tokio::spawn(async move {
            loop {
                let refused = index
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .verify(&value, jiff::Timestamp::now())
                    .is_err();
                if refused {
                    return start.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let upstream_after = refused_after(upstream, &value, start, cache + SLACK).await;
    let verifier_after = verifier.await.expect("verifier poll");
    eprintln!(
        "measured: {change:?}: the verifier refuses after {verifier_after:.2?}, the upstream \
         server (caches {cache:?}) after {upstream_after:.2?}"
    );
    assert!(
        upstream_after >= verifier_after,
        "the upstream server cannot refuse before the verifier does"
    );
    (verifier_after, upstream_after)
}

async fn stack(
    test: &str,
    pki: &Pki,
    extra: &[&str],
) -> Option<(Cluster, Operator, RunningVerifier, Upstream)> {
    let cluster = Cluster::start(NS).await;
    let operator = cluster.controller();
    let verifier = RunningVerifier::start_tls(cluster.client.clone(), pki, &[]).await;
    let mut flags = doc_config::apiserver_flags("2s");
    flags.push(format!("--api-audiences={DEFAULT_AUDIENCE}"));
    flags.extend(extra.iter().map(|f| (*f).to_owned()));
    let kubeconfig = doc_config::kubeconfig(verifier.addr, &pki.ca);
    let upstream = start_upstream(test, &pki.dir, &kubeconfig, flags).await?;
    Some((cluster, operator, verifier, upstream))
}

/// The webhook's cache alone (`--authentication-token-webhook-cache-ttl=2s`, kube-apiserver's
/// own success cache off): each change reaches the upstream within that TTL and a moment.
#[tokio::test]
async fn the_upstream_server_refuses_a_revoked_value_within_the_webhook_cache_ttl() {
    let pki = Pki::new("webhook-revocation");
    let Some((cluster, _operator, verifier, upstream)) = stack(
        "webhook revocation",
        &pki,
        &["--token-success-cache-ttl=0s"],
    )
    .await
    else {
        return;
    };
    let ttl = Duration::from_secs(2);
    create_key(&cluster.api(NS), "k", "User", "erin").await;
    let changes = [
        ("deleted", Change::Delete),
        ("disabled", Change::Disable),
        ("rotated", Change::RotateWithoutGrace),
        ("revoked", Change::Revoke),
    ];
    for (name, _) in changes {
        create_token(&cluster.api(NS), name, "{apiKeyRef: {name: k}}").await;
    }
    for (name, change) in changes {
        let (verifier_after, upstream_after) =
            measure(&cluster, &verifier.index, &upstream, name, change, ttl).await;
        assert!(
            upstream_after <= ttl + SLACK && verifier_after < SLACK,
            "{change:?}: {upstream_after:?}"
        );
    }
}

/// kube-apiserver's composition: its token authenticators' success cache (10 s, no flag) above
/// the webhook's. A revoked value is refused within the larger of the two and a moment here
/// (up to their sum when the webhook's TTL is the longer one).
#[tokio::test]
async fn kube_apiservers_own_success_cache_adds_up_to_ten_seconds() {
    let pki = Pki::new("webhook-revocation-10s");
    let Some((cluster, _operator, verifier, upstream)) =
        stack("webhook revocation (10 s cache)", &pki, &[]).await
    else {
        return;
    };
    create_key(&cluster.api(NS), "k", "User", "erin").await;
    create_token(&cluster.api(NS), "revoked", "{apiKeyRef: {name: k}}").await;
    let success_cache = Duration::from_secs(10);
    let (_, upstream_after) = measure(
        &cluster,
        &verifier.index,
        &upstream,
        "revoked",
        Change::Revoke,
        success_cache,
    )
    .await;
    assert!(
        upstream_after + Duration::from_secs(3) >= success_cache,
        "the 10 s success cache holds the answer: {upstream_after:?}"
    );
    assert!(upstream_after <= success_cache + Duration::from_secs(2) + SLACK);
}
