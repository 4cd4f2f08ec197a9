//! Which owners a key may name, and the principal each one yields — pure.
//!
//! The CRD refuses a forbidden owner at admission (the CEL rules below);
//! the controller (`controller::key`) and the verifier (`verifier::index`)
//! apply [`principal`] again to keys that got in anyway (stored before the
//! rule, or with admission bypassed), so neither trusts `status.principal`.

use super::{Owner, OwnerKind};

/// CEL on `spec.owner`: a User key never names a `system:` user, whose
/// names Kubernetes reserves for its own components and ServiceAccounts.
pub(super) const NO_SYSTEM_USER: &str = "self.kind != 'User' || !self.name.startsWith('system:')";
/// CEL on `spec.owner`: no control characters in a user name (they forge
/// log lines and header values downstream).
pub(super) const NO_CONTROL_CHARACTERS: &str =
    "self.kind != 'User' || !self.name.matches('[\\\\x00-\\\\x1f\\\\x7f]')";
/// CEL on `spec.owner`: a ServiceAccount name is a DNS-1123 subdomain.
pub(super) const SERVICE_ACCOUNT_NAME: &str = "self.kind != 'ServiceAccount' || self.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')";

/// Why a key's owner may not authenticate anyone. The messages are shown in
/// the key's Ready condition and Event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ForbiddenOwner {
    #[error(
        "user names starting with \"system:\" are reserved for Kubernetes components and \
         ServiceAccounts; a User key may not name one (for a ServiceAccount, use owner.kind: \
         ServiceAccount)"
    )]
    SystemUser,
    #[error("the user name contains a control character")]
    ControlCharacter,
    #[error(
        "{0:?} is not a valid ServiceAccount name (a DNS-1123 subdomain: lower-case letters, \
         digits, '-' and '.', at most 253 characters)"
    )]
    ServiceAccountName(String),
}

/// The identity a key's tokens authenticate as, derived from the key's
/// namespace and owner alone: the user name, or
/// `system:serviceaccount:<namespace>:<name>`. An owner the rules forbid
/// yields none.
pub fn principal(namespace: &str, owner: &Owner) -> Result<String, ForbiddenOwner> {
    let name = owner.name.as_str();
    match owner.kind {
        OwnerKind::User if name.starts_with("system:") => Err(ForbiddenOwner::SystemUser),
        OwnerKind::User if name.chars().any(char::is_control) => {
            Err(ForbiddenOwner::ControlCharacter)
        }
        OwnerKind::User => Ok(name.to_owned()),
        OwnerKind::ServiceAccount if !is_dns1123_subdomain(name) => {
            Err(ForbiddenOwner::ServiceAccountName(name.to_owned()))
        }
        OwnerKind::ServiceAccount => Ok(format!("system:serviceaccount:{namespace}:{name}")),
    }
}

/// Kubernetes' `IsDNS1123Subdomain`: at most 253 characters, dot-separated
/// labels of `[a-z0-9]`, `-` inside.
fn is_dns1123_subdomain(name: &str) -> bool {
    let label_ok = |label: &str| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-'
    };
    !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(kind: OwnerKind, name: &str) -> Owner {
        Owner {
            kind,
            name: name.to_owned(),
        }
    }

    #[test]
    fn principal_of_each_owner() {
        use ForbiddenOwner::*;
        use OwnerKind::*;
        let sa_name = |n: &str| Err(ServiceAccountName(n.to_owned()));
        let long = "a".repeat(254);
        let cases: &[(OwnerKind, &str, Result<String, ForbiddenOwner>)] = &[
            (User, "alice", Ok("alice".into())),
            (User, "alice@example.com", Ok("alice@example.com".into())),
            (User, "systemd", Ok("systemd".into())),
            (User, "System:admin", Ok("System:admin".into())),
            (User, "system:kube-controller-manager", Err(SystemUser)),
            (User, "system:serviceaccount:kube-system:x", Err(SystemUser)),
            (User, "system:", Err(SystemUser)),
            (User, "alice\nbob", Err(ControlCharacter)),
            (User, "alice\u{7f}", Err(ControlCharacter)),
            (User, "alice\u{0}", Err(ControlCharacter)),
            (
                ServiceAccount,
                "ci",
                Ok("system:serviceaccount:ns:ci".into()),
            ),
            (
                ServiceAccount,
                "ci.bot-1",
                Ok("system:serviceaccount:ns:ci.bot-1".into()),
            ),
            (ServiceAccount, "CI", sa_name("CI")),
            (ServiceAccount, "ci:x", sa_name("ci:x")),
            (ServiceAccount, "-ci", sa_name("-ci")),
            (ServiceAccount, "ci.", sa_name("ci.")),
            (ServiceAccount, "", sa_name("")),
            (ServiceAccount, &long, sa_name(&long)),
        ];
        for (kind, name, want) in cases {
            assert_eq!(
                &principal("ns", &owner(*kind, name)),
                want,
                "{kind:?} {name:?}"
            );
        }
    }
}
