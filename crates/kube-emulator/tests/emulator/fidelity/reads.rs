//! Reads: lists with label and field selectors (invalid ones too), paging with
//! `limit`/`continue`, Table output, and watches from a resourceVersion (with bookmarks
//! requested, with selectors, with `sendInitialEvents`).

use axum::http::Method;
use serde_json::json;

use super::{WIDGETS, w};
use crate::upstream::differential::*;

pub async fn list(t: &mut Target) {
    for (name, labels) in [
        ("sel-a", json!({"app": "a", "tier": "x"})),
        ("sel-b", json!({"app": "b"})),
        ("sel-c", json!({"other": "y"})),
    ] {
        t.call(
            &format!("create-{name}"),
            Method::POST,
            WIDGETS,
            JSON,
            Some(
                json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                           "metadata": {"name": name, "labels": labels}, "spec": {"size": 3}}),
            ),
        )
        .await;
    }
    t.call("list", Method::GET, WIDGETS, JSON, None).await;
    for (step, query) in [
        ("list-label-eq", "labelSelector=app%3Da"),
        ("list-label-in", "labelSelector=app+in+(a,b)"),
        ("list-label-notin", "labelSelector=app+notin+(a)"),
        ("list-label-exists", "labelSelector=tier"),
        ("list-label-not-exists", "labelSelector=!tier"),
        ("list-label-ne", "labelSelector=app!%3Da"),
        ("list-label-multi", "labelSelector=app%3Da,tier%3Dx"),
        ("list-label-bad", "labelSelector=app%3D%3D%3Da"),
        ("list-field-name", "fieldSelector=metadata.name%3Dsel-b"),
        (
            "list-field-namespace",
            "fieldSelector=metadata.namespace%3Dfidelity",
        ),
        ("list-field-unsupported", "fieldSelector=spec.size%3D3"),
    ] {
        t.call(step, Method::GET, &format!("{WIDGETS}?{query}"), JSON, None)
            .await;
    }
    t.call(
        "list-all-namespaces",
        Method::GET,
        "/apis/fidelity.apikeys.dev/v1/widgets?labelSelector=app",
        JSON,
        None,
    )
    .await;

    // paging
    let page = t
        .call(
            "list-page-1",
            Method::GET,
            &format!("{WIDGETS}?limit=2"),
            JSON,
            None,
        )
        .await;
    let token = page.body["metadata"]["continue"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let page = t
        .call(
            "list-page-2",
            Method::GET,
            &format!("{WIDGETS}?limit=2&continue={token}"),
            JSON,
            None,
        )
        .await;
    let token = page.body["metadata"]["continue"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    t.call(
        "list-page-3",
        Method::GET,
        &format!("{WIDGETS}?limit=10&continue={token}"),
        JSON,
        None,
    )
    .await;
    t.call(
        "list-page-bad-continue",
        Method::GET,
        &format!("{WIDGETS}?limit=2&continue=garbage"),
        JSON,
        None,
    )
    .await;
}

pub async fn table(t: &mut Target) {
    t.call_accept(
        "widget-table",
        Method::GET,
        &format!("{WIDGETS}?labelSelector=app"),
        JSON,
        TABLE,
        None,
    )
    .await;
}

pub async fn watch(t: &mut Target) {
    let mark = t
        .call(
            "watch-mark",
            Method::PATCH,
            &w("sel-a"),
            MERGE,
            Some(json!({"metadata": {"labels": {"mark": "1"}}})),
        )
        .await
        .rv();
    t.call(
        "watch-write-1",
        Method::PATCH,
        &w("sel-a"),
        MERGE,
        Some(json!({"spec": {"size": 4}})),
    )
    .await;
    t.call(
        "watch-write-2",
        Method::PATCH,
        &w("sel-b"),
        MERGE,
        Some(json!({"metadata": {"labels": {"app": "c"}}})),
    )
    .await;
    t.call("watch-write-3", Method::DELETE, &w("sel-c"), JSON, None)
        .await;
    t.watch(
        "watch-from-rv",
        &format!(
            "{WIDGETS}?watch=true&allowWatchBookmarks=true&resourceVersion={mark}&timeoutSeconds=2"
        ),
    )
    .await;
    t.watch(
        "watch-from-rv-selector",
        &format!(
            "{WIDGETS}?watch=true&labelSelector=app%3Db&resourceVersion={mark}&timeoutSeconds=2"
        ),
    )
    .await;
    t.watch(
        "watch-name-field",
        &format!("{WIDGETS}?watch=true&fieldSelector=metadata.name%3Dsel-a&timeoutSeconds=1"),
    )
    .await;
    t.watch("watch-initial-events", &format!(
        "{WIDGETS}?watch=true&labelSelector=app&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=2")).await;
    t.watch("watch-initial-events-without-bookmarks", &format!(
        "{WIDGETS}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1")).await;
}
