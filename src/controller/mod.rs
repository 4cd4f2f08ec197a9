//! The reconcilers: thin I/O shells around the pure decisions.
//!
//! `token` issues, rotates, renews and expires ApiToken values into Secrets
//! (deciding with `token_state` and `schedule`); `key` resolves ApiKey owners,
//! counts tokens and adopts them. `run` wires both kube-rs Controllers with
//! their watches; `local` mode and `apikey-operator run` call it.

mod conditions;
mod hashed_secret;
mod key;
mod token;
pub mod token_state;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Config as WatchConfig};
use kube::runtime::{Controller, WatchStreamExt, controller::Action};
use kube::{Api, Client, Resource, ResourceExt};
use rand::Rng;
use tracing::{info, warn};

use crate::api::{ApiKey, ApiToken};
use crate::clock::{Clock, SystemClock};
use crate::lean::{Lean, Undecodables};
use hashed_secret::HashedSecret;

/// Field manager of every write the controller makes.
pub const FIELD_MANAGER: &str = "apikey-operator";
/// Label on every Secret the operator manages; the Secret watch selects on it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "apikey-operator";
/// Label naming the ApiToken a managed Secret belongs to.
pub const TOKEN_LABEL: &str = "apikeys.dev/token";

/// What a controller instance works on.
#[derive(Clone, Debug)]
pub struct Config {
    /// Only this namespace (all namespaces when `None`).
    pub namespace: Option<String>,
    /// Only ApiKeys and ApiTokens matching this label selector (for sharding).
    pub selector: Option<String>,
    /// Reconcile every object at least this often, even with nothing due.
    pub resync: Duration,
    /// Name reported as the source of Events.
    pub reporter: String,
    /// Reconciles run at once per controller. Unbounded, a burst of 10,000
    /// tokens opened hundreds of API connections, each with its own buffers.
    pub concurrency: u16,
}

/// Default of `Config::concurrency`: enough to keep an API server busy. In a
/// storm of 1,000 rotations due at once (BENCHMARKS.md) 32 gave p99 lateness
/// 0.7–1.2 s, 16 gave 1.0–1.2 s and 64 no better than 32, for 1 MiB more
/// memory than 16 at 10,000 tokens.
pub const DEFAULT_CONCURRENCY: u16 = 32;

impl Default for Config {
    fn default() -> Self {
        Config {
            namespace: None,
            selector: None,
            resync: Duration::from_secs(3600),
            reporter: MANAGED_BY.to_owned(),
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

/// Points where tests make a reconcile stop, as a crash there would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPoint {
    /// After the pending hash is recorded, before the Secret is written.
    AfterPending,
    /// After the Secret is written, before the value is promoted.
    AfterSecret,
}

/// Armed faults: each fires once per arm, making the reconcile fail at that
/// point with nothing kept in memory, as if the process had died.
#[derive(Debug, Default)]
pub struct Faults {
    after_pending: AtomicU32,
    after_secret: AtomicU32,
}

impl Faults {
    /// Makes the next `times` reconciles that reach `point` stop there.
    pub fn arm(&self, point: FaultPoint, times: u32) {
        self.counter(point).store(times, Ordering::SeqCst);
    }

    fn counter(&self, point: FaultPoint) -> &AtomicU32 {
        match point {
            FaultPoint::AfterPending => &self.after_pending,
            FaultPoint::AfterSecret => &self.after_secret,
        }
    }

    pub(crate) fn fire(&self, point: FaultPoint) -> Result<(), Error> {
        let counter = self.counter(point);
        match counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) {
            Ok(_) => Err(Error::InjectedFault(point)),
            Err(_) => Ok(()),
        }
    }
}

/// Counters of completed reconciles, for tests and metrics.
#[derive(Debug, Default)]
pub struct Stats {
    pub token_reconciles: std::sync::atomic::AtomicU64,
    pub key_reconciles: std::sync::atomic::AtomicU64,
    pub errors: std::sync::atomic::AtomicU64,
}

impl Stats {
    pub fn token_reconciles(&self) -> u64 {
        self.token_reconciles.load(Ordering::Relaxed)
    }
    pub fn key_reconciles(&self) -> u64 {
        self.key_reconciles.load(Ordering::Relaxed)
    }
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

/// What tests and the metrics endpoint can reach inside a running controller.
#[derive(Debug, Default)]
pub struct Handles {
    pub faults: Faults,
    pub stats: Stats,
    /// Prometheus counters (served on the admin port's /metrics).
    pub metrics: crate::metrics::ControllerMetrics,
    /// True once every watch completed its first list (`/readyz`); false
    /// again when the controllers stop.
    pub synced: std::sync::atomic::AtomicBool,
}

/// Errors of a reconcile. All are retried with per-object exponential backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed while {action}: {source}")]
    Kube {
        action: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("could not serialize {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("object has no {0}; the API server should always set it")]
    MissingField(&'static str),
    #[error("fault injected at {0:?}")]
    InjectedFault(FaultPoint),
}

impl Error {
    /// A bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube {
                source: kube::Error::Api(status),
                ..
            } if status.code == 409 => "conflict",
            Error::Kube { .. } => "api",
            Error::Serialize { .. } => "serialize",
            Error::MissingField(_) => "invalid_object",
            Error::InjectedFault(_) => "injected_fault",
        }
    }
}

fn kube_err(action: &'static str) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Kube { action, source }
}

/// A write's answer as far as the operator reads it: the new resourceVersion.
#[derive(serde::Deserialize)]
struct Written {
    metadata: WrittenMeta,
}

#[derive(serde::Deserialize)]
struct WrittenMeta {
    #[serde(rename = "resourceVersion")]
    resource_version: Option<String>,
}

/// Sends a write built for `api`'s URL and decodes only the new resourceVersion
/// from the answer. Decoding whole objects (managedFields included) for every
/// write was the operator's largest CPU cost in a rotation storm (callgrind,
/// BENCHMARKS.md); a Secret's answer would also carry the token value.
async fn write_light<K>(
    api: &Api<K>,
    build: impl FnOnce(
        kube::core::Request,
    ) -> Result<axum::http::Request<Vec<u8>>, kube::core::request::Error>,
) -> kube::Result<Option<String>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    let request =
        build(kube::core::Request::new(api.resource_url())).map_err(kube::Error::BuildRequest)?;
    let written: Written = api.clone().into_client().request(request).await?;
    Ok(written.metadata.resource_version)
}

/// Whether `store` has listed (false: its writer is gone). `Store::wait_until_ready`
/// wakes only the task that polled it last (kube-runtime keeps one waker), so
/// with several waiters, say this readiness watch and a reconcile, one could
/// sleep forever: the replica then never reported ready (the leader-election
/// test's rare failure). Every waiter here looks again every 100 ms.
pub(crate) async fn store_ready<K>(store: &reflector::Store<K>) -> bool
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        if let Ok(ready) = tokio::time::timeout(STORE_RECHECK, store.wait_until_ready()).await {
            return ready.is_ok();
        }
    }
}

/// Drops from a cached ApiToken what neither reconciler reads; every token
/// is cached, so this is memory per token.
fn slim_token(t: &mut ApiToken) {
    // Labels and creation time are not read (nor field managers, which `Lean`
    // never decodes); display name, description and tags (up to 1 KiB and
    // 64 entries) are for people and clients only.
    t.labels_mut().clear();
    t.metadata.creation_timestamp = None;
    t.spec.display_name = None;
    t.spec.description = None;
    t.spec.tags.clear();
    // Only our own annotations are read (`apikeys.dev/rotate`); kubectl's
    // last-applied-configuration alone can be as big as the token.
    t.annotations_mut()
        .retain(|k, _| k.starts_with(crate::api::GROUP_PREFIX));
    // Decoded lists grow to four entries; a token has two or three conditions.
    if let Some(status) = t.status.as_mut() {
        status.conditions.shrink_to_fit();
    }
}

/// Token events the shared ApiToken watch holds for a controller that has not
/// taken them yet; when full, the watch waits.
const TOKEN_EVENT_BUFFER: usize = 1024;

/// The same for ApiKey events.
const KEY_EVENT_BUFFER: usize = 256;

/// How often `store_ready` looks again.
const STORE_RECHECK: Duration = Duration::from_millis(100);

/// Bound on `Context::superseded` (entries of deleted tokens are not removed one by one).
const SUPERSEDED_LIMIT: usize = 100_000;
/// How soon a reconcile skipped as `behind_own_write` looks again if no watch event comes first.
const BEHIND_RECHECK: Duration = Duration::from_secs(2);

/// Shared state of both reconcilers.
pub struct Context {
    pub client: Client,
    pub config: Config,
    pub clock: Arc<dyn Clock>,
    pub recorder: Recorder,
    pub handles: Arc<Handles>,
    tokens: Store<ApiToken>,
    keys: Store<ApiKey>,
    secrets: Store<HashedSecret>,
    failures: Mutex<HashMap<String, u32>>,
    /// When each key was last looked at, and its unwritten token counts.
    key_throttle: Mutex<key::KeyThrottle>,
    /// Per ApiToken, the resourceVersions our own writes replaced since the
    /// cache last caught up (see `behind_own_write`).
    superseded: Mutex<HashMap<String, Vec<String>>>,
    /// ApiKeys stored in a form the types cannot read (see `crate::lean`):
    /// gone from the key store, but not deleted, so their tokens wait
    /// rather than lose their values as a missing key's would.
    unreadable_keys: Arc<Undecodables<ApiKey>>,
}

impl Context {
    /// Whether the key is stored but cannot be read.
    fn key_unreadable(&self, key: &ObjectRef<ApiKey>) -> bool {
        self.unreadable_keys.contains(key)
    }

    fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Requeue after a failure: 1 s doubling per consecutive failure of the
    /// object, at most 5 minutes, with ±10 % jitter so retries do not align.
    /// A write conflict (409: someone else changed the object since our
    /// cache saw it) starts at 100 ms: the watch event that resolves it is
    /// usually already on its way.
    fn backoff(&self, object: String, error: &Error) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(object).or_insert(0);
        *n = n.saturating_add(1);
        let first = if error.kind() == "conflict" {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(1)
        };
        let base = (first * (1u32 << (*n - 1).min(12))).min(Duration::from_secs(300));
        jitter(base, 0.1)
    }

    fn key_throttle(&self) -> std::sync::MutexGuard<'_, key::KeyThrottle> {
        self.key_throttle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that our write replaced version `rv` of `object`.
    fn replaced(&self, object: &str, rv: Option<String>) {
        let Some(rv) = rv else { return };
        let mut superseded = self.superseded.lock().unwrap_or_else(|e| e.into_inner());
        if superseded.len() > SUPERSEDED_LIMIT {
            superseded.clear(); // deleted objects' entries; at worst one 409 each
        }
        let list = superseded.entry(object.to_owned()).or_default();
        list.push(rv);
        if list.len() > 8 {
            list.remove(0);
        }
    }

    /// Whether the cached `object` at `rv` is a version our own write already
    /// replaced: the reconcile runs before the watch delivered our write (woken
    /// by e.g. the Secret event), and acting on it would redo work or meet a
    /// certain 409. The watch event of our write wakes the object again. Any
    /// other version means the cache caught up, and the record is dropped.
    fn behind_own_write(&self, object: &str, rv: Option<&str>) -> bool {
        let mut superseded = self.superseded.lock().unwrap_or_else(|e| e.into_inner());
        let behind = rv.is_some_and(|rv| {
            superseded
                .get(object)
                .is_some_and(|list| list.iter().any(|r| r == rv))
        });
        if !behind {
            superseded.remove(object);
            if superseded.is_empty() {
                // A burst grew the table to one entry per token; give it back.
                superseded.shrink_to_fit();
            }
        }
        behind
    }

    fn succeeded(&self, object: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(object);
    }

    /// Turns "due at" into a requeue, capped by the resync period.
    fn requeue_at(&self, due: Option<jiff::Timestamp>) -> Action {
        let resync = jitter(self.config.resync, 0.1);
        let wait = match due {
            Some(due) => {
                let until = due.duration_since(self.clock.now());
                // Round up so the next reconcile is never early.
                let until =
                    Duration::try_from(until).unwrap_or_default() + Duration::from_millis(5);
                until.min(resync)
            }
            None => resync,
        };
        Action::requeue(wait)
    }
}

fn jitter(base: Duration, fraction: f64) -> Duration {
    let f = rand::rng().random_range((1.0 - fraction)..=(1.0 + fraction));
    base.mul_f64(f)
}

/// The error policy of both controllers: count the error by bounded kind,
/// log it and retry with the object's backoff.
fn retry_after_error<K: Resource>(
    kind: &'static str,
    obj: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.handles.stats.errors.fetch_add(1, Ordering::Relaxed);
    ctx.handles.metrics.errored(kind, error.kind());
    let object = object_key(obj.as_ref());
    let wait = ctx.backoff(object.clone(), error);
    warn!(kind, object = %object, error_kind = error.kind(), error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

fn object_key<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}

/// Runs both controllers until `shutdown` completes.
pub async fn run(
    client: Client,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    run_with(
        client,
        config,
        Arc::new(SystemClock),
        Arc::default(),
        shutdown,
    )
    .await
}

/// The objects of kind `K` in `namespace`, or in all namespaces.
pub(crate) fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Reason of the Warning Event about an object the controller cannot decode.
pub const UNDECODABLE: &str = "Undecodable";

/// The objects of `kind` its watch cannot decode, counted in the metrics;
/// a Warning Event is published about each as it is seen (in the background;
/// best effort): `kubectl describe` then says why the object is ignored,
/// where its status may still say Ready.
fn undecodables<K>(
    recorder: &Recorder,
    handles: &Handles,
    kind: &'static str,
) -> Arc<Undecodables<K>>
where
    K: Resource<DynamicType = ()>,
{
    let recorder = recorder.clone();
    let report = move |stub: &K, why: &str| {
        // An Event's note holds at most 1 KiB.
        let mut cut = why.len().min(600);
        while !why.is_char_boundary(cut) {
            cut -= 1;
        }
        let why = &why[..cut];
        let event = kube::runtime::events::Event {
            type_: kube::runtime::events::EventType::Warning,
            reason: UNDECODABLE.to_owned(),
            note: Some(format!(
                "The operator cannot read this object ({why}). It is treated as deleted, \
                 and its values are rejected, until the field is corrected \
                 (kubectl edit; add --subresource=status for a status field)."
            )),
            action: "Decode".to_owned(),
            secondary: None,
        };
        let reference = stub.object_ref(&());
        let recorder = recorder.clone();
        tokio::spawn(async move {
            if let Err(err) = recorder.publish(&event, &reference).await {
                warn!(error = %err, "could not publish the Undecodable event");
            }
        });
    };
    Arc::new(Undecodables::new(report, handles.metrics.undecodable(kind)))
}

/// Runs both controllers with an injected clock and handles (tests, metrics).
pub async fn run_with(
    client: Client,
    config: Config,
    clock: Arc<dyn Clock>,
    handles: Arc<Handles>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let namespace = config.namespace.as_deref();
    let tokens_api: Api<Lean<ApiToken>> = scoped(&client, namespace);
    let keys_api: Api<Lean<ApiKey>> = scoped(&client, namespace);
    let secrets_api: Api<HashedSecret> = scoped(&client, namespace);
    let sa_api: Api<ServiceAccount> = scoped(&client, namespace);
    let selected = || match &config.selector {
        Some(selector) => WatchConfig::default().labels(selector),
        None => WatchConfig::default(),
    };

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: config.reporter.clone(),
            instance: None,
        },
    );

    // Managed Secrets only, and only the hash of their values kept in memory.
    let (secrets, secret_writer) = reflector::store();
    let secret_stream = watcher::watcher(
        secrets_api,
        WatchConfig::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")),
    )
    .default_backoff()
    .modify(|secret: &mut HashedSecret| {
        // The reconciler reads only the controller ownerReference and the
        // value hashes; the rest of a cached Secret is memory.
        secret.labels_mut().clear();
        secret.annotations_mut().clear();
        secret.metadata.creation_timestamp = None;
    })
    .reflect(secret_writer)
    .touched_objects();

    // One ApiToken watch feeds both controllers: the token controller through
    // a subscription to the shared store (it reads the store fed by the stream
    // that triggers it, so a reconcile never sees an object older than the
    // event that woke it), the key controller through the events themselves,
    // deletions included, which the subscription does not pass on. A second
    // watch decoded every token event twice and kept a second copy of each.
    let (tokens, token_writer) = reflector::store_shared(TOKEN_EVENT_BUFFER);
    let token_subscription = token_writer
        .subscribe()
        .expect("a store made by store_shared can be subscribed to");
    let unreadable_tokens = undecodables(&recorder, &handles, crate::metrics::API_TOKEN);
    let token_events =
        crate::lean::watcher_tracking(tokens_api, selected(), unreadable_tokens.clone())
            .default_backoff()
            .modify(slim_token)
            .reflect_shared(token_writer)
            .inspect_ok(move |event| unreadable_tokens.settle(event))
            .touched_objects();
    let limits = kube::runtime::controller::Config::default().concurrency(config.concurrency);
    let token_controller = Controller::for_shared_stream(token_subscription, tokens.clone())
        .with_config(limits.clone());

    // One ApiKey watch, likewise: its store is read by the token reconciler,
    // its events wake a key's tokens, and its subscription triggers the key
    // controller.
    let (keys, key_writer) = reflector::store_shared(KEY_EVENT_BUFFER);
    let key_subscription = key_writer
        .subscribe()
        .expect("a store made by store_shared can be subscribed to");
    let keys_for_tokens = keys.clone();
    let keys_for_sa = keys.clone();
    let unreadable_keys = undecodables(&recorder, &handles, crate::metrics::API_KEY);
    let key_stream = crate::lean::watcher_tracking(keys_api, selected(), unreadable_keys.clone())
        .default_backoff()
        .reflect_shared(key_writer)
        .inspect_ok({
            let unreadable_keys = unreadable_keys.clone();
            move |event| unreadable_keys.settle(event)
        })
        .touched_objects();

    // No debounce: it keeps postponing a key while its tokens change, and a
    // busy key would never adopt new tokens. Requests for a key that arrive
    // during its reconcile are coalesced into one follow-up run anyway.
    let key_controller =
        Controller::for_shared_stream(key_subscription, keys.clone()).with_config(limits);

    handles.synced.store(false, Ordering::SeqCst);
    let caches_synced = tokio::spawn({
        let stores = (tokens.clone(), keys.clone(), secrets.clone());
        let handles = handles.clone();
        async move {
            let (tokens, keys, secrets) = stores;
            let (a, b, c) = futures::join!(
                store_ready(&tokens),
                store_ready(&keys),
                store_ready(&secrets)
            );
            if a && b && c {
                handles.synced.store(true, Ordering::SeqCst);
                info!("controller caches synced");
            }
        }
    });

    let ctx = Arc::new(Context {
        client,
        config: config.clone(),
        clock,
        recorder,
        handles: handles.clone(),
        tokens: tokens.clone(),
        keys,
        secrets,
        failures: Mutex::default(),
        key_throttle: Mutex::default(),
        superseded: Mutex::default(),
        unreadable_keys: unreadable_keys.clone(),
    });

    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));

    let tokens_for_keys = tokens.clone();
    // The last fingerprint per key: a key's status is rewritten as its token
    // counts change, which must not wake (and re-read) all of its tokens.
    // A deleted key is gone from the store by the time its event arrives here.
    let key_seen: Mutex<HashMap<ObjectRef<ApiKey>, u64>> = Mutex::default();
    let token_run = token_controller
        .owns_stream(secret_stream)
        .watches_stream(key_stream, move |key: ApiKey| {
            let key_ref = ObjectRef::from_obj(&key);
            let changed = {
                let mut seen = key_seen.lock().unwrap_or_else(|e| e.into_inner());
                if keys_for_tokens.get(&key_ref).is_some() {
                    let fingerprint = token::key_fingerprint(&key);
                    seen.insert(key_ref, fingerprint) != Some(fingerprint)
                } else {
                    seen.remove(&key_ref);
                    true
                }
            };
            if !changed {
                return Vec::new();
            }
            // Filtered by reference inside the store, not over a clone of it.
            let ns = key.metadata.namespace.as_deref();
            let name = key.name_any();
            tokens_for_keys
                .state_filter(|t| {
                    t.metadata.namespace.as_deref() == ns && t.spec.api_key_ref.name == name
                })
                .iter()
                .map(|t| ObjectRef::from_obj(&**t))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown.clone())
        // Boxed: the runtime moves a spawned future by value, and a
        // reconcile's state machine is kilobytes.
        .run(
            |t, c| Box::pin(token::reconcile(t, c)),
            |t, e, c| retry_after_error(crate::metrics::API_TOKEN, t, e, c),
            ctx.clone(),
        )
        .for_each(|result| async move {
            if let Err(err) = result {
                log_controller_error("ApiToken", &err);
            }
        });

    let key_run = key_controller
        .watches_stream(token_events, |token: ApiToken| {
            let ns = token.namespace()?;
            // Empty for the stand-in of a token that cannot be decoded.
            let key = Some(&token.spec.api_key_ref.name).filter(|k| !k.is_empty())?;
            Some(ObjectRef::new(key).within(&ns))
        })
        .watches(sa_api, WatchConfig::default(), move |sa: ServiceAccount| {
            let ns = sa.metadata.namespace.as_deref();
            let name = sa.name_any();
            keys_for_sa
                .state_filter(|k| {
                    k.metadata.namespace.as_deref() == ns
                        && k.spec.owner.kind == crate::api::OwnerKind::ServiceAccount
                        && k.spec.owner.name == name
                })
                .iter()
                .map(|k| ObjectRef::from_obj(&**k))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(
            |k, c| Box::pin(key::reconcile(k, c)),
            |k, e, c| retry_after_error(crate::metrics::API_KEY, k, e, c),
            ctx,
        )
        .for_each(|result| async move {
            if let Err(err) = result {
                log_controller_error("ApiKey", &err);
            }
        });

    info!("controllers started");
    futures::join!(token_run, key_run);
    caches_synced.abort();
    handles.synced.store(false, Ordering::SeqCst);
    info!("controllers stopped");
}

fn log_controller_error<E: std::fmt::Display>(controller: &'static str, err: &E) {
    // Reconcile errors are logged by the error policies; these are queue/watch errors.
    // Named by controller, not kind: the ApiKey controller also carries the
    // shared ApiToken watch, so a failed ApiToken watch is reported by it.
    warn!(controller, error = %err, "controller error");
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::{reflector, watcher};

    use super::store_ready;

    /// Two tasks wait for one store; both must see it become ready. With
    /// `Store::wait_until_ready` alone the first waiter is never woken.
    #[tokio::test]
    async fn every_waiter_sees_the_store_become_ready() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store_ready(&store).await })
            })
            .collect();
        // Let both tasks poll (and register their wakers) before the list ends.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        for waiter in waiters {
            let ready = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
                .await
                .expect("a waiter was never woken")
                .expect("waiter task");
            assert!(ready);
        }
    }
}

#[cfg(test)]
mod slim_tests {
    use serde_json::json;

    use super::slim_token;
    use crate::api::ApiToken;

    #[test]
    fn a_cached_token_keeps_what_the_reconcilers_read() {
        let mut token: ApiToken = serde_json::from_value(json!({
            "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken",
            "metadata": {
                "name": "t", "namespace": "ns", "uid": "u", "resourceVersion": "9",
                "generation": 2, "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"team": "a"},
                "annotations": {"apikeys.dev/rotate": "r1", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "ownerReferences": [{"apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiKey",
                    "name": "k", "uid": "uk", "controller": true}]
            },
            "spec": {
                "apiKeyRef": {"name": "k"}, "displayName": "CI", "description": "for CI",
                "tags": {"env": "prod"}, "disabled": true,
                "expiration": {"lifetime": "30d"}, "rotation": {"every": "7d"},
                "secret": {"name": "s", "key": "k"}
            },
            "status": {"tokenId": "id", "conditions": [
                {"type": "Ready", "status": "True", "reason": "Issued", "message": "m",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ]}
        }))
        .expect("decodes");
        let before = token.clone();
        slim_token(&mut token);

        let mut expected = before;
        expected.metadata.labels = Some(Default::default());
        expected.metadata.creation_timestamp = None;
        expected
            .metadata
            .annotations
            .as_mut()
            .expect("annotations")
            .remove("kubectl.kubernetes.io/last-applied-configuration");
        expected.spec.display_name = None;
        expected.spec.description = None;
        expected.spec.tags.clear();
        assert_eq!(token, expected);
        assert_eq!(
            token.status.as_ref().map(|s| s.conditions.capacity()),
            Some(1),
            "conditions shrunk to their length"
        );
    }

    /// The cache holds each token in an `Arc`, which jemalloc rounds up to a
    /// size class; 1 KiB is the one it fits. A new inline field that pushes
    /// it into the next class (1,280 bytes) costs 256 bytes per cached token:
    /// box the field instead (as `spec.secret` is).
    #[test]
    fn a_cached_token_fits_the_1_kib_allocation_class() {
        let arc = 2 * size_of::<usize>() + size_of::<ApiToken>();
        assert!(arc <= 1024, "an Arc<ApiToken> takes {arc} bytes");
    }
}
