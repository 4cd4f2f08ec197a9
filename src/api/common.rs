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
// Two CEL rules rather than `minProperties`/`maxProperties`, whose answers
// ("Too many: 2: must have at most 1 item") do not say which fields they mean.
#[x_kube(validation = Rule::new("!has(self.expiresAt) || !has(self.lifetime)").message("set lifetime or expiresAt, not both"))]
#[x_kube(validation = Rule::new("has(self.expiresAt) || has(self.lifetime)").message("set lifetime (a duration such as 90d) or expiresAt (a time such as 2027-01-31T00:00:00Z)"))]
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
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(crate::duration::DURATION_RULE).message(crate::duration::DURATION_MESSAGE))]
    #[x_kube(validation = Rule::new(LIFETIME_NOT_ZERO).message("expiration.lifetime must be longer than 0, e.g. 90d"))]
    pub lifetime: Option<String>,
}

/// CEL on `rotation.every`: refuses a period under one minute, zero
/// included: whole units that are all zero (`0m`, `0h0m`), or such units and
/// under 60 seconds (`30s`, `0m59s`). The controller enforces the floor too
/// (for objects stored before this rule, and a key's defaults), and
/// `--min-rotation-period` may raise it there.
const EVERY_AT_LEAST_A_MINUTE: &str =
    "!self.matches('^(0+[wdhm])+(0*[0-5]?[0-9]s)?$|^0*[0-5]?[0-9]s$')";

/// CEL on `expiration.lifetime`: refuses a lifetime of zero, every unit 0.
const LIFETIME_NOT_ZERO: &str = "!self.matches('^(0+[wdhms])+$')";

/// CEL on a rotation: `gracePeriod` shorter than `every`, where CEL can read
/// both (its `duration()` knows h, m and s; a grace of whole weeks or days
/// is compared with 168h or 24h). Other combinations are checked by the
/// controller, as are a token's grace against its key's default `every`.
const GRACE_SHORTER_THAN_EVERY: &str = concat!(
    "!has(self.every) || !has(self.gracePeriod) || !self.every.matches('^([0-9]+h)?([0-9]+m)?([0-9]+s)?$') || ",
    "(self.gracePeriod.matches('^([0-9]+h)?([0-9]+m)?([0-9]+s)?$') ? duration(self.gracePeriod) < duration(self.every) : ",
    "self.gracePeriod.matches('^0*[1-9][0-9]*w') ? duration(self.every) > duration('168h') : ",
    "!self.gracePeriod.matches('^(0+w)?0*[1-9][0-9]*d') || duration(self.every) > duration('24h'))"
);

/// When the token's value is replaced by a fresh one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(GRACE_SHORTER_THAN_EVERY).message("rotation.gracePeriod must be shorter than rotation.every: otherwise earlier values pile up, each still valid"))]
pub struct Rotation {
    /// Rotate on this period, counted from the last issue or rotation, e.g.
    /// `30d`. At least one minute (the operator may be run with a higher floor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(crate::duration::DURATION_RULE).message(crate::duration::DURATION_MESSAGE))]
    #[x_kube(validation = Rule::new(EVERY_AT_LEAST_A_MINUTE).message("rotation.every must be at least 1m"))]
    pub every: Option<String>,

    /// Rotate this long before the value expires, e.g. `7d`. Must be shorter
    /// than the lifetime; a token whose renewBefore is not shorter gets the
    /// condition Ready=False with reason InvalidSpec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(crate::duration::DURATION_RULE).message(crate::duration::DURATION_MESSAGE))]
    pub renew_before: Option<String>,

    /// How long the previous value stays valid after a rotation, so that
    /// consumers can pick up the new value, e.g. `1h`. Shorter than `every`
    /// when both apply. Default: no grace, the previous value stops working at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(crate::duration::DURATION_RULE).message(crate::duration::DURATION_MESSAGE))]
    pub grace_period: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::parse_duration;
    use jiff::SignedDuration;

    /// The pattern of a rule `!self.matches('<pattern>')`.
    fn refusing(rule: &str) -> regex::Regex {
        let pattern = rule
            .strip_prefix("!self.matches('")
            .and_then(|r| r.strip_suffix("')"))
            .expect("a negated matches rule");
        regex::Regex::new(pattern).expect("pattern")
    }

    /// Durations with every combination of units, zero, leading zeros and values around the
    /// minute, each checked against what the controller parses it to.
    fn durations() -> Vec<String> {
        let values = ["", "0", "00", "1", "01", "59", "60", "100"];
        let mut all = Vec::new();
        for w in ["", "0w", "1w"] {
            for h in ["", "0h", "1h"] {
                for m in values.iter().map(|v| {
                    if v.is_empty() {
                        String::new()
                    } else {
                        format!("{v}m")
                    }
                }) {
                    for s in values.iter().map(|v| {
                        if v.is_empty() {
                            String::new()
                        } else {
                            format!("{v}s")
                        }
                    }) {
                        let d = format!("{w}{h}{m}{s}");
                        if !d.is_empty() {
                            all.push(d);
                        }
                    }
                }
            }
        }
        all
    }

    #[test]
    fn rotation_every_is_refused_exactly_when_under_a_minute() {
        let refuses = refusing(EVERY_AT_LEAST_A_MINUTE);
        for d in durations() {
            let parsed = parse_duration(&d).expect("a valid duration");
            assert_eq!(
                refuses.is_match(&d),
                parsed < SignedDuration::from_secs(60),
                "{d} ({parsed:?})"
            );
        }
    }

    #[test]
    fn lifetime_is_refused_exactly_when_zero() {
        let refuses = refusing(LIFETIME_NOT_ZERO);
        for d in durations() {
            let parsed = parse_duration(&d).expect("a valid duration");
            assert_eq!(refuses.is_match(&d), parsed.is_zero(), "{d}");
        }
    }
}
