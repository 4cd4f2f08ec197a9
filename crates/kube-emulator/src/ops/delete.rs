//! DELETE: preconditions, propagation policy as finalizers, terminating versus gone, and the
//! server-side finalizer removal and rewrites `gc` uses. The other verbs are in `create`,
//! `update` and `apply`.

use std::sync::Arc;

use serde_json::{Value, json};

use super::metadata::{finalizers, set_finalizers};
use super::{FOREGROUND, ORPHAN, WriteCtx, current, is_namespace, now_rfc3339, served};
use crate::admission::{self, Attempt, Operation, Phase};
use crate::error::ApiError;
use crate::registry::ResourceDef;
use crate::store::{EventType, State};

/// Options of a DELETE (from the DeleteOptions body or query).
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub propagation: Option<String>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    /// `dryRun: [All]` in the DeleteOptions body.
    pub dry_run: bool,
}

/// What a delete produced.
pub enum Deleted {
    /// The object is still there, terminating until its finalizers are gone;
    /// a delete answers with it.
    Terminating(Value),
    /// The object is gone (or would be, in a dry run), as it was last stored.
    /// A delete answers with a Success `Status` naming it; a deletecollection
    /// lists the object.
    Gone(Value),
}

impl Deleted {
    /// The object, for a deletecollection's list.
    pub fn into_object(self) -> Value {
        match self {
            Deleted::Terminating(o) | Deleted::Gone(o) => o,
        }
    }

    /// The answer to a delete of one object.
    pub fn answer(self, def: &ResourceDef) -> Value {
        match self {
            Deleted::Terminating(o) => o,
            Deleted::Gone(o) => json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": o["metadata"]["name"], "group": def.group,
                            "kind": def.plural, "uid": o["metadata"]["uid"]},
            }),
        }
    }
}

pub fn delete(
    st: &mut State,
    ctx: &WriteCtx,
    name: &str,
    opts: &DeleteOpts,
) -> Result<Deleted, ApiError> {
    let def = ctx.def.clone();
    let old = current(st, ctx, name)?;
    if let Some(uid) = &opts.uid
        && old["metadata"]["uid"].as_str() != Some(uid)
    {
        return Err(ApiError::conflict(
            &def,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                old["metadata"]["uid"].as_str().unwrap_or_default()
            ),
        ));
    }
    if let Some(rv) = &opts.resource_version
        && old["metadata"]["resourceVersion"].as_str() != Some(rv)
    {
        return Err(ApiError::conflict(
            &def,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                old["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
            ),
        ));
    }
    let mut obj = (*old).clone();
    let mut fins = finalizers(&obj);
    match opts.propagation.as_deref() {
        Some("Foreground") if !fins.iter().any(|f| f == FOREGROUND) => {
            fins.push(FOREGROUND.to_string())
        }
        Some("Orphan") if !fins.iter().any(|f| f == ORPHAN) => fins.push(ORPHAN.to_string()),
        Some("Foreground" | "Orphan" | "Background") | None => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid propagationPolicy {other:?}: must be Orphan, Background or Foreground"
            )));
        }
    }
    for phase in [Phase::Mutating, Phase::Validating] {
        let attempt = Attempt {
            operation: Operation::Delete,
            name: Some(name),
            object: None,
            old: Some(&old),
        };
        admission::gate(st, ctx, phase, attempt)?;
    }
    let terminating = !fins.is_empty() || is_namespace(&def);
    if terminating {
        set_finalizers(&mut obj, &fins);
        if !obj["metadata"]["deletionTimestamp"].is_string() {
            obj["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            let gen_ = obj["metadata"]["generation"].as_i64().unwrap_or(1);
            obj["metadata"]["generation"] = json!(gen_ + 1);
        }
        if is_namespace(&def) {
            obj["status"]["phase"] = json!("Terminating");
        }
        if obj == *old || ctx.dry_run {
            return Ok(Deleted::Terminating(served(&def, &ctx.version, &obj)));
        }
        st.gc_pending = true;
        let stored = st.put(&def, obj, EventType::Modified);
        return Ok(Deleted::Terminating(served(&def, &ctx.version, &stored)));
    }
    let gone = if ctx.dry_run {
        old.clone()
    } else {
        let gone = st.remove(&def, &ctx.namespace, name).unwrap_or(old);
        if def.group.is_empty() && def.plural == "serviceaccounts" && name == "default" {
            // Upstream's ServiceAccount controller makes it again (not in a terminating
            // namespace, which refuses the create).
            super::create::default_service_account(st, &ctx.namespace);
        }
        gone
    };
    Ok(Deleted::Gone(served(&def, &ctx.version, &gone)))
}

/// Removes one finalizer (server-side, for GC and namespace/CRD cleanup).
pub fn drop_finalizer(
    st: &mut State,
    def: &Arc<ResourceDef>,
    ns: &str,
    name: &str,
    finalizer: &str,
) {
    let Some(old) = st.get(&def.key(), ns, name).cloned() else {
        return;
    };
    let mut obj = (*old).clone();
    let fins: Vec<String> = finalizers(&obj)
        .into_iter()
        .filter(|f| f != finalizer)
        .collect();
    set_finalizers(&mut obj, &fins);
    if fins.is_empty() && obj["metadata"]["deletionTimestamp"].is_string() {
        st.remove(def, ns, name);
    } else if obj != *old {
        st.put(def, obj, EventType::Modified);
    }
}

/// Replaces an object with a server-computed value (GC removing ownerReferences).
pub fn rewrite(st: &mut State, def: &Arc<ResourceDef>, obj: Value) {
    st.put(def, obj, EventType::Modified);
}
