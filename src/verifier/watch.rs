//! Keeps the index current by watching ApiTokens, ApiKeys and the metadata of
//! ServiceAccounts (never Secrets: status holds hashes only). [`apply_event`]
//! is the pure part, tested by feeding it watcher events; [`watch`] is the
//! I/O loop around it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use tracing::{debug, info, warn};

use super::index::{Index, Skipped};
use super::metrics::Metrics;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::core::PartialObjectMeta;

use crate::api::{ApiKey, ApiToken};
use crate::lean::Lean;

/// The index shared by the watches (writers) and the HTTP handlers (readers).
/// Writers hold the lock for one event; readers for one verify.
pub type SharedIndex = Arc<RwLock<Index>>;

/// Whether every watch has completed its initial list.
#[derive(Debug, Default)]
pub struct Readiness {
    tokens: AtomicBool,
    keys: AtomicBool,
    service_accounts: AtomicBool,
}

impl Readiness {
    /// True once ApiTokens, ApiKeys and ServiceAccounts were all listed once;
    /// stays true through later relists (the index keeps answering from what
    /// it had).
    pub fn ready(&self) -> bool {
        self.tokens.load(Ordering::Acquire)
            && self.keys.load(Ordering::Acquire)
            && self.service_accounts.load(Ordering::Acquire)
    }

    pub(crate) fn mark(&self, kind: Kind) {
        match kind {
            Kind::Token => &self.tokens,
            Kind::Key => &self.keys,
            Kind::ServiceAccount => &self.service_accounts,
        }
        .store(true, Ordering::Release);
    }
}

/// The kinds the verifier watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Token,
    Key,
    /// Metadata only: which ServiceAccounts exist, with which uid.
    ServiceAccount,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Token => "ApiToken",
            Kind::Key => "ApiKey",
            Kind::ServiceAccount => "ServiceAccount",
        }
    }
}

/// An object the index holds: how it enters, leaves and is named in a relist.
pub trait Indexed: kube::Resource + Clone + Send + 'static {
    /// Adds or replaces the object; returns what was not indexed.
    fn upsert(&self, index: &mut Index) -> Option<Skipped>;
    /// Removes the object.
    fn remove(&self, index: &mut Index);
    /// The name under which a relist remembers having seen the object.
    fn relist_name(&self) -> Option<String>;
    /// Drops every object of this kind not seen in a relist.
    fn retain(index: &mut Index, seen: &HashSet<String>);
    /// Which kind this is, for readiness and logs.
    fn watched_kind() -> Kind;
}

impl Indexed for ApiToken {
    fn upsert(&self, index: &mut Index) -> Option<Skipped> {
        index.upsert_token(self)
    }
    fn remove(&self, index: &mut Index) {
        index.remove_token(self)
    }
    fn relist_name(&self) -> Option<String> {
        Some(Index::relist_name_of(self))
    }
    fn retain(index: &mut Index, seen: &HashSet<String>) {
        index.retain_tokens(seen)
    }
    fn watched_kind() -> Kind {
        Kind::Token
    }
}

impl Indexed for ApiKey {
    fn upsert(&self, index: &mut Index) -> Option<Skipped> {
        index.upsert_key(self);
        None
    }
    fn remove(&self, index: &mut Index) {
        index.remove_key(self)
    }
    fn relist_name(&self) -> Option<String> {
        Some(format!(
            "{}/{}",
            self.namespace().unwrap_or_default(),
            self.name_any()
        ))
    }
    fn retain(index: &mut Index, seen: &HashSet<String>) {
        index.retain_keys(seen)
    }
    fn watched_kind() -> Kind {
        Kind::Key
    }
}

impl Indexed for PartialObjectMeta<ServiceAccount> {
    fn upsert(&self, index: &mut Index) -> Option<Skipped> {
        let namespace = self.namespace().unwrap_or_default();
        let uid = self.uid().unwrap_or_default();
        index.upsert_service_account(&namespace, &self.name_any(), &uid);
        None
    }
    fn remove(&self, index: &mut Index) {
        index.remove_service_account(&self.namespace().unwrap_or_default(), &self.name_any())
    }
    fn relist_name(&self) -> Option<String> {
        Some(format!(
            "{}/{}",
            self.namespace().unwrap_or_default(),
            self.name_any()
        ))
    }
    fn retain(index: &mut Index, seen: &HashSet<String>) {
        index.retain_service_accounts(seen)
    }
    fn watched_kind() -> Kind {
        Kind::ServiceAccount
    }
}

/// Relist bookkeeping of one watch.
#[derive(Debug, Default)]
pub struct WatchState {
    /// Names seen since the relist began (`Init`), until `InitDone`.
    relisting: Option<HashSet<String>>,
    /// At least one relist completed.
    pub synced: bool,
}

/// Applies one watcher event to the index. During a relist the index keeps
/// answering from the old state and new objects are upserted as they come;
/// at `InitDone` whatever the relist did not see (deleted while the watch was
/// down) is dropped.
pub fn apply_event<K: Indexed>(
    index: &mut Index,
    state: &mut WatchState,
    event: Event<K>,
) -> Option<Skipped> {
    match event {
        Event::Apply(obj) => obj.upsert(index),
        Event::Delete(obj) => {
            obj.remove(index);
            None
        }
        Event::Init => {
            state.relisting = Some(HashSet::new());
            None
        }
        Event::InitApply(obj) => {
            if let (Some(seen), Some(name)) = (state.relisting.as_mut(), obj.relist_name()) {
                seen.insert(name);
            }
            obj.upsert(index)
        }
        Event::InitDone => {
            if let Some(seen) = state.relisting.take() {
                K::retain(index, &seen);
            }
            state.synced = true;
            None
        }
    }
}

/// Watches one kind until the stream ends (it does not on its own: the
/// watcher retries with backoff), applying events to the index.
pub async fn watch<K>(
    api: Api<Lean<K>>,
    index: SharedIndex,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
) where
    K: Indexed + crate::lean::Stub,
{
    let events = crate::lean::watcher(api, watcher::Config::default());
    follow(events, index, readiness, metrics).await;
}

/// Watches the metadata of ServiceAccounts (their names and uids, nothing
/// else), as [`watch`] does.
pub async fn watch_service_accounts(
    api: Api<PartialObjectMeta<ServiceAccount>>,
    index: SharedIndex,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
) {
    let events = watcher::watcher(api, watcher::Config::default());
    follow(events, index, readiness, metrics).await;
}

/// Applies the events of one watch to the index until the stream ends.
async fn follow<K: Indexed>(
    events: impl futures::Stream<Item = Result<Event<K>, watcher::Error>> + Send,
    index: SharedIndex,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
) {
    let kind = K::watched_kind();
    let label = kind.label();
    let mut state = WatchState::default();
    let mut events = events.default_backoff().boxed();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                warn!(kind = label, error = %err, "watch failed; retrying with backoff");
                continue;
            }
        };
        let object = match &event {
            Event::Apply(obj) | Event::InitApply(obj) | Event::Delete(obj) => Some(format!(
                "{}/{}",
                obj.namespace().unwrap_or_default(),
                obj.name_any()
            )),
            Event::Init | Event::InitDone => None,
        };
        let was_synced = state.synced;
        let skipped = {
            let mut index = index.write().unwrap_or_else(|e| e.into_inner());
            let skipped = apply_event(&mut index, &mut state, event);
            metrics.set_index_size(index.tokens_len(), index.keys_len());
            skipped
        };
        match skipped {
            Some(Skipped::NoTokenId) => {
                debug!(
                    kind = label,
                    object = object.as_deref(),
                    "not indexed: {}",
                    Skipped::NoTokenId.as_str()
                );
            }
            Some(reason) => {
                warn!(
                    kind = label,
                    object = object.as_deref(),
                    "not indexed: {}",
                    reason.as_str()
                );
            }
            None => {}
        }
        if state.synced && !was_synced {
            readiness.mark(kind);
            info!(kind = label, "initial list synced");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::verifier::index::tests::{ID, issued, ready_key, token_json, value};

    fn now() -> jiff::Timestamp {
        "2026-06-01T12:00:00Z".parse().expect("timestamp")
    }

    #[test]
    fn apply_and_delete_events_take_effect_at_once() {
        let mut index = Index::new();
        let (mut tokens, mut keys) = (WatchState::default(), WatchState::default());
        let v = value(ID);
        let token = token_json("tok", false, issued(&v));

        apply_event(&mut index, &mut keys, Event::Apply(ready_key()));
        apply_event(&mut index, &mut tokens, Event::Apply(token.clone()));
        assert!(index.verify(v.expose_secret(), now()).is_ok());

        apply_event(&mut index, &mut tokens, Event::Delete(token.clone()));
        assert_eq!(
            index.verify(v.expose_secret(), now()).map(|_| ()),
            Err(crate::verifier::index::Reject::Unknown)
        );

        apply_event(&mut index, &mut tokens, Event::Apply(token));
        apply_event(&mut index, &mut keys, Event::Delete(ready_key()));
        assert_eq!(
            index.verify(v.expose_secret(), now()).map(|_| ()),
            Err(crate::verifier::index::Reject::KeyNotReady)
        );
    }

    #[test]
    fn relist_keeps_answering_and_drops_what_vanished() {
        let mut index = Index::new();
        let (mut tokens, mut keys) = (WatchState::default(), WatchState::default());
        let v = value(ID);
        let other = "0000000000000000";
        let w = value(other);
        let gone = token_json(
            "gone",
            false,
            json!({ "tokenId": other, "hash": w.hash().as_str() }),
        );

        // First list.
        apply_event::<ApiKey>(&mut index, &mut keys, Event::Init);
        apply_event(&mut index, &mut keys, Event::InitApply(ready_key()));
        apply_event::<ApiKey>(&mut index, &mut keys, Event::InitDone);
        apply_event::<ApiToken>(&mut index, &mut tokens, Event::Init);
        assert!(!tokens.synced);
        apply_event(&mut index, &mut tokens, Event::InitApply(gone));
        apply_event(
            &mut index,
            &mut tokens,
            Event::InitApply(token_json("tok", false, issued(&v))),
        );
        apply_event::<ApiToken>(&mut index, &mut tokens, Event::InitDone);
        assert!(tokens.synced && keys.synced);
        assert_eq!(index.tokens_len(), 2);

        // The watch broke; "gone" was deleted meanwhile. During the relist
        // both still answer; after InitDone only what was listed does.
        apply_event::<ApiToken>(&mut index, &mut tokens, Event::Init);
        apply_event(
            &mut index,
            &mut tokens,
            Event::InitApply(token_json("tok", false, issued(&v))),
        );
        assert!(index.verify(w.expose_secret(), now()).is_ok());
        apply_event::<ApiToken>(&mut index, &mut tokens, Event::InitDone);
        assert!(index.verify(v.expose_secret(), now()).is_ok());
        assert!(index.verify(w.expose_secret(), now()).is_err());
        assert_eq!(index.tokens_len(), 1);
    }

    #[test]
    fn readiness_needs_every_kind() {
        let readiness = Readiness::default();
        assert!(!readiness.ready());
        readiness.mark(Kind::Token);
        assert!(!readiness.ready());
        readiness.mark(Kind::Key);
        assert!(!readiness.ready());
        readiness.mark(Kind::ServiceAccount);
        assert!(readiness.ready());
    }
}
