//! Who may create which key and token — pure. The webhook (`super::review`)
//! feeds these functions what the API server sent and what the authorizer and
//! the key lookup answered; they do no I/O.
//!
//! The rules (docs/security.md, "Admission"), from the Kubernetes precedents:
//! - a `User` key for X: the requester is X, or may `impersonate` user X
//!   (what `kubectl --as X` needs);
//! - a `ServiceAccount` key for s: the requester may `create`
//!   `serviceaccounts/token` for s in the key's namespace (what
//!   `kubectl create token s` needs), or may impersonate s;
//! - a token on a key (created, or its `apiKeyRef` changed): the requester
//!   would be allowed to create that key; a key that does not exist is
//!   refused, since its owner cannot be checked.

use std::fmt;

use k8s_openapi::api::authorization::v1::ResourceAttributes;
use kube::core::admission::Operation;

use crate::api::owner::{self, ForbiddenOwner};
use crate::api::{ApiKey, ApiToken, Owner, OwnerKind};

/// What the API server asks about, decoded.
#[derive(Debug)]
pub enum Subject {
    Key {
        old: Option<Box<ApiKey>>,
        new: Box<ApiKey>,
    },
    Token {
        old: Option<Box<ApiToken>>,
        new: Box<ApiToken>,
    },
}

/// What must be established before a request is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing that changes whose values may be minted.
    Allow,
    /// A key's owner: the requester must be allowed to act as it.
    ActAs { namespace: String, owner: Owner },
    /// A token's key: look it up, then the requester must be allowed to act
    /// as its owner.
    KeyOwner { namespace: String, key: String },
}

/// The first step: which identity the request would let the requester mint
/// values for. Deletes, connects and writes that keep the owner (or the key)
/// are allowed without a check: the owner and `apiKeyRef` are immutable, so
/// an update cannot move a key or token to another identity (checked here
/// too, for an API server that did not enforce the schema).
pub fn plan(operation: &Operation, namespace: &str, subject: &Subject) -> Plan {
    let changes = matches!(operation, Operation::Create | Operation::Update);
    match subject {
        _ if !changes => Plan::Allow,
        Subject::Key { old, new } => {
            let owner = &new.spec.owner;
            if old.as_ref().is_some_and(|old| old.spec.owner == *owner) {
                return Plan::Allow;
            }
            Plan::ActAs {
                namespace: namespace.to_owned(),
                owner: owner.clone(),
            }
        }
        Subject::Token { old, new } => {
            let key = &new.spec.api_key_ref.name;
            if old
                .as_ref()
                .is_some_and(|old| old.spec.api_key_ref.name == *key)
            {
                return Plan::Allow;
            }
            Plan::KeyOwner {
                namespace: namespace.to_owned(),
                key: key.clone(),
            }
        }
    }
}

/// The requester, as the API server authenticated it.
#[derive(Clone, Copy, Debug)]
pub struct Requester<'a> {
    pub username: &'a str,
}

/// How the requester may act as an owner.
#[derive(Clone, Debug, PartialEq)]
pub enum Standing {
    /// The requester is the owner.
    Is,
    /// Allowed if the authorizer allows any one of these.
    AnyOf(Vec<ResourceAttributes>),
}

/// The second step: what the authorizer must allow for the requester to act
/// as `owner` in `namespace`. An owner no token may ever authenticate as (a
/// `system:` user, an invalid ServiceAccount name) is refused here already.
pub fn standing(
    requester: Requester<'_>,
    namespace: &str,
    owner: &Owner,
) -> Result<Standing, ForbiddenOwner> {
    owner::principal(namespace, owner)?;
    let attributes = |verb: &str, resource: &str, subresource: Option<&str>| ResourceAttributes {
        verb: Some(verb.to_owned()),
        group: Some(String::new()),
        resource: Some(resource.to_owned()),
        subresource: subresource.map(str::to_owned),
        name: Some(owner.name.clone()),
        namespace: (owner.kind == OwnerKind::ServiceAccount).then(|| namespace.to_owned()),
        ..ResourceAttributes::default()
    };
    Ok(match owner.kind {
        OwnerKind::User if requester.username == owner.name => Standing::Is,
        OwnerKind::User => Standing::AnyOf(vec![attributes("impersonate", "users", None)]),
        OwnerKind::ServiceAccount => Standing::AnyOf(vec![
            attributes("create", "serviceaccounts", Some("token")),
            attributes("impersonate", "serviceaccounts", None),
        ]),
    })
}

/// Why a request is refused; its `Display` is the message the user sees
/// (after the API server's "admission webhook ... denied the request: ").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    /// The requester may not act as the owner.
    NotAllowed {
        requester: String,
        what: What,
        namespace: String,
        owner: Owner,
    },
    /// The owner may never authenticate anyone.
    Forbidden { what: What, reason: ForbiddenOwner },
    /// A token's key does not exist.
    KeyNotFound { namespace: String, key: String },
    /// The request could not be decoded.
    Malformed(String),
    /// A lookup or an access review failed: refused, never let through.
    Unchecked(String),
}

/// What the request creates, for the messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    Key,
    /// A token on the named key.
    TokenOn(String),
}

impl fmt::Display for What {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            What::Key => f.write_str("an ApiKey"),
            What::TokenOn(key) => write!(f, "an ApiToken on ApiKey {key:?}"),
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::NotAllowed {
                requester,
                what,
                namespace,
                owner,
            } => match owner.kind {
                OwnerKind::User => write!(
                    f,
                    "{requester:?} may not create {what} owned by user {name:?}: its values \
                     authenticate as that user. Only the user themself may, or someone allowed \
                     to impersonate them (the permission `kubectl --as {name}` needs: verb \
                     impersonate on users, name {name:?})",
                    name = owner.name
                ),
                OwnerKind::ServiceAccount => write!(
                    f,
                    "{requester:?} may not create {what} owned by ServiceAccount \
                     {namespace}/{name}: its values authenticate as that ServiceAccount. Ask for \
                     the permission `kubectl create token {name} -n {namespace}` needs (verb \
                     create on serviceaccounts/token, name {name:?}), or to impersonate it",
                    name = owner.name
                ),
            },
            Denial::Forbidden { what, reason } => {
                write!(f, "{what} may not have this owner: {reason}")
            }
            Denial::KeyNotFound { namespace, key } => write!(
                f,
                "ApiKey {key:?} does not exist in namespace {namespace:?}: create the key first. \
                 A token is checked against its key's owner when it is created, so the key \
                 must exist"
            ),
            Denial::Malformed(why) => write!(f, "the admission request cannot be read: {why}"),
            Denial::Unchecked(why) => write!(
                f,
                "the apikey-operator webhook could not check this request ({why}); nothing was \
                 stored, try again, and if it persists check the operator's logs"
            ),
        }
    }
}

/// The last step: allowed when the requester is the owner or the authorizer
/// allowed one of the attributes `standing` asked about (`answers`, in the
/// same order).
pub fn verdict(
    requester: Requester<'_>,
    what: What,
    namespace: &str,
    owner: &Owner,
    standing: &Standing,
    answers: &[bool],
) -> Result<(), Denial> {
    match standing {
        Standing::Is => Ok(()),
        Standing::AnyOf(_) if answers.iter().any(|allowed| *allowed) => Ok(()),
        Standing::AnyOf(_) => Err(Denial::NotAllowed {
            requester: requester.username.to_owned(),
            what,
            namespace: namespace.to_owned(),
            owner: owner.clone(),
        }),
    }
}

#[cfg(test)]
#[path = "decision/tests.rs"]
mod tests;
