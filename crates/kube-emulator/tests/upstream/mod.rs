//! The upstream Kubernetes code that serves CRDs and custom resources
//! (`k8s.io/apiextensions-apiserver`, built by `setup.sh` here), started with etcd on loopback
//! for the fidelity tests: the emulator's (`tests/emulator/fidelity/`) and, through `#[path]`,
//! the apikey-operator's. `Upstream::start` returns `None` when the binaries are not built, so
//! the tests that need it skip; with `APIKEY_UPSTREAM_REQUIRED=1` (set by CI after setup) a
//! missing build is a failure instead. `differential` compares its answers with the emulator's.
#![allow(dead_code)] // each test binary uses a different subset

pub mod differential;
pub mod ports;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// How long etcd plus the server may take to become ready (a cold start on 2 busy cores).
const READY_DEADLINE: Duration = Duration::from_secs(90);

/// Where setup.sh caches the build: `$APIKEY_UPSTREAM_CACHE`, else
/// `$HOME/.cache/apikey-operator-upstream`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("APIKEY_UPSTREAM_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    Path::new(&home).join(".cache/apikey-operator-upstream")
}

/// The wrapper and etcd binaries, if both are built.
pub fn binaries() -> Option<(PathBuf, PathBuf)> {
    let bin = cache_dir().join("bin");
    let server = bin.join("apiextensions-wrapper");
    let etcd = bin.join("etcd");
    (server.is_file() && etcd.is_file()).then_some((server, etcd))
}

/// A running etcd + apiextensions-apiserver pair; both are killed (by PID) on drop.
pub struct Upstream {
    processes: Processes,
    pub kubeconfig: PathBuf,
    pub client: Client,
}

impl Upstream {
    /// Starts etcd and the server, waits until `/readyz` answers ok. `None` (after printing why)
    /// when the build is missing and not required.
    pub async fn start(test: &str) -> Option<Upstream> {
        Upstream::start_with(test, &[]).await
    }

    /// The same with more flags for the server (the wrapper's opt-in ones, e.g. the webhook
    /// token authenticator's).
    pub async fn start_with(test: &str, server_args: &[String]) -> Option<Upstream> {
        let required = std::env::var("APIKEY_UPSTREAM_REQUIRED").is_ok_and(|v| v == "1");
        let Some((server_bin, etcd_bin)) = binaries() else {
            assert!(
                !required,
                "APIKEY_UPSTREAM_REQUIRED=1 but no upstream build in {}; run crates/kube-emulator/tests/upstream/setup.sh",
                cache_dir().display()
            );
            eprintln!(
                "note: skipping {test}: the upstream API server is not built (run crates/kube-emulator/tests/upstream/setup.sh)"
            );
            return None;
        };
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "apikey-upstream-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        // A port picked free can be taken before etcd or the server binds it (by another test's
        // process); such a start is retried on fresh ports.
        let mut attempt = 1;
        loop {
            let mut processes = Processes::spawn(&server_bin, &etcd_bin, &dir, server_args);
            let kubeconfig = processes.dir.join("pki/kubeconfig");
            match processes.wait_ready(&kubeconfig).await {
                Ok(client) => {
                    return Some(Upstream {
                        processes,
                        kubeconfig,
                        client,
                    });
                }
                Err(failure) if failure.contains("address already in use") && attempt < 3 => {
                    eprintln!("note: {test}: a port was taken meanwhile; starting again");
                    attempt += 1;
                    drop(processes);
                }
                Err(failure) if failure.contains("flag provided but not defined") => {
                    let stale = "the upstream build predates a flag this test needs (run \
                                 crates/kube-emulator/tests/upstream/setup.sh again)";
                    assert!(
                        !required,
                        "APIKEY_UPSTREAM_REQUIRED=1 but {stale}\n{failure}"
                    );
                    eprintln!("note: skipping {test}: {stale}");
                    return None;
                }
                Err(failure) => panic!("{failure}"),
            }
        }
    }

    /// The server's URL (`https://127.0.0.1:<port>`) and the CA file its certificate chains to.
    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.processes.server_port)
    }

    pub fn ca_file(&self) -> PathBuf {
        self.processes.dir.join("pki/ca.crt")
    }

    /// The server's log so far (for failure messages).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.processes.dir.join("server.log")).unwrap_or_default()
    }
}

/// etcd and the server with their working directory; stopped by PID and removed on drop
/// (`APIKEY_UPSTREAM_KEEP=1` keeps the directory and its logs).
struct Processes {
    etcd: Child,
    server: Child,
    server_port: u16,
    dir: PathBuf,
}

impl Processes {
    /// Starts etcd and the server on fresh ports, their data and logs under `dir` (emptied first).
    fn spawn(server_bin: &Path, etcd_bin: &Path, dir: &Path, server_args: &[String]) -> Processes {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("temporary directory");
        let [etcd_port, peer_port, server_port] = ports::free_ports();
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = Command::new(etcd_bin)
            .args(["--name", "fidelity", "--data-dir"])
            .arg(dir.join("etcd"))
            .args(["--listen-client-urls", &etcd_url])
            .args(["--advertise-client-urls", &etcd_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("fidelity={peer_url}")])
            .args(["--log-level", "warn", "--unsafe-no-fsync"])
            .stdin(Stdio::null())
            .stdout(log_file(dir, "etcd.log"))
            .stderr(log_file(dir, "etcd.log"))
            .spawn()
            .expect("etcd starts");
        let server = Command::new(server_bin)
            .args(["--etcd-servers", &etcd_url])
            .args(["--secure-port", &server_port.to_string()])
            .arg("--cert-dir")
            .arg(dir.join("pki"))
            .args(server_args)
            .stdin(Stdio::null())
            .stdout(log_file(dir, "server.log"))
            .stderr(log_file(dir, "server.log"))
            .spawn()
            .expect("apiextensions-wrapper starts");
        Processes {
            etcd,
            server,
            server_port,
            dir: dir.to_path_buf(),
        }
    }

    fn stop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
    }

    /// A client once `/readyz` answers ok; else why not (a process exited, or the deadline
    /// passed), with the logs' tails.
    async fn wait_ready(&mut self, kubeconfig: &Path) -> Result<Client, String> {
        let start = Instant::now();
        let mut last = String::from("no kubeconfig yet");
        while start.elapsed() < READY_DEADLINE {
            let exited = [
                ("etcd", self.etcd.try_wait()),
                ("server", self.server.try_wait()),
            ];
            for (name, status) in exited {
                if let Ok(Some(status)) = status {
                    return Err(format!("{name} exited with {status}\n{}", self.logs()));
                }
            }
            if kubeconfig.is_file() {
                match ready_client(kubeconfig).await {
                    Ok(client) => return Ok(client),
                    Err(e) => last = e,
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(format!(
            "upstream not ready after {READY_DEADLINE:?}: {last}\n{}",
            self.logs()
        ))
    }

    fn logs(&self) -> String {
        let tail = |name: &str| {
            let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        format!(
            "--- etcd.log ---\n{}\n--- server.log ---\n{}",
            tail("etcd.log"),
            tail("server.log")
        )
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("APIKEY_UPSTREAM_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

async fn ready_client(kubeconfig: &Path) -> Result<Client, String> {
    let config = Kubeconfig::read_from(kubeconfig).map_err(|e| e.to_string())?;
    let config = kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let client = Client::try_from(config).map_err(|e| e.to_string())?;
    let request = axum::http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let body = client
        .request_text(request)
        .await
        .map_err(|e| e.to_string())?;
    if body.trim() == "ok" {
        Ok(client)
    } else {
        Err(body)
    }
}

fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .expect("log file")
}
