//! Reliability under API trouble (issue 8, items 2 and 3): an API outage,
//! and conflicting writers on an ApiToken and its Secret. The controller
//! runs in this process so its request and error counters can be read; see
//! docs/reliability.md for what each test proves and the soak variants.

mod crash;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;
use apikey_operator::api::{ApiKey, ApiToken, ROTATE_ANNOTATION};
use apikey_operator::token;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

async fn create_key(cluster: &Cluster, ns: &str) {
    let key: ApiKey = apply_yaml("metadata: {name: k}\nspec: {owner: {kind: User, name: u}}");
    cluster
        .api::<ApiKey>(ns)
        .create(&PostParams::default(), &key)
        .await
        .expect("key");
}

async fn create_token(cluster: &Cluster, ns: &str, name: &str, spec: &str) {
    let token: ApiToken = apply_yaml(&format!("metadata: {{name: {name}}}\nspec: {spec}\n"));
    cluster
        .api::<ApiToken>(ns)
        .create(&PostParams::default(), &token)
        .await
        .expect("token");
}

/// Waits until the token is Ready with no pending value, every spec change
/// and rotate request handled, and the Secret holding the recorded value.
async fn settled(cluster: &Cluster, ns: &str, name: &str, within: Duration) -> (ApiToken, String) {
    let tokens = cluster.api::<ApiToken>(ns);
    let secrets = cluster.api::<Secret>(ns);
    eventually_within(&format!("{name} to settle"), within, || {
        let (tokens, secrets) = (tokens.clone(), secrets.clone());
        async move {
            let token = tokens.get(name).await.ok()?;
            let status = token.status.as_ref()?;
            let ready = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let request = token.annotations().get(ROTATE_ANNOTATION);
            if !ready
                || status.pending.is_some()
                || status.observed_generation != token.metadata.generation
                || (request.is_some() && request != status.last_rotation_request.as_ref())
            {
                return None;
            }
            let secret = secrets.get(status.secret_name.as_deref()?).await.ok()?;
            let value = String::from_utf8(secret.data?.get("token")?.0.clone()).ok()?;
            (Some(token::hash_value(&value).as_str()) == status.hash.as_deref())
                .then_some((token, value))
        }
    })
    .await
}

fn rotations(token: &ApiToken) -> i64 {
    token.status.as_ref().and_then(|s| s.rotations).unwrap_or(0)
}

/// The API server is unreachable for a while (6 s; 30 s with APIKEY_SOAK=1):
/// the controller backs off (its requests during the outage are counted and
/// bounded), recovers on its own, and the verifier answers from its index
/// throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_outage_backs_off_recovers_and_the_verifier_keeps_answering() {
    const NS: &str = "outage";
    let window = if soak() {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(6)
    };
    let cluster = Cluster::start(NS).await;
    let sent = Arc::new(AtomicU64::new(0));
    let operator = Operator::start(counting_client(&cluster.emulator.url(), sent.clone()));
    let verifier = InProcessVerifier::start(cluster.client.clone()).await;
    create_key(&cluster, NS).await;
    const STEADY: usize = 5;
    for i in 0..STEADY {
        create_token(
            &cluster,
            NS,
            &format!("steady{i}"),
            "{apiKeyRef: {name: k}}",
        )
        .await;
    }
    // Due for rotation every 2 s: the controller has work to fail at during the outage.
    create_token(
        &cluster,
        NS,
        "busy",
        "{apiKeyRef: {name: k}, rotation: {every: 2s, gracePeriod: 1h}}",
    )
    .await;
    let mut values = Vec::new();
    for i in 0..STEADY {
        values.push(
            settled(&cluster, NS, &format!("steady{i}"), DEADLINE)
                .await
                .1,
        );
    }
    for v in &values {
        eventually("the verifier to accept the values", || async {
            authenticated(verifier.addr, v).await.then_some(())
        })
        .await;
    }

    let sent_before = sent.load(Ordering::Relaxed);
    let served_before = cluster.emulator.stats();
    let errors_before = operator.handles.stats.errors();
    cluster.emulator.set_available(false);
    let started = Instant::now();
    let mut answers = 0;
    let mut sent_first_half = None;
    while started.elapsed() < window {
        for v in &values {
            assert!(
                authenticated(verifier.addr, v).await,
                "the verifier rejected a valid value during the outage"
            );
            answers += 1;
        }
        let (status, _, _) = http::request(verifier.addr, "GET", "/readyz", &[], "").await;
        assert_eq!(status, 200, "the verifier stays ready during the outage");
        if sent_first_half.is_none() && started.elapsed() >= window / 2 {
            sent_first_half = Some(sent.load(Ordering::Relaxed) - sent_before);
        }
        // Pacing of the client's checks, not a wait for a condition.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let during = sent.load(Ordering::Relaxed) - sent_before;
    let errors = operator.handles.stats.errors() - errors_before;
    let first_half = sent_first_half.unwrap_or(during);
    let refused = cluster.emulator.stats() - served_before;
    cluster.emulator.set_available(true);
    // The emulator counts refused requests too (the verifier's included).
    let refused_total = refused.get + refused.list + refused.watch + refused.writes;
    assert!(
        refused_total >= during,
        "the emulator counted {refused_total} requests during the outage, the controller sent {during}"
    );
    let recovered_at = Instant::now();
    println!(
        "outage of {window:?}: {during} controller requests ({first_half} in the first half), \
         {errors} reconcile errors, {answers} verifier answers"
    );

    // Backoff: six watches (ApiToken ×2, ApiKey ×2, Secret, ServiceAccount)
    // retry from 0.8 s doubling, one token is due every 2 s and retries from
    // 1 s doubling; with jitter that is about log2(window) attempts each.
    // Flat 1 s retries would send at least 7 × window-in-seconds requests.
    let attempts = (window.as_secs_f64() / 0.8).log2().ceil() as u64 + 2;
    let bound = 7 * attempts * 2;
    assert!(
        during <= bound,
        "{during} requests during a {window:?} outage (bound {bound}): no backoff"
    );
    assert!(
        errors <= attempts * 2,
        "{errors} reconcile errors during a {window:?} outage: the busy token does not back off"
    );
    assert!(
        during - first_half <= first_half.max(7),
        "the request rate did not fall during the outage: {first_half} then {}",
        during - first_half
    );

    // Recovery without help: the busy token rotates again, a new token is issued,
    // within the watches' largest backoff (30 s) plus the usual deadline.
    let recovery = Duration::from_secs(30) + DEADLINE;
    let before = rotations(&cluster.api::<ApiToken>(NS).get("busy").await.expect("busy"));
    create_token(&cluster, NS, "after", "{apiKeyRef: {name: k}}").await;
    let (_, fresh) = settled(&cluster, NS, "after", recovery).await;
    let tokens = cluster.api::<ApiToken>(NS);
    eventually_within("the busy token to rotate again", recovery, || async {
        let t = tokens.get("busy").await.ok()?;
        (rotations(&t) > before).then_some(())
    })
    .await;
    eventually("the verifier to accept the new token", || async {
        authenticated(verifier.addr, &fresh).await.then_some(())
    })
    .await;
    println!("recovered in {:?}", recovered_at.elapsed());
    operator.stop().await;
}

fn template_annotation(d: &Deployment, key: &str) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(key)
        .cloned()
}

/// Concurrent edits of an ApiToken's spec (merge patches and full replaces)
/// and rotate requests, while a second writer keeps changing the token's
/// Secret: no update is lost, the reconcile errors stay bounded and stop,
/// and the restart target is rolled once per new value, then left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_lose_no_update_and_cause_no_loops() {
    const NS: &str = "conflicts";
    const TARGET: &str = "consumer";
    let rounds = if soak() { 400 } else { 60 };
    let cluster = Cluster::start(NS).await;
    let operator = cluster.controller();
    let verifier = InProcessVerifier::start(cluster.client.clone()).await;
    create_key(&cluster, NS).await;
    let deployment: Deployment = apply_yaml(&format!(
        "metadata: {{name: {TARGET}}}\nspec:\n  selector: {{matchLabels: {{app: c}}}}\n  template:\n    metadata: {{labels: {{app: c}}}}\n    spec: {{containers: [{{name: c, image: busybox}}]}}\n"
    ));
    let deployments = cluster.api::<Deployment>(NS);
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("deployment");
    create_token(
        &cluster,
        NS,
        "edited",
        &format!(
            "{{apiKeyRef: {{name: k}}, rotation: {{gracePeriod: 1h, restartTargets: [{{kind: Deployment, name: {TARGET}}}]}}}}"
        ),
    )
    .await;
    settled(&cluster, NS, "edited", DEADLINE).await;
    let errors_before = operator.handles.stats.errors();

    // Record every distinct value of the restart annotation and of status.hash.
    let annotation = "token-hash.apikeys.dev/edited";
    let rolls = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let hashes = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let watch_rolls = {
        let (deployments, rolls) = (deployments.clone(), rolls.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(d) = deployments.get(TARGET).await
                    && let Some(v) = template_annotation(&d, annotation)
                {
                    let mut rolls = rolls.lock().expect("rolls");
                    if rolls.last() != Some(&v) {
                        rolls.push(v);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let tokens = cluster.api::<ApiToken>(NS);
    let watch_hashes = {
        let (tokens, hashes) = (tokens.clone(), hashes.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(t) = tokens.get("edited").await
                    && let Some(h) = t.status.and_then(|s| s.hash)
                {
                    let mut hashes = hashes.lock().expect("hashes");
                    if !hashes.contains(&h) {
                        hashes.push(h);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    // Writer 1: edits the spec by merge patch and by full replace (kubectl
    // edit: read, change, write with the read resourceVersion), and requests
    // a rotation every 10th round.
    let spec_editor = {
        let tokens = tokens.clone();
        tokio::spawn(async move {
            let mut triggers = 0u32;
            let mut conflicts = 0u32;
            for i in 0..rounds {
                if i % 10 == 5 {
                    let patch =
                        json!({"metadata": {"annotations": {ROTATE_ANNOTATION: format!("r{i}")}}});
                    tokens
                        .patch("edited", &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .expect("rotate request");
                    triggers += 1;
                } else if i % 2 == 0 {
                    let patch = json!({"spec": {"displayName": format!("edit {i}"), "tags": {format!("t{i}"): "x"}}});
                    tokens
                        .patch("edited", &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .expect("spec patch");
                } else {
                    loop {
                        let mut t = tokens.get("edited").await.expect("get");
                        t.spec.description = Some(format!("replaced {i}"));
                        t.spec.tags.insert(format!("t{i}"), "x".into());
                        match tokens.replace("edited", &PostParams::default(), &t).await {
                            Ok(_) => break,
                            Err(kube::Error::Api(s)) if s.code == 409 => conflicts += 1,
                            Err(e) => panic!("replace: {e}"),
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            (triggers, conflicts)
        })
    };
    // Writer 2: another tool annotating the Secret, by merge patch and by
    // full replace with the read resourceVersion.
    let secret_writer = {
        let secrets = cluster.api::<Secret>(NS);
        tokio::spawn(async move {
            let mut conflicts = 0u32;
            for i in 0..rounds {
                if i % 2 == 0 {
                    let patch = json!({"metadata": {"annotations": {"other.example/seen": i.to_string()}, "labels": {"other.example/team": "a"}}});
                    secrets
                        .patch(
                            "edited",
                            &PatchParams::apply("other-tool").force(),
                            &Patch::Apply(&json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "edited", "annotations": {"other.example/applied": i.to_string()}}})),
                        )
                        .await
                        .expect("apply by another manager");
                    secrets
                        .patch("edited", &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .expect("secret patch");
                } else {
                    loop {
                        let Ok(mut s) = secrets.get("edited").await else {
                            break;
                        };
                        s.annotations_mut()
                            .insert("other.example/replaced".into(), i.to_string());
                        match secrets.replace("edited", &PostParams::default(), &s).await {
                            Ok(_) => break,
                            Err(kube::Error::Api(s)) if s.code == 409 => conflicts += 1,
                            Err(e) => panic!("replace Secret: {e}"),
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            conflicts
        })
    };
    let (triggers, spec_conflicts) = spec_editor.await.expect("spec editor");
    let secret_conflicts = secret_writer.await.expect("secret writer");

    let (token, value) = settled(&cluster, NS, "edited", DEADLINE).await;
    // No lost update: the last edit of each writer is there.
    let last_even = (0..rounds)
        .rev()
        .find(|i| i % 2 == 0 && i % 10 != 5)
        .expect("even");
    let last_odd = (0..rounds)
        .rev()
        .find(|i| i % 2 == 1 && i % 10 != 5)
        .expect("odd");
    assert_eq!(
        token.spec.display_name.as_deref(),
        Some(format!("edit {last_even}").as_str())
    );
    assert_eq!(
        token.spec.description.as_deref(),
        Some(format!("replaced {last_odd}").as_str())
    );
    let expected_tags = (0..rounds).filter(|i| i % 10 != 5).count();
    assert_eq!(token.spec.tags.len(), expected_tags, "every tag edit kept");
    let secret = cluster
        .api::<Secret>(NS)
        .get("edited")
        .await
        .expect("Secret");
    let notes = secret.annotations();
    assert_eq!(
        notes.get("other.example/seen").map(String::as_str),
        Some(last_even.to_string().as_str()),
        "the other writer's annotation survives the operator's writes"
    );
    assert_eq!(
        notes.get("other.example/replaced").map(String::as_str),
        Some(last_odd.to_string().as_str())
    );
    assert!(
        secret.labels().contains_key("other.example/team"),
        "{:?}",
        secret.labels()
    );

    // Rotations: at most one per request, and the last request was answered.
    let made = i64::from(triggers);
    assert!(
        (1..=made).contains(&rotations(&token)),
        "{} rotations for {made} requests",
        rotations(&token)
    );
    // Nothing but the rotations changed the value: the second writer never
    // looked like tampering.
    let events = events_for(&cluster.client, NS, "edited").await;
    assert!(
        !events.iter().any(|(_, reason, _)| reason == "Reissued"),
        "{events:?}"
    );

    // Quiet: no writes, no errors, no roll for a while after the writers stopped.
    let writes_before = cluster.emulator.stats().writes;
    let errors_after_writers = operator.handles.stats.errors();
    let rv = deployments
        .get(TARGET)
        .await
        .expect("deployment")
        .resource_version();
    // A quiet period is the absence of events, so it is waited out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    watch_rolls.abort();
    watch_hashes.abort();
    let quiet_writes = cluster.emulator.stats().writes - writes_before;
    assert_eq!(quiet_writes, 0, "writes in a steady state");
    assert_eq!(
        operator.handles.stats.errors(),
        errors_after_writers,
        "errors after the writers stopped: an error loop"
    );
    assert_eq!(
        deployments
            .get(TARGET)
            .await
            .expect("deployment")
            .resource_version(),
        rv,
        "the restart target keeps being changed: a restart loop"
    );
    let errors = operator.handles.stats.errors() - errors_before;
    // Each conflicting write costs at most a retry or two.
    let bound = u64::from(spec_conflicts + secret_conflicts) + rounds as u64;
    assert!(errors <= bound, "{errors} reconcile errors (bound {bound})");

    let rolls = rolls.lock().expect("rolls").clone();
    let hashes = hashes.lock().expect("hashes").clone();
    let distinct: HashSet<&String> = rolls.iter().collect();
    assert_eq!(
        distinct.len(),
        rolls.len(),
        "rolled back to an old value: {rolls:?}"
    );
    assert!(
        rolls.len() <= hashes.len(),
        "{} rolls for {} values",
        rolls.len(),
        hashes.len()
    );
    for r in &rolls {
        assert!(
            hashes
                .iter()
                .any(|h| h.trim_start_matches("sha256:").starts_with(r.as_str())),
            "rolled onto {r}, not a recorded value"
        );
    }
    eventually("the verifier to accept the final value", || async {
        authenticated(verifier.addr, &value).await.then_some(())
    })
    .await;
    println!(
        "{rounds} rounds: {triggers} rotate requests, {} rotations, {} rolls, {errors} errors, \
         {spec_conflicts}+{secret_conflicts} writer conflicts",
        rotations(&token),
        rolls.len()
    );
    operator.stop().await;
}

/// The CRD of `kind` as generated, and as an older release had it: without
/// the pattern on its times (stored values then stay when the pattern
/// comes: the API server ratchets unchanged values).
fn crd_now_and_before(kind: &str) -> (serde_json::Value, serde_json::Value) {
    fn unbound(v: &mut serde_json::Value) {
        if let Some(map) = v.as_object_mut() {
            if map.get("format").and_then(|f| f.as_str()) == Some("date-time") {
                map.remove("pattern");
            }
            map.values_mut().for_each(unbound);
        } else if let Some(list) = v.as_array_mut() {
            list.iter_mut().for_each(unbound);
        }
    }
    let current = apikey_operator::api::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .expect("the CRD");
    let current = serde_json::to_value(&current).expect("CRD as JSON");
    let mut old = current.clone();
    unbound(&mut old);
    (current, old)
}

async fn apply_crd(cluster: &Cluster, crd: serde_json::Value) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(cluster.client.clone());
    let name = crd["metadata"]["name"].as_str().expect("name").to_owned();
    crds.patch(
        &name,
        &PatchParams::apply("upgrade-test").force(),
        &Patch::Apply(crd),
    )
    .await
    .expect("CRD applied");
}

/// The same for an ApiKey: while it cannot be read its tokens' values are
/// rejected by the verifier, but not removed or replaced (it is not
/// deleted); once corrected, every token has its old value back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apikey_the_types_cannot_read_keeps_its_tokens_values() {
    use kube::api::{Api, DynamicObject};

    const NS: &str = "upgrade-key";
    let cluster = Cluster::start(NS).await;
    let (current, old) = crd_now_and_before("ApiKey");
    let old_crd = old.clone();
    apply_crd(&cluster, old).await;
    let operator = cluster.controller();
    let verifier = InProcessVerifier::start(cluster.client.clone()).await;
    create_key(&cluster, NS).await;
    create_token(&cluster, NS, "t", "{apiKeyRef: {name: k}}").await;
    let (_, value) = settled(&cluster, NS, "t", DEADLINE).await;
    eventually("the verifier to accept the value", || async {
        verifier.verify(&value).is_ok().then_some(())
    })
    .await;

    let keys: Api<DynamicObject> = Api::namespaced_with(
        cluster.client.clone(),
        NS,
        &kube::discovery::ApiResource::erase::<ApiKey>(&()),
    );
    // The key's Ready condition, written since `at`.
    let ready_since = |at: &'static str| {
        let keys = keys.clone();
        async move {
            let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
                "reason": "OwnerResolved", "message": "", "lastTransitionTime": at}]}});
            keys.patch_status("k", &PatchParams::default(), &Patch::Merge(status))
                .await
                .expect("the key's status written");
        }
    };
    ready_since("9999-12-31T23:59:59Z").await;
    apply_crd(&cluster, current).await;
    eventually("an Undecodable event naming the key's field", || async {
        events_for(&cluster.client, NS, "k")
            .await
            .into_iter()
            .any(|(kind, reason, note)| {
                kind == "Warning"
                    && reason == "Undecodable"
                    && note.contains("status.conditions[0].lastTransitionTime")
            })
            .then_some(())
    })
    .await;
    let unreadable_keys = operator.handles.metrics.undecodable("ApiKey");
    assert_eq!(unreadable_keys.get(), 1, "one ApiKey counted unreadable");
    eventually("the verifier to reject the key's tokens", || async {
        verifier.verify(&value).is_err().then_some(())
    })
    .await;

    // A change to the token while its key cannot be read: reconciled,
    // and its value stays.
    let reconciles = || operator.handles.metrics.reconciles("ApiToken", true);
    let before = reconciles();
    cluster
        .api::<ApiToken>(NS)
        .patch(
            "t",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"displayName": "while unreadable"}})),
        )
        .await
        .expect("token edited");
    eventually("the token to be reconciled", || async {
        (reconciles() > before).then_some(())
    })
    .await;
    let secret = cluster
        .api::<k8s_openapi::api::core::v1::Secret>(NS)
        .get("t")
        .await
        .expect("the Secret is still there");
    assert_eq!(secret_value(&secret, "token"), value, "the value is kept");

    // Corrected: the same value works again.
    ready_since("2026-01-01T00:00:00Z").await;
    let (_, again) = settled(&cluster, NS, "t", DEADLINE).await;
    assert_eq!(again, value, "no new value was issued");
    eventually("the verifier to accept the value again", || async {
        verifier.verify(&value).is_ok().then_some(())
    })
    .await;
    eventually("no longer counted unreadable", || async {
        (unreadable_keys.get() == 0).then_some(())
    })
    .await;

    // Unreadable once more, then deleted: no longer counted.
    apply_crd(&cluster, old_crd).await;
    ready_since("9999-12-31T23:59:59Z").await;
    eventually("the key to be counted unreadable again", || async {
        (unreadable_keys.get() == 1).then_some(())
    })
    .await;
    keys.delete("k", &Default::default())
        .await
        .expect("deleted");
    eventually("the deleted key to be no longer counted", || async {
        (unreadable_keys.get() == 0).then_some(())
    })
    .await;
}

/// An ApiToken stored before the CRDs refused the year 9999 in status (an
/// upgrade from an older release) keeps such a time: the API server ratchets
/// unchanged values, and the Rust types cannot decode it. That one token is
/// treated as deleted (its value rejected, never an older version of it
/// kept), every other token goes on, an operator and a verifier started
/// afterwards still sync, and clearing the field restores the token. (The
/// index is asked directly: a use through HTTP would have the verifier write
/// `lastUsedAt` itself, over the time under test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_time_the_types_cannot_read_blocks_only_its_token() {
    use kube::api::{Api, DynamicObject};

    const NS: &str = "upgrade";
    let cluster = Cluster::start(NS).await;
    let (current, old) = crd_now_and_before("ApiToken");
    apply_crd(&cluster, old).await;

    let operator = cluster.controller();
    let verifier = InProcessVerifier::start(cluster.client.clone()).await;
    create_key(&cluster, NS).await;
    create_token(&cluster, NS, "far", "{apiKeyRef: {name: k}}").await;
    create_token(&cluster, NS, "near", "{apiKeyRef: {name: k}}").await;
    let (_, far) = settled(&cluster, NS, "far", DEADLINE).await;
    let (_, near) = settled(&cluster, NS, "near", DEADLINE).await;
    for value in [&near, &far] {
        eventually("the verifier to accept both values", || async {
            verifier.verify(value).is_ok().then_some(())
        })
        .await;
    }

    // Untyped: the answers carry the time, which ApiToken cannot decode.
    let untyped: Api<DynamicObject> = Api::namespaced_with(
        cluster.client.clone(),
        NS,
        &kube::discovery::ApiResource::erase::<ApiToken>(&()),
    );
    let last_used = |at: serde_json::Value| {
        let untyped = untyped.clone();
        async move {
            untyped
                .patch_status(
                    "far",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"lastUsedAt": at}})),
                )
                .await
                .expect("lastUsedAt written")
        }
    };
    last_used(json!("9999-12-31T23:59:59Z")).await;
    eventually("the verifier to drop the token it cannot read", || async {
        verifier.verify(&far).is_err().then_some(())
    })
    .await;
    assert!(verifier.verify(&near).is_ok());
    // `kubectl describe` says why, naming the field.
    eventually("an Undecodable event naming the field", || async {
        events_for(&cluster.client, NS, "far")
            .await
            .into_iter()
            .any(|(kind, reason, note)| {
                kind == "Warning" && reason == "Undecodable" && note.contains("status.lastUsedAt")
            })
            .then_some(())
    })
    .await;

    let unreadable_tokens = operator.handles.metrics.undecodable("ApiToken");
    assert_eq!(
        unreadable_tokens.get(),
        1,
        "one ApiToken counted unreadable"
    );

    // The bound CRD again; the stored time stays. A restarted operator and
    // verifier sync and serve every other token.
    apply_crd(&cluster, current).await;
    operator.stop().await;
    drop(verifier);
    let operator = cluster.controller();
    let verifier = InProcessVerifier::start(cluster.client.clone()).await;
    let unreadable_tokens = operator.handles.metrics.undecodable("ApiToken");
    create_token(&cluster, NS, "new", "{apiKeyRef: {name: k}}").await;
    let (_, new) = settled(&cluster, NS, "new", DEADLINE).await;
    for value in [&near, &new] {
        eventually("the restarted verifier to accept the others", || async {
            verifier.verify(value).is_ok().then_some(())
        })
        .await;
    }
    assert!(verifier.verify(&far).is_err());
    assert_eq!(
        unreadable_tokens.get(),
        1,
        "counted by the restarted operator"
    );

    // Cleared as the log says: the token is back, with its value.
    last_used(serde_json::Value::Null).await;
    let (_, again) = settled(&cluster, NS, "far", DEADLINE).await;
    assert_eq!(again, far, "the value is kept");
    eventually("the verifier to accept the token again", || async {
        verifier.verify(&far).is_ok().then_some(())
    })
    .await;
    eventually("no longer counted unreadable", || async {
        (unreadable_tokens.get() == 0).then_some(())
    })
    .await;
}

/// An ApiKey deleted with `--cascade=orphan` and created again under the same
/// name, for another owner, while the operator is down: its tokens keep their
/// values and no owner reference, yet the verifier names no one for them (the
/// status records the uid of the key they were issued under); once the
/// operator is back, each token is adopted by the new key and gets a fresh
/// value, which the verifier answers with the new owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_replaced_while_the_operator_is_down_inherits_no_values() {
    use apikey_operator::verifier::Reject;
    use kube::api::{DeleteParams, PropagationPolicy};

    const NS: &str = "replaced";
    let cluster = Cluster::start(NS).await;
    let operator = cluster.controller();
    let verifier = InProcessVerifier::start(cluster.client.clone()).await;
    create_key(&cluster, NS).await;
    create_token(&cluster, NS, "kept", "{apiKeyRef: {name: k}}").await;
    let (_, earlier) = settled(&cluster, NS, "kept", DEADLINE).await;
    eventually("the verifier to name the first owner", || async {
        verifier
            .verify(&earlier)
            .ok()
            .filter(|identity| &*identity.username == "u")
    })
    .await;

    operator.stop().await;
    let keys = cluster.api::<ApiKey>(NS);
    keys.delete(
        "k",
        &DeleteParams {
            propagation_policy: Some(PropagationPolicy::Orphan),
            ..Default::default()
        },
    )
    .await
    .expect("orphaning delete");
    let tokens = cluster.api::<ApiToken>(NS);
    wait_gone(&keys, "k").await;
    let orphan = tokens.get("kept").await.expect("the token stays");
    assert!(orphan.owner_references().is_empty(), "orphaned");
    let key: ApiKey =
        apply_yaml("metadata: {name: k}\nspec: {owner: {kind: User, name: someone-else}}");
    keys.create(&PostParams::default(), &key)
        .await
        .expect("a key of the same name");
    // The new key is Ready only once the operator runs; even a Ready key of
    // another uid gets no value issued under the earlier one.
    let ready = json!({"status": {"principal": "someone-else", "conditions": [{"type": "Ready",
        "status": "True", "reason": "OwnerResolved", "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    keys.patch_status("k", &PatchParams::default(), &Patch::Merge(ready))
        .await
        .expect("the new key looks Ready");
    eventually("the verifier to refuse the earlier value", || async {
        matches!(verifier.verify(&earlier), Err(Reject::KeyReplaced)).then_some(())
    })
    .await;

    let _operator = cluster.controller();
    let fresh = eventually("a fresh value under the new key", || async {
        let (token, value) = settled(&cluster, NS, "kept", DEADLINE).await;
        (value != earlier).then_some((token, value))
    })
    .await;
    let (token, value) = fresh;
    let new_key = keys.get("k").await.expect("key");
    assert_eq!(
        token
            .status
            .as_ref()
            .and_then(|s| s.api_key_uid.as_deref().cloned()),
        new_key.metadata.uid,
        "recorded under the new key"
    );
    assert!(
        token
            .owner_references()
            .iter()
            .any(|r| r.controller == Some(true) && Some(&r.uid) == new_key.metadata.uid.as_ref()),
        "adopted by the new key"
    );
    eventually("the verifier to name the new owner", || async {
        verifier
            .verify(&value)
            .ok()
            .filter(|identity| &*identity.username == "someone-else")
    })
    .await;
    assert!(verifier.verify(&earlier).is_err());
}
