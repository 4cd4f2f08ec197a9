//! The admin HTTP server (`--admin-addr`): `/metrics` (operator and
//! verifier metrics in one exposition), `/healthz` (the process serves) and
//! `/readyz` (the caches synced). Kept apart from the verifier's port so that
//! probes and scrapes never compete with authentication traffic and the
//! verifier port can be exposed without the metrics.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tracing::info;

use crate::metrics::{OperatorMetrics, Sources};
use crate::verifier::metrics::Metrics as VerifierMetrics;
use crate::verifier::watch::Readiness;

/// Default `--admin-addr` for `run` and `local`: this machine only.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9090";

/// Why the admin server could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} (--admin-addr): {source}; choose a free address and port")]
pub struct AdminError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// What the endpoints read.
pub struct AdminState {
    pub sources: Sources,
    pub operator: OperatorMetrics,
    /// The verifier's, when this process runs it.
    pub verifier_metrics: Option<Arc<VerifierMetrics>>,
    pub verifier_ready: Option<Arc<Readiness>>,
}

/// A bound admin server that does not serve yet.
pub struct AdminServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: Arc<AdminState>,
}

/// Binds `addr` (port 0: a free port).
pub async fn bind(addr: SocketAddr, state: AdminState) -> Result<AdminServer, AdminError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| AdminError { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| AdminError { addr, source })?;
    Ok(AdminServer {
        listener,
        local_addr,
        state: Arc::new(state),
    })
}

impl AdminServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        info!(addr = %self.local_addr, "admin server listening (/metrics, /healthz, /readyz)");
        let app = router(self.state);
        if let Err(err) = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %err, "admin server stopped with an error");
        }
    }
}

pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// What keeps this replica from being ready, if anything: the verifier's
/// watches must have synced (where it runs), and, on the replica that
/// reconciles (the leader, or the only one), the controller's caches too. A
/// replica waiting for leadership is ready: it serves the verifier or the
/// webhook.
pub fn not_ready(state: &AdminState) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if state.verifier_ready.as_ref().is_some_and(|r| !r.ready()) {
        missing.push("the verifier's ApiToken and ApiKey watches have not synced yet");
    }
    let leading = state.sources.leading.load(Ordering::SeqCst);
    if leading && !state.sources.controller.synced.load(Ordering::SeqCst) {
        missing.push("the controller's caches have not synced yet");
    }
    missing
}

async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    let missing = not_ready(&state);
    if missing.is_empty() {
        "ok\n".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", missing.join("; ")),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    let mut body = state.operator.render_open();
    if let Some(verifier) = &state.verifier_metrics {
        body.push_str(&verifier.render());
    }
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
