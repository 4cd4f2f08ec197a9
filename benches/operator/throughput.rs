//! Section 4: verifier throughput and latency, and memory per indexed token, on an index
//! filled directly (the watch path is measured by the other sections).

use super::*;

pub(crate) async fn verifier_load(n: usize, duration: Duration) -> Vec<Figure> {
    // An index of n tokens, filled directly: the watch path is measured above.
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let client = emulator.client().await.expect("client");
    apikey_operator::cli::install_crds(client.clone(), Duration::from_secs(30))
        .await
        .expect("CRDs");
    let cfg = VerifierConfig {
        addr: "127.0.0.1:0".parse().expect("addr"),
        ..Default::default()
    };
    let v = verifier::bind(client, cfg).await.expect("verifier");
    let addr = v.local_addr();
    let index = v.index();
    let readiness = v.readiness();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(v.run(async move {
        let _ = stopped.await;
    }));
    // Fill the index only after the watches' first list: its end drops
    // whatever the list did not contain.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !readiness.ready() {
        assert!(
            Instant::now() < deadline,
            "the verifier's watches never synced"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let key: ApiKey = serde_json::from_value(json!({
        "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiKey",
        "metadata": {"name": "key", "namespace": "load", "uid": "key-uid"},
        "spec": {"owner": {"kind": "User", "name": "load"}},
        "status": {"principal": "load", "conditions": [{"type": "Ready", "status": "True", "reason": "OwnerResolved", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    }))
    .expect("key");
    let mut valid = Vec::with_capacity(1000);
    let heap_before = heap_live();
    {
        let mut idx = index.write().expect("index lock");
        idx.upsert_key(&key);
        for i in 0..n {
            let id = token::TokenId::generate();
            let value = token::generate(token::TokenKind::Personal, &id);
            // Names and uids as long as real ones (a uid is 36 characters).
            let t: ApiToken = serde_json::from_value(json!({
                "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken",
                "metadata": {"name": format!("service-token-{i:06}"), "namespace": "load", "uid": format!("{i:08}-0000-4000-8000-000000000000")},
                "spec": {"apiKeyRef": {"name": "key"}},
                "status": {"tokenId": id.as_str(), "hash": value.hash().as_str()}
            }))
            .expect("token");
            idx.upsert_token(&t);
            if valid.len() < 1000 {
                valid.push(value.expose_secret().to_owned());
            }
        }
    }
    // Everything the index allocated for the tokens (entries, hash tables,
    // names) and still holds; the 1,000 sample values are not counted.
    let sample: usize = valid.iter().map(String::capacity).sum();
    let per_token = (heap_live() - heap_before - sample as isize) as f64 / n as f64;

    let valid = Arc::new(valid);
    let malformed = {
        let mut v = valid[0].clone();
        let last = v.pop().unwrap_or('a');
        v.push(if last == 'a' { 'b' } else { 'a' });
        v
    };
    let unknown = token::generate(token::TokenKind::Personal, &token::TokenId::generate())
        .expose_secret()
        .to_owned();

    // The baseline gets the same requests (same token header, same bytes),
    // so the ratio isolates the verifier's own work. The four loads take
    // turns in short rounds: the load generator shares the machine's cores,
    // and a slow spell then hits every kind alike instead of one whole run.
    // Each ratio is the median of the rounds' ratios.
    let kinds = [
        ("/healthz", valid.clone(), 200),
        ("/auth", valid.clone(), 200),
        ("/auth", Arc::new(vec![malformed]), 401),
        ("/auth", Arc::new(vec![unknown]), 401),
    ];
    // The paced load (valid tokens at 20k req/s) takes its turn in each round
    // too: one slow spell of the machine then moves one round's p99, which
    // the spread shows, not the whole figure.
    let mut rounds: [Vec<LoadResult>; 4] = Default::default();
    let mut paced = Vec::new();
    let round = duration / LOAD_ROUNDS as u32;
    for _ in 0..LOAD_ROUNDS {
        for ((path, values, expect), results) in kinds.iter().zip(&mut rounds) {
            results.push(load(addr, path, values.clone(), round, None, *expect).await);
        }
        paced.push(load(addr, "/auth", valid.clone(), round, Some(20_000.0), 200).await);
    }
    let [trivial, valid_r, malformed_r, unknown_r] = rounds.map(LoadRounds::new);
    let paced = LoadRounds::new(paced);
    let mut paced_p99: Vec<f64> = paced.rounds.iter().map(|r| r.p99_us).collect();
    paced_p99.sort_by(f64::total_cmp);
    let _ = stop.send(());

    let row = |name: &str, r: &LoadRounds, goal: &'static str| {
        figure(
            "verifier",
            format!("{name} ({n} indexed)"),
            format!(
                "{:.0} req/s, p50 {:.0} µs, p99 {:.0} µs",
                r.all.rate, r.all.p50_us, r.all.p99_us
            ),
            format!(
                "{:.0} req/s (200-OK endpoint, same requests)",
                trivial.all.rate
            ),
            format!("{:.2}", r.median_ratio(&trivial)),
            goal,
        )
    };
    vec![
        row("valid tokens", &valid_r, "≥ 0.8"),
        row("malformed checksum", &malformed_r, "≥ 0.8"),
        row("unknown tokens", &unknown_r, "≥ 0.8"),
        figure(
            "verifier",
            format!("p99 at 20k req/s offered ({n} indexed)"),
            format!(
                "{:.0} µs, median of {LOAD_ROUNDS} rounds ({:.0}–{:.0}), at {:.0} req/s achieved",
                percentile(&paced_p99, 0.5),
                paced_p99[0],
                paced_p99[paced_p99.len() - 1],
                paced.all.rate
            ),
            format!("p99 {:.0} µs unpaced 200-OK", trivial.all.p99_us),
            "-",
            "≤ 1000 µs",
        ),
        figure(
            "verifier",
            format!("heap bytes per indexed token ({n})"),
            format!("{per_token:.0} B"),
            "-",
            "-",
            "≤ 256 B",
        ),
    ]
}
