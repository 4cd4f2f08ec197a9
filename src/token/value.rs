//! Issuing new token values: the secret-bearing [`TokenValue`] and the
//! checksum shared with `parse`.

use std::fmt;

use super::hash::{TokenHash, hash_value};
use super::id::TokenId;
use super::random::{os_fill, push_uniform_chars};
use super::{BASE62, CHECKSUM_LEN, PREFIX_LEN, SECRET_LEN, TOKEN_ID_LEN, TOKEN_LEN, TokenKind};

/// A complete token value, including its secret.
///
/// `Debug` and `Display` redact the secret (`akpat_<tokenId>_***`); the only
/// way to the full value is [`TokenValue::expose_secret`], meant for writing
/// it into the Secret. Deliberately not `Clone`, to keep copies rare.
pub struct TokenValue {
    value: String,
    kind: TokenKind,
}

/// Issues a new value for the token `id`: 43 base62 characters (≈ 256 bits)
/// from the operating system's CSPRNG, plus prefix and checksum.
///
/// # Panics
///
/// If the operating system's random number generator fails; a value from any
/// weaker source would be guessable.
pub fn generate(kind: TokenKind, id: &TokenId) -> TokenValue {
    let mut secret = String::with_capacity(SECRET_LEN);
    push_uniform_chars(BASE62, SECRET_LEN, &mut secret, &mut os_fill);
    TokenValue {
        value: assemble(kind, id.as_str(), &secret),
        kind,
    }
}

impl TokenValue {
    /// The full value, secret included. Only for writing it into the Secret.
    pub fn expose_secret(&self) -> &str {
        &self.value
    }

    /// The hash recorded in status and compared by the verifier.
    pub fn hash(&self) -> TokenHash {
        hash_value(&self.value)
    }

    pub fn token_id(&self) -> &str {
        // `value` is always built by `assemble`, so this range is the id.
        &self.value[PREFIX_LEN + 1..PREFIX_LEN + 1 + TOKEN_ID_LEN]
    }

    pub fn kind(&self) -> TokenKind {
        self.kind
    }
}

impl fmt::Display for TokenValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_redacted(f, self.kind, self.token_id())
    }
}

impl fmt::Debug for TokenValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenValue(")?;
        write_redacted(f, self.kind, self.token_id())?;
        f.write_str(")")
    }
}

pub(super) fn write_redacted(
    f: &mut fmt::Formatter<'_>,
    kind: TokenKind,
    token_id: &str,
) -> fmt::Result {
    write!(f, "{}_{token_id}_***", kind.prefix())
}

/// Builds `<prefix>_<id>_<secret><checksum>`.
pub(super) fn assemble(kind: TokenKind, id: &str, secret: &str) -> String {
    let mut value = String::with_capacity(TOKEN_LEN);
    value.push_str(kind.prefix());
    value.push('_');
    value.push_str(id);
    value.push('_');
    value.push_str(secret);
    let checksum = checksum(&value);
    value.extend(checksum.iter().copied().map(char::from));
    value
}

/// CRC32 of everything before the checksum, as six base62 digits, most
/// significant first. Not a security measure: it lets scanners and the
/// verifier reject typos and look-alikes without a lookup.
pub(super) fn checksum(body: &str) -> [u8; CHECKSUM_LEN] {
    let mut n = crc32fast::hash(body.as_bytes());
    let mut digits = [BASE62[0]; CHECKSUM_LEN];
    for digit in digits.iter_mut().rev() {
        *digit = BASE62[(n % 62) as usize];
        n /= 62;
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> TokenId {
        TokenId::parse("0123456789abcdef").expect("valid id")
    }

    #[test]
    fn generated_value_has_the_documented_layout() {
        let value = generate(TokenKind::ServiceAccount, &id());
        let s = value.expose_secret();
        assert_eq!(s.len(), 72);
        assert!(s.starts_with("aksat_0123456789abcdef_"));
        assert!(s[23..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(value.kind(), TokenKind::ServiceAccount);
        assert_eq!(value.token_id(), "0123456789abcdef");
        assert_eq!(value.hash(), hash_value(s));
    }

    #[test]
    fn checksum_is_zero_padded_base62_of_crc32() {
        // Expected values computed independently (Python zlib.crc32).
        assert_eq!(&checksum(""), b"000000");
        assert_eq!(&checksum("a"), b"4GEHKN"); // crc32("a") = 0xe8b7be43
    }

    #[test]
    fn display_and_debug_redact_the_secret() {
        let value = generate(TokenKind::Personal, &id());
        assert_eq!(value.to_string(), "akpat_0123456789abcdef_***");
        assert_eq!(
            format!("{value:?}"),
            "TokenValue(akpat_0123456789abcdef_***)"
        );
        assert_eq!(
            format!("{value:#?}"),
            "TokenValue(akpat_0123456789abcdef_***)"
        );
    }
}
