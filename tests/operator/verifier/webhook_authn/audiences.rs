//! Audiences between the upstream server (`--api-audiences`) and the verifier, by the
//! TokenReview contract: the upstream sends its audiences in `spec.audiences` and accepts a
//! value only if `status.audiences` intersects them. A value valid for them authenticates; one
//! that is not is refused by the verifier and, when the verifier is not asked about audiences
//! (the front strips them), by the upstream code's own intersection.

use apikey_operator::api::ApiKey;
use apikey_operator::verifier::{DEFAULT_AUDIENCE, VerifierConfig};
use serde_json::json;

use super::front::{Front, Mode};
use super::{NS, Pki, RunningVerifier, doc_config, start_upstream, value_of, whoami};
use crate::support::*;

const API_AUDIENCE: &str = "https://api.example.test";

#[tokio::test]
async fn the_upstream_server_accepts_only_values_valid_for_its_audiences() {
    let pki = Pki::new("webhook-audiences");
    let cluster = Cluster::start(NS).await;
    let _operator = cluster.controller();
    let cfg = VerifierConfig {
        addr: "127.0.0.1:0".parse().expect("addr"),
        ..Default::default()
    };
    let verifier = RunningVerifier::start(cluster.client.clone(), cfg).await;
    let front = Front::start(&pki, verifier.addr).await;
    // No caching at all: every request is a TokenReview the front sees.
    let mut flags = doc_config::apiserver_flags("0s");
    flags.push(format!("--api-audiences={API_AUDIENCE}"));
    flags.push("--token-success-cache-ttl=0s".to_owned());
    let kubeconfig = doc_config::kubeconfig(front.addr, &pki.ca);
    let Some(upstream) = start_upstream("webhook audiences", &pki.dir, &kubeconfig, flags).await
    else {
        return;
    };

    create_key(&cluster.api(NS), "k", "User", "carol").await;
    create::<ApiKey>(
        &cluster.api(NS),
        &format!(
            "metadata: {{name: scoped-key}}\nspec: {{owner: {{kind: User, name: dave}}, \
             tokenDefaults: {{audiences: ['{API_AUDIENCE}', 'https://other.example.test']}}}}"
        ),
    )
    .await;
    let tokens = cluster.api(NS);
    create_token(
        &tokens,
        "listed",
        &format!("{{apiKeyRef: {{name: k}}, audiences: ['{API_AUDIENCE}']}}"),
    )
    .await;
    create_token(&tokens, "by-key", "{apiKeyRef: {name: scoped-key}}").await;
    // Valid for the verifier's default audience only, which is not this server's.
    create_token(&tokens, "defaulted", "{apiKeyRef: {name: k}}").await;
    create_token(
        &tokens,
        "elsewhere",
        "{apiKeyRef: {name: k}, audiences: ['https://billing.example.test']}",
    )
    .await;
    let listed = value_of(&cluster, "listed").await;
    let by_key = value_of(&cluster, "by-key").await;
    let defaulted = value_of(&cluster, "defaulted").await;
    let elsewhere = value_of(&cluster, "elsewhere").await;

    for (value, user) in [(&listed, "carol"), (&by_key, "dave")] {
        let info = whoami(&upstream, value)
            .await
            .unwrap_or_else(|code| panic!("{user}: {code}\n{}", upstream.server_log()));
        assert_eq!(info["username"], json!(user));
    }
    for value in [&defaulted, &elsewhere] {
        assert_eq!(whoami(&upstream, value).await, Err(401));
    }
    let exchanges = front.take_exchanges();
    assert_eq!(
        exchanges.len(),
        4,
        "one TokenReview per request: {exchanges:?}"
    );
    for exchange in &exchanges {
        assert_eq!(
            exchange.request["spec"]["audiences"],
            json!([API_AUDIENCE]),
            "the upstream server asks for its audiences"
        );
        let status = &exchange.answer.as_ref().expect("the verifier's answer")["status"];
        if status["authenticated"] == json!(true) {
            assert_eq!(
                status["audiences"],
                json!([API_AUDIENCE]),
                "the intersection"
            );
        } else {
            assert!(status["error"].is_string(), "{status}");
        }
    }

    // The verifier no longer asked about audiences: it answers with each value's own audiences,
    // and the upstream code intersects them with its own.
    front.set(Mode::StripAudiences);
    assert_eq!(
        whoami(&upstream, &listed)
            .await
            .map(|u| u["username"].clone()),
        Ok(json!("carol"))
    );
    for value in [&defaulted, &elsewhere] {
        assert_eq!(whoami(&upstream, value).await, Err(401));
    }
    let exchanges = front.take_exchanges();
    let answers: Vec<_> = exchanges
        .iter()
        .map(|e| {
            let status = &e.answer.as_ref().expect("answer")["status"];
            (status["authenticated"].clone(), status["audiences"].clone())
        })
        .collect();
    assert_eq!(
        answers,
        [
            (json!(true), json!([API_AUDIENCE])),
            (json!(true), json!([DEFAULT_AUDIENCE])),
            (json!(true), json!(["https://billing.example.test"])),
        ],
        "the verifier authenticated all three; the upstream refused the last two itself"
    );
}
