//! The verifier under abuse: thousands of random and
//! malformed tokens, oversize heads and bodies, slow clients — against the
//! real binary, whose memory and open connections are measured — and a
//! statistical check that rejection time does not depend on how much of a
//! real token's secret a guess got right. Limits: docs/verifier.md.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::process::{OperatorProcess, listening_addr};
use crate::support::temp_dir::temp_dir;
use crate::support::*;
use apikey_operator::api::{ApiKey, ApiToken};
use apikey_operator::token::{self, TokenId, TokenKind};
use apikey_operator::verifier::{Index, Reject};
use k8s_openapi::api::core::v1::Secret;
use rand::Rng;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `<prefix>_<id>_<secret>` with its valid checksum appended.
fn with_checksum(body: &str) -> String {
    let mut n = crc32fast::hash(body.as_bytes());
    let mut digits = [b'0'; 6];
    for d in digits.iter_mut().rev() {
        *d = BASE62[(n % 62) as usize];
        n /= 62;
    }
    format!("{body}{}", String::from_utf8_lossy(&digits))
}

/// A well-formed guess for `real` that shares its first `shared` secret characters.
fn guess(real: &str, shared: usize, rng: &mut impl Rng) -> String {
    let head = &real[..23 + shared];
    let mut body = head.to_owned();
    while body.len() < 23 + 43 {
        let c = BASE62[rng.random_range(0..62)] as char;
        // Never the real next character, so exactly `shared` are right.
        if body.len() == 23 + shared && real.as_bytes()[body.len()] as char == c {
            continue;
        }
        body.push(c);
    }
    with_checksum(&body)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Guesses that share 0 or 40 of the 43 secret characters are rejected in the
/// same time. Batches of both kinds are timed alternately, so load on the
/// machine hits both alike, and medians of many batches are compared: a
/// comparison that stopped at the first wrong character would make the
/// 40-character guesses measurably slower.
#[test]
fn rejection_time_does_not_depend_on_how_much_of_the_secret_was_guessed() {
    let id = TokenId::parse("0123456789abcdef").expect("id");
    let real = token::generate(TokenKind::Personal, &id);
    let real = real.expose_secret().to_owned();
    let key: ApiKey = serde_json::from_value(json!({
        "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiKey",
        "metadata": {"name": "k", "namespace": "ns", "uid": "uid-k"},
        "spec": {"owner": {"kind": "User", "name": "alice"}},
        "status": {"principal": "alice", "conditions": [{"type": "Ready", "status": "True",
            "reason": "OwnerResolved", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
    }))
    .expect("key");
    let token: ApiToken = serde_json::from_value(json!({
        "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken",
        "metadata": {"name": "t", "namespace": "ns", "uid": "uid-t"},
        "spec": {"apiKeyRef": {"name": "k"}},
        "status": {"tokenId": id.as_str(), "hash": token::hash_value(&real).as_str()},
    }))
    .expect("token");
    let mut index = Index::new();
    index.upsert_key(&key);
    index.upsert_token(&token);
    let now = jiff::Timestamp::now();
    assert!(
        index.verify(&real, now).is_ok(),
        "the real value is accepted"
    );

    let mut rng = rand::rng();
    const PER_SET: usize = 64;
    let far: Vec<String> = (0..PER_SET).map(|_| guess(&real, 0, &mut rng)).collect();
    let near: Vec<String> = (0..PER_SET).map(|_| guess(&real, 40, &mut rng)).collect();
    for g in far.iter().chain(&near) {
        assert_eq!(index.verify(g, now).err(), Some(Reject::Mismatch));
    }
    let time = |set: &[String]| {
        let start = Instant::now();
        for g in set {
            std::hint::black_box(index.verify(std::hint::black_box(g), now).is_err());
        }
        start.elapsed().as_nanos() as f64 / set.len() as f64
    };
    // Warm caches and the branch predictor.
    for _ in 0..200 {
        time(&far);
        time(&near);
    }
    let rounds = if soak() { 20_000 } else { 3_000 };
    let (mut t_far, mut t_near) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            t_far.push(time(&far));
            t_near.push(time(&near));
        } else {
            t_near.push(time(&near));
            t_far.push(time(&far));
        }
    }
    let (m_far, m_near) = (median(&mut t_far), median(&mut t_near));
    let diff = (m_near - m_far).abs() / m_far;
    println!(
        "median rejection: {m_far:.0} ns (0 chars right), {m_near:.0} ns (40 chars right), {:.1} %",
        diff * 100.0
    );
    // Generous: a loaded 2-core machine moves medians by a few percent.
    assert!(
        diff < 0.15,
        "rejection time depends on the guessed prefix: {m_far:.0} ns vs {m_near:.0} ns"
    );
}

/// Sends raw bytes and reads until the server closes or `within` passes; returns the answer.
async fn raw_exchange(addr: SocketAddr, bytes: &[u8], within: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn random_garbage(rng: &mut impl Rng, real: &str, i: usize) -> String {
    let len = rng.random_range(0..300);
    match i % 8 {
        // Random printable ASCII.
        0 => (0..len)
            .map(|_| rng.random_range(0x21u8..0x7f) as char)
            .collect(),
        // Right shape, wrong checksum.
        1 => {
            let mut g = real.to_owned();
            g.replace_range(30..31, if &real[30..31] == "a" { "b" } else { "a" });
            g
        }
        // Right shape and checksum, random secret, real id.
        2 => guess(real, rng.random_range(0..43), rng),
        // Unknown token id.
        3 => with_checksum(&format!("akpat_{}_{}", "zzzzzzzzzzzzzzzz", &real[23..66])),
        // Truncated or extended real value.
        4 => {
            let cut = rng.random_range(1..real.len());
            if rng.random_bool(0.5) {
                real[..cut].to_owned()
            } else {
                format!("{real}{}", &real[..cut])
            }
        }
        // Wrong prefix or separators.
        5 => real
            .replacen("akpat", "aksat", 1)
            .replacen('_', "-", rng.random_range(0..3)),
        // Very long.
        6 => "A".repeat(rng.random_range(257..4000)),
        // Unicode.
        _ => format!("{}é\u{202e}{}", &real[..10], &real[10..]),
    }
}

/// Against the operator binary: 10 000 random and malformed tokens, oversize
/// heads and bodies, and slow clients. Every answer is a rejection (never a
/// 5xx), the process does not panic, its memory stays bounded, slow clients
/// are cut off after the documented 10 s, and a real token keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_tokens_oversize_requests_and_slow_clients_are_survived() {
    const NS: &str = "abuse";
    let cluster = Cluster::start(NS).await;
    let dir = temp_dir("abuse");
    let kubeconfig = dir.join("kubeconfig");
    cluster
        .emulator
        .write_kubeconfig(&kubeconfig)
        .expect("kubeconfig");
    let mut operator = OperatorProcess::spawn(&kubeconfig, &[], &dir.join("operator.log"));
    let addr = listening_addr(&operator.wait_for_log("verifier listening", DEADLINE).await);
    create_key(&cluster.api(NS), "k", "User", "u").await;
    create_token(&cluster.api(NS), "real", "{apiKeyRef: {name: k}}").await;
    wait_for(
        &cluster.api::<ApiToken>(NS),
        "real",
        "Ready",
        token_condition("Ready", "True"),
    )
    .await;
    let secret = cluster.api::<Secret>(NS).get("real").await.expect("Secret");
    let real = secret_value(&secret, "token");
    eventually("the verifier to accept the real value", || async {
        authenticated(addr, &real).await.then_some(())
    })
    .await;
    let rss_start = operator.rss_kib().expect("rss");
    let fds_start = operator.open_fds().expect("fds");

    // 10 000 random and malformed tokens over 4 keep-alive connections.
    let total = if soak() { 100_000 } else { 10_000 };
    let mut workers = Vec::new();
    for w in 0..4 {
        let real = real.clone();
        workers.push(tokio::spawn(async move {
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
            let mut conn = http::Connection::open(addr).await;
            for i in (w..total).step_by(4) {
                let garbage = random_garbage(&mut rng, &real, i);
                if i % 2 == 0 {
                    let (status, _, body) = conn
                        .send(
                            "POST",
                            "/apis/authentication.k8s.io/v1/tokenreviews",
                            &[],
                            &token_review_body(&garbage),
                        )
                        .await;
                    assert_eq!(status, 200, "{body}");
                    assert!(
                        body.contains("\"authenticated\":false"),
                        "accepted garbage: {body}"
                    );
                } else {
                    // Header values must be visible ASCII; others go in TokenReview only.
                    let mut header: String =
                        garbage.chars().filter(|c| c.is_ascii_graphic()).collect();
                    if header == real {
                        header.push('x');
                    }
                    let (status, head, _) = conn
                        .send(
                            "GET",
                            "/auth",
                            &[("Authorization", &format!("Bearer {header}"))],
                            "",
                        )
                        .await;
                    assert_eq!(status, 401, "{head}");
                }
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    // Malformed bodies.
    let mut conn = http::Connection::open(addr).await;
    for body in [
        "",
        "{",
        "[]",
        "null",
        "{\"spec\":{\"token\":42}}",
        "{\"kind\":\"Pod\"}",
        "\u{0}\u{1}",
    ] {
        let (status, _, answer) = conn
            .send(
                "POST",
                "/apis/authentication.k8s.io/v1/tokenreviews",
                &[],
                body,
            )
            .await;
        assert!(status == 400 || status == 200, "{status}: {answer}");
        assert!(!answer.contains("authenticated\":true"), "{answer}");
    }

    // Oversize head (limit 16 KiB) and body (limit 64 KiB).
    let big_header = format!(
        "GET /auth HTTP/1.1\r\nHost: v\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(32 * 1024)
    );
    let answer = raw_exchange(addr, big_header.as_bytes(), DEADLINE).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "oversize head: {answer:.80}"
    );
    let big_body = token_review_body(&"x".repeat(1024 * 1024));
    let request = format!(
        "POST /apis/authentication.k8s.io/v1/tokenreviews HTTP/1.1\r\nHost: v\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big_body}",
        big_body.len()
    );
    let answer = raw_exchange(addr, request.as_bytes(), DEADLINE).await;
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "oversize body: {answer:.80}"
    );

    // Slow clients: each sends part of a request head and then a byte a second.
    let slow = if soak() { 1000 } else { 200 };
    let mut slowpokes = Vec::new();
    for _ in 0..slow {
        slowpokes.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            let _ = stream.write_all(b"GET /auth HTTP/1.1\r\nHost: v\r\n").await;
            let started = Instant::now();
            let mut buf = [0u8; 256];
            loop {
                tokio::select! {
                    read = stream.read(&mut buf) => {
                        // Closed (or answered 408) by the server.
                        if matches!(read, Ok(0) | Err(_) | Ok(_)) { return started.elapsed(); }
                    }
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {
                        if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                            return started.elapsed();
                        }
                        assert!(started.elapsed() < Duration::from_secs(60), "a slow client was never cut off");
                    }
                }
            }
        }));
    }
    // While they hang on, the verifier still answers.
    let mut rss_peak = rss_start;
    let mut fds_peak = fds_start;
    let pid = operator.pid();
    let fds_now = move || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let connected = eventually("the slow clients to be connected", || async {
        let fds = fds_now();
        (fds >= fds_start + slow / 2).then_some(fds)
    })
    .await;
    fds_peak = fds_peak.max(connected);
    assert!(
        authenticated(addr, &real).await,
        "real token during slow clients"
    );
    for s in slowpokes {
        let held = s.await.expect("slow client");
        assert!(
            held >= Duration::from_secs(5),
            "cut off too early: {held:?}"
        );
        rss_peak = rss_peak.max(operator.rss_kib().unwrap_or(0));
    }
    let fds_end = eventually("the slow connections to be closed", || async {
        let fds = operator.open_fds()?;
        (fds <= fds_start + 8).then_some(fds)
    })
    .await;

    assert!(operator.running(), "the operator process died");
    assert!(
        authenticated(addr, &real).await,
        "the real token still works"
    );
    let rss_end = operator.rss_kib().expect("rss");
    let log = std::fs::read_to_string(&operator.log).unwrap_or_default();
    assert!(!log.contains("panicked"), "panic in the log:\n{log}");
    println!(
        "{total} garbage tokens, {slow} slow clients: RSS {rss_start} KiB -> peak {rss_peak} KiB -> {rss_end} KiB; fds {fds_start} -> peak {fds_peak} -> {fds_end}"
    );
    assert!(
        rss_peak.saturating_sub(rss_start) < 64 * 1024,
        "memory grew by {} KiB",
        rss_peak - rss_start
    );
}
