//! The verifier failing under the upstream server: answering 500, or unreachable. The upstream
//! fails closed (401, after its retries) and accepts the value again once the verifier is back.
//! Caches off, so every request is a TokenReview; the figures (how long a refusal takes, the
//! verifier's answer times under the upstream's requests) are printed (`--nocapture`).

use std::time::{Duration, Instant};

use apikey_operator::verifier::{DEFAULT_AUDIENCE, VerifierConfig};

use super::front::{Front, Mode};
use super::{NS, Pki, RunningVerifier, doc_config, start_upstream, value_of, whoami};
use crate::support::upstream::Upstream;
use crate::support::*;

/// The upstream's retries (5 tries, 0.5 s × 1.5ⁿ with jitter) take about 4 s; generous bound.
const REFUSED_WITHIN: Duration = Duration::from_secs(15);

async fn refused_timed(upstream: &Upstream, value: &str) -> Duration {
    let start = Instant::now();
    assert_eq!(whoami(upstream, value).await, Err(401), "fails closed");
    let took = start.elapsed();
    assert!(took < REFUSED_WITHIN, "{took:?}");
    took
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[tokio::test]
async fn the_upstream_server_fails_closed_while_the_verifier_fails_and_recovers() {
    let pki = Pki::new("webhook-outage");
    let cluster = Cluster::start(NS).await;
    let _operator = cluster.controller();
    let cfg = VerifierConfig {
        addr: "127.0.0.1:0".parse().expect("addr"),
        ..Default::default()
    };
    let verifier = RunningVerifier::start(cluster.client.clone(), cfg).await;
    let mut front = Front::start(&pki, verifier.addr).await;
    let mut flags = doc_config::apiserver_flags("0s");
    flags.push(format!("--api-audiences={DEFAULT_AUDIENCE}"));
    flags.push("--token-success-cache-ttl=0s".to_owned());
    let kubeconfig = doc_config::kubeconfig(front.addr, &pki.ca);
    let Some(upstream) = start_upstream("webhook outage", &pki.dir, &kubeconfig, flags).await
    else {
        return;
    };
    create_key(&cluster.api(NS), "k", "User", "frank").await;
    create_token(&cluster.api(NS), "t", "{apiKeyRef: {name: k}}").await;
    let value = value_of(&cluster, "t").await;

    // The upstream's request pattern: one TokenReview per request, over its kept-alive
    // connection to the front; the verifier's time is the front's round trip to it.
    let mut client_side = Vec::new();
    for _ in 0..50 {
        let start = Instant::now();
        assert!(whoami(&upstream, &value).await.is_ok());
        client_side.push(start.elapsed());
    }
    let mut verifier_side: Vec<Duration> = front
        .take_exchanges()
        .iter()
        .map(|e| e.verifier_took)
        .collect();
    assert_eq!(verifier_side.len(), 50, "one TokenReview per request");
    verifier_side.sort();
    client_side.sort();
    eprintln!(
        "measured: 50 requests through the upstream server, each a TokenReview: the verifier \
         answered in p50 {:.2?}, p90 {:.2?}, max {:.2?} (a fresh loopback connection each); \
         a whole request to the upstream server took p50 {:.2?}, max {:.2?}",
        percentile(&verifier_side, 50),
        percentile(&verifier_side, 90),
        verifier_side[49],
        percentile(&client_side, 50),
        client_side[49],
    );

    front.set(Mode::Fail500);
    let took = refused_timed(&upstream, &value).await;
    let tries = front.take_exchanges().len();
    eprintln!("measured: the verifier answering 500: 401 after {took:.2?} and {tries} tries");
    assert!(tries > 1, "a 500 is retried");

    front.set(Mode::Forward);
    assert!(whoami(&upstream, &value).await.is_ok(), "recovers at once");
    front.take_exchanges();

    front.stop().await;
    let took = refused_timed(&upstream, &value).await;
    eprintln!("measured: the verifier unreachable (connection refused): 401 after {took:.2?}");

    front.restart().await;
    let start = Instant::now();
    eventually("the upstream server to accept the value again", || async {
        whoami(&upstream, &value).await.ok()
    })
    .await;
    eprintln!(
        "measured: the verifier back: accepted again after {:.2?}",
        start.elapsed()
    );
}
