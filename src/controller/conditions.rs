//! Setting a condition the Kubernetes way: `lastTransitionTime` moves only
//! when the status flips, so that a reconcile with nothing new writes nothing.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The desired content of one condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCondition {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl DesiredCondition {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        DesiredCondition {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Builds the condition list from `desired`, keeping the transition time of
/// each existing condition whose status did not change.
pub fn merge(
    existing: &[Condition],
    desired: &[DesiredCondition],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    desired
        .iter()
        .map(|w| {
            let status = if w.status { "True" } else { "False" };
            let since = existing
                .iter()
                .find(|c| c.type_ == w.type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            Condition {
                type_: w.type_.to_owned(),
                status: status.to_owned(),
                reason: w.reason.to_owned(),
                message: w.message.clone(),
                last_transition_time: since,
                observed_generation: generation,
            }
        })
        .collect()
}

/// Whether the condition `type_` is present with status True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let first = merge(
            &[],
            &[DesiredCondition::new("Ready", false, "Issuing", "issuing")],
            Some(1),
            t("2026-01-01T00:00:00Z"),
        );
        let same = merge(
            &first,
            &[DesiredCondition::new("Ready", false, "Issuing", "still")],
            Some(1),
            t("2026-01-01T00:05:00Z"),
        );
        assert_eq!(
            same[0].last_transition_time,
            Time(t("2026-01-01T00:00:00Z"))
        );
        assert_eq!(same[0].message, "still");
        let flipped = merge(
            &same,
            &[DesiredCondition::new("Ready", true, "Issued", "ok")],
            Some(2),
            t("2026-01-01T00:10:00Z"),
        );
        assert_eq!(
            flipped[0].last_transition_time,
            Time(t("2026-01-01T00:10:00Z"))
        );
        assert_eq!(flipped[0].observed_generation, Some(2));
        assert!(is_true(&flipped, "Ready"));
        assert!(!is_true(&same, "Ready"));
    }
}
