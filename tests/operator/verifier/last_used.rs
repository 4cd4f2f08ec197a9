//! The verifier's `status.lastUsedAt` reports against the emulator: the
//! verifier's HTTP endpoints, index watches, usage recorder and report rounds
//! (`last_used::report_usage` with a short interval, or flushed on shutdown),
//! assembled from its public parts with a clock the test sets. A use writes the
//! minute of use once; more uses in that minute write nothing; the next minute
//! writes again; and a token deleted and created again under the same name is
//! not written with the old token's use.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::support::*;
use apikey_operator::api::{ApiKey, ApiToken};
use apikey_operator::clock::Clock;
use apikey_operator::lean::Lean;
use apikey_operator::verifier::HeaderNames;
use apikey_operator::verifier::http::{AppState, router};
use apikey_operator::verifier::index::Index;
use apikey_operator::verifier::last_used::{UsageRecorder, report_usage, truncate_to_minute};
use apikey_operator::verifier::metrics::Metrics;
use apikey_operator::verifier::watch::{self, Readiness, SharedIndex};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams};
use kube::{Client, ResourceExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const NS: &str = "usage";

/// The verifier's endpoints and index on `clock`, with its usage recorder
/// reachable so the test decides when report rounds run.
struct UsageVerifier {
    client: Client,
    addr: SocketAddr,
    index: SharedIndex,
    clock: Arc<ManualClock>,
    usage: Arc<UsageRecorder>,
    metrics: Arc<Metrics>,
    tasks: Vec<JoinHandle<()>>,
}

impl UsageVerifier {
    async fn start(client: Client, clock: Arc<ManualClock>) -> UsageVerifier {
        let index: SharedIndex = Arc::new(RwLock::new(Index::new()));
        let readiness = Arc::new(Readiness::default());
        let metrics = Arc::new(Metrics::new());
        let usage = Arc::new(UsageRecorder::default());
        let tokens: Api<Lean<ApiToken>> = Api::namespaced(client.clone(), NS);
        let keys: Api<Lean<ApiKey>> = Api::namespaced(client.clone(), NS);
        let mut tasks = vec![
            tokio::spawn(watch::watch(
                tokens,
                index.clone(),
                readiness.clone(),
                metrics.clone(),
            )),
            tokio::spawn(watch::watch(
                keys,
                index.clone(),
                readiness.clone(),
                metrics.clone(),
            )),
            tokio::spawn(watch::watch_service_accounts(
                Api::namespaced(client.clone(), NS),
                index.clone(),
                readiness.clone(),
                metrics.clone(),
            )),
        ];
        let state = Arc::new(AppState {
            index: index.clone(),
            readiness: readiness.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            usage: usage.clone(),
            extra_groups: Vec::new(),
            headers: HeaderNames::default(),
            audiences: Vec::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, router(state)).await;
        }));
        eventually("the verifier's watches to sync", || {
            let ready = readiness.ready();
            async move { ready.then_some(()) }
        })
        .await;
        UsageVerifier {
            client,
            addr,
            index,
            clock,
            usage,
            metrics,
            tasks,
        }
    }

    /// Waits until the index accepts `value` (no use is noted).
    async fn knows(&self, value: &str) {
        eventually("the verifier to learn the token", || {
            let known = self
                .index
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .verify(value, self.clock.now())
                .is_ok();
            async move { known.then_some(()) }
        })
        .await;
    }

    /// Forward-auth with `X-API-Key`; asserts 200 with the owner's identity header.
    async fn use_value(&self, value: &str, user: &str) {
        let (status, head, _) =
            http::request(self.addr, "GET", "/auth", &[("X-API-Key", value)], "").await;
        assert_eq!(status, 200, "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("x-auth-user: {user}")),
            "{head}"
        );
    }

    /// Report rounds every `interval` until the returned sender is dropped or
    /// fires; the task then writes what is left and ends.
    fn report_every(&self, interval: Duration) -> (oneshot::Sender<()>, JoinHandle<()>) {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(report_usage(
            self.client.clone(),
            self.usage.clone(),
            self.metrics.clone(),
            interval,
            async move {
                let _ = stopped.await;
            },
        ));
        (stop, task)
    }

    /// `apikey_verifier_last_used_writes_total{result}`.
    fn writes(&self, result: &str) -> u64 {
        let series = format!("apikey_verifier_last_used_writes_total{{result=\"{result}\"}} ");
        self.metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for UsageVerifier {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn create_key_and_tokens(cluster: &Cluster, tokens: &[&str]) {
    create_key(&cluster.api(NS), "alice", "User", "alice@example.com").await;
    for name in tokens {
        create_token(&cluster.api(NS), name, "{apiKeyRef: {name: alice}}").await;
    }
}

/// Waits until `name` is Ready with nothing pending; returns it and its value.
async fn ready_value(cluster: &Cluster, name: &str) -> (ApiToken, String) {
    let token = settled_token(&cluster.api::<ApiToken>(NS), name).await;
    let secret = cluster.api::<Secret>(NS).get(name).await.expect("Secret");
    (token, secret_value(&secret, "token"))
}

fn last_used(token: &ApiToken) -> Option<Timestamp> {
    token
        .status
        .as_ref()
        .and_then(|s| s.last_used_at.as_ref())
        .map(|t| t.0)
}

async fn wait_last_used(cluster: &Cluster, name: &str, minute: Timestamp) -> ApiToken {
    wait_for(
        &cluster.api::<ApiToken>(NS),
        name,
        "status.lastUsedAt",
        move |t: Option<&ApiToken>| t.is_some_and(|t| last_used(t) == Some(minute)),
    )
    .await
}

/// Status writes the emulator answered with 200 since `before`.
fn status_writes_since(cluster: &Cluster, before: &std::collections::BTreeMap<String, u64>) -> u64 {
    let request = "PATCH apitokens/status 200";
    let now = cluster.emulator.requests_by();
    now.get(request).copied().unwrap_or(0) - before.get(request).copied().unwrap_or(0)
}

fn plus(t: Timestamp, secs: i64) -> Timestamp {
    t.checked_add(SignedDuration::from_secs(secs))
        .expect("time in range")
}

#[tokio::test]
async fn one_write_per_token_and_minute_of_use() {
    let cluster = Cluster::start(NS).await;
    let op = cluster.controller();
    create_key_and_tokens(&cluster, &["used", "sentinel"]).await;
    let (issued, used) = ready_value(&cluster, "used").await;
    let (_, sentinel) = ready_value(&cluster, "sentinel").await;
    // From here on every ApiToken status write is the verifier's.
    op.stop().await;

    let minute = truncate_to_minute(Timestamp::now());
    let clock = ManualClock::new(plus(minute, 10));
    let verifier = UsageVerifier::start(cluster.client.clone(), clock.clone()).await;
    verifier.knows(&used).await;
    verifier.knows(&sentinel).await;
    let (_stop, _reporter) = verifier.report_every(Duration::from_millis(100));
    let before = cluster.emulator.requests_by();

    // Two uses in the minute: one write of that minute, to that token only.
    verifier.use_value(&used, "alice@example.com").await;
    verifier.use_value(&used, "alice@example.com").await;
    let written = wait_last_used(&cluster, "used", minute).await;
    eventually("the round's metric", || async {
        (verifier.writes("ok") == 1).then_some(())
    })
    .await;
    assert_eq!(
        written.status.as_ref().and_then(|s| s.hash.clone()),
        issued.status.as_ref().and_then(|s| s.hash.clone()),
        "the merge patch leaves the controller's fields alone"
    );
    let sentinel_token = cluster
        .api::<ApiToken>(NS)
        .get("sentinel")
        .await
        .expect("sentinel");
    assert_eq!(
        last_used(&sentinel_token),
        None,
        "an unused token is not written"
    );

    // Later in the same minute: no write. The sentinel's use, noted after it,
    // shows that a report round ran past it.
    clock.set(plus(minute, 40));
    verifier.use_value(&used, "alice@example.com").await;
    verifier.use_value(&sentinel, "alice@example.com").await;
    wait_last_used(&cluster, "sentinel", minute).await;
    eventually("the sentinel's round to complete", || async {
        (verifier.writes("ok") >= 2).then_some(())
    })
    .await;
    assert_eq!(verifier.writes("ok"), 2, "used once, sentinel once");
    assert_eq!(
        status_writes_since(&cluster, &before),
        2,
        "no second write for a minute already written"
    );
    assert_eq!(
        last_used(&cluster.api::<ApiToken>(NS).get("used").await.expect("used")),
        Some(minute)
    );

    // The next minute is written again.
    let next = plus(minute, 60);
    clock.set(plus(next, 5));
    verifier.use_value(&used, "alice@example.com").await;
    wait_last_used(&cluster, "used", next).await;
    eventually("the third write", || async {
        (verifier.writes("ok") == 3).then_some(())
    })
    .await;
    assert_eq!(status_writes_since(&cluster, &before), 3);
    assert_eq!(verifier.writes("gone") + verifier.writes("error"), 0);
}

#[tokio::test]
async fn usage_not_yet_reported_is_written_on_shutdown() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    create_key_and_tokens(&cluster, &["flushed"]).await;
    let (_, value) = ready_value(&cluster, "flushed").await;

    let minute = truncate_to_minute(Timestamp::now());
    let clock = ManualClock::new(plus(minute, 30));
    let verifier = UsageVerifier::start(cluster.client.clone(), clock).await;
    verifier.knows(&value).await;
    // A round an hour away: only the shutdown can write this use.
    let (stop, reporter) = verifier.report_every(Duration::from_secs(3600));
    verifier.use_value(&value, "alice@example.com").await;
    assert_eq!(verifier.writes("ok"), 0);

    let _ = stop.send(());
    tokio::time::timeout(DEADLINE, reporter)
        .await
        .expect("the reporter ends after its last round")
        .expect("reporter task");
    assert_eq!(verifier.writes("ok"), 1);
    let token = cluster
        .api::<ApiToken>(NS)
        .get("flushed")
        .await
        .expect("token");
    assert_eq!(last_used(&token), Some(minute));
}

#[tokio::test]
async fn a_token_created_again_under_the_same_name_is_not_written_with_the_old_use() {
    let cluster = Cluster::start(NS).await;
    let _op = cluster.controller();
    create_key_and_tokens(&cluster, &["reborn"]).await;
    let (first, value) = ready_value(&cluster, "reborn").await;

    let minute = truncate_to_minute(Timestamp::now());
    let clock = ManualClock::new(plus(minute, 10));
    let verifier = UsageVerifier::start(cluster.client.clone(), clock).await;
    verifier.knows(&value).await;
    // Used, not reported yet: no report round is running.
    verifier.use_value(&value, "alice@example.com").await;

    let tokens = cluster.api::<ApiToken>(NS);
    tokens
        .delete("reborn", &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone(&tokens, "reborn").await;
    create_token(&cluster.api(NS), "reborn", "{apiKeyRef: {name: alice}}").await;
    let (second, _) = ready_value(&cluster, "reborn").await;
    assert_ne!(second.uid(), first.uid(), "a new object");

    let (stop, reporter) = verifier.report_every(Duration::from_secs(3600));
    let _ = stop.send(());
    tokio::time::timeout(DEADLINE, reporter)
        .await
        .expect("the reporter ends after its last round")
        .expect("reporter task");
    let after = tokens.get("reborn").await.expect("token");
    assert_eq!(after.uid(), second.uid());
    assert_eq!(
        last_used(&after),
        None,
        "the new token was never used, but got the old one's lastUsedAt"
    );
    assert_eq!(verifier.writes("ok"), 0);
    assert_eq!(verifier.writes("gone"), 1);
}
