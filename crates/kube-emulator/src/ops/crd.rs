//! CustomResourceDefinitions as the apiextensions controllers handle them: the CRD's own
//! validation, accepted names, stored versions, Established/NamesAccepted conditions and the
//! cleanup finalizer. Called from `kinds` on every CRD write; `gc` deletes a CRD's objects.

use serde_json::{Value, json};

use super::metadata::{finalizers, set_finalizers};
use super::{CRD_CLEANUP, WriteCtx, now_rfc3339};
use crate::error::{ApiError, field_error};
use crate::registry::ResourceDef;
use crate::schema::FieldErrorKind;
use crate::store::{CRD_KEY, State};

/// Validates a CRD and fills in what the apiextensions controllers would: status and finalizer.
pub(super) fn accept_crd(
    st: &State,
    ctx: &WriteCtx,
    obj: &mut Value,
    creating: bool,
) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let spec = &obj["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    let kind = spec["names"]["kind"].as_str().unwrap_or_default();
    let mut errors = Vec::new();
    if group.is_empty() {
        errors.push(field_error(
            "spec.group",
            FieldErrorKind::Required,
            "Required value",
        ));
    }
    if plural.is_empty() {
        errors.push(field_error(
            "spec.names.plural",
            FieldErrorKind::Required,
            "Required value",
        ));
    }
    if kind.is_empty() {
        errors.push(field_error(
            "spec.names.kind",
            FieldErrorKind::Required,
            "Required value",
        ));
    }
    if name != format!("{plural}.{group}") {
        errors.push(field_error(
            "metadata.name",
            FieldErrorKind::Invalid,
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    if !matches!(spec["scope"].as_str(), Some("Namespaced" | "Cluster")) {
        errors.push(field_error(
            "spec.scope",
            FieldErrorKind::Invalid,
            "Unsupported value: must be one of \"Cluster\", \"Namespaced\"",
        ));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    let storage: Vec<&str> = versions
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .filter_map(|v| v["name"].as_str())
        .collect();
    if storage.len() != 1 {
        errors.push(field_error(
            "spec.versions",
            FieldErrorKind::Invalid,
            "Invalid value: must have exactly one version marked as storage version",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(&ctx.def, &name, &errors));
    }
    let clash = st
        .registry
        .all()
        .iter()
        .any(|d| d.group == group && d.plural == plural && d.custom.is_none());
    if clash {
        return Err(ApiError::invalid(
            &ctx.def,
            &name,
            &[field_error(
                "spec.names.plural",
                FieldErrorKind::Invalid,
                "Invalid value: conflicts with a built-in resource",
            )],
        ));
    }
    let mut accepted = obj["spec"]["names"].clone();
    if accepted["singular"].as_str().is_none_or(str::is_empty) {
        accepted["singular"] = json!(kind.to_lowercase());
    }
    if accepted["listKind"].as_str().is_none_or(str::is_empty) {
        accepted["listKind"] = json!(format!("{kind}List"));
    }
    obj["spec"]["names"] = accepted.clone();
    let mut stored: Vec<Value> = obj["status"]["storedVersions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let storage_version = json!(storage[0]);
    if !stored.contains(&storage_version) {
        stored.push(storage_version);
    }
    let since = obj["status"]["conditions"][0]["lastTransitionTime"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(now_rfc3339);
    obj["status"] = json!({
        "acceptedNames": accepted,
        "storedVersions": stored,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": since},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": since},
        ],
    });
    if creating {
        let mut f = finalizers(obj);
        if !f.iter().any(|x| x == CRD_CLEANUP) {
            f.push(CRD_CLEANUP.to_string());
            set_finalizers(obj, &f);
        }
    }
    Ok(())
}

pub fn is_crd(def: &ResourceDef) -> bool {
    def.key() == CRD_KEY
}
