//! Wires both kube-rs Controllers with their watches and runs them until
//! shutdown: one watch per kind, shared between the controllers through
//! stores, and the mappings that turn a key's or a ServiceAccount's event
//! into the objects to reconcile. `local` mode and `apikey-operator run` call
//! [`run_with`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::runtime::controller::{Action, Error as ControllerError};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Config as WatchConfig};
use kube::runtime::{Controller, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{Level, debug, info, warn};

use super::backoff::Backoff;
use super::context::{Config, Context, Handles, object_key, store_ready};
use super::error::Error;
use super::hashed_secret::HashedSecret;
use super::metrics::{API_KEY, API_TOKEN};
use super::token_state::key_fingerprint;
use super::{MANAGED_BY, MANAGED_BY_LABEL, key, token};
use crate::api::{ApiKey, ApiToken, OwnerKind};
use crate::clock::Clock;
use crate::lean::{Lean, Undecodables, scoped};

/// Token events the shared ApiToken watch holds for a controller that has not
/// taken them yet; when full, the watch waits.
const TOKEN_EVENT_BUFFER: usize = 1024;

/// The same for ApiKey events.
const KEY_EVENT_BUFFER: usize = 256;

/// Reason of the Warning Event about an object the controller cannot decode.
pub const UNDECODABLE: &str = "Undecodable";

/// A watch's events as the controllers take them: the objects touched.
type Touched<K> = Result<K, watcher::Error>;

/// The last fingerprint per key (see `tokens_of_changed_key`).
type KeySeen = Mutex<HashMap<ObjectRef<ApiKey>, u64>>;

/// Runs both controllers with an injected clock and handles (tests, metrics).
pub async fn run_with(
    client: Client,
    config: Config,
    clock: Arc<dyn Clock>,
    handles: Arc<Handles>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: config.reporter.clone(),
            instance: None,
        },
    );
    let (secrets, secret_stream) = watch_secrets(&client, &config);
    let (tokens, token_controller, token_events) =
        watch_tokens(&client, &config, &recorder, &handles);
    let unreadable_keys = undecodables(&recorder, &handles, API_KEY);
    let (keys, key_controller, key_stream) = watch_keys(&client, &config, unreadable_keys.clone());

    handles.synced.store(false, Ordering::SeqCst);
    let caches_synced = tokio::spawn(report_synced(
        (tokens.clone(), keys.clone(), secrets.clone()),
        handles.clone(),
    ));

    let ctx = Arc::new(Context {
        client: client.clone(),
        config: config.clone(),
        clock,
        recorder,
        handles: handles.clone(),
        tokens,
        keys,
        secrets,
        backoff: Backoff::default(),
        key_throttle: Mutex::default(),
        superseded: Mutex::default(),
        unreadable_keys,
    });

    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    let token_run = run_token_controller(
        token_controller,
        secret_stream,
        key_stream,
        shutdown.clone(),
        ctx.clone(),
    );
    let sa_api: Api<ServiceAccount> = scoped(&client, config.namespace.as_deref());
    let key_run = run_key_controller(key_controller, token_events, sa_api, shutdown, ctx);

    info!("controllers started");
    futures::join!(token_run, key_run);
    caches_synced.abort();
    handles.synced.store(false, Ordering::SeqCst);
    info!("controllers stopped");
}

/// The watch configuration of ApiKeys and ApiTokens: the shard's selector.
fn selected(config: &Config) -> WatchConfig {
    match &config.selector {
        Some(selector) => WatchConfig::default().labels(selector),
        None => WatchConfig::default(),
    }
}

/// Managed Secrets only, and only the hash of their values kept in memory.
fn watch_secrets(
    client: &Client,
    config: &Config,
) -> (
    Store<HashedSecret>,
    impl Stream<Item = Touched<HashedSecret>> + Send + 'static,
) {
    let api: Api<HashedSecret> = scoped(client, config.namespace.as_deref());
    let (secrets, writer) = reflector::store();
    let stream = watcher::watcher(
        api,
        WatchConfig::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")),
    )
    .default_backoff()
    .modify(|secret: &mut HashedSecret| {
        // The reconciler reads only the controller ownerReference and the
        // value hashes; the rest of a cached Secret is memory.
        secret.labels_mut().clear();
        secret.annotations_mut().clear();
        secret.metadata.creation_timestamp = None;
    })
    .reflect(writer)
    .touched_objects();
    (secrets, stream)
}

/// One ApiToken watch feeds both controllers: the token controller through
/// a subscription to the shared store (it reads the store fed by the stream
/// that triggers it, so a reconcile never sees an object older than the
/// event that woke it), the key controller through the events themselves,
/// deletions included, which the subscription does not pass on. A second
/// watch decoded every token event twice and kept a second copy of each.
fn watch_tokens(
    client: &Client,
    config: &Config,
    recorder: &Recorder,
    handles: &Handles,
) -> (
    Store<ApiToken>,
    Controller<ApiToken>,
    impl Stream<Item = Touched<ApiToken>> + Send + 'static,
) {
    let api: Api<Lean<ApiToken>> = scoped(client, config.namespace.as_deref());
    let (tokens, writer) = reflector::store_shared(TOKEN_EVENT_BUFFER);
    let subscription = writer
        .subscribe()
        .expect("a store made by store_shared can be subscribed to");
    let unreadable = undecodables(recorder, handles, API_TOKEN);
    let events = crate::lean::watcher_tracking(api, selected(config), unreadable.clone())
        .default_backoff()
        .modify(slim_token)
        .reflect_shared(writer)
        .inspect_ok(move |event| unreadable.settle(event))
        .touched_objects();
    let controller =
        Controller::for_shared_stream(subscription, tokens.clone()).with_config(limits(config));
    (tokens, controller, events)
}

/// One ApiKey watch, likewise: its store is read by the token reconciler,
/// its events wake a key's tokens, and its subscription triggers the key
/// controller.
fn watch_keys(
    client: &Client,
    config: &Config,
    unreadable: Arc<Undecodables<ApiKey>>,
) -> (
    Store<ApiKey>,
    Controller<ApiKey>,
    impl Stream<Item = Touched<ApiKey>> + Send + 'static,
) {
    let api: Api<Lean<ApiKey>> = scoped(client, config.namespace.as_deref());
    let (keys, writer) = reflector::store_shared(KEY_EVENT_BUFFER);
    let subscription = writer
        .subscribe()
        .expect("a store made by store_shared can be subscribed to");
    let stream = crate::lean::watcher_tracking(api, selected(config), unreadable.clone())
        .default_backoff()
        .reflect_shared(writer)
        .inspect_ok(move |event| unreadable.settle(event))
        .touched_objects();
    // No debounce: it keeps postponing a key while its tokens change, and a
    // busy key would never adopt new tokens. Requests for a key that arrive
    // during its reconcile are coalesced into one follow-up run anyway.
    let controller =
        Controller::for_shared_stream(subscription, keys.clone()).with_config(limits(config));
    (keys, controller, stream)
}

fn limits(config: &Config) -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default().concurrency(config.concurrency)
}

/// Sets `handles.synced` once every store has listed.
async fn report_synced(
    (tokens, keys, secrets): (Store<ApiToken>, Store<ApiKey>, Store<HashedSecret>),
    handles: Arc<Handles>,
) {
    let (a, b, c) = futures::join!(
        store_ready(&tokens),
        store_ready(&keys),
        store_ready(&secrets)
    );
    if a && b && c {
        handles.synced.store(true, Ordering::SeqCst);
        info!("controller caches synced");
    }
}

/// The ApiToken controller: woken by its tokens, their Secrets and their keys.
async fn run_token_controller(
    controller: Controller<ApiToken>,
    secret_stream: impl Stream<Item = Touched<HashedSecret>> + Send + 'static,
    key_stream: impl Stream<Item = Touched<ApiKey>> + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    ctx: Arc<Context>,
) {
    let (keys, tokens) = (ctx.keys.clone(), ctx.tokens.clone());
    // A deleted key is gone from the store by the time its event arrives here.
    let key_seen = KeySeen::default();
    controller
        .owns_stream(secret_stream)
        .watches_stream(key_stream, move |key: ApiKey| {
            tokens_of_changed_key(&key_seen, &keys, &tokens, &key)
        })
        .graceful_shutdown_on(shutdown)
        // Boxed: the runtime moves a spawned future by value, and a
        // reconcile's state machine is kilobytes.
        .run(
            |t, c| Box::pin(token::reconcile(t, c)),
            |t, e, c| retry_after_error(API_TOKEN, t, e, c),
            ctx,
        )
        .for_each(|result| async move {
            if let Err(err) = result {
                log_controller_error("ApiToken", &err);
            }
        })
        .await
}

/// The tokens of `key` to wake for its event: none when what their
/// reconcile reads of the key is unchanged. A key's status is rewritten as
/// its token counts change, which must not wake (and re-read) all of its
/// tokens; `seen` keeps the last fingerprint per key.
fn tokens_of_changed_key(
    seen: &KeySeen,
    keys: &Store<ApiKey>,
    tokens: &Store<ApiToken>,
    key: &ApiKey,
) -> Vec<ObjectRef<ApiToken>> {
    let key_ref = ObjectRef::from_obj(key);
    let changed = {
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        if keys.get(&key_ref).is_some() {
            let fingerprint = key_fingerprint(key);
            seen.insert(key_ref, fingerprint) != Some(fingerprint)
        } else {
            seen.remove(&key_ref);
            true
        }
    };
    if !changed {
        return Vec::new();
    }
    // Filtered by reference inside the store, not over a clone of it.
    let ns = key.metadata.namespace.as_deref();
    let name = key.name_any();
    tokens
        .state_filter(|t| t.metadata.namespace.as_deref() == ns && t.spec.api_key_ref.name == name)
        .iter()
        .map(|t| ObjectRef::from_obj(&**t))
        .collect()
}

/// The ApiKey controller: woken by its keys, their tokens and the
/// ServiceAccounts that own them.
async fn run_key_controller(
    controller: Controller<ApiKey>,
    token_events: impl Stream<Item = Touched<ApiToken>> + Send + 'static,
    sa_api: Api<ServiceAccount>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    ctx: Arc<Context>,
) {
    let keys = ctx.keys.clone();
    controller
        .watches_stream(token_events, |token: ApiToken| {
            let ns = token.namespace()?;
            // Empty for the stand-in of a token that cannot be decoded.
            let key = Some(&token.spec.api_key_ref.name).filter(|k| !k.is_empty())?;
            Some(ObjectRef::new(key).within(&ns))
        })
        .watches(sa_api, WatchConfig::default(), move |sa: ServiceAccount| {
            keys_owned_by(&keys, &sa)
        })
        .graceful_shutdown_on(shutdown)
        .run(
            |k, c| Box::pin(key::reconcile(k, c)),
            |k, e, c| retry_after_error(API_KEY, k, e, c),
            ctx,
        )
        .for_each(|result| async move {
            if let Err(err) = result {
                log_controller_error("ApiKey", &err);
            }
        })
        .await
}

/// The keys whose owner is the ServiceAccount `sa`.
fn keys_owned_by(keys: &Store<ApiKey>, sa: &ServiceAccount) -> Vec<ObjectRef<ApiKey>> {
    let ns = sa.metadata.namespace.as_deref();
    let name = sa.name_any();
    keys.state_filter(|k| {
        k.metadata.namespace.as_deref() == ns
            && k.spec.owner.kind == OwnerKind::ServiceAccount
            && k.spec.owner.name == name
    })
    .iter()
    .map(|k| ObjectRef::from_obj(&**k))
    .collect()
}

/// The error policy of both controllers: count the error by bounded kind,
/// log it and retry with the object's backoff.
fn retry_after_error<K: Resource>(
    kind: &'static str,
    obj: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.handles.metrics.errored(kind, error.kind());
    let object = object_key(obj.as_ref());
    let wait = ctx.backoff.failed(object.clone(), error);
    warn!(kind, object = %object, error_kind = error.kind(), error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// Logs what a controller's stream reports besides reconcile results, at the level it deserves.
fn log_controller_error<R, Q>(controller: &'static str, err: &ControllerError<R, Q>)
where
    R: std::error::Error + 'static,
    Q: std::error::Error + 'static,
{
    match controller_error_level(err) {
        Some(Level::WARN) => warn!(controller, error = %err, "controller error"),
        Some(_) => debug!(controller, error = %err, "nothing to reconcile"),
        None => {}
    }
}

/// How loud a controller stream's error is: `None` when it was logged already.
fn controller_error_level<R, Q>(err: &ControllerError<R, Q>) -> Option<Level>
where
    R: std::error::Error + 'static,
    Q: std::error::Error + 'static,
{
    match err {
        // Logged, with its object and retry, by the error policy.
        ControllerError::ReconcilerFailed(..) => None,
        // A watch event pointed at an object that is not in the cache: a Secret whose token
        // was deleted, a token whose key is gone or was never created. Nothing to reconcile,
        // and nothing anyone should act on.
        ControllerError::ObjectNotFound(_) => Some(Level::DEBUG),
        // Named by controller, not kind: the ApiKey controller also carries the shared
        // ApiToken watch, so a failed ApiToken watch is reported by it.
        _ => Some(Level::WARN),
    }
}

#[cfg(test)]
mod error_level_tests {
    use kube::runtime::controller::Error as ControllerError;
    use kube::runtime::reflector::ObjectRef;
    use kube::runtime::watcher;
    use tracing::Level;

    use super::controller_error_level;
    use crate::api::ApiToken;
    use crate::controller::error::Error;
    use crate::controller::faults::FaultPoint;

    /// Only queue and watch failures warn: a reconcile failure is the error policy's to log
    /// (once), and an event about an object that is gone is routine.
    #[test]
    fn controller_stream_errors_warn_only_when_something_is_wrong() {
        type E = ControllerError<Error, watcher::Error>;
        let gone: ObjectRef<ApiToken> = ObjectRef::new("t").within("ns");
        let not_found = E::ObjectNotFound(Box::new(gone.clone().erase()));
        assert_eq!(controller_error_level(&not_found), Some(Level::DEBUG));
        let failed = E::ReconcilerFailed(
            Error::InjectedFault(FaultPoint::AfterSecret),
            Box::new(gone.erase()),
        );
        assert_eq!(controller_error_level(&failed), None);
        let queue = E::QueueError(watcher::Error::NoResourceVersion);
        assert_eq!(controller_error_level(&queue), Some(Level::WARN));
    }
}

/// Drops from a cached ApiToken what neither reconciler reads; every token
/// is cached, so this is memory per token.
fn slim_token(t: &mut ApiToken) {
    // Labels and creation time are not read (nor field managers, which `Lean`
    // never decodes); display name, description and tags (up to 1 KiB and
    // 64 entries) are for people and clients only.
    t.labels_mut().clear();
    t.metadata.creation_timestamp = None;
    t.spec.display_name = None;
    t.spec.description = None;
    t.spec.tags.clear();
    // Only our own annotations are read (`apikeys.dev/rotate`, `apikeys.dev/revoke`); kubectl's
    // last-applied-configuration alone can be as big as the token.
    t.annotations_mut()
        .retain(|k, _| k.starts_with(crate::api::GROUP_PREFIX));
    // Decoded lists grow to four entries; a token has two or three conditions.
    if let Some(status) = t.status.as_mut() {
        status.conditions.shrink_to_fit();
    }
}

/// The objects of `kind` its watch cannot decode, counted in the metrics;
/// a Warning Event is published about each as it is seen (in the background;
/// best effort): `kubectl describe` then says why the object is ignored,
/// where its status may still say Ready.
fn undecodables<K>(
    recorder: &Recorder,
    handles: &Handles,
    kind: &'static str,
) -> Arc<Undecodables<K>>
where
    K: Resource<DynamicType = ()>,
{
    let recorder = recorder.clone();
    let report = move |stub: &K, why: &str| {
        let event = undecodable_event(why);
        let reference = stub.object_ref(&());
        let recorder = recorder.clone();
        tokio::spawn(async move {
            if let Err(err) = recorder.publish(&event, &reference).await {
                warn!(error = %err, "could not publish the Undecodable event");
            }
        });
    };
    Arc::new(Undecodables::new(report, handles.metrics.undecodable(kind)))
}

/// The Warning Event about an object that cannot be decoded, for reason `why`.
fn undecodable_event(why: &str) -> Event {
    // An Event's note holds at most 1 KiB.
    let mut cut = why.len().min(600);
    while !why.is_char_boundary(cut) {
        cut -= 1;
    }
    let why = &why[..cut];
    Event {
        type_: EventType::Warning,
        reason: UNDECODABLE.to_owned(),
        note: Some(format!(
            "The operator cannot read this object ({why}). It is treated as deleted, \
             and its values are rejected, until the field is corrected \
             (kubectl edit; add --subresource=status for a status field)."
        )),
        action: "Decode".to_owned(),
        secondary: None,
    }
}

#[cfg(test)]
mod slim_tests {
    use serde_json::json;

    use super::slim_token;
    use crate::api::ApiToken;

    #[test]
    fn a_cached_token_keeps_what_the_reconcilers_read() {
        let mut token: ApiToken = serde_json::from_value(json!({
            "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken",
            "metadata": {
                "name": "t", "namespace": "ns", "uid": "u", "resourceVersion": "9",
                "generation": 2, "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"team": "a"},
                "annotations": {"apikeys.dev/rotate": "r1", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "ownerReferences": [{"apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiKey",
                    "name": "k", "uid": "uk", "controller": true}]
            },
            "spec": {
                "apiKeyRef": {"name": "k"}, "displayName": "CI", "description": "for CI",
                "tags": {"env": "prod"}, "disabled": true,
                "expiration": {"lifetime": "30d"}, "rotation": {"every": "7d"},
                "secret": {"name": "s", "key": "k"}
            },
            "status": {"tokenId": "id", "conditions": [
                {"type": "Ready", "status": "True", "reason": "Issued", "message": "m",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ]}
        }))
        .expect("decodes");
        let before = token.clone();
        slim_token(&mut token);

        let mut expected = before;
        expected.metadata.labels = Some(Default::default());
        expected.metadata.creation_timestamp = None;
        expected
            .metadata
            .annotations
            .as_mut()
            .expect("annotations")
            .remove("kubectl.kubernetes.io/last-applied-configuration");
        expected.spec.display_name = None;
        expected.spec.description = None;
        expected.spec.tags.clear();
        assert_eq!(token, expected);
        assert_eq!(
            token.status.as_ref().map(|s| s.conditions.capacity()),
            Some(1),
            "conditions shrunk to their length"
        );
    }

    /// The cache holds each token in an `Arc`, which jemalloc rounds up to a
    /// size class; 1 KiB is the one it fits. A new inline field that pushes
    /// it into the next class (1,280 bytes) costs 256 bytes per cached token:
    /// box the field instead (as `spec.secret` is).
    #[test]
    fn a_cached_token_fits_the_1_kib_allocation_class() {
        let arc = 2 * size_of::<usize>() + size_of::<ApiToken>();
        assert!(arc <= 1024, "an Arc<ApiToken> takes {arc} bytes");
    }
}
