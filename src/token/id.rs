//! The non-secret token id: lets the verifier find a token's record in O(1)
//! and stays the same across rotations of one ApiToken.

use std::fmt;

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
