//! The verifier: answers "whose token is this?" for the Kubernetes webhook
//! token authenticator (TokenReview) and for gateways (forward-auth).
//!
//! `index` is the pure lookup and verdict, `watch` keeps it current from
//! ApiTokens and ApiKeys, `http` serves the endpoints, `last_used` reports
//! use back to ApiToken status, `tls` serves HTTPS with reloaded files.
//! [`bind`] + [`Verifier::run`] (or [`serve`]) wire them together.

pub mod http;
pub mod index;
pub mod last_used;
pub mod metrics;
pub mod tls;
pub mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::core::PartialObjectMeta;
use kube::{Api, Client};
use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tokio::task::JoinSet;
use tracing::{info, warn};

pub use http::{HeaderNameError, HeaderNames};
pub use index::{Identity, IdentityRef, Index, Reject};

use crate::api::{ApiKey, ApiToken};
use crate::clock::{Clock, SystemClock};
use crate::lean::{Lean, scoped};
use crate::serve::TlsSource;
use http::AppState;
use last_used::UsageRecorder;
use metrics::Metrics;
use tls::{ReloadingTls, TlsError};
use watch::{Readiness, SharedIndex};

pub use crate::serve::{
    DRAIN_TIMEOUT, HEADER_READ_TIMEOUT, MAX_HEADER_BYTES, TLS_HANDSHAKE_TIMEOUT,
};
/// How often the TLS files are checked for changes.
pub const TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Where and how the verifier serves.
#[derive(Clone, Debug)]
pub struct VerifierConfig {
    /// Listen address (`--verify-addr`); port 0 picks a free port.
    pub addr: SocketAddr,
    /// PEM certificate chain and private key files; plain HTTP when `None`.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// PEM CA certificates: only clients with a certificate they signed may
    /// connect (`--verify-client-ca`; needs `tls`).
    pub client_ca: Option<PathBuf>,
    /// Groups added to every authenticated identity (`--extra-group`).
    pub extra_groups: Vec<String>,
    /// Names of the forward-auth identity headers.
    pub headers: HeaderNames,
    /// Only index tokens of this namespace (all namespaces when `None`).
    pub namespace: Option<String>,
    /// Audiences of tokens that list none, nor their key (`--audience`).
    pub audiences: Vec<String>,
}

/// The `--audience` default: the kube-apiserver's usual API audience, so a
/// token that lists none authenticates to the cluster's webhook token
/// authenticator (as before audiences) and to no other audience.
pub const DEFAULT_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

impl Default for VerifierConfig {
    fn default() -> Self {
        VerifierConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: None,
            client_ca: None,
            extra_groups: Vec::new(),
            headers: HeaderNames::default(),
            namespace: None,
            audiences: vec![DEFAULT_AUDIENCE.to_owned()],
        }
    }
}

/// Why the verifier could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    #[error("cannot listen on {addr} (--verify-addr): {source}; choose a free address and port")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A verifier whose socket is bound but that does not serve yet.
pub struct Verifier {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: Arc<AppState>,
    tls: Option<Arc<dyn TlsSource>>,
    /// The files behind `tls`, polled for changes.
    files: Option<Arc<ReloadingTls>>,
    client: Client,
    namespace: Option<String>,
}

/// Binds the listen address and loads TLS, with the system clock.
pub async fn bind(client: Client, cfg: VerifierConfig) -> Result<Verifier, VerifierError> {
    bind_with(client, cfg, Arc::new(SystemClock)).await
}

/// Binds the listen address and loads TLS, with an injected clock (tests).
pub async fn bind_with(
    client: Client,
    cfg: VerifierConfig,
    clock: Arc<dyn Clock>,
) -> Result<Verifier, VerifierError> {
    let clients = match &cfg.client_ca {
        Some(path) => Some(tls::client_verifier(path)?),
        None => None,
    };
    let files = match &cfg.tls {
        Some((cert, key)) => Some(Arc::new(ReloadingTls::load_for_clients(
            cert, key, clients,
        )?)),
        None => None,
    };
    let listener = TcpListener::bind(cfg.addr)
        .await
        .map_err(|source| VerifierError::Bind {
            addr: cfg.addr,
            source,
        })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| VerifierError::Bind {
            addr: cfg.addr,
            source,
        })?;
    let state = Arc::new(AppState {
        index: Arc::new(RwLock::new(Index::new())),
        readiness: Arc::new(Readiness::default()),
        clock,
        metrics: Arc::new(Metrics::new()),
        usage: Arc::new(UsageRecorder::default()),
        extra_groups: cfg.extra_groups,
        headers: cfg.headers,
        audiences: cfg.audiences,
    });
    Ok(Verifier {
        listener,
        local_addr,
        state,
        tls: files.clone().map(|f| f as Arc<dyn TlsSource>),
        files,
        client,
        namespace: cfg.namespace,
    })
}

/// Binds and serves until `shutdown` completes.
pub async fn serve(
    client: Client,
    cfg: VerifierConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), VerifierError> {
    bind(client, cfg).await?.run(shutdown).await
}

impl Verifier {
    /// The bound address (the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether the watches have synced; `/readyz` answers from it.
    pub fn readiness(&self) -> Arc<Readiness> {
        self.state.readiness.clone()
    }

    /// The index the endpoints answer from.
    pub fn index(&self) -> SharedIndex {
        self.state.index.clone()
    }

    /// Serves HTTPS with `tls` (a certificate the operator manages itself)
    /// unless TLS files were given, which win.
    pub fn serve_tls_from(&mut self, tls: Arc<dyn TlsSource>) {
        if self.files.is_none() {
            self.tls = Some(tls);
        }
    }

    /// The verifier's metrics; the admin server's /metrics includes them.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.state.metrics.clone()
    }

    /// Watches ApiTokens, ApiKeys and ServiceAccounts (metadata) and serves until `shutdown` completes;
    /// then stops accepting, lets open requests finish (up to
    /// [`DRAIN_TIMEOUT`]) and writes the last `lastUsedAt` batch.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), VerifierError> {
        let Verifier {
            listener,
            local_addr,
            state,
            tls,
            files,
            client,
            namespace,
        } = self;
        let (stop_tx, stop_rx) = signal::channel(false);
        let stopped = |mut rx: signal::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };

        let mut background = JoinSet::new();
        let tokens: Api<Lean<ApiToken>> = scoped(&client, namespace.as_deref());
        let keys: Api<Lean<ApiKey>> = scoped(&client, namespace.as_deref());
        background.spawn(watch::watch(
            tokens,
            state.index.clone(),
            state.readiness.clone(),
            state.metrics.clone(),
        ));
        background.spawn(watch::watch(
            keys,
            state.index.clone(),
            state.readiness.clone(),
            state.metrics.clone(),
        ));
        let service_accounts: Api<PartialObjectMeta<ServiceAccount>> = match namespace.as_deref() {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        background.spawn(watch::watch_service_accounts(
            service_accounts,
            state.index.clone(),
            state.readiness.clone(),
            state.metrics.clone(),
        ));
        if let Some(files) = files {
            background.spawn(reload_tls(files));
        }
        let reporter = tokio::spawn(last_used::report_usage(
            client,
            state.usage.clone(),
            state.metrics.clone(),
            last_used::REPORT_INTERVAL,
            stopped(stop_rx.clone()),
        ));

        let router = http::router(state);
        info!(addr = %local_addr, tls = tls.is_some(), "verifier listening");
        crate::serve::serve(listener, router, tls, shutdown).await;
        info!("verifier shutting down");
        // After the drain: the last `lastUsedAt` batch includes the drained requests.
        let _ = stop_tx.send(true);
        background.abort_all();
        let _ = reporter.await;
        info!("verifier stopped");
        Ok(())
    }
}

pub(crate) async fn reload_tls(tls: Arc<ReloadingTls>) {
    let mut ticks = tokio::time::interval(TLS_RELOAD_INTERVAL);
    loop {
        ticks.tick().await;
        match tls.reload_if_changed() {
            Ok(true) => info!("TLS certificate reloaded"),
            Ok(false) => {}
            Err(err) => {
                warn!(error = %err, "TLS files changed but cannot be used; keeping the previous certificate")
            }
        }
    }
}
