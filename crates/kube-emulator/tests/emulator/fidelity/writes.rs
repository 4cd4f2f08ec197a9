//! Writes: create (defaults, pruning, strict field validation, dry run, generateName, bad
//! names and kinds), get, update (stale, missing and no resourceVersion, no-op and
//! metadata-only), merge and JSON patches (failing ones too, and the 415 for strategic merge),
//! and the `/status` subresource.

use axum::http::Method;
use serde_json::json;

use super::{WIDGETS, w, widget};
use crate::upstream::differential::*;

/// Creates and gets; returns the resourceVersion of the first create, which later steps send
/// as a stale one.
pub async fn create_and_get(t: &mut Target) -> String {
    let created = t
        .call(
            "create",
            Method::POST,
            WIDGETS,
            JSON,
            Some(widget(
                "w1",
                json!({"size": 1, "bogus": true, "free": {"any": {"x": 1}}}),
            )),
        )
        .await;
    t.call(
        "create-exists",
        Method::POST,
        WIDGETS,
        JSON,
        Some(widget("w1", json!({"size": 1}))),
    )
    .await;
    t.call(
        "create-status-dropped",
        Method::POST,
        WIDGETS,
        JSON,
        Some(
            json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "w-status"}, "spec": {"size": 2},
                       "status": {"phase": "Ready"}}),
        ),
    )
    .await;
    t.call(
        "create-unknown-top-level",
        Method::POST,
        WIDGETS,
        JSON,
        Some(
            json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "w-top"}, "spec": {"size": 2}, "extra": 1}),
        ),
    )
    .await;
    t.call(
        "create-strict-unknown",
        Method::POST,
        &format!("{WIDGETS}?fieldValidation=Strict"),
        JSON,
        Some(widget("w-strict", json!({"size": 1, "bogus": true}))),
    )
    .await;
    t.call(
        "create-dry-run",
        Method::POST,
        &format!("{WIDGETS}?dryRun=All"),
        JSON,
        Some(widget("w-dry", json!({"size": 1}))),
    )
    .await;
    t.call("get-dry-run", Method::GET, &w("w-dry"), JSON, None)
        .await;
    t.call(
        "create-generate-name",
        Method::POST,
        WIDGETS,
        JSON,
        Some(
            json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"generateName": "gen-"}, "spec": {"size": 1}}),
        ),
    )
    .await;
    t.call(
        "create-bad-name",
        Method::POST,
        WIDGETS,
        JSON,
        Some(widget("Bad_Name", json!({"size": 1}))),
    )
    .await;
    t.call(
        "create-kind-mismatch",
        Method::POST,
        WIDGETS,
        JSON,
        Some(
            json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Gadget",
                       "metadata": {"name": "w-kind"}, "spec": {"size": 1}}),
        ),
    )
    .await;
    t.call(
        "create-namespace-mismatch",
        Method::POST,
        WIDGETS,
        JSON,
        Some(
            json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "w-ns", "namespace": "other"}, "spec": {"size": 1}}),
        ),
    )
    .await;
    t.call("get", Method::GET, &w("w1"), JSON, None).await;
    t.call("get-missing", Method::GET, &w("nope"), JSON, None)
        .await;
    created.rv()
}

pub async fn update(t: &mut Target, rv_after_create: &str) {
    let current = t
        .call("get-for-update", Method::GET, &w("w1"), JSON, None)
        .await;
    let mut body = current.body.clone();
    body["metadata"]["resourceVersion"] = json!(rv_after_create);
    body["spec"]["size"] = json!(2);
    t.call(
        "update-same-rv-as-create",
        Method::PUT,
        &w("w1"),
        JSON,
        Some(body.clone()),
    )
    .await;
    body["metadata"]["resourceVersion"] = json!(rv_after_create);
    body["spec"]["size"] = json!(3);
    t.call(
        "update-stale-rv",
        Method::PUT,
        &w("w1"),
        JSON,
        Some(body.clone()),
    )
    .await;
    body["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("resourceVersion");
    t.call(
        "update-no-rv",
        Method::PUT,
        &w("w1"),
        JSON,
        Some(body.clone()),
    )
    .await;
    let current = t
        .call("get-after-update", Method::GET, &w("w1"), JSON, None)
        .await;
    let mut body = current.body.clone();
    t.call(
        "update-noop",
        Method::PUT,
        &w("w1"),
        JSON,
        Some(body.clone()),
    )
    .await;
    body["metadata"]["labels"] = json!({"touched": "yes"});
    let labelled = t
        .call(
            "update-metadata-only",
            Method::PUT,
            &w("w1"),
            JSON,
            Some(body.clone()),
        )
        .await;
    let mut body = labelled.body.clone();
    body["status"] = json!({"phase": "Ready"});
    t.call(
        "update-status-via-main-ignored",
        Method::PUT,
        &w("w1"),
        JSON,
        Some(body),
    )
    .await;
    t.call(
        "update-missing",
        Method::PUT,
        &w("nope"),
        JSON,
        Some(
            json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "nope", "resourceVersion": "1"}, "spec": {"size": 1}}),
        ),
    )
    .await;
    t.call(
        "update-name-mismatch",
        Method::PUT,
        &w("w1"),
        JSON,
        Some(widget("w2", json!({"size": 1}))),
    )
    .await;
}

pub async fn patch(t: &mut Target, rv_after_create: &str) {
    t.call(
        "merge-patch",
        Method::PATCH,
        &w("w1"),
        MERGE,
        Some(json!({"spec": {"color": "blue", "tags": ["a", "b"]}})),
    )
    .await;
    t.call(
        "merge-patch-null-removes",
        Method::PATCH,
        &w("w1"),
        MERGE,
        Some(json!({"spec": {"tags": null}})),
    )
    .await;
    t.call(
        "merge-patch-stale-rv",
        Method::PATCH,
        &w("w1"),
        MERGE,
        Some(json!({"metadata": {"resourceVersion": rv_after_create}, "spec": {"size": 4}})),
    )
    .await;
    t.call(
        "merge-patch-missing",
        Method::PATCH,
        &w("nope"),
        MERGE,
        Some(json!({"spec": {"size": 4}})),
    )
    .await;
    t.call(
        "json-patch",
        Method::PATCH,
        &w("w1"),
        JSON_PATCH,
        Some(json!([{"op": "replace", "path": "/spec/size", "value": 5},
                       {"op": "add", "path": "/metadata/labels/extra", "value": "1"}])),
    )
    .await;
    t.call(
        "json-patch-test-fails",
        Method::PATCH,
        &w("w1"),
        JSON_PATCH,
        Some(json!([{"op": "test", "path": "/spec/size", "value": 9}])),
    )
    .await;
    t.call(
        "json-patch-missing-path",
        Method::PATCH,
        &w("w1"),
        JSON_PATCH,
        Some(json!([{"op": "replace", "path": "/spec/nothing/deeper", "value": 1}])),
    )
    .await;
    t.call(
        "json-patch-invalid-result",
        Method::PATCH,
        &w("w1"),
        JSON_PATCH,
        Some(json!([{"op": "replace", "path": "/spec/size", "value": 99}])),
    )
    .await;
    t.call(
        "strategic-merge-patch",
        Method::PATCH,
        &w("w1"),
        STRATEGIC,
        Some(json!({"spec": {"size": 4}})),
    )
    .await;
    t.call(
        "merge-patch-status-ignored",
        Method::PATCH,
        &w("w1"),
        MERGE,
        Some(json!({"status": {"phase": "Pending"}})),
    )
    .await;
}

pub async fn status(t: &mut Target) {
    t.call(
        "status-merge-patch",
        Method::PATCH,
        &format!("{}/status", w("w1")),
        MERGE,
        Some(json!({"status": {"phase": "Ready", "observedGeneration": 3}, "spec": {"size": 9}})),
    )
    .await;
    t.call(
        "status-invalid",
        Method::PATCH,
        &format!("{}/status", w("w1")),
        MERGE,
        Some(json!({"status": {"phase": "Broken"}})),
    )
    .await;
    let current = t
        .call("get-for-status-put", Method::GET, &w("w1"), JSON, None)
        .await;
    let mut body = current.body.clone();
    body["status"]["phase"] = json!("Pending");
    body["metadata"]["labels"] = json!({"from-status": "ignored"});
    t.call(
        "status-put",
        Method::PUT,
        &format!("{}/status", w("w1")),
        JSON,
        Some(body),
    )
    .await;
    t.call(
        "status-get",
        Method::GET,
        &format!("{}/status", w("w1")),
        JSON,
        None,
    )
    .await;
}
