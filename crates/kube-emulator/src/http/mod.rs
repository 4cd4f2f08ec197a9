//! The HTTP face of the emulator: one catch-all axum handler that parses Kubernetes REST paths
//! into a `Target`, dispatches to discovery or to the `ops` verbs under the store lock, and
//! streams watches from the per-watcher channels filled by `store`. This file holds the entry
//! point, routing and the per-verb dispatch; `paths` parses resource paths, `request` reads
//! queries and bodies, `list` and `watch` answer collections.

mod list;
mod paths;
mod request;
mod watch;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Query, Request, State as AxState};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::Shared;
use super::discovery;
use super::error::ApiError;
use super::ops;
use super::patch::PatchKind;
use super::table;
use list::{delete_collection, list};
use paths::{Target, parse_target, verb_of};
use request::{ApiRequest, accept, check_accept, delete_opts, parse_body, write_ctx};
use watch::watch;

const MAX_BODY: usize = 32 * 1024 * 1024;

fn json_response(code: u16, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        [(header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response()
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.to_status())
}

/// The axum entry point for every path.
pub async fn serve(AxState(shared): AxState<Arc<Shared>>, req: Request) -> Response {
    if !shared.available.load(Ordering::Acquire) {
        // Refused requests are counted as their verb, so that outage traffic shows in `stats()`.
        if let Some(verb) = verb_of(&shared, req.method(), req.uri()) {
            verb_counter(&shared, verb);
        }
        // Retry-After bounds the client-side retry backoff (kube-rs honours it) to one second.
        let mut resp = error_response(&ApiError::unavailable());
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return resp;
    }
    let (parts, body) = req.into_parts();
    let query: HashMap<String, String> = Query::try_from_uri(&parts.uri)
        .map(|Query(q)| q)
        .unwrap_or_default();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return error_response(&ApiError::bad_request(format!(
                "cannot read the request body: {e}"
            )));
        }
    };
    let path = parts.uri.path().to_string();
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let req = ApiRequest {
        method: parts.method,
        headers: parts.headers,
        query,
        body,
    };
    let resp = match route(&shared, &segs, &req) {
        Ok(resp) => resp,
        Err(e) => error_response(&e),
    };
    tally_request(&shared, &req.method, &segs, resp.status().as_u16());
    resp
}

/// Counts a write, or a GET of one object, under `METHOD resource[/subresource]
/// code` (see `Emulator::requests_by`).
fn tally_request(shared: &Shared, method: &Method, segs: &[&str], code: u16) {
    let write = matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if !write && *method != Method::GET {
        return;
    }
    let rest = match segs {
        ["api", _, rest @ ..] | ["apis", _, _, rest @ ..] => rest,
        _ => return,
    };
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        _ => rest,
    };
    let Some(resource) = rest.first() else { return };
    if !write && rest.len() < 2 {
        return; // a list or a watch
    }
    let target = match rest.get(2) {
        Some(sub) => format!("{method} {resource}/{sub} {code}"),
        None => format!("{method} {resource} {code}"),
    };
    let mut by = shared.requests_by.lock().unwrap_or_else(|e| e.into_inner());
    *by.entry(target).or_default() += 1;
}

fn route(shared: &Arc<Shared>, segs: &[&str], req: &ApiRequest) -> Result<Response, ApiError> {
    let registry = shared.lock().registry.clone();
    let get_only = |v: Option<Value>, what: &str| -> Result<Response, ApiError> {
        if req.method != Method::GET {
            return Err(ApiError::method_not_allowed(what));
        }
        v.map(|v| json_response(200, &v))
            .ok_or_else(|| ApiError::no_route(what))
    };
    match segs {
        ["version"] => get_only(Some(discovery::version()), "version"),
        ["healthz" | "livez" | "readyz", ..] => Ok((StatusCode::OK, "ok").into_response()),
        ["api"] => get_only(Some(discovery::core_versions()), "api"),
        ["api", v] => get_only(discovery::resource_list(&registry, "", v), "api"),
        ["apis"] => get_only(Some(discovery::group_list(&registry)), "apis"),
        ["apis", g] => get_only(discovery::group(&registry, g), "apis"),
        ["apis", g, v] => get_only(discovery::resource_list(&registry, g, v), "apis"),
        ["openapi", "v3"] => get_only(Some(discovery::openapi_index(&registry)), "openapi"),
        ["openapi", "v3", "api", v] => {
            get_only(Some(discovery::openapi_gv(&registry, "", v)), "openapi")
        }
        ["openapi", "v3", "apis", g, v] => {
            get_only(Some(discovery::openapi_gv(&registry, g, v)), "openapi")
        }
        ["api", v, rest @ ..] => resource(shared, "", v, rest, req),
        ["apis", g, v, rest @ ..] => resource(shared, g, v, rest, req),
        _ => Err(ApiError::no_route(&segs.join("/"))),
    }
}

fn verb_counter(shared: &Shared, verb: &str) {
    shared.stats.count(verb);
}

fn resource(
    shared: &Arc<Shared>,
    group: &str,
    version: &str,
    rest: &[&str],
    req: &ApiRequest,
) -> Result<Response, ApiError> {
    let target = {
        let st = shared.lock();
        parse_target(&st, group, version, rest)?
    };
    check_accept(req)?;
    let is_watch = req.flag("watch");
    match (&req.method, target.name.is_some()) {
        (&Method::GET, true) => {
            verb_counter(shared, "get");
            get(shared, &target, req)
        }
        (&Method::GET, false) if is_watch => {
            verb_counter(shared, "watch");
            watch(shared, &target, req)
        }
        (&Method::GET, false) => {
            verb_counter(shared, "list");
            list(shared, &target, req)
        }
        (&Method::POST, false) => {
            verb_counter(shared, "create");
            let obj = parse_body(req, &target)?;
            let ctx = write_ctx(&target, req)?;
            let created = ops::create(&mut shared.lock(), &ctx, obj)?;
            Ok(json_response(201, &created))
        }
        (&Method::PUT, true) => {
            verb_counter(shared, "update");
            let obj = parse_body(req, &target)?;
            let ctx = write_ctx(&target, req)?;
            let name = target.name.as_deref().unwrap_or_default();
            let updated = ops::update(&mut shared.lock(), &ctx, name, obj)?;
            Ok(json_response(200, &updated))
        }
        (&Method::PATCH, true) => {
            verb_counter(shared, "patch");
            let ct = req.header(header::CONTENT_TYPE);
            let kind =
                PatchKind::from_content_type(ct).ok_or_else(|| ApiError::unsupported_media(ct))?;
            let ctx = write_ctx(&target, req)?;
            if kind == PatchKind::Apply && req.param("fieldManager").is_none() {
                return Err(ApiError::bad_request(
                    "PATCH, application/apply-patch+yaml requires the fieldManager parameter",
                ));
            }
            let name = target.name.as_deref().unwrap_or_default();
            let force = req.flag("force");
            let applied = match kind {
                PatchKind::Apply => Some(ops::parse_apply_body(&req.body)?),
                _ => None,
            };
            let mut st = shared.lock();
            let existed = st.get(&ctx.def.key(), &ctx.namespace, name).is_some();
            let patched = match applied {
                Some(applied) => ops::apply(&mut st, &ctx, name, applied, force)?,
                None => ops::patch(&mut st, &ctx, name, kind, &req.body, force)?,
            };
            drop(st); // the answer is encoded without the store lock
            Ok(json_response(if existed { 200 } else { 201 }, &patched))
        }
        (&Method::DELETE, true) => {
            verb_counter(shared, "delete");
            let opts = delete_opts(req)?;
            let mut ctx = write_ctx(&target, req)?;
            ctx.dry_run |= opts.dry_run;
            let name = target.name.as_deref().unwrap_or_default();
            let deleted = ops::delete(&mut shared.lock(), &ctx, name, &opts)?;
            Ok(json_response(200, &deleted.answer(&target.def)))
        }
        (&Method::DELETE, false) => {
            verb_counter(shared, "deletecollection");
            delete_collection(shared, &target, req)
        }
        _ => Err(ApiError::method_not_allowed(&rest.join("/"))),
    }
}

fn get(shared: &Arc<Shared>, t: &Target, req: &ApiRequest) -> Result<Response, ApiError> {
    let name = t.name.as_deref().unwrap_or_default();
    let st = shared.lock();
    let obj = st
        .get(
            &t.def.key(),
            t.namespace.as_deref().unwrap_or_default(),
            name,
        )
        .cloned()
        .ok_or_else(|| ApiError::not_found(&t.def, name))?;
    let rv = st.rv.to_string();
    drop(st);
    let obj = ops::served(&t.def, &t.version, &obj);
    if table::wants_table(accept(req)) {
        let tbl = table::table(
            &t.def,
            &t.version,
            &[&obj],
            &rv,
            req.param("includeObject").unwrap_or_default(),
            true,
        );
        return Ok(json_response(200, &tbl));
    }
    Ok(json_response(200, &obj))
}
