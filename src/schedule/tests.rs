//! Table tests of the schedule: each row is a policy, what the status records,
//! what the user wants and `now`, and the plan expected.

use jiff::{SignedDuration, Timestamp};

use super::*;
use crate::api::{ApiKeyRef, ApiTokenSpec, Expiration, Rotation, TokenDefaults, TokenRotation};
use cases::cases;

fn t(s: &str) -> Timestamp {
    s.parse().expect("test timestamp")
}

fn h(hours: i64) -> SignedDuration {
    SignedDuration::from_hours(hours)
}

fn spec(expiration: Option<Expiration>, rotation: Option<Rotation>) -> ApiTokenSpec {
    ApiTokenSpec {
        api_key_ref: ApiKeyRef { name: "key".into() },
        display_name: None,
        description: None,
        tags: Default::default(),
        expiration: expiration.map(Box::new),
        rotation: rotation.map(|schedule| TokenRotation {
            schedule,
            restart_targets: vec![],
        }),
        secret: None,
        audiences: Vec::new(),
        disabled: false,
    }
}

fn lifetime(s: &str) -> Option<Expiration> {
    Some(Expiration {
        expires_at: None,
        lifetime: Some(s.into()),
    })
}

fn rotation(
    every: Option<&str>,
    renew_before: Option<&str>,
    grace: Option<&str>,
) -> Option<Rotation> {
    Some(Rotation {
        every: every.map(Into::into),
        renew_before: renew_before.map(Into::into),
        grace_period: grace.map(Into::into),
    })
}

const T0: &str = "2026-01-01T00:00:00Z";

fn issued(at: &str) -> Observed<'static> {
    Observed {
        has_value: true,
        issued_at: Some(t(at)),
        ..Default::default()
    }
}

struct Case {
    name: &'static str,
    policy: Policy,
    observed: Observed<'static>,
    intent: Intent<'static>,
    now: &'static str,
    step: Step,
    expires_at: Option<&'static str>,
    next_rotation_at: Option<&'static str>,
    validity: Validity,
    next_due: Option<&'static str>,
    consumes_request: bool,
}

fn lifetime_policy(hours: i64) -> Policy {
    Policy {
        expiry: Some(Expiry::Lifetime(h(hours))),
        ..Default::default()
    }
}

#[test]
fn plan_table() {
    let mut failures = Vec::new();
    for case in cases() {
        let got = plan(&case.policy, &case.observed, case.intent, t(case.now));
        let want = Plan {
            step: case.step,
            expires_at: case.expires_at.map(t),
            next_rotation_at: case.next_rotation_at.map(t),
            validity: case.validity,
            next_due: case.next_due.map(t),
            consumes_request: case.consumes_request,
        };
        if got != want {
            failures.push(format!("{}:\n   got {got:?}\n  want {want:?}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn next_due_is_never_in_the_past() {
    for case in cases() {
        let now = t(case.now);
        let got = plan(&case.policy, &case.observed, case.intent, now);
        assert!(got.next_due.is_none_or(|due| due > now), "{}", case.name);
    }
}

#[test]
fn resolve_reads_durations_and_key_defaults() {
    let defaults = TokenDefaults {
        expiration: lifetime("90d"),
        rotation: rotation(Some("30d"), None, Some("1h")),
        ..Default::default()
    };
    let own = spec(None, rotation(None, None, Some("2h")));
    let policy = Policy::resolve(&own, Some(&defaults), MIN_ROTATION_PERIOD).expect("valid");
    assert_eq!(
        policy,
        Policy {
            expiry: Some(Expiry::Lifetime(h(90 * 24))),
            every: Some(h(30 * 24)),
            renew_before: None,
            grace: h(2),
        }
    );
    let own_expiry = spec(
        Some(Expiration {
            expires_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(T0))),
            lifetime: None,
        }),
        None,
    );
    let policy = Policy::resolve(&own_expiry, Some(&defaults), MIN_ROTATION_PERIOD).expect("valid");
    assert_eq!(policy.expiry, Some(Expiry::At(t(T0))));
}

/// The floor and the grace bound apply to the key's defaults as to the
/// token's own rotation, and the operator's flag may raise the floor.
#[test]
fn rotation_bounds_apply_to_defaults_and_the_configured_floor() {
    let defaults = TokenDefaults {
        rotation: rotation(Some("1h"), None, None),
        ..Default::default()
    };
    let own_grace = spec(None, rotation(None, None, Some("2h")));
    assert_eq!(
        Policy::resolve(&own_grace, Some(&defaults), MIN_ROTATION_PERIOD),
        Err(PolicyError::GraceNotShorter {
            grace: "2h".into(),
            every: "1h".into(),
        })
    );
    let hourly = spec(None, rotation(Some("1h"), None, Some("59m")));
    assert!(Policy::resolve(&hourly, None, MIN_ROTATION_PERIOD).is_ok());
    assert!(
        Policy::resolve(
            &spec(None, rotation(Some("1m"), None, None)),
            None,
            MIN_ROTATION_PERIOD
        )
        .is_ok()
    );
    assert_eq!(
        Policy::resolve(&hourly, None, h(2)),
        Err(PolicyError::EveryTooShort {
            every: "1h".into(),
            floor: "2h".into(),
        })
    );
    // A grace period without a rotation period bounds nothing on a schedule.
    let manual = spec(None, rotation(None, None, Some("100w")));
    assert!(Policy::resolve(&manual, None, MIN_ROTATION_PERIOD).is_ok());
}

#[test]
fn resolve_rejects_what_cannot_be_scheduled() {
    let cases: Vec<(&str, ApiTokenSpec, PolicyError)> = vec![
        (
            "renewBefore equal to lifetime",
            spec(lifetime("24h"), rotation(None, Some("1d"), None)),
            PolicyError::RenewBeforeNotShorter {
                renew_before: format_duration(h(24)),
                lifetime: format_duration(h(24)),
            },
        ),
        (
            "renewBefore longer than lifetime",
            spec(lifetime("1h"), rotation(None, Some("2h"), None)),
            PolicyError::RenewBeforeNotShorter {
                renew_before: format_duration(h(2)),
                lifetime: format_duration(h(1)),
            },
        ),
        (
            "renewBefore with an absolute expiry",
            spec(
                Some(Expiration {
                    expires_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(T0))),
                    lifetime: None,
                }),
                rotation(None, Some("1h"), None),
            ),
            PolicyError::RenewBeforeWithoutLifetime,
        ),
        (
            "both expiresAt and lifetime",
            spec(
                Some(Expiration {
                    expires_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(T0))),
                    lifetime: Some("1h".into()),
                }),
                None,
            ),
            PolicyError::ExpirationNotOneOf,
        ),
        (
            "zero lifetime",
            spec(lifetime("0s"), None),
            PolicyError::NotPositive {
                field: "expiration.lifetime",
            },
        ),
        (
            "zero rotation period",
            spec(None, rotation(Some("0h"), None, None)),
            PolicyError::NotPositive {
                field: "rotation.every",
            },
        ),
        (
            "rotation period under the floor",
            spec(None, rotation(Some("1s"), None, None)),
            PolicyError::EveryTooShort {
                every: "1s".into(),
                floor: "1m".into(),
            },
        ),
        (
            "grace period longer than the rotation period",
            spec(None, rotation(Some("1h"), None, Some("100w"))),
            PolicyError::GraceNotShorter {
                grace: format_duration(h(100 * 7 * 24)),
                every: "1h".into(),
            },
        ),
        (
            "grace period equal to the rotation period",
            spec(None, rotation(Some("1h"), None, Some("60m"))),
            PolicyError::GraceNotShorter {
                grace: "1h".into(),
                every: "1h".into(),
            },
        ),
    ];
    for (name, spec, want) in cases {
        assert_eq!(
            Policy::resolve(&spec, None, MIN_ROTATION_PERIOD),
            Err(want),
            "{name}"
        );
    }
    let bad = Policy::resolve(
        &spec(lifetime("ninety days"), None),
        None,
        MIN_ROTATION_PERIOD,
    )
    .expect_err("bad duration");
    assert!(
        matches!(
            bad,
            PolicyError::BadDuration {
                field: "expiration.lifetime",
                ..
            }
        ),
        "{bad:?}"
    );
    assert!(
        bad.to_string().contains("spec.expiration.lifetime"),
        "{bad}"
    );
}

#[test]
fn the_recorded_reason_reads_back_as_the_kind_it_records() {
    for kind in IssueKind::RECORDED {
        assert_eq!(IssueKind::from_recorded(kind.as_str()), kind);
    }
    let missing = IssueKind::Reissue {
        secret_missing: true,
    };
    assert_eq!(missing.as_str(), "Reissue");
    assert_eq!(
        IssueKind::from_recorded("edited by hand"),
        IssueKind::Initial
    );
    assert_eq!(
        Step::Rotate(RotateReason::Renewal).issue_kind(),
        Some(IssueKind::Rotation(RotateReason::Renewal))
    );
    assert_eq!(
        Step::Issue(IssueReason::ExpiryExtended).issue_kind(),
        Some(IssueKind::Initial)
    );
    assert_eq!(Step::EndGrace.issue_kind(), None);
}

mod cases;
