//! The admin server's registry, put together from the top: each component
//! owns its metrics and this module registers them, so the arrows run from
//! here to `controller` and `verifier`, never back. Served on the admin
//! port's /metrics together with the verifier's (`apikey_verifier_*`, see
//! docs/verifier.md).
//!
//! The controller counts into `controller::ControllerMetrics` (kept in
//! `controller::Handles`); the expiry gauge is read at scrape time from the
//! verifier's index, so deleted tokens leave no stale series. Labels are
//! bounded: kinds, results and reasons are `&'static str`; only the expiry
//! gauge names objects, one series per token, as cert-manager's
//! certificate expiration metric does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::controller::Handles;
use crate::verifier::watch::SharedIndex;

/// The admin server's registry: operator metrics, the expiry gauge and the
/// leader/sync state.
#[derive(Debug)]
pub struct OperatorMetrics {
    registry: Registry,
}

/// What the admin /metrics reads at scrape time.
#[derive(Clone, Debug)]
pub struct Sources {
    pub controller: Arc<Handles>,
    /// The verifier's index (token expiry).
    pub index: SharedIndex,
    /// Whether this replica is the leader (always true without leader election).
    pub leading: Arc<AtomicBool>,
}

impl OperatorMetrics {
    pub fn new(sources: Sources) -> OperatorMetrics {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ExpiryCollector {
            index: sources.index.clone(),
        }));
        let operator = registry.sub_registry_with_prefix("apikey_operator");
        sources.controller.metrics.register(operator);
        operator.register_collector(Box::new(StateCollector {
            controller: sources.controller,
            leading: sources.leading,
        }));
        OperatorMetrics { registry }
    }

    /// The text exposition without the closing `# EOF`, so that the
    /// verifier's exposition can follow it in the same response.
    pub fn render_open(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        out
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    namespace: String,
    name: String,
}

#[derive(Debug)]
struct ExpiryCollector {
    index: SharedIndex,
}

impl Collector for ExpiryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let expirations = match self.index.read() {
            Ok(index) => index.expirations(),
            Err(poisoned) => poisoned.into_inner().expirations(),
        };
        let gauge = ConstGauge::new(0.0f64);
        let mut family = encoder.encode_descriptor(
            "apikey_token_expiration_timestamp_seconds",
            "When the current value of an ApiToken expires, or its last value expired (Unix seconds); absent for tokens that never expire, are disabled or blocked",
            None,
            gauge.metric_type(),
        )?;
        for (namespace, name, expires_at) in expirations {
            let labels = TokenLabels {
                namespace: namespace.to_string(),
                name,
            };
            let seconds = expires_at.as_millisecond() as f64 / 1000.0;
            ConstGauge::new(seconds).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct StateCollector {
    controller: Arc<Handles>,
    leading: Arc<AtomicBool>,
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let leader = ConstGauge::new(i64::from(self.leading.load(Ordering::Relaxed)));
        leader.encode(encoder.encode_descriptor(
            "leader",
            "1 while this replica holds the leader Lease and reconciles",
            None,
            leader.metric_type(),
        )?)?;
        let synced = ConstGauge::new(i64::from(self.controller.synced.load(Ordering::Relaxed)));
        synced.encode(encoder.encode_descriptor(
            "caches_synced",
            "1 once the controller's watches completed their first list",
            None,
            synced.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::{API_KEY, API_TOKEN};

    /// Every metric the chart's alert rules and dashboard query is one the
    /// admin port's /metrics serves (a renamed metric would leave an alert
    /// that can never fire).
    #[test]
    fn the_charts_alerts_and_dashboard_query_served_metrics() {
        // A family is served once it has a series.
        let controller = Arc::new(Handles::default());
        controller.metrics.reconciled(API_TOKEN, true);
        controller.metrics.errored(API_TOKEN, "api");
        controller.metrics.issued("Issue");
        controller.metrics.undecodable(API_KEY);
        let sources = Sources {
            controller,
            index: SharedIndex::default(),
            leading: Arc::default(),
        };
        let mut served = OperatorMetrics::new(sources).render_open();
        served.push_str(&crate::verifier::metrics::Metrics::new().render());
        // Family name → type.
        let families: std::collections::BTreeMap<&str, &str> = served
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE ")?.split_once(' '))
            .collect();
        let name = regex::Regex::new(r"\bapikey_[a-z0-9_]+").expect("regex");
        let files = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/apikey-operator/files");
        let mut queried = 0;
        for file in ["alerts.yaml", "grafana-dashboard.json"] {
            let text = std::fs::read_to_string(format!("{files}/{file}")).expect("chart file");
            for metric in name.find_iter(&text).map(|m| m.as_str()) {
                // Alert names and label values are not metrics.
                let prefixes = ["apikey_operator_", "apikey_verifier_", "apikey_token_"];
                if !prefixes.iter().any(|prefix| metric.starts_with(prefix)) {
                    continue;
                }
                // The sample names each type exposes.
                let (family, types) = [
                    ("_total", &["counter"][..]),
                    ("_bucket", &["histogram"][..]),
                    ("_sum", &["histogram", "summary"][..]),
                    ("_count", &["histogram", "summary"][..]),
                ]
                .iter()
                .find_map(|(suffix, types)| Some((metric.strip_suffix(suffix)?, *types)))
                .unwrap_or((metric, &["gauge", "unknown"][..]));
                let served_as = families.get(family).copied();
                assert!(
                    served_as.is_some_and(|t| types.contains(&t)),
                    "{file} queries {metric}, which /metrics does not serve (as a {types:?}); \
                     served: {families:?}"
                );
                queried += 1;
            }
        }
        assert!(
            queried >= 5,
            "only {queried} metrics found in the chart's files"
        );
    }
}
