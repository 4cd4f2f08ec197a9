//! Watch streaming: resume from the history ring or synthetic ADDED events, initial-events-end
//! and periodic bookmarks, selector transitions as ADDED/DELETED, Tables for `kubectl get -w`,
//! and the streamed response fed by the watcher's channel from `store`. Lists are in `list`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::paths::Target;
use super::request::{ApiRequest, accept, filter_of};
use crate::Shared;
use crate::error::ApiError;
use crate::ops;
use crate::registry::ResourceDef;
use crate::selector::Filter;
use crate::store::{Change, EventType, WATCH_CHANNEL, WatchMsg, Watcher, event_line};
use crate::table;

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
        if kind == c.kind && !self.table && self.def.served_as_stored(&self.version) {
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

pub(super) fn watch(
    shared: &Arc<Shared>,
    t: &Target,
    req: &ApiRequest,
) -> Result<Response, ApiError> {
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
