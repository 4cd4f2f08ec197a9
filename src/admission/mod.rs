//! The validating admission webhook: nobody creates a key, or a token on a
//! key, whose values would authenticate as an identity they could not
//! already act as (docs/security.md, "Admission").
//!
//! `decision` holds the rules as pure functions, `review` answers one
//! AdmissionReview with them, `certs` makes the webhook's CA and serving
//! certificate, `secret` shares them between replicas through a Secret,
//! `registration` keeps the ValidatingWebhookConfiguration's `caBundle`
//! current. Every replica serves the webhook, leader or not: it only reads.

pub mod certs;
pub mod decision;
pub mod registration;
pub mod review;
pub mod secret;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use k8s_openapi::api::core::v1::Secret;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionReview;
use kube::{Api, Client};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::serve::TlsSource;
use crate::verifier::tls::{ReloadingTls, TlsError};
use certs::{Authority, CertError, CertStore};

/// The path the API server posts AdmissionReviews to.
pub const PATH: &str = "/validate";
/// How often a managed certificate is checked for renewal (and the shared
/// Secret re-read, to pick up another replica's renewal).
pub const RENEW_CHECK_INTERVAL: Duration = Duration::from_secs(10 * 60);

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
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error(
        "cannot read or write the webhook's certificate Secret {secret}: {source}; check that \
         the operator may get, create and update it"
    )]
    Secret { secret: String, source: kube::Error },
}

/// The managed certificate's state, renewed in the background.
struct Managed {
    store: Arc<CertStore>,
    hosts: Vec<String>,
    secret: Option<Api<Secret>>,
    secret_name: String,
    /// The in-memory CA (no Secret).
    authority: Option<Authority>,
}

/// A bound webhook that does not serve yet.
pub struct Webhook {
    listener: TcpListener,
    local_addr: SocketAddr,
    client: Client,
    tls: Arc<dyn TlsSource>,
    files: Option<Arc<ReloadingTls>>,
    managed: Option<Managed>,
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
            let (store, authority, api, secret_name) = match secret {
                Some((namespace, name)) => {
                    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
                    let shown = format!("{namespace}/{name}");
                    let pair = secret::ensure(&api, &name, &hosts, now)
                        .await
                        .map_err(|e| e.into_webhook_error(&shown))?;
                    let store = CertStore::new(pair.ca_bundle.clone(), &pair.serving)?;
                    (store, None, Some(api), name)
                }
                None => {
                    let authority = Authority::new(now)?;
                    let serving = authority.issue(&hosts, now)?;
                    let store = CertStore::new(authority.cert_pem.clone(), &serving)?;
                    (store, Some(authority), None, String::new())
                }
            };
            let store = Arc::new(store);
            let managed = Managed {
                store: store.clone(),
                hosts,
                secret: api,
                secret_name,
                authority,
            };
            (store, None, Some(managed))
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
        self.managed.as_ref().map(|m| m.store.ca_bundle())
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
                    managed.store.clone(),
                    renewed.clone(),
                ));
            }
            background.spawn(renew(managed, renewed));
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

/// Renews the managed certificate when due, and picks up another replica's
/// renewal from the shared Secret; `renewed` tells the registration.
async fn renew(mut managed: Managed, renewed: Arc<Notify>) {
    let mut ticks = tokio::time::interval(RENEW_CHECK_INTERVAL);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let now = jiff::Timestamp::now();
        let before = managed.store.ca_bundle();
        let result = match (&managed.secret, &mut managed.authority) {
            (Some(api), _) => secret::ensure(api, &managed.secret_name, &managed.hosts, now)
                .await
                .map_err(|e| e.to_string())
                .and_then(|pair| {
                    managed
                        .store
                        .replace(pair.ca_bundle, &pair.serving)
                        .map_err(|e| e.to_string())
                }),
            (None, Some(authority)) => {
                in_memory_renewal(authority, &managed.store, &managed.hosts, now)
                    .map_err(|e| e.to_string())
            }
            (None, None) => Ok(()),
        };
        match result {
            Ok(()) if managed.store.ca_bundle() != before => {
                info!("admission webhook CA renewed");
                renewed.notify_one();
            }
            Ok(()) => {}
            Err(err) => {
                warn!(error = %err, "renewing the admission webhook's certificate failed; retrying later")
            }
        }
    }
}

fn in_memory_renewal(
    authority: &mut Authority,
    store: &CertStore,
    hosts: &[String],
    now: jiff::Timestamp,
) -> Result<(), CertError> {
    if authority.due(now) {
        *authority = Authority::new(now)?;
    }
    // A fresh serving certificate each check is cheap, and nothing else
    // remembers the old one's end.
    let serving = authority.issue(hosts, now)?;
    store.replace(authority.cert_pem.clone(), &serving)
}
