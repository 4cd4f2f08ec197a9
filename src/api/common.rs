//! Schema pieces shared by `ApiKey.spec.tokenDefaults` and `ApiToken.spec`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// When the token's value stops being accepted.
///
/// Set exactly one of `expiresAt` (an absolute instant) or `lifetime`
/// (a duration counted from each issue or rotation of the value). Editing this
/// changes the expiry of the current value without issuing a new value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
#[x_kube(validation = Rule::new("has(self.expiresAt) != has(self.lifetime)").message("set exactly one of expiresAt or lifetime"))]
pub struct Expiration {
    /// Absolute expiry as an RFC 3339 timestamp, e.g. `2027-01-31T00:00:00Z`.
    /// Every value of the token, including rotated ones, stops working then.
    /// At most year 9998.
    // Later instants cannot be represented by the clients that read these
    // objects: a year-9999 value made every watch of ApiTokens fail to decode,
    // for all tokens, so it is refused at admission (`api::crds` gives every
    // time field that pattern).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,

    /// How long each issued value stays valid, counted from its issue, e.g.
    /// `90d`, `720h`, `1h30m` (units s, m, h, d, w, largest first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::duration::DURATION_PATTERN), length(max = 32))]
    pub lifetime: Option<String>,
}

/// When the token's value is replaced by a fresh one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    /// Rotate on this period, counted from the last issue or rotation, e.g. `30d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::duration::DURATION_PATTERN), length(max = 32))]
    pub every: Option<String>,

    /// Rotate this long before the value expires, e.g. `7d`. Must be shorter
    /// than the lifetime; a token whose renewBefore is not shorter gets the
    /// condition Ready=False with reason InvalidSpec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::duration::DURATION_PATTERN), length(max = 32))]
    pub renew_before: Option<String>,

    /// How long the previous value stays valid after a rotation, so that
    /// consumers can pick up the new value, e.g. `1h`. Default: no grace, the
    /// previous value stops working at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::duration::DURATION_PATTERN), length(max = 32))]
    pub grace_period: Option<String>,
}
