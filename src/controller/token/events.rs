//! Events about a token, published best effort: a failed publish is logged
//! and never fails the reconcile. Names too long for kube's `Recorder`, and
//! Events whose note differs each time, are published as new Events.

use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use tracing::debug;

use crate::api::ApiToken;
use crate::controller::context::{Context, object_key};
use crate::controller::token_state::Note;

/// Publishes `note` about `token`.
pub(super) async fn publish(ctx: &Context, token: &ApiToken, note: &Note) {
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
    // kube's Recorder counts an Event like the last one of the same reason
    // and action as a repeat of it, keeping the first one's note: the Events
    // of rotations and revocations name their request, so each is its own.
    let own_note = matches!(
        note.reason,
        "Rotated" | crate::api::conditions::reason::REVOKED
    );
    let published = if own_note || token.name_any().len() > MAX_RECORDER_NAME {
        publish_unaggregated(ctx, &event, reference).await
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

/// Publishes an Event as a new one, never a repeat of an earlier one (no
/// series counting), named after the token (shortened when the name is too
/// long for the Recorder's naming scheme).
async fn publish_unaggregated(
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
