//! What the index answers: the [`Identity`] of an accepted value (owned or
//! borrowed, with its [`Audiences`]), or why a value or ApiToken was refused.

use std::sync::Arc;

use axum::http::HeaderValue;
use jiff::Timestamp;

use crate::api::OwnerKind;
use crate::token::ParseError;

/// A list of audiences packed into one string, each after a NUL (the
/// separator a Kubernetes audience, a URI or name, does not contain; one
/// that did would only split its own token's list).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Audiences<'a>(pub(super) &'a str);

impl<'a> Audiences<'a> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.0.split('\0').skip(1)
    }
}

/// Appends `audiences` to `packed` as [`Audiences`] reads them.
pub(super) fn pack_audiences(packed: &mut String, audiences: &[String]) {
    for audience in audiences {
        packed.push('\0');
        packed.push_str(audience);
    }
}

/// Who a verified token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The ApiKey's principal: a user name or `system:serviceaccount:<ns>:<name>`.
    pub username: Arc<str>,
    pub owner_kind: OwnerKind,
    pub namespace: Arc<str>,
    /// Name of the ApiKey.
    pub api_key: Arc<str>,
    /// Name of the ApiToken.
    pub api_token: String,
    /// `metadata.uid` of the ApiToken: stable for the token's life, new if it
    /// is deleted and created again.
    pub uid: String,
    /// The non-secret token id.
    pub token_id: String,
    /// True when a previous value inside its grace period matched.
    pub previous_value: bool,
    /// The last minute of use known before this answer: `status.lastUsedAt`
    /// as seen by the watch, or a later minute noted by `Index::note_use`.
    pub last_used_at: Option<Timestamp>,
    /// The key's forward-auth header values.
    pub key_headers: KeyHeaders,
}

/// A key's identity headers for forward-auth answers, made once when the key
/// is indexed: every accepted request of its tokens clones them (a reference
/// count) instead of checking and copying the text. `None` where the text
/// cannot be an HTTP header value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyHeaders {
    pub username: Option<HeaderValue>,
    pub namespace: Option<HeaderValue>,
    pub api_key: Option<HeaderValue>,
}

impl KeyHeaders {
    pub fn new(username: Option<&str>, namespace: &str, api_key: &str) -> KeyHeaders {
        let value = |text: &str| HeaderValue::from_str(text).ok();
        KeyHeaders {
            username: username.and_then(value),
            namespace: value(namespace),
            api_key: value(api_key),
        }
    }
}

/// An [`Identity`] borrowed from the index (and the presented value) while
/// its lock is held: an answer is built from it without copying the names
/// or touching the shared reference counts of the key's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentityRef<'a> {
    pub username: &'a Arc<str>,
    pub owner_kind: OwnerKind,
    pub namespace: &'a Arc<str>,
    pub api_key: &'a Arc<str>,
    pub api_token: &'a str,
    pub uid: &'a str,
    pub token_id: &'a str,
    pub previous_value: bool,
    pub last_used_at: Option<Timestamp>,
    /// The audiences the token is valid for (its own, else its key's
    /// defaults); empty when neither lists any: the verifier's defaults apply.
    pub audiences: Audiences<'a>,
    /// The key's forward-auth header values.
    pub key_headers: &'a KeyHeaders,
}

impl IdentityRef<'_> {
    pub fn to_identity(&self) -> Identity {
        Identity {
            username: self.username.clone(),
            owner_kind: self.owner_kind,
            namespace: self.namespace.clone(),
            api_key: self.api_key.clone(),
            api_token: self.api_token.to_owned(),
            uid: self.uid.to_owned(),
            token_id: self.token_id.to_owned(),
            previous_value: self.previous_value,
            last_used_at: self.last_used_at,
            key_headers: self.key_headers.clone(),
        }
    }
}

impl<'a> From<&'a Identity> for IdentityRef<'a> {
    fn from(identity: &'a Identity) -> Self {
        IdentityRef {
            username: &identity.username,
            owner_kind: identity.owner_kind,
            namespace: &identity.namespace,
            api_key: &identity.api_key,
            api_token: &identity.api_token,
            uid: &identity.uid,
            token_id: &identity.token_id,
            previous_value: identity.previous_value,
            last_used_at: identity.last_used_at,
            audiences: Audiences::default(),
            key_headers: &identity.key_headers,
        }
    }
}

/// Why a presented value is not accepted. Messages are short, fixed texts
/// that never contain the value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("the value is not an apikey-operator token: {0}")]
    Malformed(ParseError),
    #[error("no ApiToken has this token id; it was deleted or never existed")]
    Unknown,
    #[error(
        "the value does not match the token's current value; it was rotated, or is not genuine"
    )]
    Mismatch,
    #[error("the value has expired")]
    Expired,
    #[error("the ApiToken is disabled")]
    Disabled,
    #[error("the token's ApiKey is missing or not Ready")]
    KeyNotReady,
    #[error(
        "the value was issued under an earlier ApiKey of this name, since deleted; the ApiToken \
         gets no value under the current key: re-create it"
    )]
    KeyReplaced,
    #[error("the value was revoked")]
    Revoked,
}

impl Reject {
    /// A bounded label for metrics and error codes.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reject::Malformed(_) => "malformed",
            Reject::Unknown => "unknown",
            Reject::Mismatch => "mismatch",
            Reject::Expired => "expired",
            Reject::Disabled => "disabled",
            Reject::KeyNotReady => "key_not_ready",
            Reject::KeyReplaced => "key_replaced",
            Reject::Revoked => "revoked",
        }
    }

    /// Every label [`Reject::as_str`] can return.
    pub const LABELS: [&'static str; 8] = [
        "malformed",
        "unknown",
        "mismatch",
        "expired",
        "disabled",
        "key_not_ready",
        "key_replaced",
        "revoked",
    ];
}

/// Why an ApiToken was not (fully) indexed; the watch logs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skipped {
    /// No `status.tokenId` yet: nothing was issued, nothing to accept.
    NoTokenId,
    /// `status.tokenId` is not a valid id (edited by hand), or another
    /// ApiToken claims it and this one is not accepted under it.
    BadTokenId,
    /// A hash in status is not `sha256:<hex>`; that hash is ignored.
    BadHash,
}

impl Skipped {
    pub fn as_str(self) -> &'static str {
        match self {
            Skipped::NoTokenId => "no status.tokenId yet",
            Skipped::BadTokenId => {
                "status.tokenId is not a valid token id, or is claimed by another ApiToken \
                 (a copied status); this token is not accepted under it"
            }
            Skipped::BadHash => "a hash in status is not sha256:<64 hex digits>; it is ignored",
        }
    }
}
