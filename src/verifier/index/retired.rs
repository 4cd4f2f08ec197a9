//! Values `status.retired` records: never accepted, only answered with why they went.

use super::Reject;

/// Why a retired value went (`status.retired.reason`), as the verifier answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Retired {
    Expired = 1,
    Disabled,
    Revoked,
    KeyNotReady,
    KeyReplaced,
}

impl Retired {
    pub(super) fn from_reason(reason: &str) -> Option<Retired> {
        use crate::api::conditions::reason;
        Some(match reason {
            reason::EXPIRED => Retired::Expired,
            reason::DISABLED => Retired::Disabled,
            reason::REVOKED => Retired::Revoked,
            reason::KEY_NOT_FOUND | reason::KEY_NOT_READY => Retired::KeyNotReady,
            reason::KEY_REPLACED => Retired::KeyReplaced,
            _ => return None,
        })
    }

    pub(super) fn from_code(code: u8) -> Option<Reject> {
        Some(match code {
            1 => Reject::Expired,
            2 => Reject::Disabled,
            3 => Reject::Revoked,
            4 => Reject::KeyNotReady,
            5 => Reject::KeyReplaced,
            _ => return None,
        })
    }
}
