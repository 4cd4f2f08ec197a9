//! The review kinds, answered from the same decision as every request and never stored:
//! SubjectAccessReview, LocalSubjectAccessReview, SelfSubjectAccessReview (`kubectl auth
//! can-i`), SelfSubjectRulesReview (`can-i --list`), SelfSubjectReview (`kubectl auth
//! whoami`) and TokenReview.

use serde_json::{Value, json};

use super::rbac::Rule;
use super::tokens::API_AUDIENCE;
use super::{Attributes, Authn, Policy, decide};
use crate::error::{ApiError, field_error};
use crate::registry::ResourceDef;
use crate::schema::FieldErrorKind;
use crate::user::UserInfo;

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// The request echoed with `status` (and the path's namespace for local reviews).
fn answer(def: &ResourceDef, body: &Value, namespace: &str, status: Value) -> Value {
    let mut metadata = match &body["metadata"] {
        Value::Object(m) => Value::Object(m.clone()),
        _ => json!({}),
    };
    metadata["creationTimestamp"] = Value::Null;
    if !namespace.is_empty() {
        metadata["namespace"] = json!(namespace);
    }
    let mut out = json!({
        "kind": def.kind,
        "apiVersion": def.api_version("v1"),
        "metadata": metadata,
        "status": status,
    });
    if !body["spec"].is_null() {
        out["spec"] = body["spec"].clone();
    }
    out
}

fn invalid(def: &ResourceDef, field: &str, kind: FieldErrorKind, message: &str) -> ApiError {
    ApiError::invalid(def, "", &[field_error(field, kind, message)])
}

/// The attributes a review's spec asks about.
fn spec_attributes(def: &ResourceDef, spec: &Value) -> Result<Attributes, ApiError> {
    let (res, non) = (&spec["resourceAttributes"], &spec["nonResourceAttributes"]);
    match (res.is_object(), non.is_object()) {
        (true, false) => {
            let mut a = Attributes::resource(
                text(&res["verb"]),
                text(&res["group"]),
                text(&res["resource"]),
                text(&res["namespace"]),
                text(&res["name"]),
            );
            a.subresource = text(&res["subresource"]).to_owned();
            Ok(a)
        }
        (false, true) => Ok(Attributes::non_resource(
            text(&non["verb"]),
            text(&non["path"]),
        )),
        (true, true) => Err(invalid(
            def,
            "spec.nonResourceAttributes",
            FieldErrorKind::Invalid,
            "Invalid value: \"\": cannot be specified in combination with resourceAttributes",
        )),
        (false, false) => Err(invalid(
            def,
            "spec.resourceAttributes",
            FieldErrorKind::Required,
            "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
    }
}

fn access_status(policy: &Policy, user: &UserInfo, a: &Attributes) -> Value {
    let d = decide(policy, user, a);
    let mut status = json!({"allowed": d.allowed});
    if !d.reason.is_empty() {
        status["reason"] = json!(d.reason);
    }
    status
}

/// The user a SubjectAccessReview names (groups not augmented, as upstream).
fn spec_user(def: &ResourceDef, spec: &Value) -> Result<UserInfo, ApiError> {
    let user = UserInfo {
        username: text(&spec["user"]).to_owned(),
        uid: text(&spec["uid"]).to_owned(),
        groups: strings(&spec["groups"]),
        extra: spec["extra"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), strings(v)))
            .collect(),
    };
    if user.username.is_empty() && user.groups.is_empty() {
        return Err(invalid(
            def,
            "spec.user",
            FieldErrorKind::Invalid,
            "Invalid value: \"\": at least one of user or group must be specified",
        ));
    }
    Ok(user)
}

/// Answers a create of a review kind other than TokenReview.
pub fn review(
    def: &ResourceDef,
    body: &Value,
    requester: &UserInfo,
    policy: &Policy,
    namespace: &str,
) -> Result<Value, ApiError> {
    let spec = &body["spec"];
    let status = match def.plural.as_str() {
        "subjectaccessreviews" => {
            let a = spec_attributes(def, spec)?;
            access_status(policy, &spec_user(def, spec)?, &a)
        }
        "localsubjectaccessreviews" => {
            if spec["nonResourceAttributes"].is_object() {
                return Err(invalid(
                    def,
                    "spec.nonResourceAttributes",
                    FieldErrorKind::Invalid,
                    "Invalid value: \"\": disallowed on this kind of request",
                ));
            }
            let a = spec_attributes(def, spec)?;
            if a.namespace != namespace {
                return Err(invalid(
                    def,
                    "spec.resourceAttributes.namespace",
                    FieldErrorKind::Invalid,
                    &format!(
                        "Invalid value: {:?}: must match metadata.namespace",
                        a.namespace
                    ),
                ));
            }
            access_status(policy, &spec_user(def, spec)?, &a)
        }
        "selfsubjectaccessreviews" => {
            access_status(policy, requester, &spec_attributes(def, spec)?)
        }
        "selfsubjectrulesreviews" => {
            let ns = text(&spec["namespace"]);
            if ns.is_empty() {
                return Err(ApiError::bad_request("no namespace on request"));
            }
            rules_status(policy, requester, ns)
        }
        "selfsubjectreviews" => json!({"userInfo": requester.to_json()}),
        other => return Err(ApiError::no_route(other)),
    };
    Ok(answer(def, body, namespace, status))
}

fn rules_status(policy: &Policy, user: &UserInfo, namespace: &str) -> Value {
    let (rules, errors) = policy.rules_for(user, namespace);
    let (resource, non_resource): (Vec<&Rule>, Vec<&Rule>) =
        rules.iter().partition(|r| r.non_resource_urls.is_empty());
    let resource_rules: Vec<Value> = resource
        .iter()
        .map(|r| {
            let mut v =
                json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
            if !r.resource_names.is_empty() {
                v["resourceNames"] = json!(r.resource_names);
            }
            v
        })
        .collect();
    let non_resource_rules: Vec<Value> = non_resource
        .iter()
        .map(|r| json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}))
        .collect();
    let mut status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": !errors.is_empty(),
    });
    if !errors.is_empty() {
        status["evaluationError"] = json!(errors.join(", "));
    }
    status
}

/// Answers a TokenReview: static and bound tokens, checked for the requested audiences (the
/// API server's own when none are given).
pub fn token_review(
    def: &ResourceDef,
    body: &Value,
    authn: &Authn,
    lookup_sa: impl FnOnce(&str, &str) -> Option<(String, bool)>,
    now: i64,
) -> Result<Value, ApiError> {
    let token = text(&body["spec"]["token"]);
    if token.is_empty() {
        return Err(ApiError::bad_request(
            "token is required for TokenReview in authentication",
        ));
    }
    let requested = strings(&body["spec"]["audiences"]);
    let audiences: Vec<&str> = if requested.is_empty() {
        vec![API_AUDIENCE]
    } else {
        requested.iter().map(String::as_str).collect()
    };
    let authenticated = |user: &UserInfo, matched: Vec<String>| {
        let mut u = user.to_json();
        if u.get("extra").is_none() {
            u["extra"] = json!({});
        }
        json!({"authenticated": true, "user": u, "audiences": matched})
    };
    let status = if let Some(user) = authn.static_user(token) {
        // Static tokens are audience-agnostic: valid only for the API server's audience.
        if audiences.contains(&API_AUDIENCE) {
            authenticated(&user, vec![API_AUDIENCE.to_owned()])
        } else {
            json!({"user": {}, "error": "token audiences is invalid for the target audience"})
        }
    } else {
        match authn.bound.review(token, &audiences, lookup_sa, now) {
            Some(Ok((user, matched))) => authenticated(&user, matched),
            Some(Err(e)) => json!({"user": {}, "error": e}),
            None => json!({"user": {}}),
        }
    };
    Ok(answer(def, body, "", status))
}
