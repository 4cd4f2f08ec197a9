//! Server-side apply (`application/apply-patch+yaml`): the body parsed, trimmed to what the
//! subresource may set, merged by `patch::server_side_apply`, then created (`create`) or
//! committed like an update (`update`).

use std::sync::Arc;

use serde_json::{Value, json};

use super::create::create;
use super::kinds::check_kind;
use super::update::{Commit, commit_update};
use super::{WriteCtx, now_rfc3339, served};
use crate::error::ApiError;
use crate::patch;
use crate::store::State;

/// An apply body: YAML, or JSON (a subset of YAML), which clients such as kube-rs send and which
/// parses far faster with a JSON parser. Callers parse it before taking the store lock.
pub fn parse_apply_body(body: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(_) => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}"))),
    }
}

/// PATCH with `application/apply-patch+yaml` (server-side apply) of a parsed body.
pub fn apply(
    st: &mut State,
    ctx: &WriteCtx,
    name: &str,
    mut applied: Value,
    force: bool,
) -> Result<Arc<Value>, ApiError> {
    check_kind(&ctx.def, &ctx.version, &applied)?;
    if applied["apiVersion"].is_null() || applied["kind"].is_null() {
        return Err(ApiError::bad_request(
            "apiVersion and kind must be set in an apply request",
        ));
    }
    if let Some(n) = applied["metadata"]["name"].as_str()
        && n != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    applied["metadata"]["name"] = json!(name);
    if let Some(m) = applied.as_object_mut() {
        match ctx.subresource.as_deref() {
            Some("status") => {
                m.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"))
            }
            _ if ctx.def.status_subresource => {
                m.remove("status");
            }
            _ => {}
        }
    }
    if ctx.subresource.is_some()
        && let Some(md) = applied["metadata"].as_object_mut()
    {
        // resourceVersion stays: it is the apply's precondition, on subresources too.
        md.retain(|k, _| k == "name" || k == "namespace" || k == "resourceVersion");
    }
    let av = ctx.def.api_version(&ctx.version);
    let now = now_rfc3339();
    let writer = ctx.writer(&av, &now);
    let old = st.get(&ctx.def.key(), &ctx.namespace, name).cloned();
    if let Some(rv) = applied["metadata"]["resourceVersion"].as_str()
        && old
            .as_ref()
            .and_then(|o| o["metadata"]["resourceVersion"].as_str())
            != Some(rv)
    {
        return Err(ApiError::stale(&ctx.def, name));
    }
    // The stored object itself when it is already at the request's version.
    let converted = old
        .as_ref()
        .filter(|o| o["apiVersion"].as_str() != Some(av.as_str()))
        .map(|o| served(&ctx.def, &ctx.version, o));
    let current_served = converted.as_ref().or(old.as_deref());
    let merged = patch::server_side_apply(current_served, &applied, &writer, force)
        .map_err(|conflicts| ApiError::apply_conflict(&ctx.def, &conflicts))?;
    match old {
        None if ctx.subresource.is_some() => Err(ApiError::not_found(&ctx.def, name)),
        None => create(st, ctx, merged),
        Some(old) if converted.is_some() => commit_update(st, ctx, &old, merged, Commit::Applied),
        Some(old) => commit_update(st, ctx, &old, merged, Commit::AppliedToStored),
    }
}
