//! An in-memory Kubernetes API server on loopback for kube-rs and kubectl tests: the REST API,
//! CRDs with schema and CEL validation, watches, server-side apply and garbage collection (the
//! crate's README.md lists what is and is not emulated). `Emulator` is the handle tests start and
//! stop; apikey-operator's `local` mode, integration tests and benchmarks run on it.
#![forbid(unsafe_code)]

mod admission;
mod auth;
mod discovery;
mod error;
mod events;
mod gc;
mod http;
mod ops;
mod patch;
mod persist;
pub mod protobuf;
mod registry;
pub mod schema;
mod selector;
mod store;
mod table;
mod tls;
pub mod user;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use auth::{Anonymous, StaticToken, TokenFileError, parse_token_file};
pub use error::{ApiError, EmulatorError};
use store::State;
pub use user::UserInfo;

/// How to start an emulator. `EmulatorConfig::default()` is a random port and no persistence.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Where objects are kept across restarts: a snapshot at this path and a journal of the
    /// changes since (`<path>.journal`), on disk before each write is answered (see `persist`).
    pub state_file: Option<PathBuf>,
    /// How many change events are kept for watch resume; older resourceVersions get 410 Gone.
    pub watch_history: usize,
    /// How often watches that asked for bookmarks get one (the real server: about a minute).
    pub bookmark_interval: Duration,
    /// Where admission webhooks' `clientConfig.service` (namespace, name, port) are reached:
    /// no Services run here, so the embedding program says where it serves them.
    pub service_addrs: HashMap<(String, String, u16), SocketAddr>,
    /// Bearer tokens of users besides the admin (kube-apiserver's `--token-auth-file`).
    pub tokens: Vec<StaticToken>,
    /// What a request without a token is.
    pub anonymous: Anonymous,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            port: 0,
            state_file: None,
            watch_history: 50_000,
            bookmark_interval: Duration::from_secs(30),
            service_addrs: HashMap::new(),
            tokens: Vec::new(),
            anonymous: Anonymous::default(),
        }
    }
}

/// Where a kubeconfig's admin context points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeconfigAdmin {
    /// The TLS URL, like the users' contexts: kubectl authenticates with the admin token.
    Tls,
    /// The plain-HTTP URL (`url()`): kube-rs sends the admin token there, kubectl sends no
    /// credentials, so for kubectl it is the admin only with `Anonymous::Admin`.
    PlainHttp,
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
    /// `EmulatorConfig::service_addrs`.
    services: admission::ServiceAddrs,
    authn: auth::Authn,
    /// The state files, when `state_file` is set.
    journal: Option<Mutex<persist::Journal>>,
}

impl Shared {
    /// The store lock; a panic while holding it leaves consistent data (every write is one
    /// `State::put`), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The RBAC index, brought up to date first if RBAC objects changed.
    fn policy(&self) -> Arc<auth::Policy> {
        let mut st = self.lock();
        auth::refresh(&mut st);
        st.policy.clone()
    }
}

/// A running emulator.
#[derive(Debug)]
pub struct Emulator {
    shared: Arc<Shared>,
    port: u16,
    tls_port: u16,
    admin_token: String,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl Emulator {
    /// Binds 127.0.0.1:`port`, loads the state file if any, and serves until `shutdown`.
    pub async fn start(cfg: EmulatorConfig) -> Result<Emulator, EmulatorError> {
        let mut state = State::new(cfg.watch_history);
        let mut journal = match &cfg.state_file {
            Some(path) => Some(persist::Journal::open(path, &mut state)?),
            None => None,
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            ops::seed_namespace(&mut state, ns);
        }
        auth::seed_bootstrap_policy(&mut state);
        if let Some(journal) = &mut journal {
            journal.compact(&state.take_snapshot())?;
        }
        let admin_token = auth::tokens::random_token();
        let mut tokens = vec![StaticToken {
            token: admin_token.clone(),
            user: UserInfo::admin(),
        }];
        tokens.extend(cfg.tokens.iter().cloned());
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            stats: Counters::default(),
            requests_by: Mutex::default(),
            available: AtomicBool::new(true),
            services: cfg.service_addrs.clone(),
            authn: auth::Authn::new(&tokens, cfg.anonymous),
            journal: journal.map(Mutex::new),
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
        let tls_listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|source| EmulatorError::Bind { port: 0, source })?;
        let tls_port = tls_listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind { port: 0, source })?
            .port();
        let tls_task = tokio::spawn(tls::serve(tls_listener, app.clone())?);
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
                {
                    let mut st = gc_shared.lock();
                    if st.gc_pending {
                        st.gc_pending = false;
                        gc::collect(&mut st);
                    }
                    // ClusterRole aggregation, as the controller-manager does it: soon after a
                    // change (requests that need the policy refresh it at once).
                    auth::refresh(&mut st);
                }
                // The server's own writes above are answered to nobody: on disk within a tick.
                if let Err(e) = gc_shared.persist() {
                    tracing::error!(error = %e, "cannot write the emulator's state journal");
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
            tls_port,
            admin_token,
            stop: Some(stop),
            server,
            tasks: vec![gc_task, bookmark_task, tls_task],
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://127.0.0.1:PORT`: the same API over TLS (certificate `tls_ca_pem`), which is
    /// what kubectl needs to send a token or impersonation headers.
    pub fn tls_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.tls_port)
    }

    /// The CA certificate (PEM) of `tls_url`.
    pub fn tls_ca_pem(&self) -> &'static str {
        tls::CA_PEM
    }

    /// A kubeconfig with one cluster, user and context (namespace `default`): the admin,
    /// `system:admin` in group `system:masters`, on the plain-HTTP URL. kube-rs sends the token
    /// there; kubectl sends no credentials over HTTP, so it is anonymous, which is the admin
    /// again only with `Anonymous::Admin` (the default).
    pub fn kubeconfig_yaml(&self) -> String {
        self.kubeconfig_yaml_with(&[], KubeconfigAdmin::PlainHttp)
    }

    /// A kubeconfig whose current context is the admin's (`apikey-emulator`), with one more
    /// context per given token, named after its user, on the TLS URL (kubectl sends tokens
    /// only over TLS); `admin` says where the admin's context points.
    pub fn kubeconfig_yaml_with(&self, users: &[StaticToken], admin: KubeconfigAdmin) -> String {
        use base64::Engine;
        let tls_cluster = |name: &str| {
            format!(
                "- name: {name}\n  cluster:\n    server: {}\n    certificate-authority-data: {}\n",
                self.tls_url(),
                base64::engine::general_purpose::STANDARD.encode(tls::CA_PEM)
            )
        };
        let (clusters, user_cluster) = match admin {
            KubeconfigAdmin::Tls => (tls_cluster("apikey-emulator"), "apikey-emulator"),
            KubeconfigAdmin::PlainHttp => (
                format!(
                    "- name: apikey-emulator\n  cluster:\n    server: {}\n{}",
                    self.url(),
                    if users.is_empty() {
                        String::new()
                    } else {
                        tls_cluster("apikey-emulator-tls")
                    }
                ),
                "apikey-emulator-tls",
            ),
        };
        let mut contexts = String::new();
        let mut entries = String::new();
        let admin = std::iter::once((
            "apikey-emulator",
            "apikey-emulator",
            self.admin_token.as_str(),
        ));
        let others = users
            .iter()
            .enumerate()
            // A later token for the same user replaces an earlier one.
            .filter(|(i, t)| {
                !users[i + 1..]
                    .iter()
                    .any(|u| u.user.username == t.user.username)
            })
            .map(|(_, t)| (user_cluster, t.user.username.as_str(), t.token.as_str()));
        for (cluster, name, token) in admin.chain(others) {
            let name = serde_json::to_string(name).unwrap_or_default();
            let token = serde_json::to_string(token).unwrap_or_default();
            contexts.push_str(&format!(
                "- name: {name}\n  context:\n    cluster: {cluster}\n    user: {name}\n    namespace: default\n"
            ));
            entries.push_str(&format!("- name: {name}\n  user:\n    token: {token}\n"));
        }
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n{clusters}contexts:\n{contexts}current-context: apikey-emulator\nusers:\n{entries}preferences: {{}}\n"
        )
    }

    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), EmulatorError> {
        self.write_private(path, &self.kubeconfig_yaml())
    }

    /// `kubeconfig_yaml_with` written to `path`.
    pub fn write_kubeconfig_with(
        &self,
        path: &Path,
        users: &[StaticToken],
        admin: KubeconfigAdmin,
    ) -> Result<(), EmulatorError> {
        self.write_private(path, &self.kubeconfig_yaml_with(users, admin))
    }

    /// Writes a kubeconfig readable by its owner only (it holds tokens).
    fn write_private(&self, path: &Path, text: &str) -> Result<(), EmulatorError> {
        let io = |source| EmulatorError::Kubeconfig {
            path: path.display().to_string(),
            source,
        };
        std::fs::write(path, text).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
        Ok(())
    }

    /// A kube client for this emulator as the admin (default namespace `default`).
    pub async fn client(&self) -> Result<kube::Client, EmulatorError> {
        Ok(kube::Client::try_from(self.config()?)?)
    }

    /// Connection settings for a client of this emulator, as the admin.
    pub fn config(&self) -> Result<kube::Config, EmulatorError> {
        self.config_with_token(&self.admin_token)
    }

    /// Connection settings for a client that authenticates with `token` (a static token from
    /// `EmulatorConfig::tokens` or a ServiceAccount token).
    pub fn config_with_token(&self, token: &str) -> Result<kube::Config, EmulatorError> {
        let url = self
            .url()
            .parse()
            .map_err(|e: axum::http::uri::InvalidUri| EmulatorError::Url(e.to_string()))?;
        let mut cfg = kube::Config::new(url);
        cfg.auth_info.token = Some(secrecy::SecretString::from(token.to_owned()));
        Ok(cfg)
    }

    /// The admin's bearer token (user `system:admin`, group `system:masters`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
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

    /// Compacts the state files, if configured: a snapshot of all objects and the
    /// resourceVersion counter, and an empty journal. (Every answered write is on disk
    /// anyway; this only makes the next start read one file.)
    pub fn save_state(&self) -> Result<(), EmulatorError> {
        self.shared.compact()
    }

    /// Closes watches, stops serving, and compacts the state files if a state file is set.
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
