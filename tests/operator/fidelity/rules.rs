//! Our CRDs' validation rules answer the same in the emulator as upstream: creates of valid and
//! invalid ApiKeys and ApiTokens, the immutable owner, and the Table of ApiKeys, sent to both
//! servers and compared as the emulator's own fidelity suite compares (normalised, differences
//! allow-listed with a reason in `allowlist.md` beside this file).

use std::path::Path;

use axum::http::Method;
use serde_json::{Value, json};

use crate::support::upstream::differential::*;

const APIKEYS: &str = "/apis/apikeys.dev/v1alpha1/namespaces/fidelity/apikeys";
const APITOKENS: &str = "/apis/apikeys.dev/v1alpha1/namespaces/fidelity/apitokens";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_custom_resources_behave_as_upstream() {
    compare_with_upstream(
        "our_custom_resources_behave_as_upstream",
        run_suite,
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/operator/fidelity/allowlist.md"
        )),
    )
    .await;
}

/// The same sequence on any server; returns what it saw.
async fn run_suite(mut t: Target) -> Vec<Observation> {
    let crds: Vec<Value> = apikey_operator::api::crds()
        .into_iter()
        .map(|crd| serde_json::to_value(crd).expect("crd json"))
        .collect();
    install_crds(&t, &crds, &[APIKEYS, APITOKENS]).await;
    let key = |name: &str, spec: Value| {
        json!({"apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiKey",
                                                "metadata": {"name": name}, "spec": spec})
    };
    t.call("apikey-create", Method::POST, APIKEYS, JSON,
           Some(key("k1", json!({"owner": {"kind": "User", "name": "alice"}, "tags": {"team": "a"},
                                 "tokenDefaults": {"expiration": {"lifetime": "90d"}, "rotation": {"every": "30d"}}})))).await;
    t.call(
        "apikey-owner-immutable",
        Method::PATCH,
        &format!("{APIKEYS}/k1"),
        MERGE,
        Some(json!({"spec": {"owner": {"name": "bob"}}})),
    )
    .await;
    t.call("apikey-invalid", Method::POST, APIKEYS, JSON,
           Some(key("k2", json!({"owner": {"kind": "Robot", "name": ""},
                                 "tokenDefaults": {"expiration": {"lifetime": "90 days", "expiresAt": "2030-01-01T00:00:00Z"}}})))).await;
    t.call(
        "apitoken-create",
        Method::POST,
        APITOKENS,
        JSON,
        Some(
            json!({"apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken",
                       "metadata": {"name": "t1"}, "spec": {"apiKeyRef": {"name": "k1"}}}),
        ),
    )
    .await;
    t.call(
        "apitoken-invalid",
        Method::POST,
        APITOKENS,
        JSON,
        Some(
            json!({"apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken",
                       "metadata": {"name": "t2"}, "spec": {}}),
        ),
    )
    .await;
    // A property set to null is absent to the rules: one of lifetime and expiresAt with the
    // other null is accepted; only a null one is "neither". Mistyped values are answered in
    // words. (Helm renders unset values as null.)
    let token = |name: &str, spec: Value| {
        json!({"apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken",
               "metadata": {"name": name}, "spec": spec})
    };
    for (call, name, expiration) in [
        (
            "apitoken-expiration-other-null",
            "t3",
            json!({"expiresAt": "2030-01-01T00:00:00Z", "lifetime": null}),
        ),
        (
            "apitoken-expiration-only-null",
            "t4",
            json!({"lifetime": null}),
        ),
        (
            "apitoken-expiration-both",
            "t5",
            json!({"expiresAt": "2030-01-01T00:00:00Z", "lifetime": "90d"}),
        ),
        (
            "apitoken-lifetime-in-words",
            "t6",
            json!({"lifetime": "90days"}),
        ),
    ] {
        let spec = json!({"apiKeyRef": {"name": "k1"}, "expiration": expiration});
        t.call(call, Method::POST, APITOKENS, JSON, Some(token(name, spec)))
            .await;
    }
    t.call_accept("apikey-table", Method::GET, APIKEYS, JSON, TABLE, None)
        .await;
    t.seen
}
