//! Resource paths: `/api/v1/…` and `/apis/{group}/{version}/…` parsed into a `Target`
//! (resource, namespace, name, subresource), and the verb a request counts as. Used by the
//! dispatch in `mod.rs` and by `request`, `list` and `watch`.

use std::sync::Arc;

use axum::http::Method;

use crate::Shared;
use crate::error::ApiError;
use crate::registry::ResourceDef;
use crate::store::State;

/// A parsed resource path.
pub(super) struct Target {
    pub(super) def: Arc<ResourceDef>,
    pub(super) version: String,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    pub(super) subresource: Option<String>,
}

pub(super) fn parse_target(
    st: &State,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Target, ApiError> {
    let lookup = |plural: &str| st.registry.lookup(group, version, plural);
    let not_found = || ApiError::no_route(&rest.join("/"));
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..] if lookup(plural).is_some_and(|d| d.namespaced) => {
            (Some(ns.to_string()), [&[*plural][..], tail].concat())
        }
        _ => (None, rest.to_vec()),
    };
    let (plural, name, sub) = match rest.as_slice() {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(n.to_string()), None),
        [p, n, s] => (*p, Some(n.to_string()), Some(s.to_string())),
        _ => return Err(not_found()),
    };
    let def = lookup(plural).ok_or_else(not_found)?;
    if def.namespaced && namespace.is_none() && name.is_some() {
        return Err(not_found());
    }
    let token = def.group.is_empty() && def.plural == "serviceaccounts";
    if let Some(s) = &sub
        && !((s == "status" && def.status_subresource) || (s == "token" && token))
    {
        return Err(not_found());
    }
    Ok(Target {
        def,
        version: version.to_string(),
        namespace,
        name,
        subresource: sub,
    })
}

/// The verb a request to a resource path would be counted as; `None` for
/// discovery and other non-resource paths (which are never counted).
pub(super) fn verb_of(
    shared: &Shared,
    method: &Method,
    uri: &axum::http::Uri,
) -> Option<&'static str> {
    let segs: Vec<&str> = uri
        .path()
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => ("", *v, rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
        _ => return None,
    };
    let target = parse_target(&shared.lock(), group, version, rest).ok()?;
    let watch = uri.query().is_some_and(|q| {
        q.split('&')
            .any(|kv| matches!(kv, "watch=true" | "watch=1"))
    });
    Some(match (method, target.name.is_some()) {
        (&Method::GET, true) => "get",
        (&Method::GET, false) if watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::POST, false) => "create",
        (&Method::PUT, true) => "update",
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => return None,
    })
}
