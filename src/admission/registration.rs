//! The ValidatingWebhookConfiguration that sends ApiKey and ApiToken writes
//! to the webhook: its shape (one source for `local` and the chart's test)
//! and the loop that keeps its `caBundle` equal to the operator's CA — at
//! start, after a renewal, and whenever someone (a `helm upgrade`, an Argo
//! CD sync) writes the configuration back with another one.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, RuleWithOperations, ValidatingWebhook, ValidatingWebhookConfiguration,
    WebhookClientConfig,
};
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::api::{GROUP, VERSION};
use crate::certs::CertStore;

/// The webhook's name in the configuration (a qualified name, as the API requires).
pub const WEBHOOK_NAME: &str = "authorization.apikeys.dev";
/// The webhook's `matchConditions` expression (CEL).
pub const MATCH_CONDITION: &str = "request.operation == 'CREATE' || object.spec != oldObject.spec";
/// An answer taking longer than this fails the request (failurePolicy Fail).
pub const TIMEOUT_SECONDS: i32 = 10;

/// The configuration `local` registers: every create and update of ApiKeys
/// and ApiTokens (not their status) goes to `client_config`, and a webhook
/// that cannot answer refuses the write.
pub fn configuration(
    name: &str,
    client_config: WebhookClientConfig,
) -> ValidatingWebhookConfiguration {
    ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![ValidatingWebhook {
            name: WEBHOOK_NAME.to_owned(),
            admission_review_versions: vec!["v1".to_owned()],
            client_config,
            failure_policy: Some("Fail".to_owned()),
            match_policy: Some("Equivalent".to_owned()),
            side_effects: "None".to_owned(),
            timeout_seconds: Some(TIMEOUT_SECONDS),
            // Only writes that may change whose values are minted: creates, and updates of the
            // spec. Metadata-only updates (the operator adopting a token, a rotate or revoke
            // annotation, labels) never move a key or token to another identity, and skip the
            // call: one less round trip for each token the operator adopts.
            match_conditions: Some(vec![MatchCondition {
                name: "creates-and-spec-changes".to_owned(),
                expression: MATCH_CONDITION.to_owned(),
            }]),
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec![GROUP.to_owned()]),
                api_versions: Some(vec![VERSION.to_owned()]),
                operations: Some(vec!["CREATE".to_owned(), "UPDATE".to_owned()]),
                resources: Some(vec!["apikeys".to_owned(), "apitokens".to_owned()]),
                scope: Some("Namespaced".to_owned()),
            }]),
            ..ValidatingWebhook::default()
        }]),
    }
}

/// Registers `webhook` by URL under the configuration `name` (server-side
/// apply, so a configuration kept from an earlier run is pointed at this
/// one's address and CA): how `local` and the tests register it.
pub async fn register_url(
    client: &Client,
    name: &str,
    webhook: &super::Webhook,
) -> Result<(), kube::Error> {
    let client_config = WebhookClientConfig {
        url: Some(format!("https://{}{}", webhook.local_addr(), super::PATH)),
        ca_bundle: webhook.ca_bundle().map(|pem| ByteString(pem.into_bytes())),
        service: None,
    };
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let params = PatchParams::apply("apikey-operator").force();
    api.patch(
        name,
        &params,
        &Patch::Apply(&configuration(name, client_config)),
    )
    .await
    .map(drop)
}

/// Keeps the `caBundle` of every webhook in the configuration `name` equal
/// to the store's; runs until aborted.
pub async fn keep_ca_bundle(
    client: Client,
    name: String,
    store: Arc<CertStore>,
    renewed: Arc<Notify>,
) {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client);
    let selected = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut changes = watcher(api.clone(), selected)
        .default_backoff()
        .applied_objects()
        .boxed();
    loop {
        tokio::select! {
            change = changes.next() => match change {
                Some(Ok(_)) => {}
                Some(Err(err)) => {
                    warn!(error = %err, configuration = %name, "watching the webhook configuration failed; retrying");
                    continue;
                }
                None => return,
            },
            () = renewed.notified() => {}
        }
        if let Err(err) = set_ca_bundle(&api, &name, &store.ca_bundle()).await {
            warn!(error = %err, configuration = %name, "updating the webhook configuration's caBundle failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            renewed.notify_one();
        }
    }
}

/// Sets `ca_bundle` on every webhook of the configuration that lacks it; no
/// write when all have it. A conflicting write is retried on fresh data.
pub async fn set_ca_bundle(
    api: &Api<ValidatingWebhookConfiguration>,
    name: &str,
    ca_bundle: &str,
) -> Result<bool, kube::Error> {
    let wanted = ByteString(ca_bundle.as_bytes().to_vec());
    loop {
        let Some(mut configuration) = api.get_opt(name).await? else {
            return Ok(false);
        };
        let mut changed = false;
        for webhook in configuration.webhooks.iter_mut().flatten() {
            if webhook.client_config.ca_bundle.as_ref() != Some(&wanted) {
                webhook.client_config.ca_bundle = Some(wanted.clone());
                changed = true;
            }
        }
        if !changed {
            return Ok(false);
        }
        match api
            .replace(name, &PostParams::default(), &configuration)
            .await
        {
            Ok(_) => {
                info!(configuration = %name, "webhook caBundle set to the operator's CA");
                return Ok(true);
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(e),
        }
    }
}
