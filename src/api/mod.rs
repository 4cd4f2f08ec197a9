//! The custom resource types `ApiKey` and `ApiToken` (group `apikeys.dev`).
//!
//! Types and schema only, no I/O: the controller and verifier read them, the
//! `crds` command renders them, and `crds/` is generated from them.

mod apikey;
mod apitoken;
mod common;
pub mod conditions;

pub use apikey::{ApiKey, ApiKeySpec, ApiKeyStatus, Owner, OwnerKind, TokenDefaults};
pub use apitoken::{
    ApiKeyRef, ApiToken, ApiTokenSpec, ApiTokenStatus, PendingValue, PreviousValue, RestartTarget,
    RestartTargetKind, SecretTemplate, TokenRotation,
};
pub use common::{Expiration, Rotation};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of both resources.
pub const GROUP: &str = "apikeys.dev";
/// The prefix of this project's annotation and label keys.
pub const GROUP_PREFIX: &str = "apikeys.dev/";
/// The served and stored version of both resources.
pub const VERSION: &str = "v1alpha1";
/// Annotation whose every new value rotates an ApiToken exactly once.
pub const ROTATE_ANNOTATION: &str = "apikeys.dev/rotate";

/// Both CRDs, in the order they should be applied.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![ApiKey::crd(), ApiToken::crd()]
}

/// Both CRDs as one multi-document YAML stream, as `apikey-operator crds` prints it.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
