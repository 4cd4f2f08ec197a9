//! `authentication.k8s.io/v1` TokenRequest (`kubectl create token`), TokenReview,
//! SelfSubjectReview (`kubectl auth whoami`) and `authorization.k8s.io/v1`
//! SubjectAccessReview, LocalSubjectAccessReview, SelfSubjectAccessReview (`kubectl auth
//! can-i`) and SelfSubjectRulesReview (`can-i --list`). Every field is converted.

use std::collections::BTreeMap;

use k8s_pb::api::authentication::v1 as authn;
use k8s_pb::api::authorization::v1 as authz;
use serde_json::Value;

use super::go_json::{GoJson, Unconverted, or_zero, strings, time_or_null};
use super::meta::{field_selector_requirement, label_selector_requirement, object_meta};

pub(super) fn token_request(t: authn::TokenRequest) -> Result<Value, Unconverted> {
    let authn::TokenRequest {
        metadata,
        spec,
        status,
    } = t;
    let authn::TokenRequestSpec {
        audiences,
        expiration_seconds,
        bound_object_ref,
    } = spec.unwrap_or_default();
    let bound_object_ref = bound_object_ref.map(|r| {
        let authn::BoundObjectReference {
            kind,
            api_version,
            name,
            u_id,
        } = r;
        GoJson::new()
            .omitempty("kind", kind)
            .omitempty("apiVersion", api_version)
            .omitempty("name", name)
            .omitempty("uid", u_id)
            .end()
    });
    let authn::TokenRequestStatus {
        token,
        expiration_timestamp,
    } = status.unwrap_or_default();
    // The spec's three fields have no omitempty: unset ones are written as null.
    Ok(GoJson::new()
        .always("metadata", object_meta(metadata))
        .always(
            "spec",
            GoJson::new()
                .always_list("audiences", strings(audiences))
                .always("expirationSeconds", expiration_seconds)
                .always("boundObjectRef", bound_object_ref)
                .end(),
        )
        .always(
            "status",
            GoJson::new()
                .always("token", or_zero(token))
                .always("expirationTimestamp", time_or_null(expiration_timestamp))
                .end(),
        )
        .end())
}

pub(super) fn token_review(t: authn::TokenReview) -> Result<Value, Unconverted> {
    let authn::TokenReview {
        metadata,
        spec,
        status,
    } = t;
    let authn::TokenReviewSpec { token, audiences } = spec.unwrap_or_default();
    let authn::TokenReviewStatus {
        authenticated,
        user,
        audiences: status_audiences,
        error,
    } = status.unwrap_or_default();
    Ok(GoJson::new()
        .always("metadata", object_meta(metadata))
        .always(
            "spec",
            GoJson::new()
                .omitempty("token", token)
                .nonempty("audiences", strings(audiences))
                .end(),
        )
        .always(
            "status",
            GoJson::new()
                .omitempty("authenticated", authenticated)
                .always("user", user_info(user.unwrap_or_default()))
                .nonempty("audiences", strings(status_audiences))
                .omitempty("error", error)
                .end(),
        )
        .end())
}

pub(super) fn self_subject_review(r: authn::SelfSubjectReview) -> Result<Value, Unconverted> {
    let authn::SelfSubjectReview { metadata, status } = r;
    let authn::SelfSubjectReviewStatus { user_info: user } = status.unwrap_or_default();
    Ok(GoJson::new()
        .always("metadata", object_meta(metadata))
        .always(
            "status",
            GoJson::new()
                .always("userInfo", user_info(user.unwrap_or_default()))
                .end(),
        )
        .end())
}

fn user_info(u: authn::UserInfo) -> Value {
    let authn::UserInfo {
        username,
        uid,
        groups,
        extra,
    } = u;
    GoJson::new()
        .omitempty("username", username)
        .omitempty("uid", uid)
        .nonempty("groups", strings(groups))
        .nonempty(
            "extra",
            extra_map(extra.into_iter().map(|(k, v)| (k, v.items)).collect()),
        )
        .end()
}

fn extra_map(extra: BTreeMap<String, Vec<String>>) -> Value {
    Value::Object(extra.into_iter().map(|(k, v)| (k, strings(v))).collect())
}

pub(super) fn subject_access_review(r: authz::SubjectAccessReview) -> Result<Value, Unconverted> {
    let authz::SubjectAccessReview {
        metadata,
        spec,
        status,
    } = r;
    Ok(review(
        metadata,
        subject_access_review_spec(spec.unwrap_or_default()),
        status,
    ))
}

pub(super) fn local_subject_access_review(
    r: authz::LocalSubjectAccessReview,
) -> Result<Value, Unconverted> {
    let authz::LocalSubjectAccessReview {
        metadata,
        spec,
        status,
    } = r;
    Ok(review(
        metadata,
        subject_access_review_spec(spec.unwrap_or_default()),
        status,
    ))
}

pub(super) fn self_subject_access_review(
    r: authz::SelfSubjectAccessReview,
) -> Result<Value, Unconverted> {
    let authz::SelfSubjectAccessReview {
        metadata,
        spec,
        status,
    } = r;
    let authz::SelfSubjectAccessReviewSpec {
        resource_attributes,
        non_resource_attributes,
    } = spec.unwrap_or_default();
    let spec = GoJson::new()
        .ptr(
            "resourceAttributes",
            resource_attributes.map(resource_attributes_json),
        )
        .ptr(
            "nonResourceAttributes",
            non_resource_attributes.map(non_resource_attributes_json),
        )
        .end();
    Ok(review(metadata, spec, status))
}

fn review(
    metadata: Option<k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
    spec: Value,
    status: Option<authz::SubjectAccessReviewStatus>,
) -> Value {
    let authz::SubjectAccessReviewStatus {
        allowed,
        denied,
        reason,
        evaluation_error,
    } = status.unwrap_or_default();
    GoJson::new()
        .always("metadata", object_meta(metadata))
        .always("spec", spec)
        .always(
            "status",
            GoJson::new()
                .always("allowed", or_zero(allowed))
                .omitempty("denied", denied)
                .omitempty("reason", reason)
                .omitempty("evaluationError", evaluation_error)
                .end(),
        )
        .end()
}

fn subject_access_review_spec(s: authz::SubjectAccessReviewSpec) -> Value {
    let authz::SubjectAccessReviewSpec {
        resource_attributes,
        non_resource_attributes,
        user,
        groups,
        extra,
        uid,
    } = s;
    GoJson::new()
        .ptr(
            "resourceAttributes",
            resource_attributes.map(resource_attributes_json),
        )
        .ptr(
            "nonResourceAttributes",
            non_resource_attributes.map(non_resource_attributes_json),
        )
        .omitempty("user", user)
        .nonempty("groups", strings(groups))
        .nonempty(
            "extra",
            extra_map(extra.into_iter().map(|(k, v)| (k, v.items)).collect()),
        )
        .omitempty("uid", uid)
        .end()
}

fn resource_attributes_json(a: authz::ResourceAttributes) -> Value {
    let authz::ResourceAttributes {
        namespace,
        verb,
        group,
        version,
        resource,
        subresource,
        name,
        field_selector,
        label_selector,
    } = a;
    let field_selector = field_selector.map(|f| {
        let authz::FieldSelectorAttributes {
            raw_selector,
            requirements,
        } = f;
        GoJson::new()
            .omitempty("rawSelector", raw_selector)
            .nonempty(
                "requirements",
                requirements
                    .into_iter()
                    .map(field_selector_requirement)
                    .collect(),
            )
            .end()
    });
    let label_selector = label_selector.map(|l| {
        let authz::LabelSelectorAttributes {
            raw_selector,
            requirements,
        } = l;
        GoJson::new()
            .omitempty("rawSelector", raw_selector)
            .nonempty(
                "requirements",
                requirements
                    .into_iter()
                    .map(label_selector_requirement)
                    .collect(),
            )
            .end()
    });
    GoJson::new()
        .omitempty("namespace", namespace)
        .omitempty("verb", verb)
        .omitempty("group", group)
        .omitempty("version", version)
        .omitempty("resource", resource)
        .omitempty("subresource", subresource)
        .omitempty("name", name)
        .ptr("fieldSelector", field_selector)
        .ptr("labelSelector", label_selector)
        .end()
}

fn non_resource_attributes_json(a: authz::NonResourceAttributes) -> Value {
    let authz::NonResourceAttributes { path, verb } = a;
    GoJson::new()
        .omitempty("path", path)
        .omitempty("verb", verb)
        .end()
}

pub(super) fn self_subject_rules_review(
    r: authz::SelfSubjectRulesReview,
) -> Result<Value, Unconverted> {
    let authz::SelfSubjectRulesReview {
        metadata,
        spec,
        status,
    } = r;
    let authz::SelfSubjectRulesReviewSpec { namespace } = spec.unwrap_or_default();
    let authz::SubjectRulesReviewStatus {
        resource_rules,
        non_resource_rules,
        incomplete,
        evaluation_error,
    } = status.unwrap_or_default();
    let resource_rules: Value = resource_rules
        .into_iter()
        .map(|r| {
            let authz::ResourceRule {
                verbs,
                api_groups,
                resources,
                resource_names,
            } = r;
            GoJson::new()
                .always_list("verbs", strings(verbs))
                .nonempty("apiGroups", strings(api_groups))
                .nonempty("resources", strings(resources))
                .nonempty("resourceNames", strings(resource_names))
                .end()
        })
        .collect();
    let non_resource_rules: Value = non_resource_rules
        .into_iter()
        .map(|r| {
            let authz::NonResourceRule {
                verbs,
                non_resource_ur_ls,
            } = r;
            GoJson::new()
                .always_list("verbs", strings(verbs))
                .nonempty("nonResourceURLs", strings(non_resource_ur_ls))
                .end()
        })
        .collect();
    Ok(GoJson::new()
        .always("metadata", object_meta(metadata))
        .always(
            "spec",
            GoJson::new().omitempty("namespace", namespace).end(),
        )
        .always(
            "status",
            GoJson::new()
                .always_list("resourceRules", resource_rules)
                .always_list("nonResourceRules", non_resource_rules)
                .always("incomplete", or_zero(incomplete))
                .omitempty("evaluationError", evaluation_error)
                .end(),
        )
        .end())
}
