//! Leader election on a coordination.k8s.io/v1 Lease, so that several
//! replicas can run: only the leader reconciles, every replica serves the
//! verifier. The same protocol as client-go's leader election:
//!
//! - the leader renews the Lease every `retry_period`; when it could not
//!   renew for `renew_deadline` it stops reconciling (before its claim of
//!   `lease_duration` runs out, so two leaders never overlap);
//! - the others try every `retry_period` and take the Lease over once its
//!   record has not changed for `lease_duration` as measured by their own
//!   clock (no trust in other machines' clocks), or at once when the holder
//!   released it on shutdown;
//! - every write is an update with the read resourceVersion, so of two
//!   contenders exactly one wins.
//!
//! [`is_expired`] is the pure decision; [`run_elected`] the loop around it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

/// Default `--lease-duration`.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// Default `--renew-deadline`.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// Default `--retry-period`.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// Where the Lease is and how long claims last.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease (the operator's own namespace in a cluster).
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity in `spec.holderIdentity` (the pod name in a cluster).
    pub identity: String,
    /// How long a claim lasts without renewal; the longest a takeover waits.
    pub lease_duration: Duration,
    /// The leader stops reconciling when it could not renew for this long.
    pub renew_deadline: Duration,
    /// How often the leader renews and the others try to acquire.
    pub retry_period: Duration,
}

/// Why leader election cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error(
        "leader election timings must satisfy retry period ({retry:?}) < renew deadline ({renew:?}) < lease duration ({lease:?}); adjust --retry-period, --renew-deadline or --lease-duration"
    )]
    Timings {
        lease: Duration,
        renew: Duration,
        retry: Duration,
    },
    #[error(
        "--lease-duration must be a whole number of seconds (the Lease stores seconds), got {0:?}"
    )]
    FractionalLease(Duration),
    #[error("the leader election identity is empty; pass --leader-election-identity")]
    NoIdentity,
}

impl LeaseConfig {
    pub fn validate(&self) -> Result<(), LeaderError> {
        if self.identity.is_empty() {
            return Err(LeaderError::NoIdentity);
        }
        if self.lease_duration.subsec_nanos() != 0 || self.lease_duration.is_zero() {
            return Err(LeaderError::FractionalLease(self.lease_duration));
        }
        if !(self.retry_period < self.renew_deadline && self.renew_deadline < self.lease_duration) {
            return Err(LeaderError::Timings {
                lease: self.lease_duration,
                renew: self.renew_deadline,
                retry: self.retry_period,
            });
        }
        Ok(())
    }
}

/// The default identity outside a cluster: host name and process id.
pub fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "apikey-operator".to_owned());
    format!("{host}_{}", std::process::id())
}

/// What a replica last saw of the Lease, and when (by its own clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// `(holderIdentity, renewTime, leaseTransitions)` as read.
    pub record: (Option<String>, Option<String>, Option<i32>),
    /// The holder's claimed duration.
    pub lease_duration: Duration,
    /// When this replica first saw this record.
    pub seen_at: Instant,
}

impl Observation {
    fn of(spec: &LeaseSpec, fallback: Duration, now: Instant) -> Observation {
        Observation {
            record: record_of(spec),
            lease_duration: spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs)
                .unwrap_or(fallback),
            seen_at: now,
        }
    }
}

fn record_of(spec: &LeaseSpec) -> (Option<String>, Option<String>, Option<i32>) {
    (
        spec.holder_identity.clone().filter(|h| !h.is_empty()),
        spec.renew_time.as_ref().map(|t| t.0.to_string()),
        spec.lease_transitions,
    )
}

/// Whether another replica may take the Lease over: it is released (no
/// holder), or its record has not changed for the holder's lease duration
/// since this replica saw it change.
pub fn is_expired(observed: &Observation, now: Instant) -> bool {
    observed.record.0.is_none() || now.duration_since(observed.seen_at) >= observed.lease_duration
}

/// Runs `lead` whenever this replica holds the Lease, until `shutdown`.
///
/// `lead` gets a future that completes when leadership is lost (or on
/// shutdown) and must stop its work then; it is called again after a later
/// re-election. `leading` mirrors the state for `/metrics` and `/readyz`.
/// On shutdown a held Lease is released so that another replica takes over
/// at once.
pub async fn run_elected<F, Fut>(
    client: Client,
    cfg: LeaseConfig,
    leading: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    mut lead: F,
) where
    F: FnMut(futures::future::Shared<futures::future::BoxFuture<'static, ()>>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut elector = Elector {
        api: Api::namespaced(client, &cfg.namespace),
        cfg,
        observed: None,
    };
    let shutdown = shutdown.boxed().shared();
    info!(lease = %elector.lease_ref(), identity = %elector.cfg.identity, "waiting to become the leader");
    loop {
        // Acquire.
        loop {
            match elector.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(err) => {
                    warn!(lease = %elector.lease_ref(), error = %err, "reading or writing the leader Lease failed")
                }
            }
            tokio::select! {
                _ = shutdown.clone() => return,
                _ = tokio::time::sleep(elector.cfg.retry_period) => {}
            }
        }
        info!(lease = %elector.lease_ref(), identity = %elector.cfg.identity, "became the leader");
        leading.store(true, Ordering::SeqCst);
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let stopped = async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        }
        .boxed()
        .shared();
        let work = lead(stopped);
        tokio::pin!(work);
        let mut last_renewed = Instant::now();
        let mut work_done = false;
        let shutting_down = loop {
            tokio::select! {
                _ = &mut work, if !work_done => {
                    // The controllers only stop when told to; if they ended on
                    // their own, lead again rather than hold the Lease idle.
                    work_done = true;
                    warn!(lease = %elector.lease_ref(), "the controllers stopped on their own; starting them again");
                    break false;
                }
                _ = shutdown.clone() => break true,
                _ = tokio::time::sleep(elector.cfg.retry_period) => {
                    match elector.try_acquire_or_renew().await {
                        Ok(true) => last_renewed = Instant::now(),
                        Ok(false) => {
                            warn!(lease = %elector.lease_ref(), "another replica holds the Lease; stepping down");
                            break false;
                        }
                        Err(err) => {
                            warn!(lease = %elector.lease_ref(), error = %err, "renewing the leader Lease failed");
                            if last_renewed.elapsed() >= elector.cfg.renew_deadline {
                                warn!(lease = %elector.lease_ref(), deadline = ?elector.cfg.renew_deadline, "could not renew within the deadline; stepping down");
                                break false;
                            }
                        }
                    }
                }
            }
        };
        let _ = stop_tx.send(true);
        if !work_done {
            work.await;
        }
        leading.store(false, Ordering::SeqCst);
        if shutting_down {
            elector.release().await;
            return;
        }
        info!(lease = %elector.lease_ref(), "stopped leading; waiting to be elected again");
    }
}

struct Elector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    observed: Option<Observation>,
}

impl Elector {
    fn lease_ref(&self) -> String {
        format!("{}/{}", self.cfg.namespace, self.cfg.name)
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.cfg.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// One round: `Ok(true)` when this replica holds the Lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = Instant::now();
        let wall = MicroTime(jiff::Timestamp::now());
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    namespace: Some(self.cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.cfg.identity.clone()),
                    lease_duration_seconds: Some(self.lease_seconds()),
                    acquire_time: Some(wall.clone()),
                    renew_time: Some(wall),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(&created, now);
                    Ok(true)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(err) => Err(err),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let mine = holder == Some(self.cfg.identity.as_str());
        if !mine {
            let changed = self
                .observed
                .as_ref()
                .is_none_or(|o| o.record != record_of(&spec));
            if changed {
                self.observed = Some(Observation::of(&spec, self.cfg.lease_duration, now));
            }
            let expired = self.observed.as_ref().is_some_and(|o| is_expired(o, now));
            if !expired {
                return Ok(false);
            }
        }
        let mut new_spec = LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(self.lease_seconds()),
            renew_time: Some(wall.clone()),
            ..spec.clone()
        };
        if !mine {
            new_spec.acquire_time = Some(wall);
            new_spec.lease_transitions =
                Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        lease.spec = Some(new_spec);
        // The read resourceVersion stays in metadata: a concurrent writer makes this a 409.
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.observe(&written, now);
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(err) => Err(err),
        }
    }

    fn observe(&mut self, lease: &Lease, now: Instant) {
        let spec = lease.spec.clone().unwrap_or_default();
        self.observed = Some(Observation::of(&spec, self.cfg.lease_duration, now));
    }

    /// Gives the Lease up (no holder, 1 s duration) so that a waiting replica
    /// acquires it on its next try instead of after the lease duration.
    async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.cfg.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = %self.lease_ref(), "released the leader Lease"),
            Err(err) => {
                warn!(lease = %self.lease_ref(), error = %err, "could not release the leader Lease; another replica takes over when it expires")
            }
        }
    }
}

/// Parses `--lease-duration` style values: `500ms`, or a duration such as `15s`, `1m`.
pub fn parse_period(s: &str) -> Result<Duration, String> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| format!("{s:?} is not a duration; use e.g. 500ms, 2s, 15s, 1m"));
    }
    let d = crate::duration::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration ({e}); use e.g. 500ms, 2s, 15s, 1m"))?;
    Duration::try_from(d).map_err(|_| format!("{s:?} must not be negative"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(lease: u64, renew: u64, retry: u64) -> LeaseConfig {
        LeaseConfig {
            namespace: "ops".into(),
            name: "leader".into(),
            identity: "a".into(),
            lease_duration: Duration::from_millis(lease),
            renew_deadline: Duration::from_millis(renew),
            retry_period: Duration::from_millis(retry),
        }
    }

    #[test]
    fn timings_must_be_ordered() {
        assert!(cfg(15_000, 10_000, 2_000).validate().is_ok());
        assert!(matches!(
            cfg(15_000, 15_000, 2_000).validate(),
            Err(LeaderError::Timings { .. })
        ));
        assert!(matches!(
            cfg(15_000, 10_000, 10_000).validate(),
            Err(LeaderError::Timings { .. })
        ));
        assert!(matches!(
            cfg(1_500, 1_000, 200).validate(),
            Err(LeaderError::FractionalLease(_))
        ));
        let mut anonymous = cfg(15_000, 10_000, 2_000);
        anonymous.identity.clear();
        assert!(matches!(anonymous.validate(), Err(LeaderError::NoIdentity)));
    }

    fn observed(holder: Option<&str>, seen_at: Instant) -> Observation {
        Observation {
            record: (holder.map(str::to_owned), Some("t".into()), Some(0)),
            lease_duration: Duration::from_secs(15),
            seen_at,
        }
    }

    #[test]
    fn a_held_lease_expires_a_lease_duration_after_its_record_last_changed() {
        let t0 = Instant::now();
        let held = observed(Some("b"), t0);
        assert!(!is_expired(&held, t0));
        assert!(!is_expired(&held, t0 + Duration::from_millis(14_999)));
        assert!(is_expired(&held, t0 + Duration::from_secs(15)));
    }

    #[test]
    fn a_released_lease_can_be_taken_at_once() {
        let t0 = Instant::now();
        assert!(is_expired(&observed(None, t0), t0));
    }

    #[test]
    fn periods_parse_with_milliseconds() {
        assert_eq!(parse_period("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_period("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_period("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_period("soon").is_err());
    }
}
