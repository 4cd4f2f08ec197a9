//! The object store: every object under one lock, a store-wide resourceVersion counter, a bounded
//! history of change events for watch resume (410 beyond it) and per-watch channels fed on write.
//! `ops` implements the API verbs on top of `State`; `http` streams watch channels to clients.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use axum::body::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use super::admission::{self, Policy, Webhook};
use super::persist;
use super::registry::{Registry, ResourceDef};
use super::selector::Filter;

/// (namespace, name); namespace is empty for cluster-scoped objects.
pub type ObjKey = (String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change, shared by the history ring and every watcher that gets it.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub resource: String,
    pub kind: EventType,
    pub object: Arc<Value>,
    /// The object before the change, to turn MODIFIED into ADDED/DELETED for selector watches.
    pub previous: Option<Arc<Value>>,
    /// `{"type":..,"object":..}\n`, serialized once, by the first watcher that
    /// sends it (outside the store lock: writers only publish the change).
    line: std::sync::OnceLock<Bytes>,
}

impl Change {
    /// The event line every watcher at the storage version sends as is.
    pub fn line(&self) -> Bytes {
        self.line
            .get_or_init(|| event_line(self.kind.as_str(), &self.object))
            .clone()
    }
}

/// What a watch stream receives.
#[derive(Debug, Clone)]
pub enum WatchMsg {
    Change(Arc<Change>),
    Bookmark(u64),
}

/// A registered watch; matching happens on the writer's side so idle watchers cost nothing.
#[derive(Debug)]
pub struct Watcher {
    pub resource: String,
    pub namespace: Option<String>,
    pub filter: Filter,
    pub bookmarks: bool,
    pub tx: mpsc::Sender<WatchMsg>,
}

impl Watcher {
    fn wants(&self, change: &Change) -> bool {
        if self.resource != change.resource {
            return false;
        }
        if let Some(ns) = &self.namespace
            && change.object["metadata"]["namespace"].as_str() != Some(ns)
        {
            return false;
        }
        self.filter.matches(&change.object)
            || change
                .previous
                .as_ref()
                .is_some_and(|p| self.filter.matches(p))
    }
}

/// Capacity of one watcher's channel; a watcher that falls this far behind is closed, like the
/// real server closes slow watchers, and the client resumes from its last resourceVersion.
pub const WATCH_CHANNEL: usize = 16 * 1024;

/// Everything guarded by the store lock.
#[derive(Debug)]
pub struct State {
    pub rv: u64,
    pub registry: Arc<Registry>,
    pub objects: HashMap<String, BTreeMap<ObjKey, Arc<Value>>>,
    pub history: VecDeque<Arc<Change>>,
    pub history_limit: usize,
    /// Lowest RV a watch may resume from (everything after it is in `history`).
    pub oldest_resumable: u64,
    pub watchers: Vec<Watcher>,
    /// Set when a deletion may have left work for the garbage collector.
    pub gc_pending: bool,
    /// The uid of every stored object, so a write can tell at once whether
    /// its owners exist (the collector then only runs when one does not).
    pub uids: HashSet<String>,
    /// The webhooks of every stored ValidatingWebhookConfiguration, compiled when one is
    /// written; the admission gate's first question is whether this is empty.
    pub webhooks: Arc<[Arc<Webhook>]>,
    /// The same for MutatingWebhookConfigurations.
    pub mutating_webhooks: Arc<[Arc<Webhook>]>,
    /// ValidatingAdmissionPolicies that have bindings, compiled with them.
    pub policies: Arc<[Arc<Policy>]>,
    /// The RBAC objects indexed for authorization (`auth::refresh` rebuilds it).
    pub policy: Arc<crate::auth::Policy>,
    /// Set when an RBAC object changed since `policy` was built.
    pub rbac_dirty: bool,
    /// Changes committed since the state file's journal was last written; `None` without a
    /// state file (nothing is recorded then).
    pub journal: Option<Vec<persist::Entry>>,
}

impl State {
    pub fn new(history_limit: usize) -> State {
        State {
            rv: 0,
            registry: Arc::new(Registry::build(std::iter::empty())),
            objects: HashMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            oldest_resumable: 0,
            watchers: Vec::new(),
            gc_pending: false,
            uids: HashSet::new(),
            webhooks: Arc::new([]),
            mutating_webhooks: Arc::new([]),
            policies: Arc::new([]),
            policy: Arc::default(),
            rbac_dirty: false,
            journal: None,
        }
    }

    pub fn get(&self, resource: &str, ns: &str, name: &str) -> Option<&Arc<Value>> {
        self.objects
            .get(resource)?
            .get(&(ns.to_string(), name.to_string()))
    }

    /// Whether some ownerReference of `obj` names an object that is not stored.
    pub fn owner_missing(&self, obj: &Value) -> bool {
        obj["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["uid"].as_str().is_none_or(|uid| !self.uids.contains(uid)))
    }

    pub fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Stores `obj` (already carrying all metadata except resourceVersion) and notifies watchers.
    pub fn put(&mut self, def: &ResourceDef, mut obj: Value, kind: EventType) -> Arc<Value> {
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let key = obj_key(&obj);
        if let Some(uid) = obj["metadata"]["uid"].as_str() {
            self.uids.insert(uid.to_string());
        }
        let obj = Arc::new(obj);
        if let Some(journal) = &mut self.journal {
            journal.push(persist::Entry::Put {
                rv,
                resource: def.key(),
                object: obj.clone(),
            });
        }
        let previous = self
            .objects
            .entry(def.key())
            .or_default()
            .insert(key, obj.clone());
        self.derived_changed(def);
        self.rbac_dirty |= def.group == crate::auth::rbac::GROUP;
        self.publish(def, rv, kind, obj.clone(), previous);
        obj
    }

    /// Removes an object for good; the DELETED event carries a fresh resourceVersion.
    pub fn remove(&mut self, def: &ResourceDef, ns: &str, name: &str) -> Option<Arc<Value>> {
        let old = self
            .objects
            .get_mut(&def.key())?
            .remove(&(ns.to_string(), name.to_string()))?;
        if let Some(uid) = old["metadata"]["uid"].as_str() {
            self.uids.remove(uid);
        }
        let rv = self.next_rv();
        if let Some(journal) = &mut self.journal {
            journal.push(persist::Entry::Delete {
                rv,
                resource: def.key(),
                namespace: ns.to_string(),
                name: name.to_string(),
            });
        }
        let mut obj = (*old).clone();
        obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let obj = Arc::new(obj);
        self.derived_changed(def);
        self.rbac_dirty |= def.group == crate::auth::rbac::GROUP;
        self.gc_pending = true;
        self.publish(def, rv, EventType::Deleted, obj.clone(), Some(old));
        Some(obj)
    }

    fn publish(
        &mut self,
        def: &ResourceDef,
        rv: u64,
        kind: EventType,
        object: Arc<Value>,
        previous: Option<Arc<Value>>,
    ) {
        let change = Arc::new(Change {
            rv,
            resource: def.key(),
            kind,
            object,
            previous,
            line: std::sync::OnceLock::new(),
        });
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.oldest_resumable = old.rv;
            }
        }
        self.watchers.retain(|w| {
            if !w.wants(&change) {
                return !w.tx.is_closed();
            }
            w.tx.try_send(WatchMsg::Change(change.clone())).is_ok()
        });
    }

    /// Sends a bookmark carrying the current resourceVersion to every watcher that asked.
    pub fn bookmark_all(&mut self) {
        let rv = self.rv;
        self.watchers
            .retain(|w| !w.bookmarks || w.tx.try_send(WatchMsg::Bookmark(rv)).is_ok());
    }

    /// Rebuilds what is derived from stored objects of `def`'s kind, if anything is.
    fn derived_changed(&mut self, def: &ResourceDef) {
        let key = def.key();
        if key == CRD_KEY {
            self.rebuild_registry();
        } else if key.starts_with("admissionregistration.k8s.io/") {
            self.rebuild_webhooks();
        }
    }

    fn rebuild_webhooks(&mut self) {
        let of = |key: &str| {
            let configs = self.objects.get(key);
            admission::compile_all(configs.into_iter().flat_map(|m| m.values()).map(|v| &**v))
        };
        self.webhooks = of(admission::VALIDATING_KEY);
        self.mutating_webhooks = of(admission::MUTATING_KEY);
        let values = |key: &str| {
            self.objects
                .get(key)
                .into_iter()
                .flat_map(|m| m.values())
                .map(|v| &**v)
        };
        self.policies = admission::compile_policies(
            values(admission::POLICY_KEY),
            values(admission::BINDING_KEY),
        );
    }

    pub fn rebuild_registry(&mut self) {
        let crds = self.objects.get(CRD_KEY);
        let accepted = crds.into_iter().flat_map(|m| m.values()).map(|v| &**v);
        self.registry = Arc::new(Registry::build(accepted));
    }

    /// Objects of one resource type, optionally in one namespace, in key order from `after`.
    pub fn range<'a>(
        &'a self,
        resource: &str,
        ns: Option<&'a str>,
        after: Option<&'a ObjKey>,
    ) -> impl Iterator<Item = (&'a ObjKey, &'a Arc<Value>)> + 'a {
        let map = self.objects.get(resource);
        let start = match (after, ns) {
            (Some(k), _) => std::ops::Bound::Excluded(k.clone()),
            (None, Some(ns)) => std::ops::Bound::Included((ns.to_string(), String::new())),
            (None, None) => std::ops::Bound::Unbounded,
        };
        map.into_iter()
            .flat_map(move |m| m.range((start.clone(), std::ops::Bound::Unbounded)))
            .take_while(move |(k, _)| ns.is_none_or(|ns| k.0 == ns))
    }

    /// The changes recorded since the last call, for the journal.
    pub fn take_journal(&mut self) -> Vec<persist::Entry> {
        self.journal
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// All objects and the RV counter for the snapshot file, which then holds every change
    /// recorded so far (those not yet in the journal are dropped from it).
    pub fn take_snapshot(&mut self) -> persist::Snapshot {
        self.take_journal();
        let objects = self
            .objects
            .iter()
            .flat_map(|(res, map)| map.values().map(|obj| (res.clone(), obj.clone())))
            .collect();
        persist::Snapshot {
            rv: self.rv,
            objects,
        }
    }

    /// Loads a snapshot written from `take_snapshot` (or `Null` for none), then the journal's
    /// changes made after it. History starts empty, so older RVs get 410.
    pub fn restore(&mut self, snap: &Value, journal: Vec<persist::Entry>) {
        self.rv = snap["resourceVersion"].as_u64().unwrap_or(0);
        self.objects.clear();
        self.uids.clear();
        for entry in snap["objects"].as_array().into_iter().flatten() {
            let (Some(res), obj) = (entry["resource"].as_str(), &entry["object"]) else {
                continue;
            };
            self.restore_put(res, Arc::new(obj.clone()));
        }
        for entry in journal {
            match entry {
                // Already in the snapshot (a crash between its rename and the journal's
                // truncation leaves them in both).
                persist::Entry::Put { rv, .. } | persist::Entry::Delete { rv, .. }
                    if rv <= self.rv => {}
                persist::Entry::Put {
                    rv,
                    resource,
                    object,
                } => {
                    self.restore_put(&resource, object);
                    self.rv = rv;
                }
                persist::Entry::Delete {
                    rv,
                    resource,
                    namespace,
                    name,
                } => {
                    let gone = self
                        .objects
                        .get_mut(&resource)
                        .and_then(|m| m.remove(&(namespace, name)));
                    if let Some(uid) = gone.as_ref().and_then(|o| o["metadata"]["uid"].as_str()) {
                        self.uids.remove(uid);
                    }
                    self.rv = rv;
                }
            }
        }
        self.oldest_resumable = self.rv;
        self.rebuild_registry();
        self.rebuild_webhooks();
        self.rbac_dirty = true;
        self.gc_pending = true;
    }

    fn restore_put(&mut self, resource: &str, obj: Arc<Value>) {
        if let Some(uid) = obj["metadata"]["uid"].as_str() {
            self.uids.insert(uid.to_string());
        }
        self.objects
            .entry(resource.to_string())
            .or_default()
            .insert(obj_key(&obj), obj);
    }
}

pub const CRD_KEY: &str = "apiextensions.k8s.io/customresourcedefinitions";

pub fn obj_key(obj: &Value) -> ObjKey {
    let md = &obj["metadata"];
    (
        md["namespace"].as_str().unwrap_or_default().to_string(),
        md["name"].as_str().unwrap_or_default().to_string(),
    )
}

/// A watch event line in the JSON stream framing the real server uses.
pub fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(kind.as_bytes());
    buf.extend_from_slice(b"\",\"object\":");
    // Serializing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut buf, object);
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}
