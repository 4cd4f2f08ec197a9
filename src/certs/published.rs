//! The CA bundle of a managed certificate, published under `ca.crt` in a
//! ConfigMap for the clients of the endpoint (the kube-apiserver's
//! authenticator kubeconfig, gateways): they need the CA, never the Secret
//! with its key. Kept equal to the bundle at start, after each renewal and
//! on every renewal check, so a deleted or edited ConfigMap comes back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::CertStore;
use super::managed::RENEW_CHECK_INTERVAL;

/// The ConfigMap key of the PEM CA bundle (as in `kube-root-ca.crt`).
pub const CA_KEY: &str = "ca.crt";
/// How soon a failed write is tried again.
const RETRY: Duration = Duration::from_secs(30);

/// Makes the ConfigMap `name` hold `bundle` under [`CA_KEY`], keeping its
/// other keys, labels and annotations. `Ok(true)` when it wrote.
pub async fn publish(api: &Api<ConfigMap>, name: &str, bundle: &str) -> Result<bool, kube::Error> {
    match api.get_opt(name).await? {
        Some(map)
            if map
                .data
                .as_ref()
                .and_then(|d| d.get(CA_KEY))
                .map(String::as_str)
                == Some(bundle) =>
        {
            Ok(false)
        }
        Some(mut map) => {
            map.data
                .get_or_insert_with(BTreeMap::new)
                .insert(CA_KEY.to_owned(), bundle.to_owned());
            api.replace(name, &PostParams::default(), &map).await?;
            Ok(true)
        }
        None => {
            let map = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    ..ObjectMeta::default()
                },
                data: Some(BTreeMap::from([(CA_KEY.to_owned(), bundle.to_owned())])),
                ..ConfigMap::default()
            };
            api.create(&PostParams::default(), &map).await?;
            Ok(true)
        }
    }
}

/// Keeps the ConfigMap `name` equal to `store`'s CA bundle, forever: at
/// once, whenever `renewed` is told, and every [`RENEW_CHECK_INTERVAL`].
pub async fn keep_published(
    api: Api<ConfigMap>,
    name: String,
    store: Arc<CertStore>,
    renewed: Arc<Notify>,
) {
    loop {
        let wait = match publish(&api, &name, &store.ca_bundle()).await {
            Ok(true) => {
                info!(configmap = %name, "published the CA bundle");
                RENEW_CHECK_INTERVAL
            }
            Ok(false) => RENEW_CHECK_INTERVAL,
            Err(err) => {
                warn!(configmap = %name, error = %err, "publishing the CA bundle failed; retrying");
                RETRY
            }
        };
        tokio::select! {
            () = renewed.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}
