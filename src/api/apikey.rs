//! `ApiKey`: an identity (a user or a ServiceAccount) that owns API tokens.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Expiration, Rotation};

/// Desired state of an ApiKey.
///
/// Tokens of a key authenticate as the key's principal: the user name for a
/// personal key, `system:serviceaccount:<namespace>:<name>` for a
/// ServiceAccount key. Deleting a key deletes all of its tokens and their Secrets.
// Each printcolumn repeats `type_ = ...`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "apikeys.dev",
    version = "v1alpha1",
    kind = "ApiKey",
    namespaced,
    status = "ApiKeyStatus",
    derive = "PartialEq",
    shortname = "apik",
    category = "apikey-operator",
    doc = "An API key: the identity (a user or a ServiceAccount) that its ApiTokens authenticate as.",
    printcolumn(name = "Owner-Kind", type_ = "string", json_path = ".spec.owner.kind"),
    printcolumn(name = "Owner", type_ = "string", json_path = ".spec.owner.name"),
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
    printcolumn(name = "Tokens", type_ = "integer", json_path = ".status.tokens"),
    printcolumn(
        name = "Principal",
        type_ = "string",
        json_path = ".status.principal",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeySpec {
    /// Who the key's tokens authenticate as. Immutable: create a new key for another owner.
    #[x_kube(validation = Rule::new("self == oldSelf").message("owner is immutable; create a new ApiKey for another owner"))]
    pub owner: Owner,

    /// A human-readable name shown by tools. Editable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub display_name: Option<String>,

    /// What the key is for. Editable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,

    /// Free-form labels for people and tools, e.g. `team: payments`. Editable;
    /// at most 64 entries.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub tags: BTreeMap<String, String>,

    /// Expiration and rotation applied to this key's tokens that do not set their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_defaults: Option<TokenDefaults>,
}

/// The identity behind an ApiKey.
///
/// A User name may not start with `system:` (reserved for Kubernetes
/// components and ServiceAccounts) nor contain control characters; a
/// ServiceAccount name is a DNS-1123 subdomain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(super::owner::NO_SYSTEM_USER).message("owner.name: user names starting with \"system:\" are reserved for Kubernetes components and ServiceAccounts; a User key may not name one (for a ServiceAccount, use owner.kind: ServiceAccount)"))]
#[x_kube(validation = Rule::new(super::owner::NO_CONTROL_CHARACTERS).message("owner.name: a user name may not contain control characters"))]
#[x_kube(validation = Rule::new(super::owner::SERVICE_ACCOUNT_NAME).message("owner.name: a ServiceAccount name is a DNS-1123 subdomain: lower-case letters, digits, '-' and '.'"))]
pub struct Owner {
    /// `User` for a personal key, `ServiceAccount` for a key of a ServiceAccount
    /// in the key's namespace (which must exist before tokens are issued).
    pub kind: OwnerKind,

    /// The user name, or the ServiceAccount's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The kind of identity that owns a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OwnerKind {
    /// A person; tokens are personal access tokens (prefix `akpat_`).
    User,
    /// A Kubernetes ServiceAccount in the key's namespace; tokens are service
    /// account tokens (prefix `aksat_`).
    ServiceAccount,
}

/// Defaults for the key's tokens; a token's own setting wins.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenDefaults {
    /// Default expiration of the key's tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Expiration>,
    /// Default rotation of the key's tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,
    /// Default audiences of the key's tokens (see the ApiToken's
    /// `spec.audiences`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253)))]
    pub audiences: Vec<String>,
}

/// Observed state of an ApiKey, written by the operator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyStatus {
    /// `Ready` says whether the owner resolves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The identity the key's tokens authenticate as: the user name, or
    /// `system:serviceaccount:<namespace>:<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,

    /// `metadata.uid` of the owning ServiceAccount, recorded when the key
    /// first finds it. The key stays bound to that ServiceAccount: one
    /// deleted and created again under the same name is another identity,
    /// and the key's tokens do not authenticate as it.
    #[serde(default, rename = "ownerUID", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub owner_uid: Option<String>,

    /// Number of ApiTokens referencing this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<i32>,

    /// Number of those tokens that are Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_tokens: Option<i32>,

    /// Number of those tokens that are Expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_tokens: Option<i32>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
