//! Table-driven tests of the emulator's structural-schema handling: pruning,
//! defaulting, OpenAPI keyword validation, list types, embedded resources and
//! CEL rules, checked against the texts kube-apiserver returns.

mod cel;
mod defaults;
mod keywords;

use kube_emulator::schema::{FieldError, validate_and_prune};
use serde_json::{Value, json};

/// A root schema with `spec` = `spec_schema`.
fn root(spec_schema: Value) -> Value {
    json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
        }
    })
}

fn obj(spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "a"}, "spec": spec})
}

/// Runs validation and returns the errors rendered like the apiserver.
fn run(schema: &Value, o: &mut Value, old: Option<&Value>) -> Vec<String> {
    match validate_and_prune(schema, o, old) {
        Ok(()) => Vec::new(),
        Err(errs) => errs
            .iter()
            .map(FieldError::to_string_like_apiserver)
            .collect(),
    }
}

fn check(name: &str, spec_schema: Value, spec: Value, want: &[&str]) {
    let schema = root(spec_schema);
    let mut o = obj(spec);
    let got = run(&schema, &mut o, None);
    assert_eq!(got, want, "case {name}");
}

const NOT_CHECKED: &str = "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";
