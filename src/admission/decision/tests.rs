//! The webhook's rules as tables: which request needs which check, which
//! attributes the authorizer is asked about, and the verdicts.

use super::*;
use serde_json::json;

fn owner(kind: OwnerKind, name: &str) -> Owner {
    Owner {
        kind,
        name: name.to_owned(),
    }
}

fn key(kind: &str, name: &str) -> Box<ApiKey> {
    Box::new(
        serde_json::from_value(json!({
            "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiKey",
            "metadata": {"name": "k", "namespace": "team-a"},
            "spec": {"owner": {"kind": kind, "name": name}},
        }))
        .expect("key"),
    )
}

fn token(key: &str) -> Box<ApiToken> {
    Box::new(
        serde_json::from_value(json!({
            "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken",
            "metadata": {"name": "t", "namespace": "team-a"},
            "spec": {"apiKeyRef": {"name": key}},
        }))
        .expect("token"),
    )
}

const ALICE: Requester<'static> = Requester { username: "alice" };

#[test]
fn creating_a_key_or_a_token_needs_a_check_of_its_owner() {
    let new_key = Subject::Key {
        old: None,
        new: key("User", "alice"),
    };
    assert_eq!(
        plan(&Operation::Create, "team-a", &new_key),
        Plan::ActAs {
            namespace: "team-a".into(),
            owner: owner(OwnerKind::User, "alice")
        }
    );
    let new_token = Subject::Token {
        old: None,
        new: token("deploy"),
    };
    assert_eq!(
        plan(&Operation::Create, "team-a", &new_token),
        Plan::KeyOwner {
            namespace: "team-a".into(),
            key: "deploy".into()
        }
    );
}

#[test]
fn updates_that_keep_the_owner_or_key_and_deletes_need_none() {
    let same_key = Subject::Key {
        old: Some(key("User", "alice")),
        new: key("User", "alice"),
    };
    assert_eq!(plan(&Operation::Update, "ns", &same_key), Plan::Allow);
    let same_ref = Subject::Token {
        old: Some(token("deploy")),
        new: token("deploy"),
    };
    assert_eq!(plan(&Operation::Update, "ns", &same_ref), Plan::Allow);
    let gone = Subject::Token {
        old: Some(token("deploy")),
        new: token("deploy"),
    };
    assert_eq!(plan(&Operation::Delete, "ns", &gone), Plan::Allow);
}

#[test]
fn an_update_that_moves_a_key_or_token_to_another_identity_is_checked_like_a_create() {
    let moved_key = Subject::Key {
        old: Some(key("User", "mallory")),
        new: key("User", "alice"),
    };
    assert!(matches!(
        plan(&Operation::Update, "ns", &moved_key),
        Plan::ActAs { owner, .. } if owner.name == "alice"
    ));
    let moved_token = Subject::Token {
        old: Some(token("mine")),
        new: token("alices"),
    };
    assert!(matches!(
        plan(&Operation::Update, "ns", &moved_token),
        Plan::KeyOwner { key, .. } if key == "alices"
    ));
}

/// verb, resource, subresource, namespace, name.
type Question = (String, String, Option<String>, Option<String>, String);

fn asked(standing: &Standing) -> Vec<Question> {
    let Standing::AnyOf(attributes) = standing else {
        return Vec::new();
    };
    attributes
        .iter()
        .map(|a| {
            (
                a.verb.clone().unwrap_or_default(),
                a.resource.clone().unwrap_or_default(),
                a.subresource.clone(),
                a.namespace.clone(),
                a.name.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn a_user_is_their_own_owner_anyone_else_needs_impersonate() {
    let alice = owner(OwnerKind::User, "alice");
    assert_eq!(standing(ALICE, "team-a", &alice), Ok(Standing::Is));
    let bob = Requester { username: "bob" };
    let s = standing(bob, "team-a", &alice).expect("allowed owner");
    assert_eq!(
        asked(&s),
        [(
            "impersonate".into(),
            "users".into(),
            None,
            None,
            "alice".into()
        )],
        "users are cluster-scoped: no namespace in the question"
    );
}

#[test]
fn a_service_account_needs_the_token_request_or_impersonate_permission_even_for_itself() {
    let ci = owner(OwnerKind::ServiceAccount, "ci");
    let as_ci = Requester {
        username: "system:serviceaccount:team-a:ci",
    };
    for requester in [ALICE, as_ci] {
        let s = standing(requester, "team-a", &ci).expect("allowed owner");
        assert_eq!(
            asked(&s),
            [
                (
                    "create".into(),
                    "serviceaccounts".into(),
                    Some("token".into()),
                    Some("team-a".into()),
                    "ci".into()
                ),
                (
                    "impersonate".into(),
                    "serviceaccounts".into(),
                    None,
                    Some("team-a".into()),
                    "ci".into()
                ),
            ]
        );
    }
}

#[test]
fn owners_no_token_may_authenticate_as_are_refused_before_asking_anyone() {
    for (kind, name) in [
        (OwnerKind::User, "system:kube-controller-manager"),
        (OwnerKind::User, "system:serviceaccount:kube-system:x"),
        (OwnerKind::User, "alice\r\nX-Auth-User: admin"),
        (OwnerKind::ServiceAccount, "a:b"),
    ] {
        // Not even the user of that name (a requester can be `system:` too).
        let requester = Requester { username: name };
        assert!(
            standing(requester, "ns", &owner(kind, name)).is_err(),
            "{name:?}"
        );
    }
}

#[test]
fn the_verdict_allows_on_any_permission_and_says_how_to_get_one_otherwise() {
    let alice = owner(OwnerKind::User, "alice");
    let bob = Requester { username: "bob" };
    let s = standing(bob, "team-a", &alice).expect("allowed owner");
    assert_eq!(
        verdict(bob, What::Key, "team-a", &alice, &s, &[true]),
        Ok(())
    );
    let denied = verdict(
        bob,
        What::TokenOn("alices".into()),
        "team-a",
        &alice,
        &s,
        &[false],
    )
    .expect_err("no permission");
    let message = denied.to_string();
    for part in [
        "\"bob\" may not create an ApiToken on ApiKey \"alices\" owned by user \"alice\"",
        "kubectl --as alice",
    ] {
        assert!(message.contains(part), "{message}");
    }

    let ci = owner(OwnerKind::ServiceAccount, "ci");
    let s = standing(bob, "team-a", &ci).expect("allowed owner");
    assert_eq!(
        verdict(bob, What::Key, "team-a", &ci, &s, &[false, true]),
        Ok(())
    );
    let message = verdict(bob, What::Key, "team-a", &ci, &s, &[false, false])
        .expect_err("neither permission")
        .to_string();
    assert!(
        message.contains("kubectl create token ci -n team-a"),
        "{message}"
    );
    // No answer is no permission: the webhook fails closed.
    assert!(verdict(bob, What::Key, "team-a", &ci, &s, &[]).is_err());
}

#[test]
fn a_missing_key_is_refused_with_what_to_do() {
    let message = Denial::KeyNotFound {
        namespace: "team-a".into(),
        key: "deploy".into(),
    }
    .to_string();
    assert!(
        message.starts_with(
            "ApiKey \"deploy\" does not exist in namespace \"team-a\": create the key first"
        ),
        "{message}"
    );
}
