//! An API outage: the controller backs off and recovers by itself, the verifier answers from
//! its index throughout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::support::*;
use apikey_operator::api::ApiToken;

/// The API server is unreachable for a while (6 s; 30 s with APIKEY_SOAK=1):
/// the controller backs off (its requests during the outage are counted and
/// bounded), recovers on its own, and the verifier answers from its index
/// throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_outage_backs_off_recovers_and_the_verifier_keeps_answering() {
    const NS: &str = "outage";
    let window = if soak() {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(6)
    };
    let cluster = Cluster::start(NS).await;
    let sent = Arc::new(AtomicU64::new(0));
    let operator = Operator::start(counting_client(&cluster.emulator.url(), sent.clone()));
    let verifier = InProcessVerifier::start(cluster.client.clone()).await;
    create_key(&cluster.api(NS), "k", "User", "u").await;
    const STEADY: usize = 5;
    for i in 0..STEADY {
        create_token(
            &cluster.api(NS),
            &format!("steady{i}"),
            "{apiKeyRef: {name: k}}",
        )
        .await;
    }
    // Due for renewal every 2 s (rotation.every is at least a minute): the
    // controller has work to fail at during the outage.
    create_token(
        &cluster.api(NS),
        "busy",
        "{apiKeyRef: {name: k}, expiration: {lifetime: 1h}, rotation: {renewBefore: 59m58s, gracePeriod: 1h}}",
    )
    .await;
    let mut values = Vec::new();
    for i in 0..STEADY {
        values.push(
            settled(&cluster, NS, &format!("steady{i}"), DEADLINE)
                .await
                .1,
        );
    }
    for v in &values {
        eventually("the verifier to accept the values", || async {
            authenticated(verifier.addr, v).await.then_some(())
        })
        .await;
    }

    let sent_before = sent.load(Ordering::Relaxed);
    let served_before = cluster.emulator.stats();
    let errors_before = operator.handles.metrics.errors();
    cluster.emulator.set_available(false);
    let started = Instant::now();
    let mut answers = 0;
    let mut sent_first_half = None;
    while started.elapsed() < window {
        for v in &values {
            assert!(
                authenticated(verifier.addr, v).await,
                "the verifier rejected a valid value during the outage"
            );
            answers += 1;
        }
        let (status, _, _) = http::request(verifier.addr, "GET", "/readyz", &[], "").await;
        assert_eq!(status, 200, "the verifier stays ready during the outage");
        if sent_first_half.is_none() && started.elapsed() >= window / 2 {
            sent_first_half = Some(sent.load(Ordering::Relaxed) - sent_before);
        }
        // Pacing of the client's checks, not a wait for a condition.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let during = sent.load(Ordering::Relaxed) - sent_before;
    let errors = operator.handles.metrics.errors() - errors_before;
    let first_half = sent_first_half.unwrap_or(during);
    let refused = cluster.emulator.stats() - served_before;
    cluster.emulator.set_available(true);
    // The emulator counts refused requests too (the verifier's included).
    let refused_total = refused.get + refused.list + refused.watch + refused.writes;
    assert!(
        refused_total >= during,
        "the emulator counted {refused_total} requests during the outage, the controller sent {during}"
    );
    let recovered_at = Instant::now();
    println!(
        "outage of {window:?}: {during} controller requests ({first_half} in the first half), \
         {errors} reconcile errors, {answers} verifier answers"
    );

    // Backoff: six watches (ApiToken ×2, ApiKey ×2, Secret, ServiceAccount)
    // retry from 0.8 s doubling, one token is due every 2 s and retries from
    // 1 s doubling; with jitter that is about log2(window) attempts each.
    // Flat 1 s retries would send at least 7 × window-in-seconds requests.
    let attempts = (window.as_secs_f64() / 0.8).log2().ceil() as u64 + 2;
    let bound = 7 * attempts * 2;
    assert!(
        during <= bound,
        "{during} requests during a {window:?} outage (bound {bound}): no backoff"
    );
    assert!(
        errors <= attempts * 2,
        "{errors} reconcile errors during a {window:?} outage: the busy token does not back off"
    );
    assert!(
        during - first_half <= first_half.max(7),
        "the request rate did not fall during the outage: {first_half} then {}",
        during - first_half
    );

    // Recovery without help: the busy token rotates again, a new token is issued,
    // within the watches' largest backoff (30 s) plus the usual deadline.
    let recovery = Duration::from_secs(30) + DEADLINE;
    let before = rotations(&cluster.api::<ApiToken>(NS).get("busy").await.expect("busy"));
    create_token(&cluster.api(NS), "after", "{apiKeyRef: {name: k}}").await;
    let (_, fresh) = settled(&cluster, NS, "after", recovery).await;
    let tokens = cluster.api::<ApiToken>(NS);
    eventually_within("the busy token to rotate again", recovery, || async {
        let t = tokens.get("busy").await.ok()?;
        (rotations(&t) > before).then_some(())
    })
    .await;
    eventually("the verifier to accept the new token", || async {
        authenticated(verifier.addr, &fresh).await.then_some(())
    })
    .await;
    println!("recovered in {:?}", recovered_at.elapsed());
    operator.stop().await;
}
