//! Bounded rotation: `rotation.every` at least a minute, a grace period shorter than the period
//! (refused by the CRD, and by the controller for what got in anyway or comes from the key's
//! defaults), and `status.previous` capped.

use super::*;
use apikey_operator::api::{ApiKey, ApiToken, MAX_PREVIOUS, ROTATE_ANNOTATION};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use serde_json::json;

/// Through the API: a rotation period under a minute, and a grace period
/// not shorter than the period, are refused with a message that says why;
/// on a token and on a key's defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_rotation_is_refused_at_admission() {
    const NS: &str = "rotation-admission";
    let cluster = Cluster::start(NS).await;
    let tokens = cluster.api::<ApiToken>(NS);
    let keys = cluster.api::<ApiKey>(NS);
    for every in ["1s", "59s", "0m30s", "0m", "0h0m"] {
        let message = refused(
            &tokens,
            &format!("metadata: {{name: t}}\nspec: {{apiKeyRef: {{name: k}}, rotation: {{every: {every}}}}}"),
        )
        .await;
        assert!(message.contains("at least 1m"), "{every}: {message}");
    }
    for (every, grace) in [("1h", "100w"), ("1h", "1h"), ("30m", "2h"), ("2h", "1d")] {
        let message = refused(
            &tokens,
            &format!(
                "metadata: {{name: t}}\nspec: {{apiKeyRef: {{name: k}}, rotation: {{every: {every}, gracePeriod: {grace}}}}}"
            ),
        )
        .await;
        assert!(
            message.contains("shorter than rotation.every"),
            "{every}/{grace}: {message}"
        );
    }
    let message = refused(
        &keys,
        "metadata: {name: k}\nspec: {owner: {kind: User, name: u}, tokenDefaults: {rotation: {every: 1h, gracePeriod: 100w}}}",
    )
    .await;
    assert!(message.contains("shorter than rotation.every"), "{message}");
    let message = refused(
        &keys,
        "metadata: {name: k}\nspec: {owner: {kind: User, name: u}, tokenDefaults: {rotation: {every: 1s}}}",
    )
    .await;
    assert!(message.contains("at least 1m"), "{message}");
    // Bounded rotations still go in.
    create_token(
        &tokens,
        "ok",
        "{apiKeyRef: {name: k}, rotation: {every: 1m, gracePeriod: 30s}}",
    )
    .await;
    create_token(
        &tokens,
        "daily",
        "{apiKeyRef: {name: k}, rotation: {every: 1d, gracePeriod: 23h}}",
    )
    .await;
    create_token(
        &tokens,
        "zero",
        "{apiKeyRef: {name: k}, rotation: {every: 1h, gracePeriod: 0s}}",
    )
    .await;
}

/// Stored anyway (the CRD applied without its rules), or combined with the
/// key's defaults where no rule can see both: Ready=False, InvalidSpec, and
/// no value is issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_rotation_that_got_in_is_invalid_spec() {
    const NS: &str = "rotation-stored";
    let cluster = Cluster::start(NS).await;
    let (with_rules, without_rules) = crd_with_and_without_rules("ApiToken");
    apply_crd(&cluster, without_rules).await;
    let tokens = cluster.api::<ApiToken>(NS);
    create(
        &cluster.api::<ApiKey>(NS),
        "metadata: {name: k}\nspec: {owner: {kind: User, name: u}, tokenDefaults: {rotation: {every: 1h}}}",
    )
    .await;
    create_token(
        &tokens,
        "fast",
        "{apiKeyRef: {name: k}, rotation: {every: 1s}}",
    )
    .await;
    create_token(
        &tokens,
        "wide",
        "{apiKeyRef: {name: k}, rotation: {every: 1h, gracePeriod: 100w}}",
    )
    .await;
    apply_crd(&cluster, with_rules).await;
    // Grace from the token, period from the key: only the controller sees both.
    create_token(
        &tokens,
        "mixed",
        "{apiKeyRef: {name: k}, rotation: {gracePeriod: 2h}}",
    )
    .await;
    let _operator = cluster.controller();
    for (name, says) in [
        ("fast", "minimum rotation period"),
        ("wide", "must be shorter than the rotation period"),
        ("mixed", "must be shorter than the rotation period"),
    ] {
        let token = wait_for(&tokens, name, "InvalidSpec", token_reason("InvalidSpec")).await;
        let status = token.status.expect("status");
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready");
        assert!(ready.message.contains(says), "{name}: {}", ready.message);
        assert_eq!(status.hash, None, "{name}: no value");
    }
}

/// `status.previous` never holds more than `MAX_PREVIOUS` entries: requested
/// rotations inside one grace period drop the oldest first, and the CRD
/// refuses a longer list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_values_are_capped() {
    const NS: &str = "rotation-cap";
    let cluster = Cluster::start(NS).await;
    let tokens = cluster.api::<ApiToken>(NS);
    let secrets = cluster.api::<Secret>(NS);
    create_key(&cluster.api(NS), "k", "User", "u").await;
    create_token(
        &tokens,
        "t",
        "{apiKeyRef: {name: k}, rotation: {gracePeriod: 1h}}",
    )
    .await;
    let _operator = cluster.controller();
    eventually("a first value", || {
        settled_with_value(&tokens, &secrets, "t")
    })
    .await;
    let mut hashes = Vec::new();
    for request in 0..MAX_PREVIOUS + 3 {
        let patch =
            json!({"metadata": {"annotations": {ROTATE_ANNOTATION: format!("r{request}")}}});
        tokens
            .patch("t", &PatchParams::default(), &Patch::Merge(patch))
            .await
            .expect("rotation requested");
        let (token, _) = eventually("the rotation", || {
            settled_with_value(&tokens, &secrets, "t")
        })
        .await;
        let status = token.status.expect("status");
        assert!(
            status.previous.len() <= MAX_PREVIOUS,
            "{} previous",
            status.previous.len()
        );
        hashes.push(status.hash.expect("hash"));
    }
    let token = tokens.get("t").await.expect("token");
    let previous: Vec<String> = token
        .status
        .expect("status")
        .previous
        .into_iter()
        .map(|p| p.hash)
        .collect();
    // The newest ten earlier values, oldest first.
    let n = hashes.len();
    assert_eq!(previous, hashes[n - 1 - MAX_PREVIOUS..n - 1].to_vec());

    let eleven: Vec<_> = (0..=MAX_PREVIOUS)
        .map(|i| json!({"hash": format!("sha256:{i:064x}"), "validUntil": "2030-01-01T00:00:00Z"}))
        .collect();
    let err = tokens
        .patch_status(
            "t",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"previous": eleven}})),
        )
        .await
        .expect_err("more than the cap is refused");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422),
        "{err:?}"
    );
}
