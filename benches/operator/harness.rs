//! The shared harness: an emulator in this process, the operator as a child process, and the
//! helpers every section uses (namespaces, keys, readiness, /proc readings, formatting).

use super::*;

pub(crate) struct Stack {
    pub(crate) emulator: Emulator,
    pub(crate) client: Client,
    pub(crate) kubeconfig: std::path::PathBuf,
    _dir: TempDir,
}

pub(crate) struct TempDir(pub(crate) std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) async fn stack() -> Stack {
    stack_with(Vec::new()).await
}

/// A stack whose emulator also knows the static tokens `tokens`.
/// An emulator with the operator's CRDs installed, and an admin client of it.
pub(crate) async fn emulator_with_crds(config: EmulatorConfig) -> (Emulator, kube::Client) {
    let emulator = Emulator::start(config).await.expect("emulator");
    let client = emulator.client().await.expect("client");
    apikey_operator::cli::install_crds(client.clone(), Duration::from_secs(30))
        .await
        .expect("CRDs");
    (emulator, client)
}

pub(crate) async fn stack_with(tokens: Vec<kube_emulator::StaticToken>) -> Stack {
    let (emulator, client) = emulator_with_crds(EmulatorConfig {
        watch_history: 200_000,
        tokens,
        ..Default::default()
    })
    .await;
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

pub(crate) fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

pub(crate) struct Operator {
    child: Child,
    pub(crate) verify: SocketAddr,
}

impl Operator {
    pub(crate) fn start(stack: &Stack) -> Operator {
        Operator::start_with(stack, &stack.kubeconfig, &["--webhook-addr", "127.0.0.1:0"])
    }

    /// The operator with the credentials of `kubeconfig` and `extra` arguments.
    pub(crate) fn start_with(
        stack: &Stack,
        kubeconfig: &std::path::Path,
        extra: &[&str],
    ) -> Operator {
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
            .arg(kubeconfig)
            .args(["--verify-addr", &format!("127.0.0.1:{port}")])
            .args(extra)
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

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        exit_or_kill(&mut self.child, Duration::from_secs(10));
    }
}

/// Waits up to `within` for `child` to exit, then kills it.
pub(crate) fn exit_or_kill(child: &mut Child, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Resident set size of a process in KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    proc_status_field(pid, "VmRSS:")
}

pub(crate) fn proc_status_field(pid: u32, field: &str) -> u64 {
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
pub(crate) fn cpu_time(pid: u32) -> Duration {
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

pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

pub(crate) async fn create_namespaces(client: &Client, names: impl Iterator<Item = String>) {
    let api: Api<Namespace> = Api::all(client.clone());
    for name in names {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns");
        let _ = api.create(&PostParams::default(), &ns).await;
    }
}

/// Creates an ApiKey `key` in each namespace `<prefix>-<i>`; returns their uids.
pub(crate) async fn create_keys(client: &Client, prefix: &str, namespaces: usize) -> Vec<String> {
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

/// Creates the tokens `t-<i>` for i in 0..n on the ApiKey `key` of the namespaces
/// `bench-<i mod namespaces>`, with `CONCURRENCY` in flight; returns the elapsed time.
pub(crate) async fn create_tokens(client: &Client, n: usize, namespaces: usize) -> Duration {
    concurrently(n, |i| {
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
    .await
}

/// Runs `make(i)` for i in 0..n with `CONCURRENCY` in flight; returns the elapsed time.
pub(crate) async fn concurrently<F, Fut>(n: usize, make: F) -> Duration
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
pub(crate) async fn all_ready(
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

pub(crate) fn is_ready(t: &ApiToken) -> bool {
    t.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            && s.pending.is_none()
    })
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

pub(crate) fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".to_owned()
    }
}
