//! `ApiToken`: one token of an ApiKey, whose value lives in a Secret.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Expiration, Rotation};

/// Desired state of an ApiToken. The operator writes the token's value into a
/// Secret it owns and records only the value's SHA-256 hash in status.
// Each printcolumn repeats `type_ = ...`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "apikeys.dev",
    version = "v1alpha1",
    kind = "ApiToken",
    namespaced,
    status = "ApiTokenStatus",
    derive = "PartialEq",
    shortname = "apit",
    category = "apikey-operator",
    doc = "An API token of an ApiKey; its value is written to a Secret owned by the operator.",
    printcolumn(name = "Key", type_ = "string", json_path = ".spec.apiKeyRef.name"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.expiresAt"),
    printcolumn(
        name = "Last-Rotation",
        type_ = "date",
        json_path = ".status.lastRotatedAt"
    ),
    printcolumn(
        name = "Secret",
        type_ = "string",
        json_path = ".status.secretName",
        priority = 1
    ),
    printcolumn(
        name = "Token-ID",
        type_ = "string",
        json_path = ".status.tokenId",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ApiTokenSpec {
    /// The ApiKey (in the same namespace) this token belongs to. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("apiKeyRef is immutable; create a new ApiToken for another key"))]
    pub api_key_ref: ApiKeyRef,

    /// A human-readable name shown by tools. Editable without rotating the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub display_name: Option<String>,

    /// What the token is for. Editable without rotating the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,

    /// Free-form labels for people and tools. Editable without rotating the
    /// value; at most 64 entries.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub tags: BTreeMap<String, String>,

    /// When the value stops working. Default: the key's
    /// `tokenDefaults.expiration`, else never.
    // Boxed: with `audiences` inline, a cached token must still fit the
    // 1 KiB allocation class (`a_cached_token_fits_the_1_kib_allocation_class`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Box<Expiration>>,

    /// When the value is replaced automatically. Default: the key's
    /// `tokenDefaults.rotation`, else only on request (annotation
    /// `apikeys.dev/rotate` or `apikey-operator rotate`). A leaked value is
    /// revoked at once, without a grace period, by the annotation
    /// `apikeys.dev/revoke` or `apikey-operator revoke`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<TokenRotation>,

    /// The Secret that receives the value.
    // Boxed: rarely set, and inline it made each cached token 88 bytes
    // bigger, past the 1 KiB allocation size class (BENCHMARKS.md §16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Box<SecretTemplate>>,

    /// The audiences the token is valid for, as in a Kubernetes TokenReview:
    /// a review that names audiences succeeds only for those also listed
    /// here, and a gateway route that requires an audience only for a token
    /// listing it. Default: the key's `tokenDefaults.audiences`, else the
    /// verifier's `--audience` flags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253)))]
    pub audiences: Vec<String>,

    /// Suspends the token: the value is removed from the Secret and rejected
    /// by the verifier. Setting it back to false issues a fresh value.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

/// Reference to an ApiKey in the same namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApiKeyRef {
    /// Name of the ApiKey.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Rotation of a token: the schedule shared with key defaults, plus the
/// workloads to restart when the value changes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenRotation {
    #[serde(flatten)]
    pub schedule: Rotation,

    /// Deployments, StatefulSets or DaemonSets in this namespace whose pods
    /// read the Secret: their pod template gets the annotation
    /// `token-hash.apikeys.dev/<token name>` updated when (and only when) the value changes,
    /// which rolls the pods onto the new value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub restart_targets: Vec<RestartTarget>,
}

/// A workload to roll when the token's value changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RestartTarget {
    /// The workload kind.
    pub kind: RestartTargetKind,
    /// The workload's name, in the token's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Kinds of workloads that can be rolled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RestartTargetKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

/// CEL on `secret.name`: a DNS-1123 subdomain, as Kubernetes names Secrets.
const SECRET_NAME_RULE: &str =
    "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')";
const SECRET_NAME_MESSAGE: &str = "a Secret name is lower-case letters, digits, '-' and '.', and starts and ends with a letter or digit, e.g. payments-api-token";
/// A key of a Secret's data, as Kubernetes allows them.
const SECRET_KEY_MESSAGE: &str =
    "a Secret data key is letters, digits, '-', '_' and '.', e.g. token or api.key";

/// Where the value is written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
pub struct SecretTemplate {
    /// Name of the Secret. Default: the ApiToken's name. A Secret of this
    /// name that the operator does not own is never overwritten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new(SECRET_NAME_RULE).message(SECRET_NAME_MESSAGE))]
    pub name: Option<String>,

    /// Key of the value inside the Secret's data. Default: `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z0-9]+$')").message(SECRET_KEY_MESSAGE))]
    pub key: Option<String>,

    /// Extra labels for the Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Extra annotations for the Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Observed state of an ApiToken, written by the operator. Holds hashes of
/// values, never values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiTokenStatus {
    /// `Ready`, `Expired` and `ExpiringSoon`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The non-secret identifier embedded in every value of this token; never changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,

    /// `metadata.uid` of the ApiKey the values were issued under: they pass
    /// to no other key of the same name (one deleted and created again).
    // Boxed: a cached token must fit the 1 KiB allocation class (see
    // `a_cached_token_fits_the_1_kib_allocation_class`).
    #[serde(default, rename = "apiKeyUID", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub api_key_uid: Option<Box<String>>,

    /// The Secret holding the current value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,

    /// `sha256:<hex>` of the current value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,

    /// A value being issued: recorded before it is written to the Secret and
    /// promoted to `hash` after. Never accepted by the verifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingValue>,

    /// Hashes of earlier values still inside their grace period, oldest
    /// first; at most 10 (the oldest is dropped first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub previous: Vec<PreviousValue>,

    /// When the current value was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<Time>,

    /// When the current value expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,

    /// When the value will next be rotated or renewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation_at: Option<Time>,

    /// When the value was last replaced by a rotation or renewal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotated_at: Option<Time>,

    /// How many times the value was rotated or renewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotations: Option<i64>,

    /// The last value of the `apikeys.dev/rotate` annotation acted on.
    // Boxed: a cached token must fit the 1 KiB allocation class (see
    // `a_cached_token_fits_the_1_kib_allocation_class`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_request: Option<Box<String>>,

    /// The last value of the `apikeys.dev/revoke` annotation acted on: from
    /// then on no value issued before it is accepted.
    // Boxed: a cached token must fit the 1 KiB allocation class (see
    // `a_cached_token_fits_the_1_kib_allocation_class`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_revocation_request: Option<Box<String>>,

    /// The last value taken away from the token (expired, disabled, revoked,
    /// its key gone or replaced) and why: never accepted, kept only so that
    /// the verifier answers someone still presenting it with the reason
    /// instead of `mismatch`.
    // Boxed: a cached token must fit the 1 KiB allocation class (see
    // `a_cached_token_fits_the_1_kib_allocation_class`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<Box<RetiredValue>>,

    /// When the verifier last accepted a value of this token (minute precision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<Time>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A value recorded before it is written to the Secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingValue {
    /// `sha256:<hex>` of the value being written.
    pub hash: String,
    /// Why it is issued: Issue, Rotate, Renew, Request, Revoke or Reissue.
    pub reason: String,
    /// When the issue started.
    pub started_at: Time,
    /// The `apikeys.dev/rotate` value this issue answers, recorded in
    /// `lastRotationRequest` when the value is promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_request: Option<String>,
}

/// A value that is no longer accepted, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetiredValue {
    /// `sha256:<hex>` of the value.
    pub hash: String,
    /// Why it went: `Expired`, `Disabled`, `Revoked`, `ApiKeyNotFound`,
    /// `ApiKeyNotReady` or `ApiKeyReplaced`.
    #[schemars(length(max = 64))]
    pub reason: String,
}

/// The most earlier values `status.previous` holds (the CRD's `maxItems`).
/// With grace shorter than a rotation period of at least a minute, a
/// schedule alone keeps one; ten leave room for a burst of requested
/// rotations inside one grace period, while bounding what a status (and the
/// verifier's index, which compares every entry) carries.
pub const MAX_PREVIOUS: usize = 10;

/// An earlier value still accepted until `validUntil`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviousValue {
    /// `sha256:<hex>` of the earlier value.
    pub hash: String,
    /// End of its grace period.
    pub valid_until: Time,
}

impl ApiToken {
    /// `metadata.uid` of the ApiKey that is the token's controller owner, if one is.
    pub fn controlling_key_uid(&self) -> Option<&str> {
        use kube::{Resource, ResourceExt};
        let group = super::ApiKey::group(&());
        self.owner_references()
            .iter()
            .find(|r| {
                r.controller == Some(true)
                    && r.kind == super::ApiKey::kind(&())
                    && r.api_version.split('/').next() == Some(&*group)
            })
            .map(|r| r.uid.as_str())
    }
}
