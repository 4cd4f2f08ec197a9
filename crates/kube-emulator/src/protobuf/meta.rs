//! `meta.k8s.io/v1` pieces shared by every kind: ObjectMeta, LabelSelector and the
//! DeleteOptions body of a typed delete. Every field is converted.

use k8s_pb::apimachinery::pkg::apis::meta::v1::{
    DeleteOptions, FieldSelectorRequirement, LabelSelector, LabelSelectorRequirement,
    ManagedFieldsEntry, ObjectMeta, OwnerReference, Preconditions,
};
use serde_json::Value;

use super::go_json::{GoJson, or_zero, string_map, strings, time};

/// `metadata` of a top-level object or a template. Go always writes the struct, so an unset
/// one is `{}`.
pub(super) fn object_meta(m: Option<ObjectMeta>) -> Value {
    let ObjectMeta {
        name,
        generate_name,
        namespace,
        self_link,
        uid,
        resource_version,
        generation,
        creation_timestamp,
        deletion_timestamp,
        deletion_grace_period_seconds,
        labels,
        annotations,
        owner_references,
        finalizers,
        managed_fields,
    } = m.unwrap_or_default();
    GoJson::new()
        .omitempty("name", name)
        .omitempty("generateName", generate_name)
        .omitempty("namespace", namespace)
        .omitempty("selfLink", self_link)
        .omitempty("uid", uid)
        .omitempty("resourceVersion", resource_version)
        .omitempty("generation", generation)
        .ptr("creationTimestamp", time(creation_timestamp))
        .ptr("deletionTimestamp", time(deletion_timestamp))
        .ptr("deletionGracePeriodSeconds", deletion_grace_period_seconds)
        .nonempty("labels", string_map(labels))
        .nonempty("annotations", string_map(annotations))
        .nonempty(
            "ownerReferences",
            owner_references.into_iter().map(owner_reference).collect(),
        )
        .nonempty("finalizers", strings(finalizers))
        .nonempty(
            "managedFields",
            managed_fields
                .into_iter()
                .map(managed_fields_entry)
                .collect(),
        )
        .end()
}

fn owner_reference(r: OwnerReference) -> Value {
    let OwnerReference {
        api_version,
        kind,
        name,
        uid,
        controller,
        block_owner_deletion,
    } = r;
    GoJson::new()
        .always("apiVersion", or_zero(api_version))
        .always("kind", or_zero(kind))
        .always("name", or_zero(name))
        .always("uid", or_zero(uid))
        .ptr("controller", controller)
        .ptr("blockOwnerDeletion", block_owner_deletion)
        .end()
}

fn managed_fields_entry(e: ManagedFieldsEntry) -> Value {
    let ManagedFieldsEntry {
        manager,
        operation,
        api_version,
        time: at,
        fields_type,
        fields_v1,
        subresource,
    } = e;
    // FieldsV1 holds JSON bytes; Go writes them verbatim.
    let fields = fields_v1
        .and_then(|f| f.raw)
        .map(|raw| serde_json::from_slice::<Value>(&raw).unwrap_or(Value::Null));
    GoJson::new()
        .omitempty("manager", manager)
        .omitempty("operation", operation)
        .omitempty("apiVersion", api_version)
        .ptr("time", time(at))
        .omitempty("fieldsType", fields_type)
        .ptr("fieldsV1", fields)
        .omitempty("subresource", subresource)
        .end()
}

pub(super) fn label_selector(s: LabelSelector) -> Value {
    let LabelSelector {
        match_labels,
        match_expressions,
    } = s;
    GoJson::new()
        .nonempty("matchLabels", string_map(match_labels))
        .nonempty(
            "matchExpressions",
            match_expressions
                .into_iter()
                .map(label_selector_requirement)
                .collect(),
        )
        .end()
}

pub(super) fn label_selector_requirement(r: LabelSelectorRequirement) -> Value {
    let LabelSelectorRequirement {
        key,
        operator,
        values,
    } = r;
    GoJson::new()
        .always("key", or_zero(key))
        .always("operator", or_zero(operator))
        .nonempty("values", strings(values))
        .end()
}

pub(super) fn field_selector_requirement(r: FieldSelectorRequirement) -> Value {
    let FieldSelectorRequirement {
        key,
        operator,
        values,
    } = r;
    GoJson::new()
        .always("key", or_zero(key))
        .always("operator", or_zero(operator))
        .nonempty("values", strings(values))
        .end()
}

/// The body of a typed client's DELETE.
pub(super) fn delete_options(o: DeleteOptions) -> Value {
    let DeleteOptions {
        grace_period_seconds,
        preconditions,
        orphan_dependents,
        propagation_policy,
        dry_run,
        ignore_store_read_error_with_cluster_breaking_potential,
    } = o;
    let preconditions = preconditions.map(|p| {
        let Preconditions {
            uid,
            resource_version,
        } = p;
        GoJson::new()
            .ptr("uid", uid)
            .ptr("resourceVersion", resource_version)
            .end()
    });
    GoJson::new()
        .ptr("gracePeriodSeconds", grace_period_seconds)
        .ptr("preconditions", preconditions)
        .ptr("orphanDependents", orphan_dependents)
        .ptr("propagationPolicy", propagation_policy)
        .nonempty("dryRun", strings(dry_run))
        .ptr(
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            ignore_store_read_error_with_cluster_breaking_potential,
        )
        .end()
}
