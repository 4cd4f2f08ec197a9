//! Server-side apply by two field managers: conflicts, `force`, fields dropped by their manager,
//! a stale resourceVersion, apply on `/status`, and an update after apply.

use axum::http::Method;
use serde_json::{Value, json};

use super::w;
use crate::upstream::differential::*;

pub async fn apply(t: &mut Target, rv_after_create: &str) {
    let apply = |size: i64, extra: Value| {
        let mut spec = json!({"size": size});
        spec.as_object_mut()
            .expect("spec")
            .extend(extra.as_object().cloned().unwrap_or_default());
        json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
               "metadata": {"name": "w-ssa", "labels": {"owner": "a"}}, "spec": spec})
    };
    t.call(
        "apply-no-manager",
        Method::PATCH,
        &w("w-ssa"),
        APPLY,
        Some(apply(1, json!({}))),
    )
    .await;
    t.call(
        "apply-create-a",
        Method::PATCH,
        &format!("{}?fieldManager=a", w("w-ssa")),
        APPLY,
        Some(apply(
            1,
            json!({"name": "abc", "ports": [{"name": "http", "port": 80}]}),
        )),
    )
    .await;
    t.call("apply-same-value-b", Method::PATCH, &format!("{}?fieldManager=b", w("w-ssa")), APPLY,
           Some(json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "w-ssa"}, "spec": {"size": 1, "ports": [{"name": "grpc", "port": 90}]}}))).await;
    t.call("apply-conflict-b", Method::PATCH, &format!("{}?fieldManager=b", w("w-ssa")), APPLY,
           Some(json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "w-ssa"}, "spec": {"size": 2, "name": "xyz", "ports": [{"name": "grpc", "port": 90}]}}))).await;
    t.call("apply-force-b", Method::PATCH, &format!("{}?fieldManager=b&force=true", w("w-ssa")), APPLY,
           Some(json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "w-ssa"}, "spec": {"size": 2, "ports": [{"name": "grpc", "port": 90}]}}))).await;
    t.call(
        "apply-a-drops-fields",
        Method::PATCH,
        &format!("{}?fieldManager=a", w("w-ssa")),
        APPLY,
        Some(
            json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "w-ssa"}, "spec": {"size": 2}}),
        ),
    )
    .await;
    t.call(
        "apply-invalid",
        Method::PATCH,
        &format!("{}?fieldManager=a", w("w-ssa")),
        APPLY,
        Some(
            json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "w-ssa"}, "spec": {"size": 0}}),
        ),
    )
    .await;
    t.call("apply-stale-rv", Method::PATCH, &format!("{}?fieldManager=a", w("w-ssa")), APPLY,
           Some(json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "w-ssa", "resourceVersion": rv_after_create}, "spec": {"size": 2}}))).await;
    t.call(
        "apply-status",
        Method::PATCH,
        &format!("{}/status?fieldManager=ctl&force=true", w("w-ssa")),
        APPLY,
        Some(
            json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "w-ssa"}, "status": {"phase": "Ready"}}),
        ),
    )
    .await;
    t.call(
        "update-after-apply",
        Method::PATCH,
        &format!("{}?fieldManager=editor", w("w-ssa")),
        MERGE,
        Some(json!({"spec": {"color": "green"}})),
    )
    .await;
    t.call("get-ssa", Method::GET, &w("w-ssa"), JSON, None)
        .await;
    t.call("delete-ssa", Method::DELETE, &w("w-ssa"), JSON, None)
        .await;
}
