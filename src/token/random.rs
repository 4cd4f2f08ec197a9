//! Uniform random characters from the operating system's CSPRNG, shared by
//! token ids and secrets.

use rand::TryRngCore;
use rand::rngs::OsRng;

/// Fills `buf` from the operating system's CSPRNG.
///
/// # Panics
///
/// If the operating system refuses to provide randomness. There is no safe
/// fallback: a token from a weaker source would be guessable, so failing
/// loudly is the only correct outcome (the same policy as `rand::rng()`).
pub(super) fn os_fill(buf: &mut [u8]) {
    if let Err(err) = OsRng.try_fill_bytes(buf) {
        panic!("the operating system's random number generator failed: {err}");
    }
}

/// Appends `count` characters drawn uniformly from `alphabet` to `out`,
/// taking random bytes from `fill`.
///
/// Bytes at or above the largest multiple of `alphabet.len()` that fits in a
/// byte are rejected; taking `byte % len` of every byte would make the first
/// `256 % len` symbols more likely (modulo bias).
pub(super) fn push_uniform_chars(
    alphabet: &[u8],
    count: usize,
    out: &mut String,
    fill: &mut impl FnMut(&mut [u8]),
) {
    debug_assert!(!alphabet.is_empty() && alphabet.len() <= 256);
    let limit = 256 - 256 % alphabet.len();
    let mut buf = [0u8; 64];
    let mut pushed = 0;
    while pushed < count {
        fill(&mut buf);
        for &byte in buf.iter().filter(|&&b| usize::from(b) < limit) {
            if pushed == count {
                break;
            }
            out.push(char::from(alphabet[usize::from(byte) % alphabet.len()]));
            pushed += 1;
        }
    }
    // Best effort only: without `unsafe` or a zeroize dependency the
    // optimiser may drop this store.
    buf.fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds the given bytes, then zeros, to the sampler.
    fn replay(bytes: &[u8]) -> impl FnMut(&mut [u8]) + '_ {
        let mut rest = bytes;
        move |buf: &mut [u8]| {
            buf.fill(0);
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
    }

    #[test]
    fn rejects_bytes_that_would_bias_the_result() {
        let mut out = String::new();
        // 248..=255 are rejected for base62; 247 % 62 = 61 -> 'z'.
        let bytes = [255, 248, 247, 0, 61, 62];
        push_uniform_chars(super::super::BASE62, 4, &mut out, &mut replay(&bytes));
        assert_eq!(out, "z0z0");
    }

    #[test]
    fn refills_when_a_whole_buffer_is_rejected() {
        let mut calls = 0;
        let mut out = String::new();
        let mut fill = |buf: &mut [u8]| {
            calls += 1;
            buf.fill(if calls == 1 { 0xff } else { 1 });
        };
        push_uniform_chars(super::super::BASE62, 3, &mut out, &mut fill);
        assert_eq!(out, "111");
        assert_eq!(calls, 2);
    }
}
