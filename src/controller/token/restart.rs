//! Restart targets: the Deployments, StatefulSets and DaemonSets whose pod
//! template gets an annotation bump when (and only when) the value's hash
//! changed, so that consumers pick up a new value without a restart loop.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::debug;

use super::events::publish;
use crate::api::{ApiToken, RestartTarget, RestartTargetKind};
use crate::controller::context::{Context, object_key};
use crate::controller::token_state::Note;

/// Annotation prefix on restart targets' pod templates; the name part is the token's name.
const RESTART_ANNOTATION_PREFIX: &str = "token-hash.apikeys.dev/";

/// Bumps the token's pod-template annotation on each restart target whose
/// annotation does not carry the current hash yet: one roll per new value.
/// Failures are reported as events only when the value just changed, so a
/// missing target does not produce an event on every resync.
pub(super) async fn roll_restart_targets(
    ctx: &Context,
    token: &ApiToken,
    ns: &str,
    hash: &str,
    value_changed: bool,
) {
    let targets = token
        .spec
        .rotation
        .as_ref()
        .map(|r| r.restart_targets.as_slice())
        .unwrap_or_default();
    if targets.is_empty() {
        return;
    }
    let annotation = restart_annotation(&token.name_any());
    let short = hash
        .trim_start_matches("sha256:")
        .get(..16)
        .unwrap_or(hash)
        .to_owned();
    for target in targets {
        let result = roll_target(ctx, ns, target, &annotation, &short).await;
        let note = match result {
            Ok(true) => Note {
                warning: false,
                reason: "RestartTriggered",
                action: "Restart",
                message: format!(
                    "rolled {:?} {} onto the new value",
                    target.kind, target.name
                ),
            },
            Ok(false) => continue,
            Err(err) if !value_changed => {
                debug!(token = %object_key(token), target = %target.name, error = %err, "restart target not rolled");
                continue;
            }
            Err(err) => Note {
                warning: true,
                reason: "RestartTargetFailed",
                action: "Restart",
                message: format!("could not roll {:?} {}: {err}", target.kind, target.name),
            },
        };
        publish(ctx, token, &note).await;
    }
}

/// Rolls one target; whether it was rolled (false: it already carries `value`).
async fn roll_target(
    ctx: &Context,
    ns: &str,
    target: &RestartTarget,
    annotation: &str,
    value: &str,
) -> Result<bool, String> {
    let name = &target.name;
    match target.kind {
        RestartTargetKind::Deployment => {
            roll(ctx.api::<Deployment>(ns), name, annotation, value, |d| {
                d.spec.as_ref().and_then(|s| s.template.metadata.as_ref())
            })
            .await
        }
        RestartTargetKind::StatefulSet => {
            roll(ctx.api::<StatefulSet>(ns), name, annotation, value, |d| {
                d.spec.as_ref().and_then(|s| s.template.metadata.as_ref())
            })
            .await
        }
        RestartTargetKind::DaemonSet => {
            roll(ctx.api::<DaemonSet>(ns), name, annotation, value, |d| {
                d.spec.as_ref().and_then(|s| s.template.metadata.as_ref())
            })
            .await
        }
    }
}

async fn roll<K>(
    api: Api<K>,
    name: &str,
    annotation: &str,
    value: &str,
    template_meta: impl Fn(&K) -> Option<&kube::api::ObjectMeta>,
) -> Result<bool, String>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let Some(workload) = api.get_opt(name).await.map_err(|e| e.to_string())? else {
        return Err("it does not exist".to_owned());
    };
    let current = template_meta(&workload)
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(annotation));
    if current.map(String::as_str) == Some(value) {
        return Ok(false);
    }
    let patch =
        json!({ "spec": { "template": { "metadata": { "annotations": { annotation: value } } } } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| e.to_string())?;
    Ok(true)
}

/// `token-hash.apikeys.dev/<token name>`, the name part cut to the 63 characters an annotation allows.
fn restart_annotation(token_name: &str) -> String {
    let name: String = token_name.chars().take(63).collect();
    format!(
        "{RESTART_ANNOTATION_PREFIX}{}",
        name.trim_end_matches(['-', '.'])
    )
}
