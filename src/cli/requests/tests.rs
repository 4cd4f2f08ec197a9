use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

const NOW: &str = "2026-01-01T00:00:00Z";

fn at(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

/// A token of generation 2 whose Ready condition, if any, has `reason`
/// and was written for `observed` generation.
fn token(disabled: bool, expires_at: Option<&str>, ready: Option<(&str, &str, i64)>) -> ApiToken {
    let mut t = crate::cli::tokens::token_object(&crate::cli::tokens::NewToken {
        name: "deploy".into(),
        key: "ci-bot".into(),
        expires_at: expires_at.map(at),
        ..Default::default()
    });
    t.spec.disabled = disabled;
    t.metadata.namespace = Some("payments".into());
    t.metadata.generation = Some(2);
    t.status = ready.map(|(status, why, observed)| ApiTokenStatus {
        conditions: vec![Condition {
            type_: READY.into(),
            status: status.into(),
            reason: why.into(),
            message: format!("because {why}"),
            last_transition_time: Time(at(NOW)),
            observed_generation: Some(observed),
        }],
        ..Default::default()
    });
    t
}

#[test]
fn what_keeps_a_token_from_rotating() {
    let now = at(NOW);
    let cases: [(&str, ApiToken, Option<&str>); 10] = [
        ("no status yet", token(false, None, None), None),
        (
            "issued",
            token(false, None, Some(("True", "Issued", 2))),
            None,
        ),
        (
            "disabled, not yet seen by the operator",
            token(true, None, Some(("True", "Issued", 1))),
            Some(reason::DISABLED),
        ),
        (
            "disabled",
            token(true, None, Some(("False", "Disabled", 2))),
            Some(reason::DISABLED),
        ),
        (
            "invalid spec",
            token(false, None, Some(("False", "InvalidSpec", 2))),
            Some(reason::INVALID_SPEC),
        ),
        (
            "invalid spec, since edited",
            token(false, None, Some(("False", "InvalidSpec", 1))),
            None,
        ),
        (
            "key missing",
            token(false, None, Some(("False", "ApiKeyNotFound", 2))),
            Some(reason::KEY_NOT_FOUND),
        ),
        (
            "expiresAt passed",
            token(
                false,
                Some("2025-12-31T00:00:00Z"),
                Some(("False", "Expired", 2)),
            ),
            Some(reason::EXPIRED),
        ),
        (
            "expiresAt ahead",
            token(
                false,
                Some("2026-12-31T00:00:00Z"),
                Some(("True", "Issued", 2)),
            ),
            None,
        ),
        (
            // A request renews a value whose lifetime ran out.
            "lifetime ran out",
            token(false, None, Some(("False", "Expired", 2))),
            None,
        ),
    ];
    for (what, token, want) in cases {
        let got = rotation_blocked(&token, now);
        assert_eq!(got.as_ref().map(|b| b.reason.as_str()), want, "{what}");
    }
    let disabled = rotation_blocked(&token(true, None, Some(("False", "Disabled", 2))), now);
    assert_eq!(
        disabled.map(|b| b.message),
        Some("because Disabled".to_owned()),
        "the condition's own words"
    );
}

#[test]
fn a_rotation_is_done_when_the_request_is_recorded_with_a_value() {
    let now = at(NOW);
    let with = |request: Option<&str>, hash: bool, pending: bool| {
        let mut t = token(false, None, Some(("True", "Issued", 2)));
        let status = t.status.as_mut().expect("status");
        status.last_rotation_request = request.map(|r| Box::new(r.to_owned()));
        status.hash = hash.then(|| "sha256:00".into());
        status.secret_name = Some("deploy-token".into());
        status.pending = pending.then(|| crate::api::PendingValue {
            hash: "sha256:11".into(),
            reason: "Request".into(),
            started_at: Time(now),
            rotation_request: Some("r1".into()),
        });
        t
    };
    assert!(rotated(&with(None, true, false), "r1", now).is_none());
    assert!(rotated(&with(Some("r0"), true, false), "r1", now).is_none());
    assert!(rotated(&with(Some("r1"), true, true), "r1", now).is_none());
    let mut done = with(Some("r1"), true, false);
    assert_eq!(
        rotated(&done, "r1", now).and_then(Result::ok),
        Some(Rotated {
            secret: "deploy-token".to_owned(),
            earlier_valid_until: None,
        })
    );
    // With a grace period: until when the earlier value still works.
    let until = at("2026-06-01T13:00:00Z");
    let status = done.status.as_mut().expect("status");
    status.previous = vec![crate::api::PreviousValue {
        hash: "sha256:22".into(),
        valid_until: Time(until),
    }];
    assert_eq!(
        rotated(&done, "r1", now)
            .and_then(Result::ok)
            .and_then(|r| r.earlier_valid_until),
        Some(until)
    );
    assert!(matches!(
        rotated(&with(Some("r1"), false, false), "r1", now),
        Some(Err(CliError::NotRotated { .. }))
    ));
    let blocked = token(false, None, Some(("False", "ApiKeyNotFound", 2)));
    let err = rotated(&blocked, "r1", now).and_then(Result::err);
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("ApiToken payments/deploy is not rotated: ApiKeyNotFound: because ApiKeyNotFound")
    );
}
