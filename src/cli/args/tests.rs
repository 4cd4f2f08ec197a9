//! The command line as parsed: flags, their defaults and their checks.

use super::*;

/// `--min-rotation-period` takes the CRD's durations and never goes
/// under the CRD's floor of one minute.
#[test]
fn min_rotation_period_is_a_duration_of_at_least_a_minute() {
    let cases: [(&str, Option<jiff::SignedDuration>); 5] = [
        ("1m", Some(jiff::SignedDuration::from_mins(1))),
        ("2h", Some(jiff::SignedDuration::from_hours(2))),
        ("59s", None),
        ("0s", None),
        ("an hour", None),
    ];
    for (raw, want) in cases {
        assert_eq!(parse_min_rotation_period(raw).ok(), want, "{raw}");
    }
}

fn run_args(args: &[&str]) -> Result<RunArgs, clap::Error> {
    let argv = ["apikey-operator", "run"].iter().chain(args);
    match Cli::try_parse_from(argv)?.command {
        Command::Run(run) => Ok(*run),
        _ => unreachable!("parsed `run`"),
    }
}

/// `--components` takes a comma-separated subset; everything by default.
#[test]
fn components_name_the_parts_to_run() {
    let parts = |args: &[&str]| run_args(args).map(|a| components(&a.components));
    let all = super::super::run::Components::ALL;
    assert_eq!(parts(&[]).expect("default"), all);
    let verifier = parts(&["--components", "verifier"]).expect("verifier");
    assert!(verifier.verifier && !verifier.controller && !verifier.webhook);
    let both = parts(&["--components=controller,webhook"]).expect("two");
    assert!(both.controller && both.webhook && !both.verifier);
    let err = parts(&["--components", "controler"]).expect_err("a typo");
    assert!(err.to_string().contains("possible values"), "{err}");
    assert!(parts(&["--components="]).is_err(), "none");
}

/// `create-token`'s duration flags take the operator's grammar and keep
/// the text as written; a lifetime or period of zero is refused, a grace
/// period of zero is the default.
#[test]
fn create_token_durations_are_checked_as_the_operator_checks_them() {
    let cases: [(&str, Option<&str>, Option<&str>); 6] = [
        ("90d", Some("90d"), Some("90d")),
        ("1h30m", Some("1h30m"), Some("1h30m")),
        ("0s", None, Some("0s")),
        ("9x", None, None),
        ("1.5h", None, None),
        ("36501d", None, None),
    ];
    for (raw, positive, any) in cases {
        assert_eq!(
            parse_positive_duration(raw).ok().as_deref(),
            positive,
            "{raw}"
        );
        assert_eq!(parse_duration(raw).ok().as_deref(), any, "{raw}");
    }
}
