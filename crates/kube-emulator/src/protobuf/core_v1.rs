//! Core (`v1`) kinds the emulator serves: Namespace, ServiceAccount, Secret, ConfigMap, and
//! `coordination.k8s.io/v1` Lease. Every field is converted.

use k8s_pb::api::coordination::v1::{Lease, LeaseSpec};
use k8s_pb::api::core::v1::{
    ConfigMap, LocalObjectReference, Namespace, NamespaceCondition, NamespaceSpec, NamespaceStatus,
    ObjectReference, Secret, ServiceAccount,
};
use serde_json::Value;

use super::go_json::{
    GoJson, Unconverted, bytes_map, micro_time, string_map, strings, time_or_null,
};
use super::meta::object_meta;

pub(super) fn namespace(ns: Namespace) -> Result<Value, Unconverted> {
    let Namespace {
        metadata,
        spec,
        status,
    } = ns;
    let NamespaceSpec { finalizers } = spec.unwrap_or_default();
    let NamespaceStatus { phase, conditions } = status.unwrap_or_default();
    let conditions: Value = conditions
        .into_iter()
        .map(|c| {
            let NamespaceCondition {
                r#type,
                status,
                last_transition_time,
                reason,
                message,
            } = c;
            GoJson::new()
                .always("type", r#type.unwrap_or_default())
                .always("status", status.unwrap_or_default())
                .always("lastTransitionTime", time_or_null(last_transition_time))
                .omitempty("reason", reason)
                .omitempty("message", message)
                .end()
        })
        .collect();
    Ok(GoJson::new()
        .always("metadata", object_meta(metadata))
        .always(
            "spec",
            GoJson::new()
                .nonempty("finalizers", strings(finalizers))
                .end(),
        )
        .always(
            "status",
            GoJson::new()
                .omitempty("phase", phase)
                .nonempty("conditions", conditions)
                .end(),
        )
        .end())
}

pub(super) fn service_account(sa: ServiceAccount) -> Result<Value, Unconverted> {
    let ServiceAccount {
        metadata,
        secrets,
        image_pull_secrets,
        automount_service_account_token,
    } = sa;
    Ok(GoJson::new()
        .always("metadata", object_meta(metadata))
        .nonempty(
            "secrets",
            secrets.into_iter().map(object_reference).collect(),
        )
        .nonempty(
            "imagePullSecrets",
            image_pull_secrets
                .into_iter()
                .map(local_object_reference)
                .collect(),
        )
        .ptr(
            "automountServiceAccountToken",
            automount_service_account_token,
        )
        .end())
}

pub(super) fn secret(s: Secret) -> Result<Value, Unconverted> {
    let Secret {
        metadata,
        immutable,
        data,
        string_data,
        r#type,
    } = s;
    Ok(GoJson::new()
        .always("metadata", object_meta(metadata))
        .ptr("immutable", immutable)
        .nonempty("data", bytes_map(data))
        .nonempty("stringData", string_map(string_data))
        .omitempty("type", r#type)
        .end())
}

pub(super) fn config_map(cm: ConfigMap) -> Result<Value, Unconverted> {
    let ConfigMap {
        metadata,
        immutable,
        data,
        binary_data,
    } = cm;
    Ok(GoJson::new()
        .always("metadata", object_meta(metadata))
        .ptr("immutable", immutable)
        .nonempty("data", string_map(data))
        .nonempty("binaryData", bytes_map(binary_data))
        .end())
}

pub(super) fn lease(l: Lease) -> Result<Value, Unconverted> {
    let Lease { metadata, spec } = l;
    let LeaseSpec {
        holder_identity,
        lease_duration_seconds,
        acquire_time,
        renew_time,
        lease_transitions,
        strategy,
        preferred_holder,
    } = spec.unwrap_or_default();
    Ok(GoJson::new()
        .always("metadata", object_meta(metadata))
        .always(
            "spec",
            GoJson::new()
                .ptr("holderIdentity", holder_identity)
                .ptr("leaseDurationSeconds", lease_duration_seconds)
                .ptr("acquireTime", micro_time(acquire_time))
                .ptr("renewTime", micro_time(renew_time))
                .ptr("leaseTransitions", lease_transitions)
                .ptr("strategy", strategy)
                .ptr("preferredHolder", preferred_holder)
                .end(),
        )
        .end())
}

pub(super) fn object_reference(r: ObjectReference) -> Value {
    let ObjectReference {
        kind,
        namespace,
        name,
        uid,
        api_version,
        resource_version,
        field_path,
    } = r;
    GoJson::new()
        .omitempty("kind", kind)
        .omitempty("namespace", namespace)
        .omitempty("name", name)
        .omitempty("uid", uid)
        .omitempty("apiVersion", api_version)
        .omitempty("resourceVersion", resource_version)
        .omitempty("fieldPath", field_path)
        .end()
}

pub(super) fn local_object_reference(r: LocalObjectReference) -> Value {
    let LocalObjectReference { name } = r;
    GoJson::new().omitempty("name", name).end()
}
