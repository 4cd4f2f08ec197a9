//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), which client-go's typed
//! clients send since 1.32 (`kubectl create namespace|secret|role|token …`, `kubectl auth
//! can-i`), decoded into the JSON the store keeps. The envelope (`k8s\0` + `runtime.Unknown`)
//! names the kind; the k8s-pb message of that kind is decoded with prost and written as Go's
//! JSON encoder writes the same struct (`go_json`), by one converter file per group: `core_v1`,
//! `apps` (with `pod` for templates), `rbac`, `auth`, and `meta` for what they share.
//! Called by `http::request` for create, update and delete bodies.

mod apps;
mod auth;
mod core_v1;
mod go_json;
mod meta;
mod pod;
mod rbac;

use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message;
use serde_json::Value;

use crate::error::ApiError;
use go_json::Unconverted;

/// The media type of a protobuf body.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// `k8s` and encoding style 0, before the envelope.
const MAGIC: [u8; 4] = [0x6b, 0x38, 0x73, 0x00];

/// What the endpoint takes: the defaults for an envelope that leaves apiVersion or kind out,
/// and the type that decode errors name.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
}

/// Why a protobuf body was not decoded. The first two are what kube-apiserver answers (400);
/// the last two are the emulator's own limits (415: the client may send JSON instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No magic, an empty body or a broken envelope (`transformDecodeError` without a kind).
    #[error(
        "the object provided is unrecognized (must be of type {expected}): {reason} ({summary})"
    )]
    Unrecognized {
        expected: String,
        reason: String,
        summary: String,
    },
    /// The envelope named a kind, but its message does not decode as it.
    #[error("{kind} in version \"{version}\" cannot be handled as a {expected}: {reason}")]
    CannotHandle {
        kind: String,
        version: String,
        expected: String,
        reason: String,
    },
    #[error(
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (the emulator does not decode {MEDIA_TYPE} bodies of kind {kind} in {api_version})"
    )]
    KindNotDecoded { api_version: String, kind: String },
    #[error(
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (the emulator does not decode field {field} of kind {kind} in {api_version} from {MEDIA_TYPE})"
    )]
    FieldNotDecoded {
        api_version: String,
        kind: String,
        field: String,
    },
}

impl DecodeError {
    pub fn code(&self) -> u16 {
        match self {
            DecodeError::Unrecognized { .. } | DecodeError::CannotHandle { .. } => 400,
            DecodeError::KindNotDecoded { .. } | DecodeError::FieldNotDecoded { .. } => 415,
        }
    }
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        match e.code() {
            400 => ApiError::bad_request(e.to_string()),
            code => ApiError::new(code, "UnsupportedMediaType", e.to_string()),
        }
    }
}

/// Why a message's bytes did not become JSON.
enum Failure {
    Decode(prost::DecodeError),
    Unconverted(Unconverted),
}

type Convert = fn(&[u8]) -> Result<Value, Failure>;

fn typed<M: Message + Default>(
    raw: &[u8],
    convert: fn(M) -> Result<Value, Unconverted>,
) -> Result<Value, Failure> {
    let message = M::decode(raw).map_err(Failure::Decode)?;
    convert(message).map_err(Failure::Unconverted)
}

/// The kinds decoded, by (apiVersion, kind). `DeleteOptions` comes under any apiVersion (a
/// typed client sends its own group/version).
const DECODERS: &[(&str, &str, Convert)] = &[
    ("v1", "Namespace", |raw| typed(raw, core_v1::namespace)),
    ("v1", "ServiceAccount", |raw| {
        typed(raw, core_v1::service_account)
    }),
    ("v1", "Secret", |raw| typed(raw, core_v1::secret)),
    ("v1", "ConfigMap", |raw| typed(raw, core_v1::config_map)),
    ("coordination.k8s.io/v1", "Lease", |raw| {
        typed(raw, core_v1::lease)
    }),
    ("apps/v1", "Deployment", |raw| typed(raw, apps::deployment)),
    ("apps/v1", "DaemonSet", |raw| typed(raw, apps::daemon_set)),
    ("rbac.authorization.k8s.io/v1", "Role", |raw| {
        typed(raw, rbac::role)
    }),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", |raw| {
        typed(raw, rbac::cluster_role)
    }),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", |raw| {
        typed(raw, rbac::role_binding)
    }),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        |raw| typed(raw, rbac::cluster_role_binding),
    ),
    ("authentication.k8s.io/v1", "TokenRequest", |raw| {
        typed(raw, auth::token_request)
    }),
    ("authentication.k8s.io/v1", "TokenReview", |raw| {
        typed(raw, auth::token_review)
    }),
    ("authentication.k8s.io/v1", "SelfSubjectReview", |raw| {
        typed(raw, auth::self_subject_review)
    }),
    ("authorization.k8s.io/v1", "SubjectAccessReview", |raw| {
        typed(raw, auth::subject_access_review)
    }),
    (
        "authorization.k8s.io/v1",
        "LocalSubjectAccessReview",
        |raw| typed(raw, auth::local_subject_access_review),
    ),
    (
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        |raw| typed(raw, auth::self_subject_access_review),
    ),
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview", |raw| {
        typed(raw, auth::self_subject_rules_review)
    }),
    ("*", "DeleteOptions", |raw| {
        typed(raw, |o| Ok(meta::delete_options(o)))
    }),
];

/// The (apiVersion, kind) pairs whose protobuf bodies are decoded (`*`: any apiVersion).
pub fn decoded_kinds() -> impl Iterator<Item = (&'static str, &'static str)> {
    DECODERS.iter().map(|(v, k, _)| (*v, *k))
}

fn converter(api_version: &str, kind: &str) -> Option<Convert> {
    DECODERS
        .iter()
        .find(|(v, k, _)| *k == kind && (*v == api_version || *v == "*"))
        .map(|(_, _, convert)| *convert)
}

/// Decodes a protobuf body into the object's JSON form (with `apiVersion` and `kind`).
pub fn decode(body: &[u8], expected: Expected) -> Result<Value, DecodeError> {
    let (api_version, kind, raw) = envelope(body, expected)?;
    let Some(convert) = converter(&api_version, &kind) else {
        return Err(DecodeError::KindNotDecoded { api_version, kind });
    };
    match convert(&raw) {
        Ok(mut obj) => {
            obj["apiVersion"] = Value::from(api_version);
            obj["kind"] = Value::from(kind);
            Ok(obj)
        }
        Err(Failure::Decode(e)) => Err(DecodeError::CannotHandle {
            version: version_of(&api_version).to_string(),
            kind,
            expected: expected.kind.to_string(),
            reason: e.to_string(),
        }),
        Err(Failure::Unconverted(u)) => Err(DecodeError::FieldNotDecoded {
            api_version,
            kind,
            field: u.field,
        }),
    }
}

/// What kube-apiserver answers for a protobuf body to a custom resource: its handler has no
/// protobuf type to decode into (400).
pub fn custom_resource_error(body: &[u8], expected: Expected) -> DecodeError {
    match envelope(body, expected) {
        Err(e) => e,
        Ok((api_version, kind, _)) => DecodeError::CannotHandle {
            version: version_of(&api_version).to_string(),
            kind,
            expected: expected.kind.to_string(),
            reason: "object *unstructured.Unstructured does not implement the protobuf marshalling interface and cannot be encoded to a protobuf message".into(),
        },
    }
}

/// The envelope's apiVersion and kind (defaulted from the endpoint when left out) and the
/// message bytes; errors worded as the Go protobuf serializer words them.
fn envelope(body: &[u8], expected: Expected) -> Result<(String, String, Vec<u8>), DecodeError> {
    let unrecognized = |reason: String| DecodeError::Unrecognized {
        expected: expected.kind.to_string(),
        reason,
        summary: summarize(body),
    };
    let rest = match body.strip_prefix(&MAGIC) {
        _ if body.is_empty() => return Err(unrecognized("empty data".into())),
        None => {
            let prefix: Vec<String> = MAGIC.iter().map(u8::to_string).collect();
            return Err(unrecognized(format!(
                "provided data does not appear to be a protobuf message, expected prefix [{}]",
                prefix.join(" ")
            )));
        }
        Some([]) => return Err(unrecognized("empty body".into())),
        Some(rest) => rest,
    };
    let Unknown { type_meta, raw, .. } =
        Unknown::decode(rest).map_err(|e| unrecognized(e.to_string()))?;
    let TypeMeta { api_version, kind } = type_meta.unwrap_or_default();
    let api_version = api_version
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| expected.api_version.to_string());
    let kind = kind
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| expected.kind.to_string());
    Ok((api_version, kind, raw.unwrap_or_default()))
}

fn version_of(api_version: &str) -> &str {
    api_version.rsplit('/').next().unwrap_or(api_version)
}

/// The first 30 bytes as the apiserver's `summarizeData` shows them: text if it looks like
/// JSON, hex otherwise.
fn summarize(body: &[u8]) -> String {
    const MAX: usize = 30;
    let (head, more) = if body.len() > MAX {
        (&body[..MAX], " ...")
    } else {
        (body, "")
    };
    match body.first() {
        None => "<empty>".into(),
        Some(b'{') => format!("{}{more}", String::from_utf8_lossy(head)),
        Some(_) => {
            let hex: String = head.iter().map(|b| format!("{b:02x}")).collect();
            format!("{hex}{more}")
        }
    }
}
