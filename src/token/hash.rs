//! SHA-256 hashes of token values: the only form in which a value leaves its
//! Secret (status, verifier index), and the constant-time comparison on them.

use std::fmt;
use std::hash::{Hash, Hasher};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const HASH_PREFIX: &str = "sha256:";
const DIGEST_LEN: usize = 32;

/// `sha256:<64 lowercase hex>` of a full token value.
///
/// Equality is constant-time on the digest bytes, so comparing a presented
/// value's hash with a stored one does not leak how many bytes matched.
#[derive(Clone)]
pub struct TokenHash {
    digest: [u8; DIGEST_LEN],
    text: String,
}

/// A string that is not of the form `sha256:<64 lowercase hex digits>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a token hash must be \"sha256:\" followed by 64 lowercase hex digits; \
     was it edited by hand?"
)]
pub struct HashParseError;

/// Hashes a full token value as it appears in the Secret.
pub fn hash_value(value: &str) -> TokenHash {
    TokenHash::from_digest(digest_value(value))
}

/// The SHA-256 digest of `value`, without the text form `hash_value` builds
/// for status: the verifier compares digests only.
pub fn digest_value(value: &str) -> [u8; DIGEST_LEN] {
    Sha256::digest(value.as_bytes()).into()
}

/// Whether `value` hashes to `expected`, compared in constant time.
pub fn verify(value: &str, expected: &TokenHash) -> bool {
    hash_value(value).digest.ct_eq(&expected.digest).into()
}

impl TokenHash {
    /// Validates a hash read back from status.
    pub fn parse(s: &str) -> Result<TokenHash, HashParseError> {
        let hex = s.strip_prefix(HASH_PREFIX).ok_or(HashParseError)?;
        if hex.len() != 2 * DIGEST_LEN {
            return Err(HashParseError);
        }
        let mut digest = [0u8; DIGEST_LEN];
        for (byte, pair) in digest.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            *byte = hex_value(pair[0]).ok_or(HashParseError)? << 4
                | hex_value(pair[1]).ok_or(HashParseError)?;
        }
        Ok(TokenHash {
            digest,
            text: s.to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The raw SHA-256 digest, for compact storage (the verifier's index);
    /// compare digests with `subtle::ConstantTimeEq`, never `==`.
    pub fn digest(&self) -> &[u8; DIGEST_LEN] {
        &self.digest
    }

    fn from_digest(digest: [u8; DIGEST_LEN]) -> TokenHash {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = String::with_capacity(HASH_PREFIX.len() + 2 * DIGEST_LEN);
        text.push_str(HASH_PREFIX);
        for byte in digest {
            text.push(char::from(HEX[usize::from(byte >> 4)]));
            text.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        TokenHash { digest, text }
    }
}

/// Lowercase only, so that each digest has exactly one textual form.
fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl PartialEq for TokenHash {
    fn eq(&self, other: &TokenHash) -> bool {
        self.digest.ct_eq(&other.digest).into()
    }
}

impl Eq for TokenHash {}

impl Hash for TokenHash {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.digest.hash(state);
    }
}

impl fmt::Display for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // sha256("abc"), FIPS 180-2 test vector.
    const ABC: &str = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn hash_value_renders_sha256_lowercase_hex() {
        assert_eq!(hash_value("abc").as_str(), ABC);
        assert_eq!(hash_value("abc").to_string(), ABC);
    }

    #[test]
    fn parse_round_trips_and_equals_the_computed_hash() {
        let parsed = TokenHash::parse(ABC).expect("valid hash");
        assert_eq!(parsed, hash_value("abc"));
        assert_eq!(parsed.as_str(), ABC);
    }

    #[test]
    fn parse_rejects_other_forms() {
        let hex = &ABC["sha256:".len()..];
        for bad in [
            String::new(),
            hex.to_owned(),
            format!("sha512:{hex}"),
            format!("SHA256:{hex}"),
            ABC.to_uppercase(),
            format!("sha256:{}", &hex[1..]),
            format!("{ABC}0"),
            format!("sha256:{}g", &hex[1..]),
            format!("sha256: {}", &hex[1..]),
            format!("sha256:{}é", &hex[2..]),
        ] {
            assert_eq!(TokenHash::parse(&bad), Err(HashParseError), "{bad:?}");
        }
    }

    #[test]
    fn verify_accepts_only_the_hashed_value() {
        let expected = hash_value("akpat_x");
        assert!(verify("akpat_x", &expected));
        assert!(!verify("akpat_y", &expected));
        assert!(!verify("", &expected));
    }
}
