//! [`Lean`]: decodes an API object without its `metadata.managedFields`,
//! and an object that is not a valid `K` as a stand-in rather than an error.
//!
//! Every object the API server sends carries its field managers (one entry
//! per writer, each with a nested `fieldsV1` tree). The operator never reads
//! them, yet decoding and dropping them was 13% of its CPU in a rotation storm
//! (callgrind, BENCHMARKS.md). Watches decode `Lean<K>`, whose decoder skips
//! that key without building anything, and hand on the plain `K`.
//!
//! A list decodes all of its items or fails as a whole, so one stored object
//! the types cannot read (a status time stored before the CRDs bounded it, a
//! field an older schema allowed) would keep every watch from ever syncing.
//! `Lean` decodes each object on its own: one that fails becomes a stand-in
//! with its metadata and the reason, which [`Lean::event`] hands on as a
//! deletion (and logs), so the caches and the verifier's index drop it (fail
//! closed) and every other object goes on.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use futures::{Stream, TryStreamExt, future};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event};
use prometheus_client::metrics::gauge::Gauge;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, forward_to_deserialize_any};
use serde_json::value::RawValue;
use tracing::error;

use crate::api::{ApiKey, ApiKeyRef, ApiKeySpec, ApiToken, ApiTokenSpec, Owner, OwnerKind};

/// The objects of kind `K` in `namespace`, or in all namespaces: what the
/// controller's and the verifier's watches list.
pub fn scoped<K>(client: &kube::Client, namespace: Option<&str>) -> kube::Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => kube::Api::namespaced(client.clone(), ns),
        None => kube::Api::all(client.clone()),
    }
}

/// `kube::runtime::watcher` over `Lean<K>`, handing on events of plain `K`
/// (see [`Lean::event`]).
pub fn watcher<K>(
    api: kube::Api<Lean<K>>,
    config: watcher::Config,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: Stub,
{
    let undecodables = Arc::new(Undecodables::new(|_: &K, _: &str| {}, Gauge::default()));
    watcher_tracking(api, config, undecodables.clone()).inspect_ok(move |e| undecodables.settle(e))
}

/// [`watcher`], keeping `undecodables` up to date with the objects it could
/// not decode (which also reports each). Call [`Undecodables::settle`] with
/// each event once a store has taken it.
pub fn watcher_tracking<K>(
    api: kube::Api<Lean<K>>,
    config: watcher::Config,
    undecodables: Arc<Undecodables<K>>,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: Stub,
{
    watcher::watcher(api, config)
        .try_filter_map(move |event| future::ready(Ok(Lean::event(event, &undecodables))))
}

/// The objects of one watch that are stored in a form the types cannot read.
///
/// One is added as soon as it is seen so (before a store drops it), and
/// removed when it is deleted, or, through [`settle`](Self::settle) after the
/// store took the event, when the store holds it readable again or a relist
/// no longer finds it. So an object missing from the store and absent here
/// too is deleted, not merely unreadable.
pub struct Undecodables<K: Resource<DynamicType = ()>> {
    state: Mutex<Seen<K>>,
    /// Told of each undecodable object as it is seen: its stand-in and why.
    report: Box<Report<K>>,
    /// How many there are now.
    count: Gauge,
}

/// What [`Undecodables`] tells of an undecodable object: its stand-in and why.
type Report<K> = dyn Fn(&K, &str) + Send + Sync;

struct Seen<K: Resource<DynamicType = ()>> {
    now: HashSet<ObjectRef<K>>,
    /// Those listed undecodable by the relist under way.
    relisted: Option<HashSet<ObjectRef<K>>>,
}

/// Its objects are no longer watched: the gauge must not keep counting them
/// (a replica that lost the lease would alert on the leader's behalf).
impl<K: Resource<DynamicType = ()>> Drop for Undecodables<K> {
    fn drop(&mut self) {
        self.count.set(0);
    }
}

impl<K: Resource<DynamicType = ()>> Undecodables<K> {
    pub fn new(report: impl Fn(&K, &str) + Send + Sync + 'static, count: Gauge) -> Self {
        Undecodables {
            state: Mutex::new(Seen {
                now: HashSet::new(),
                relisted: None,
            }),
            report: Box::new(report),
            count,
        }
    }

    /// Whether the object is stored but cannot be read.
    pub fn contains(&self, object: &ObjectRef<K>) -> bool {
        self.count.get() > 0 && self.seen().now.contains(object)
    }

    /// Takes in an event a store has applied: an object the store now holds
    /// is readable, and at the end of a relist only what it found unreadable
    /// remains.
    pub fn settle(&self, event: &Event<K>) {
        match event {
            Event::Apply(object) if self.count.get() > 0 => {
                self.update(|seen| seen.now.remove(&ObjectRef::from_obj(object)));
            }
            Event::InitDone => self.update(|seen| {
                if let Some(relisted) = seen.relisted.take() {
                    seen.now = relisted;
                }
            }),
            _ => {}
        }
    }

    /// Takes in a watch event before it is decoded and handed on.
    fn observe(&self, event: &Event<Lean<K>>) {
        match event {
            Event::Init => self.update(|seen| seen.relisted = Some(HashSet::new())),
            Event::Apply(lean) | Event::InitApply(lean) => {
                if let Some(why) = &lean.undecodable {
                    (self.report)(&lean.object, why);
                    let object = ObjectRef::from_obj(&lean.object);
                    let init = matches!(event, Event::InitApply(_));
                    self.update(|seen| {
                        if let Some(relisted) = seen.relisted.as_mut().filter(|_| init) {
                            relisted.insert(object.clone());
                        }
                        seen.now.insert(object);
                    });
                }
            }
            Event::Delete(lean) if self.count.get() > 0 => {
                self.update(|seen| seen.now.remove(&ObjectRef::from_obj(&lean.object)));
            }
            Event::Delete(_) | Event::InitDone => {}
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen<K>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update<T>(&self, change: impl FnOnce(&mut Seen<K>) -> T) {
        let mut seen = self.seen();
        change(&mut seen);
        self.count
            .set(i64::try_from(seen.now.len()).unwrap_or(i64::MAX));
    }
}

/// Keys of `metadata` that are never decoded.
const SKIPPED: &[&str] = &["managedFields"];

/// A `K` decoded without `metadata.managedFields` (left empty); or, for an
/// object that is not a valid `K`, a stand-in with its metadata and why.
#[derive(Clone, Debug)]
pub struct Lean<K> {
    object: K,
    undecodable: Option<Arc<str>>,
}

/// A kind a [`watcher`] can watch: it has a stand-in for an object that
/// cannot be decoded (its metadata and an empty spec, used only to remove it
/// from caches).
pub trait Stub:
    kube::Resource<DynamicType = ()> + de::DeserializeOwned + Clone + fmt::Debug + Send + Sync + 'static
{
    fn stub(metadata: ObjectMeta) -> Self;
}

impl Stub for ApiToken {
    fn stub(metadata: ObjectMeta) -> Self {
        let spec = ApiTokenSpec {
            api_key_ref: ApiKeyRef {
                name: String::new(),
            },
            display_name: None,
            description: None,
            tags: Default::default(),
            expiration: None,
            rotation: None,
            secret: None,
            audiences: Vec::new(),
            disabled: false,
        };
        ApiToken {
            metadata,
            spec,
            status: None,
        }
    }
}

impl Stub for ApiKey {
    fn stub(metadata: ObjectMeta) -> Self {
        let owner = Owner {
            kind: OwnerKind::User,
            name: String::new(),
        };
        ApiKey {
            metadata,
            spec: ApiKeySpec {
                owner,
                display_name: None,
                description: None,
                tags: Default::default(),
                token_defaults: None,
            },
            status: None,
        }
    }
}

impl<K> Lean<K> {
    /// The decoded object, or `Err` with why it could not be decoded.
    pub fn into_result(self) -> Result<K, (K, Arc<str>)> {
        match self.undecodable {
            None => Ok(self.object),
            Some(why) => Err((self.object, why)),
        }
    }
}

impl<K: kube::Resource<DynamicType = ()>> Lean<K> {
    /// The watch event with the plain object in it. An object that could not
    /// be decoded is logged and handed on as deleted (left out of a relist),
    /// so no cache or index keeps acting on an older version of it;
    /// `undecodables` takes in the event first.
    pub fn event(event: Event<Lean<K>>, undecodables: &Undecodables<K>) -> Option<Event<K>> {
        undecodables.observe(&event);
        let undecodable = |lean: Lean<K>| match lean.into_result() {
            Ok(object) => Ok(object),
            Err((stub, why)) => {
                error!(
                    kind = %K::kind(&()),
                    object = %format_args!(
                        "{}/{}",
                        stub.meta().namespace.as_deref().unwrap_or_default(),
                        stub.meta().name.as_deref().unwrap_or_default()
                    ),
                    error = %why,
                    "stored object cannot be decoded; it is treated as deleted until it is \
                     corrected (kubectl edit; add --subresource=status for a status field)"
                );
                Err(stub)
            }
        };
        Some(match event {
            Event::Apply(lean) => match undecodable(lean) {
                Ok(object) => Event::Apply(object),
                Err(stub) => Event::Delete(stub),
            },
            Event::Delete(lean) => Event::Delete(lean.object),
            Event::InitApply(lean) => Event::InitApply(undecodable(lean).ok()?),
            Event::Init => Event::Init,
            Event::InitDone => Event::InitDone,
        })
    }
}

impl<K: kube::Resource> kube::Resource for Lean<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        self.object.meta()
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        self.object.meta_mut()
    }
}

impl<'de, K: Stub> Deserialize<'de> for Lean<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Kept as text, so that a failure leaves the rest of a list readable.
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let text = raw.get();
        let mut json = serde_json::Deserializer::from_str(text);
        let decoded = K::deserialize(Filter {
            inner: &mut json,
            level: Level::Object,
        })
        .and_then(|object| json.end().map(|()| object));
        match decoded {
            Ok(object) => Ok(Lean {
                object,
                undecodable: None,
            }),
            Err(why) => {
                #[derive(Deserialize)]
                struct Named {
                    #[serde(deserialize_with = "metadata")]
                    metadata: ObjectMeta,
                }
                // Without readable metadata there is nothing to name: an error.
                match serde_json::from_str::<Named>(text) {
                    Ok(Named { metadata }) if metadata.name.is_some() => Ok(Lean {
                        object: K::stub(metadata),
                        undecodable: Some(reason::<K>(text, &why).into()),
                    }),
                    _ => Err(de::Error::custom(without_position(&why))),
                }
            }
        }
    }
}

/// Why `text` is not a `K`, led by the field at fault (decoded once more,
/// tracking the path: only objects that failed pay for it).
fn reason<K: de::DeserializeOwned>(text: &str, why: &serde_json::Error) -> String {
    let mut json = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, K>(&mut json) {
        Err(err) if err.path().to_string() != "." => {
            format!("{}: {}", err.path(), without_position(err.inner()))
        }
        _ => without_position(why),
    }
}

/// A decoding error's message without the position inside the object (the
/// outer decoder adds its own).
fn without_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    match text.strip_suffix(&suffix) {
        Some(message) => message.to_owned(),
        None => text,
    }
}

/// For `#[serde(deserialize_with)]` on a `metadata` field of a hand-written type.
pub fn metadata<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    ObjectMeta::deserialize(Filter {
        inner: deserializer,
        level: Level::Metadata,
    })
}

/// Where a filtered map sits: the object (whose `metadata` value is filtered
/// in turn) or its metadata (whose skipped keys are passed over).
#[derive(Clone, Copy)]
enum Level {
    Object,
    Metadata,
}

/// A deserializer that filters the map it is asked for at `level`.
struct Filter<D> {
    inner: D,
    level: Level,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Filter<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_any(FilterVisitor {
            inner: visitor,
            level: self.level,
        })
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct FilterVisitor<V> {
    inner: V,
    level: Level,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for FilterVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(FilterMap {
            inner: map,
            level: self.level,
            metadata_next: false,
        })
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }
}

struct FilterMap<A> {
    inner: A,
    level: Level,
    /// The value about to be read is the object's `metadata`.
    metadata_next: bool,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for FilterMap<A> {
    type Error = A::Error;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        loop {
            let Some(key) = self.inner.next_key::<Key<'de>>()? else {
                return Ok(None);
            };
            let key = key.as_str();
            match self.level {
                Level::Metadata if SKIPPED.contains(&key) => {
                    self.inner.next_value::<IgnoredAny>()?;
                }
                Level::Metadata => {
                    return seed
                        .deserialize(de::value::StrDeserializer::new(key))
                        .map(Some);
                }
                Level::Object => {
                    self.metadata_next = key == "metadata";
                    return seed
                        .deserialize(de::value::StrDeserializer::new(key))
                        .map(Some);
                }
            }
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        if std::mem::take(&mut self.metadata_next) {
            self.inner.next_value_seed(MetadataSeed(seed))
        } else {
            self.inner.next_value_seed(seed)
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// Decodes the `metadata` value through a metadata-level filter.
struct MetadataSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for MetadataSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Filter {
            inner: deserializer,
            level: Level::Metadata,
        })
    }
}

/// A map key, borrowed from the input when it has no escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor<'de>(PhantomData<&'de ()>);
        impl<'de> Visitor<'de> for KeyVisitor<'de> {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
        }
        deserializer.deserialize_str(KeyVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests;
