//! Format checks (kube-openapi strfmt, the formats the apiserver keeps) and the per-thread
//! regex cache that `keywords` also uses for `pattern`. Called from `keywords`.

pub(super) fn format_ok(format: &str, s: &str) -> bool {
    match format.replace('-', "").as_str() {
        "datetime" => is_datetime(s),
        "date" => is_date(s),
        "uuid" => re_match(
            r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$",
            s,
        ),
        "uuid3" => re_match(
            r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$",
            s,
        ),
        "uuid4" => re_match(
            r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$",
            s,
        ),
        "uuid5" => re_match(
            r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$",
            s,
        ),
        "ipv4" => s.contains('.') && s.parse::<std::net::IpAddr>().is_ok(),
        "ipv6" => s.contains(':') && s.parse::<std::net::IpAddr>().is_ok(),
        "cidr" => s.split_once('/').is_some_and(|(ip, bits)| {
            match (ip.parse::<std::net::IpAddr>(), bits.parse::<u8>()) {
                (Ok(std::net::IpAddr::V4(_)), Ok(b)) => b <= 32 && !bits.starts_with('+'),
                (Ok(std::net::IpAddr::V6(_)), Ok(b)) => b <= 128 && !bits.starts_with('+'),
                _ => false,
            }
        }),
        "mac" => is_mac(s),
        "hostname" => {
            s.len() <= 255
                && re_match(
                    r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z\p{L}]){2,63})$",
                    s,
                )
        }
        "byte" => is_base64(s),
        "bsonobjectid" => s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()),
        "hexcolor" => re_match(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$", s),
        "rgbcolor" => re_match(
            r"^rgb\(\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*\)$",
            s,
        ),
        "ssn" => re_match(r"^\d{3}[- ]?\d{2}[- ]?\d{4}$", s),
        "duration" => is_duration(s),
        "email" => s
            .rsplit_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty()),
        "uri" => s.starts_with('/') || re_match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", s),
        // password, isbn*, creditcard: accepted as-is here.
        _ => true,
    }
}

fn re_match(pattern: &str, s: &str) -> bool {
    with_regex(pattern, |re| re.is_match(s)).unwrap_or(false)
}

thread_local! {
    static REGEXES: std::cell::RefCell<std::collections::HashMap<String, Result<regex::Regex, regex::Error>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Runs `f` on `pattern` compiled once per thread: compiling costs far more
/// than matching (the profile in BENCHMARKS.md showed it as 61% of the
/// emulator's CPU time). The regex is lent, not cloned: a clone starts with
/// an empty match cache, so every search on it would build its automaton's
/// states again.
pub(super) fn with_regex<R>(
    pattern: &str,
    f: impl FnOnce(&regex::Regex) -> R,
) -> Result<R, regex::Error> {
    REGEXES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.contains_key(pattern) {
            if cache.len() > 4096 {
                cache.clear();
            }
            cache.insert(pattern.to_owned(), regex::Regex::new(pattern));
        }
        match &cache[pattern] {
            Ok(re) => Ok(f(re)),
            Err(e) => Err(e.clone()),
        }
    })
}

fn digits(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Some(y), Some(m), Some(d)) = (digits(&s[0..4]), digits(&s[5..7]), digits(&s[8..10]))
    else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// kube-openapi's strfmt.IsDateTime, the API server's check of
/// `format: date-time`. It is laxer than RFC 3339, and the emulator keeps its
/// quirks: the text is split at each `t` (any case) and only the first two
/// parts are looked at (`2030-01-01T00:00:00Zt…` passes), the fraction's
/// separator may be any character, and the fraction has any length.
fn is_datetime(s: &str) -> bool {
    if s.len() < 4 {
        return false;
    }
    // Go lowercases the text first; splitting at either case and matching
    // either `z` is the same, without a copy of the text per check.
    let mut parts = s.split(['t', 'T']);
    let (Some(date), Some(time)) = (parts.next(), parts.next()) else {
        return false;
    };
    if !is_date(date) {
        return false;
    }
    with_regex(
        r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?([zZ]|([+-][0-9]{2}:[0-9]{2}))$",
        |re| {
            re.captures(time)
                .is_some_and(|c| &c[1] <= "23" && &c[2] <= "59" && &c[3] <= "59")
        },
    )
    .unwrap_or(false)
}

fn is_mac(s: &str) -> bool {
    let groups = |sep: char, width: usize| -> Option<usize> {
        let parts: Vec<&str> = s.split(sep).collect();
        parts
            .iter()
            .all(|p| p.len() == width && p.bytes().all(|b| b.is_ascii_hexdigit()))
            .then_some(parts.len())
    };
    matches!(groups(':', 2), Some(6 | 8 | 20))
        || matches!(groups('-', 2), Some(6 | 8 | 20))
        || matches!(groups('.', 4), Some(3 | 4 | 10))
}

fn is_base64(s: &str) -> bool {
    if !s.len().is_multiple_of(4) {
        return false;
    }
    let body = s.trim_end_matches('=');
    s.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Go's time.ParseDuration, or strfmt's `<n> <unit>` fallback.
fn is_duration(s: &str) -> bool {
    let go = re_match(
        r"^[-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$",
        s,
    ) || s == "0";
    go || re_match(
        r"^(\s*\d+\s*(ns|us|µs|ms|s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hr|hrs|hour|hours|d|day|days|w|wk|wks|week|weeks)\s*)+$",
        s,
    )
}
