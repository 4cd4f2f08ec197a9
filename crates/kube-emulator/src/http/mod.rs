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
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::Shared;
use super::admission::{self, Phase};
use super::auth;
use super::discovery;
use super::error::ApiError;
use super::ops::{self, WriteCtx};
use super::patch::PatchKind;
use super::store::State;
use super::table;
use super::user::UserInfo;
use list::{delete_collection, list};
use paths::{Target, parse_target, verb_of};
use request::{
    ApiRequest, accept, check_accept, delete_options, delete_opts, parse_body, write_ctx,
    write_options,
};
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
    let user = match identify(&shared, &parts.headers).and_then(|user| {
        authorize_request(&shared, &user, &parts.method, &parts.uri).map(|()| user)
    }) {
        Ok(user) => user,
        Err(e) => return error_response(&e),
    };
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
        user,
    };
    let mut resp = match route(&shared, &segs, &req).await {
        Ok(resp) => resp,
        Err(e) => error_response(&e),
    };
    // With a state file, a write is answered once it is on disk. The fsync runs off the async
    // workers, so the writes that arrive meanwhile share the next one.
    if shared.journal.is_some()
        && matches!(
            req.method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        )
        && let Err(e) = {
            let shared = shared.clone();
            tokio::task::spawn_blocking(move || shared.persist().map_err(|e| e.to_string()))
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
        }
    {
        tracing::error!(error = %e, "cannot write the emulator's state journal");
        resp = error_response(&ApiError::internal(&format!(
            "the change was made but could not be saved: {e}"
        )));
    }
    tally_request(&shared, &req.method, &segs, resp.status().as_u16());
    resp
}

/// The user of a request: authentication, then impersonation.
fn identify(shared: &Shared, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
    let now = jiff::Timestamp::now().as_second();
    let user =
        shared
            .authn
            .authenticate(headers, |ns, name| service_account(shared, ns, name), now)?;
    if !auth::impersonation::requested(headers) {
        return Ok(user);
    }
    auth::impersonation::apply(&shared.policy(), user, headers)
}

/// A ServiceAccount's uid and whether it is being deleted, for bound tokens.
fn service_account(shared: &Shared, ns: &str, name: &str) -> Option<(String, bool)> {
    let st = shared.lock();
    let sa = st.get("/serviceaccounts", ns, name)?;
    Some((
        sa["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        sa["metadata"]["deletionTimestamp"].is_string(),
    ))
}

/// The authorizer chain on the request's attributes; 403 as upstream words it.
fn authorize_request(
    shared: &Shared,
    user: &UserInfo,
    method: &Method,
    uri: &axum::http::Uri,
) -> Result<(), ApiError> {
    if user.groups.iter().any(|g| g == auth::MASTERS) {
        return Ok(());
    }
    let attrs = auth::Attributes::of_request(method.as_str(), uri.path(), uri.query());
    let d = auth::decide(&shared.policy(), user, &attrs);
    if d.allowed {
        Ok(())
    } else {
        Err(auth::forbidden(user, &attrs, &d.reason))
    }
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

async fn route(
    shared: &Arc<Shared>,
    segs: &[&str],
    req: &ApiRequest,
) -> Result<Response, ApiError> {
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
        ["api", v, rest @ ..] => resource(shared, "", v, rest, req).await,
        ["apis", g, v, rest @ ..] => resource(shared, g, v, rest, req).await,
        _ => Err(ApiError::no_route(&segs.join("/"))),
    }
}

fn verb_counter(shared: &Shared, verb: &str) {
    shared.stats.count(verb);
}

async fn resource(
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
    if target.def.create_only || target.subresource.as_deref() == Some("token") {
        return create_only(shared, &target, req);
    }
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
            let mut input = Some(obj);
            let options = || write_options(req);
            let created = admitted(shared, ctx, options, |st, ctx| {
                ops::create(st, ctx, retry_input(st, &mut input))
            })
            .await?;
            Ok(json_response(201, &created))
        }
        (&Method::PUT, true) => {
            verb_counter(shared, "update");
            let obj = parse_body(req, &target)?;
            let ctx = write_ctx(&target, req)?;
            let name = target.name.as_deref().unwrap_or_default();
            let mut input = Some(obj);
            let options = || write_options(req);
            let updated = admitted(shared, ctx, options, |st, ctx| {
                ops::update(st, ctx, name, retry_input(st, &mut input))
            })
            .await?;
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
            let mut applied = match kind {
                PatchKind::Apply => Some(ops::parse_apply_body(&req.body)?),
                _ => None,
            };
            let options = || write_options(req);
            let (existed, patched) = admitted(shared, ctx, options, |st, ctx| {
                let existed = st.get(&ctx.def.key(), &ctx.namespace, name).is_some();
                let patched = if applied.is_some() {
                    ops::apply(st, ctx, name, retry_input(st, &mut applied), force)?
                } else {
                    ops::patch(st, ctx, name, kind, &req.body, force)?
                };
                Ok((existed, patched))
            })
            .await?;
            // The answer is encoded without the store lock.
            Ok(json_response(if existed { 200 } else { 201 }, &patched))
        }
        (&Method::DELETE, true) => {
            verb_counter(shared, "delete");
            let opts = delete_opts(req)?;
            let mut ctx = write_ctx(&target, req)?;
            ctx.dry_run |= opts.dry_run;
            let name = target.name.as_deref().unwrap_or_default();
            let options = || delete_options(req);
            let deleted = admitted(shared, ctx, options, |st, ctx| {
                ops::delete(st, ctx, name, &opts)
            })
            .await?;
            Ok(json_response(200, &deleted.answer(&target.def)))
        }
        (&Method::DELETE, false) => {
            verb_counter(shared, "deletecollection");
            delete_collection(shared, &target, req).await
        }
        _ => Err(ApiError::method_not_allowed(&rest.join("/"))),
    }
}

/// How often a write is run again because its object changed while webhooks were asked.
const ADMISSION_ROUNDS: usize = 8;

/// Runs a write under the store lock; when it stops at the admission gate, asks the webhooks
/// without the lock and runs it again (it then commits what they allowed, or stops again if
/// the object changed meanwhile, like upstream's GuaranteedUpdate retries).
async fn admitted<T>(
    shared: &Shared,
    mut ctx: WriteCtx,
    options: impl Fn() -> Value,
    mut write: impl FnMut(&mut State, &WriteCtx) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    for _ in 0..ADMISSION_ROUNDS {
        let outcome = write(&mut shared.lock(), &ctx);
        let pending = match outcome {
            Err(ApiError {
                pending: Some(p), ..
            }) => p,
            other => return other,
        };
        let pending = pending.with_options(&options());
        let object = match pending.phase {
            Phase::Mutating => admission::dispatch_mutating(&pending, &shared.services).await?,
            Phase::Validating => {
                admission::dispatch(&pending, &shared.services).await?;
                None
            }
        };
        ctx.admission = pending.answered(&ctx.admission, object);
    }
    Err(ApiError::internal(
        "the object kept changing while admission webhooks were asked",
    ))
}

/// A write's input for this run: moved out when no webhook can stop the run (the common case,
/// no copy), copied when the run may have to be repeated.
fn retry_input(st: &State, input: &mut Option<Value>) -> Value {
    // Policies never stop a write for a second run; webhooks may.
    let value = if st.webhooks.is_empty() && st.mutating_webhooks.is_empty() {
        input.take()
    } else {
        input.clone()
    };
    value.unwrap_or_default()
}

/// The kinds that are answered rather than stored: reviews and TokenRequest.
fn create_only(shared: &Arc<Shared>, t: &Target, req: &ApiRequest) -> Result<Response, ApiError> {
    let path = format!("{}/{}", t.def.plural, t.name.as_deref().unwrap_or_default());
    let token = t.subresource.is_some();
    if req.method != Method::POST || token != t.name.is_some() {
        return Err(ApiError::method_not_allowed(&path));
    }
    verb_counter(shared, "create");
    let body = parse_body(req, t)?;
    let now = jiff::Timestamp::now().as_second();
    let ns = t.namespace.as_deref().unwrap_or_default();
    if token {
        let name = t.name.as_deref().unwrap_or_default();
        let spec = auth::tokens::token_spec(&body)?;
        let sa = shared
            .lock()
            .get(&t.def.key(), ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&t.def, name))?;
        let issued = auth::tokens::BoundToken {
            namespace: ns.to_owned(),
            name: name.to_owned(),
            uid: sa["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            audiences: spec.audiences.clone(),
            expires: now + spec.expiration_seconds,
            jti: auth::tokens::new_jti(),
        };
        let token = shared.authn.bound.issue(issued, now);
        let answer = auth::tokens::token_response(&body, &sa, &spec, &token, now);
        return Ok(json_response(201, &answer));
    }
    let answer = if t.def.plural == "tokenreviews" {
        auth::reviews::token_review(
            &t.def,
            &body,
            &shared.authn,
            |ns, name| service_account(shared, ns, name),
            now,
        )?
    } else {
        auth::reviews::review(&t.def, &body, &req.user, &shared.policy(), ns)?
    };
    Ok(json_response(201, &answer))
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
