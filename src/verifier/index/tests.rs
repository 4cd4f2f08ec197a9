//! The index's answers as tables: each case builds a token and key in some
//! state, presents a value at some instant and checks the verdict.

use std::collections::HashSet;

use jiff::Timestamp;
use serde_json::{Value, json};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::*;
use crate::token::{TokenKind, TokenValue, generate};

pub(crate) const ID: &str = "abcdefghijklmnop";
const NOW: &str = "2026-06-01T12:00:00Z";

fn t(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

pub(crate) fn value(id: &str) -> TokenValue {
    generate(TokenKind::Personal, &TokenId::parse(id).expect("valid id"))
}

pub(crate) fn key_json(name: &str, ready: bool, principal: Option<&str>) -> ApiKey {
    let mut status = json!({
        "conditions": [{
            "type": "Ready",
            "status": if ready { "True" } else { "False" },
            "reason": if ready { "OwnerResolved" } else { "OwnerNotFound" },
            "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }],
    });
    if let Some(p) = principal {
        status["principal"] = json!(p);
    }
    // The owner the principal derives from (the verifier cross-checks them);
    // a ServiceAccount key is bound to the uid `with_service_accounts` gives.
    let owner = match principal.and_then(|p| p.strip_prefix("system:serviceaccount:ns:")) {
        Some(sa) => {
            status["ownerUID"] = json!(format!("uid-sa-{sa}"));
            json!({ "kind": "ServiceAccount", "name": sa })
        }
        None => json!({ "kind": "User", "name": principal.unwrap_or("alice") }),
    };
    serde_json::from_value(json!({
        "apiVersion": "apikeys.dev/v1alpha1",
        "kind": "ApiKey",
        "metadata": { "name": name, "namespace": "ns", "uid": format!("uid-key-{name}") },
        "spec": { "owner": owner },
        "status": status,
    }))
    .expect("valid ApiKey")
}

pub(crate) fn ready_key() -> ApiKey {
    key_json("key", true, Some("alice"))
}

pub(crate) fn token_json(name: &str, disabled: bool, status: Value) -> ApiToken {
    serde_json::from_value(json!({
        "apiVersion": "apikeys.dev/v1alpha1",
        "kind": "ApiToken",
        "metadata": { "name": name, "namespace": "ns", "uid": format!("uid-{name}") },
        "spec": { "apiKeyRef": { "name": "key" }, "disabled": disabled },
        "status": status,
    }))
    .expect("valid ApiToken")
}

pub(crate) fn issued(value: &TokenValue) -> Value {
    json!({ "tokenId": ID, "hash": value.hash().as_str() })
}

/// The ServiceAccounts of namespace `ns` every ServiceAccount key of the
/// tests is bound to: `robot`, with the uid `key_json` records.
pub(crate) fn with_service_accounts(index: &mut Index) {
    index.upsert_service_account("ns", "robot", "uid-sa-robot");
}

fn index_with(tokens: &[ApiToken], keys: &[ApiKey]) -> Index {
    let mut index = Index::new();
    with_service_accounts(&mut index);
    for key in keys {
        index.upsert_key(key);
    }
    for token in tokens {
        index.upsert_token(token);
    }
    index
}

#[test]
fn accepts_the_current_value_with_its_identity() {
    let v = value(ID);
    let index = index_with(&[token_json("tok", false, issued(&v))], &[ready_key()]);
    let identity = index.verify(v.expose_secret(), t(NOW)).expect("accepted");
    assert_eq!(
        identity,
        Identity {
            username: "alice".into(),
            owner_kind: OwnerKind::User,
            namespace: "ns".into(),
            api_key: "key".into(),
            api_token: "tok".into(),
            uid: "uid-tok".into(),
            token_id: ID.into(),
            previous_value: false,
            last_used_at: None,
            key_headers: KeyHeaders::new(Some("alice"), "ns", "key"),
        }
    );
    assert_eq!((index.tokens_len(), index.keys_len()), (1, 1));
}

#[test]
fn only_the_first_use_in_a_minute_is_to_be_reported() {
    let v = value(ID);
    let index = index_with(&[token_json("tok", false, issued(&v))], &[ready_key()]);
    let at = |s: &str| {
        index.verify(v.expose_secret(), t(s)).expect("accepted");
        index.note_use(ID, t(s))
    };
    assert!(at("2026-06-01T12:00:05Z"), "first use");
    assert!(!at("2026-06-01T12:00:59Z"), "same minute");
    assert!(at("2026-06-01T12:01:00Z"), "next minute");
    assert!(!at("2026-06-01T12:00:30Z"), "a clock that stepped back");
    let identity = index.verify(v.expose_secret(), t(NOW)).expect("accepted");
    assert_eq!(identity.last_used_at, Some(t("2026-06-01T12:01:00Z")));
    assert!(!index.note_use("unknownunknownun", t(NOW)), "unknown token");

    // A minute the status already shows is not reported again.
    let seen =
        json!({ "tokenId": ID, "hash": v.hash().as_str(), "lastUsedAt": "2026-06-01T12:00:00Z" });
    let index = index_with(&[token_json("tok", false, seen)], &[ready_key()]);
    assert!(!index.note_use(ID, t("2026-06-01T12:00:40Z")));
    assert!(index.note_use(ID, t("2026-06-01T12:01:40Z")));
}

#[test]
fn verdicts_by_state_and_time() {
    let current = value(ID);
    let old = value(ID);
    let older = value(ID);
    let forged = value(ID);
    let pending = value(ID);
    let grace = |until: &str| {
        json!({
            "tokenId": ID,
            "hash": current.hash().as_str(),
            "previous": [
                { "hash": older.hash().as_str(), "validUntil": "2026-06-01T11:00:00Z" },
                { "hash": old.hash().as_str(), "validUntil": until },
            ],
        })
    };
    let expiring =
        |at: &str| json!({ "tokenId": ID, "hash": current.hash().as_str(), "expiresAt": at });
    let ok = Ok(false);
    let ok_previous = Ok(true);
    type Case<'a> = (
        &'a str,
        Value,
        bool,
        ApiKey,
        &'a str,
        &'a str,
        Result<bool, Reject>,
    );
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("current value", issued(&current), false, ready_key(), current.expose_secret(), NOW, ok.clone()),
        ("previous value inside grace", grace("2026-06-01T12:00:01Z"), false, ready_key(), old.expose_secret(), NOW, ok_previous),
        ("current still accepted while in grace", grace("2026-06-01T12:00:01Z"), false, ready_key(), current.expose_secret(), NOW, ok.clone()),
        ("previous value exactly at validUntil", grace(NOW), false, ready_key(), old.expose_secret(), NOW, Err(Reject::Expired)),
        ("previous value after its grace", grace("2026-06-01T11:59:59Z"), false, ready_key(), old.expose_secret(), NOW, Err(Reject::Expired)),
        ("older previous value past grace", grace("2026-06-01T13:00:00Z"), false, ready_key(), older.expose_secret(), NOW, Err(Reject::Expired)),
        ("previous in grace but the token expired", json!({
            "tokenId": ID, "hash": current.hash().as_str(), "expiresAt": "2026-06-01T11:30:00Z",
            "previous": [{ "hash": old.hash().as_str(), "validUntil": "2026-06-01T13:00:00Z" }],
        }), false, ready_key(), old.expose_secret(), NOW, Err(Reject::Expired)),
        ("one second before expiresAt", expiring("2026-06-01T12:00:01Z"), false, ready_key(), current.expose_secret(), NOW, ok.clone()),
        ("exactly at expiresAt", expiring(NOW), false, ready_key(), current.expose_secret(), NOW, Err(Reject::Expired)),
        ("after expiresAt", expiring("2026-06-01T11:00:00Z"), false, ready_key(), current.expose_secret(), NOW, Err(Reject::Expired)),
        ("pending only", json!({
            "tokenId": ID,
            "pending": { "hash": pending.hash().as_str(), "reason": "Issue", "startedAt": NOW },
        }), false, ready_key(), pending.expose_secret(), NOW, Err(Reject::Mismatch)),
        ("pending beside a current value", json!({
            "tokenId": ID, "hash": current.hash().as_str(),
            "pending": { "hash": pending.hash().as_str(), "reason": "Rotate", "startedAt": NOW },
        }), false, ready_key(), pending.expose_secret(), NOW, Err(Reject::Mismatch)),
        ("current accepted while a pending exists", json!({
            "tokenId": ID, "hash": current.hash().as_str(),
            "pending": { "hash": pending.hash().as_str(), "reason": "Rotate", "startedAt": NOW },
        }), false, ready_key(), current.expose_secret(), NOW, ok.clone()),
        ("forged value with a valid checksum", issued(&current), false, ready_key(), forged.expose_secret(), NOW, Err(Reject::Mismatch)),
        ("disabled", issued(&current), true, ready_key(), current.expose_secret(), NOW, Err(Reject::Disabled)),
        ("forged value of a disabled token says mismatch", issued(&current), true, ready_key(), forged.expose_secret(), NOW, Err(Reject::Mismatch)),
        ("key not ready", issued(&current), false, key_json("key", false, Some("alice")), current.expose_secret(), NOW, Err(Reject::KeyNotReady)),
        ("key without principal", issued(&current), false, key_json("key", true, None), current.expose_secret(), NOW, Err(Reject::KeyNotReady)),
        ("key missing", issued(&current), false, key_json("other", true, Some("bob")), current.expose_secret(), NOW, Err(Reject::KeyNotReady)),
        ("token without a hash", json!({ "tokenId": ID }), false, ready_key(), current.expose_secret(), NOW, Err(Reject::Mismatch)),
        ("token without a tokenId", json!({ "hash": current.hash().as_str() }), false, ready_key(), current.expose_secret(), NOW, Err(Reject::Unknown)),
        ("hand-edited hash", json!({ "tokenId": ID, "hash": "sha256:nothex" }), false, ready_key(), current.expose_secret(), NOW, Err(Reject::Mismatch)),
    ];
    for (name, status, disabled, key, presented, now, expected) in cases {
        let index = index_with(&[token_json("tok", disabled, status)], &[key]);
        let got = index
            .verify(presented, t(now))
            .map(|identity| identity.previous_value);
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn malformed_and_unknown_values() {
    let v = value(ID);
    let index = index_with(&[token_json("tok", false, issued(&v))], &[ready_key()]);
    let s = v.expose_secret();
    let other_id = value("zzzzzzzzzzzzzzzz");
    let last = s.chars().last().expect("non-empty");
    let damaged = format!(
        "{}{}",
        &s[..s.len() - 1],
        if last == 'A' { 'B' } else { 'A' }
    );
    let cases: Vec<(&str, String, &str)> = vec![
        ("empty", String::new(), "malformed"),
        (
            "other scheme",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789".into(),
            "malformed",
        ),
        ("surrounding quotes", format!("\"{s}\""), "malformed"),
        ("one character changed", damaged, "malformed"),
        ("cut off", s[..s.len() - 3].to_owned(), "malformed"),
        ("oversized", "a".repeat(100_000), "malformed"),
        (
            "unknown token id",
            other_id.expose_secret().to_owned(),
            "unknown",
        ),
    ];
    for (name, presented, label) in cases {
        let got = index.verify(&presented, t(NOW));
        let err = got.expect_err(name);
        assert_eq!(err.as_str(), label, "{name}");
        assert!(Reject::LABELS.contains(&err.as_str()));
        let message = err.to_string();
        assert!(!message.contains(&s[23..40]), "{name}: {message}");
    }
}

#[test]
fn delete_of_token_or_key_rejects_at_once() {
    let v = value(ID);
    let token = token_json("tok", false, issued(&v));
    let mut index = index_with(std::slice::from_ref(&token), &[ready_key()]);
    assert!(index.verify(v.expose_secret(), t(NOW)).is_ok());

    index.remove_key(&ready_key());
    assert_eq!(
        index.verify(v.expose_secret(), t(NOW)),
        Err(Reject::KeyNotReady)
    );
    index.upsert_key(&ready_key());
    assert!(index.verify(v.expose_secret(), t(NOW)).is_ok());

    index.remove_token(&token);
    assert_eq!(
        index.verify(v.expose_secret(), t(NOW)),
        Err(Reject::Unknown)
    );
    assert_eq!(index.tokens_len(), 0);
}

#[test]
fn a_changed_token_id_drops_the_old_entry() {
    let v = value(ID);
    let new_id = "qrstuvwxyz012345";
    let w = value(new_id);
    let mut index = index_with(&[token_json("tok", false, issued(&v))], &[ready_key()]);
    index.upsert_token(&token_json(
        "tok",
        false,
        json!({ "tokenId": new_id, "hash": w.hash().as_str() }),
    ));
    assert_eq!(
        index.verify(v.expose_secret(), t(NOW)),
        Err(Reject::Unknown)
    );
    assert!(index.verify(w.expose_secret(), t(NOW)).is_ok());
    assert_eq!(index.tokens_len(), 1);
}

#[test]
fn two_tokens_claiming_one_id_are_both_rejected() {
    let v = value(ID);
    let mut index = index_with(&[token_json("tok", false, issued(&v))], &[ready_key()]);
    assert_eq!(
        index.upsert_token(&token_json("copy", false, issued(&v))),
        Some(Skipped::BadTokenId)
    );
    assert_eq!(
        index.verify(v.expose_secret(), t(NOW)),
        Err(Reject::Unknown)
    );
}

#[test]
fn key_updates_apply_to_existing_tokens() {
    let v = value(ID);
    let mut index = index_with(
        &[token_json("tok", false, issued(&v))],
        &[key_json("key", false, None)],
    );
    assert_eq!(
        index.verify(v.expose_secret(), t(NOW)),
        Err(Reject::KeyNotReady)
    );
    index.upsert_key(&key_json(
        "key",
        true,
        Some("system:serviceaccount:ns:robot"),
    ));
    let identity = index.verify(v.expose_secret(), t(NOW)).expect("accepted");
    assert_eq!(&*identity.username, "system:serviceaccount:ns:robot");
    assert_eq!(index.keys_len(), 1);
}

/// A ServiceAccount key's values authenticate only while the ServiceAccount
/// with the uid the key is bound to exists: deleted, or deleted and created
/// again, they are refused at once, before the controller marks the key.
#[test]
fn a_service_account_key_needs_its_service_account_with_the_bound_uid() {
    let v = value(ID);
    let sa_key = key_json("key", true, Some("system:serviceaccount:ns:robot"));
    let mut index = index_with(
        &[token_json("tok", false, issued(&v))],
        std::slice::from_ref(&sa_key),
    );
    assert!(index.verify(v.expose_secret(), t(NOW)).is_ok());

    index.remove_service_account("ns", "robot");
    assert_eq!(
        index.verify(v.expose_secret(), t(NOW)),
        Err(Reject::KeyNotReady),
        "deleted"
    );
    index.upsert_service_account("ns", "robot", "uid-of-another-robot");
    assert_eq!(
        index.verify(v.expose_secret(), t(NOW)),
        Err(Reject::KeyNotReady),
        "created again: another identity"
    );
    index.upsert_service_account("ns", "robot", "uid-sa-robot");
    assert!(index.verify(v.expose_secret(), t(NOW)).is_ok());

    // A key whose status records no uid yet is not bound to anything.
    let mut unbound = sa_key;
    unbound.status.as_mut().expect("status").owner_uid = None;
    index.upsert_key(&unbound);
    assert_eq!(
        index.verify(v.expose_secret(), t(NOW)),
        Err(Reject::KeyNotReady)
    );

    let mut seen = HashSet::new();
    seen.insert("ns/other".to_owned());
    index.upsert_key(&key_json(
        "key",
        true,
        Some("system:serviceaccount:ns:robot"),
    ));
    index.retain_service_accounts(&seen);
    assert_eq!(
        index.verify(v.expose_secret(), t(NOW)),
        Err(Reject::KeyNotReady),
        "gone in a relist"
    );
}

#[test]
fn relist_drops_what_was_not_seen() {
    let v = value(ID);
    let other = "0000000000000000";
    let w = value(other);
    let mut index = index_with(
        &[
            token_json("tok", false, issued(&v)),
            token_json(
                "gone",
                false,
                json!({ "tokenId": other, "hash": w.hash().as_str() }),
            ),
        ],
        &[ready_key(), key_json("old", true, Some("bob"))],
    );
    index.retain_tokens(&HashSet::from(["ns/tok".to_owned()]));
    index.retain_keys(&HashSet::from(["ns/key".to_owned()]));
    assert_eq!((index.tokens_len(), index.keys_len()), (1, 1));
    assert!(index.verify(v.expose_secret(), t(NOW)).is_ok());
    assert_eq!(
        index.verify(w.expose_secret(), t(NOW)),
        Err(Reject::Unknown)
    );
}

/// The expiry gauge's series: a token whose value expires, and one whose
/// value expired and was removed (so the expired alert can fire); none for
/// a token that never expires, is disabled, or has no value yet or any more
/// for another reason (its status then records no expiry).
#[test]
fn expirations_include_expired_tokens() {
    let v = value(ID);
    let other = value("bcdefghijklmnopq");
    let gone = value("cdefghijklmnopqr");
    let mut valid = issued(&v);
    valid["expiresAt"] = json!("2026-07-01T00:00:00Z");
    let expired = json!({"tokenId": "bcdefghijklmnopq", "expiresAt": "2026-05-01T00:00:00Z"});
    let mut disabled = issued(&gone);
    disabled["tokenId"] = json!("cdefghijklmnopqr");
    disabled["expiresAt"] = json!("2026-07-01T00:00:00Z");
    let forever = json!({"tokenId": "defghijklmnopqrs", "hash": other.hash().as_str()});
    let index = index_with(
        &[
            token_json("valid", false, valid),
            token_json("expired", false, expired),
            token_json("disabled", true, disabled),
            token_json("forever", false, forever),
        ],
        &[ready_key()],
    );
    let mut series: Vec<(String, Timestamp)> = index
        .expirations()
        .into_iter()
        .map(|(ns, name, at)| (format!("{ns}/{name}"), at))
        .collect();
    series.sort();
    assert_eq!(
        series,
        [
            ("ns/expired".to_owned(), t("2026-05-01T00:00:00Z")),
            ("ns/valid".to_owned(), t("2026-07-01T00:00:00Z")),
        ]
    );
}

/// A value issued while an earlier ApiKey of the same name controlled the
/// token is rejected (until the controller replaces it): the key was deleted
/// and created again, perhaps for another owner.
#[test]
fn a_value_issued_under_an_earlier_key_is_rejected() {
    let v = value(ID);
    let controlled_by = |uid: Option<&str>| {
        let mut token = token_json("tok", false, issued(&v));
        if let Some(uid) = uid {
            token.metadata.owner_references = Some(vec![OwnerReference {
                api_version: "apikeys.dev/v1alpha1".into(),
                kind: "ApiKey".into(),
                name: "key".into(),
                uid: uid.into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]);
        }
        index_with(&[token], &[ready_key()]).verify(v.expose_secret(), t(NOW))
    };
    assert!(
        controlled_by(Some("uid-key-key")).is_ok(),
        "the current key"
    );
    assert!(controlled_by(None).is_ok(), "not adopted (yet)");
    assert_eq!(
        controlled_by(Some("uid-key-earlier")).map(|_| ()),
        Err(Reject::KeyReplaced)
    );

    // The uid the status records wins over the owner reference (which an
    // orphaning delete removes).
    let recorded = |uid: &str| {
        let mut status = issued(&v);
        status["apiKeyUID"] = json!(uid);
        index_with(&[token_json("tok", false, status)], &[ready_key()])
            .verify(v.expose_secret(), t(NOW))
            .map(|_| ())
    };
    assert_eq!(recorded("uid-key-key"), Ok(()));
    assert_eq!(recorded("uid-key-earlier"), Err(Reject::KeyReplaced));
}

#[test]
fn entry_is_compact() {
    // The benchmark's goal is 256 heap bytes per indexed token, including the
    // hash tables' spare capacity (up to 2x, 1.3x at 100k) and the
    // `name/uid` allocation; the fixed part is checked here. Entries live in
    // chunks (`slab`), so only the two tables' small buckets have spare room.
    let buckets = std::mem::size_of::<(IdKey, u32)>() + std::mem::size_of::<(u64, IdKey)>();
    assert!(buckets <= 44, "{buckets} bytes of hash buckets per token");
    let entry = std::mem::size_of::<Option<TokenEntry>>();
    assert!(entry <= 96, "{entry} bytes per entry");
}

/// The principal comes from the key's spec: a forged `status.principal`
/// changes nothing in the answer, and a User key naming a `system:` user (or
/// with a control character in its name) authenticates no one, even when
/// its status says Ready with that principal.
#[test]
fn the_principal_comes_from_the_spec_not_the_status() {
    let v = value(ID);
    let mut forged = ready_key();
    if let Some(status) = forged.status.as_mut() {
        status.principal = Some("system:masters".into());
    }
    let index = index_with(&[token_json("tok", false, issued(&v))], &[forged]);
    let identity = index.verify(v.expose_secret(), t(NOW)).expect("accepted");
    assert_eq!(&*identity.username, "alice");

    for name in [
        "system:kube-controller-manager",
        "system:serviceaccount:kube-system:x",
        "alice\nX-Auth-Request-User: admin",
    ] {
        let mut key = key_json("key", true, Some(name));
        key.spec.owner.kind = crate::api::OwnerKind::User;
        key.spec.owner.name = name.to_owned();
        let index = index_with(&[token_json("tok", false, issued(&v))], &[key]);
        assert_eq!(
            index.verify(v.expose_secret(), t(NOW)),
            Err(Reject::KeyNotReady),
            "{name:?}"
        );
    }
}

/// A value the controller took away (`status.retired`) is never accepted; someone still
/// presenting it hears why it went, and only after it matched: any other value is a
/// `mismatch`, and a reason the verifier does not know is one too.
#[test]
fn a_retired_value_is_refused_with_why_it_went() {
    let old = value(ID);
    let fresh = value(ID);
    let guess = value(ID);
    for (reason, answer) in [
        ("Expired", Reject::Expired),
        ("Disabled", Reject::Disabled),
        ("Revoked", Reject::Revoked),
        ("ApiKeyNotFound", Reject::KeyNotReady),
        ("ApiKeyNotReady", Reject::KeyNotReady),
        ("ApiKeyReplaced", Reject::KeyReplaced),
        ("SomethingNew", Reject::Mismatch),
    ] {
        let status = json!({
            "tokenId": ID,
            "hash": fresh.hash().as_str(),
            "retired": {"hash": old.hash().as_str(), "reason": reason},
        });
        let index = index_with(&[token_json("tok", false, status)], &[ready_key()]);
        assert_eq!(
            index.verify(old.expose_secret(), t(NOW)),
            Err(answer.clone()),
            "{reason}"
        );
        assert_eq!(
            index.verify(guess.expose_secret(), t(NOW)),
            Err(Reject::Mismatch),
            "{reason}: nothing about a value that does not match"
        );
        assert!(
            index.verify(fresh.expose_secret(), t(NOW)).is_ok(),
            "{reason}"
        );
    }
    // With no current value at all (disabled, expired), the same.
    let status = json!({
        "tokenId": ID,
        "retired": {"hash": old.hash().as_str(), "reason": "Expired"},
    });
    let index = index_with(&[token_json("tok", false, status)], &[ready_key()]);
    assert_eq!(
        index.verify(old.expose_secret(), t(NOW)),
        Err(Reject::Expired)
    );
}
