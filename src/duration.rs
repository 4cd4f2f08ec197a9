//! Durations. (Placeholder until the duration module lands.)
pub const DURATION_PATTERN: &str = r"^([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$";
