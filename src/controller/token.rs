//! The ApiToken reconciler: reads the token, its key and its Secret, asks
//! `token_state::decide` what to do and carries it out — the value in two
//! phases (pending hash, Secret, promotion) so that a crash at any point is
//! finished or redone by the next reconcile.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, debug, info};

use super::context::{Context, object_key};
use super::error::{Error, kube_err};
use super::faults::FaultPoint;
use super::hashed_secret::HashedSecret;
use super::metrics::API_TOKEN;
use super::token_state::{
    self, Decision, IssueKind, KeyState, Note, Requeue, SecretView, ValueAction, key_state,
    same_status, view,
};
use super::{FIELD_MANAGER, MANAGED_BY, MANAGED_BY_LABEL, TOKEN_LABEL};
use crate::api::conditions::READY;
use crate::api::{ApiKey, ApiToken, ApiTokenStatus, OwnerKind, RestartTargetKind};
use crate::token::{self as tokens, TokenId, TokenKind};

/// Annotation prefix on restart targets' pod templates; the name part is the token's name.
const RESTART_ANNOTATION_PREFIX: &str = "token-hash.apikeys.dev/";
/// How often a token blocked by something we do not watch is looked at again.
const BLOCKED_RECHECK: Duration = Duration::from_secs(300);
/// How long a reconcile waits for the ApiKey store's first list before retrying.
const KEY_STORE_SYNC: Duration = Duration::from_secs(5);

pub async fn reconcile(token: Arc<ApiToken>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = object_key(token.as_ref());
    if token.meta().deletion_timestamp.is_some() {
        // Secrets go with the token through their ownerReference.
        return Ok(Action::await_change());
    }
    let span =
        tracing::info_span!("reconcile", kind = API_TOKEN, object = %object_key(token.as_ref()));
    let result = reconcile_token(&token, &ctx).instrument(span).await;
    ctx.handles.metrics.reconciled(API_TOKEN, result.is_ok());
    if result.is_ok() {
        ctx.backoff.succeeded(&name);
    }
    result
}

async fn reconcile_token(token: &ApiToken, ctx: &Context) -> Result<Action, Error> {
    if ctx.behind_own_write(&object_key(token), token.resource_version().as_deref()) {
        return Ok(Action::requeue(super::context::BEHIND_RECHECK));
    }
    let ns = token
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let uid = token.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let key_ref = ObjectRef::new(&token.spec.api_key_ref.name).within(&ns);
    let mut key = ctx.keys.get(&key_ref);
    if key.is_none() {
        // Right after a start the key store may not have listed yet: a key
        // not seen yet must not look deleted, which would revoke the value.
        match tokio::time::timeout(KEY_STORE_SYNC, super::runner::store_ready(&ctx.keys)).await {
            Ok(true) => key = ctx.keys.get(&key_ref),
            _ => return Ok(Action::requeue(KEY_STORE_SYNC)),
        }
    }
    if key.is_none() && ctx.key_unreadable(&key_ref) {
        // Stored but undecodable (an Event on the key says why): not deleted,
        // so the value stays; the verifier rejects it meanwhile. The key's
        // correction wakes this token.
        return Ok(Action::await_change());
    }
    let unchecked = key.as_deref().is_some_and(|k| {
        !k.status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == READY))
    });
    if unchecked {
        // A key created together with its tokens has not been reconciled yet:
        // not a problem worth a Warning. Its status write wakes us.
        return Ok(ctx.requeue_at(None));
    }
    let mut key_state = key_state(key.as_deref());
    if let Some(key) = key.as_deref()
        && !adopted_by(token, Some(key))
    {
        if token.controlling_key_uid().is_some() && holds_a_value(token) {
            // The key it was issued under was deleted and one of the same
            // name created (kubectl replace --force, or a re-sync) before the
            // garbage collector took this token: that value was issued for
            // the earlier key's owner and must not pass to the new one's.
            // Removed first; adopted and issued afresh after.
            key_state = KeyState::Replaced;
        } else if key.metadata.deletion_timestamp.is_some() {
            // Being deleted (perhaps orphaning its tokens): adopting now would
            // hand the token to the garbage collector after all. Blocked as a
            // key that is not Ready (see `key_state`).
        } else {
            // The key becomes the token's controller owner before any value
            // exists (whether or not the key is Ready), so deleting the key
            // always takes the token and its value with it. The
            // ownerReference change wakes this token again.
            super::key::adopt(ctx, key, token).await?;
            return Ok(ctx.requeue_at(None));
        }
    }
    let kind = match key.as_deref().map(|k| k.spec.owner.kind) {
        Some(OwnerKind::ServiceAccount) => TokenKind::ServiceAccount,
        _ => TokenKind::Personal,
    };
    let (secret_name, secret_key) = token_state::secret_target(token);
    let secrets: Api<HashedSecret> = ctx.api(&ns);

    let cached = ctx.secrets.get(&ObjectRef::new(&secret_name).within(&ns));
    let from_cache = cached.is_some();
    let (mut secret, mut secret_rv) = match cached {
        Some(s) => (view(&s, &uid, &secret_key), s.resource_version()),
        // A token without any status yet (new, adopted, never decided on)
        // has no Secret of ours, and the synced cache shows none by that
        // name: no GET (a burst of new tokens saves one request each). If a
        // Secret exists after all (someone else's, or ours not seen yet),
        // the create fails, and the token, which now has a status, has its
        // Secret read by every later reconcile.
        None if token.status.is_none() && ctx.handles.synced.load(Ordering::SeqCst) => {
            (SecretView::Missing, None)
        }
        None => fetch_view(&secrets, &secret_name, &uid, &secret_key).await?,
    };
    let mut decision = token_state::decide(token, key_state, &secret, ctx.clock.now());
    // A rotation depends on the clock, not on the Secret's content: the write's
    // resourceVersion precondition (below) is enough, and a rotation storm
    // saves one GET per token.
    let rotation = matches!(decision.action, ValueAction::Issue(IssueKind::Rotation(_)));
    if decision.action != ValueAction::Keep && from_cache && !rotation {
        // Act only on the Secret as it is now, not as the watch cache last saw it.
        let (fresh, fresh_rv) = fetch_view(&secrets, &secret_name, &uid, &secret_key).await?;
        secret_rv = fresh_rv;
        if fresh != secret {
            secret = fresh;
            decision = token_state::decide(token, key_state, &secret, ctx.clock.now());
        }
    }

    let tokens_api: Api<ApiToken> = ctx.api(&ns);
    let current = token.status.clone().unwrap_or_default();
    let rv = token.resource_version();
    // spec.secret.name changed: the Secret the status still names. It goes
    // once the value is in the new one (just before the promote) or no value
    // is kept at all, and always before the status stops naming it, so that a
    // failed delete is retried. While the new name is blocked (a Secret we do
    // not own) the value stays where the status says it is.
    let moved_from = current
        .secret_name
        .as_deref()
        .filter(|old| *old != secret_name);
    // A spec edit may have changed spec.secret's labels or annotations, which
    // a Secret keeping its value must follow; synced before the status records
    // the new generation, so that a failed sync is retried.
    let spec_edited = current.observed_generation != token.metadata.generation
        && token_state::secret_template_error(token).is_none();
    // The value as recorded once this reconcile's writes are done.
    let mut hash_now = decision.status.hash.clone();
    match &decision.action {
        ValueAction::Keep => {
            if spec_edited && hash_now.is_some() && matches!(secret, SecretView::Ours { .. }) {
                sync_secret_metadata(&secrets, token, &secret_name).await?;
            }
            if let Some(old) = moved_from.filter(|_| hash_now.is_none()) {
                delete_secret(&secrets, old, &uid).await?;
            }
            write_status_if_changed(
                ctx,
                &tokens_api,
                token,
                &current,
                &decision.status,
                rv.as_deref(),
            )
            .await?;
        }
        ValueAction::Remove => {
            if let Some(old) = moved_from {
                delete_secret(&secrets, old, &uid).await?;
            }
            // Status first: once it records no value, the verifier rejects every old one.
            write_status_if_changed(
                ctx,
                &tokens_api,
                token,
                &current,
                &decision.status,
                rv.as_deref(),
            )
            .await?;
            delete_secret(&secrets, &secret_name, &uid).await?;
            hash_now = None;
        }
        ValueAction::Promote(_) => {
            let pending = current
                .pending
                .as_ref()
                .ok_or(Error::MissingField("status.pending"))?;
            let token_id = current
                .token_id
                .clone()
                .ok_or(Error::MissingField("status.tokenId"))?;
            let status = token_state::promoted(&decision.status, &pending.hash, &token_id);
            // The pending value's Secret may have been written before a spec edit.
            if spec_edited {
                sync_secret_metadata(&secrets, token, &secret_name).await?;
            }
            if let Some(old) = moved_from {
                delete_secret(&secrets, old, &uid).await?;
            }
            write_status(ctx, &tokens_api, token, &status, rv.as_deref()).await?;
            hash_now = status.hash;
        }
        ValueAction::Issue(issue) => {
            let status = issue_value(
                ctx,
                token,
                &current,
                &decision,
                *issue,
                kind,
                &secret_name,
                &secret_key,
                secret_rv.as_deref(),
                moved_from,
            )
            .await?;
            hash_now = status.hash;
        }
    }
    if let Some(note) = &decision.note {
        publish(ctx, token, note).await;
    }
    if let Some(hash) = hash_now.as_deref() {
        let value_changed = hash_now != current.hash;
        roll_restart_targets(ctx, token, &ns, hash, value_changed).await;
    }
    Ok(match decision.requeue {
        Requeue::At(due) => ctx.requeue_at(Some(due)),
        Requeue::OnChange => ctx.requeue_at(None),
        Requeue::Later => Action::requeue(BLOCKED_RECHECK),
    })
}

/// Two-phase issue: record the new value's hash as pending, write the value
/// into the Secret, then promote it. Returns the promoted status.
#[allow(clippy::too_many_arguments)]
async fn issue_value(
    ctx: &Context,
    token: &ApiToken,
    current: &ApiTokenStatus,
    decision: &Decision,
    issue: IssueKind,
    kind: TokenKind,
    secret_name: &str,
    secret_key: &str,
    secret_rv: Option<&str>,
    moved_from: Option<&str>,
) -> Result<ApiTokenStatus, Error> {
    let ns = token
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let tokens_api: Api<ApiToken> = ctx.api(&ns);
    let token_id = match current.token_id.as_deref().map(TokenId::parse) {
        Some(Ok(id)) => id,
        // Never issued, or the status was edited by hand: a new identifier.
        _ => TokenId::generate(),
    };
    let value = tokens::generate(kind, &token_id);
    let hash = value.hash();

    let pending = token_state::pending(
        current,
        token,
        issue,
        &hash,
        token_id.as_str(),
        ctx.clock.now(),
    );
    let written = write_status(
        ctx,
        &tokens_api,
        token,
        &pending,
        token.resource_version().as_deref(),
    )
    .await?;
    ctx.handles.faults.fire(FaultPoint::AfterPending)?;

    let mut secret = desired_secret(token, secret_name, secret_key, value.expose_secret())?;
    drop(value);
    let secrets: Api<Secret> = ctx.api(&ns);
    // Never take over a Secret that is not ours: the decision saw it missing
    // (create: fails if someone created it since) or ours at `secret_rv`
    // (apply with that resourceVersion: fails if it changed since, e.g. another
    // token claimed it). The next reconcile looks again.
    match secret_rv {
        None => {
            let params = kube::api::PostParams {
                dry_run: false,
                field_manager: Some(FIELD_MANAGER.to_owned()),
            };
            let body = serde_json::to_vec(&secret).map_err(|source| Error::Serialize {
                what: "the token's Secret",
                source,
            })?;
            super::write::write_light(&secrets, |r| r.create(&params, body))
                .await
                .map_err(kube_err("creating the token's Secret"))?;
        }
        Some(rv) => {
            secret.metadata.resource_version = Some(rv.to_owned());
            let params = PatchParams::apply(FIELD_MANAGER).force();
            super::write::write_light(&secrets, |r| {
                r.patch(secret_name, &params, &Patch::Apply(&secret))
            })
            .await
            .map_err(kube_err("writing the token's Secret"))?;
        }
    }
    drop(secret);
    ctx.handles.faults.fire(FaultPoint::AfterSecret)?;
    if let Some(old) = moved_from {
        let uid = token.uid().ok_or(Error::MissingField("metadata.uid"))?;
        delete_secret(&ctx.api(&ns), old, &uid).await?;
    }

    let status = token_state::promoted(&decision.status, hash.as_str(), token_id.as_str());
    write_status(ctx, &tokens_api, token, &status, written.as_deref()).await?;
    ctx.handles.metrics.issued(issue.as_str());
    info!(token = %object_key(token), reason = issue.as_str(), "value issued");
    Ok(status)
}

/// Annotation on a token's Secret naming the label and annotation keys that
/// came from `spec.secret`, so that a key later dropped from the spec can be
/// removed without touching what others put on the Secret.
pub const TEMPLATE_ANNOTATION: &str = "apikeys.dev/secret-template";

/// The keys recorded in [`TEMPLATE_ANNOTATION`].
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct TemplateKeys {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    annotations: Vec<String>,
}

type Metadata = (BTreeMap<String, String>, BTreeMap<String, String>);

/// The labels and annotations a token's Secret carries: `spec.secret`'s, the
/// operator's own over them, and the record of the spec's keys.
fn desired_metadata(token: &ApiToken) -> Metadata {
    let template = token.spec.secret.clone().unwrap_or_default();
    let keys = TemplateKeys {
        labels: template.labels.keys().cloned().collect(),
        annotations: template.annotations.keys().cloned().collect(),
    };
    let mut labels: BTreeMap<String, String> = template.labels;
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
    labels.insert(TOKEN_LABEL.to_owned(), token_label_value(&token.name_any()));
    let mut annotations = template.annotations;
    // The label value is cut to 63 characters; the annotation names the token in full.
    annotations.insert(TOKEN_LABEL.to_owned(), token.name_any());
    if keys != TemplateKeys::default() {
        annotations.insert(TEMPLATE_ANNOTATION.to_owned(), json!(keys).to_string());
    }
    (labels, annotations)
}

/// After a spec edit, brings the Secret's labels and annotations in line
/// with `spec.secret` without a new value: the spec's are set, those an
/// earlier spec set and this one does not are removed, and anything else on
/// the Secret is left alone. No write when they already match.
async fn sync_secret_metadata(
    api: &Api<HashedSecret>,
    token: &ApiToken,
    name: &str,
) -> Result<(), Error> {
    let Some(secret) = api
        .get_opt(name)
        .await
        .map_err(kube_err("reading the token's Secret"))?
    else {
        return Ok(());
    };
    let (labels, annotations) = desired_metadata(token);
    let recorded: TemplateKeys = secret
        .annotations()
        .get(TEMPLATE_ANNOTATION)
        .and_then(|keys| serde_json::from_str(keys).ok())
        .unwrap_or_default();
    let mut dropped_annotations = recorded.annotations;
    if !annotations.contains_key(TEMPLATE_ANNOTATION) {
        dropped_annotations.push(TEMPLATE_ANNOTATION.to_owned());
    }
    let changes = |current: &BTreeMap<String, String>,
                   desired: &BTreeMap<String, String>,
                   dropped: &[String]| {
        let mut changes = serde_json::Map::new();
        for (key, value) in desired {
            if current.get(key) != Some(value) {
                changes.insert(key.clone(), json!(value));
            }
        }
        for key in dropped {
            if !desired.contains_key(key) && current.contains_key(key) {
                changes.insert(key.clone(), serde_json::Value::Null);
            }
        }
        changes
    };
    let labels = changes(secret.labels(), &labels, &recorded.labels);
    let annotations = changes(secret.annotations(), &annotations, &dropped_annotations);
    if labels.is_empty() && annotations.is_empty() {
        return Ok(());
    }
    let patch = json!({"metadata": {
        "resourceVersion": secret.resource_version(),
        "labels": labels,
        "annotations": annotations,
    }});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    };
    super::write::write_light(api, |r| r.patch(name, &params, &Patch::Merge(&patch)))
        .await
        .map_err(kube_err(
            "updating the labels and annotations of the token's Secret",
        ))?;
    Ok(())
}

fn desired_secret(token: &ApiToken, name: &str, key: &str, value: &str) -> Result<Secret, Error> {
    let (labels, annotations) = desired_metadata(token);
    let owner = token
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    Ok(Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: token.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            key.to_owned(),
            ByteString(value.as_bytes().to_vec()),
        )])),
        ..Default::default()
    })
}

/// The value of the `apikeys.dev/token` label on a token's Secret: the
/// token's name when it fits in a label value (63 characters), else its first
/// 46 characters, a dash and 16 hex digits of the name's SHA-256, so that
/// long names stay distinct. The full name is in the annotation of the same key.
pub fn token_label_value(name: &str) -> String {
    const MAX: usize = 63;
    if name.len() <= MAX {
        return name.to_owned();
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    // Token names are DNS subdomains (ASCII); a label value must start and end alphanumeric.
    let head = name[..MAX - 1 - hex.len()].trim_end_matches(['-', '.']);
    format!("{head}-{hex}")
}

/// Whether the token's status records a value (current, pending or in grace).
fn holds_a_value(token: &ApiToken) -> bool {
    token
        .status
        .as_ref()
        .is_some_and(token_state::holds_a_value)
}

/// The token carries its key's controller ownerReference.
fn adopted_by(token: &ApiToken, key: Option<&ApiKey>) -> bool {
    key.and_then(|k| k.metadata.uid.as_deref())
        .is_some_and(|uid| token.controlling_key_uid() == Some(uid))
}

/// The Secret as it is now, and its resourceVersion (none when missing).
async fn fetch_view(
    api: &Api<HashedSecret>,
    name: &str,
    uid: &str,
    key: &str,
) -> Result<(SecretView, Option<String>), Error> {
    match api
        .get_opt(name)
        .await
        .map_err(kube_err("reading the token's Secret"))?
    {
        None => Ok((SecretView::Missing, None)),
        Some(secret) => Ok((view(&secret, uid, key), secret.resource_version())),
    }
}

async fn delete_secret(api: &Api<HashedSecret>, name: &str, uid: &str) -> Result<(), Error> {
    let Some(secret) = api
        .get_opt(name)
        .await
        .map_err(kube_err("reading a Secret to delete"))?
    else {
        return Ok(());
    };
    let ours = secret
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.uid == uid);
    if !ours {
        return Ok(());
    }
    // Precondition on the uid: never delete a Secret someone recreated meanwhile.
    let params = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: secret.uid(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(kube_err("deleting the token's Secret")(e)),
    }
}

/// Writes the status by server-side apply, with the resourceVersion the
/// decision was based on as a precondition (a stale cache gets a 409 and a retry).
async fn write_status(
    ctx: &Context,
    api: &Api<ApiToken>,
    token: &ApiToken,
    status: &ApiTokenStatus,
    rv: Option<&str>,
) -> Result<Option<String>, Error> {
    let mut status = status.clone();
    // Written by the verifier under its own field manager.
    status.last_used_at = None;
    let name = token.name_any();
    // Serialized straight into the request body: building a `serde_json::Value`
    // first was 5% of the operator's instructions in a storm (callgrind).
    let body = StatusApply {
        api_version: "apikeys.dev/v1alpha1",
        kind: "ApiToken",
        metadata: ApplyMeta {
            name: &name,
            resource_version: rv,
        },
        status: &status,
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let written = super::write::write_light(api, |r| {
        r.patch_subresource("status", &name, &params, &Patch::Apply(&body))
    })
    .await
    .map_err(kube_err("writing the ApiToken status"))?;
    // The version this write replaced is the one its precondition named.
    ctx.replaced(&object_key(token), rv.map(str::to_owned));
    Ok(written)
}

/// The body of a status apply; `resourceVersion` (null when absent) is the precondition.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusApply<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: ApplyMeta<'a>,
    status: &'a ApiTokenStatus,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ApplyMeta<'a> {
    name: &'a str,
    resource_version: Option<&'a str>,
}

async fn write_status_if_changed(
    ctx: &Context,
    api: &Api<ApiToken>,
    token: &ApiToken,
    current: &ApiTokenStatus,
    desired: &ApiTokenStatus,
    rv: Option<&str>,
) -> Result<(), Error> {
    if same_status(current, desired) {
        return Ok(());
    }
    write_status(ctx, api, token, desired, rv).await.map(|_| ())
}

async fn publish(ctx: &Context, token: &ApiToken, note: &Note) {
    let event = Event {
        type_: if note.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: note.reason.to_owned(),
        note: Some(note.message.clone()),
        action: note.action.to_owned(),
        secondary: None,
    };
    let reference = token.object_ref(&());
    let published = if token.name_any().len() > MAX_RECORDER_NAME {
        publish_long_name(ctx, &event, reference).await
    } else {
        ctx.recorder.publish(&event, &reference).await
    };
    if let Err(err) = published {
        // An event is not worth failing the reconcile for.
        debug!(token = %object_key(token), error = %err, "could not publish event");
    }
}

/// The longest object name for which kube's `Recorder` can name an Event
/// (`<name>.<16 hex digits>` must fit the 253 characters of an object name).
const MAX_RECORDER_NAME: usize = 253 - 17;

/// Publishes an Event about a token whose name is too long for the Recorder's
/// naming scheme: the same Event under a shortened name (no series counting).
async fn publish_long_name(
    ctx: &Context,
    event: &Event,
    reference: k8s_openapi::api::core::v1::ObjectReference,
) -> Result<(), kube::Error> {
    use k8s_openapi::api::events::v1::Event as K8sEvent;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    let now = jiff::Timestamp::now();
    let base = reference.name.clone().unwrap_or_default();
    let short = base[..MAX_RECORDER_NAME.min(base.len())].trim_end_matches(['-', '.']);
    let ns = reference.namespace.clone().unwrap_or_default();
    let k8s_event = K8sEvent {
        action: Some(event.action.clone()),
        reason: Some(event.reason.clone()),
        note: event.note.clone(),
        event_time: Some(MicroTime(now)),
        regarding: Some(reference),
        reporting_controller: Some(ctx.config.reporter.clone()),
        reporting_instance: Some(ctx.config.reporter.clone()),
        type_: Some(
            match event.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .to_owned(),
        ),
        metadata: kube::api::ObjectMeta {
            name: Some(format!("{short}.{:x}", now.as_nanosecond())),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    let events: Api<K8sEvent> = ctx.api(&ns);
    events
        .create(&kube::api::PostParams::default(), &k8s_event)
        .await
        .map(|_| ())
}

/// Bumps the token's pod-template annotation on each restart target whose
/// annotation does not carry the current hash yet: one roll per new value.
/// Failures are reported as events only when the value just changed, so a
/// missing target does not produce an event on every resync.
async fn roll_restart_targets(
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
        let result = match target.kind {
            RestartTargetKind::Deployment => {
                roll(
                    ctx.api::<Deployment>(ns),
                    &target.name,
                    &annotation,
                    &short,
                    |d| d.spec.as_ref().and_then(|s| s.template.metadata.as_ref()),
                )
                .await
            }
            RestartTargetKind::StatefulSet => {
                roll(
                    ctx.api::<StatefulSet>(ns),
                    &target.name,
                    &annotation,
                    &short,
                    |d| d.spec.as_ref().and_then(|s| s.template.metadata.as_ref()),
                )
                .await
            }
            RestartTargetKind::DaemonSet => {
                roll(
                    ctx.api::<DaemonSet>(ns),
                    &target.name,
                    &annotation,
                    &short,
                    |d| d.spec.as_ref().and_then(|s| s.template.metadata.as_ref()),
                )
                .await
            }
        };
        match result {
            Ok(true) => {
                let note = Note {
                    warning: false,
                    reason: "RestartTriggered",
                    action: "Restart",
                    message: format!(
                        "rolled {:?} {} onto the new value",
                        target.kind, target.name
                    ),
                };
                publish(ctx, token, &note).await;
            }
            Ok(false) => {}
            Err(err) if !value_changed => {
                debug!(token = %object_key(token), target = %target.name, error = %err, "restart target not rolled");
            }
            Err(err) => {
                let note = Note {
                    warning: true,
                    reason: "RestartTargetFailed",
                    action: "Restart",
                    message: format!("could not roll {:?} {}: {err}", target.kind, target.name),
                };
                publish(ctx, token, &note).await;
            }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{ApplyMeta, StatusApply};
    use crate::api::ApiTokenStatus;

    #[test]
    fn a_status_apply_body_names_the_object_and_its_precondition() {
        let status: ApiTokenStatus =
            serde_json::from_value(json!({"tokenId": "abc", "hash": "sha256:00"})).expect("status");
        for rv in [Some("42"), None] {
            let body = StatusApply {
                api_version: "apikeys.dev/v1alpha1",
                kind: "ApiToken",
                metadata: ApplyMeta {
                    name: "t",
                    resource_version: rv,
                },
                status: &status,
            };
            assert_eq!(
                serde_json::to_value(&body).expect("serializes"),
                json!({
                    "apiVersion": "apikeys.dev/v1alpha1",
                    "kind": "ApiToken",
                    "metadata": {"name": "t", "resourceVersion": rv},
                    "status": {"tokenId": "abc", "hash": "sha256:00"},
                })
            );
        }
    }
}
