//! Bad input gets exactly its expected outcome: every manifest in `bad_input/corpus/` is
//! applied to the emulator (which validates custom resources against the CRD
//! schema, CEL included) while a controller and a verifier run, and its
//! header says what must happen:
//!
//! ```text
//! # <what is wrong>
//! # expect: rejected <text of the API error>   refused at admission (422/400)
//! # expect: condition <Ready reason>           accepted; the Ready condition says why
//! # event: <reason>                            an Event with this reason (repeatable); no
//! #                                            Warning Event with any other reason
//! # rotations: <n>                             status.rotations at the end
//! # secret: absent | unchanged                 no Secret of that name / the Secret the
//! #                                            setup made is untouched
//! ```
//!
//! The last document of a file is the subject; earlier ones are set-up that
//! must be accepted (their ApiTokens settle before the subject is applied).
//! Each file runs in its own namespace (`bad-NN`) with an ApiKey `alice`.
//! Meanwhile an unrelated token must keep working (checked over HTTP every
//! 100 ms), the controller must not panic nor loop (no request in a quiet
//! window once all outcomes are reached) and must still issue new tokens.

mod claims;
mod corpus;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::support::isolated::Isolated;
use crate::support::*;
use apikey_operator::api::{ApiKey, ApiToken};
use apikey_operator::cli::apply::{ApplyError, apply_manifests};
use apikey_operator::token;
use corpus::{Case, Expect, SecretExpect, load_corpus};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const GOOD: &str = "good";
/// The namespace where `token-key-in-other-namespace.yaml` puts its key.
const ELSEWHERE: &str = "bad-input-elsewhere";

async fn apply(client: &Client, file: &str, doc: &Value) -> Result<(), ApplyError> {
    let yaml = serde_yaml::to_string(doc).expect("serializable");
    apply_manifests(client, file, &yaml).await.map(|_| ())
}

/// The stored object a document describes, if any.
async fn stored(client: &Client, doc: &Value) -> Option<DynamicObject> {
    let types = kube::core::TypeMeta {
        api_version: doc["apiVersion"].as_str()?.to_owned(),
        kind: doc["kind"].as_str()?.to_owned(),
    };
    let gvk = GroupVersionKind::try_from(&types).ok()?;
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk).await.ok()?;
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        doc["metadata"]["namespace"].as_str()?,
        &resource,
    );
    api.get_opt(doc["metadata"]["name"].as_str()?)
        .await
        .ok()
        .flatten()
}

fn ready_reason_of(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> Option<(String, String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// A label value the API server accepts.
fn valid_label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric())
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
}

/// What a Secret looked like, for `secret: unchanged`.
fn secret_fingerprint(s: &Secret) -> Value {
    json!({
        "uid": s.metadata.uid,
        "data": s.data,
        "labels": s.metadata.labels,
        "annotations": s.metadata.annotations,
        "ownerReferences": s.metadata.owner_references,
    })
}

/// Checks the outcome of an accepted case; `Err` says what is not (yet) right.
async fn check_condition(
    client: &Client,
    verifier: &InProcessVerifier,
    case: &Case,
    reason: &str,
    before_secret: Option<&Value>,
) -> Result<(), String> {
    let ns = &case.ns;
    let name = case.name();
    if case.kind() == "ApiKey" {
        let keys: Api<ApiKey> = Api::namespaced(client.clone(), ns);
        let key = keys.get(name).await.map_err(|e| e.to_string())?;
        let conditions = key.status.map(|s| s.conditions).unwrap_or_default();
        let (status, got, message) =
            ready_reason_of(&conditions).ok_or("no Ready condition yet")?;
        if got != reason || message.is_empty() {
            return Err(format!("Ready={status} reason {got}: {message}"));
        }
    } else {
        let tokens: Api<ApiToken> = Api::namespaced(client.clone(), ns);
        let t = tokens.get(name).await.map_err(|e| e.to_string())?;
        let status = t.status.clone().unwrap_or_default();
        let (ready, got, message) =
            ready_reason_of(&status.conditions).ok_or("no Ready condition yet")?;
        if got != reason || message.is_empty() {
            return Err(format!("Ready={ready} reason {got}: {message}"));
        }
        if status.observed_generation != t.metadata.generation {
            return Err("status does not describe the current generation yet".into());
        }
        if let Some(n) = case.rotations
            && status.rotations.unwrap_or(0) != n
        {
            return Err(format!("{:?} rotations, expected {n}", status.rotations));
        }
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        let secret = secrets
            .get_opt(&case.secret_name())
            .await
            .map_err(|e| e.to_string())?;
        if reason == "Issued" || reason == "Rotated" {
            if ready != "True" {
                return Err(format!("{reason} but Ready={ready}"));
            }
            let secret = secret.as_ref().ok_or("no Secret")?;
            let owned = secret
                .owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && Some(&o.uid) == t.metadata.uid.as_ref());
            if !owned {
                return Err("the Secret is not controlled by the token".into());
            }
            for (k, v) in secret.labels() {
                if !valid_label_value(v) {
                    return Err(format!("Secret label {k}={v:?} is not a valid label value"));
                }
            }
            let value = secret_value(secret, "token");
            let hash = token::hash_value(&value);
            if status.hash.as_deref() != Some(hash.as_str()) {
                return Err("the Secret's value does not hash to status.hash".into());
            }
            if verifier.verify(&value).is_err() {
                return Err("the verifier does not accept the value".into());
            }
        } else {
            if status.hash.is_some() {
                return Err(format!("{reason} but status records a value"));
            }
            if let Some(value) = secret
                .as_ref()
                .and_then(|s| s.data.as_ref()?.get("token").cloned())
                && let Ok(value) = String::from_utf8(value.0)
                && verifier
                    .verify(&value)
                    .is_ok_and(|id| id.api_token == name && &*id.namespace == ns.as_str())
            {
                return Err("the verifier accepts what is in the Secret as this token".into());
            }
        }
        match (&case.secret, secret) {
            (Some(SecretExpect::Absent), Some(_)) => return Err("a Secret exists".into()),
            (Some(SecretExpect::Unchanged), now) => {
                let now = now.as_ref().map(secret_fingerprint);
                if now.as_ref() != before_secret {
                    return Err(format!(
                        "the Secret changed: {before_secret:#?} -> {now:#?}"
                    ));
                }
            }
            _ => {}
        }
    }
    let events = events_for(client, ns, name).await;
    for wanted in &case.events {
        if !events.iter().any(|(_, r, _)| r == wanted) {
            return Err(format!("no {wanted} Event yet; events: {events:?}"));
        }
    }
    if let Some((_, r, note)) = events
        .iter()
        .find(|(ty, r, _)| ty == "Warning" && !case.events.contains(r))
    {
        return Err(format!("unexpected Warning Event {r}: {note}"));
    }
    Ok(())
}

#[test]
fn every_bad_manifest_gets_exactly_its_expected_outcome() {
    let test = Isolated::new();
    test.block_on(async {
        let corpus = load_corpus();
        assert!(corpus.len() >= 40, "only {} manifests", corpus.len());

        let cluster = Cluster::start(GOOD).await;
        let client = cluster.client.clone();
        let sent = Arc::new(AtomicU64::new(0));
        let operator = Operator::start(counting_client(&cluster.emulator.url(), sent.clone()));
        let verifier = InProcessVerifier::start(client.clone()).await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        for ns in std::iter::once(ELSEWHERE).chain(corpus.iter().map(|c| c.ns.as_str())) {
            namespaces
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace"),
                )
                .await
                .expect("namespace created");
        }

        // The unrelated token that must keep working throughout.
        let good_key = format!(
            "apiVersion: apikeys.dev/v1alpha1\nkind: ApiKey\nmetadata: {{name: alice, namespace: {GOOD}}}\nspec:\n  owner: {{kind: User, name: alice}}\n"
        );
        apply_manifests(&client, "good", &good_key)
            .await
            .expect("key");
        apply_manifests(
            &client,
            "good",
            &format!("apiVersion: apikeys.dev/v1alpha1\nkind: ApiToken\nmetadata: {{name: steady, namespace: {GOOD}}}\nspec:\n  apiKeyRef: {{name: alice}}\n"),
        )
        .await
        .expect("token");
        let good_tokens: Api<ApiToken> = cluster.api(GOOD);
        wait_for(
            &good_tokens,
            "steady",
            "Ready",
            token_condition("Ready", "True"),
        )
        .await;
        let good_secrets: Api<Secret> = cluster.api(GOOD);
        let steady = secret_value(&good_secrets.get("steady").await.expect("Secret"), "token");
        assert!(authenticated(verifier.addr, &steady).await);
        let stop = Arc::new(AtomicBool::new(false));
        let checker = tokio::spawn({
            let (stop, addr, steady) = (stop.clone(), verifier.addr, steady.clone());
            async move {
                let (mut checks, mut failures) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    checks += 1;
                    if !authenticated(addr, &steady).await {
                        failures += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                (checks, failures)
            }
        });

        // Every namespace gets the key `alice` the manifests refer to.
        for case in &corpus {
            apply_manifests(&client, &case.file, &good_key.replace(GOOD, &case.ns))
                .await
                .expect("key");
        }
        for case in &corpus {
            let keys: Api<ApiKey> = cluster.api(&case.ns);
            wait_for(&keys, "alice", "Ready", key_ready("True")).await;
        }

        // Apply: set-up first (must be accepted and settle), then the subject.
        let mut before_secrets: BTreeMap<String, Option<Value>> = BTreeMap::new();
        let mut before_objects: BTreeMap<String, Option<Value>> = BTreeMap::new();
        for case in &corpus {
            let (subject, setup) = case.docs.split_last().expect("docs");
            for doc in setup {
                apply(&client, &case.file, doc)
                    .await
                    .unwrap_or_else(|e| panic!("{}: set-up refused: {e}", case.file));
                if doc["kind"] == "ApiToken" {
                    let tokens: Api<ApiToken> = cluster.api(&case.ns);
                    let name = doc["metadata"]["name"].as_str().expect("name");
                    wait_for(
                        &tokens,
                        name,
                        "a settled Ready condition",
                        |t: Option<&ApiToken>| {
                            t.and_then(|t| t.status.as_ref()).is_some_and(|s| {
                                s.conditions
                                    .iter()
                                    .any(|c| c.type_ == "Ready" && c.reason != "Issuing")
                            })
                        },
                    )
                    .await;
                }
            }
            let secrets: Api<Secret> = cluster.api(&case.ns);
            let secret = secrets
                .get_opt(&case.secret_name())
                .await
                .expect("read Secret")
                .map(|s| secret_fingerprint(&s));
            before_secrets.insert(case.file.clone(), secret);
            let object = stored(&client, subject)
                .await
                .map(|o| serde_json::to_value(&o.data["spec"]).expect("spec"));
            before_objects.insert(case.file.clone(), object);
            let result = apply(&client, &case.file, subject).await;
            match (&case.expect, result) {
                (
                    Expect::Rejected(why),
                    Err(ApplyError::Apply {
                        source: kube::Error::Api(status),
                        ..
                    }),
                ) => {
                    assert!(
                        matches!(status.code, 400 | 422),
                        "{}: refused with {} rather than 400/422: {}",
                        case.file,
                        status.code,
                        status.message
                    );
                    assert!(
                        status.message.contains(why.as_str()),
                        "{}: refused, but the message does not say {why:?}: {}",
                        case.file,
                        status.message
                    );
                }
                (Expect::Rejected(why), other) => {
                    panic!("{}: expected a rejection ({why}), got {other:?}", case.file)
                }
                (Expect::Condition(_), Err(e)) => panic!("{}: refused: {e}", case.file),
                (Expect::Condition(_), Ok(())) => {}
            }
        }

        // Outcomes.
        let mut rejected = 0;
        for case in &corpus {
            match &case.expect {
                Expect::Rejected(_) => {
                    rejected += 1;
                    let now = stored(&client, case.subject())
                        .await
                        .map(|o| serde_json::to_value(&o.data["spec"]).expect("spec"));
                    assert_eq!(
                        &now, &before_objects[&case.file],
                        "{}: a refused manifest changed the stored object",
                        case.file
                    );
                }
                Expect::Condition(reason) => {
                    let before = before_secrets[&case.file].as_ref();
                    let deadline = tokio::time::Instant::now() + DEADLINE;
                    loop {
                        let last = match check_condition(&client, &verifier, case, reason, before).await
                        {
                            Ok(()) => break,
                            Err(why) => why,
                        };
                        assert!(
                            tokio::time::Instant::now() < deadline,
                            "{}: expected condition {reason}: {last}",
                            case.file
                        );
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }

        // No loop: once every outcome is reached, and the keys' token counts
        // (written at most once a second per key) have caught up, the controller
        // sends nothing (no retries, no rewrites, no event storms) for a while.
        let mut settled = sent.load(Ordering::Relaxed);
        let settle_deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let now = sent.load(Ordering::Relaxed);
            if now == settled {
                break;
            }
            assert!(
                tokio::time::Instant::now() < settle_deadline,
                "the controller never went quiet"
            );
            settled = now;
        }
        let errors_before = operator.handles.metrics.errors();
        let sent_before = sent.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let quiet_requests = sent.load(Ordering::Relaxed) - sent_before;
        assert_eq!(
            quiet_requests, 0,
            "the controller sent {quiet_requests} requests with nothing to do"
        );
        assert_eq!(operator.handles.metrics.errors(), errors_before);
        // And the outcomes held.
        for case in &corpus {
            if let Expect::Condition(reason) = &case.expect {
                check_condition(
                    &client,
                    &verifier,
                    case,
                    reason,
                    before_secrets[&case.file].as_ref(),
                )
                .await
                .unwrap_or_else(|why| panic!("{}: outcome changed: {why}", case.file));
            }
        }

        // Still reconciling: a new token is issued.
        apply_manifests(
            &client,
            "good",
            &format!("apiVersion: apikeys.dev/v1alpha1\nkind: ApiToken\nmetadata: {{name: after, namespace: {GOOD}}}\nspec:\n  apiKeyRef: {{name: alice}}\n"),
        )
        .await
        .expect("token");
        wait_for(
            &good_tokens,
            "after",
            "Ready",
            token_condition("Ready", "True"),
        )
        .await;
        let after = secret_value(&good_secrets.get("after").await.expect("Secret"), "token");
        assert!(authenticated(verifier.addr, &after).await);

        stop.store(true, Ordering::Relaxed);
        let (checks, failures) = checker.await.expect("checker");
        assert_eq!(
            failures, 0,
            "the unrelated token was rejected {failures} of {checks} times"
        );
        assert!(checks > 10, "only {checks} checks of the unrelated token");
        assert!(authenticated(verifier.addr, &steady).await);
        assert_eq!(
            secret_value(&good_secrets.get("steady").await.expect("Secret"), "token"),
            steady,
            "the unrelated token's value changed"
        );
        assert!(operator.is_running(), "the controller stopped");
        assert_eq!(test.panics(), 0, "something panicked");
        println!(
            "{} manifests: {rejected} rejected at admission, {} accepted with a condition; \
             {} reconcile errors in all, {checks} checks of the unrelated token",
            corpus.len(),
            corpus.len() - rejected,
            operator.handles.metrics.errors()
        );
    });
}
