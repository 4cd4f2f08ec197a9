//! An in-memory Kubernetes API server on loopback for kube-rs and kubectl tests: the REST API,
//! CRDs with schema and CEL validation, watches, server-side apply and garbage collection (the
//! crate's README.md lists what is and is not emulated). `Emulator` is the handle tests start and
//! stop; apikey-operator's `local` mode, integration tests and benchmarks run on it.
#![forbid(unsafe_code)]

mod discovery;
mod error;
mod gc;
mod http;
mod ops;
mod patch;
pub mod protobuf;
mod registry;
pub mod schema;
mod selector;
mod store;
mod table;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use error::{ApiError, EmulatorError};
use store::State;

/// How to start an emulator. `EmulatorConfig::default()` is a random port and no persistence.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Where objects are loaded from at start and saved to at shutdown.
    pub state_file: Option<PathBuf>,
    /// How many change events are kept for watch resume; older resourceVersions get 410 Gone.
    pub watch_history: usize,
    /// How often watches that asked for bookmarks get one (the real server: about a minute).
    pub bookmark_interval: Duration,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            port: 0,
            state_file: None,
            watch_history: 50_000,
            bookmark_interval: Duration::from_secs(30),
        }
    }
}

/// Request counters by verb; take two snapshots and subtract to count what happened in between.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestStats {
    pub get: u64,
    pub list: u64,
    pub watch: u64,
    pub create: u64,
    pub update: u64,
    pub patch: u64,
    pub delete: u64,
    pub deletecollection: u64,
    /// create + update + patch + delete + deletecollection.
    pub writes: u64,
}

impl std::ops::Sub for RequestStats {
    type Output = RequestStats;
    fn sub(self, o: RequestStats) -> RequestStats {
        RequestStats {
            get: self.get - o.get,
            list: self.list - o.list,
            watch: self.watch - o.watch,
            create: self.create - o.create,
            update: self.update - o.update,
            patch: self.patch - o.patch,
            delete: self.delete - o.delete,
            deletecollection: self.deletecollection - o.deletecollection,
            writes: self.writes - o.writes,
        }
    }
}

#[derive(Debug, Default)]
struct Counters([AtomicU64; 8]);

const VERBS: [&str; 8] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

impl Counters {
    fn count(&self, verb: &str) {
        if let Some(i) = VERBS.iter().position(|v| *v == verb) {
            self.0[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> RequestStats {
        let n = |i: usize| self.0[i].load(Ordering::Relaxed);
        RequestStats {
            get: n(0),
            list: n(1),
            watch: n(2),
            create: n(3),
            update: n(4),
            patch: n(5),
            delete: n(6),
            deletecollection: n(7),
            writes: (3..8).map(n).sum(),
        }
    }
}

/// State shared by the HTTP handler and the background tasks.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    stats: Counters,
    /// Writes and single-object reads by `METHOD resource[/subresource]
    /// status-code`, for benchmarks and tests to break down.
    requests_by: Mutex<std::collections::BTreeMap<String, u64>>,
    available: AtomicBool,
}

impl Shared {
    /// The store lock; a panic while holding it leaves consistent data (every write is one
    /// `State::put`), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running emulator.
#[derive(Debug)]
pub struct Emulator {
    shared: Arc<Shared>,
    port: u16,
    state_file: Option<PathBuf>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl Emulator {
    /// Binds 127.0.0.1:`port`, loads the state file if any, and serves until `shutdown`.
    pub async fn start(cfg: EmulatorConfig) -> Result<Emulator, EmulatorError> {
        let mut state = State::new(cfg.watch_history);
        if let Some(path) = &cfg.state_file
            && path.exists()
        {
            let text = std::fs::read(path).map_err(|source| EmulatorError::StateIo {
                path: path.display().to_string(),
                source,
            })?;
            let snap: serde_json::Value =
                serde_json::from_slice(&text).map_err(|source| EmulatorError::StateFormat {
                    path: path.display().to_string(),
                    source,
                })?;
            state.restore(&snap);
        }
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            ops::seed_namespace(&mut state, ns);
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            stats: Counters::default(),
            requests_by: Mutex::default(),
            available: AtomicBool::new(true),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", cfg.port))
            .await
            .map_err(|source| EmulatorError::Bind {
                port: cfg.port,
                source,
            })?;
        let port = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind {
                port: cfg.port,
                source,
            })?
            .port();
        let app = axum::Router::new()
            .fallback(http::serve)
            .with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "emulator server stopped with an error");
            }
        });
        let gc_shared = shared.clone();
        let gc_task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tick.tick().await;
                let mut st = gc_shared.lock();
                if st.gc_pending {
                    st.gc_pending = false;
                    gc::collect(&mut st);
                }
            }
        });
        let bm_shared = shared.clone();
        let interval = cfg.bookmark_interval.max(Duration::from_millis(10));
        let bookmark_task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            loop {
                tick.tick().await;
                bm_shared.lock().bookmark_all();
            }
        });
        Ok(Emulator {
            shared,
            port,
            state_file: cfg.state_file,
            stop: Some(stop),
            server,
            tasks: vec![gc_task, bookmark_task],
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A kubeconfig with one cluster, user and context (namespace `default`).
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: apikey-emulator\n  cluster:\n    server: {}\ncontexts:\n- name: apikey-emulator\n  context:\n    cluster: apikey-emulator\n    user: apikey-emulator\n    namespace: default\ncurrent-context: apikey-emulator\nusers:\n- name: apikey-emulator\n  user: {{}}\npreferences: {{}}\n",
            self.url()
        )
    }

    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), EmulatorError> {
        std::fs::write(path, self.kubeconfig_yaml()).map_err(|source| EmulatorError::Kubeconfig {
            path: path.display().to_string(),
            source,
        })
    }

    /// A kube client for this emulator (default namespace `default`).
    pub async fn client(&self) -> Result<kube::Client, EmulatorError> {
        Ok(kube::Client::try_from(self.config()?)?)
    }

    /// Connection settings for a client of this emulator.
    pub fn config(&self) -> Result<kube::Config, EmulatorError> {
        let url = self
            .url()
            .parse()
            .map_err(|e: axum::http::uri::InvalidUri| EmulatorError::Url(e.to_string()))?;
        Ok(kube::Config::new(url))
    }

    /// Requests to resources so far, by verb; those refused with 503 while
    /// unavailable are counted too.
    pub fn stats(&self) -> RequestStats {
        self.shared.stats.snapshot()
    }

    /// Writes and GETs of single objects so far, by `METHOD
    /// resource[/subresource] status-code` (e.g. `PATCH apitokens/status 409`,
    /// `GET secrets 404`); lists and watches are not counted here.
    pub fn requests_by(&self) -> std::collections::BTreeMap<String, u64> {
        self.shared
            .requests_by
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Fault injection: while false every request gets 503 (still counted in
    /// `stats()`) and open watches are closed.
    pub fn set_available(&self, up: bool) {
        self.shared.available.store(up, Ordering::Release);
        if !up {
            self.shared.lock().watchers.clear();
        }
    }

    /// The current store-wide resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Writes all objects and the resourceVersion counter to the state file, if configured.
    pub fn save_state(&self) -> Result<(), EmulatorError> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        let snap = self.shared.lock().snapshot();
        let io = |source| EmulatorError::StateIo {
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec(&snap).map_err(|source| EmulatorError::StateFormat {
            path: path.display().to_string(),
            source,
        })?;
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Closes watches, stops serving, and persists state if a state file is set.
    pub async fn shutdown(mut self) -> Result<(), EmulatorError> {
        self.shared.lock().watchers.clear();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.server).await;
        self.server.abort();
        for t in &self.tasks {
            t.abort();
        }
        self.save_state()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.server.abort();
        for t in &self.tasks {
            t.abort();
        }
    }
}
