//! Table tests of the schedule: each row is a policy, what the status records,
//! what the user wants and `now`, and the plan expected.

use jiff::{SignedDuration, Timestamp};

use super::*;
use crate::api::{ApiKeyRef, ApiTokenSpec, Expiration, Rotation, TokenDefaults, TokenRotation};

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
        expiration,
        rotation: rotation.map(|schedule| TokenRotation {
            schedule,
            restart_targets: vec![],
        }),
        secret: None,
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

fn cases() -> Vec<Case> {
    let never = Observed::default();
    let none = Intent::default();
    vec![
        Case {
            name: "no expiry: first issue, then nothing is ever due",
            policy: Policy::default(),
            observed: never.clone(),
            intent: none,
            now: T0,
            step: Step::Issue(IssueReason::Initial),
            expires_at: None,
            next_rotation_at: None,
            validity: Validity::NoExpiry,
            next_due: None,
            consumes_request: false,
        },
        Case {
            name: "no expiry: issued value stays idle",
            policy: Policy::default(),
            observed: issued(T0),
            intent: none,
            now: "2030-01-01T00:00:00Z",
            step: Step::Idle,
            expires_at: None,
            next_rotation_at: None,
            validity: Validity::NoExpiry,
            next_due: None,
            consumes_request: false,
        },
        Case {
            name: "absolute expiry: issued, warning window flip is the next due instant",
            policy: Policy {
                expiry: Some(Expiry::At(t("2026-03-01T00:00:00Z"))),
                ..Default::default()
            },
            observed: never.clone(),
            intent: none,
            now: T0,
            step: Step::Issue(IssueReason::Initial),
            expires_at: Some("2026-03-01T00:00:00Z"),
            next_rotation_at: None,
            validity: Validity::Valid,
            next_due: Some("2026-02-22T00:00:00Z"),
            consumes_request: false,
        },
        Case {
            name: "absolute expiry: inside the warning window",
            policy: Policy {
                expiry: Some(Expiry::At(t("2026-03-01T00:00:00Z"))),
                ..Default::default()
            },
            observed: issued(T0),
            intent: none,
            now: "2026-02-25T00:00:00Z",
            step: Step::Idle,
            expires_at: Some("2026-03-01T00:00:00Z"),
            next_rotation_at: None,
            validity: Validity::ExpiringSoon,
            next_due: Some("2026-03-01T00:00:00Z"),
            consumes_request: false,
        },
        Case {
            name: "absolute expiry: reached, the value is removed",
            policy: Policy {
                expiry: Some(Expiry::At(t("2026-03-01T00:00:00Z"))),
                ..Default::default()
            },
            observed: issued(T0),
            intent: none,
            now: "2026-03-01T00:00:00Z",
            step: Step::Expire,
            expires_at: Some("2026-03-01T00:00:00Z"),
            next_rotation_at: None,
            validity: Validity::Expired,
            next_due: None,
            consumes_request: false,
        },
        Case {
            name: "lifetime expiry: counted from the issue",
            policy: lifetime_policy(90),
            observed: issued(T0),
            intent: none,
            now: "2026-01-02T00:00:00Z",
            step: Step::Idle,
            expires_at: Some("2026-01-04T18:00:00Z"),
            next_rotation_at: None,
            validity: Validity::Valid,
            next_due: Some("2026-01-03T12:00:00Z"),
            consumes_request: false,
        },
        Case {
            name: "lifetime expiry: reached",
            policy: lifetime_policy(90),
            observed: issued(T0),
            intent: none,
            now: "2026-01-04T18:00:01Z",
            step: Step::Expire,
            expires_at: Some("2026-01-04T18:00:00Z"),
            next_rotation_at: None,
            validity: Validity::Expired,
            next_due: None,
            consumes_request: false,
        },
        Case {
            name: "lifetime expiry: stays expired, nothing due",
            policy: lifetime_policy(90),
            observed: Observed {
                has_value: false,
                issued_at: Some(t(T0)),
                ..Default::default()
            },
            intent: none,
            now: "2026-02-01T00:00:00Z",
            step: Step::Idle,
            expires_at: Some("2026-01-04T18:00:00Z"),
            next_rotation_at: None,
            validity: Validity::Expired,
            next_due: None,
            consumes_request: false,
        },
        Case {
            name: "rotation every: not yet due",
            policy: Policy {
                every: Some(h(24)),
                ..Default::default()
            },
            observed: issued(T0),
            intent: none,
            now: "2026-01-01T12:00:00Z",
            step: Step::Idle,
            expires_at: None,
            next_rotation_at: Some("2026-01-02T00:00:00Z"),
            validity: Validity::NoExpiry,
            next_due: Some("2026-01-02T00:00:00Z"),
            consumes_request: false,
        },
        Case {
            name: "rotation every: due exactly now, new value's next rotation follows",
            policy: Policy {
                every: Some(h(24)),
                ..Default::default()
            },
            observed: issued(T0),
            intent: none,
            now: "2026-01-02T00:00:00Z",
            step: Step::Rotate(RotateReason::Scheduled),
            expires_at: None,
            next_rotation_at: Some("2026-01-03T00:00:00Z"),
            validity: Validity::NoExpiry,
            next_due: Some("2026-01-03T00:00:00Z"),
            consumes_request: false,
        },
        Case {
            name: "rotation every: never early",
            policy: Policy {
                every: Some(h(24)),
                ..Default::default()
            },
            observed: issued(T0),
            intent: none,
            now: "2026-01-01T23:59:59Z",
            step: Step::Idle,
            expires_at: None,
            next_rotation_at: Some("2026-01-02T00:00:00Z"),
            validity: Validity::NoExpiry,
            next_due: Some("2026-01-02T00:00:00Z"),
            consumes_request: false,
        },
        Case {
            name: "rotation every longer than lifetime: the value expires first",
            policy: Policy {
                expiry: Some(Expiry::Lifetime(h(10))),
                every: Some(h(24)),
                ..Default::default()
            },
            observed: issued(T0),
            intent: none,
            now: "2026-01-01T01:00:00Z",
            step: Step::Idle,
            expires_at: Some("2026-01-01T10:00:00Z"),
            next_rotation_at: None,
            validity: Validity::Valid,
            next_due: Some("2026-01-01T06:40:00Z"),
            consumes_request: false,
        },
        Case {
            name: "renewBefore: renewal scheduled before expiry",
            policy: Policy {
                expiry: Some(Expiry::Lifetime(h(100))),
                renew_before: Some(h(10)),
                ..Default::default()
            },
            observed: issued(T0),
            intent: none,
            now: "2026-01-02T00:00:00Z",
            step: Step::Idle,
            expires_at: Some("2026-01-05T04:00:00Z"),
            next_rotation_at: Some("2026-01-04T18:00:00Z"),
            validity: Validity::RenewalScheduled,
            next_due: Some("2026-01-04T18:00:00Z"),
            consumes_request: false,
        },
        Case {
            name: "renewBefore: due, renewed with a fresh lifetime",
            policy: Policy {
                expiry: Some(Expiry::Lifetime(h(100))),
                renew_before: Some(h(10)),
                ..Default::default()
            },
            observed: issued(T0),
            intent: none,
            now: "2026-01-04T18:00:00Z",
            step: Step::Rotate(RotateReason::Renewal),
            expires_at: Some("2026-01-08T22:00:00Z"),
            next_rotation_at: Some("2026-01-08T12:00:00Z"),
            validity: Validity::RenewalScheduled,
            next_due: Some("2026-01-08T12:00:00Z"),
            consumes_request: false,
        },
        Case {
            name: "renewBefore: controller was down past the expiry, renews instead of expiring",
            policy: Policy {
                expiry: Some(Expiry::Lifetime(h(100))),
                renew_before: Some(h(10)),
                ..Default::default()
            },
            observed: issued(T0),
            intent: none,
            now: "2026-01-06T00:00:00Z",
            step: Step::Rotate(RotateReason::Renewal),
            expires_at: Some("2026-01-10T04:00:00Z"),
            next_rotation_at: Some("2026-01-09T18:00:00Z"),
            validity: Validity::RenewalScheduled,
            next_due: Some("2026-01-09T18:00:00Z"),
            consumes_request: false,
        },
        Case {
            name: "grace period: a previous value's grace end is the next due instant",
            policy: Policy {
                every: Some(h(24)),
                grace: h(1),
                ..Default::default()
            },
            observed: Observed {
                grace_ends: vec![t("2026-01-02T01:00:00Z")],
                ..issued("2026-01-02T00:00:00Z")
            },
            intent: none,
            now: "2026-01-02T00:30:00Z",
            step: Step::Idle,
            expires_at: None,
            next_rotation_at: Some("2026-01-03T00:00:00Z"),
            validity: Validity::NoExpiry,
            next_due: Some("2026-01-02T01:00:00Z"),
            consumes_request: false,
        },
        Case {
            name: "grace period: ended, its hash is forgotten",
            policy: Policy {
                every: Some(h(24)),
                grace: h(1),
                ..Default::default()
            },
            observed: Observed {
                grace_ends: vec![t("2026-01-02T01:00:00Z")],
                ..issued("2026-01-02T00:00:00Z")
            },
            intent: none,
            now: "2026-01-02T01:00:00Z",
            step: Step::EndGrace,
            expires_at: None,
            next_rotation_at: Some("2026-01-03T00:00:00Z"),
            validity: Validity::NoExpiry,
            next_due: Some("2026-01-03T00:00:00Z"),
            consumes_request: false,
        },
        Case {
            name: "edit of expiration on an issued token: new expiry, same value",
            policy: lifetime_policy(48),
            observed: issued(T0),
            intent: none,
            now: "2026-01-01T06:00:00Z",
            step: Step::Idle,
            expires_at: Some("2026-01-03T00:00:00Z"),
            next_rotation_at: None,
            validity: Validity::Valid,
            next_due: Some("2026-01-02T08:00:00Z"),
            consumes_request: false,
        },
        Case {
            name: "edit of expiration into the past on an issued token: expires now",
            policy: Policy {
                expiry: Some(Expiry::At(t("2026-01-01T01:00:00Z"))),
                ..Default::default()
            },
            observed: issued(T0),
            intent: none,
            now: "2026-01-01T06:00:00Z",
            step: Step::Expire,
            expires_at: Some("2026-01-01T01:00:00Z"),
            next_rotation_at: None,
            validity: Validity::Expired,
            next_due: None,
            consumes_request: false,
        },
        Case {
            name: "edit of expiration after expiry: extended into the future, a fresh value is issued",
            policy: lifetime_policy(24 * 30),
            observed: Observed {
                has_value: false,
                issued_at: Some(t(T0)),
                ..Default::default()
            },
            intent: none,
            now: "2026-01-10T00:00:00Z",
            step: Step::Issue(IssueReason::ExpiryExtended),
            expires_at: Some("2026-02-09T00:00:00Z"),
            next_rotation_at: None,
            validity: Validity::Valid,
            next_due: Some("2026-02-02T00:00:00Z"),
            consumes_request: false,
        },
        Case {
            name: "expiry already in the past at creation: no value is ever issued",
            policy: Policy {
                expiry: Some(Expiry::At(t("2025-06-01T00:00:00Z"))),
                ..Default::default()
            },
            observed: never.clone(),
            intent: none,
            now: T0,
            step: Step::Idle,
            expires_at: Some("2025-06-01T00:00:00Z"),
            next_rotation_at: None,
            validity: Validity::Expired,
            next_due: None,
            consumes_request: false,
        },
        Case {
            name: "expiry in the past at creation: a rotation request cannot help but is consumed",
            policy: Policy {
                expiry: Some(Expiry::At(t("2025-06-01T00:00:00Z"))),
                ..Default::default()
            },
            observed: never.clone(),
            intent: Intent {
                disabled: false,
                rotation_request: Some("r1"),
            },
            now: T0,
            step: Step::Idle,
            expires_at: Some("2025-06-01T00:00:00Z"),
            next_rotation_at: None,
            validity: Validity::Expired,
            next_due: None,
            consumes_request: true,
        },
        Case {
            name: "disabled token with a value: the value is removed",
            policy: lifetime_policy(24),
            observed: issued(T0),
            intent: Intent {
                disabled: true,
                rotation_request: None,
            },
            now: "2026-01-01T01:00:00Z",
            step: Step::Disable,
            expires_at: Some("2026-01-02T00:00:00Z"),
            next_rotation_at: None,
            validity: Validity::Valid,
            next_due: None,
            consumes_request: false,
        },
        Case {
            name: "disabled token without a value: nothing due, a request waits for the re-enable",
            policy: Policy {
                every: Some(h(1)),
                ..Default::default()
            },
            observed: never.clone(),
            intent: Intent {
                disabled: true,
                rotation_request: Some("r1"),
            },
            now: T0,
            step: Step::Idle,
            expires_at: None,
            next_rotation_at: None,
            validity: Validity::NoExpiry,
            next_due: None,
            consumes_request: false,
        },
        Case {
            name: "re-enabled token: a fresh value, and the waiting request is consumed by it",
            policy: Policy {
                every: Some(h(1)),
                ..Default::default()
            },
            observed: never.clone(),
            intent: Intent {
                disabled: false,
                rotation_request: Some("r1"),
            },
            now: T0,
            step: Step::Issue(IssueReason::Initial),
            expires_at: None,
            next_rotation_at: Some("2026-01-01T01:00:00Z"),
            validity: Validity::NoExpiry,
            next_due: Some("2026-01-01T01:00:00Z"),
            consumes_request: true,
        },
        Case {
            name: "manual rotation request: a new annotation value rotates",
            policy: Policy::default(),
            observed: Observed {
                last_rotation_request: Some("r1"),
                ..issued(T0)
            },
            intent: Intent {
                disabled: false,
                rotation_request: Some("r2"),
            },
            now: "2026-01-05T00:00:00Z",
            step: Step::Rotate(RotateReason::Requested),
            expires_at: None,
            next_rotation_at: None,
            validity: Validity::NoExpiry,
            next_due: None,
            consumes_request: true,
        },
        Case {
            name: "manual rotation request: a request already acted on is not seen again",
            policy: Policy::default(),
            observed: Observed {
                last_rotation_request: Some("r2"),
                ..issued("2026-01-05T00:00:00Z")
            },
            intent: Intent {
                disabled: false,
                rotation_request: Some("r2"),
            },
            now: "2026-01-05T00:00:01Z",
            step: Step::Idle,
            expires_at: None,
            next_rotation_at: None,
            validity: Validity::NoExpiry,
            next_due: None,
            consumes_request: false,
        },
        Case {
            name: "manual rotation request after a lifetime expiry: a fresh value",
            policy: lifetime_policy(1),
            observed: Observed {
                has_value: false,
                issued_at: Some(t(T0)),
                ..Default::default()
            },
            intent: Intent {
                disabled: false,
                rotation_request: Some("r1"),
            },
            now: "2026-01-02T00:00:00Z",
            step: Step::Issue(IssueReason::RequestedAfterExpiry),
            expires_at: Some("2026-01-02T01:00:00Z"),
            next_rotation_at: None,
            validity: Validity::Valid,
            next_due: Some("2026-01-02T00:40:00Z"),
            consumes_request: true,
        },
        Case {
            name: "rotation every with absolute expiry passed: expires instead of rotating",
            policy: Policy {
                expiry: Some(Expiry::At(t("2026-01-01T12:00:00Z"))),
                every: Some(h(6)),
                ..Default::default()
            },
            observed: issued(T0),
            intent: none,
            now: "2026-01-01T13:00:00Z",
            step: Step::Expire,
            expires_at: Some("2026-01-01T12:00:00Z"),
            next_rotation_at: None,
            validity: Validity::Expired,
            next_due: None,
            consumes_request: false,
        },
    ]
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
    };
    let own = spec(None, rotation(None, None, Some("2h")));
    let policy = Policy::resolve(&own, Some(&defaults)).expect("valid");
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
    let policy = Policy::resolve(&own_expiry, Some(&defaults)).expect("valid");
    assert_eq!(policy.expiry, Some(Expiry::At(t(T0))));
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
    ];
    for (name, spec, want) in cases {
        assert_eq!(Policy::resolve(&spec, None), Err(want), "{name}");
    }
    let bad =
        Policy::resolve(&spec(lifetime("ninety days"), None), None).expect_err("bad duration");
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
