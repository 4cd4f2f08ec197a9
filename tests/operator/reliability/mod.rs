//! Reliability under API trouble: an API outage, conflicting writers on an ApiToken and its
//! Secret, stored objects the types cannot decode, a key replaced while the operator is down,
//! and (`crash`) the operator process killed at random points. The controller runs in this
//! process, except in `crash`, so its request and error counters can be read; see
//! docs/reliability.md for what each test proves and the soak variants.

mod conflicts;
mod crash;
mod outage;
mod replaced_key;
mod undecodable;

use std::time::Duration;

use crate::support::*;
use apikey_operator::api::ApiToken;

/// Waits until the token is Ready with no pending value, every spec change
/// and rotate request handled, and the Secret holding the recorded value.
async fn settled(cluster: &Cluster, ns: &str, name: &str, within: Duration) -> (ApiToken, String) {
    let (tokens, secrets) = (cluster.api(ns), cluster.api(ns));
    eventually_within(&format!("{name} to settle"), within, || {
        settled_with_value(&tokens, &secrets, name)
    })
    .await
}

fn rotations(token: &ApiToken) -> i64 {
    token.status.as_ref().and_then(|s| s.rotations).unwrap_or(0)
}
