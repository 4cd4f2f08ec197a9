//! Conflicting writers on an ApiToken and its Secret: no update lost, no reconcile loop, the
//! restart target rolled once per new value.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::support::*;
use apikey_operator::api::{ApiToken, ROTATE_ANNOTATION};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

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
    create_key(&cluster.api(NS), "k", "User", "u").await;
    let deployment: Deployment = apply_yaml(&format!(
        "metadata: {{name: {TARGET}}}\nspec:\n  selector: {{matchLabels: {{app: c}}}}\n  template:\n    metadata: {{labels: {{app: c}}}}\n    spec: {{containers: [{{name: c, image: busybox}}]}}\n"
    ));
    let deployments = cluster.api::<Deployment>(NS);
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("deployment");
    create_token(&cluster.api(NS), "edited",
        &format!(
            "{{apiKeyRef: {{name: k}}, rotation: {{gracePeriod: 1h, restartTargets: [{{kind: Deployment, name: {TARGET}}}]}}}}"
        ),
    )
    .await;
    settled(&cluster, NS, "edited", DEADLINE).await;
    let errors_before = operator.handles.metrics.errors();

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
    let errors_after_writers = operator.handles.metrics.errors();
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
        operator.handles.metrics.errors(),
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
    let errors = operator.handles.metrics.errors() - errors_before;
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
