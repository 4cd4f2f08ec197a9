//! POST: names (incl. `generateName`), system metadata, the namespace gate, kind rules and
//! validation, then the store; also the namespaces seeded at start. `apply` creates through
//! here too; `update` is the other write path.

use std::sync::Arc;

use serde_json::{Value, json};

use super::kinds::{apply_kind_rules, check_kind, validate_custom};
use super::metadata::{new_uid, random_suffix, validate_metadata, validate_name};
use super::{
    WriteCtx, is_namespace, now_rfc3339, record_update, served, served_stored, to_stored_form,
};
use crate::admission::{self, Attempt, Operation, Phase};
use crate::error::{ApiError, field_error};
use crate::schema::FieldErrorKind;
use crate::store::{EventType, State};

fn namespace_gate(st: &State, ctx: &WriteCtx) -> Result<(), ApiError> {
    if !ctx.def.namespaced {
        return Ok(());
    }
    let Some(nsdef) = st.registry.lookup("", "v1", "namespaces") else {
        return Ok(());
    };
    match st.get(&nsdef.key(), "", &ctx.namespace) {
        None => Err(ApiError::not_found(&nsdef, &ctx.namespace)),
        Some(ns) if ns["metadata"]["deletionTimestamp"].is_string() => Err(ApiError::forbidden(
            &ctx.def,
            "",
            &format!(
                "unable to create new content in namespace {} because it is being terminated",
                ctx.namespace
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// POST: creates an object; returns it as served.
pub fn create(st: &mut State, ctx: &WriteCtx, mut obj: Value) -> Result<Arc<Value>, ApiError> {
    check_kind(&ctx.def, &ctx.version, &obj)?;
    let def = ctx.def.clone();
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    // Upstream's NamespaceLifecycle plugin refuses before any webhook is asked.
    namespace_gate(st, ctx)?;
    let attempt = Attempt {
        operation: Operation::Create,
        name: None,
        object: Some(&mut obj),
        old: None,
    };
    admission::gate(st, ctx, Phase::Mutating, attempt)?;
    let md = &mut obj["metadata"];
    let generated = md["name"].as_str().is_none_or(str::is_empty);
    let mut name = match md["name"].as_str().filter(|n| !n.is_empty()) {
        Some(n) => n.to_string(),
        None => match md["generateName"].as_str().filter(|n| !n.is_empty()) {
            Some(prefix) => format!("{prefix}{}", random_suffix()),
            None => {
                return Err(ApiError::invalid(
                    &def,
                    "",
                    &[field_error(
                        "metadata.name",
                        FieldErrorKind::Required,
                        "Required value: name or generateName is required",
                    )],
                ));
            }
        },
    };
    validate_name(&def, &name)?;
    md["name"] = json!(name);
    if def.namespaced {
        if let Some(ns) = md["namespace"].as_str()
            && ns != ctx.namespace
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        md["namespace"] = json!(ctx.namespace);
    } else if let Some(m) = md.as_object_mut() {
        m.remove("namespace");
    }
    let now = now_rfc3339();
    if let Some(m) = md.as_object_mut() {
        for k in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            m.remove(k);
        }
    }
    md["uid"] = json!(new_uid());
    md["creationTimestamp"] = json!(now);
    md["generation"] = json!(1);
    to_stored_form(&def, &mut obj);
    if def.status_subresource
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
    validate_metadata(&def, &name, &obj)?;
    apply_kind_rules(st, ctx, &mut obj, true)?;
    if def.custom.is_some() {
        validate_custom(ctx, &mut obj, None)?;
    }
    if obj["metadata"]["managedFields"].is_null() {
        record_update(ctx, None, &mut obj, &now);
    }
    let attempt = Attempt {
        operation: Operation::Create,
        name: Some(if generated { "" } else { &name }),
        object: Some(&mut obj),
        old: None,
    };
    admission::gate(st, ctx, Phase::Validating, attempt)?;
    if generated {
        // The webhooks saw (and allowed) the name generated on the first run.
        name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or(&name)
            .to_string();
    }
    if st.get(&def.key(), &ctx.namespace, &name).is_some() {
        return Err(ApiError::already_exists(&def, &name));
    }
    if ctx.dry_run {
        return Ok(Arc::new(served(&def, &ctx.version, &obj)));
    }
    // A whole-store collection only when an owner is absent: with every owner
    // present there is nothing to collect, and scanning per write is quadratic.
    if st.owner_missing(&obj) {
        st.gc_pending = true;
    }
    let stored = st.put(&def, obj, EventType::Added);
    if is_namespace(&def) {
        default_service_account(st, &name);
    }
    Ok(served_stored(&def, &ctx.version, &stored))
}

/// A namespace seeded at start (`default`, `kube-system`, `kube-public`), unless it is there
/// (restored from `--state`); with its ServiceAccount `default` either way.
pub fn seed_namespace(st: &mut State, name: &str) {
    let Some(def) = st.registry.lookup("", "v1", "namespaces") else {
        return;
    };
    if st.get(&def.key(), "", name).is_some() {
        default_service_account(st, name);
        return;
    }
    let ctx = WriteCtx::system(def, "");
    let _ = create(st, &ctx, json!({"metadata": {"name": name}}));
}

/// The ServiceAccount `default` every namespace gets upstream from kube-controller-manager's
/// ServiceAccount controller (there moments after the namespace, or after it was deleted; here
/// at once), so pods, `kubectl create token default` and keys owned by it work as on a cluster.
pub(super) fn default_service_account(st: &mut State, namespace: &str) {
    let Some(def) = st.registry.lookup("", "v1", "serviceaccounts") else {
        return;
    };
    if st.get(&def.key(), namespace, "default").is_some() {
        return;
    }
    let mut ctx = WriteCtx::system(def, namespace);
    ctx.manager = "kube-controller-manager".into();
    let _ = create(st, &ctx, json!({"metadata": {"name": "default"}}));
}
