//! The injected clock: production reads the system time, tests may step it;
//! and the time helpers that the controller and the verifier share.

use jiff::Timestamp;

/// A source of the current instant.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The operating system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// `ts` with seconds and subseconds set to zero: `status.lastUsedAt` is
/// kept to the minute (the verifier's index and its usage reports).
pub fn truncate_to_minute(ts: Timestamp) -> Timestamp {
    let seconds = ts.as_second();
    Timestamp::from_second(seconds - seconds.rem_euclid(60)).unwrap_or(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn truncates_to_the_minute() {
        for (input, expected) in [
            ("2026-06-01T12:34:56.789Z", "2026-06-01T12:34:00Z"),
            ("2026-06-01T12:34:00Z", "2026-06-01T12:34:00Z"),
            ("1969-12-31T23:59:30Z", "1969-12-31T23:59:00Z"),
        ] {
            assert_eq!(truncate_to_minute(t(input)), t(expected), "{input}");
        }
    }
}
