//! Collections read and deleted at once: list with `limit`/`continue` paging (as a Table for
//! kubectl, or items written straight from the store's values) and deletecollection. `watch`
//! is the streaming read; single objects are in `mod.rs`.

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::admitted;
use super::json_response;
use super::paths::Target;
use super::request::{ApiRequest, accept, delete_options, delete_opts, filter_of, write_ctx};
use crate::Shared;
use crate::error::ApiError;
use crate::ops::{self, WriteCtx};
use crate::store::obj_key;
use crate::table;

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

pub(super) fn list(
    shared: &Arc<Shared>,
    t: &Target,
    req: &ApiRequest,
) -> Result<Response, ApiError> {
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
    let rewrite = !t.def.served_as_stored(&t.version);
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

pub(super) async fn delete_collection(
    shared: &Arc<Shared>,
    t: &Target,
    req: &ApiRequest,
) -> Result<Response, ApiError> {
    let filter = filter_of(t, req)?;
    let opts = delete_opts(req)?;
    let mut ctx = write_ctx(t, req)?;
    ctx.dry_run |= opts.dry_run;
    let names: Vec<(String, String)> = shared
        .lock()
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
        // Each object is deleted as by its own DELETE, webhooks included.
        let options = || delete_options(req);
        let deleted = admitted(shared, ctx.clone(), options, |st, ctx| {
            ops::delete(st, ctx, &name, &opts)
        })
        .await;
        match deleted {
            Ok(deleted) => items.push(deleted.into_object()),
            // A webhook's refusal (or failure) stops the collection, as upstream's.
            Err(e) if e.status.is_some() || e.code >= 500 => return Err(e),
            Err(_) => {
                if let Some(o) = shared.lock().get(&t.def.key(), &ctx.namespace, &name) {
                    items.push(ops::served(&t.def, &t.version, o));
                }
            }
        }
    }
    let st = shared.lock();
    let rv = st.rv.to_string();
    drop(st);
    Ok(json_response(
        200,
        &json!({"kind": format!("{}List", t.def.kind), "apiVersion": t.def.api_version(&t.version), "metadata": {"resourceVersion": rv}, "items": items}),
    ))
}
