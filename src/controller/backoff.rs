//! What happens after a failed reconcile: the object's requeue grows
//! exponentially with its consecutive failures, and a success forgets them.
//! `retry_after_error` is the error policy both controllers run with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Resource;
use kube::runtime::controller::Action;
use rand::Rng;
use tracing::warn;

use super::context::{Context, object_key};
use super::error::Error;

/// Consecutive failures per object (`namespace/name`).
#[derive(Debug, Default)]
pub(super) struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Requeue after a failure: 1 s doubling per consecutive failure of the
    /// object, at most 5 minutes, with ±10 % jitter so retries do not align.
    /// A write conflict (409: someone else changed the object since our
    /// cache saw it) starts at 100 ms: the watch event that resolves it is
    /// usually already on its way.
    pub(super) fn failed(&self, object: String, error: &Error) -> Duration {
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

    /// The object's reconcile succeeded: its next failure starts afresh.
    pub(super) fn succeeded(&self, object: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(object);
    }
}

/// `base` scaled by a random factor within `1 ± fraction`.
pub(super) fn jitter(base: Duration, fraction: f64) -> Duration {
    let f = rand::rng().random_range((1.0 - fraction)..=(1.0 + fraction));
    base.mul_f64(f)
}

/// The error policy of both controllers: count the error by bounded kind,
/// log it and retry with the object's backoff.
pub(super) fn retry_after_error<K: Resource>(
    kind: &'static str,
    obj: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.handles.metrics.errored(kind, error.kind());
    let object = object_key(obj.as_ref());
    let wait = ctx.backoff.failed(object.clone(), error);
    warn!(kind, object = %object, error_kind = error.kind(), error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}
