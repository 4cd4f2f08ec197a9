//! Two replicas of the operator binary with leader election, on short lease timings (3 s lease,
//! 2 s renew deadline, 250 ms retry).

mod election;
mod failover;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

/// The lease duration both tests give the replicas.
const LEASE: Duration = Duration::from_secs(3);
const LEASE_NAME: &str = "apikey-operator-leader";

/// The identity of the replica that holds the Lease, if any.
async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt(LEASE_NAME)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
}
