//! The verifier's Prometheus metrics. Labels are bounded: endpoint and
//! result names are `&'static str` constants, never object names or tokens.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Endpoint label of TokenReview requests.
pub const TOKEN_REVIEW: &str = "tokenreview";
/// Endpoint label of forward-auth requests.
pub const FORWARD_AUTH: &str = "auth";

/// Result label of an accepted value.
pub const OK: &str = "ok";
/// Result label of a forward-auth request without a token.
pub const NO_CREDENTIALS: &str = "no_credentials";
/// Result label of a request the verifier could not read.
pub const BAD_REQUEST: &str = "bad_request";
/// Result label of a genuine token that is not valid for the audience asked for.
pub const WRONG_AUDIENCE: &str = "wrong_audience";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Counters, histograms and gauges of one verifier.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    index_tokens: Gauge,
    index_keys: Gauge,
    last_used_writes: Family<ResultLabels, Counter>,
    /// Every (endpoint, result) counter and endpoint histogram, resolved once
    /// at start (their series show from the first scrape, at 0): the request
    /// path then takes no lock and hashes no labels.
    request_series: Vec<(&'static str, &'static str, Counter)>,
    latency_series: Vec<(&'static str, Histogram)>,
}

/// Every result label a request can end with.
fn result_labels() -> impl Iterator<Item = &'static str> {
    [OK, NO_CREDENTIALS, BAD_REQUEST, WRONG_AUDIENCE]
        .into_iter()
        .chain(super::index::Reject::LABELS)
}

fn latency_histogram() -> Histogram {
    // 50 µs … ~1.6 s: verifying is a hash and a map lookup; the tail is
    // lock contention or a slow client.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("apikey_verifier");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Verification requests by endpoint and result",
            requests.clone(),
        );
        let latency: Family<EndpointLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "request_duration_seconds",
            "Time to answer a verification request",
            latency.clone(),
        );
        let index_tokens = Gauge::default();
        registry.register(
            "index_tokens",
            "ApiTokens in the verifier's index",
            index_tokens.clone(),
        );
        let index_keys = Gauge::default();
        registry.register(
            "index_keys",
            "ApiKeys in the verifier's index",
            index_keys.clone(),
        );
        let last_used_writes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "last_used_writes",
            "status.lastUsedAt patches by result (ok, gone, error)",
            last_used_writes.clone(),
        );
        let endpoints = [TOKEN_REVIEW, FORWARD_AUTH];
        let request_series = endpoints
            .iter()
            .flat_map(|&endpoint| {
                let requests = &requests;
                result_labels().map(move |result| {
                    let counter = requests
                        .get_or_create(&RequestLabels { endpoint, result })
                        .clone();
                    (endpoint, result, counter)
                })
            })
            .collect();
        let latency_series = endpoints
            .iter()
            .map(|&endpoint| {
                let histogram = latency.get_or_create(&EndpointLabels { endpoint }).clone();
                (endpoint, histogram)
            })
            .collect();
        Metrics {
            request_series,
            latency_series,
            registry,
            requests,
            latency,
            index_tokens,
            index_keys,
            last_used_writes,
        }
    }

    /// Counts one request and its latency.
    pub fn observe(&self, endpoint: &'static str, result: &'static str, elapsed: Duration) {
        match self
            .request_series
            .iter()
            .find(|(e, r, _)| *e == endpoint && *r == result)
        {
            Some((_, _, counter)) => {
                counter.inc();
            }
            None => {
                self.requests
                    .get_or_create(&RequestLabels { endpoint, result })
                    .inc();
            }
        }
        match self.latency_series.iter().find(|(e, _)| *e == endpoint) {
            Some((_, histogram)) => histogram.observe(elapsed.as_secs_f64()),
            None => self
                .latency
                .get_or_create(&EndpointLabels { endpoint })
                .observe(elapsed.as_secs_f64()),
        }
    }

    pub fn set_index_size(&self, tokens: usize, keys: usize) {
        self.index_tokens
            .set(i64::try_from(tokens).unwrap_or(i64::MAX));
        self.index_keys.set(i64::try_from(keys).unwrap_or(i64::MAX));
    }

    pub fn last_used_written(&self, result: &'static str, count: u64) {
        self.last_used_writes
            .get_or_create(&ResultLabels { result })
            .inc_by(count);
    }

    /// The Prometheus text exposition (OpenMetrics text format).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
