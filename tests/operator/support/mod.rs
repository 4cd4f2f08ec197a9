//! Shared set-up for the operator's integration tests: an emulator with the
//! CRDs installed, a controller running against it, and waits with a
//! deadline (never a bare sleep).

pub mod http;
pub mod isolated;
pub mod process;
#[path = "../../../crates/kube-emulator/tests/emulator/temp_dir.rs"]
pub mod temp_dir;
/// The upstream API server of the fidelity tests, and free ports, from the emulator's tests.
#[path = "../../../crates/kube-emulator/tests/upstream/mod.rs"]
pub mod upstream;
pub use upstream::ports;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use apikey_operator::api::{ApiKey, ApiToken};
use apikey_operator::clock::{Clock, SystemClock};
use apikey_operator::controller::{self, Handles};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, PostParams};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Client, Resource};
use kube_emulator::{Emulator, EmulatorConfig};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any single wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Cluster {
    pub emulator: Emulator,
    pub client: Client,
}

impl Cluster {
    /// An emulator with the CRDs installed and a namespace `ns`.
    pub async fn start(ns: &str) -> Cluster {
        // RUST_LOG=apikey_operator=debug shows the controller's logs under the failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let emulator = Emulator::start(EmulatorConfig::default())
            .await
            .expect("emulator starts");
        let client = emulator.client().await.expect("client");
        apikey_operator::cli::install_crds(client.clone(), DEADLINE)
            .await
            .expect("CRDs installed");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))
                .expect("namespace");
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .expect("namespace created");
        Cluster { emulator, client }
    }

    pub fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Starts a controller on this cluster.
    pub fn controller(&self) -> Operator {
        Operator::start(self.client.clone())
    }

    /// Starts a controller on this cluster that reads `clock`.
    pub fn controller_on(&self, clock: Arc<dyn Clock>) -> Operator {
        Operator::start_on(self.client.clone(), clock)
    }
}

/// A clock that stands still until the test moves it.
#[derive(Debug)]
pub struct ManualClock(std::sync::Mutex<jiff::Timestamp>);

impl ManualClock {
    pub fn new(at: jiff::Timestamp) -> Arc<ManualClock> {
        Arc::new(ManualClock(std::sync::Mutex::new(at)))
    }

    pub fn set(&self, at: jiff::Timestamp) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> jiff::Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A controller running in the background until dropped or stopped.
pub struct Operator {
    pub handles: Arc<Handles>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Operator {
    pub fn start(client: Client) -> Operator {
        Operator::start_on(client, Arc::new(SystemClock))
    }

    pub fn start_on(client: Client, clock: Arc<dyn Clock>) -> Operator {
        let handles = Arc::new(Handles::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let config = controller::Config {
            resync: Duration::from_secs(600),
            ..Default::default()
        };
        let task = tokio::spawn(controller::run_with(
            client,
            config,
            clock,
            handles.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        Operator {
            handles,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Whether the controller task is still running (it ends only when stopped, or on a panic).
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the controller and waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(DEADLINE, task).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Waits (event-driven, via a watch) until `name` satisfies `cond`.
pub async fn wait_for<K>(api: &Api<K>, name: &str, what: &str, cond: impl Condition<K>) -> K
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    match tokio::time::timeout(DEADLINE, await_condition(api.clone(), name, cond)).await {
        Ok(Ok(Some(obj))) => obj,
        Ok(Ok(None)) => panic!("{name}: deleted while waiting for {what}"),
        Ok(Err(e)) => panic!("{name}: watch failed while waiting for {what}: {e}"),
        Err(_) => {
            let now = api.get_opt(name).await.ok().flatten();
            panic!("{name}: no {what} within {DEADLINE:?}; last seen: {now:#?}")
        }
    }
}

/// Waits until `name` is gone.
pub async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    match tokio::time::timeout(
        DEADLINE,
        await_condition(
            api.clone(),
            name,
            kube::runtime::wait::conditions::is_deleted(""),
        ),
    )
    .await
    {
        Ok(_) => {
            // is_deleted("") matches any uid being absent; confirm with a read.
            let deadline = tokio::time::Instant::now() + DEADLINE;
            while api.get_opt(name).await.ok().flatten().is_some() {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{name} still exists"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Err(_) => panic!("{name} not deleted within {DEADLINE:?}"),
    }
}

/// The condition `type_` of a token has `status`.
pub fn token_condition(type_: &'static str, status: &'static str) -> impl Condition<ApiToken> {
    move |t: Option<&ApiToken>| {
        t.and_then(|t| t.status.as_ref()).is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == type_ && c.status == status)
        })
    }
}

/// Waits until the token is Ready with no value half-issued (`status.pending` empty).
pub async fn settled_token(api: &Api<ApiToken>, name: &str) -> ApiToken {
    wait_for(
        api,
        name,
        "Ready=True, nothing pending",
        |t: Option<&ApiToken>| {
            token_condition("Ready", "True").matches_object(t)
                && t.and_then(|t| t.status.as_ref())
                    .is_some_and(|s| s.pending.is_none())
        },
    )
    .await
}

/// Makes the controller look at `name` again (a spec edit bumps the
/// generation) and waits until it recorded that generation, so the status
/// read back was decided at the clock's current time.
pub async fn reconcile_now(api: &Api<ApiToken>, name: &str, edit: &str) -> ApiToken {
    let patched = api
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&serde_json::json!({"spec": {"description": edit}})),
        )
        .await
        .expect("edit the description");
    let generation = patched.metadata.generation.expect("generation");
    wait_for(
        api,
        name,
        "the edit observed",
        move |t: Option<&ApiToken>| {
            t.and_then(|t| t.status.as_ref())
                .is_some_and(|s| s.observed_generation == Some(generation))
        },
    )
    .await
}

/// The Ready reason of a token is `reason`.
pub fn token_reason(reason: &'static str) -> impl Condition<ApiToken> {
    move |t: Option<&ApiToken>| {
        t.and_then(|t| t.status.as_ref()).is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.reason == reason)
        })
    }
}

pub fn key_ready(status: &'static str) -> impl Condition<ApiKey> {
    move |k: Option<&ApiKey>| {
        k.and_then(|k| k.status.as_ref()).is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == status)
        })
    }
}

/// The token value stored in a Secret.
pub fn secret_value(secret: &Secret, key: &str) -> String {
    let data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .expect("Secret holds the value");
    String::from_utf8(data.0.clone()).expect("value is UTF-8")
}

pub fn apply_yaml<K: DeserializeOwned>(yaml: &str) -> K {
    serde_yaml::from_str(yaml).expect("test manifest parses")
}

/// Creates the object `yaml` describes through `api`, which must succeed.
pub async fn create<K>(api: &Api<K>, yaml: &str) -> K
where
    K: Clone + DeserializeOwned + serde::Serialize + Debug,
{
    api.create(&PostParams::default(), &apply_yaml(yaml))
        .await
        .unwrap_or_else(|e| panic!("created from {yaml:?}: {e}"))
}

/// Events (events.k8s.io/v1) about the object `name` in `ns`, as (type, reason, note).
pub async fn events_for(client: &Client, ns: &str, name: &str) -> Vec<(String, String, String)> {
    counted_events_for(client, ns, name)
        .await
        .into_iter()
        .map(|(ty, reason, note, _)| (ty, reason, note))
        .collect()
}

/// Like `events_for`, with how often each happened: repeats of the same
/// type, reason and action are recorded as one Event with a series count.
pub async fn counted_events_for(
    client: &Client,
    ns: &str,
    name: &str,
) -> Vec<(String, String, String, i32)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let list = api.list(&Default::default()).await.expect("events list");
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| {
            let count = e.series.as_ref().map_or(1, |s| s.count);
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
                count,
            )
        })
        .collect()
}

/// Polls `check` until it returns Some, or fails after the deadline.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A verifier served in this process, until dropped.
pub struct InProcessVerifier {
    pub addr: std::net::SocketAddr,
    pub index: apikey_operator::verifier::watch::SharedIndex,
    _stop: oneshot::Sender<()>,
}

impl InProcessVerifier {
    /// Binds 127.0.0.1:0, serves, and waits until its watches synced.
    pub async fn start(client: Client) -> InProcessVerifier {
        let cfg = apikey_operator::verifier::VerifierConfig {
            addr: "127.0.0.1:0".parse().expect("addr"),
            ..Default::default()
        };
        let verifier = apikey_operator::verifier::bind(client, cfg)
            .await
            .expect("verifier binds");
        let addr = verifier.local_addr();
        let index = verifier.index();
        let readiness = verifier.readiness();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(verifier.run(async move {
            let _ = stopped.await;
        }));
        eventually("the verifier to be ready", || {
            let ready = readiness.ready();
            async move { ready.then_some(()) }
        })
        .await;
        InProcessVerifier {
            addr,
            index,
            _stop: stop,
        }
    }

    /// The index's verdict on `value` now (no HTTP, no usage recorded).
    pub fn verify(
        &self,
        value: &str,
    ) -> Result<apikey_operator::verifier::Identity, apikey_operator::verifier::Reject> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index.verify(value, jiff::Timestamp::now())
    }
}

/// A TokenReview request body for `value`.
pub fn token_review_body(value: &str) -> String {
    serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": value},
    })
    .to_string()
}

/// Whether the verifier at `addr` authenticates `value` (TokenReview over HTTP).
pub async fn authenticated(addr: std::net::SocketAddr, value: &str) -> bool {
    let (status, _, body) = http::request(
        addr,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        &[],
        &token_review_body(value),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let review: serde_json::Value = serde_json::from_str(&body).expect("TokenReview JSON");
    review["status"]["authenticated"] == serde_json::json!(true)
}

/// A client for the emulator that counts every request it sends (the
/// emulator's `stats()` counts every client's requests, refused ones included).
pub fn counting_client(url: &str, sent: Arc<std::sync::atomic::AtomicU64>) -> Client {
    let config = kube::Config::new(url.parse().expect("emulator URL"));
    let count = tower::util::MapRequestLayer::new(move |req| {
        sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        req
    });
    kube::client::ClientBuilder::try_from(config)
        .expect("client config")
        .with_layer(&count)
        .build()
}

/// Whether `APIKEY_SOAK=1` asks for the long variants (docs/reliability.md).
pub fn soak() -> bool {
    std::env::var("APIKEY_SOAK").is_ok_and(|v| v == "1")
}

/// Like `eventually`, with its own deadline.
pub async fn eventually_within<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
