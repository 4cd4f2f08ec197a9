//! docs/verifier.md's webhook configuration, as written, in the upstream server: a valid value
//! authenticates as the identity the doc promises (seen by `kubectl auth whoami` and a kube
//! client), and malformed, unknown, expired, disabled and deleted-token values get 401.

use apikey_operator::api::ApiToken;
use apikey_operator::token::{TokenId, TokenKind, generate};
use apikey_operator::verifier::DEFAULT_AUDIENCE;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

use super::{
    NS, Pki, RunningVerifier, doc_config, kubectl_whoami, start_upstream, value_of, whoami,
};
use crate::support::*;

#[tokio::test]
async fn the_documented_configuration_authenticates_as_the_doc_promises() {
    let pki = Pki::new("webhook-identity");
    let cluster = Cluster::start(NS).await;
    let _operator = cluster.controller();
    let verifier = RunningVerifier::start_tls(cluster.client.clone(), &pki, &[]).await;
    // A kube-apiserver always has API audiences (its service account issuer by default); this
    // one has the usual one, the verifier's default audience.
    let mut flags = doc_config::apiserver_flags("2s");
    flags.push(format!("--api-audiences={DEFAULT_AUDIENCE}"));
    let kubeconfig = doc_config::kubeconfig(verifier.addr, &pki.ca);
    let Some(upstream) = start_upstream("webhook identity", &pki.dir, &kubeconfig, flags).await
    else {
        return;
    };

    create_key(&cluster.api(NS), "alice", "User", "alice@example.com").await;
    let laptop = create_token(&cluster.api(NS), "laptop", "{apiKeyRef: {name: alice}}").await;
    create(&cluster.api::<ServiceAccount>(NS), "metadata: {name: ci}").await;
    create_key(&cluster.api(NS), "ci", "ServiceAccount", "ci").await;
    let deploy = create_token(&cluster.api(NS), "deploy", "{apiKeyRef: {name: ci}}").await;

    let value = value_of(&cluster, "laptop").await;
    let user = kubectl_whoami(&upstream, &value)
        .await
        .unwrap_or_else(|e| panic!("kubectl auth whoami: {e}\n{}", upstream.server_log()));
    assert_eq!(
        user,
        json!({
            "username": "alice@example.com",
            "uid": laptop.metadata.uid.expect("uid"),
            "groups": ["system:authenticated"],
            "extra": {
                "apikeys.dev/apikey": ["alice"],
                "apikeys.dev/apitoken": ["laptop"],
                "apikeys.dev/namespace": [NS],
            },
        })
    );

    let value = value_of(&cluster, "deploy").await;
    let expected = json!({
        "username": format!("system:serviceaccount:{NS}:ci"),
        "uid": deploy.metadata.uid.expect("uid"),
        "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{NS}"), "system:authenticated"],
        "extra": {
            "apikeys.dev/apikey": ["ci"],
            "apikeys.dev/apitoken": ["deploy"],
            "apikeys.dev/namespace": [NS],
        },
    });
    assert_eq!(
        kubectl_whoami(&upstream, &value).await,
        Ok(expected.clone())
    );
    assert_eq!(whoami(&upstream, &value).await, Ok(expected));
}

#[tokio::test]
async fn refused_values_get_401_from_the_upstream_server() {
    let pki = Pki::new("webhook-refused");
    let cluster = Cluster::start(NS).await;
    let _operator = cluster.controller();
    let verifier = RunningVerifier::start_tls(cluster.client.clone(), &pki, &[]).await;
    let index = verifier.index.clone();
    let mut flags = doc_config::apiserver_flags("2s");
    flags.push(format!("--api-audiences={DEFAULT_AUDIENCE}"));
    let kubeconfig = doc_config::kubeconfig(verifier.addr, &pki.ca);
    let Some(upstream) = start_upstream("webhook refused", &pki.dir, &kubeconfig, flags).await
    else {
        return;
    };

    let tokens = cluster.api::<ApiToken>(NS);
    create_key(&cluster.api(NS), "k", "User", "bob").await;
    for (name, spec) in [
        (
            "brief",
            "{apiKeyRef: {name: k}, expiration: {lifetime: 3s}}",
        ),
        ("paused", "{apiKeyRef: {name: k}}"),
        ("gone", "{apiKeyRef: {name: k}}"),
    ] {
        create_token(&tokens, name, spec).await;
    }
    let expired = value_of(&cluster, "brief").await;
    let disabled = value_of(&cluster, "paused").await;
    let deleted = value_of(&cluster, "gone").await;
    // None of them has been through the upstream server yet: no cached answer.
    tokens
        .patch(
            "paused",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"disabled": true}})),
        )
        .await
        .expect("disable");
    tokens
        .delete("gone", &DeleteParams::default())
        .await
        .expect("delete");
    let unknown = generate(TokenKind::Personal, &TokenId::generate());
    let cases = [
        ("malformed", "akpat_not-a-token".to_owned()),
        ("unknown", unknown.expose_secret().to_owned()),
        ("expired", expired),
        ("disabled", disabled),
        ("deleted", deleted),
    ];
    for (case, value) in &cases {
        eventually(&format!("the verifier to refuse the {case} value"), || {
            let refused = index
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .verify(value, jiff::Timestamp::now())
                .is_err();
            async move { refused.then_some(()) }
        })
        .await;
        let out = kubectl_whoami(&upstream, value)
            .await
            .expect_err(&format!("the {case} value is refused"));
        assert!(
            out.contains("You must be logged in to the server (Unauthorized)"),
            "{case}: {out}"
        );
        assert_eq!(whoami(&upstream, value).await, Err(401), "{case}");
    }
}
