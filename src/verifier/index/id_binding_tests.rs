//! A tokenId copied into another ApiToken's status (or colliding) neither
//! takes over nor breaks the token it belongs to, in any arrival order, and
//! after the copy is deleted; ids from before derivation while contested.

use std::collections::HashSet;

use jiff::Timestamp;
use serde_json::json;

use super::tests::{key_json, ready_key, token_json, value};
use super::*;

const NOW: &str = "2026-06-01T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().expect("timestamp")
}

/// The ApiToken `name` in namespace `ns` (uid `uid-<name>`) with `status`.
fn token_in(ns: &str, name: &str, status: serde_json::Value) -> ApiToken {
    let mut token = token_json(name, false, status);
    token.metadata.namespace = Some(ns.to_owned());
    token
}

fn key_in(ns: &str) -> ApiKey {
    let mut key = ready_key();
    key.metadata.namespace = Some(ns.to_owned());
    key
}

/// Victim `ns/tok` with the id derived from its uid; copier `evil/copy`
/// claiming that id with the hash of a value it made up under it.
struct Attack {
    victim: ApiToken,
    victim_value: TokenValue,
    copier: ApiToken,
    copier_value: TokenValue,
}

fn attack(victim_id: &str) -> Attack {
    let victim_value = value(victim_id);
    let copier_value = value(victim_id);
    Attack {
        victim: token_in(
            "ns",
            "tok",
            json!({"tokenId": victim_id, "hash": victim_value.hash().as_str()}),
        ),
        victim_value,
        copier: token_in(
            "evil",
            "copy",
            json!({"tokenId": victim_id, "hash": copier_value.hash().as_str()}),
        ),
        copier_value,
    }
}

use crate::token::TokenValue;

#[test]
fn a_copied_bound_id_leaves_the_victim_working_in_any_order() {
    let bound = TokenId::for_uid("uid-tok");
    for copier_first in [false, true] {
        let a = attack(bound.as_str());
        let mut index = Index::new();
        index.upsert_key(&key_in("ns"));
        index.upsert_key(&key_in("evil"));
        let order = if copier_first {
            [&a.copier, &a.victim]
        } else {
            [&a.victim, &a.copier]
        };
        let skipped: Vec<_> = order.iter().map(|t| index.upsert_token(t)).collect();
        let copier_skip = if copier_first { skipped[0] } else { skipped[1] };
        if !copier_first {
            assert_eq!(
                copier_skip,
                Some(Skipped::BadTokenId),
                "copier not accepted"
            );
        }
        let case = format!("copier first: {copier_first}");
        let identity = index
            .verify(a.victim_value.expose_secret(), now())
            .expect(&case);
        assert_eq!(
            (&*identity.namespace, &*identity.api_token),
            ("ns", "tok"),
            "{case}"
        );
        assert_eq!(
            index.verify(a.copier_value.expose_secret(), now()),
            Err(Reject::Mismatch),
            "{case}: the copier's value is refused"
        );

        // The copy deleted (watch event) or gone in a relist: the victim stays.
        let mut relisted = Index::new();
        relisted.upsert_key(&key_in("ns"));
        relisted.upsert_token(&a.copier);
        relisted.upsert_token(&a.victim);
        relisted.retain_tokens(&HashSet::from(["ns/tok".to_owned()]));
        index.remove_token(&a.copier);
        for index in [&index, &relisted] {
            assert!(
                index.verify(a.victim_value.expose_secret(), now()).is_ok(),
                "{case}: victim after the copy went"
            );
            assert_eq!(index.tokens_len(), 1, "{case}");
        }
    }
}

#[test]
fn a_contested_random_id_is_accepted_again_once_the_copy_goes() {
    let legacy = "abcdefghijklmnop";
    let a = attack(legacy);
    let mut index = Index::new();
    index.upsert_key(&key_in("ns"));
    index.upsert_key(&key_in("evil"));
    index.upsert_token(&a.victim);
    assert_eq!(index.upsert_token(&a.copier), Some(Skipped::BadTokenId));
    // Neither is accepted while two objects claim an id nobody can prove.
    for v in [&a.victim_value, &a.copier_value] {
        assert_eq!(index.verify(v.expose_secret(), now()), Err(Reject::Unknown));
    }
    // The controller gives the copier its own id: the victim is back.
    let own = TokenId::for_uid("uid-copy");
    let fresh = value(own.as_str());
    index.upsert_token(&token_in(
        "evil",
        "copy",
        json!({"tokenId": own.as_str(), "hash": fresh.hash().as_str()}),
    ));
    assert!(index.verify(a.victim_value.expose_secret(), now()).is_ok());
    assert!(index.verify(fresh.expose_secret(), now()).is_ok());
    // And likewise when the copy is deleted instead.
    let mut index = Index::new();
    index.upsert_key(&key_in("ns"));
    index.upsert_token(&a.copier);
    index.upsert_token(&a.victim);
    index.remove_token(&a.copier);
    assert!(index.verify(a.victim_value.expose_secret(), now()).is_ok());
}

#[test]
fn audiences_come_from_the_token_else_its_key() {
    let id = "abcdefghijklmnop";
    let v = value(id);
    let status = json!({"tokenId": id, "hash": v.hash().as_str()});
    let mut key = key_json("key", true, Some("alice"));
    key.spec.token_defaults = Some(crate::api::TokenDefaults {
        audiences: vec!["from-key".into()],
        ..Default::default()
    });
    let mut own = token_json("tok", false, status.clone());
    own.spec.audiences = vec!["a".into(), "b".into()];
    let cases: [(ApiToken, Option<&ApiKey>, &[&str]); 3] = [
        (own, Some(&key), &["a", "b"]),
        (
            token_json("tok", false, status.clone()),
            Some(&key),
            &["from-key"],
        ),
        (token_json("tok", false, status), None, &[]),
    ];
    for (token, with_key, expected) in cases {
        let mut index = Index::new();
        index.upsert_key(with_key.unwrap_or(&ready_key()));
        index.upsert_token(&token);
        let got = index
            .verify_ref(v.expose_secret(), now())
            .expect("accepted");
        let got: Vec<&str> = got.audiences.iter().collect();
        assert_eq!(got, expected);
    }
}
