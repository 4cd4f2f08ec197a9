//! Section 3: the rotation storm, and the time until the verifier's answer changes after a
//! rotation or a revocation.

use super::*;

pub(crate) async fn storm(n: usize) -> Vec<Figure> {
    let s = stack().await;
    create_namespaces(&s.client, std::iter::once("storm".to_owned())).await;
    let op = Operator::start(&s);
    let keys: Api<ApiKey> = Api::namespaced(s.client.clone(), "storm");
    let key: ApiKey = serde_json::from_value(json!({
        "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiKey",
        "metadata": {"name": "key"}, "spec": {"owner": {"kind": "User", "name": "storm"}}
    }))
    .expect("key");
    keys.create(&PostParams::default(), &key)
        .await
        .expect("key");
    let tokens: Api<ApiToken> = Api::namespaced(s.client.clone(), "storm");
    let watch = tokio::spawn({
        let client = s.client.clone();
        async move { all_ready(&client, None, n, Duration::from_secs(600)).await }
    });
    concurrently(n, |i| {
        let tokens = tokens.clone();
        async move {
            let t: ApiToken = serde_json::from_value(json!({
                "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken",
                "metadata": {"name": format!("t-{i}")}, "spec": {"apiKeyRef": {"name": "key"}}
            }))
            .expect("token");
            tokens
                .create(&PostParams::default(), &t)
                .await
                .expect("create");
        }
    })
    .await;
    if watch.await.ok().flatten().is_none() {
        return vec![figure(
            "storm",
            "tokens Ready before the storm",
            "timed out",
            "-",
            "-",
            "-",
        )];
    }
    op.stop();

    // Every token's value now counts as issued 40 s before T0 and rotates every
    // minute (the shortest period the CRD allows): all are due in the same
    // second, T0 + 20 s.
    let t0 = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).expect("t0");
    let (period, lead) = (60, 20);
    let issued = t0
        .checked_sub(jiff::SignedDuration::from_secs(period - lead))
        .expect("issued");
    let due = t0
        .checked_add(jiff::SignedDuration::from_secs(lead))
        .expect("due");
    concurrently(n, |i| {
        let tokens = tokens.clone();
        async move {
            let name = format!("t-{i}");
            tokens
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": {"rotation": {"every": format!("{period}s")}}})),
                )
                .await
                .expect("spec");
            tokens
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"status": {"issuedAt": issued.to_string()}})),
                )
                .await
                .expect("status");
        }
    })
    .await;
    let op = Operator::start(&s);

    // Record when each token's first rotation becomes visible.
    let mut seen: HashMap<String, jiff::Timestamp> = HashMap::new();
    let mut early = 0;
    // CPU time of the operator and of this process (emulator and observer)
    // from the due instant until every rotation was seen.
    let op_pid = op.pid();
    let cpu_at_due = tokio::spawn(async move {
        let wait = due.duration_since(jiff::Timestamp::now());
        tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
        (
            Instant::now(),
            cpu_time(op_pid),
            cpu_time(std::process::id()),
        )
    });
    let lean: Api<Lean<ApiToken>> = Api::namespaced(s.client.clone(), "storm");
    let stream = apikey_operator::lean::watcher(lean, watcher::Config::default());
    let mut stream = std::pin::pin!(stream);
    let end = Instant::now() + Duration::from_secs(lead as u64 + 120);
    while seen.len() < n && Instant::now() < end {
        let Ok(Ok(Some(event))) =
            tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await
        else {
            continue;
        };
        if let watcher::Event::Apply(t) | watcher::Event::InitApply(t) = event
            && t.status.as_ref().and_then(|s| s.rotations).unwrap_or(0) >= 1
            && t.status.as_ref().is_some_and(|s| s.pending.is_none())
        {
            let now = jiff::Timestamp::now();
            if now < due {
                early += 1;
            }
            seen.entry(t.name_any()).or_insert(now);
        }
    }
    let (cpu_op, cpu_here) = (cpu_time(op_pid), cpu_time(std::process::id()));
    let cpu = cpu_at_due.await.ok().map(|(at, op0, here0)| {
        let wall = at.elapsed().as_secs_f64() * 1000.0;
        let op = cpu_op.saturating_sub(op0).as_secs_f64() * 1000.0;
        let here = cpu_here.saturating_sub(here0).as_secs_f64() * 1000.0;
        (wall, op, here)
    });
    // Exactly once: well before the next period, no token has rotated twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let list = tokens.list(&Default::default()).await.expect("list");
    let twice = list
        .items
        .iter()
        .filter(|t| t.status.as_ref().and_then(|s| s.rotations).unwrap_or(0) > 1)
        .count();
    let mut lateness: Vec<f64> = seen
        .values()
        .map(|at| at.duration_since(due).as_secs_f64() * 1000.0)
        .collect();
    lateness.sort_by(f64::total_cmp);

    // Time from a change to the verifier's changed answer (the operator's own verifier).
    let change = verifier_reaction(&s, &op).await;
    op.stop();

    let mut out = vec![
        figure(
            "storm",
            format!("tokens rotated (of {n}, all due at once)"),
            seen.len().to_string(),
            n.to_string(),
            ratio(seen.len() as f64, n as f64),
            "1.00",
        ),
        figure(
            "storm",
            "rotated more than once",
            twice.to_string(),
            "0",
            "-",
            "0",
        ),
        figure(
            "storm",
            "rotated early",
            early.to_string(),
            "0",
            "-",
            "never",
        ),
        figure(
            "storm",
            "lateness p50",
            format!("{:.0} ms", percentile(&lateness, 0.50)),
            "due instant",
            "-",
            "-",
        ),
        figure(
            "storm",
            "lateness p99",
            format!("{:.0} ms", percentile(&lateness, 0.99)),
            "due instant",
            "-",
            "≤ 1000 ms",
        ),
    ];
    if let Some((wall, op, here)) = cpu {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        out.push(figure(
            "storm",
            "CPU time from the due instant to the last rotation: operator / emulator and observer",
            format!("{op:.0} ms / {here:.0} ms"),
            format!("{wall:.0} ms wall × {cores:.0} cores"),
            ratio(op + here, wall * cores),
            "-",
        ));
    }
    out.extend(change);
    out
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) async fn verifier_reaction(s: &Stack, op: &Operator) -> Vec<Figure> {
    let tokens: Api<ApiToken> = Api::namespaced(s.client.clone(), "storm");
    let secrets: Api<Secret> = Api::namespaced(s.client.clone(), "storm");
    let mut out = Vec::new();
    for (what, index) in [("delete", 0), ("disable", 1), ("rotation", 2)] {
        let mut samples = Vec::new();
        for round in 0..10 {
            let name = format!("t-{}", index * 10 + round);
            let Ok(secret) = secrets.get(&name).await else {
                continue;
            };
            let value = String::from_utf8(
                secret
                    .data
                    .and_then(|d| d.get("token").cloned())
                    .map(|b| b.0)
                    .unwrap_or_default(),
            )
            .unwrap_or_default();
            if !accepted(op.verify, &value).await {
                continue;
            }
            let start = Instant::now();
            match what {
                "delete" => {
                    tokens
                        .delete(&name, &DeleteParams::default())
                        .await
                        .expect("delete");
                }
                "disable" => {
                    tokens
                        .patch(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(&json!({"spec": {"disabled": true}})),
                        )
                        .await
                        .expect("disable");
                }
                _ => {
                    let patch = json!({"metadata": {"annotations": {"apikeys.dev/rotate": format!("bench-{round}")}}});
                    tokens
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .expect("rotate");
                }
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while accepted(op.verify, &value).await && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            samples.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        samples.sort_by(f64::total_cmp);
        out.push(figure(
            "reaction",
            format!(
                "{what} → verifier rejects the old value (p50 / max of {})",
                samples.len()
            ),
            format!(
                "{:.0} / {:.0} ms",
                percentile(&samples, 0.5),
                samples.last().copied().unwrap_or(f64::NAN)
            ),
            "120000 ms (webhook authenticator cache default)",
            ratio(percentile(&samples, 0.5), 120_000.0),
            "≤ 1000 ms",
        ));
    }
    out
}

pub(crate) async fn accepted(addr: SocketAddr, value: &str) -> bool {
    matches!(http_get(addr, "/auth", Some(value)).await, Some(200))
}

pub(crate) async fn http_get(addr: SocketAddr, path: &str, api_key: Option<&str>) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: v\r\nConnection: close\r\n");
    if let Some(k) = api_key {
        req.push_str(&format!("X-API-Key: {k}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.ok()?;
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
