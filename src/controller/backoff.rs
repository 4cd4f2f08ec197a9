//! What happens after a failed reconcile: the object's requeue grows
//! exponentially with its consecutive failures, and a success forgets them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;

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
