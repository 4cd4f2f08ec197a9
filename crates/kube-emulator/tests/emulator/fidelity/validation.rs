//! Validation: one create per kind of OpenAPI schema violation and CEL violation (rule,
//! `messageExpression`, transition rule), the date-time format's quirks, and the CRDs upstream
//! refuses to create.

use axum::http::Method;
use serde_json::{Value, json};

use super::{WIDGETS, w, widget};
use crate::upstream::differential::*;

use super::widget_crd;

pub async fn schema_violations(t: &mut Target) {
    let invalid: [(&str, Value); 20] = [
        ("minimum", json!({"size": 0})),
        ("maximum", json!({"size": 11})),
        ("type-string-for-int", json!({"size": "one"})),
        ("type-float-for-int", json!({"size": 1.5})),
        ("enum", json!({"size": 1, "color": "purple"})),
        ("min-length", json!({"size": 1, "name": "a"})),
        ("max-length", json!({"size": 1, "name": "abcdefghij"})),
        ("pattern", json!({"size": 1, "name": "ABC"})),
        (
            "max-items",
            json!({"size": 1, "tags": ["a", "b", "c", "d"]}),
        ),
        ("set-duplicate", json!({"size": 1, "tags": ["a", "a"]})),
        (
            "map-duplicate-key",
            json!({"size": 1, "ports": [{"name": "x"}, {"name": "x"}]}),
        ),
        (
            "map-missing-key",
            json!({"size": 1, "ports": [{"port": 1}]}),
        ),
        (
            "max-properties",
            json!({"size": 1, "labels": {"a": "1", "b": "2", "c": "3"}}),
        ),
        ("date-time", json!({"size": 1, "when": "yesterday"})),
        ("required", json!({"color": "red"})),
        ("null-not-nullable", json!({"size": 1, "name": null})),
        ("object-for-string", json!({"size": 1, "name": {"a": 1}})),
        ("cel-rule", json!({"size": 1, "name": "forbidden"})),
        (
            "cel-message-expression",
            json!({"size": 1, "min": 5, "max": 2}),
        ),
        (
            "several-at-once",
            json!({"size": 0, "color": "purple", "name": "A"}),
        ),
    ];
    for (case, spec) in invalid {
        t.call(
            &format!("invalid-{case}"),
            Method::POST,
            WIDGETS,
            JSON,
            Some(widget(&format!("bad-{case}"), spec)),
        )
        .await;
    }
    t.call(
        "valid-edge-values",
        Method::POST,
        WIDGETS,
        JSON,
        Some(widget(
            "edge",
            json!({"size": 10, "name": "ab", "count": "50%", "note": null,
                                      "when": "2030-01-01T00:00:00Z", "mode": "fast"}),
        )),
    )
    .await;
    // The date-time format's quirks (kube-openapi's IsDateTime): both servers
    // take or refuse the same texts; what is taken is deleted again.
    let forms = [
        "2030-01-01T00:00:00Zt",
        "2030-01-01t00:00:00.5z",
        "2030-01-01T00:00:00x5Z",
        "2030-01-01T00:00:00.1234567891+99:99",
        "2030-01-01T00:00:00+0100",
        "2030-01-01T00:00",
        "2030-01-01T00:00:00",
        "2030-01-01 00:00:00Z",
        "2030-02-30T00:00:00Z",
        "2030-01-01T24:00:00Z",
    ];
    for (i, when) in forms.into_iter().enumerate() {
        let name = format!("when-{i}");
        let answer = t
            .call(
                &format!("date-time-form-{i}"),
                Method::POST,
                WIDGETS,
                JSON,
                Some(widget(&name, json!({"size": 1, "when": when}))),
            )
            .await;
        if answer.code == 201 {
            t.call(
                &format!("date-time-form-{i}-delete"),
                Method::DELETE,
                &w(&name),
                JSON,
                None,
            )
            .await;
        }
    }
    t.call(
        "invalid-spec-not-object",
        Method::POST,
        WIDGETS,
        JSON,
        Some(
            json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "bad-spec"}, "spec": "nope"}),
        ),
    )
    .await;
    t.call(
        "cel-transition-rule",
        Method::PATCH,
        &w("edge"),
        MERGE,
        Some(json!({"spec": {"mode": "slow"}})),
    )
    .await;
    t.call(
        "invalid-update",
        Method::PATCH,
        &w("edge"),
        MERGE,
        Some(json!({"spec": {"size": 0, "name": "forbidden"}})),
    )
    .await;
}

pub async fn crds_refused(t: &mut Target) {
    // A CRD whose CEL message would cost too much to evaluate (estimated at create time).
    let mut costly = widget_crd();
    costly["metadata"]["name"] = json!("costlies.fidelity.apikeys.dev");
    costly["spec"]["names"] = json!({"plural": "costlies", "singular": "costly", "kind": "Costly"});
    costly["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"]
        [1]["messageExpression"] =
        json!("'min ' + string(self.min) + ' exceeds max ' + string(self.max)");
    t.call(
        "crd-cel-cost-exceeded",
        Method::POST,
        CRDS,
        JSON,
        Some(costly),
    )
    .await;
    let mut nonstructural = widget_crd();
    nonstructural["metadata"]["name"] = json!("loose.fidelity.apikeys.dev");
    nonstructural["spec"]["names"] =
        json!({"plural": "loose", "singular": "loose", "kind": "Loose"});
    nonstructural["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["untyped"] = json!({"description": "no type"});
    t.call(
        "crd-not-structural",
        Method::POST,
        CRDS,
        JSON,
        Some(nonstructural),
    )
    .await;
}
