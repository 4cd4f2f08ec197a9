//! Properties of the whole format: round trips, single-character damage,
//! uniqueness, and redaction.

use std::collections::HashSet;

use proptest::prelude::*;
use regex::Regex;

use super::value::assemble;
use super::*;

/// Every character a token may contain.
const TOKEN_ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_";

fn kind() -> impl Strategy<Value = TokenKind> {
    prop_oneof![Just(TokenKind::Personal), Just(TokenKind::ServiceAccount)]
}

fn token_id() -> impl Strategy<Value = String> {
    "[a-z0-9]{16}"
}

fn secret() -> impl Strategy<Value = String> {
    "[0-9A-Za-z]{43}"
}

fn token_regex() -> Regex {
    Regex::new(TOKEN_REGEX).expect("TOKEN_REGEX compiles")
}

/// The secret and checksum, the part no rendering may show.
fn secret_part(value: &str) -> &str {
    &value[PREFIX_LEN + 1 + TOKEN_ID_LEN + 1..]
}

/// True if `text` shows any 8 consecutive characters of `secret`. Eight is
/// long enough that a chance match with the token id is negligible.
fn leaks(text: &str, secret: &str) -> bool {
    secret
        .as_bytes()
        .windows(8)
        .filter_map(|w| std::str::from_utf8(w).ok())
        .any(|w| text.contains(w))
}

fn substitute(s: &str, position: usize, replacement: u8) -> String {
    let mut bytes = s.as_bytes().to_vec();
    bytes[position] = replacement;
    String::from_utf8(bytes).expect("ASCII stays UTF-8")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generate_then_parse_round_trips(kind in kind(), id in token_id()) {
        let id = TokenId::parse(&id).expect("strategy yields valid ids");
        let value = generate(kind, &id);
        let parsed = parse(value.expose_secret()).expect("generated values parse");
        prop_assert_eq!(parsed.kind(), kind);
        prop_assert_eq!(parsed.token_id(), id.as_str());
        prop_assert_eq!(parsed.hash(), value.hash());
        prop_assert!(verify(value.expose_secret(), &value.hash()));
    }

    #[test]
    fn any_single_substitution_is_rejected(
        kind in kind(),
        id in token_id(),
        secret in secret(),
        position in 0..TOKEN_LEN,
        shift in 1..TOKEN_ALPHABET.len(),
    ) {
        let value = assemble(kind, &id, &secret);
        let original = TOKEN_ALPHABET
            .iter()
            .position(|&c| c == value.as_bytes()[position])
            .expect("tokens use the alphabet");
        let replacement = TOKEN_ALPHABET[(original + shift) % TOKEN_ALPHABET.len()];
        let damaged = substitute(&value, position, replacement);
        prop_assert!(parse(&damaged).is_err());
    }

    #[test]
    fn renderings_never_show_the_secret(kind in kind(), id in token_id()) {
        let id = TokenId::parse(&id).expect("strategy yields valid ids");
        let value = generate(kind, &id);
        let secret = secret_part(value.expose_secret());
        let parsed = parse(value.expose_secret()).expect("generated values parse");
        for text in [
            format!("{value}"),
            format!("{value:?}"),
            format!("{value:#?}"),
            format!("{parsed:?}"),
            format!("{parsed:#?}"),
        ] {
            prop_assert!(!leaks(&text, secret), "{}", text);
            prop_assert!(text.ends_with("_***") || text.ends_with("_***)"), "{}", text);
        }
    }

    #[test]
    fn errors_never_show_the_input(
        kind in kind(),
        id in token_id(),
        secret in secret(),
        cut in 0..TOKEN_LEN,
        extra in "[ -~]{0,4}",
    ) {
        // Damaged values: truncated and with junk appended or prepended.
        let value = assemble(kind, &id, &secret);
        for input in [
            format!("{}{extra}", &value[..cut]),
            format!("{extra}{}", &value[cut..]),
        ] {
            if let Err(err) = parse(&input) {
                let message = err.to_string();
                prop_assert!(!leaks(&message, secret_part(&value)), "{}", message);
                prop_assert!(!message.contains(&id), "{}", message);
            }
        }
    }
}

#[test]
fn every_single_substitution_of_some_values_is_rejected() {
    // Exhaustive over positions and replacements, complementing the sampled
    // property above.
    for kind in [TokenKind::Personal, TokenKind::ServiceAccount] {
        for _ in 0..4 {
            let value = generate(kind, &TokenId::generate());
            let s = value.expose_secret();
            for position in 0..s.len() {
                for &replacement in TOKEN_ALPHABET {
                    if replacement != s.as_bytes()[position] {
                        let damaged = substitute(s, position, replacement);
                        assert!(parse(&damaged).is_err(), "position {position}");
                    }
                }
            }
        }
    }
}

#[test]
fn hundred_thousand_values_are_distinct_match_the_regex_and_look_uniform() {
    const N: usize = 100_000;
    let regex = token_regex();
    let id = TokenId::generate();
    let mut seen = HashSet::with_capacity(N);
    let mut counts = [0usize; 62];
    for i in 0..N {
        let kind = if i % 2 == 0 {
            TokenKind::Personal
        } else {
            TokenKind::ServiceAccount
        };
        let value = generate(kind, &id);
        let s = value.expose_secret();
        assert!(
            regex.is_match(s),
            "generated value does not match TOKEN_REGEX"
        );
        let secret = &secret_part(s)[..SECRET_LEN];
        for b in secret.bytes() {
            counts[BASE62.iter().position(|&c| c == b).expect("base62")] += 1;
        }
        assert!(seen.insert(s.to_owned()), "duplicate value");
    }
    // 4.3M symbols: each count is ~69 355 with a standard deviation of ~260.
    // Modulo bias (byte % 62 without rejection) would push the first eight
    // symbols 25% higher, so a ±3% band catches it without flaking.
    let expected = N * SECRET_LEN / 62;
    for (symbol, &count) in BASE62.iter().zip(&counts) {
        let deviation = count.abs_diff(expected) as f64 / expected as f64;
        assert!(
            deviation < 0.03,
            "{} appears {count} times",
            char::from(*symbol)
        );
    }
}

#[test]
fn token_regex_rejects_look_alikes() {
    let regex = token_regex();
    let value = generate(TokenKind::Personal, &TokenId::generate());
    let s = value.expose_secret();
    assert!(regex.is_match(&format!("Authorization: Bearer {s}\n")));
    assert!(regex.is_match(&format!("TOKEN=\"{s}\"")));
    assert_eq!(
        regex.find(&format!("x {s} y")).map(|m| m.as_str()),
        Some(s),
        "the match is exactly the value"
    );
    let look_alikes = [
        s.replacen("akpat", "ghpat", 1),
        s.replacen("akpat_", "akpat-", 1),
        s[..s.len() - 1].to_owned(),
        format!("{s}0"),
        format!("{s}_"),
        format!("x{s}"),
        format!("_{s}"),
        substitute(s, 6, b'A'),
        substitute(s, 30, b'_'),
        format!("akpat_{}_{}", "0".repeat(16), "x".repeat(48)),
    ];
    for look_alike in &look_alikes {
        assert!(!regex.is_match(look_alike), "{look_alike}");
    }
}

#[test]
fn token_len_is_72() {
    assert_eq!(TOKEN_LEN, 72);
    assert_eq!(
        generate(TokenKind::Personal, &TokenId::generate())
            .expose_secret()
            .len(),
        TOKEN_LEN
    );
}
