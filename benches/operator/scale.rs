//! Sections 1 + 2: scale, memory, writes per token and steady state, against the design
//! floor of scripted tokens; request breakdowns and relist peaks.

use super::*;

pub(crate) async fn scale_and_steady(n: usize, settings: &Settings) -> Vec<Figure> {
    let namespaces = (n / 100).clamp(1, 100);
    let s = stack().await;
    create_namespaces(&s.client, (0..namespaces).map(|i| format!("bench-{i}"))).await;
    create_namespaces(&s.client, std::iter::once("baseline".to_owned())).await;

    // Baseline: the same number of Secrets created directly, same concurrency.
    let secrets: Api<Secret> = Api::namespaced(s.client.clone(), "baseline");
    let before = s.emulator.stats();
    let here = std::process::id();
    let baseline_cpu_before = cpu_time(here);
    let baseline = concurrently(n, |i| {
        let secrets = secrets.clone();
        async move {
            let value = token::generate(token::TokenKind::Personal, &token::TokenId::generate());
            let secret: Secret = serde_json::from_value(json!({
                "metadata": {"name": format!("s-{i}")},
                "data": {"token": k8s_openapi::ByteString(value.expose_secret().as_bytes().to_vec())},
            }))
            .expect("secret");
            secrets.create(&PostParams::default(), &secret).await.expect("baseline create");
        }
    })
    .await;
    let baseline_cpu = cpu_time(here).saturating_sub(baseline_cpu_before);
    let baseline_writes = (s.emulator.stats() - before).writes;
    let emulator_rate = baseline_writes as f64 / baseline.as_secs_f64();

    // The operator: keys first, then all tokens at once.
    let op = Operator::start(&s);
    create_keys(&s.client, "bench", namespaces).await;
    let start_stats = s.emulator.stats();
    let requests_before = s.emulator.requests_by();
    let cpu_at_start = (cpu_time(op.pid()), cpu_time(here));
    let start = Instant::now();
    let client = s.client.clone();
    let watch = tokio::spawn({
        let client = client.clone();
        async move { all_ready(&client, None, n, Duration::from_secs(900)).await }
    });
    let create_time = create_tokens(&client, n, namespaces).await;
    let done = watch.await.ok().flatten();
    // CPU time is steadier than wall time on a shared machine: the same
    // work, whatever else the cores were doing.
    let burst_cpu = (
        cpu_time(op.pid()).saturating_sub(cpu_at_start.0),
        cpu_time(here).saturating_sub(cpu_at_start.1),
    );
    let Some(done) = done else {
        return vec![figure(
            "scale",
            format!("{n} tokens Ready"),
            "timed out",
            ms(baseline),
            "-",
            "≤ 1.5",
        )];
    };
    let to_ready = done - start;
    // Writes are counted until the operator goes quiet, so the keys' token
    // counts, written once they settle after the last token is Ready, count too.
    quiet(&s, QUIET, Duration::from_secs(120)).await;
    let scale_stats = s.emulator.stats() - start_stats;
    // The bench's own creates are not the operator's writes.
    let operator_writes = scale_stats.writes.saturating_sub(n as u64);
    let breakdown = request_breakdown(&requests_before, &s.emulator.requests_by(), n);

    // Then steady state: no changes for the window.
    let steady_rss = rss_kib(op.pid());
    let cpu_before = cpu_time(op.pid());
    let steady_before = s.emulator.stats();
    tokio::time::sleep(settings.steady).await;
    let steady: RequestStats = s.emulator.stats() - steady_before;
    let steady_cpu = cpu_time(op.pid()).saturating_sub(cpu_before);

    // A full relist: watches are cut and every list is read again.
    let peak = relist_peak(&s, op.pid()).await;
    op.stop();

    // With the operator stopped: the same tokens written by a script.
    let floor = design_floor(&s, n, namespaces).await;

    let label = |what: &str| format!("{what} ({n} tokens)");
    vec![
        figure(
            "scale",
            label("creating the objects"),
            ms(create_time),
            ms(baseline),
            ratio(create_time.as_secs_f64(), baseline.as_secs_f64()),
            "-",
        ),
        figure(
            "scale",
            label("time until all Ready"),
            ms(to_ready),
            format!("{} (Secrets created directly)", ms(baseline)),
            ratio(to_ready.as_secs_f64(), baseline.as_secs_f64()),
            "≤ 1.5",
        ),
        match floor {
            Some((time, _, _)) => figure(
                "scale",
                label("time until all Ready, against the design's floor"),
                ms(to_ready),
                format!(
                    "{} (a script sending the same five requests per token)",
                    ms(time)
                ),
                ratio(to_ready.as_secs_f64(), time.as_secs_f64()),
                "-",
            ),
            None => figure(
                "scale",
                label("the design's floor"),
                "timed out",
                "-",
                "-",
                "-",
            ),
        },
        figure(
            "scale",
            label("CPU time until all Ready: operator / this process (emulator, clients)"),
            format!("{} / {}", ms(burst_cpu.0), ms(burst_cpu.1)),
            format!("{} (this process, the Secrets)", ms(baseline_cpu)),
            ratio(
                (burst_cpu.0 + burst_cpu.1).as_secs_f64(),
                baseline_cpu.as_secs_f64(),
            ),
            "-",
        ),
        figure(
            "scale",
            label("CPU time until all Ready, against the design's floor"),
            ms(burst_cpu.0 + burst_cpu.1),
            floor.map_or("-".to_owned(), |(_, cpu, writes)| {
                format!(
                    "{} (this process, the script: {:.2} writes per token, its create included)",
                    ms(cpu),
                    writes as f64 / n as f64
                )
            }),
            floor.map_or("-".to_owned(), |(_, cpu, _)| {
                ratio((burst_cpu.0 + burst_cpu.1).as_secs_f64(), cpu.as_secs_f64())
            }),
            "-",
        ),
        figure(
            "scale",
            label("operator CPU per issued token"),
            format!("{:.0} µs", burst_cpu.0.as_secs_f64() * 1e6 / n as f64),
            "-",
            "-",
            "-",
        ),
        figure(
            "scale",
            label("emulator writes/s (baseline client)"),
            format!("{emulator_rate:.0}/s"),
            "-",
            "-",
            "≥ 5000/s",
        ),
        figure(
            "scale",
            label("operator writes per issued token"),
            format!("{:.2}", operator_writes as f64 / n as f64),
            "1 (a Secret create)",
            ratio(operator_writes as f64 / n as f64, 1.0),
            "≤ 4",
        ),
        figure(
            "scale",
            label("operator requests per issued token, by request (writes and GETs)"),
            breakdown,
            "-",
            "-",
            "-",
        ),
        figure(
            "scale",
            label("operator steady RSS"),
            format!("{:.1} MiB", steady_rss as f64 / 1024.0),
            "-",
            "-",
            "≤ 64 MiB at 10k",
        ),
        figure(
            "scale",
            label("operator peak RSS during a full relist"),
            format!("{:.1} MiB", peak as f64 / 1024.0),
            format!("{:.1} MiB steady", steady_rss as f64 / 1024.0),
            ratio(peak as f64, steady_rss as f64),
            "≤ 1.5",
        ),
        figure(
            "steady",
            label(&format!(
                "operator writes in {}s without changes",
                settings.steady.as_secs()
            )),
            steady.writes.to_string(),
            "0",
            "-",
            "0",
        ),
        figure(
            "steady",
            label("operator CPU time in that window"),
            ms(steady_cpu),
            format!("{} s wall", settings.steady.as_secs()),
            ratio(steady_cpu.as_secs_f64(), settings.steady.as_secs_f64()),
            "-",
        ),
    ]
}

/// The design's floor: what any operator keeping DESIGN.md's rules must ask
/// of the API server for a new token, sent by a scripted client with no
/// controller, no watch of its own and no decisions. Per token, with the same
/// concurrency as the other runs: the ApiToken create (the user's), then the
/// four writes of rules 1 and 6 (the ApiKey's ownerReference, the pending
/// hash, the Secret, the promoted status), each on the resourceVersion the
/// previous one returned. An observer waits for Ready as in the operator's run.
/// Returns the time until all were Ready, this process's CPU time and the writes.
pub(crate) async fn design_floor(
    s: &Stack,
    n: usize,
    namespaces: usize,
) -> Option<(Duration, Duration, u64)> {
    create_namespaces(&s.client, (0..namespaces).map(|i| format!("floor-{i}"))).await;
    let keys = create_keys(&s.client, "floor", namespaces).await;
    let keys = Arc::new(keys);
    let before = s.emulator.stats();
    let here = std::process::id();
    let cpu_before = cpu_time(here);
    let start = Instant::now();
    let watch = tokio::spawn({
        let client = s.client.clone();
        async move { all_ready(&client, FLOOR_SELECTOR, n, Duration::from_secs(900)).await }
    });
    concurrently(n, |i| {
        let ns = format!("floor-{}", i % namespaces);
        let tokens: Api<ApiToken> = Api::namespaced(s.client.clone(), &ns);
        let secrets: Api<Secret> = Api::namespaced(s.client.clone(), &ns);
        let key_uid = keys[i % namespaces].clone();
        async move { scripted_token(&tokens, &secrets, &format!("t-{i}"), &key_uid).await }
    })
    .await;
    let done = watch.await.ok().flatten()?;
    let cpu = cpu_time(here).saturating_sub(cpu_before);
    Some((done - start, cpu, (s.emulator.stats() - before).writes))
}

/// The label that tells the floor's tokens from the operator's.
pub(crate) const FLOOR_SELECTOR: Option<&str> = Some("bench=floor");

/// One token of the design's floor (see `design_floor`). Like the operator,
/// it decodes only the metadata it needs from each answer.
pub(crate) async fn scripted_token(
    tokens: &Api<ApiToken>,
    secrets: &Api<Secret>,
    name: &str,
    key_uid: &str,
) {
    let body = serde_json::to_vec(&json!({
        "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken",
        "metadata": {"name": name, "labels": {"bench": "floor"}},
        "spec": {"apiKeyRef": {"name": "key"}, "expiration": {"lifetime": "90d"}, "rotation": {"every": "30d"}}
    }))
    .expect("token");
    let created = send(tokens, |r| r.create(&PostParams::default(), body)).await;
    let owned = json!({"metadata": {
        "resourceVersion": created.resource_version,
        "ownerReferences": [{"apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiKey", "name": "key",
            "uid": key_uid, "controller": true, "blockOwnerDeletion": true}],
    }});
    let owned = send(tokens, |r| {
        r.patch(name, &PatchParams::default(), &Patch::Merge(&owned))
    })
    .await;

    let id = token::TokenId::generate();
    let value = token::generate(token::TokenKind::Personal, &id);
    let hash = value.hash();
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .expect("now");
    let ready = |status: bool, reason: &str, message: String| {
        json!([{"type": "Ready", "status": if status { "True" } else { "False" }, "reason": reason,
            "message": message, "lastTransitionTime": now, "observedGeneration": 1}])
    };
    let apply = PatchParams::apply("bench-floor").force();
    let pending = json!({
        "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken",
        "metadata": {"name": name, "resourceVersion": owned.resource_version},
        "status": {
            "conditions": ready(false, "Issuing", format!("writing a new value to Secret {name:?}")),
            "tokenId": id.as_str(), "secretName": name,
            "pending": {"hash": hash.as_str(), "reason": "Issue", "startedAt": now},
        }
    });
    let pending = send(tokens, |r| {
        r.patch_subresource("status", name, &apply, &Patch::Apply(&pending))
    })
    .await;

    let secret = serde_json::to_vec(&json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/managed-by": "apikey-operator", "apikeys.dev/token": name},
            "annotations": {"apikeys.dev/token": name},
            "ownerReferences": [{"apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken", "name": name,
                "uid": created.uid, "controller": true, "blockOwnerDeletion": true}],
        },
        "type": "Opaque",
        "data": {"token": k8s_openapi::ByteString(value.expose_secret().as_bytes().to_vec())},
    }))
    .expect("secret");
    send(secrets, |r| r.create(&PostParams::default(), secret)).await;

    let expires = now + jiff::SignedDuration::from_hours(90 * 24);
    let rotates = now + jiff::SignedDuration::from_hours(30 * 24);
    let promoted = json!({
        "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken",
        "metadata": {"name": name, "resourceVersion": pending.resource_version},
        "status": {
            "conditions": ready(true, "Issued", format!("value in Secret {name:?}")),
            "tokenId": id.as_str(), "secretName": name, "hash": hash.as_str(),
            "issuedAt": now, "expiresAt": expires, "nextRotationAt": rotates,
            "observedGeneration": 1,
        }
    });
    send(tokens, |r| {
        r.patch_subresource("status", name, &apply, &Patch::Apply(&promoted))
    })
    .await;
}

/// The metadata the floor's script reads from an answer.
#[derive(serde::Deserialize)]
pub(crate) struct Answer {
    metadata: AnswerMeta,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AnswerMeta {
    resource_version: Option<String>,
    uid: Option<String>,
}

/// Sends a request built for `api`'s URL; panics on an error (a broken benchmark).
pub(crate) async fn send<K>(
    api: &Api<K>,
    build: impl FnOnce(
        kube::core::Request,
    ) -> Result<axum::http::Request<Vec<u8>>, kube::core::request::Error>,
) -> AnswerMeta
where
    K: kube::Resource<DynamicType = ()> + Clone,
{
    let request = build(kube::core::Request::new(api.resource_url())).expect("request");
    let answer: Answer = api
        .clone()
        .into_client()
        .request(request)
        .await
        .expect("the floor's write");
    answer.metadata
}

/// How long the emulator must see no write for the operator to count as quiet.
pub(crate) const QUIET: Duration = Duration::from_secs(3);

/// Waits until `quiet` passes without a write to the emulator (or `limit`).
pub(crate) async fn quiet(s: &Stack, quiet: Duration, limit: Duration) {
    let end = Instant::now() + limit;
    let mut writes = s.emulator.stats().writes;
    let mut since = Instant::now();
    while since.elapsed() < quiet && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = s.emulator.stats().writes;
        if now != writes {
            writes = now;
            since = Instant::now();
        }
    }
}

/// The operator's writes per token by `METHOD resource[/sub] code`, largest first, without the
/// benchmark's own `n` ApiToken creates.
pub(crate) fn request_breakdown(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
    n: usize,
) -> String {
    let mut rows: Vec<(String, u64)> = after
        .iter()
        .map(|(k, v)| {
            let mut d = v - before.get(k).copied().unwrap_or(0);
            if k == "POST apitokens 201" {
                d = d.saturating_sub(n as u64);
            }
            (k.clone(), d)
        })
        .filter(|(_, d)| *d > 0)
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    rows.iter()
        .map(|(k, d)| format!("{k}: {:.2}", *d as f64 / n as f64))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Cuts every watch (a short outage) and samples the operator's RSS while it relists.
pub(crate) async fn relist_peak(s: &Stack, pid: u32) -> u64 {
    let lists_before = s.emulator.stats().list;
    s.emulator.set_available(false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.emulator.set_available(true);
    let mut peak = rss_kib(pid);
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end {
        peak = peak.max(rss_kib(pid));
        if s.emulator.stats().list >= lists_before + 4
            && Instant::now() + Duration::from_secs(10) > end
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    peak
}
