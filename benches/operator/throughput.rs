//! Section 4: verifier throughput and latency, and memory per indexed token. The verifier runs
//! as a process of its own on one core (`child`), the load generator here on another
//! (`pinning`); its index is filled directly (the watch path is measured by the other sections).

use super::*;

/// The paced loads' offered rates, in requests per second.
pub(crate) const RATES: [f64; 3] = [5_000.0, 10_000.0, 20_000.0];

/// How long and how often each load runs (see `verifier_load`).
pub(crate) struct Rounds {
    pub(crate) count: usize,
    pub(crate) each: Duration,
}

/// One kind of request: path, values, expected status.
struct Kind {
    name: &'static str,
    path: &'static str,
    values: Arc<Vec<String>>,
    expect: u16,
}

pub(crate) async fn verifier_load(
    n: usize,
    rounds: &Rounds,
    pinning: &Result<Pinning, String>,
    with_gateway: bool,
) -> Vec<Figure> {
    let pinned = pinning.as_ref().ok();
    let v = tokio::task::spawn_blocking({
        let pinned = pinned.cloned();
        move || VerifierProcess::start(pinned.as_ref(), n)
    })
    .await
    .expect("the verifier child");
    let per_token = v.index_heap as f64 / n as f64;
    let valid = Arc::new(v.valid.clone());
    let malformed = {
        let mut m = valid[0].clone();
        let last = m.pop().unwrap_or('a');
        m.push(if last == 'a' { 'b' } else { 'a' });
        m
    };
    let unknown = token::generate(token::TokenKind::Personal, &token::TokenId::generate())
        .expose_secret()
        .to_owned();

    // The baseline gets the same requests (same token header, same bytes),
    // so the comparison isolates the verifier's own work. All loads take
    // turns in short rounds, so a slow spell of the machine moves one round
    // of every kind (which the range shows) instead of one whole figure.
    let kinds = [
        Kind {
            name: "200-OK endpoint",
            path: "/healthz",
            values: valid.clone(),
            expect: 200,
        },
        Kind {
            name: "valid tokens",
            path: "/auth",
            values: valid.clone(),
            expect: 200,
        },
        Kind {
            name: "malformed checksum",
            path: "/auth",
            values: Arc::new(vec![malformed]),
            expect: 401,
        },
        Kind {
            name: "unknown tokens",
            path: "/auth",
            values: Arc::new(vec![unknown]),
            expect: 401,
        },
    ];
    // APIKEY_BENCH_KINDS (comma-separated names, e.g. "valid tokens") keeps only those kinds
    // beside the 200-OK endpoint, so a profiler wrapping the child sees one path at a time;
    // "none" keeps the endpoint alone.
    let kinds: Vec<Kind> = match std::env::var("APIKEY_BENCH_KINDS") {
        Ok(only) => {
            let only: Vec<&str> = only.split(',').map(str::trim).collect();
            kinds
                .into_iter()
                .enumerate()
                .filter(|(k, kind)| *k == 0 || only.contains(&kind.name))
                .map(|(_, kind)| kind)
                .collect()
        }
        Err(_) => kinds.into(),
    };
    // results[rate][kind]: rate 0 unpaced, then RATES.
    let paces: Vec<Option<f64>> = std::iter::once(None)
        .chain(RATES.iter().copied().map(Some))
        .collect();
    let mut results: Vec<Vec<Vec<LoadResult>>> = paces
        .iter()
        .map(|_| kinds.iter().map(|_| Vec::new()).collect())
        .collect();
    // The verifier's CPU time during the unpaced loads, per kind.
    let mut cpu = vec![Duration::ZERO; kinds.len()];
    for _ in 0..rounds.count {
        for (pace, by_kind) in paces.iter().zip(&mut results) {
            for (k, (kind, out)) in kinds.iter().zip(by_kind.iter_mut()).enumerate() {
                let before = cpu_time(v.pid());
                let r = load(
                    v.addr,
                    kind.path,
                    kind.values.clone(),
                    rounds.each,
                    *pace,
                    kind.expect,
                )
                .await;
                if pace.is_none() {
                    cpu[k] += cpu_time(v.pid()).saturating_sub(before);
                }
                out.push(r);
            }
        }
    }
    let gateway = if with_gateway {
        gateway_e2e(v.addr, valid.clone(), rounds, pinned).await
    } else {
        Vec::new()
    };
    let workers = v.workers;
    v.stop();

    let results: Vec<Vec<LoadRounds>> = results
        .into_iter()
        .map(|by_kind| by_kind.into_iter().map(LoadRounds::new).collect())
        .collect();
    let cpu_per_request = |k: usize| {
        let requests = results[0][k].all.latencies.len().max(1);
        cpu[k].as_secs_f64() * 1e6 / requests as f64
    };
    let trivial = &results[0][0];
    let mut figures = vec![figure(
        "verifier",
        format!("set-up ({n} indexed)"),
        pinning_note(pinning, workers),
        "-",
        "-",
        "-",
    )];
    for (k, kind) in kinds.iter().enumerate().skip(1) {
        let r = &results[0][k];
        figures.push(figure(
            "verifier",
            format!("{} unpaced ({n} indexed)", kind.name),
            format!(
                "{:.0} req/s, {}; verifier CPU {:.1} µs/req",
                r.all.rate,
                r.latency_text(),
                cpu_per_request(k)
            ),
            format!(
                "{:.0} req/s, {}; {:.1} µs/req (200-OK endpoint, same requests)",
                trivial.all.rate,
                trivial.latency_text(),
                cpu_per_request(0)
            ),
            format!("{:.2}", r.median_ratio(trivial)),
            "≥ 0.9",
        ));
    }
    for (p, rate) in RATES.iter().enumerate() {
        let by_kind = &results[p + 1];
        for (k, kind) in kinds.iter().enumerate().skip(1) {
            let r = &by_kind[k];
            figures.push(figure(
                "verifier",
                format!("{} at {:.0}k req/s ({n} indexed)", kind.name, rate / 1000.0),
                format!("{}, {:.0} req/s achieved", r.latency_text(), r.all.rate),
                format!("{} (200-OK endpoint)", by_kind[0].latency_text()),
                "-",
                if *rate >= 20_000.0 {
                    "p99 ≤ 1000 µs"
                } else {
                    "-"
                },
            ));
        }
    }
    figures.push(figure(
        "verifier",
        format!("heap bytes per indexed token ({n})"),
        format!("{per_token:.0} B"),
        "-",
        "-",
        "≤ 256 B",
    ));
    figures.extend(gateway);
    figures
}
