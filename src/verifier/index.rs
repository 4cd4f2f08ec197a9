//! The verifier's in-memory index: ApiTokens keyed by their tokenId, with the
//! hashes that may be accepted and the ApiKeys whose principal they resolve
//! to. Pure, no I/O: `watch` feeds it objects, `http` asks it [`Index::verify`].
//!
//! A tokenId is bound to its object: ids are derived from the ApiToken's uid
//! (`TokenId::for_uid`), and when several objects claim one id (a status
//! copied by hand), the one the id was derived for is the only one accepted,
//! whatever order they arrive in; the others are kept aside, so that the
//! rightful one stays when they are deleted. Ids issued before derivation
//! (random) are accepted only while a single object claims them.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use jiff::Timestamp;
use kube::ResourceExt;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::api::conditions::READY;
use crate::api::{ApiKey, ApiToken, OwnerKind};
use crate::clock::truncate_to_minute;
use crate::token::{self, TokenHash, TokenId};

mod binding;
mod retired;
mod service_accounts;
mod slab;
mod verdict;

use retired::Retired;
use slab::Accepted;

use verdict::pack_audiences;
pub use verdict::{Audiences, Identity, IdentityRef, KeyHeaders, Reject, Skipped};

/// A tokenId is 16 ASCII characters; stored inline instead of as a `String`.
type IdKey = [u8; 16];
type Digest = [u8; 32];

/// Every ApiToken and ApiKey the verifier knows, as far as verifying needs.
#[derive(Default)]
pub struct Index {
    /// Per tokenId, the one claim that is accepted.
    tokens: Accepted,
    /// Claims of an id by other objects than the accepted one (or by several
    /// objects, none accepted): never accepted, kept to settle the id again
    /// when a claimant changes or goes. Empty unless a status was copied.
    contenders: HashMap<IdKey, Vec<TokenEntry>>,
    /// Fingerprint of `namespace/name` → the tokenId indexed for that object,
    /// so an object whose tokenId changed (status edited by hand) or that was
    /// deleted loses its old entry. 64-bit fingerprints keep this map small;
    /// a collision is detected (the entry's name is compared) and only costs
    /// a stale entry until the next relist.
    by_object: HashMap<u64, IdKey>,
    /// namespace → key name → key.
    keys: HashMap<Arc<str>, HashMap<Arc<str>, KeyEntry>>,
    key_count: usize,
    /// namespace → ServiceAccount name → [`uid_fingerprint`] of its uid: a
    /// ServiceAccount key's values authenticate only while the ServiceAccount
    /// it was bound to exists (as bound ServiceAccount tokens do).
    service_accounts: HashMap<Arc<str>, HashMap<Box<str>, u32>>,
}

/// What verifying needs of one ApiToken; kept small (see `entry_is_compact`):
/// the benchmark's heap figure per indexed token has a goal of 256 bytes.
struct TokenEntry {
    /// The token's namespace and ApiKey, one pointer shared by the key's tokens.
    key: Arc<KeyName>,
    /// `<name>/<uid>`, then each of `spec.audiences` after a NUL, in one
    /// allocation (names cannot contain `/`; see [`Audiences`]).
    name_and_uid: Box<str>,
    current: Option<Digest>,
    previous: Box<[Previous]>,
    /// Unix seconds (Kubernetes times have whole seconds); `NEVER` without expiry.
    expires_at: i64,
    /// Unix seconds of the last minute of use known here: `status.lastUsedAt`
    /// from the watch, or a later minute `note_use` saw; `NOT_USED` when neither.
    last_used_at: AtomicI64,
    /// [`uid_fingerprint`] of the ApiKey the values were issued under
    /// (`status.apiKeyUID`, else the token's controller ownerReference),
    /// `NO_OWNER` without either.
    owner_key: u32,
    disabled: bool,
    /// The tokenId is the one derived from this object's uid.
    bound: bool,
}

/// `TokenEntry::expires_at` of a token without expiry: no instant reaches it.
const NEVER: i64 = i64::MAX;
/// `TokenEntry::last_used_at` when `status.lastUsedAt` is absent.
const NOT_USED: i64 = i64::MIN;
/// `TokenEntry::owner_key` of a token no ApiKey controls (yet).
const NO_OWNER: u32 = 0;

/// A 32-bit fingerprint of an object's uid (FNV-1a), never `NO_OWNER`: four
/// bytes per token tell a value issued under an earlier ApiKey of the same
/// name from one of the current key (a false match is a 1 in 4 billion
/// chance, and the controller removes such a value anyway).
fn uid_fingerprint(uid: &str) -> u32 {
    let hash = uid.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    hash.max(1)
}

/// The principal a key's tokens authenticate as, derived from its spec
/// (`api::owner::principal`), never read from its status: anyone who may
/// patch `apikeys/status` could write any name there. `status.principal`
/// only has to be set (the controller resolved the key); a different name
/// there changes nothing in the answer. A User key naming a `system:` user,
/// or a name with control characters, names no one whatever its status says.
fn principal_of(key: &ApiKey, namespace: &str) -> Option<String> {
    key.status.as_ref()?.principal.as_deref()?;
    crate::api::owner::principal(namespace, &key.spec.owner).ok()
}

/// A namespace and an ApiKey name.
struct KeyName {
    namespace: Arc<str>,
    name: Arc<str>,
}

struct Previous {
    hash: Digest,
    valid_until: Timestamp,
    /// `Some` for the value `status.retired` records: never accepted, only
    /// answered with why it went.
    retired: Option<Retired>,
}

struct KeyEntry {
    /// Shared with the entries of tokens indexed after the key.
    id: Arc<KeyName>,
    principal: Option<Arc<str>>,
    owner_kind: OwnerKind,
    ready: bool,
    /// [`uid_fingerprint`] of the key's uid.
    uid: u32,
    /// For a ServiceAccount key: the ServiceAccount's name and the
    /// [`uid_fingerprint`] of the uid the key is bound to (`status.ownerUID`,
    /// `NO_OWNER` before the controller recorded one).
    service_account: Option<(Box<str>, u32)>,
    /// `spec.tokenDefaults.audiences`, packed as in [`Audiences`].
    audiences: Box<str>,
    headers: KeyHeaders,
}

impl Index {
    pub fn new() -> Index {
        Index::default()
    }

    /// Number of indexed tokens.
    pub fn tokens_len(&self) -> usize {
        self.tokens.len()
    }

    /// Number of indexed keys.
    pub fn keys_len(&self) -> usize {
        self.key_count
    }

    /// `(namespace, name, expiresAt)` of every indexed token whose value
    /// expires or has expired (`status.expiresAt` stays after the controller
    /// removed an expired value), for the expiry gauge on /metrics: an expired
    /// token keeps its series, in the past, until it is given a fresh value,
    /// disabled or deleted.
    pub fn expirations(&self) -> Vec<(Arc<str>, String, Timestamp)> {
        self.tokens
            .values()
            .filter(|entry| !entry.disabled)
            .filter(|entry| entry.expires_at != NEVER)
            .filter_map(|entry| {
                let expires_at = Timestamp::from_second(entry.expires_at).ok()?;
                let (name, _) = entry.split_name_and_uid();
                Some((entry.key.namespace.clone(), name.to_owned(), expires_at))
            })
            .collect()
    }

    /// Checks a presented value at `now`. Malformed values are rejected
    /// before any lookup; the value is compared in constant time with the
    /// current hash and every previous hash, and only after a match does the
    /// answer depend on the token's state, so that a caller without the
    /// secret learns no more than "unknown" or "mismatch".
    pub fn verify(&self, presented: &str, now: Timestamp) -> Result<Identity, Reject> {
        self.verify_ref(presented, now)
            .map(|identity| identity.to_identity())
    }

    /// [`Index::verify`], answering with names borrowed from the index.
    pub fn verify_ref<'a>(
        &'a self,
        presented: &'a str,
        now: Timestamp,
    ) -> Result<IdentityRef<'a>, Reject> {
        self.verify_entry(presented, now)
            .map(|(identity, _)| identity)
    }

    /// [`Index::verify_ref`], and for an accepted value what [`Index::note_use`]
    /// answers, from the one lookup.
    pub fn verify_noting_use<'a>(
        &'a self,
        presented: &'a str,
        now: Timestamp,
    ) -> Result<(IdentityRef<'a>, bool), Reject> {
        self.verify_entry(presented, now)
            .map(|(identity, entry)| (identity, entry.note_use(now)))
    }

    fn verify_entry<'a>(
        &'a self,
        presented: &'a str,
        now: Timestamp,
    ) -> Result<(IdentityRef<'a>, &'a TokenEntry), Reject> {
        let parsed = token::parse(presented).map_err(Reject::Malformed)?;
        let entry = self
            .tokens
            .get(&id_key(parsed.token_id()).ok_or(Reject::Unknown)?)
            .ok_or(Reject::Unknown)?;

        let digest = parsed.digest();
        let mut current = Choice::from(0);
        if let Some(stored) = &entry.current {
            current = digest.ct_eq(stored);
        }
        let mut previous_any = Choice::from(0);
        let mut previous_in_grace = Choice::from(0);
        let mut retired = 0u8;
        for previous in entry.previous.iter() {
            let matched = digest.ct_eq(&previous.hash);
            let code = previous.retired.map_or(0, |why| why as u8);
            let accepted = Choice::from(u8::from(code == 0));
            previous_any |= matched & accepted;
            previous_in_grace |=
                matched & accepted & Choice::from(u8::from(now < previous.valid_until));
            retired.conditional_assign(&code, matched & !accepted);
        }
        let current = bool::from(current);
        if !current && !bool::from(previous_any) {
            // A retired value is answered with why it went, only after it matched.
            return Err(Retired::from_code(retired).unwrap_or(Reject::Mismatch));
        }

        if entry.disabled {
            return Err(Reject::Disabled);
        }
        let key = self
            .keys
            .get(&entry.key.namespace)
            .and_then(|keys| keys.get(&entry.key.name))
            .filter(|key| key.ready)
            .ok_or(Reject::KeyNotReady)?;
        let principal = key.principal.as_ref().ok_or(Reject::KeyNotReady)?;
        if let Some((name, bound)) = &key.service_account
            && !self.service_account_is(&entry.key.namespace, name, *bound)
        {
            // Deleted, or deleted and created again (another identity), even
            // if the controller has not marked the key yet.
            return Err(Reject::KeyNotReady);
        }
        if entry.owner_key != NO_OWNER && entry.owner_key != key.uid {
            // Issued for the earlier key's owner, who may not be this one's.
            return Err(Reject::KeyReplaced);
        }
        if now.as_second() >= entry.expires_at {
            return Err(Reject::Expired);
        }
        if !current && !bool::from(previous_in_grace) {
            return Err(Reject::Expired);
        }

        let (name, uid) = entry.split_name_and_uid();
        let identity = IdentityRef {
            username: principal,
            owner_kind: key.owner_kind,
            namespace: &entry.key.namespace,
            api_key: &entry.key.name,
            api_token: name,
            uid,
            token_id: parsed.token_id(),
            previous_value: !current,
            audiences: match entry.audiences() {
                own if own.is_empty() => Audiences(&key.audiences),
                own => own,
            },
            last_used_at: match entry.last_used_at.load(Ordering::Relaxed) {
                NOT_USED => None,
                seconds => Timestamp::from_second(seconds).ok(),
            },
            key_headers: &key.headers,
        };
        Ok((identity, entry))
    }

    /// Notes that the token `token_id` was accepted at `now`. True only for
    /// the first use in that minute, the one to report as `lastUsedAt`: later
    /// uses in the same minute skip the usage recorder and its lock.
    pub fn note_use(&self, token_id: &str, now: Timestamp) -> bool {
        id_key(token_id)
            .and_then(|id| self.tokens.get(&id))
            .is_some_and(|entry| entry.note_use(now))
    }

    /// Adds or replaces a token (a watch Apply event). Returns what was not
    /// indexed, if anything.
    pub fn upsert_token(&mut self, token: &ApiToken) -> Option<Skipped> {
        let namespace = token.namespace().unwrap_or_default();
        let name = token.name_any();
        let fingerprint = object_fingerprint(&namespace, &name);
        let status = token.status.as_ref();
        let token_id = status.and_then(|s| s.token_id.as_deref());
        let Some(token_id) = token_id else {
            self.remove_object(fingerprint, &namespace, &name);
            return Some(Skipped::NoTokenId);
        };
        let Some(id) = TokenId::parse(token_id)
            .ok()
            .and_then(|id| id_key(id.as_str()))
        else {
            self.remove_object(fingerprint, &namespace, &name);
            return Some(Skipped::BadTokenId);
        };
        self.remove_object(fingerprint, &namespace, &name);

        let mut skipped = None;
        let mut digest_of = |text: &str| match TokenHash::parse(text) {
            Ok(hash) => Some(*hash.digest()),
            Err(_) => {
                skipped = Some(Skipped::BadHash);
                None
            }
        };
        // `status.pending` is deliberately not read: a pending value is never accepted.
        let current = status
            .and_then(|s| s.hash.as_deref())
            .and_then(&mut digest_of);
        let retired = status.and_then(|s| s.retired.as_deref()).and_then(|r| {
            Some(Previous {
                hash: digest_of(&r.hash)?,
                valid_until: Timestamp::MIN,
                retired: Some(Retired::from_reason(&r.reason)?),
            })
        });
        let previous: Box<[Previous]> = status
            .map(|s| s.previous.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| {
                digest_of(&p.hash).map(|hash| Previous {
                    hash,
                    valid_until: p.valid_until.0,
                    retired: None,
                })
            })
            .chain(retired)
            .collect();

        let key = self.key_name(&namespace, &token.spec.api_key_ref.name);
        let uid = token.uid().unwrap_or_default();
        let seconds = |t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
            t.map(|t| t.0.as_second())
        };
        let entry = TokenEntry {
            key,
            name_and_uid: {
                let mut names = format!("{name}/{uid}");
                pack_audiences(&mut names, &token.spec.audiences);
                names.into_boxed_str()
            },
            current,
            previous,
            expires_at: seconds(status.and_then(|s| s.expires_at.as_ref())).unwrap_or(NEVER),
            last_used_at: AtomicI64::new(
                seconds(status.and_then(|s| s.last_used_at.as_ref())).unwrap_or(NOT_USED),
            ),
            // The key the values were issued under, as the status records it
            // (else, for a status from before that record, the key that controls
            // the token).
            owner_key: status
                .and_then(|s| s.api_key_uid.as_deref().map(String::as_str))
                .or_else(|| token.controlling_key_uid())
                .map_or(NO_OWNER, uid_fingerprint),
            disabled: token.spec.disabled,
            bound: TokenId::parse(token_id).is_ok_and(|id| id.is_bound_to(&uid)),
        };
        if self.tokens.contains_key(&id) || self.contenders.contains_key(&id) {
            // Contested (a copied status): every claim is kept, and settled.
            if self
                .tokens
                .get(&id)
                .is_some_and(|claim| claim.is_object(&namespace, &name))
            {
                // Left behind by a fingerprint collision: replaced, not doubled.
                self.tokens.remove(&id);
            }
            let claims = self.contenders.entry(id).or_default();
            claims.retain(|claim| !claim.is_object(&namespace, &name));
            claims.push(entry);
            self.settle(id);
        } else {
            self.tokens.insert(id, entry);
        }
        self.by_object.insert(fingerprint, id);
        let accepted = self
            .tokens
            .get(&id)
            .is_some_and(|entry| entry.is_object(&namespace, &name));
        if accepted {
            skipped
        } else {
            Some(Skipped::BadTokenId)
        }
    }

    /// Removes a token (a watch Delete event).
    pub fn remove_token(&mut self, token: &ApiToken) {
        let namespace = token.namespace().unwrap_or_default();
        let name = token.name_any();
        self.remove_object(object_fingerprint(&namespace, &name), &namespace, &name);
    }

    /// Adds or replaces a key (a watch Apply event).
    pub fn upsert_key(&mut self, key: &ApiKey) {
        let namespace = key.namespace().unwrap_or_default();
        let name = key.name_any();
        let status = key.status.as_ref();
        let ready = status.is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == READY && c.status == "True")
        });
        let id = self.key_name(&namespace, &name);
        let principal = principal_of(key, &namespace);
        let entry = KeyEntry {
            id: id.clone(),
            headers: KeyHeaders::new(principal.as_deref(), &namespace, &name),
            principal: principal.map(Arc::from),
            owner_kind: key.spec.owner.kind,
            ready,
            uid: uid_fingerprint(key.uid().as_deref().unwrap_or_default()),
            service_account: (key.spec.owner.kind == OwnerKind::ServiceAccount).then(|| {
                let bound = status
                    .and_then(|s| s.owner_uid.as_deref())
                    .map_or(NO_OWNER, uid_fingerprint);
                (key.spec.owner.name.as_str().into(), bound)
            }),
            audiences: {
                let mut packed = String::new();
                if let Some(defaults) = &key.spec.token_defaults {
                    pack_audiences(&mut packed, &defaults.audiences);
                }
                packed.into_boxed_str()
            },
        };
        let keys = self.keys.entry(id.namespace.clone()).or_default();
        if keys.insert(id.name.clone(), entry).is_none() {
            self.key_count += 1;
        }
    }

    /// Removes a key (a watch Delete event): its tokens are rejected from now
    /// on, even before Kubernetes garbage-collects them.
    pub fn remove_key(&mut self, key: &ApiKey) {
        let namespace = key.namespace().unwrap_or_default();
        if let Some(keys) = self.keys.get_mut(namespace.as_str())
            && keys.remove(key.name_any().as_str()).is_some()
        {
            self.key_count -= 1;
        }
    }

    /// After a relist: drops every token whose object (`namespace/name`) is
    /// not in `seen`.
    pub fn retain_tokens(&mut self, seen: &HashSet<String>) {
        let was_seen = |entry: &TokenEntry| {
            let (name, _) = entry.split_name_and_uid();
            seen.contains(&format!("{}/{name}", entry.key.namespace))
        };
        let mut ids: Vec<IdKey> = self.contenders.keys().copied().collect();
        self.tokens.retain(|id, entry| {
            let keep = was_seen(entry);
            if !keep {
                ids.push(*id);
            }
            keep
        });
        for claims in self.contenders.values_mut() {
            claims.retain(|entry| was_seen(entry));
        }
        for id in ids {
            self.settle(id);
        }
        let (tokens, contenders) = (&self.tokens, &self.contenders);
        self.by_object
            .retain(|_, id| tokens.contains_key(id) || contenders.contains_key(id));
    }

    /// After a relist: drops every key not in `seen` (`namespace/name`).
    pub fn retain_keys(&mut self, seen: &HashSet<String>) {
        let mut count = 0;
        for (namespace, keys) in &mut self.keys {
            keys.retain(|name, _| seen.contains(&format!("{namespace}/{name}")));
            count += keys.len();
        }
        self.key_count = count;
    }

    /// The name under which a relist remembers a token: `namespace/name`.
    pub fn relist_name_of(token: &ApiToken) -> String {
        format!(
            "{}/{}",
            token.namespace().unwrap_or_default(),
            token.name_any()
        )
    }

    /// The indexed key's names, shared by its tokens; new names for a key
    /// not indexed (yet).
    /// The namespace's name, shared with its keys when it has any.
    fn namespace_name(&self, namespace: &str) -> Arc<str> {
        match self.keys.get_key_value(namespace) {
            Some((ns, _)) => ns.clone(),
            None => Arc::from(namespace),
        }
    }

    fn key_name(&self, namespace: &str, name: &str) -> Arc<KeyName> {
        if let Some(key) = self.keys.get(namespace).and_then(|keys| keys.get(name)) {
            return key.id.clone();
        }
        let namespace = self.namespace_name(namespace);
        Arc::new(KeyName {
            namespace,
            name: Arc::from(name),
        })
    }
}

impl TokenEntry {
    /// See [`Index::note_use`].
    fn note_use(&self, now: Timestamp) -> bool {
        let minute = truncate_to_minute(now).as_second();
        self.last_used_at.fetch_max(minute, Ordering::Relaxed) < minute
    }

    fn is_object(&self, namespace: &str, name: &str) -> bool {
        &*self.key.namespace == namespace && self.split_name_and_uid().0 == name
    }

    fn split_name_and_uid(&self) -> (&str, &str) {
        let names = match self.name_and_uid.split_once('\0') {
            Some((names, _)) => names,
            None => &self.name_and_uid,
        };
        names.split_once('/').unwrap_or((names, ""))
    }

    fn audiences(&self) -> Audiences<'_> {
        let start = self
            .name_and_uid
            .find('\0')
            .unwrap_or(self.name_and_uid.len());
        Audiences(&self.name_and_uid[start..])
    }
}

impl fmt::Debug for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Index")
            .field("tokens", &self.tokens.len())
            .field("keys", &self.key_count)
            .finish()
    }
}

fn id_key(token_id: &str) -> Option<IdKey> {
    token_id.as_bytes().try_into().ok()
}

fn object_fingerprint(namespace: &str, name: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    (namespace, name).hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod id_binding_tests;
