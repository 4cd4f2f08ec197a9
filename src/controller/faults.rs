//! Injected crashes: points where tests make a reconcile stop, as the death
//! of the process there would, to check that the next reconcile finishes or
//! redoes the two-phase issue.

use std::sync::atomic::{AtomicU32, Ordering};

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

    /// `Err(point)` when a fault armed at `point` fires (the reconcile's
    /// `?` turns it into `Error::InjectedFault`).
    pub(crate) fn fire(&self, point: FaultPoint) -> Result<(), FaultPoint> {
        let counter = self.counter(point);
        match counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) {
            Ok(_) => Err(point),
            Err(_) => Ok(()),
        }
    }
}
