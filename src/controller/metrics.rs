//! What the reconcilers count, owned by the controller: `crate::metrics`
//! registers it on the admin port's /metrics under `apikey_operator_`.
//! Labels are bounded: kinds, results and reasons are `&'static str`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// `kind` label of ApiToken reconciles.
pub const API_TOKEN: &str = "ApiToken";
/// `kind` label of ApiKey reconciles.
pub const API_KEY: &str = "ApiKey";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    kind: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: &'static str,
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// What the reconcilers count.
#[derive(Clone, Debug, Default)]
pub struct ControllerMetrics {
    reconciles: Family<ReconcileLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    issued: Family<ReasonLabels, Counter>,
    undecodable: Family<KindLabels, Gauge>,
    owner_refused: Family<ReasonLabels, Counter>,
}

fn result_label(ok: bool) -> &'static str {
    if ok { "success" } else { "error" }
}

impl ControllerMetrics {
    /// One finished reconcile of `kind` (`ApiToken`, `ApiKey`).
    pub fn reconciled(&self, kind: &'static str, ok: bool) {
        let result = result_label(ok);
        self.reconciles
            .get_or_create(&ReconcileLabels { kind, result })
            .inc();
    }

    /// One failed reconcile; `error` is `controller::Error::kind()`.
    pub fn errored(&self, kind: &'static str, error: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels { kind, error })
            .inc();
    }

    /// One value written into a Secret; `reason` is the word recorded in
    /// `status.pending.reason` (Issue, Rotate, Renew, Request, Revoke, Reissue).
    pub fn issued(&self, reason: &'static str) {
        self.issued.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// One ApiKey newly refused its owner; `reason` is ForbiddenOwner or OwnerReplaced.
    pub fn owner_refused(&self, reason: &'static str) {
        self.owner_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// ApiKeys refused their owner so far for `reason` (tests); reading adds no series.
    pub fn owners_refused(&self, reason: &'static str) -> u64 {
        self.owner_refused
            .get(&ReasonLabels { reason })
            .map_or(0, |c| c.get())
    }

    /// The gauge of the objects of `kind` stored in a form the controller
    /// cannot decode (kept by `crate::lean::Undecodables`).
    pub fn undecodable(&self, kind: &'static str) -> Gauge {
        self.undecodable.get_or_create(&KindLabels { kind }).clone()
    }

    /// Reconciles counted so far for `kind` and result (tests).
    pub fn reconciles(&self, kind: &'static str, ok: bool) -> u64 {
        let result = result_label(ok);
        self.reconciles
            .get_or_create(&ReconcileLabels { kind, result })
            .get()
    }

    /// Reconciles of `kind` with result `ok` so far; reading adds no series.
    fn count(&self, kind: &'static str, ok: bool) -> u64 {
        let labels = ReconcileLabels {
            kind,
            result: result_label(ok),
        };
        self.reconciles.get(&labels).map_or(0, |c| c.get())
    }

    /// Finished ApiToken reconciles (tests).
    pub fn token_reconciles(&self) -> u64 {
        self.count(API_TOKEN, true) + self.count(API_TOKEN, false)
    }

    /// Finished ApiKey reconciles (tests).
    pub fn key_reconciles(&self) -> u64 {
        self.count(API_KEY, true) + self.count(API_KEY, false)
    }

    /// Failed reconciles of both kinds (tests).
    pub fn errors(&self) -> u64 {
        self.count(API_TOKEN, false) + self.count(API_KEY, false)
    }

    /// Registers the families in `registry` (the admin server's, prefixed).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "reconciles",
            "Finished reconciles by kind (ApiToken, ApiKey) and result (success, error)",
            self.reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles by kind and error kind (api, conflict, serialize, invalid_object, ...)",
            self.errors.clone(),
        );
        registry.register(
            "values_issued",
            "Token values written into Secrets by reason: Issue (first value), Rotate (scheduled), Renew (before expiry), Request (annotation or CLI), Revoke (revoke annotation or CLI), Reissue (Secret lost or altered)",
            self.issued.clone(),
        );
        registry.register(
            "owners_refused",
            "ApiKeys whose owner stopped resolving, by reason: ForbiddenOwner (a system: user, a control character or an invalid ServiceAccount name; stored before the CRD refused it, or past admission) and OwnerReplaced (the ServiceAccount was deleted and created again). The keys are kept, not Ready; their tokens authenticate no one",
            self.owner_refused.clone(),
        );
        registry.register(
            "undecodable_objects",
            "ApiTokens and ApiKeys stored in a form the operator cannot decode, by kind: each is treated as deleted until corrected, and a Warning Event Undecodable names the field",
            self.undecodable.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counts tests read add no series: a follower that never reconciled
    /// serves no `reconciles` series (tests/leader_election.rs).
    #[test]
    fn reading_the_counts_adds_no_series() {
        let metrics = ControllerMetrics::default();
        assert_eq!(
            (
                metrics.token_reconciles(),
                metrics.key_reconciles(),
                metrics.errors()
            ),
            (0, 0, 0)
        );
        for kind in [API_TOKEN, API_KEY] {
            for result in ["success", "error"] {
                let labels = ReconcileLabels { kind, result };
                assert!(metrics.reconciles.get(&labels).is_none());
            }
        }
        metrics.reconciled(API_TOKEN, true);
        metrics.reconciled(API_TOKEN, false);
        metrics.reconciled(API_KEY, false);
        assert_eq!(
            (
                metrics.token_reconciles(),
                metrics.key_reconciles(),
                metrics.errors()
            ),
            (2, 1, 2)
        );
    }
}
