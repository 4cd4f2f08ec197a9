use super::*;
use crate::api::PreviousValue;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn at(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

const NOW: &str = "2026-01-01T00:00:00Z";

fn ready(status: &str, reason: &str) -> Condition {
    Condition {
        type_: READY.into(),
        status: status.into(),
        reason: reason.into(),
        message: "m".into(),
        last_transition_time: Time(at("2025-12-31T23:00:00Z")),
        observed_generation: None,
    }
}

fn token(name: &str, status: Option<ApiTokenStatus>) -> ApiToken {
    let mut t = token_object(&NewToken {
        name: name.into(),
        key: "ci-bot".into(),
        ..Default::default()
    });
    t.metadata.namespace = Some("payments".into());
    t.status = status;
    t
}

/// One unit, the largest under its limit, rounded to the nearest (half up).
#[test]
fn durations_read_in_one_unit_rounded_to_the_nearest() {
    const M: i64 = 60;
    const H: i64 = 3600;
    const D: i64 = 86_400;
    let cases = [
        (0, "0s"),
        (5, "5s"),
        (119, "119s"),
        (120, "2m"),
        (149, "2m"),
        (150, "3m"),
        (12 * M, "12m"),
        (119 * M + 29, "119m"),
        (119 * M + 30, "2h"),
        (47 * H + 29 * M, "47h"),
        (47 * H + 30 * M, "2d"),
        (29 * D + 11 * H, "29d"),
        (29 * D + 12 * H, "30d"),
        // A 90-day value ten seconds after its issue.
        (90 * D - 10, "90d"),
        (729 * D + 11 * H, "729d"),
        (729 * D + 12 * H, "2y"),
        // An expiry in 2099 seen from 2029.
        (25_549 * D, "70y"),
        (36_500 * D, "100y"),
    ];
    for (secs, text) in cases {
        assert_eq!(
            human_duration(SignedDuration::from_secs(secs)),
            text,
            "{secs}s"
        );
        assert_eq!(human_duration(SignedDuration::from_secs(-secs)), text);
    }
}

#[test]
fn expiry_in_human_units() {
    let now = at(NOW);
    let with = |expires: Option<&str>, hash: bool| ApiTokenStatus {
        expires_at: expires.map(|e| Time(at(e))),
        hash: hash.then(|| "sha256:00".into()),
        ..Default::default()
    };
    assert_eq!(expiry_text(None, now), "-");
    assert_eq!(expiry_text(Some(&with(None, false)), now), "-");
    assert_eq!(expiry_text(Some(&with(None, true)), now), "never");
    assert_eq!(
        expiry_text(Some(&with(Some("2026-01-30T11:00:00Z"), true)), now),
        "in 29d"
    );
    assert_eq!(
        expiry_text(Some(&with(Some("2025-12-30T00:00:00Z"), true)), now),
        "expired 2d ago"
    );
}

#[test]
fn grace_counts_previous_values_still_accepted() {
    let now = at(NOW);
    let prev = |until: &str| PreviousValue {
        hash: "sha256:00".into(),
        valid_until: Time(at(until)),
    };
    let mut status = ApiTokenStatus::default();
    assert_eq!(grace_text(Some(&status), now), "-");
    status.previous = vec![prev("2026-01-01T00:12:00Z"), prev("2025-12-31T00:00:00Z")];
    assert_eq!(
        grace_text(Some(&status), now),
        "1 previous value valid for 12m"
    );
    status.previous.push(prev("2026-01-01T01:00:00Z"));
    assert_eq!(
        grace_text(Some(&status), now),
        "2 previous values valid for 60m"
    );
}

#[test]
fn list_shows_key_ready_expiry_and_grace() {
    let now = at(NOW);
    let issued = ApiTokenStatus {
        conditions: vec![ready("True", "Issued")],
        hash: Some("sha256:00".into()),
        expires_at: Some(Time(at("2026-01-30T00:00:00Z"))),
        previous: vec![PreviousValue {
            hash: "sha256:11".into(),
            valid_until: Time(at("2026-01-01T00:12:00Z")),
        }],
        ..Default::default()
    };
    let disabled = ApiTokenStatus {
        conditions: vec![ready("False", "Disabled")],
        ..Default::default()
    };
    let table = list_table(
        &[
            token("deploy", Some(issued)),
            token("audit", Some(disabled)),
            token("new", None),
        ],
        now,
        false,
    );
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("NAME"));
    assert!(lines[1].starts_with("audit") && lines[1].contains("False (Disabled)"));
    assert!(lines[2].starts_with("deploy"), "{table}");
    assert!(lines[2].contains("ci-bot") && lines[2].contains("True"));
    assert!(lines[2].contains("in 29d"));
    assert!(lines[2].ends_with("1 previous value valid for 12m"));
    assert!(lines[3].starts_with("new") && lines[3].contains("Unknown"));
}

#[test]
fn status_names_the_secret_and_lists_conditions() {
    let now = at(NOW);
    let status = ApiTokenStatus {
        conditions: vec![ready("True", "Issued")],
        token_id: Some("abcdefghijklmnop".into()),
        secret_name: Some("deploy".into()),
        hash: Some("sha256:00".into()),
        issued_at: Some(Time(at("2025-12-29T00:00:00Z"))),
        rotations: Some(2),
        ..Default::default()
    };
    let text = status_text(&token("deploy", Some(status)), now);
    assert!(text.starts_with("ApiToken payments/deploy\n"), "{text}");
    assert!(
        text.contains("Secret:         deploy (key token)"),
        "{text}"
    );
    assert!(
        text.contains("Issued:         2025-12-29T00:00:00Z (3d ago)"),
        "{text}"
    );
    assert!(text.contains("Rotations:      2"));
    assert!(text.contains("Conditions:\n  TYPE"));
    assert!(!text.contains("sha256"), "no hashes in the human view");
}

#[test]
fn created_tokens_carry_expiry_and_rotation() {
    let t = token_object(&NewToken {
        name: "deploy".into(),
        key: "ci-bot".into(),
        lifetime: Some("90d".into()),
        rotate_every: Some("30d".into()),
        grace_period: Some("1h".into()),
        ..Default::default()
    });
    let value = serde_json::to_value(&t).expect("json");
    assert_eq!(value["spec"]["apiKeyRef"]["name"], "ci-bot");
    assert_eq!(value["spec"]["expiration"]["lifetime"], "90d");
    assert_eq!(value["spec"]["rotation"]["every"], "30d");
    assert_eq!(value["spec"]["rotation"]["gracePeriod"], "1h");
    assert!(value.get("status").is_none_or(|s| s.is_null()));
}

#[test]
fn revealed_values_are_redacted_in_formatting() {
    let v = RevealedValue("akpat_secret".into());
    assert_eq!(format!("{v}"), "<redacted>");
    assert!(!format!("{v:?}").contains("secret"));
    assert_eq!(v.expose_secret(), "akpat_secret");
}

#[test]
fn tokens_the_operator_would_give_no_value_are_refused_before_creation() {
    let now = at(NOW);
    let new = |edit: fn(&mut NewToken)| {
        let mut n = NewToken {
            name: "deploy".into(),
            key: "ci-bot".into(),
            ..Default::default()
        };
        edit(&mut n);
        token_object(&n)
    };
    let past_default = TokenDefaults {
        expiration: Some(Expiration {
            expires_at: Some(Time(at("2025-06-01T00:00:00Z"))),
            lifetime: None,
        }),
        rotation: None,
        audiences: Vec::new(),
    };
    let cases = [
        ("no expiry", new(|_| {}), None, Ok(())),
        (
            "lifetime and rotation",
            new(|n| {
                n.lifetime = Some("90d".into());
                n.rotate_every = Some("30d".into());
                n.grace_period = Some("1h".into());
            }),
            None,
            Ok(()),
        ),
        (
            "zero lifetime",
            new(|n| n.lifetime = Some("0s".into())),
            None,
            Err(
                "the operator would give this ApiToken no value, so nothing was created: \
                 spec.expiration.lifetime must be longer than 0s",
            ),
        ),
        (
            "renewBefore not shorter than lifetime",
            new(|n| {
                n.lifetime = Some("1h".into());
                n.renew_before = Some("2h".into());
            }),
            None,
            Err("spec.rotation.renewBefore (2h) must be shorter than spec.expiration.lifetime"),
        ),
        (
            "expiresAt in the past",
            new(|n| n.expires_at = Some(at("2025-12-31T00:00:00Z"))),
            None,
            Err("--expires-at (2025-12-31T00:00:00Z) is in the past"),
        ),
        (
            "the key's expiresAt in the past",
            new(|_| {}),
            Some(&past_default),
            Err(
                "the key's tokenDefaults.expiration.expiresAt (2025-06-01T00:00:00Z) is in the past",
            ),
        ),
        (
            "a lifetime of its own over the key's past expiresAt",
            new(|n| n.lifetime = Some("90d".into())),
            Some(&past_default),
            Ok(()),
        ),
    ];
    for (what, token, defaults, want) in cases {
        let got = check_new_token(&token, defaults, now).map_err(|e| e.to_string());
        match (got, want) {
            (Ok(()), Ok(())) => {}
            (Err(got), Err(want)) => assert!(got.contains(want), "{what}: {got}"),
            (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn a_token_not_ready_in_time_says_what_its_conditions_say() {
    let mut t = token("deploy", None);
    assert_eq!(
        conditions_text(&t),
        "it has no conditions yet: is the operator running?"
    );
    let mut blocked = ready("False", "ApiKeyNotReady");
    blocked.message = "ApiKey ci-bot is not Ready".into();
    let mut expired = ready("False", "Valid");
    expired.type_ = "Expired".into();
    expired.message = String::new();
    t.status = Some(ApiTokenStatus {
        conditions: vec![blocked, expired],
        ..Default::default()
    });
    assert_eq!(
        conditions_text(&t),
        "its conditions say Ready=False (ApiKeyNotReady: ApiKey ci-bot is not Ready); \
         Expired=False (Valid)"
    );
}
