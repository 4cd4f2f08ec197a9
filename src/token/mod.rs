//! Token values: generate, parse, hash and verify the strings handed to API
//! clients. Pure, no I/O: the controller issues values with [`generate`] and
//! records only [`TokenHash`]es; the verifier uses [`parse`] and [`verify`].
//!
//! Format (72 characters, `[A-Za-z0-9_]` only), described for users in
//! `docs/token-format.md`:
//!
//! ```text
//! akpat_0123456789abcdef_<43 base62 secret chars><6 base62 checksum chars>
//! ```

mod hash;
mod id;
mod parse;
mod random;
mod value;

#[cfg(test)]
mod tests;

pub use hash::{HashParseError, TokenHash, hash_value, verify};
pub use id::{TokenId, TokenIdError};
pub use parse::{ParseError, ParsedToken, parse};
pub use value::{TokenValue, generate};

/// Regular expression that finds token values in text, for secret scanners
/// and log filters. It cannot check the checksum; see `docs/token-format.md`.
pub const TOKEN_REGEX: &str = r"\b(?:akpat|aksat)_[a-z0-9]{16}_[0-9A-Za-z]{49}\b";

/// Length of every valid token value.
pub const TOKEN_LEN: usize = PREFIX_LEN + 1 + TOKEN_ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN;

const PREFIX_LEN: usize = 5;
const TOKEN_ID_LEN: usize = 16;
/// 43 uniform base62 characters carry 43 · log2(62) ≈ 256.03 bits.
const SECRET_LEN: usize = 43;
/// Six base62 characters hold any CRC32 (62^6 ≈ 5.7e10 > 2^32).
const CHECKSUM_LEN: usize = 6;
const _: () = assert!(62u64.pow(CHECKSUM_LEN as u32) > u32::MAX as u64);

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const TOKEN_ID_ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Who a token belongs to; visible in the value's prefix so that a leaked
/// token can be triaged at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// Owned by a User (`akpat_`: API key personal access token).
    Personal,
    /// Owned by a ServiceAccount (`aksat_`: API key service account token).
    ServiceAccount,
}

impl TokenKind {
    /// The value prefix, without the `_` separator.
    pub const fn prefix(self) -> &'static str {
        match self {
            TokenKind::Personal => "akpat",
            TokenKind::ServiceAccount => "aksat",
        }
    }

    fn from_prefix(prefix: &str) -> Option<TokenKind> {
        [TokenKind::Personal, TokenKind::ServiceAccount]
            .into_iter()
            .find(|kind| kind.prefix() == prefix)
    }
}
