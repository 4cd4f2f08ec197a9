//! The benchmark suite: scale, steady state, rotation storm, time to the
//! verifier's changed answer, and verifier throughput — each figure printed
//! as a ratio against a baseline measured in the same run.
//!
//! `cargo bench --bench operator` runs the full suite (10k tokens, 100k
//! indexed tokens); `-- --quick` a short version (CI checks that it runs);
//! `-- --tokens N` sets the scale; `-- --only scale|storm|verifier` runs one
//! section. Results are printed as a Markdown table.
// The allocation counter below is a GlobalAlloc, which needs unsafe; nothing else here does.
#![allow(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apikey_operator::api::{ApiKey, ApiToken};
use apikey_operator::lean::Lean;
use apikey_operator::token;
use apikey_operator::verifier::{self, VerifierConfig};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use kube_emulator::{Emulator, EmulatorConfig, RequestStats};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The allocator the operator binary ships with (jemalloc, or the system's
/// without the `jemalloc` feature), so the verifier, which runs in this
/// process, is measured on the same stack. It counts per thread the bytes
/// allocated and not freed, so the verifier's memory per indexed token is measured exactly
/// (RSS growth moved with the allocator's caching) and without what other
/// threads free meanwhile (an earlier section's teardown made a process-wide
/// count negative).
struct CountingAlloc;

thread_local! {
    static THREAD_HEAP: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
}

fn track(delta: isize) {
    // `try_with`: a thread's last frees can run after its counter is gone.
    let _ = THREAD_HEAP.try_with(|c| c.set(c.get() + delta));
}

#[cfg(feature = "jemalloc")]
const INNER: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[cfg(not(feature = "jemalloc"))]
const INNER: std::alloc::System = std::alloc::System;

// SAFETY: every call is forwarded unchanged to the inner allocator; the
// counter is bookkeeping in a const-initialized thread local (no allocation).
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let p = unsafe { INNER.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        track(-(layout.size() as isize));
        unsafe { INNER.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        let p = unsafe { INNER.realloc(ptr, layout, new) };
        if !p.is_null() {
            track(new as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Bytes this thread allocated and has not freed.
fn heap_live() -> isize {
    THREAD_HEAP.with(|c| c.get())
}

/// Concurrency of the clients that create objects (baseline and operator alike).
const CONCURRENCY: usize = 32;

struct Settings {
    quick: bool,
    scales: Vec<usize>,
    storm: usize,
    steady: Duration,
    verifier_sizes: Vec<usize>,
    load: Duration,
}

impl Settings {
    fn from_args() -> Settings {
        let args: Vec<String> = std::env::args().collect();
        let quick = args.iter().any(|a| a == "--quick");
        let tokens = args
            .iter()
            .position(|a| a == "--tokens")
            .and_then(|i| args.get(i + 1))
            .and_then(|n| n.parse().ok());
        if quick {
            Settings {
                quick,
                scales: vec![tokens.unwrap_or(200)],
                storm: 100,
                steady: Duration::from_secs(5),
                verifier_sizes: vec![10_000],
                load: Duration::from_secs(2),
            }
        } else {
            Settings {
                quick,
                scales: tokens.map_or(vec![1_000, 10_000], |n| vec![n]),
                storm: 1_000,
                steady: Duration::from_secs(60),
                verifier_sizes: vec![1_000, 10_000, 100_000],
                load: Duration::from_secs(5),
            }
        }
    }
}

/// One line of the report.
struct Figure {
    section: &'static str,
    name: String,
    value: String,
    baseline: String,
    ratio: String,
    goal: &'static str,
}

fn figure(
    section: &'static str,
    name: impl Into<String>,
    value: impl Into<String>,
    baseline: impl Into<String>,
    ratio: impl Into<String>,
    goal: &'static str,
) -> Figure {
    Figure {
        section,
        name: name.into(),
        value: value.into(),
        baseline: baseline.into(),
        ratio: ratio.into(),
        goal,
    }
}

fn main() {
    let settings = Settings::from_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let figures = runtime.block_on(run(&settings));
    println!("\n| section | figure | value | baseline | ratio | goal |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for f in figures {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            f.section, f.name, f.value, f.baseline, f.ratio, f.goal
        );
    }
    println!(
        "\nmachine: {} cores, {}; mode: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu_model(),
        if settings.quick { "quick" } else { "full" }
    );
}

async fn run(settings: &Settings) -> Vec<Figure> {
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let wanted = |section: &str| only.as_deref().is_none_or(|o| o == section);
    let mut figures = Vec::new();
    if wanted("scale") {
        for &n in &settings.scales {
            figures.extend(scale_and_steady(n, settings).await);
        }
    }
    if wanted("storm") {
        figures.extend(storm(settings.storm).await);
    }
    if wanted("verifier") {
        for &n in &settings.verifier_sizes {
            figures.extend(verifier_load(n, settings.load).await);
        }
    }
    figures
}

// ---------------------------------------------------------------------------
// Harness: an emulator in this process, the operator as a child process.

struct Stack {
    emulator: Emulator,
    client: Client,
    kubeconfig: std::path::PathBuf,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn stack() -> Stack {
    let emulator = Emulator::start(EmulatorConfig {
        watch_history: 200_000,
        ..Default::default()
    })
    .await
    .expect("emulator");
    let client = emulator.client().await.expect("client");
    apikey_operator::cli::install_crds(client.clone(), Duration::from_secs(30))
        .await
        .expect("CRDs");
    let dir = std::env::temp_dir().join(format!(
        "apikey-bench-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = dir.join("kubeconfig");
    emulator.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    Stack {
        emulator,
        client,
        kubeconfig,
        _dir: TempDir(dir),
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

struct Operator {
    child: Child,
    verify: SocketAddr,
}

impl Operator {
    fn start(stack: &Stack) -> Operator {
        let port = free_port();
        // Its warnings (e.g. during the relist outage) go to a file, not the report.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(stack.kubeconfig.with_file_name("operator.log"))
            .expect("operator log file");
        // APIKEY_BENCH_WRAPPER runs the operator under a profiler, e.g.
        // "valgrind --tool=callgrind --callgrind-out-file=/tmp/operator.cg".
        let wrapper = std::env::var("APIKEY_BENCH_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(words).arg(env!("CARGO_BIN_EXE_apikey-operator"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_apikey-operator")),
        };
        let child = command
            .args(["run", "--kubeconfig"])
            .arg(&stack.kubeconfig)
            .args(["--verify-addr", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start the operator binary");
        Operator {
            child,
            verify: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Resident set size of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    proc_status_field(pid, "VmRSS:")
}

fn proc_status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) of a process.
fn cpu_time(pid: u32) -> Duration {
    let ticks_per_s = 100.0; // USER_HZ on Linux
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some(Duration::from_secs_f64((utime + stime) / ticks_per_s))
        })
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

async fn create_namespaces(client: &Client, names: impl Iterator<Item = String>) {
    let api: Api<Namespace> = Api::all(client.clone());
    for name in names {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns");
        let _ = api.create(&PostParams::default(), &ns).await;
    }
}

/// Creates an ApiKey `key` in each namespace `<prefix>-<i>`; returns their uids.
async fn create_keys(client: &Client, prefix: &str, namespaces: usize) -> Vec<String> {
    let mut uids = Vec::with_capacity(namespaces);
    for i in 0..namespaces {
        let api: Api<ApiKey> = Api::namespaced(client.clone(), &format!("{prefix}-{i}"));
        let key: ApiKey = serde_json::from_value(json!({
            "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiKey",
            "metadata": {"name": "key"}, "spec": {"owner": {"kind": "User", "name": format!("user-{i}")}}
        }))
        .expect("key");
        let key = api
            .create(&PostParams::default(), &key)
            .await
            .expect("key create");
        uids.push(key.uid().expect("key uid"));
    }
    uids
}

/// Runs `make(i)` for i in 0..n with `CONCURRENCY` in flight; returns the elapsed time.
async fn concurrently<F, Fut>(n: usize, make: F) -> Duration
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(make)
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
    start.elapsed()
}

/// Waits until `target` tokens are Ready (by watching), returns when.
/// `selector`: a label selector the tokens match.
async fn all_ready(
    client: &Client,
    selector: Option<&str>,
    target: usize,
    deadline: Duration,
) -> Option<Instant> {
    // Decoded without managedFields, so the observer takes less of the CPU it measures.
    let api: Api<Lean<ApiToken>> = Api::all(client.clone());
    let mut ready: HashSet<String> = HashSet::new();
    let config = watcher::Config {
        label_selector: selector.map(str::to_owned),
        ..watcher::Config::default()
    };
    let stream = apikey_operator::lean::watcher(api, config);
    let mut stream = std::pin::pin!(stream);
    let end = Instant::now() + deadline;
    while let Ok(Some(event)) = tokio::time::timeout(
        end.saturating_duration_since(Instant::now()),
        stream.try_next(),
    )
    .await
    .ok()?
    {
        let objects: Vec<ApiToken> = match event {
            watcher::Event::Apply(t) | watcher::Event::InitApply(t) => vec![t],
            _ => vec![],
        };
        for t in objects {
            let key = format!("{}/{}", t.namespace().unwrap_or_default(), t.name_any());
            if is_ready(&t) {
                ready.insert(key);
            } else {
                ready.remove(&key);
            }
        }
        if ready.len() >= target {
            return Some(Instant::now());
        }
    }
    None
}

fn is_ready(t: &ApiToken) -> bool {
    t.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            && s.pending.is_none()
    })
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".to_owned()
    }
}

// ---------------------------------------------------------------------------
// 1 + 2: scale, memory, writes per token, steady state.

async fn scale_and_steady(n: usize, settings: &Settings) -> Vec<Figure> {
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
    let create_time = concurrently(n, |i| {
        let api: Api<ApiToken> = Api::namespaced(client.clone(), &format!("bench-{}", i % namespaces));
        async move {
            let t: ApiToken = serde_json::from_value(json!({
                "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken",
                "metadata": {"name": format!("t-{i}")},
                "spec": {"apiKeyRef": {"name": "key"}, "expiration": {"lifetime": "90d"}, "rotation": {"every": "30d"}}
            }))
            .expect("token");
            api.create(&PostParams::default(), &t).await.expect("token create");
        }
    })
    .await;
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
async fn design_floor(s: &Stack, n: usize, namespaces: usize) -> Option<(Duration, Duration, u64)> {
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
const FLOOR_SELECTOR: Option<&str> = Some("bench=floor");

/// One token of the design's floor (see `design_floor`). Like the operator,
/// it decodes only the metadata it needs from each answer.
async fn scripted_token(tokens: &Api<ApiToken>, secrets: &Api<Secret>, name: &str, key_uid: &str) {
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
struct Answer {
    metadata: AnswerMeta,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnswerMeta {
    resource_version: Option<String>,
    uid: Option<String>,
}

/// Sends a request built for `api`'s URL; panics on an error (a broken benchmark).
async fn send<K>(
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
const QUIET: Duration = Duration::from_secs(3);

/// Waits until `quiet` passes without a write to the emulator (or `limit`).
async fn quiet(s: &Stack, quiet: Duration, limit: Duration) {
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
fn request_breakdown(
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
async fn relist_peak(s: &Stack, pid: u32) -> u64 {
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

// ---------------------------------------------------------------------------
// 3: rotation storm and time to the verifier's changed answer.

async fn storm(n: usize) -> Vec<Figure> {
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

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn verifier_reaction(s: &Stack, op: &Operator) -> Vec<Figure> {
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

async fn accepted(addr: SocketAddr, value: &str) -> bool {
    matches!(http_get(addr, "/auth", Some(value)).await, Some(200))
}

async fn http_get(addr: SocketAddr, path: &str, api_key: Option<&str>) -> Option<u16> {
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

// ---------------------------------------------------------------------------
// 4: verifier throughput and latency, memory per indexed token.

async fn verifier_load(n: usize, duration: Duration) -> Vec<Figure> {
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

/// Rounds of unpaced load on the verifier (see `verifier_load`).
const LOAD_ROUNDS: usize = 5;

struct LoadResult {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    /// Every request's latency, sorted.
    latencies: Vec<f64>,
    duration: Duration,
}

/// One kind of load's rounds, and all of them taken together.
struct LoadRounds {
    rounds: Vec<LoadResult>,
    all: LoadResult,
}

impl LoadRounds {
    fn new(rounds: Vec<LoadResult>) -> LoadRounds {
        let duration = rounds.iter().map(|r| r.duration).sum();
        let latencies = rounds.iter().flat_map(|r| r.latencies.iter().copied());
        let all = LoadResult::new(latencies.collect(), duration);
        LoadRounds { rounds, all }
    }

    /// The median over rounds of this load's rate against `baseline`'s in the same round.
    fn median_ratio(&self, baseline: &LoadRounds) -> f64 {
        let mut ratios: Vec<f64> = (self.rounds.iter().zip(&baseline.rounds))
            .map(|(r, b)| r.rate / b.rate)
            .collect();
        ratios.sort_by(f64::total_cmp);
        percentile(&ratios, 0.5)
    }
}

impl LoadResult {
    fn new(mut latencies: Vec<f64>, duration: Duration) -> LoadResult {
        latencies.sort_by(f64::total_cmp);
        LoadResult {
            rate: latencies.len() as f64 / duration.as_secs_f64(),
            p50_us: percentile(&latencies, 0.5),
            p99_us: percentile(&latencies, 0.99),
            latencies,
            duration,
        }
    }
}

/// Keep-alive HTTP/1.1 clients on loopback; with `pace`, an offered rate in
/// requests per second spread evenly over the connections (see
/// `paced_connection`). Every answer must have status `expect`, or the
/// figure would time the wrong path: the run stops.
async fn load(
    addr: SocketAddr,
    path: &'static str,
    values: Arc<Vec<String>>,
    duration: Duration,
    pace: Option<f64>,
    expect: u16,
) -> LoadResult {
    let connections = 32;
    // Requests are built before the clock starts, so that the client's work
    // per request is a write and a parse, as in wrk.
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(if values.is_empty() {
        vec![format!("GET {path} HTTP/1.1\r\nHost: v\r\n\r\n").into_bytes()]
    } else {
        values
            .iter()
            .map(|v| {
                format!("GET {path} HTTP/1.1\r\nHost: v\r\nX-API-Key: {v}\r\n\r\n").into_bytes()
            })
            .collect()
    });
    let start = Instant::now();
    let end = start + duration;
    if let Some(rate) = pace {
        let interval = Duration::from_secs_f64(connections as f64 / rate);
        // Joined off the runtime: its worker threads serve the verifier.
        let paced = tokio::task::spawn_blocking(move || {
            let threads: Vec<_> = (0..connections)
                .map(|c| {
                    let requests = requests.clone();
                    // Connection c sends at start + (c / connections + n) × interval.
                    let first = start + interval.mul_f64(c as f64 / connections as f64);
                    let lane = Lane {
                        first: c,
                        stride: connections,
                    };
                    std::thread::spawn(move || {
                        paced_connection(addr, path, &requests, lane, first, interval, end, expect)
                    })
                })
                .collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().expect("a paced load connection failed"))
                .collect()
        });
        return LoadResult::new(paced.await.expect("the paced load"), duration);
    }
    let mut tasks = Vec::new();
    for c in 0..connections {
        let requests = requests.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let Ok(mut stream) = TcpStream::connect(addr).await else {
                return latencies;
            };
            let _ = stream.set_nodelay(true);
            let mut buf = Vec::with_capacity(4096);
            let mut i = c;
            while Instant::now() < end {
                let req = &requests[i % requests.len()];
                i += connections;
                let start = Instant::now();
                if stream.write_all(req).await.is_err() {
                    break;
                }
                match read_response(&mut stream, &mut buf).await {
                    Some(status) => check_status(path, status, expect),
                    None => break,
                }
                latencies.push(start.elapsed().as_secs_f64() * 1e6);
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("a load connection failed"));
    }
    LoadResult::new(all, duration)
}

fn check_status(path: &str, status: u16, expect: u16) {
    assert_eq!(
        status, expect,
        "GET {path} answered {status}, expected {expect}: the load measures the wrong path"
    );
}

/// Which of the prebuilt requests a connection sends: `first`, then every
/// `stride`-th.
struct Lane {
    first: usize,
    stride: usize,
}

/// One paced connection on an OS thread of its own. tokio's timer ticks
/// every millisecond, so paced tasks woke on the same tick and sent in
/// bursts of 20–32 requests each millisecond, whatever their schedule; a
/// thread's sleep ends within tens of microseconds of its instant, so the
/// connections' staggered schedules give evenly spaced requests (as wrk2
/// paces). A late request is sent at once, and timed from when it was sent.
#[allow(clippy::too_many_arguments)]
fn paced_connection(
    addr: SocketAddr,
    path: &str,
    requests: &[Vec<u8>],
    lane: Lane,
    first: Instant,
    interval: Duration,
    end: Instant,
    expect: u16,
) -> Vec<f64> {
    use std::io::Write;
    let mut latencies = Vec::new();
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return latencies;
    };
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    let mut next = first;
    let mut i = lane.first;
    while next < end {
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        next += interval;
        let req = &requests[i % requests.len()];
        i += lane.stride;
        let start = Instant::now();
        if stream.write_all(req).is_err() {
            break;
        }
        let read = |got: &mut Vec<u8>| {
            let mut chunk = [0u8; 4096];
            let n = std::io::Read::read(&mut stream, &mut chunk)
                .ok()
                .filter(|&n| n > 0)?;
            got.extend_from_slice(&chunk[..n]);
            Some(())
        };
        match blocking_response(&mut buf, read) {
            Some(status) => check_status(path, status, expect),
            None => break,
        }
        latencies.push(start.elapsed().as_secs_f64() * 1e6);
    }
    latencies
}

/// A response's status once `got` holds all of it (head + Content-Length
/// body); `Ok(None)` while more is needed, `Err` when it is not HTTP.
fn parsed_response(got: &[u8]) -> Result<Option<u16>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(got) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(()),
    };
    let status = response.code.ok_or(())?;
    let len: usize = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
        .unwrap_or(0);
    Ok((got.len() >= head + len).then_some(status))
}

/// Reads one response with `read` (which appends to `got`); its status, or
/// `None` when the connection ended.
fn blocking_response(
    got: &mut Vec<u8>,
    mut read: impl FnMut(&mut Vec<u8>) -> Option<()>,
) -> Option<u16> {
    got.clear();
    loop {
        read(got)?;
        if let Some(status) = parsed_response(got).ok()? {
            return Some(status);
        }
    }
}

/// Reads one response from a keep-alive connection into `got`; its status
/// code, or `None` when the connection ended. The head is parsed by
/// httparse (hyper's parser), so the client's cost hardly grows with the
/// size of the answer it times.
async fn read_response(stream: &mut TcpStream, got: &mut Vec<u8>) -> Option<u16> {
    got.clear();
    loop {
        stream.read_buf(got).await.ok().filter(|&n| n > 0)?;
        if let Some(status) = parsed_response(got).ok()? {
            return Some(status);
        }
    }
}
