//! The HTTP face of the emulator: one catch-all axum handler that parses Kubernetes REST paths
//! into a `Target`, dispatches to discovery or to the `ops` verbs under the store lock, and
//! streams watches from the per-watcher channels filled by `store`.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State as AxState};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Shared;
use super::discovery;
use super::error::ApiError;
use super::ops::{self, DeleteOpts, FieldValidation, WriteCtx};
use super::patch::PatchKind;
use super::registry::ResourceDef;
use super::selector::{FieldSelector, Filter, LabelSelector, extra_fields};
use super::store::{
    Change, EventType, State, WATCH_CHANNEL, WatchMsg, Watcher, event_line, obj_key,
};
use super::table;

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

struct ApiRequest {
    method: Method,
    headers: HeaderMap,
    query: HashMap<String, String>,
    body: Bytes,
}

impl ApiRequest {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .get(name)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true" | "1"))
    }
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

/// A parsed resource path.
struct Target {
    def: Arc<ResourceDef>,
    version: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_target(st: &State, group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
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
    if let Some(s) = &sub
        && (s != "status" || !def.status_subresource)
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
fn verb_of(shared: &Shared, method: &Method, uri: &axum::http::Uri) -> Option<&'static str> {
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
            let obj = parse_body(req)?;
            let ctx = write_ctx(&target, req)?;
            let created = ops::create(&mut shared.lock(), &ctx, obj)?;
            Ok(json_response(201, &created))
        }
        (&Method::PUT, true) => {
            verb_counter(shared, "update");
            let obj = parse_body(req)?;
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

fn parse_body(req: &ApiRequest) -> Result<Value, ApiError> {
    let ct = req.header(header::CONTENT_TYPE);
    if ct.contains("yaml") {
        return serde_yaml::from_slice(&req.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")));
    }
    if ct.contains("protobuf") || ct.contains("cbor") {
        return Err(ApiError::unsupported_media(ct));
    }
    serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("error decoding JSON body: {e}")))
}

fn write_ctx(t: &Target, req: &ApiRequest) -> Result<WriteCtx, ApiError> {
    let dry_run = match req.param("dryRun") {
        None => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unsupported dryRun value {other:?}: only \"All\" is allowed"
            )));
        }
    };
    let validation = match req.param("fieldValidation") {
        Some("Strict") => FieldValidation::Strict,
        None | Some("Ignore" | "Warn") => FieldValidation::Prune,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid fieldValidation {other:?}: must be Ignore, Warn or Strict"
            )));
        }
    };
    let ua = req.header(header::USER_AGENT);
    let manager = req
        .param("fieldManager")
        .map(str::to_string)
        .unwrap_or_else(|| {
            ua.split('/')
                .next()
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown")
                .to_string()
        });
    Ok(WriteCtx {
        def: t.def.clone(),
        version: t.version.clone(),
        namespace: t.namespace.clone().unwrap_or_default(),
        dry_run,
        manager,
        validation,
        subresource: t.subresource.clone(),
    })
}

fn delete_opts(req: &ApiRequest) -> Result<DeleteOpts, ApiError> {
    let mut opts = DeleteOpts {
        propagation: req.param("propagationPolicy").map(str::to_string),
        ..DeleteOpts::default()
    };
    if !req.body.is_empty() {
        let body: Value = serde_json::from_slice(&req.body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?;
        if let Some(p) = body["propagationPolicy"].as_str() {
            opts.propagation = Some(p.to_string());
        }
        if body["orphanDependents"].as_bool() == Some(true) {
            opts.propagation = Some("Orphan".into());
        }
        opts.uid = body["preconditions"]["uid"].as_str().map(str::to_string);
        opts.resource_version = body["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string);
        opts.dry_run = body["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    }
    Ok(opts)
}

fn filter_of(t: &Target, req: &ApiRequest) -> Result<Filter, ApiError> {
    Ok(Filter {
        labels: LabelSelector::parse(req.param("labelSelector").unwrap_or_default())?,
        fields: FieldSelector::parse(
            req.param("fieldSelector").unwrap_or_default(),
            extra_fields(&t.def.group, &t.def.plural),
        )?,
    })
}

fn accept(req: &ApiRequest) -> &str {
    req.header(header::ACCEPT)
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

fn continue_token(rv: u64, key: &(String, String)) -> String {
    let raw = serde_json::to_vec(&json!([rv, key.0, key.1])).unwrap_or_default();
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_continue(token: &str) -> Result<(String, String), ApiError> {
    let bad = || ApiError::bad_request("continue key is not valid");
    if !token.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes: Result<Vec<u8>, _> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2).unwrap_or_default(), 16))
        .collect();
    let v: Value = serde_json::from_slice(&bytes.map_err(|_| bad())?).map_err(|_| bad())?;
    match (v[1].as_str(), v[2].as_str()) {
        (Some(ns), Some(name)) => Ok((ns.to_string(), name.to_string())),
        _ => Err(bad()),
    }
}

fn list(shared: &Arc<Shared>, t: &Target, req: &ApiRequest) -> Result<Response, ApiError> {
    let filter = filter_of(t, req)?;
    let limit: usize = match req.param("limit") {
        None => 0,
        Some(l) => l
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
    };
    let after = req.param("continue").map(parse_continue).transpose()?;
    let st = shared.lock();
    let rv = st.rv;
    let mut items: Vec<Arc<Value>> = Vec::new();
    let mut next = None;
    for (_, obj) in st.range(&t.def.key(), t.namespace.as_deref(), after.as_ref()) {
        if !filter.matches(obj) {
            continue;
        }
        if limit > 0 && items.len() == limit {
            next = Some(continue_token(rv, &obj_key(&items[items.len() - 1])));
            break;
        }
        items.push(obj.clone());
    }
    drop(st);
    let list_kind = format!("{}List", t.def.kind);
    if table::wants_table(accept(req)) {
        let served: Vec<Value> = items
            .iter()
            .map(|o| ops::served(&t.def, &t.version, o))
            .collect();
        let refs: Vec<&Value> = served.iter().collect();
        let mut tbl = table::table(
            &t.def,
            &t.version,
            &refs,
            &rv.to_string(),
            req.param("includeObject").unwrap_or_default(),
            true,
        );
        if let Some(c) = &next {
            tbl["metadata"]["continue"] = json!(c);
        }
        return Ok(json_response(200, &tbl));
    }
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = &next {
        meta["continue"] = json!(c);
    }
    // Items are written straight from the shared store values to avoid cloning each one.
    let api_version = t.def.api_version(&t.version);
    let rewrite = t.version != t.def.storage_version;
    let mut buf = Vec::with_capacity(256 + items.len() * 512);
    buf.extend_from_slice(b"{\"kind\":");
    let _ = serde_json::to_writer(&mut buf, &list_kind);
    buf.extend_from_slice(b",\"apiVersion\":");
    let _ = serde_json::to_writer(&mut buf, &api_version);
    buf.extend_from_slice(b",\"metadata\":");
    let _ = serde_json::to_writer(&mut buf, &meta);
    buf.extend_from_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        if rewrite {
            let _ = serde_json::to_writer(&mut buf, &ops::served(&t.def, &t.version, item));
        } else {
            let _ = serde_json::to_writer(&mut buf, &**item);
        }
    }
    buf.extend_from_slice(b"]}");
    Ok(([(header::CONTENT_TYPE, "application/json")], buf).into_response())
}

fn delete_collection(
    shared: &Arc<Shared>,
    t: &Target,
    req: &ApiRequest,
) -> Result<Response, ApiError> {
    let filter = filter_of(t, req)?;
    let opts = delete_opts(req)?;
    let mut ctx = write_ctx(t, req)?;
    ctx.dry_run |= opts.dry_run;
    let mut st = shared.lock();
    let names: Vec<(String, String)> = st
        .range(&t.def.key(), t.namespace.as_deref(), None)
        .filter(|(_, o)| filter.matches(o))
        .map(|(k, _)| k.clone())
        .collect();
    let mut items = Vec::new();
    for (ns, name) in names {
        let ctx = WriteCtx {
            namespace: ns,
            ..ctx.clone()
        };
        if let Ok(deleted) = ops::delete(&mut st, &ctx, &name, &opts) {
            items.push(deleted.into_object());
        } else if let Some(o) = st.get(&t.def.key(), &ctx.namespace, &name) {
            items.push((**o).clone());
        }
    }
    let rv = st.rv.to_string();
    drop(st);
    Ok(json_response(
        200,
        &json!({"kind": format!("{}List", t.def.kind), "apiVersion": t.def.api_version(&t.version), "metadata": {"resourceVersion": rv}, "items": items}),
    ))
}

/// Per-watch view: what it selects and how it renders events.
struct WatchView {
    def: Arc<ResourceDef>,
    version: String,
    filter: Filter,
    table: bool,
    include_object: String,
    headers_sent: bool,
}

impl WatchView {
    fn render(&mut self, kind: &str, obj: &Value) -> Bytes {
        let served = ops::served(&self.def, &self.version, obj);
        if self.table {
            let rv = served["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let tbl = table::table(
                &self.def,
                &self.version,
                &[&served],
                &rv,
                &self.include_object,
                !self.headers_sent,
            );
            self.headers_sent = true;
            return event_line(kind, &tbl);
        }
        event_line(kind, &served)
    }

    /// The line a change becomes for this watcher, if any (selector transitions included).
    fn change_line(&mut self, c: &Change) -> Option<Bytes> {
        let now = self.filter.matches(&c.object);
        let before = c.previous.as_ref().is_some_and(|p| self.filter.matches(p));
        let kind = match (c.kind, before, now) {
            (EventType::Added, _, true) => EventType::Added,
            (EventType::Modified, true, true) => EventType::Modified,
            (EventType::Modified, false, true) => EventType::Added,
            (EventType::Modified, true, false) => EventType::Deleted,
            (EventType::Deleted, b, n) if b || n => EventType::Deleted,
            _ => return None,
        };
        if kind == c.kind && !self.table && self.version == self.def.storage_version {
            return Some(c.line());
        }
        Some(self.render(kind.as_str(), &c.object))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut obj = json!({
            "kind": self.def.kind,
            "apiVersion": self.def.api_version(&self.version),
            "metadata": {"resourceVersion": rv.to_string()},
        });
        if initial_end {
            obj["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        event_line("BOOKMARK", &obj)
    }
}

fn watch(shared: &Arc<Shared>, t: &Target, req: &ApiRequest) -> Result<Response, ApiError> {
    let filter = filter_of(t, req)?;
    let rv_param = req.param("resourceVersion");
    let start_rv: Option<u64> = match rv_param {
        None | Some("0") => None,
        Some(rv) => Some(
            rv.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let bookmarks = req.flag("allowWatchBookmarks");
    let send_initial = match req.param("sendInitialEvents") {
        Some("true") => true,
        Some(_) => false,
        None => start_rv.is_none(),
    };
    let timeout = req
        .param("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(30 * 60));
    let mut view = WatchView {
        def: t.def.clone(),
        version: t.version.clone(),
        filter: filter.clone(),
        table: table::wants_table(accept(req)),
        include_object: req.param("includeObject").unwrap_or_default().to_string(),
        headers_sent: false,
    };
    let mut pending: VecDeque<Bytes> = VecDeque::new();
    let (tx, rx) = mpsc::channel(WATCH_CHANNEL);
    {
        let mut st = shared.lock();
        let key = t.def.key();
        if let Some(rv) = start_rv
            && rv < st.oldest_resumable
        {
            let err = ApiError::gone(format!(
                "too old resource version: {rv} ({})",
                st.oldest_resumable + 1
            ));
            pending.push_back(event_line("ERROR", &err.to_status()));
            return Ok(stream_response(pending, None, Duration::ZERO, view));
        }
        if send_initial {
            let objs: Vec<Arc<Value>> = st
                .range(&key, t.namespace.as_deref(), None)
                .filter(|(_, o)| filter.matches(o))
                .map(|(_, o)| o.clone())
                .collect();
            for o in objs {
                pending.push_back(view.render("ADDED", &o));
            }
            if bookmarks && req.param("sendInitialEvents") == Some("true") {
                pending.push_back(view.bookmark(st.rv, true));
            }
        }
        if let Some(rv) = start_rv {
            let replay: Vec<Arc<Change>> = st
                .history
                .iter()
                .filter(|c| c.rv > rv && c.resource == key)
                .filter(|c| {
                    t.namespace
                        .as_deref()
                        .is_none_or(|ns| c.object["metadata"]["namespace"].as_str() == Some(ns))
                })
                .cloned()
                .collect();
            for c in replay {
                if let Some(line) = view.change_line(&c) {
                    pending.push_back(line);
                }
            }
        }
        st.watchers.push(Watcher {
            resource: key,
            namespace: t.namespace.clone(),
            filter,
            bookmarks,
            tx,
        });
    }
    Ok(stream_response(pending, Some(rx), timeout, view))
}

fn stream_response(
    pending: VecDeque<Bytes>,
    rx: Option<mpsc::Receiver<WatchMsg>>,
    timeout: Duration,
    view: WatchView,
) -> Response {
    let deadline = tokio::time::Instant::now() + timeout;
    let state = (pending, rx, view);
    let stream =
        futures::stream::unfold(state, move |(mut pending, mut rx, mut view)| async move {
            loop {
                if let Some(line) = pending.pop_front() {
                    return Some((Ok::<_, Infallible>(line), (pending, rx, view)));
                }
                let receiver = rx.as_mut()?;
                let msg = tokio::select! {
                    m = receiver.recv() => m?,
                    _ = tokio::time::sleep_until(deadline) => return None,
                };
                let line = match msg {
                    WatchMsg::Change(c) => view.change_line(&c),
                    WatchMsg::Bookmark(rv) => Some(view.bookmark(rv, false)),
                };
                if let Some(line) = line {
                    return Some((Ok(line), (pending, rx, view)));
                }
            }
        });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}
