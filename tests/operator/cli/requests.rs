//! `rotate` and `revoke` as the real binary runs them: a revocation refuses every earlier
//! value and says what became of the token; a rotation of a token that cannot rotate fails at
//! once with the token's condition.

use super::commands::*;
use crate::support::*;
use apikey_operator::api::ApiToken;
use apikey_operator::token;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_refuses_every_earlier_value_and_says_what_became_of_the_token() {
    let s = setup().await;
    let tokens = s.cluster.api::<ApiToken>(NS);
    create_token(
        &tokens,
        "leaked",
        "{apiKeyRef: {name: ci-bot}, rotation: {gracePeriod: 1h}}",
    )
    .await;
    create_token(
        &tokens,
        "parked",
        "{apiKeyRef: {name: ci-bot}, disabled: true}",
    )
    .await;
    ready_token(&tokens, "leaked").await;
    apikey_operator::cli::rotate(s.cluster.client.clone(), NS, "leaked", "r1", Some(DEADLINE))
        .await
        .expect("rotated");
    let before = tokens.get("leaked").await.expect("token");
    assert_eq!(before.status.as_ref().map(|s| s.previous.len()), Some(1));

    // revoke, without -n: the context's namespace; waits and says where the fresh value is.
    let out = run(
        &s.kubeconfig_in_ns,
        &["revoke", "leaked", "--request", "leak-1"],
    )
    .await;
    assert_eq!(
        ok(&out, "revoke").trim(),
        format!(
            "apitoken {NS}/leaked: revoked (leak-1); every earlier value is refused, a fresh \
             value is in Secret {NS}/leaked"
        )
    );
    let after = tokens.get("leaked").await.expect("token");
    let status = after.status.as_ref().expect("status");
    assert_eq!(
        status
            .last_revocation_request
            .as_deref()
            .map(String::as_str),
        Some("leak-1")
    );
    assert!(status.previous.is_empty(), "no earlier value stays valid");
    assert_ne!(
        status.hash,
        before.status.as_ref().and_then(|s| s.hash.clone())
    );
    let value = secret_value(
        &s.cluster
            .api::<Secret>(NS)
            .get("leaked")
            .await
            .expect("Secret"),
        "token",
    );
    assert_eq!(
        Some(token::hash_value(&value).as_str()),
        status.hash.as_deref(),
        "the Secret holds the fresh value"
    );
    let detail = ok(
        &run(&s.kubeconfig_in_ns, &["status", "leaked"]).await,
        "status",
    );
    assert!(
        detail
            .lines()
            .any(|l| l.trim_end() == format!("{:<16}on request \"leak-1\"", "Last revoked:")),
        "{detail}"
    );

    // The same request value again: refused, with what to do.
    let again = run(
        &s.kubeconfig,
        &["revoke", "leaked", "-n", NS, "--request", "leak-1"],
    )
    .await;
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("pass another --request"),
        "{}",
        stderr(&again)
    );
    let unchanged = tokens.get("leaked").await.expect("token");
    assert_eq!(
        unchanged.status.as_ref().and_then(|s| s.hash.clone()),
        status.hash
    );

    // Without --request (the current time): a new request, revoked again.
    let out = run(&s.kubeconfig, &["revoke", "leaked", "-n", NS]).await;
    assert!(
        ok(&out, "revoke").contains(": revoked ("),
        "{}",
        stdout(&out)
    );
    let newest = tokens.get("leaked").await.expect("token");
    assert_ne!(
        newest.status.as_ref().and_then(|s| s.hash.clone()),
        status.hash
    );

    // A disabled token: revoked, and it says why no value is issued.
    let out = run(
        &s.kubeconfig,
        &["revoke", "parked", "-n", NS, "--request", "leak-2"],
    )
    .await;
    let said = ok(&out, "revoke of a disabled token");
    assert!(
        said.contains("no value is issued for now (Disabled: "),
        "{said}"
    );

    // A token that does not exist.
    let missing = run(&s.kubeconfig, &["revoke", "nope", "-n", NS]).await;
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains(&format!("ApiToken {NS}/nope not found")),
        "{}",
        stderr(&missing)
    );
}

/// `rotate` on a token the operator will not rotate fails at once with the
/// token's own words and sets nothing; without `-n` it uses the context's
/// namespace; a request value already acted on is refused, not reported done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_fails_at_once_when_the_token_cannot_rotate() {
    let s = setup().await;
    let tokens = s.cluster.api::<ApiToken>(NS);
    let blocked = [
        (
            "parked",
            "{apiKeyRef: {name: ci-bot}, disabled: true}",
            "Disabled",
        ),
        (
            "muddled",
            "{apiKeyRef: {name: ci-bot}, expiration: {lifetime: 1h}, rotation: {renewBefore: 2h}}",
            "InvalidSpec",
        ),
        ("orphan", "{apiKeyRef: {name: nobody}}", "ApiKeyNotFound"),
        (
            "bygone",
            "{apiKeyRef: {name: ci-bot}, expiration: {expiresAt: \"2020-01-01T00:00:00Z\"}}",
            "Expired",
        ),
    ];
    for (name, spec, _) in blocked {
        create_token(&tokens, name, spec).await;
    }
    for (name, _, why) in blocked {
        wait_for(&tokens, name, why, token_reason(why)).await;
    }
    for (name, _, why) in blocked {
        let said = fails_at_once(&s.kubeconfig_in_ns, &["rotate", name, "--wait", "20"]).await;
        assert!(
            said.contains(&format!("ApiToken {NS}/{name} is not rotated: {why}: ")),
            "{name}: {said}"
        );
        let token = tokens.get(name).await.expect("token");
        assert!(
            !token
                .annotations()
                .contains_key(apikey_operator::api::ROTATE_ANNOTATION),
            "{name}: the request was set anyway"
        );
    }

    // The context's namespace without -n; the same request value twice is refused.
    create_token(&tokens, "fresh", "{apiKeyRef: {name: ci-bot}}").await;
    ready_token(&tokens, "fresh").await;
    let out = run(&s.kubeconfig_in_ns, &["rotate", "fresh", "--request", "r1"]).await;
    assert_eq!(
        ok(&out, "rotate without -n").trim(),
        format!(
            "apitoken {NS}/fresh: rotated (r1); a fresh value is in Secret {NS}/fresh; no \
             earlier value is accepted"
        )
    );
    let rotated = tokens.get("fresh").await.expect("token");
    assert_eq!(rotated.status.as_ref().and_then(|s| s.rotations), Some(1));
    let again = run(&s.kubeconfig_in_ns, &["rotate", "fresh", "--request", "r1"]).await;
    assert!(!again.status.success(), "{}", stdout(&again));
    assert!(
        stderr(&again).contains("rotate request \"r1\" was acted on before")
            && stderr(&again).contains("pass another --request"),
        "{}",
        stderr(&again)
    );
    let after = tokens.get("fresh").await.expect("token");
    assert_eq!(after.status.as_ref().and_then(|s| s.rotations), Some(1));
}
