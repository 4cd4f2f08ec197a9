//! Checking a presented string against the token format before any lookup,
//! with errors that tell the user what is wrong without echoing the value.

use std::fmt;

use super::hash::{TokenHash, digest_value, hash_value, verify};
use super::value::{checksum, write_redacted};
use super::{CHECKSUM_LEN, SECRET_LEN, TOKEN_LEN, TokenKind, id};

/// Inputs longer than this are rejected before any other work, so a huge
/// header costs nothing. Well above [`TOKEN_LEN`] to still tell "too long"
/// apart from "wrong structure" for slightly damaged values.
const MAX_INPUT_LEN: usize = 256;

/// A string with the structure and checksum of a token value. Says nothing
/// about whether the token exists or is valid now; that is the verifier's job.
///
/// `Debug` redacts the secret part.
#[derive(Clone, Copy)]
pub struct ParsedToken<'a> {
    value: &'a str,
    kind: TokenKind,
    token_id: &'a str,
}

/// Why a string is not a token value. Messages never contain the input or
/// any part of it: the input may be a real token pasted in the wrong place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the token is empty; copy the whole value from the token's Secret")]
    Empty,
    #[error(
        "the token is {len} bytes long, a token has {TOKEN_LEN} characters; \
         copy only the value from the token's Secret, without surrounding text"
    )]
    TooLong { len: usize },
    #[error(
        "the token has a character other than A-Z, a-z, 0-9 and _ at position {position}; \
         remove quotes, spaces or line breaks added when copying it from the Secret"
    )]
    InvalidCharacter { position: usize },
    #[error(
        "the token does not start with akpat_ or aksat_, so it was not issued by \
         apikey-operator or its start was cut off; copy the whole value from the Secret"
    )]
    UnknownPrefix,
    #[error(
        "the token does not have the form prefix_tokenId_secret (exactly two underscores); \
         copy the whole value from the token's Secret"
    )]
    MalformedStructure,
    #[error(
        "the token's id part is not 16 characters of a-z and 0-9; \
         copy the whole value from the token's Secret"
    )]
    InvalidTokenId,
    #[error(
        "the token's secret part has {found} characters instead of {}; it was cut off or \
         extended, copy the whole value from the token's Secret",
        SECRET_LEN + CHECKSUM_LEN
    )]
    WrongSecretLength { found: usize },
    #[error(
        "the token's checksum does not match, so a character was changed while copying it; \
         copy the whole value from the token's Secret again"
    )]
    ChecksumMismatch,
}

/// Checks that `s` is a well-formed token value: prefix, id, secret length
/// and checksum. Cheap and allocation-free, so the verifier can run it before
/// touching its index.
pub fn parse(s: &str) -> Result<ParsedToken<'_>, ParseError> {
    if s.is_empty() {
        return Err(ParseError::Empty);
    }
    if s.len() > MAX_INPUT_LEN {
        return Err(ParseError::TooLong { len: s.len() });
    }
    // By bytes: every byte before the first bad one is ASCII, so the byte
    // index is also the character index.
    if let Some(index) = s
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || b == b'_'))
    {
        return Err(ParseError::InvalidCharacter {
            position: index + 1,
        });
    }

    let mut parts = s.split('_');
    let kind = parts
        .next()
        .and_then(TokenKind::from_prefix)
        .ok_or(ParseError::UnknownPrefix)?;
    let (Some(token_id), Some(secret_and_checksum), None) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::MalformedStructure);
    };
    if !id::is_valid(token_id) {
        return Err(ParseError::InvalidTokenId);
    }
    if secret_and_checksum.len() != SECRET_LEN + CHECKSUM_LEN {
        return Err(ParseError::WrongSecretLength {
            found: secret_and_checksum.len(),
        });
    }
    // All ASCII from here on (checked above), so byte offsets are char offsets.
    let (body, presented) = s.split_at(s.len() - CHECKSUM_LEN);
    if checksum(body) != presented.as_bytes() {
        return Err(ParseError::ChecksumMismatch);
    }
    Ok(ParsedToken {
        value: s,
        kind,
        token_id,
    })
}

impl<'a> ParsedToken<'a> {
    pub fn kind(&self) -> TokenKind {
        self.kind
    }

    /// The non-secret id, the verifier's lookup key.
    pub fn token_id(&self) -> &'a str {
        self.token_id
    }

    /// Hash of the whole value, for comparison with status.
    pub fn hash(&self) -> TokenHash {
        hash_value(self.value)
    }

    /// SHA-256 digest of the whole value, as in [`TokenHash::digest`].
    pub fn digest(&self) -> [u8; 32] {
        digest_value(self.value)
    }

    /// Whether this value hashes to `expected`, compared in constant time.
    pub fn verify(&self, expected: &TokenHash) -> bool {
        verify(self.value, expected)
    }
}

impl fmt::Debug for ParsedToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ParsedToken(")?;
        write_redacted(f, self.kind, self.token_id)?;
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::super::value::assemble;
    use super::*;

    const ID: &str = "0123456789abcdef";
    const SECRET: &str = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefg";

    fn valid() -> String {
        assemble(TokenKind::Personal, ID, SECRET)
    }

    #[test]
    fn accepts_a_valid_value() {
        let s = valid();
        let parsed = parse(&s).expect("valid token");
        assert_eq!(parsed.kind(), TokenKind::Personal);
        assert_eq!(parsed.token_id(), ID);
        assert_eq!(parsed.hash(), hash_value(&s));
        assert_eq!(&parsed.digest(), hash_value(&s).digest());
        assert!(parsed.verify(&hash_value(&s)));
        assert_eq!(
            format!("{parsed:?}"),
            format!("ParsedToken(akpat_{ID}_***)")
        );

        let sa = assemble(TokenKind::ServiceAccount, ID, SECRET);
        assert_eq!(parse(&sa).map(|p| p.kind()), Ok(TokenKind::ServiceAccount));
    }

    #[test]
    fn each_malformed_case_has_its_own_error() {
        let v = valid();
        let (body, check) = v.split_at(v.len() - CHECKSUM_LEN);
        let cases: Vec<(String, ParseError)> = vec![
            (String::new(), ParseError::Empty),
            ("a".repeat(257), ParseError::TooLong { len: 257 }),
            // Too long wins over every other problem, even invalid characters.
            (" ".repeat(300), ParseError::TooLong { len: 300 }),
            (
                format!("{v}\n"),
                ParseError::InvalidCharacter { position: 73 },
            ),
            (
                format!("\"{v}\""),
                ParseError::InvalidCharacter { position: 1 },
            ),
            (
                v.replacen('_', "-", 1),
                ParseError::InvalidCharacter { position: 6 },
            ),
            (
                format!("é{v}"),
                ParseError::InvalidCharacter { position: 1 },
            ),
            (
                format!("{}é{}", &v[..10], &v[10..]),
                ParseError::InvalidCharacter { position: 11 },
            ),
            (v.replacen("akpat", "ghp", 1), ParseError::UnknownPrefix),
            (v.replacen("akpat", "AKPAT", 1), ParseError::UnknownPrefix),
            (v[1..].to_owned(), ParseError::UnknownPrefix),
            ("akpat".to_owned(), ParseError::MalformedStructure),
            (format!("akpat_{ID}"), ParseError::MalformedStructure),
            (
                v.replacen(ID, &format!("{ID}_x"), 1),
                ParseError::MalformedStructure,
            ),
            (
                v.replacen("akpat_", "akpat__", 1),
                ParseError::MalformedStructure,
            ),
            (format!("{v}_"), ParseError::MalformedStructure),
            (
                v.replacen(ID, "0123456789ABCDEF", 1),
                ParseError::InvalidTokenId,
            ),
            (
                v.replacen(ID, "0123456789abcde", 1),
                ParseError::InvalidTokenId,
            ),
            (v.replacen(ID, "", 1), ParseError::InvalidTokenId),
            (
                v[..v.len() - 1].to_owned(),
                ParseError::WrongSecretLength { found: 48 },
            ),
            (format!("{v}0"), ParseError::WrongSecretLength { found: 50 }),
            (
                format!("akpat_{ID}_"),
                ParseError::WrongSecretLength { found: 0 },
            ),
            (
                format!("{body}{}", rotate(check)),
                ParseError::ChecksumMismatch,
            ),
            (
                v.replacen("akpat", "aksat", 1),
                ParseError::ChecksumMismatch,
            ),
            (
                v.replacen(SECRET, &SECRET.to_lowercase(), 1),
                ParseError::ChecksumMismatch,
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse(&input).map(|_| ()),
                Err(expected.clone()),
                "{input:?}"
            );
            let message = expected.to_string();
            assert!(
                !message.contains(SECRET) && !message.contains(ID),
                "{message}"
            );
        }
    }

    fn rotate(s: &str) -> String {
        let mut chars: Vec<char> = s.chars().collect();
        chars.rotate_left(1);
        chars.into_iter().collect()
    }
}
