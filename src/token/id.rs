//! The non-secret token id: lets the verifier find a token's record in O(1)
//! and stays the same across rotations of one ApiToken. Ids issued now are
//! derived from the ApiToken's `metadata.uid` ([`TokenId::for_uid`]), so an
//! id copied into another object's status is recognised as not its own.

use std::fmt;

use sha2::{Digest, Sha256};

use super::random::{os_fill, push_uniform_chars};
use super::{TOKEN_ID_ALPHABET, TOKEN_ID_LEN};

/// 16 characters of `[a-z0-9]` (≈ 82 bits, so collisions are negligible).
/// Not secret: it appears in status, logs and redacted token renderings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId(String);

/// A string that is not a valid token id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a token id must be exactly 16 characters of a-z and 0-9; was it edited by hand?")]
pub struct TokenIdError;

impl TokenId {
    /// A fresh random id from the operating system's CSPRNG.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails.
    pub fn generate() -> TokenId {
        let mut id = String::with_capacity(TOKEN_ID_LEN);
        push_uniform_chars(TOKEN_ID_ALPHABET, TOKEN_ID_LEN, &mut id, &mut os_fill);
        TokenId(id)
    }

    /// The id of the ApiToken whose `metadata.uid` is `uid`: the first 16
    /// characters drawn from SHA-256 of the uid (domain-separated). The API
    /// server assigns uids, so nobody can choose an object whose id is
    /// another's; no key is needed because the id is not secret.
    pub fn for_uid(uid: &str) -> TokenId {
        let digest = Sha256::new()
            .chain_update(b"apikeys.dev/tokenId/v1\0")
            .chain_update(uid.as_bytes())
            .finalize();
        let alphabet = TOKEN_ID_ALPHABET;
        // 256 = 7 * 36 + 4: the slight bias is harmless for a non-secret id.
        let id = digest
            .iter()
            .take(TOKEN_ID_LEN)
            .map(|b| char::from(alphabet[usize::from(*b) % alphabet.len()]))
            .collect();
        TokenId(id)
    }

    /// True when this id is the one [`TokenId::for_uid`] gives `uid`; false
    /// for a copied id, and for a random id issued before ids were derived.
    pub fn is_bound_to(&self, uid: &str) -> bool {
        !uid.is_empty() && *self == TokenId::for_uid(uid)
    }

    /// Validates an id read back from status.
    pub fn parse(s: &str) -> Result<TokenId, TokenIdError> {
        if is_valid(s) {
            Ok(TokenId(s.to_owned()))
        } else {
            Err(TokenIdError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(super) fn is_valid(s: &str) -> bool {
    s.len() == TOKEN_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let ids: HashSet<TokenId> = (0..10_000).map(|_| TokenId::generate()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| is_valid(id.as_str())));
    }

    #[test]
    fn derived_ids_are_valid_stable_and_bound_to_their_uid() {
        let uid = "5f0c6a8e-2f7b-4c55-9d8e-0d3c1b2a4f61";
        let id = TokenId::for_uid(uid);
        assert!(is_valid(id.as_str()));
        assert_eq!(id, TokenId::for_uid(uid));
        let cases = [
            (uid, true),
            ("5f0c6a8e-2f7b-4c55-9d8e-0d3c1b2a4f62", false),
            ("", false),
        ];
        for (other, bound) in cases {
            assert_eq!(id.is_bound_to(other), bound, "{other:?}");
        }
        assert!(!TokenId::generate().is_bound_to(uid));
    }

    #[test]
    fn parse_accepts_only_the_id_form() {
        assert_eq!(
            TokenId::parse("0123456789abcdef").map(|id| id.to_string()),
            Ok("0123456789abcdef".to_owned())
        );
        for bad in [
            "",
            "0123456789abcde",
            "0123456789abcdef0",
            "0123456789ABCDEF",
            "0123456789abcde_",
            "0123456789abcde-",
            "0123456789abcdé",
        ] {
            assert_eq!(TokenId::parse(bad), Err(TokenIdError), "{bad:?}");
        }
    }
}
