//! PUT and the JSON, merge and strategic PATCHes, and `commit_update`, the tail they share with
//! `apply`: subresource isolation, system metadata kept, finalizer rules, validation,
//! generation, managedFields and the store.

use std::sync::Arc;

use serde_json::{Value, json};

use super::apply::{apply, parse_apply_body};
use super::kinds::{apply_kind_rules, check_kind, validate_custom};
use super::metadata::{finalizers, spec_changed, validate_metadata};
use super::{
    WriteCtx, current, is_namespace, now_rfc3339, record_update, served, served_stored,
    to_stored_form,
};
use crate::admission::{self, Attempt, Operation, Phase};
use crate::error::{ApiError, field_error};
use crate::patch::{self, PatchKind};
use crate::schema::FieldErrorKind;
use crate::store::{EventType, State};

/// PUT: replaces an object (or its status); `track` records managedFields for the writer.
pub fn update(
    st: &mut State,
    ctx: &WriteCtx,
    name: &str,
    obj: Value,
) -> Result<Arc<Value>, ApiError> {
    check_kind(&ctx.def, &ctx.version, &obj)?;
    let old = current(st, ctx, name)?;
    if let Some(body_name) = obj["metadata"]["name"].as_str()
        && body_name != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    match obj["metadata"]["resourceVersion"].as_str() {
        Some(rv) if Some(rv) != old["metadata"]["resourceVersion"].as_str() => {
            return Err(ApiError::stale(&ctx.def, name));
        }
        None if ctx.def.custom.is_some() => {
            return Err(ApiError::invalid_by_resource(
                &ctx.def,
                name,
                &[field_error(
                    "metadata.resourceVersion",
                    FieldErrorKind::Invalid,
                    "Invalid value: 0: must be specified for an update",
                )],
            ));
        }
        _ => {}
    }
    commit_update(st, ctx, &old, obj, Commit::Client)
}

/// How `commit_update` treats the new object.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Commit {
    /// Sent by a client (update, patch): isolate the subresource, record the writer.
    Client,
    /// Merged by server-side apply (managedFields recorded already) from a
    /// converted copy, which may differ from the stored object outside status.
    Applied,
    /// Merged by server-side apply from the stored object itself: a status
    /// apply changed nothing outside status, so there is nothing to isolate.
    AppliedToStored,
}

/// Shared tail of update and patch: isolation, validation, generation, finalizers, store.
pub(super) fn commit_update(
    st: &mut State,
    ctx: &WriteCtx,
    old: &Arc<Value>,
    mut new: Value,
    how: Commit,
) -> Result<Arc<Value>, ApiError> {
    let def = ctx.def.clone();
    let name = old["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let attempt = Attempt {
        operation: Operation::Update,
        name: Some(&name),
        object: Some(&mut new),
        old: Some(old),
    };
    admission::gate(st, ctx, Phase::Mutating, attempt)?;
    let status = ctx.subresource.as_deref() == Some("status");
    if status && how == Commit::AppliedToStored {
        // Nothing to isolate: the merge started from `old` and touched status only.
    } else if status {
        let mut base = (**old).clone();
        match new.get("status") {
            Some(s) => base["status"] = s.clone(),
            None => {
                if let Some(m) = base.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        if let Some(mf) = new["metadata"].get("managedFields") {
            base["metadata"]["managedFields"] = mf.clone();
        }
        new = base;
    } else if def.status_subresource {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    if !new["metadata"].is_object() {
        new["metadata"] = json!({});
    }
    for k in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "resourceVersion",
    ] {
        match old["metadata"].get(k) {
            Some(v) => new["metadata"][k] = v.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(k);
                }
            }
        }
    }
    to_stored_form(&def, &mut new);
    let deleting = old["metadata"]["deletionTimestamp"].is_string();
    if deleting {
        let before = finalizers(old);
        if let Some(added) = finalizers(&new).into_iter().find(|f| !before.contains(f)) {
            return Err(ApiError::invalid(
                &def,
                &name,
                &[field_error(
                    "metadata.finalizers",
                    FieldErrorKind::Forbidden,
                    // Go's %#v of a []string.
                    format!(
                        "no new finalizers can be added if the object is being deleted, found new finalizers []string{{\"{added}\"}}"
                    ),
                )],
            ));
        }
    }
    validate_metadata(&def, &name, &new)?;
    apply_kind_rules(st, ctx, &mut new, false)?;
    if def.custom.is_some() {
        validate_custom(ctx, &mut new, Some(old))?;
    }
    if spec_changed(&def, &new, old) {
        let gen_ = old["metadata"]["generation"].as_i64().unwrap_or(1);
        new["metadata"]["generation"] = json!(gen_ + 1);
    }
    if new["metadata"].get("managedFields").is_none()
        && let Some(mf) = old["metadata"].get("managedFields")
    {
        new["metadata"]["managedFields"] = mf.clone();
    }
    let now = now_rfc3339();
    if how == Commit::Client {
        record_update(ctx, Some(old), &mut new, &now);
    }
    let attempt = Attempt {
        operation: Operation::Update,
        name: Some(&name),
        object: Some(&mut new),
        old: Some(old),
    };
    admission::gate(st, ctx, Phase::Validating, attempt)?;
    if new == **old {
        return Ok(served_stored(&def, &ctx.version, old));
    }
    if ctx.dry_run {
        return Ok(Arc::new(served(&def, &ctx.version, &new)));
    }
    if deleting && finalizers(&new).is_empty() && !is_namespace(&def) {
        let ns = ctx.namespace.clone();
        st.put(&def, new, EventType::Modified);
        let gone = st.remove(&def, &ns, &name).unwrap_or_else(|| old.clone());
        return Ok(served_stored(&def, &ctx.version, &gone));
    }
    if new["metadata"]["ownerReferences"] != old["metadata"]["ownerReferences"]
        && st.owner_missing(&new)
    {
        st.gc_pending = true;
    }
    let stored = st.put(&def, new, EventType::Modified);
    Ok(served_stored(&def, &ctx.version, &stored))
}

/// PATCH in any of the four patch types; apply may create the object.
pub fn patch(
    st: &mut State,
    ctx: &WriteCtx,
    name: &str,
    kind: PatchKind,
    body: &[u8],
    force: bool,
) -> Result<Arc<Value>, ApiError> {
    if kind == PatchKind::Strategic && ctx.def.custom.is_some() {
        return Err(ApiError::unsupported_media(
            "application/strategic-merge-patch+json is not supported for custom resources",
        ));
    }
    if kind == PatchKind::Apply {
        return apply(st, ctx, name, parse_apply_body(body)?, force);
    }
    let old = current(st, ctx, name)?;
    let mut target = served(&ctx.def, &ctx.version, &old);
    match kind {
        PatchKind::Json => patch::json_patch(&mut target, body)?,
        PatchKind::Merge => patch::merge_patch(&mut target, body)?,
        PatchKind::Strategic => patch::strategic_patch(&mut target, body)?,
        PatchKind::Apply => {}
    }
    if target["metadata"]["name"].as_str() != Some(name) {
        return Err(ApiError::bad_request(
            "metadata.name cannot be changed by a patch",
        ));
    }
    if target["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"] {
        return Err(ApiError::stale(&ctx.def, name));
    }
    commit_update(st, ctx, &old, target, Commit::Client)
}
