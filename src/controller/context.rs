//! What both reconcilers share: the configuration of a controller instance,
//! the handles tests and the admin server reach, the reconcilers'
//! [`Context`] (API client, caches, clock, per-object bookkeeping), and
//! [`store_ready`], how they wait for a cache's first list.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource};

use super::MANAGED_BY;
use super::backoff::{Backoff, jitter};
use super::faults::Faults;
use super::hashed_secret::HashedSecret;
use super::key_throttle::KeyThrottle;
use super::metrics::ControllerMetrics;
use crate::api::{ApiKey, ApiToken};
use crate::clock::Clock;
use crate::lean::Undecodables;

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
    /// The shortest `rotation.every` accepted: a token asking for less gets
    /// Ready=False, reason InvalidSpec (`--min-rotation-period`).
    pub min_rotation: jiff::SignedDuration,
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
            min_rotation: crate::schedule::MIN_ROTATION_PERIOD,
        }
    }
}

/// What tests and the metrics endpoint can reach inside a running controller.
#[derive(Debug, Default)]
pub struct Handles {
    pub faults: Faults,
    /// Prometheus counters (served on the admin port's /metrics).
    pub metrics: ControllerMetrics,
    /// True once every watch completed its first list (`/readyz`); false
    /// again when the controllers stop.
    pub synced: AtomicBool,
}

/// How often `store_ready` looks again.
const STORE_RECHECK: Duration = Duration::from_millis(100);

/// Bound on `Context::superseded` (entries of deleted tokens are not removed one by one).
const SUPERSEDED_LIMIT: usize = 100_000;
/// How soon a reconcile skipped as `behind_own_write` looks again if no watch event comes first.
pub(super) const BEHIND_RECHECK: Duration = Duration::from_secs(2);

/// Shared state of both reconcilers.
pub struct Context {
    pub client: Client,
    pub config: Config,
    pub clock: Arc<dyn Clock>,
    pub recorder: Recorder,
    pub handles: Arc<Handles>,
    pub(super) tokens: Store<ApiToken>,
    pub(super) keys: Store<ApiKey>,
    pub(super) secrets: Store<HashedSecret>,
    pub(super) backoff: Backoff,
    /// When each key was last looked at, and its unwritten token counts.
    pub(super) key_throttle: Mutex<KeyThrottle>,
    /// Per ApiToken, the resourceVersions our own writes replaced since the
    /// cache last caught up (see `behind_own_write`).
    pub(super) superseded: Mutex<HashMap<String, Vec<String>>>,
    /// ApiKeys stored in a form the types cannot read (see `crate::lean`):
    /// gone from the key store, but not deleted, so their tokens wait
    /// rather than lose their values as a missing key's would.
    pub(super) unreadable_keys: Arc<Undecodables<ApiKey>>,
}

impl Context {
    /// Whether the key is stored but cannot be read.
    pub(super) fn key_unreadable(&self, key: &ObjectRef<ApiKey>) -> bool {
        self.unreadable_keys.contains(key)
    }

    pub(super) fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    pub(super) fn key_throttle(&self) -> MutexGuard<'_, KeyThrottle> {
        self.key_throttle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that our write replaced version `rv` of `object`.
    pub(super) fn replaced(&self, object: &str, rv: Option<String>) {
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
    pub(super) fn behind_own_write(&self, object: &str, rv: Option<&str>) -> bool {
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

    /// Turns "due at" into a requeue, capped by the resync period.
    pub(super) fn requeue_at(&self, due: Option<jiff::Timestamp>) -> Action {
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

/// `namespace/name` of an object: its name in logs and per-object tables.
pub(super) fn object_key<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}

/// Whether `store` has listed (false: its writer is gone). `Store::wait_until_ready`
/// wakes only the task that polled it last (kube-runtime keeps one waker), so
/// with several waiters, say this readiness watch and a reconcile, one could
/// sleep forever: the replica then never reported ready (the leader-election
/// test's rare failure). Every waiter here looks again every 100 ms.
pub(super) async fn store_ready<K>(store: &Store<K>) -> bool
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
