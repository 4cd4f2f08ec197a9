//! Reports `status.lastUsedAt` back to ApiTokens: the request path only
//! notes the minute in a map ([`UsageRecorder::record`]); a background task
//! ([`report_usage`]) patches the tokens used since its last round, about
//! once a minute, so each token gets at most one write per minute.
//!
//! The patch is a JSON patch on the status subresource (see [`usage_patch`]) under the field
//! manager [`FIELD_MANAGER`]; the controller's server-side applies never
//! include `lastUsedAt`, so they leave it alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tracing::{debug, warn};

use super::index::IdentityRef;
use super::metrics::Metrics;
use crate::api::ApiToken;
pub use crate::clock::truncate_to_minute;

/// Field manager of the verifier's status writes.
pub const FIELD_MANAGER: &str = "apikey-operator-verifier";

/// How often used tokens are reported.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// Writes in flight at once during a report round.
const CONCURRENT_WRITES: usize = 4;

/// One token's use, to be written to its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    pub namespace: Arc<str>,
    pub name: String,
    pub uid: String,
    /// Minute precision.
    pub at: Timestamp,
}

/// Tokens used since the last report round. Cheap to call on every request:
/// a token already noted for this minute costs two lookups by borrowed names.
#[derive(Debug, Default)]
pub struct UsageRecorder {
    pending: Mutex<HashMap<Arc<str>, NamespaceUsage>>,
}

/// Within a namespace: token name → (uid, minute).
type NamespaceUsage = HashMap<String, (String, Timestamp)>;

impl UsageRecorder {
    /// Notes that `identity`'s token was accepted at `now`, unless its status
    /// already shows this minute.
    pub fn record(&self, identity: IdentityRef<'_>, now: Timestamp) {
        let minute = truncate_to_minute(now);
        if identity.last_used_at.is_some_and(|seen| seen >= minute) {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let names = pending.entry(identity.namespace.clone()).or_default();
        match names.get_mut(identity.api_token) {
            Some((uid, at)) => {
                if minute > *at {
                    *at = minute;
                    identity.uid.clone_into(uid);
                }
            }
            None => {
                names.insert(
                    identity.api_token.to_owned(),
                    (identity.uid.to_owned(), minute),
                );
            }
        }
    }

    /// Takes everything noted so far.
    pub fn take(&self) -> Vec<Usage> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending
            .drain()
            .flat_map(|(namespace, names)| {
                names.into_iter().map(move |(name, (uid, at))| Usage {
                    namespace: namespace.clone(),
                    name,
                    uid,
                    at,
                })
            })
            .collect()
    }
}

/// The JSON patch (RFC 6902) for one usage. Its `test` of the uid makes the
/// API server refuse it (422) if the token was deleted and created again
/// under the same name: a uid in a merge patch of the status subresource is
/// no precondition, as the server takes only the status from it.
pub fn usage_patch(usage: &Usage) -> json_patch::Patch {
    use json_patch::jsonptr::PointerBuf;
    use json_patch::{AddOperation, PatchOperation, TestOperation};
    json_patch::Patch(vec![
        PatchOperation::Test(TestOperation {
            path: PointerBuf::from_tokens(["metadata", "uid"]),
            value: json!(usage.uid),
        }),
        PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["status", "lastUsedAt"]),
            value: json!(Time(usage.at)),
        }),
    ])
}

/// Reports recorded usage every `interval` until `shutdown`, then once more.
pub async fn report_usage(
    client: Client,
    recorder: Arc<UsageRecorder>,
    metrics: Arc<Metrics>,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = ticks.tick() => write_usage(&client, &recorder, &metrics).await,
            _ = &mut shutdown => break,
        }
    }
    write_usage(&client, &recorder, &metrics).await;
}

async fn write_usage(client: &Client, recorder: &UsageRecorder, metrics: &Metrics) {
    let batch = recorder.take();
    if batch.is_empty() {
        return;
    }
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    };
    let results: Vec<&'static str> = futures::stream::iter(batch)
        .map(|usage| {
            let api: Api<ApiToken> = Api::namespaced(client.clone(), &usage.namespace);
            let params = &params;
            async move {
                let patch = usage_patch(&usage);
                match api
                    .patch_status(&usage.name, params, &Patch::<()>::Json(patch))
                    .await
                {
                    Ok(_) => "ok",
                    // Deleted, or replaced by a new object of the same name.
                    Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409 | 422) => {
                        debug!(token = %format!("{}/{}", usage.namespace, usage.name), code = status.code, "token gone; lastUsedAt not written");
                        "gone"
                    }
                    Err(err) => {
                        warn!(token = %format!("{}/{}", usage.namespace, usage.name), error = %err, "could not write lastUsedAt; it is written again when the token is used in a later minute");
                        "error"
                    }
                }
            }
        })
        .buffer_unordered(CONCURRENT_WRITES)
        .collect()
        .await;
    for result in ["ok", "gone", "error"] {
        let n = results.iter().filter(|r| **r == result).count() as u64;
        if n > 0 {
            metrics.last_used_written(result, n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OwnerKind;
    use crate::verifier::index::Identity;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn identity(name: &str, last_used_at: Option<&str>) -> Identity {
        Identity {
            username: "alice".into(),
            owner_kind: OwnerKind::User,
            namespace: "ns".into(),
            api_key: "key".into(),
            api_token: name.into(),
            uid: format!("uid-{name}"),
            token_id: "abcdefghijklmnop".into(),
            previous_value: false,
            last_used_at: last_used_at.map(t),
            key_headers: Default::default(),
        }
    }

    #[test]
    fn one_entry_per_token_per_round_with_the_latest_minute() {
        let recorder = UsageRecorder::default();
        for _ in 0..100 {
            recorder.record((&identity("a", None)).into(), t("2026-06-01T12:00:10Z"));
        }
        recorder.record((&identity("a", None)).into(), t("2026-06-01T12:01:10Z"));
        recorder.record((&identity("a", None)).into(), t("2026-06-01T12:00:50Z"));
        recorder.record((&identity("b", None)).into(), t("2026-06-01T12:00:59Z"));
        let mut batch = recorder.take();
        batch.sort_by(|x, y| x.name.cmp(&y.name));
        assert_eq!(
            batch
                .iter()
                .map(|u| (u.name.as_str(), u.at))
                .collect::<Vec<_>>(),
            vec![
                ("a", t("2026-06-01T12:01:00Z")),
                ("b", t("2026-06-01T12:00:00Z"))
            ]
        );
        assert!(recorder.take().is_empty());
    }

    #[test]
    fn skips_a_minute_the_status_already_shows() {
        let recorder = UsageRecorder::default();
        recorder.record(
            (&identity("a", Some("2026-06-01T12:00:00Z"))).into(),
            t("2026-06-01T12:00:40Z"),
        );
        assert!(recorder.take().is_empty());
        recorder.record(
            (&identity("a", Some("2026-06-01T12:00:00Z"))).into(),
            t("2026-06-01T12:01:00Z"),
        );
        assert_eq!(recorder.take().len(), 1);
    }

    #[test]
    fn patch_names_the_uid_and_the_minute() {
        let usage = Usage {
            namespace: "ns".into(),
            name: "a".into(),
            uid: "uid-a".into(),
            at: t("2026-06-01T12:00:00Z"),
        };
        assert_eq!(
            serde_json::to_value(usage_patch(&usage)).expect("JSON"),
            json!([
                { "op": "test", "path": "/metadata/uid", "value": "uid-a" },
                { "op": "add", "path": "/status/lastUsedAt", "value": "2026-06-01T12:00:00Z" },
            ])
        );
    }
}
