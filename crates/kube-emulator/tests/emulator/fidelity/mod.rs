//! Fidelity of the emulator: the same sequence of requests (about 140) against the upstream
//! apiextensions-apiserver (`tests/upstream/`) and against the emulator, about a test CRD with
//! one of each schema feature (`Widget`); the answers are normalised and compared, and each
//! difference is either fixed or listed with its reason in `tests/upstream/allowlist.md`. The
//! steps are grouped by topic in the files beside this one; see docs/fidelity.md of the
//! apikey-operator. Skips with a note when the upstream build is missing (CI builds it first).

mod apply;
mod delete;
mod reads;
mod validation;
mod writes;

use std::path::Path;

use axum::http::Method;
use serde_json::{Value, json};

use crate::upstream::differential::*;

const WIDGETS: &str = "/apis/fidelity.apikeys.dev/v1/namespaces/fidelity/widgets";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_behave_as_upstream() {
    compare_with_upstream(
        "custom_resources_behave_as_upstream",
        run_suite,
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/upstream/allowlist.md"
        )),
    )
    .await;
}

/// The same sequence on any server; returns what it saw. Steps read earlier answers (current
/// resourceVersions, uids) from the raw values, never from the normalised ones.
async fn run_suite(mut t: Target) -> Vec<Observation> {
    install_crds(&t, &[widget_crd()], &[WIDGETS]).await;
    // CRD status as the clients see it once established.
    let crd = t
        .send(
            Method::GET,
            &format!("{CRDS}/widgets.fidelity.apikeys.dev"),
            JSON,
            JSON,
            None,
        )
        .await;
    let crd: Value = serde_json::from_slice(&crd.2).expect("crd json");
    let conditions: Vec<Value> = crd["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|c| json!({"type": c["type"], "status": c["status"], "reason": c["reason"]}))
        .collect();
    t.seen.push(Observation {
        step: "crd-status".into(),
        observed: json!({"conditions": conditions, "acceptedNames": crd["status"]["acceptedNames"],
                         "storedVersions": crd["status"]["storedVersions"]}),
    });

    let rv_after_create = writes::create_and_get(&mut t).await;
    reads::list(&mut t).await;
    writes::update(&mut t, &rv_after_create).await;
    writes::patch(&mut t, &rv_after_create).await;
    writes::status(&mut t).await;
    apply::apply(&mut t, &rv_after_create).await;
    validation::schema_violations(&mut t).await;
    reads::table(&mut t).await;
    reads::watch(&mut t).await;
    delete::delete(&mut t).await;
    validation::crds_refused(&mut t).await;
    t.seen
}

fn w(name: &str) -> String {
    format!("{WIDGETS}/{name}")
}

/// The widget CRD: one of each schema feature the suite exercises.
fn widget_crd() -> Value {
    json!({
      "apiVersion": "apiextensions.k8s.io/v1",
      "kind": "CustomResourceDefinition",
      "metadata": {"name": "widgets.fidelity.apikeys.dev"},
      "spec": {
        "group": "fidelity.apikeys.dev",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                  "shortNames": ["wdg"], "categories": ["fidelity"]},
        "versions": [{
          "name": "v1", "served": true, "storage": true,
          "subresources": {"status": {}},
          "additionalPrinterColumns": [
            {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
            {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
          ],
          "schema": {"openAPIV3Schema": {
            "type": "object",
            "properties": {
              "spec": {
                "type": "object",
                "required": ["size"],
                "x-kubernetes-validations": [
                  {"rule": "!has(self.name) || self.name != 'forbidden'",
                   "message": "name must not be forbidden", "fieldPath": ".name",
                   "reason": "FieldValueForbidden"},
                  {"rule": "!has(self.min) || !has(self.max) || self.min <= self.max",
                   "messageExpression": "self.min > 100 ? 'min is far above max' : 'min exceeds max'"}
                ],
                "properties": {
                  "size": {"type": "integer", "minimum": 1, "maximum": 10},
                  "color": {"type": "string", "enum": ["red", "green", "blue"], "default": "red"},
                  "name": {"type": "string", "minLength": 2, "maxLength": 8, "pattern": "^[a-z]+$"},
                  "tags": {"type": "array", "maxItems": 3, "x-kubernetes-list-type": "set",
                           "items": {"type": "string"}},
                  "ports": {"type": "array", "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                            "items": {"type": "object", "required": ["name"],
                                      "properties": {"name": {"type": "string"},
                                                     "port": {"type": "integer", "format": "int32"}}}},
                  "labels": {"type": "object", "maxProperties": 2,
                             "additionalProperties": {"type": "string"}},
                  "when": {"type": "string", "format": "date-time"},
                  "mode": {"type": "string",
                           "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "mode is immutable"}]},
                  "min": {"type": "integer"},
                  "max": {"type": "integer"},
                  "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                  "count": {"x-kubernetes-int-or-string": true},
                  "note": {"type": "string", "nullable": true}
                }
              },
              "status": {
                "type": "object",
                "properties": {
                  "phase": {"type": "string", "enum": ["Pending", "Ready"]},
                  "observedGeneration": {"type": "integer", "format": "int64"}
                }
              }
            }
          }}
        }]
      }
    })
}

fn widget(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
           "metadata": {"name": name}, "spec": spec})
}
