//! Durations. (Placeholder until the duration module lands.)
pub const DURATION_PATTERN: &str = r"^([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$";

#[derive(Debug, thiserror::Error)]
#[error("invalid duration {0:?}")]
pub struct DurationError(String);

pub fn parse_duration(s: &str) -> Result<jiff::SignedDuration, DurationError> {
    let mut total = 0i64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num.parse().map_err(|_| DurationError(s.into()))?;
        num.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 604800,
            _ => return Err(DurationError(s.into())),
        };
    }
    if !num.is_empty() || s.is_empty() {
        return Err(DurationError(s.into()));
    }
    Ok(jiff::SignedDuration::from_secs(total))
}

pub fn format_duration(d: jiff::SignedDuration) -> String {
    format!("{}s", d.as_secs())
}
