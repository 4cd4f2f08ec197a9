//! Whose `status.tokenId` it is: the id derived from the token's uid, or an
//! id from before derivation that the token's own Secret carries, is kept;
//! any other (copied from another ApiToken) is replaced with a Warning.

use super::*;
use crate::token::TokenId;

/// The token `tok` (uid `uid-1`) issued `v1` under `id`.
fn issued_under(id: &str) -> ApiToken {
    let mut status = issued_status("v1", "2026-06-01T00:00:00Z");
    status.token_id = Some(id.into());
    token(|_| {}, Some(status))
}

/// Our Secret, holding `v1` under the token id `carried`.
fn secret_carrying(carried: &str) -> SecretView {
    SecretView::Ours {
        value_hash: Some(h("v1")),
        value_token_id: TokenId::parse(carried).ok(),
    }
}

#[test]
fn a_token_id_is_kept_only_when_it_is_the_tokens_own() {
    let own = TokenId::for_uid("uid-1");
    let copied = TokenId::for_uid("uid-of-another-token");
    let legacy = "abcdefghijklmnop";
    // (status.tokenId, the id the Secret's value carries, replaced?)
    let cases = [
        (own.as_str(), own.as_str(), false),
        (own.as_str(), legacy, false),
        (legacy, legacy, false),
        (copied.as_str(), legacy, true),
        (copied.as_str(), own.as_str(), true),
        (legacy, "qrstuvwxyz012345", true),
    ];
    for (recorded, carried, replaced) in cases {
        let d = decide(
            &issued_under(recorded),
            READY_KEY,
            &secret_carrying(carried),
            t(NOW),
        );
        let case = format!("{recorded} with a Secret carrying {carried}");
        if replaced {
            assert!(matches!(d.action, ValueAction::Issue(_)), "{case}");
            let note = d.note.as_ref().expect("an Event");
            assert!(note.warning && note.reason == "TokenIdReplaced", "{case}");
            assert_eq!(d.status.token_id.as_deref(), Some(own.as_str()), "{case}");
            assert!(d.status.previous.is_empty(), "{case}");
        } else {
            assert_eq!(d.action, ValueAction::Keep, "{case}");
            assert_eq!(d.status.token_id.as_deref(), Some(recorded), "{case}");
        }
    }
}

#[test]
fn a_missing_secret_is_reissued_under_the_tokens_own_id() {
    let own = TokenId::for_uid("uid-1");
    for recorded in ["abcdefghijklmnop", own.as_str()] {
        let d = decide(
            &issued_under(recorded),
            READY_KEY,
            &SecretView::Missing,
            t(NOW),
        );
        assert!(matches!(d.action, ValueAction::Issue(_)), "{recorded}");
        assert_eq!(
            d.status.token_id.as_deref(),
            Some(own.as_str()),
            "{recorded}"
        );
    }
}
