//! Finalizers and `deletionTimestamp`, deletes (with preconditions, dry run, twice, of an
//! object already gone) and deletecollection.

use axum::http::Method;
use serde_json::json;

use super::{WIDGETS, w};
use crate::upstream::differential::*;

pub async fn delete(t: &mut Target) {
    t.call(
        "create-finalized",
        Method::POST,
        WIDGETS,
        JSON,
        Some(
            json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "w-fin", "finalizers": ["fidelity.apikeys.dev/hold"]},
                       "spec": {"size": 1}}),
        ),
    )
    .await;
    t.call("delete-precondition-uid", Method::DELETE, &w("w-fin"), JSON,
                     Some(json!({"kind": "DeleteOptions", "apiVersion": "v1",
                                 "preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}}))).await;
    t.call("delete-finalized", Method::DELETE, &w("w-fin"), JSON, None)
        .await;
    t.call("get-deleting", Method::GET, &w("w-fin"), JSON, None)
        .await;
    t.call(
        "spec-write-while-deleting",
        Method::PATCH,
        &w("w-fin"),
        MERGE,
        Some(json!({"spec": {"size": 2}})),
    )
    .await;
    t.call("add-finalizer-while-deleting", Method::PATCH, &w("w-fin"), JSON_PATCH,
           Some(json!([{"op": "add", "path": "/metadata/finalizers/-", "value": "fidelity.apikeys.dev/late"}]))).await;
    t.call("delete-again", Method::DELETE, &w("w-fin"), JSON, None)
        .await;
    t.call(
        "remove-finalizer",
        Method::PATCH,
        &w("w-fin"),
        MERGE,
        Some(json!({"metadata": {"finalizers": null}})),
    )
    .await;
    t.call(
        "get-after-finalizer-removed",
        Method::GET,
        &w("w-fin"),
        JSON,
        None,
    )
    .await;
    t.call("delete-missing", Method::DELETE, &w("w-fin"), JSON, None)
        .await;
    t.call(
        "get-generate-name-list",
        Method::GET,
        &format!("{WIDGETS}?labelSelector=app"),
        JSON,
        None,
    )
    .await;
    t.call(
        "delete-dry-run",
        Method::DELETE,
        &format!("{}?dryRun=All", w("w-status")),
        JSON,
        None,
    )
    .await;
    t.call(
        "get-after-dry-run-delete",
        Method::GET,
        &w("w-status"),
        JSON,
        None,
    )
    .await;
    t.call(
        "delete-collection",
        Method::DELETE,
        &format!("{WIDGETS}?labelSelector=app"),
        JSON,
        None,
    )
    .await;
    t.call(
        "list-after-delete-collection",
        Method::GET,
        &format!("{WIDGETS}?labelSelector=app"),
        JSON,
        None,
    )
    .await;
}
