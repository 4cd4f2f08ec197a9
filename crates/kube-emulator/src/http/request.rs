//! What a request says besides its path: headers, query parameters and the body, read into the
//! write context, DeleteOptions and selectors the verbs take. Used by the dispatch in `mod.rs`
//! and by `list` and `watch`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, header};
use serde_json::{Value, json};

use super::paths::Target;
use crate::error::ApiError;
use crate::ops::{Admission, DeleteOpts, FieldValidation, WriteCtx};
use crate::protobuf;
use crate::selector::{FieldSelector, Filter, LabelSelector, extra_fields};
use crate::user::UserInfo;

pub(super) struct ApiRequest {
    pub(super) method: Method,
    pub(super) headers: HeaderMap,
    pub(super) query: HashMap<String, String>,
    pub(super) body: Bytes,
    /// Who asks: the authenticated or impersonated user.
    pub(super) user: UserInfo,
}

impl ApiRequest {
    pub(super) fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub(super) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .get(name)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    pub(super) fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true" | "1"))
    }
}

/// The object in a create or update body: JSON, YAML or protobuf (built-in kinds only).
pub(super) fn parse_body(req: &ApiRequest, t: &Target) -> Result<Value, ApiError> {
    let ct = req.header(header::CONTENT_TYPE);
    if ct.contains("yaml") {
        return serde_yaml::from_slice(&req.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")));
    }
    if is_protobuf(ct) {
        // The object a subresource takes is named in decode errors; `token` takes a
        // TokenRequest, the others the resource's own kind.
        let (api_version, kind) = match t.subresource.as_deref() {
            Some("token") => ("authentication.k8s.io/v1".to_string(), "TokenRequest"),
            _ => (t.def.api_version(&t.version), t.def.kind.as_str()),
        };
        let expected = protobuf::Expected {
            api_version: &api_version,
            kind,
        };
        if t.def.custom.is_some() {
            return Err(protobuf::custom_resource_error(&req.body, expected).into());
        }
        return Ok(protobuf::decode(&req.body, expected)?);
    }
    if ct.contains("cbor") {
        return Err(ApiError::unsupported_body_media());
    }
    serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("error decoding JSON body: {e}")))
}

/// `application/vnd.kubernetes.protobuf`, parameters aside.
fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(protobuf::MEDIA_TYPE))
}

pub(super) fn write_ctx(t: &Target, req: &ApiRequest) -> Result<WriteCtx, ApiError> {
    let dry_run = match req.param("dryRun") {
        None => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unsupported dryRun value {other:?}: only \"All\" is allowed"
            )));
        }
    };
    let validation = match req.param("fieldValidation") {
        Some("Strict") => FieldValidation::Strict,
        None | Some("Ignore" | "Warn") => FieldValidation::Prune,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid fieldValidation {other:?}: must be Ignore, Warn or Strict"
            )));
        }
    };
    let ua = req.header(header::USER_AGENT);
    let manager = req
        .param("fieldManager")
        .map(str::to_string)
        .unwrap_or_else(|| {
            ua.split('/')
                .next()
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown")
                .to_string()
        });
    Ok(WriteCtx {
        def: t.def.clone(),
        version: t.version.clone(),
        namespace: t.namespace.clone().unwrap_or_default(),
        dry_run,
        manager,
        validation,
        subresource: t.subresource.clone(),
        user: req.user.clone(),
        admission: Admission::Required,
    })
}

/// The fields of CreateOptions/UpdateOptions (and of PatchOptions, which
/// webhooks receive as those) that the query sets; admission adds the kind.
pub(super) fn write_options(req: &ApiRequest) -> Value {
    let mut options = json!({});
    if let Some(d) = req.param("dryRun") {
        options["dryRun"] = json!([d]);
    }
    for key in ["fieldManager", "fieldValidation"] {
        if let Some(v) = req.param(key) {
            options[key] = json!(v);
        }
    }
    options
}

/// The DeleteOptions webhooks receive: the body's, with the query's settings.
pub(super) fn delete_options(req: &ApiRequest) -> Value {
    let mut options = serde_json::from_slice::<Value>(&req.body)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    if let Some(m) = options.as_object_mut() {
        m.remove("kind");
        m.remove("apiVersion");
    }
    if let Some(d) = req.param("dryRun") {
        options["dryRun"] = json!([d]);
    }
    for key in ["propagationPolicy", "gracePeriodSeconds"] {
        if let Some(v) = req.param(key) {
            options[key] = match v.parse::<i64>() {
                Ok(n) => json!(n),
                Err(_) => json!(v),
            };
        }
    }
    options
}

pub(super) fn delete_opts(req: &ApiRequest) -> Result<DeleteOpts, ApiError> {
    let mut opts = DeleteOpts {
        propagation: req.param("propagationPolicy").map(str::to_string),
        ..DeleteOpts::default()
    };
    if !req.body.is_empty() {
        let body: Value = if is_protobuf(req.header(header::CONTENT_TYPE)) {
            let expected = protobuf::Expected {
                api_version: "v1",
                kind: "DeleteOptions",
            };
            protobuf::decode(&req.body, expected)?
        } else {
            serde_json::from_slice(&req.body)
                .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
        };
        if let Some(p) = body["propagationPolicy"].as_str() {
            opts.propagation = Some(p.to_string());
        }
        if body["orphanDependents"].as_bool() == Some(true) {
            opts.propagation = Some("Orphan".into());
        }
        opts.uid = body["preconditions"]["uid"].as_str().map(str::to_string);
        opts.resource_version = body["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string);
        opts.dry_run = body["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    }
    Ok(opts)
}

pub(super) fn filter_of(t: &Target, req: &ApiRequest) -> Result<Filter, ApiError> {
    let mut fields = FieldSelector::parse(
        req.param("fieldSelector").unwrap_or_default(),
        extra_fields(&t.def.group, &t.def.plural),
    )?;
    if t.def.view_of == Some(crate::events::CORE_KEY) {
        // Matched against the stored core/v1 Events.
        fields = fields.renamed(crate::events::core_field_label);
    }
    Ok(Filter {
        labels: LabelSelector::parse(req.param("labelSelector").unwrap_or_default())?,
        fields,
    })
}

pub(super) fn accept(req: &ApiRequest) -> &str {
    req.header(header::ACCEPT)
}

/// kube-apiserver answers in the first media type of Accept it can encode; the emulator
/// encodes JSON only, which kubectl's `application/vnd.kubernetes.protobuf,application/json`
/// allows. An Accept that names only binary types (protobuf, CBOR) gets the 406 the real
/// server gives for types it cannot encode, rather than JSON the client cannot read.
pub(super) fn check_accept(req: &ApiRequest) -> Result<(), ApiError> {
    let ranges: Vec<String> = accept(req)
        .split(',')
        .map(|r| {
            r.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|m| !m.is_empty())
        .collect();
    let json = |m: &str| matches!(m, "*/*" | "application/*" | "application/json");
    let binary = |m: &str| m == protobuf::MEDIA_TYPE || m == "application/cbor";
    if ranges.is_empty() || ranges.iter().any(|m| json(m)) || !ranges.iter().all(|m| binary(m)) {
        return Ok(());
    }
    Err(ApiError::new(
        406,
        "NotAcceptable",
        "only the following media types are accepted: application/json",
    ))
}
