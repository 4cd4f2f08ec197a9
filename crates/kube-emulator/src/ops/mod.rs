//! The API verbs (create, update, patch, delete) on the locked `State`: metadata bookkeeping,
//! status subresource isolation, generation, finalizers, CR validation and kind-specific rules.
//! Called by `http` for requests and by `gc` for cascading deletion. This file holds the write
//! context and what the verbs share; each verb has its file (`create`, `update` with patch,
//! `apply`, `delete`) beside `metadata`, `kinds` and `crd`, the checks they run.

mod apply;
mod crd;
mod create;
mod delete;
mod kinds;
mod metadata;
mod update;

use std::sync::Arc;

use serde_json::Value;

use super::error::ApiError;
use super::events;
use super::patch::{self, Writer};
use super::registry::ResourceDef;
use super::store::State;
use super::user::UserInfo;
pub use crate::admission::Admission;

pub use apply::{apply, parse_apply_body};
pub use crd::is_crd;
pub use create::{create, seed_namespace};
pub use delete::{DeleteOpts, delete, drop_finalizer, rewrite};
pub(crate) use metadata::new_uid;
pub use update::{patch, update};

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";
pub const CRD_CLEANUP: &str = "customresourcecleanup.apiextensions.k8s.io";

/// How unknown fields of a custom resource are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    #[default]
    Prune,
    Strict,
}

/// The request-independent context of one write.
#[derive(Debug, Clone)]
pub struct WriteCtx {
    pub def: Arc<ResourceDef>,
    pub version: String,
    /// Empty for cluster-scoped resources.
    pub namespace: String,
    pub dry_run: bool,
    pub manager: String,
    pub validation: FieldValidation,
    /// `Some("status")` for writes to the status subresource.
    pub subresource: Option<String>,
    /// Who asks: the `userInfo` admission webhooks receive.
    pub user: UserInfo,
    /// Where the write stands with validating admission webhooks.
    pub admission: Admission,
}

impl WriteCtx {
    /// A context for writes the server makes itself (GC, namespace cleanup).
    pub fn system(def: Arc<ResourceDef>, namespace: &str) -> WriteCtx {
        WriteCtx {
            version: def.storage_version.clone(),
            def,
            namespace: namespace.to_string(),
            dry_run: false,
            manager: "emulator-gc".into(),
            validation: FieldValidation::Prune,
            subresource: None,
            user: UserInfo::admin(),
            admission: Admission::Exempt,
        }
    }

    fn writer<'a>(&'a self, api_version: &'a str, now: &'a str) -> Writer<'a> {
        Writer {
            manager: &self.manager,
            subresource: self.subresource.as_deref().unwrap_or_default(),
            api_version,
            now,
        }
    }
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The object as served at `version` (objects are stored at the storage version; conversion
/// between CRD versions is `None`-strategy: only apiVersion changes; events.k8s.io Events are
/// converted from the core/v1 Events they are stored as).
pub fn served(def: &ResourceDef, version: &str, obj: &Value) -> Value {
    let mut out = if is_events_view(def) && obj["apiVersion"].as_str() == Some("v1") {
        events::to_events_v1(obj)
    } else {
        obj.clone()
    };
    out["apiVersion"] = Value::String(def.api_version(version));
    out
}

fn is_events_view(def: &ResourceDef) -> bool {
    def.view_of == Some(events::CORE_KEY)
}

/// Turns a written object (as the request's version has it) into what is stored: apiVersion
/// and kind of the storage version, converted to a core/v1 Event for events.k8s.io.
fn to_stored_form(def: &ResourceDef, obj: &mut Value) {
    if is_events_view(def) {
        if obj["apiVersion"].as_str() != Some("v1") {
            *obj = events::to_core_v1(std::mem::take(obj));
        }
    } else {
        obj["apiVersion"] = Value::String(def.api_version(&def.storage_version));
    }
    obj["kind"] = Value::String(def.kind.clone());
}

/// Records the writer's managedFields entry on `new` (already in stored form), with field
/// paths as the request's version names them.
fn record_update(ctx: &WriteCtx, old: Option<&Value>, new: &mut Value, now: &str) {
    let av = ctx.def.api_version(&ctx.version);
    let writer = ctx.writer(&av, now);
    if !is_events_view(&ctx.def) {
        patch::record_update(old, new, &writer);
        return;
    }
    let old = old.map(|o| served(&ctx.def, &ctx.version, o));
    let mut shown = served(&ctx.def, &ctx.version, new);
    patch::record_update(old.as_ref(), &mut shown, &writer);
    match shown["metadata"].get_mut("managedFields") {
        Some(mf) => new["metadata"]["managedFields"] = mf.take(),
        None => {
            if let Some(md) = new["metadata"].as_object_mut() {
                md.remove("managedFields");
            }
        }
    }
}

/// A stored object as a write answers with it: the stored copy itself when the
/// request's version is the one stored (no copy of the object), else converted.
fn served_stored(def: &ResourceDef, version: &str, stored: &Arc<Value>) -> Arc<Value> {
    if stored["apiVersion"].as_str() == Some(def.api_version(version).as_str()) {
        stored.clone()
    } else {
        Arc::new(served(def, version, stored))
    }
}

/// A write the server makes to an object it has just read (ClusterRole aggregation): the
/// update path without a client's checks of resourceVersion and name.
pub fn update_stored(
    st: &mut State,
    ctx: &WriteCtx,
    old: &Arc<Value>,
    new: Value,
) -> Result<Arc<Value>, ApiError> {
    update::commit_update(st, ctx, old, new, update::Commit::Client)
}

/// Loads the current object or 404s.
pub fn current(st: &State, ctx: &WriteCtx, name: &str) -> Result<Arc<Value>, ApiError> {
    st.get(&ctx.def.key(), &ctx.namespace, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&ctx.def, name))
}

pub(crate) fn is_namespace(def: &ResourceDef) -> bool {
    def.group.is_empty() && def.plural == "namespaces"
}
