//! What the kind of an object adds to every write: the kind/apiVersion check, Secret and
//! Namespace rules, CRD acceptance (in `crd`), and CRD schema validation of custom resources
//! (with strict unknown-field errors). Called by `create`, `update` and `apply`.

use serde_json::{Value, json};

use super::crd::accept_crd;
use super::{FieldValidation, WriteCtx};
use crate::admission;
use crate::error::ApiError;
use crate::registry::ResourceDef;
use crate::schema;
use crate::store::State;

pub(super) fn check_kind(def: &ResourceDef, version: &str, obj: &Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    if let Some(kind) = obj["kind"].as_str()
        && kind != def.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the object ({kind}) does not match the kind of the request ({})",
            def.kind
        )));
    }
    if let Some(av) = obj["apiVersion"].as_str()
        && av != def.api_version(version)
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            def.api_version(version)
        )));
    }
    Ok(())
}

/// Validates a custom resource against its CRD schema (defaults, pruning, CEL in `schema`).
pub(super) fn validate_custom(
    ctx: &WriteCtx,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let Some((schema, prepared)) = ctx.def.schema(&ctx.version) else {
        return Ok(());
    };
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let before = (ctx.validation == FieldValidation::Strict).then(|| obj.clone());
    let checked = match ctx.def.schema_problem(&ctx.version) {
        Some(problem) => Err(schema::malformed(problem)),
        None => schema::validate_and_prune_checked(schema, prepared, obj, old),
    };
    checked.map_err(|errors| ApiError::invalid(&ctx.def, &name, &errors))?;
    if let Some(before) = before {
        let mut unknown = Vec::new();
        pruned_paths(&before, obj, String::new(), &mut unknown);
        if !unknown.is_empty() {
            let fields: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            return Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                ctx.def.kind,
                ctx.version,
                ctx.def.kind,
                fields.join(", ")
            )));
        }
    }
    Ok(())
}

/// Paths present in `before` but pruned from `after` (what strict validation reports).
fn pruned_paths(before: &Value, after: &Value, prefix: String, out: &mut Vec<String>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for (k, bv) in b {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match a.get(k) {
                    Some(av) => pruned_paths(bv, av, path, out),
                    None if prefix.is_empty() && k == "status" => {}
                    None => out.push(path),
                }
            }
        }
        (Value::Array(b), Value::Array(a)) => {
            for (i, (bv, av)) in b.iter().zip(a).enumerate() {
                pruned_paths(bv, av, format!("{prefix}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn base64(bytes: &[u8]) -> Value {
    serde_json::to_value(k8s_openapi::ByteString(bytes.to_vec())).unwrap_or(Value::Null)
}

/// Kind-specific rules the real server applies on every write.
pub(super) fn apply_kind_rules(
    st: &State,
    ctx: &WriteCtx,
    obj: &mut Value,
    creating: bool,
) -> Result<(), ApiError> {
    match (ctx.def.group.as_str(), ctx.def.plural.as_str()) {
        ("", "secrets") => {
            if obj["type"].as_str().is_none_or(str::is_empty) {
                obj["type"] = json!("Opaque");
            }
            if let Some(Value::Object(string_data)) =
                obj.as_object_mut().and_then(|m| m.remove("stringData"))
            {
                for (k, v) in string_data {
                    let s = v.as_str().unwrap_or_default().as_bytes().to_vec();
                    obj["data"][k] = base64(&s);
                }
            }
        }
        ("", "namespaces") => {
            if creating {
                obj["spec"]["finalizers"] = json!(["kubernetes"]);
                obj["status"] = json!({"phase": "Active"});
            }
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            accept_crd(st, ctx, obj, creating)?;
        }
        (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations" | "mutatingwebhookconfigurations",
        ) => {
            let errs = admission::validate_configuration(obj);
            if !errs.is_empty() {
                let name = obj["metadata"]["name"].as_str().unwrap_or_default();
                return Err(ApiError::invalid(&ctx.def, name, &errs));
            }
        }
        (crate::auth::rbac::GROUP, _) => {
            let name = obj["metadata"]["name"].as_str().unwrap_or_default();
            let old = if creating {
                None
            } else {
                st.get(&ctx.def.key(), &ctx.namespace, name)
            };
            crate::auth::escalation::check_rbac_write(st, ctx, obj, old.map(|o| &**o))?;
        }
        _ => {}
    }
    Ok(())
}
