//! Human durations (`90d`, `720h`, `1h30m`) for the CRD fields `lifetime`,
//! `every`, `renewBefore` and `gracePeriod`: the schema pattern, a strict
//! parser with actionable errors, and the canonical formatter used in status.

use jiff::SignedDuration;

/// The shape of a duration field (valid in RE2 and ECMAScript): whole numbers
/// with the units w, d, h, m and s, largest first. A macro so that the CRD's
/// CEL rule can embed it in a literal (`concat!`).
macro_rules! duration_pattern {
    () => {
        concat!(
            "^(?:",
            "[0-9]+w(?:[0-9]+d)?(?:[0-9]+h)?(?:[0-9]+m)?(?:[0-9]+s)?",
            "|[0-9]+d(?:[0-9]+h)?(?:[0-9]+m)?(?:[0-9]+s)?",
            "|[0-9]+h(?:[0-9]+m)?(?:[0-9]+s)?",
            "|[0-9]+m(?:[0-9]+s)?",
            "|[0-9]+s",
            ")$",
        )
    };
}

// The pattern is pasted into a single-quoted CEL string literal by DURATION_RULE: a quote or
// a backslash in it would change what the rule means, so neither may appear.
const _: () = {
    let bytes = DURATION_PATTERN.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        assert!(
            bytes[i] != b'\'' && bytes[i] != b'\\',
            "no quote or backslash"
        );
        i += 1;
    }
};

/// The shape every duration field must have. Enforces largest-unit-first at
/// admission; the parser gives the message for everything the shape cannot
/// express, such as the maximum.
pub const DURATION_PATTERN: &str = duration_pattern!();

/// CEL on every duration field: the shape above, checked by a rule rather than
/// an OpenAPI `pattern` so that a mistyped value (`90days`) is answered with
/// [`DURATION_MESSAGE`] instead of the whole regular expression.
pub const DURATION_RULE: &str = concat!("self.matches('", duration_pattern!(), "')");

/// What the API server answers for a value that is not a duration.
pub const DURATION_MESSAGE: &str = "use a duration such as 90d, 720h or 1h30m: whole numbers with the units w, d, h, m or s, largest first";

/// Longest duration accepted: 100 years of 365 days. Far beyond any sensible
/// token lifetime, and small enough that timestamp arithmetic cannot overflow.
pub const MAX_DURATION: SignedDuration = SignedDuration::from_secs(MAX_SECS as i64);

const MAX_DAYS: u64 = 36_500;
const MAX_SECS: u64 = MAX_DAYS * DAY;
/// No valid duration up to the maximum needs more; longer input is rejected
/// before it is parsed or quoted in an error message.
const MAX_INPUT_LEN: usize = 64;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
const WEEK: u64 = 7 * DAY;

/// Units from largest to smallest, the order they must appear in.
const UNITS: [(char, u64); 5] = [
    ('w', WEEK),
    ('d', DAY),
    ('h', HOUR),
    ('m', MINUTE),
    ('s', 1),
];

/// Why a string is not a duration. Messages quote the input (durations are
/// not secret) and show a valid form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("duration is empty; write a whole number and a unit, e.g. \"90d\" or \"1h30m\"")]
    Empty,
    #[error(
        "duration is {len} characters long, at most {MAX_INPUT_LEN} are allowed; \
         write it compactly, e.g. \"90d\" or \"1h30m\""
    )]
    TooLong { len: usize },
    #[error(
        "duration {input:?}: {character:?} is not allowed; use whole numbers and the units \
         s, m, h, d, w without signs, fractions or spaces, e.g. \"1h30m\" rather than \"1.5h\""
    )]
    InvalidCharacter { input: String, character: char },
    #[error("duration {input:?}: unit {unit:?} has no number before it; write e.g. \"1{unit}\"")]
    MissingNumber { input: String, unit: String },
    #[error(
        "duration {input:?}: the number {number} has no unit after it; add one of s, m, h, d, w, \
         e.g. \"{number}s\" or \"{number}d\""
    )]
    MissingUnit { input: String, number: String },
    #[error(
        "duration {input:?}: unknown unit {unit:?}; use s, m, h, d (24h) or w (7d), e.g. \"90d\" \
         (months and years vary in length and are not supported)"
    )]
    UnknownUnit { input: String, unit: String },
    #[error(
        "duration {input:?}: unit '{unit}' comes after the smaller unit '{after}'; \
         write units from largest to smallest, e.g. \"1h30m\" rather than \"30m1h\""
    )]
    OutOfOrder {
        input: String,
        unit: char,
        after: char,
    },
    #[error(
        "duration {input:?}: unit '{unit}' appears more than once; add the amounts up, \
         e.g. \"1h30m\" rather than \"1h15m15m\""
    )]
    DuplicateUnit { input: String, unit: char },
    #[error(
        "duration {input:?} is longer than the maximum of 100 years; use at most \"{MAX_DAYS}d\""
    )]
    TooLarge { input: String },
}

/// Parses one or more `<integer><unit>` groups, largest unit first, each
/// unit at most once: `45s`, `90d`, `1h30m`, `2w`. `d` is 24 hours, `w` is
/// 7 days. The result is never negative and at most [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<SignedDuration, DurationError> {
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.len() > MAX_INPUT_LEN {
        return Err(DurationError::TooLong { len: s.len() });
    }
    let input = || s.to_owned();

    let mut total: u64 = 0;
    // Rank (index into UNITS) of the last unit seen.
    let mut last: Option<usize> = None;
    let mut rest = s;
    while !rest.is_empty() {
        let (number, after_number) = split_while(rest, |c| c.is_ascii_digit());
        let (unit, after_unit) = split_while(after_number, |c| c.is_ascii_alphabetic());
        match (number.is_empty(), unit.is_empty()) {
            (true, false) => {
                return Err(DurationError::MissingNumber {
                    input: input(),
                    unit: unit.to_owned(),
                });
            }
            (_, true) => {
                return Err(match after_number.chars().next() {
                    Some(character) => DurationError::InvalidCharacter {
                        input: input(),
                        character,
                    },
                    None => DurationError::MissingUnit {
                        input: input(),
                        number: number.to_owned(),
                    },
                });
            }
            (false, false) => {}
        }

        let Some(rank) = UNITS
            .iter()
            .position(|&(symbol, _)| unit.len() == 1 && unit.starts_with(symbol))
        else {
            return Err(DurationError::UnknownUnit {
                input: input(),
                unit: unit.to_owned(),
            });
        };
        let symbol = UNITS[rank].0;
        match last {
            Some(prev) if prev == rank => {
                return Err(DurationError::DuplicateUnit {
                    input: input(),
                    unit: symbol,
                });
            }
            Some(prev) if prev > rank => {
                return Err(DurationError::OutOfOrder {
                    input: input(),
                    unit: symbol,
                    after: UNITS[prev].0,
                });
            }
            _ => last = Some(rank),
        }

        // `number` is non-empty ASCII digits, so parsing fails only on overflow.
        total = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(UNITS[rank].1))
            .and_then(|secs| total.checked_add(secs))
            .filter(|&total| total <= MAX_SECS)
            .ok_or_else(|| DurationError::TooLarge { input: input() })?;
        rest = after_unit;
    }
    // Cannot fail: `total <= MAX_SECS`, which fits in an i64.
    let secs = i64::try_from(total).map_err(|_| DurationError::TooLarge { input: input() })?;
    Ok(SignedDuration::from_secs(secs))
}

/// Canonical compact form: units `d`, `h`, `m`, `s`, largest first, zero
/// groups left out (`1h30m`, `90d`, `0s`). Weeks are not used, so `14d`
/// stays `14d`. Sub-second parts are truncated. A negative duration keeps a
/// leading `-`, which `parse_duration` rejects, so a bug stays visible.
pub fn format_duration(d: SignedDuration) -> String {
    let mut secs = d.unsigned_abs().as_secs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    if d.is_negative() {
        out.push('-');
    }
    for (symbol, unit_secs) in UNITS.into_iter().skip(1) {
        let count = secs / unit_secs;
        if count > 0 {
            out.push_str(&count.to_string());
            out.push(symbol);
            secs %= unit_secs;
        }
    }
    out
}

/// Splits `s` after its longest prefix whose characters satisfy `pred`.
fn split_while(s: &str, pred: impl Fn(char) -> bool) -> (&str, &str) {
    let end = s.find(|c: char| !pred(c)).unwrap_or(s.len());
    s.split_at(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use regex::Regex;

    fn secs(n: i64) -> SignedDuration {
        SignedDuration::from_secs(n)
    }

    fn pattern() -> Regex {
        Regex::new(DURATION_PATTERN).expect("DURATION_PATTERN compiles")
    }

    #[test]
    fn parses_valid_durations() {
        let cases = [
            ("0s", 0),
            ("45s", 45),
            ("1m", 60),
            ("90m", 5_400),
            ("1h30m", 5_400),
            ("720h", 2_592_000),
            ("30d", 2_592_000),
            ("90d", 7_776_000),
            ("2w", 1_209_600),
            ("1w2d3h4m5s", 788_645),
            ("1d12h", 129_600),
            ("1h0m", 3_600),
            ("007d", 604_800),
            ("36500d", 3_153_600_000),
            ("5214w2d", 3_153_600_000),
            ("3153600000s", 3_153_600_000),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_duration(input), Ok(secs(expected)), "{input}");
            assert!(pattern().is_match(input), "pattern rejects {input}");
        }
    }

    #[test]
    fn rejects_invalid_durations() {
        use DurationError::*;
        let s = String::from;
        let cases = [
            ("", Empty),
            (&*"1".repeat(65), TooLong { len: 65 }),
            (
                "-5m",
                InvalidCharacter {
                    input: s("-5m"),
                    character: '-',
                },
            ),
            (
                "+5m",
                InvalidCharacter {
                    input: s("+5m"),
                    character: '+',
                },
            ),
            (
                "1.5h",
                InvalidCharacter {
                    input: s("1.5h"),
                    character: '.',
                },
            ),
            (
                "1h 30m",
                InvalidCharacter {
                    input: s("1h 30m"),
                    character: ' ',
                },
            ),
            (
                " 1h",
                InvalidCharacter {
                    input: s(" 1h"),
                    character: ' ',
                },
            ),
            (
                "1h\n",
                InvalidCharacter {
                    input: s("1h\n"),
                    character: '\n',
                },
            ),
            (
                "5ч",
                InvalidCharacter {
                    input: s("5ч"),
                    character: 'ч',
                },
            ),
            (
                "h",
                MissingNumber {
                    input: s("h"),
                    unit: s("h"),
                },
            ),
            (
                "d30m",
                MissingNumber {
                    input: s("d30m"),
                    unit: s("d"),
                },
            ),
            (
                "90",
                MissingUnit {
                    input: s("90"),
                    number: s("90"),
                },
            ),
            (
                "1h30",
                MissingUnit {
                    input: s("1h30"),
                    number: s("30"),
                },
            ),
            (
                "1y",
                UnknownUnit {
                    input: s("1y"),
                    unit: s("y"),
                },
            ),
            (
                "3mo",
                UnknownUnit {
                    input: s("3mo"),
                    unit: s("mo"),
                },
            ),
            (
                "500ms",
                UnknownUnit {
                    input: s("500ms"),
                    unit: s("ms"),
                },
            ),
            (
                "1H",
                UnknownUnit {
                    input: s("1H"),
                    unit: s("H"),
                },
            ),
            (
                "2days",
                UnknownUnit {
                    input: s("2days"),
                    unit: s("days"),
                },
            ),
            (
                "30m1h",
                OutOfOrder {
                    input: s("30m1h"),
                    unit: 'h',
                    after: 'm',
                },
            ),
            (
                "1s1w",
                OutOfOrder {
                    input: s("1s1w"),
                    unit: 'w',
                    after: 's',
                },
            ),
            (
                "1h1h",
                DuplicateUnit {
                    input: s("1h1h"),
                    unit: 'h',
                },
            ),
            (
                "1h30m15m",
                DuplicateUnit {
                    input: s("1h30m15m"),
                    unit: 'm',
                },
            ),
            ("36501d", TooLarge { input: s("36501d") }),
            (
                "36500d1s",
                TooLarge {
                    input: s("36500d1s"),
                },
            ),
            (
                "3153600001s",
                TooLarge {
                    input: s("3153600001s"),
                },
            ),
            (
                "99999999999999999999s",
                TooLarge {
                    input: s("99999999999999999999s"),
                },
            ),
            (
                "18446744073709551615w",
                TooLarge {
                    input: s("18446744073709551615w"),
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_duration(input), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn messages_quote_the_input_and_show_a_valid_form() {
        for input in ["30m1h", "1h1h", "1.5h", "h", "90", "1y", "36501d"] {
            let message = parse_duration(input).expect_err(input).to_string();
            assert!(message.contains(&format!("{input:?}")), "{message}");
            assert!(
                message.contains("e.g.") || message.contains("at most"),
                "{message}"
            );
        }
        let message = parse_duration("30m1h")
            .expect_err("out of order")
            .to_string();
        assert!(message.contains("largest to smallest"), "{message}");
    }

    #[test]
    fn formats_canonically() {
        let cases = [
            (0, "0s"),
            (45, "45s"),
            (60, "1m"),
            (5_400, "1h30m"),
            (3_601, "1h1s"),
            (86_400, "1d"),
            (1_209_600, "14d"),
            (7_776_000, "90d"),
            (788_645, "9d3h4m5s"),
            (-5_400, "-1h30m"),
        ];
        for (n, expected) in cases {
            assert_eq!(format_duration(secs(n)), expected, "{n}");
        }
        assert_eq!(
            format_duration(SignedDuration::new(90, 999_999_999)),
            "1m30s"
        );
        assert_eq!(format_duration(SignedDuration::new(0, -500_000_000)), "0s");
        assert_eq!(format_duration(MAX_DURATION), "36500d");
    }

    #[test]
    fn format_output_is_canonical_parse_input() {
        for input in ["1w", "2w3d", "720h", "90m", "1h0m", "0h30m", "007d"] {
            let d = parse_duration(input).expect(input);
            let canonical = format_duration(d);
            assert_eq!(parse_duration(&canonical), Ok(d), "{input} -> {canonical}");
        }
        assert_eq!(
            format_duration(parse_duration("720h").expect("valid")),
            "30d"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn format_then_parse_round_trips(n in 0..=MAX_SECS as i64) {
            let d = secs(n);
            let text = format_duration(d);
            prop_assert!(pattern().is_match(&text), "{}", text);
            prop_assert_eq!(parse_duration(&text), Ok(d));
        }

        #[test]
        fn ordered_groups_parse_to_their_sum(
            amounts in proptest::collection::vec(proptest::option::of(0u64..1_000), 5),
        ) {
            let mut text = String::new();
            let mut total = 0;
            for (amount, (symbol, unit_secs)) in amounts.iter().zip(UNITS) {
                if let Some(n) = amount {
                    text.push_str(&format!("{n}{symbol}"));
                    total += n * unit_secs;
                }
            }
            prop_assume!(!text.is_empty());
            prop_assert_eq!(parse_duration(&text), Ok(secs(total as i64)));
        }

        /// The schema pattern accepts exactly what the parser accepts, apart
        /// from the maximum, which a pattern cannot express.
        #[test]
        fn pattern_agrees_with_the_parser(
            text in prop_oneof!["[0-9wdhmsx. -]{0,8}", "([0-9]{1,2}[wdhms]){1,4}"],
        ) {
            let parsed = parse_duration(&text);
            let within_pattern = !matches!(parsed, Err(DurationError::TooLarge { .. }));
            if within_pattern {
                prop_assert_eq!(pattern().is_match(&text), parsed.is_ok(), "{:?}", text);
            }
        }
    }
}
