//! The validating admission webhook: nobody creates a key, or a token on a
//! key, whose values would authenticate as an identity they could not
//! already act as (docs/security.md, "Admission").
//!
//! `decision` holds the rules as pure functions, `review` answers one
//! AdmissionReview with them, `registration` keeps the
//! ValidatingWebhookConfiguration's `caBundle` current; the CA and serving
//! certificate come from `crate::certs` (shared between replicas through a
//! Secret). Every replica serves the webhook, leader or not: it only reads.

pub mod decision;
pub mod registration;
pub mod review;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use kube::Client;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionReview;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tracing::info;

use crate::certs::managed::{ManagedCert, ManagedError};
use crate::serve::TlsSource;
use crate::verifier::tls::{ReloadingTls, TlsError};

/// The path the API server posts AdmissionReviews to.
pub const PATH: &str = "/validate";
pub use crate::certs::managed::RENEW_CHECK_INTERVAL;

/// Where the serving certificate comes from.
#[derive(Clone, Debug)]
pub enum WebhookTls {
    /// PEM files provided from outside (e.g. cert-manager, whose CA injector
    /// then keeps `caBundle` current); reloaded when they change.
    Files { cert: PathBuf, key: PathBuf },
    /// A CA and certificate the operator makes and renews itself, for
    /// `hosts`; shared by every replica through the Secret `namespace/name`
    /// when given, else kept in memory (one replica, e.g. `local`).
    Managed {
        hosts: Vec<String>,
        secret: Option<(String, String)>,
    },
}

/// How the webhook serves.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Listen address (`--webhook-addr`); port 0 picks a free port.
    pub addr: SocketAddr,
    pub tls: WebhookTls,
    /// The ValidatingWebhookConfiguration whose `caBundle` the operator
    /// keeps current (managed TLS only).
    pub configuration: Option<String>,
}

/// Why the webhook could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot listen on {addr} (--webhook-addr): {source}; choose a free address and port")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("the webhook's certificate: {0}")]
    Managed(#[from] ManagedError),
}

/// A bound webhook that does not serve yet.
pub struct Webhook {
    listener: TcpListener,
    local_addr: SocketAddr,
    client: Client,
    tls: Arc<dyn TlsSource>,
    files: Option<Arc<ReloadingTls>>,
    managed: Option<ManagedCert>,
    configuration: Option<String>,
}

/// Binds the address and loads or makes the serving certificate.
pub async fn bind(client: Client, cfg: WebhookConfig) -> Result<Webhook, WebhookError> {
    let listener = TcpListener::bind(cfg.addr)
        .await
        .map_err(|source| WebhookError::Bind {
            addr: cfg.addr,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| WebhookError::Bind {
        addr: cfg.addr,
        source,
    })?;
    let now = jiff::Timestamp::now();
    let (tls, files, managed): (Arc<dyn TlsSource>, _, _) = match cfg.tls {
        WebhookTls::Files { cert, key } => {
            let files = Arc::new(ReloadingTls::load(&cert, &key)?);
            (files.clone(), Some(files), None)
        }
        WebhookTls::Managed { hosts, secret } => {
            let managed = ManagedCert::load(&client, hosts, secret, now).await?;
            (managed.store(), None, Some(managed))
        }
    };
    Ok(Webhook {
        listener,
        local_addr,
        client,
        tls,
        files,
        managed,
        configuration: cfg.configuration,
    })
}

impl Webhook {
    /// The bound address (the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The PEM CA bundle the API server must trust, when the operator
    /// manages the certificate.
    pub fn ca_bundle(&self) -> Option<String> {
        self.managed.as_ref().map(|m| m.store().ca_bundle())
    }

    /// Serves until `shutdown` completes, renewing a managed certificate and
    /// keeping the configuration's `caBundle` current meanwhile.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let Webhook {
            listener,
            local_addr,
            client,
            tls,
            files,
            managed,
            configuration,
        } = self;
        let mut background = tokio::task::JoinSet::new();
        if let Some(files) = files {
            background.spawn(crate::verifier::reload_tls(files));
        }
        if let Some(managed) = managed {
            let renewed = Arc::new(Notify::new());
            if let Some(name) = configuration {
                background.spawn(registration::keep_ca_bundle(
                    client.clone(),
                    name,
                    managed.store(),
                    renewed.clone(),
                ));
            }
            background.spawn(managed.keep_renewed("admission webhook", renewed));
        }
        let reviewer = review::Reviewer::new(client);
        let router = axum::Router::new()
            .route(PATH, post(validate))
            .with_state(reviewer);
        info!(addr = %local_addr, path = PATH, "admission webhook listening");
        crate::serve::serve(listener, router, Some(tls), shutdown).await;
        background.abort_all();
        info!("admission webhook stopped");
    }
}

async fn validate(
    State(reviewer): State<review::Reviewer>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    Json(reviewer.answer(review).await)
}
