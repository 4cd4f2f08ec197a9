//! Errors of the emulator: `ApiError` is what a request gets back as a Kubernetes `Status` body,
//! `EmulatorError` is what the embedding program gets from starting, persisting or stopping it.

use serde_json::{Value, json};

use super::admission::Pending;
use super::registry::ResourceDef;
use super::schema::FieldError;

/// Failure of the emulator itself (not of an API request).
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot bind the emulator to 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error("cannot read or write the emulator state file {path}: {source}")]
    StateIo {
        path: String,
        source: std::io::Error,
    },
    #[error("the emulator state file {path} is not valid: {source}")]
    StateFormat {
        path: String,
        source: serde_json::Error,
    },
    #[error(
        "line {line} of the emulator's state journal {path} is not valid (only a torn last line \
         is ignored); move the file away to start from the snapshot alone"
    )]
    StateJournal { path: String, line: usize },
    #[error(
        "the emulator state file {path} may be read by others (mode {mode:o}) and holds every \
         Secret, token values included: run `chmod 600 {path}`"
    )]
    StateNotPrivate { path: String, mode: u32 },
    #[error("cannot write the kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot set up the emulator's TLS listener: {0}")]
    Tls(String),
    #[error("the emulator URL is not valid: {0}")]
    Url(String),
    #[error("cannot build a kube client for the emulator: {0}")]
    Client(#[from] kube::Error),
}

/// An API request failure, rendered as a `Status` with `code`, `reason` and `details`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// An admission denial: the `Status` as the webhook (or policy) worded it,
    /// reason and details included, sent instead of the fields above.
    pub status: Option<Box<Value>>,
    /// Not a failure: the write stopped at the admission gate until the
    /// webhooks it names are asked (see `admission`); never sent to a client.
    pub(crate) pending: Option<Box<Pending>>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            status: None,
            pending: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn not_found(def: &ResourceDef, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", def.qualified_plural()),
        )
        .with_details(json!({"name": name, "group": def.group, "kind": def.plural}))
    }

    /// 404 for a path that names no served resource.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    pub fn already_exists(def: &ResourceDef, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", def.qualified_plural()),
        )
        .with_details(json!({"name": name, "group": def.group, "kind": def.plural}))
    }

    pub fn conflict(def: &ResourceDef, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                def.qualified_plural()
            ),
        )
        .with_details(json!({"name": name, "group": def.group, "kind": def.plural}))
    }

    pub fn stale(def: &ResourceDef, name: &str) -> Self {
        Self::conflict(
            def,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 from server-side apply when other managers own fields whose value would change.
    pub fn apply_conflict(def: &ResourceDef, conflicts: &[(String, String)]) -> Self {
        let lines: Vec<String> = conflicts
            .iter()
            .map(|(m, f)| format!("conflict with {m}: {f}"))
            .collect();
        let message = if lines.len() == 1 {
            format!("Apply failed with 1 conflict: {}", lines[0])
        } else {
            format!(
                "Apply failed with {} conflicts: {}",
                lines.len(),
                lines.join("\n")
            )
        };
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(m, f)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {m}"), "field": f}))
            .collect();
        // StatusCause.Type is serialised as `reason`; the real server names no object here.
        Self::new(409, "Conflict", message)
            .with_details(json!({"kind": def.plural, "causes": causes}))
    }

    /// 500 as upstream's `NewInternalError` words it.
    pub fn internal(err: &str) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {err}"),
        )
        .with_details(json!({"causes": [{"message": err}]}))
    }

    /// A webhook's or a policy's denial, `status` being the Status body the client gets.
    pub fn admission_denial(status: Value) -> Self {
        let code = status["code"]
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(400);
        let mut e = Self::new(code, "", status["message"].as_str().unwrap_or_default());
        e.status = Some(Box::new(status));
        e
    }

    /// The write stopped at the admission gate (see `admission::gate`).
    pub(crate) fn admission_pending(pending: Pending) -> Self {
        let mut e = Self::new(0, "", "admission webhooks to ask");
        e.pending = Some(Box::new(pending));
        e
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn forbidden(def: &ResourceDef, name: &str, why: &str) -> Self {
        Self::new(
            403,
            "Forbidden",
            format!("{} \"{name}\" is forbidden: {why}", def.qualified_plural()),
        )
        .with_details(json!({"name": name, "group": def.group, "kind": def.plural}))
    }

    /// 401 as kube-apiserver's authentication filter answers a request it cannot authenticate.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 `<resource>[.<group>] ["<name>"] is forbidden: <why>` (`apierrors.NewForbidden`);
    /// bare `forbidden: <why>` when there is no resource.
    pub fn forbidden_resource(group: &str, resource: &str, name: &str, why: &str) -> Self {
        let qualified = if group.is_empty() {
            resource.to_owned()
        } else {
            format!("{resource}.{group}")
        };
        let message = match (qualified.is_empty(), name.is_empty()) {
            (true, _) => format!("forbidden: {why}"),
            (false, true) => format!("{qualified} is forbidden: {why}"),
            (false, false) => format!("{qualified} \"{name}\" is forbidden: {why}"),
        };
        let mut details = serde_json::Map::new();
        for (k, v) in [("name", name), ("group", group), ("kind", resource)] {
            if !v.is_empty() {
                details.insert(k.to_owned(), json!(v));
            }
        }
        Self::new(403, "Forbidden", message).with_details(Value::Object(details))
    }

    pub fn method_not_allowed(what: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({what})"),
        )
    }

    pub fn unsupported_media(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {content_type})"
            ),
        )
    }

    /// A create or update body in a media type no decoder takes (CBOR), worded as
    /// kube-apiserver words it when CBOR serving is off.
    pub fn unsupported_body_media() -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf",
        )
    }

    pub fn unavailable() -> Self {
        Self::new(
            503,
            "ServiceUnavailable",
            "the emulated API server is unavailable (fault injection)",
        )
    }

    /// 422 Invalid with one cause per field error, in the real server's message format.
    pub fn invalid(def: &ResourceDef, name: &str, errors: &[FieldError]) -> Self {
        let rendered: Vec<String> = errors
            .iter()
            .map(FieldError::to_string_like_apiserver)
            .collect();
        let body = if rendered.len() == 1 {
            rendered[0].clone()
        } else {
            format!("[{}]", rendered.join(", "))
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.kind.reason(), "message": e.body(), "field": e.field}))
            .collect();
        Self::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {body}", def.qualified_kind()),
        )
        .with_details(json!({"name": name, "group": def.group, "kind": def.kind, "causes": causes}))
    }

    /// 422 as the update path of the real server words it for custom resources: named by
    /// the resource (`widgets.example.com`) rather than the kind.
    pub fn invalid_by_resource(def: &ResourceDef, name: &str, errors: &[FieldError]) -> Self {
        let mut e = Self::invalid(def, name, errors);
        e.message = e
            .message
            .replacen(&def.qualified_kind(), &def.qualified_plural(), 1);
        if let Some(details) = e.details.as_mut() {
            details["kind"] = json!(def.plural);
        }
        e
    }

    /// The `Status` body sent to the client.
    pub fn to_status(&self) -> Value {
        if let Some(status) = &self.status {
            return (**status).clone();
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

/// Shorthand for building a single field error.
pub fn field_error(
    field: &str,
    kind: super::schema::FieldErrorKind,
    message: impl Into<String>,
) -> FieldError {
    // `message` is the whole body ("Invalid value: \"x\": why"); keep the part
    // after the error type's text as the detail so `body()` renders it back.
    let message = message.into();
    let detail = match message.strip_prefix(kind.text()) {
        Some(rest) => rest.trim_start_matches(": ").to_string(),
        None => message,
    };
    FieldError::raw(field, kind, None, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use crate::schema::FieldErrorKind;

    #[test]
    fn invalid_reads_like_the_real_server() {
        let reg = Registry::build(std::iter::empty());
        let secrets = reg.lookup("", "v1", "secrets").unwrap();
        let one = ApiError::invalid(
            &secrets,
            "s",
            &[field_error(
                "data.x",
                FieldErrorKind::Invalid,
                "Invalid value: \"y\": bad",
            )],
        );
        assert_eq!(
            one.message,
            "Secret \"s\" is invalid: data.x: Invalid value: \"y\": bad"
        );
        let status = one.to_status();
        assert_eq!(status["code"], 422);
        assert_eq!(
            status["details"]["causes"][0]["reason"],
            "FieldValueInvalid"
        );
        assert_eq!(status["details"]["causes"][0]["field"], "data.x");
        let two = ApiError::invalid(
            &secrets,
            "s",
            &[
                field_error("a", FieldErrorKind::Required, "Required value"),
                field_error("b", FieldErrorKind::Required, "Required value"),
            ],
        );
        assert_eq!(
            two.message,
            "Secret \"s\" is invalid: [a: Required value, b: Required value]"
        );
    }
}
