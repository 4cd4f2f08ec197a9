//! The operator's wiring, the same for `run` and `local`: the verifier, the
//! admission webhook and the admin server on every replica, the controllers
//! on the leader (or always, without leader election), all stopped together
//! on shutdown. `--components` runs a subset: the Helm chart runs the
//! controller and the webhook in one Deployment and the verifier, which then
//! needs no Secrets and no Lease, in another.
//!
//! The controllers run on a thread of their own, on a single-threaded
//! runtime with its own API client: their watch streams, reconciles and API
//! connections then wake each other without crossing threads. In a burst of
//! 10,000 new tokens this took a sixth off the time until all were Ready
//! (BENCHMARKS.md, section 19). The verifier and the admin server keep the
//! multi-threaded runtime, where requests are served on every core.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use kube::Client;
use tokio::sync::{Notify, oneshot};

use crate::admin::{self, AdminServer, AdminState};
use crate::admission;
use crate::certs::managed::{ManagedCert, ManagedError};
use crate::certs::published;
use crate::clock::SystemClock;
use crate::controller::{self, Handles};
use crate::leader::{self, LeaseConfig};
use crate::metrics::{OperatorMetrics, Sources};
use crate::verifier::{self, VerifierConfig};

/// Which parts a process runs (`--components`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Components {
    /// The reconcilers (leader-elected with `--leader-elect`).
    pub controller: bool,
    /// The admission webhook.
    pub webhook: bool,
    /// The verifier (TokenReview and forward-auth).
    pub verifier: bool,
}

impl Components {
    /// Everything, as `local` and a plain `run` do.
    pub const ALL: Components = Components {
        controller: true,
        webhook: true,
        verifier: true,
    };
}

impl Default for Components {
    fn default() -> Self {
        Components::ALL
    }
}

/// The verifier's certificate, made and renewed by this process like the
/// webhook's and kept in a Secret, for a verifier Deployment that mounts it
/// (which then needs no access to Secrets); its CA bundle is published in a
/// ConfigMap for the verifier's clients. A verifier in this process serves
/// with it unless it was given TLS files.
#[derive(Clone, Debug)]
pub struct VerifierCertConfig {
    pub namespace: String,
    /// The Secret holding the CA and the serving certificate.
    pub secret: String,
    /// The names the serving certificate is for.
    pub hosts: Vec<String>,
    /// The ConfigMap the CA bundle is published in (`ca.crt`).
    pub ca_configmap: Option<String>,
}

/// Everything `run` needs besides the client.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The parts to run; the settings of the others are ignored.
    pub components: Components,
    /// Other credentials for the verifier than the rest's (`local` runs it as its own
    /// ServiceAccount, as the chart does); `None`: the same.
    pub verifier_client: Option<kube::Config>,
    pub controller: controller::Config,
    pub verifier: VerifierConfig,
    /// The verifier's certificate, when this process manages it.
    pub verifier_cert: Option<VerifierCertConfig>,
    /// `--admin-addr`; no admin server when `None`.
    pub admin_addr: Option<SocketAddr>,
    /// The admission webhook; not served when `None` (tests of other parts).
    pub webhook: Option<admission::WebhookConfig>,
    /// `Some` with `--leader-elect`.
    pub leader: Option<LeaseConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Leader(#[from] leader::LeaderError),
    #[error(transparent)]
    Verifier(#[from] verifier::VerifierError),
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
    #[error(transparent)]
    Webhook(#[from] admission::WebhookError),
    #[error("the verifier's certificate: {0}")]
    VerifierCert(#[from] ManagedError),
    #[error("{0}")]
    Components(&'static str),
    #[error(
        "could not create the API client: {0}; check the kubeconfig or the in-cluster service account"
    )]
    Client(String),
    #[error("the controllers stopped: {0}")]
    Controllers(String),
}

/// The controllers' thread, started by [`spawn_controllers`].
#[derive(Debug)]
pub struct ControllerThread {
    stop: oneshot::Sender<()>,
    done: oneshot::Receiver<Result<(), String>>,
}

/// Starts `run` on a new thread with a single-threaded runtime and a client
/// made there from `config` (a client's connections belong to the runtime it
/// was made on). `run` gets the client and a future that completes when the
/// returned handle asks the controllers to stop.
pub fn spawn_controllers<F, Fut>(config: kube::Config, run: F) -> Result<ControllerThread, RunError>
where
    F: FnOnce(Client, Shared<BoxFuture<'static, ()>>) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = oneshot::channel();
    let thread = move || {
        let ended = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                format!(
                    "could not start their runtime: {e}; check the limits on threads and open files"
                )
            })
            .and_then(|runtime| {
                runtime.block_on(async move {
                    let client = Client::try_from(config)
                        .map_err(|e| format!("could not create their API client: {e}"))?;
                    // A dropped sender stops them too.
                    let stop = stop_rx.map(drop).boxed().shared();
                    run(client, stop).await;
                    Ok(())
                })
            });
        // Sent after the runtime is gone, so no controller task outlives it.
        let _ = done_tx.send(ended);
    };
    std::thread::Builder::new()
        .name("controllers".to_owned())
        .spawn(thread)
        .map_err(|e| {
            RunError::Controllers(format!(
                "could not start their thread: {e}; check the limits on threads and memory"
            ))
        })?;
    Ok(ControllerThread {
        stop: stop_tx,
        done: done_rx,
    })
}

impl ControllerThread {
    /// Waits for `shutdown`, then stops the controllers and waits until they
    /// have. Fails at once if they end before that by an error or a panic.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
        let ControllerThread { stop, mut done } = self;
        tokio::select! {
            () = shutdown => {}
            ended = &mut done => return thread_result(ended),
        }
        let _ = stop.send(());
        thread_result(done.await)
    }
}

fn thread_result(
    ended: Result<Result<(), String>, oneshot::error::RecvError>,
) -> Result<(), RunError> {
    match ended {
        Ok(result) => result.map_err(RunError::Controllers),
        Err(_) => Err(RunError::Controllers(
            "their thread panicked (the message is above); restart the operator".to_owned(),
        )),
    }
}

/// The operator with its listeners bound, not yet running: a taken port
/// fails [`bind_operator`] before anything starts.
pub struct BoundOperator {
    config: kube::Config,
    verifier: Option<verifier::Verifier>,
    admin: Option<AdminServer>,
    webhook: Option<admission::Webhook>,
    verifier_cert: Option<(ManagedCert, VerifierCertConfig)>,
    handles: Arc<Handles>,
    leading: Arc<AtomicBool>,
    controller: Option<controller::Config>,
    leader: Option<LeaseConfig>,
    client: Client,
}

/// Binds the verifier's and the admin server's ports and checks the Lease
/// settings; [`BoundOperator::run`] starts everything.
pub async fn bind_operator(
    config: kube::Config,
    opts: RunOptions,
) -> Result<BoundOperator, RunError> {
    let parts = opts.components;
    if !(parts.controller || parts.webhook || parts.verifier) {
        return Err(RunError::Components(
            "--components names no part to run; give controller, webhook and/or verifier",
        ));
    }
    if let Some(lease) = &opts.leader {
        if !parts.controller {
            return Err(RunError::Components(
                "--leader-elect elects a controller, and --components runs none; drop \
                 --leader-elect or add the controller",
            ));
        }
        lease.validate()?;
    }
    let client = Client::try_from(config.clone()).map_err(|e| RunError::Client(e.to_string()))?;
    let verifier_client = match opts.verifier_client {
        Some(config) => Client::try_from(config).map_err(|e| RunError::Client(e.to_string()))?,
        None => client.clone(),
    };
    let mut verifier = match parts.verifier {
        true => Some(verifier::bind(verifier_client, opts.verifier).await?),
        false => None,
    };
    let webhook = match opts.webhook.filter(|_| parts.webhook) {
        Some(cfg) => Some(admission::bind(client.clone(), cfg).await?),
        None => None,
    };
    let verifier_cert = match opts.verifier_cert {
        Some(cfg) => {
            let secret = Some((cfg.namespace.clone(), cfg.secret.clone()));
            let cert =
                ManagedCert::load(&client, cfg.hosts.clone(), secret, jiff::Timestamp::now())
                    .await?;
            if let Some(verifier) = &mut verifier {
                verifier.serve_tls_from(cert.store());
            }
            Some((cert, cfg))
        }
        None => None,
    };
    let handles = Arc::new(Handles::default());
    let leading = Arc::new(AtomicBool::new(parts.controller && opts.leader.is_none()));
    let admin = match opts.admin_addr {
        Some(addr) => {
            let sources = Sources {
                controller: handles.clone(),
                index: verifier.as_ref().map(|v| v.index()).unwrap_or_default(),
                leading: leading.clone(),
            };
            let state = AdminState {
                operator: OperatorMetrics::new(sources.clone()),
                sources,
                verifier_metrics: verifier.as_ref().map(|v| v.metrics()),
                verifier_ready: verifier.as_ref().map(|v| v.readiness()),
            };
            Some(admin::bind(addr, state).await?)
        }
        None => None,
    };
    Ok(BoundOperator {
        config,
        verifier,
        admin,
        webhook,
        verifier_cert,
        handles,
        leading,
        controller: parts.controller.then_some(opts.controller),
        leader: opts.leader,
        client,
    })
}

impl BoundOperator {
    /// The verifier's address (the real port when port 0 was asked for),
    /// when it runs.
    pub fn verify_addr(&self) -> Option<SocketAddr> {
        self.verifier.as_ref().map(|v| v.local_addr())
    }

    /// The admission webhook, when served.
    pub fn webhook(&self) -> Option<&admission::Webhook> {
        self.webhook.as_ref()
    }

    /// Runs until `shutdown` completes or a part fails; the first failure
    /// stops the rest.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        let BoundOperator {
            config,
            verifier,
            admin,
            webhook,
            verifier_cert,
            handles,
            leading,
            controller: settings,
            leader,
            client,
        } = self;
        let shutdown = shutdown.boxed().shared();
        let controllers = match settings {
            Some(settings) => Some(spawn_controllers(config, move |client, stop| async move {
                let run = |stop| {
                    controller::run_with(
                        client.clone(),
                        settings.clone(),
                        Arc::new(SystemClock),
                        handles.clone(),
                        stop,
                    )
                };
                match leader {
                    None => run(stop).await,
                    Some(lease) => {
                        leader::run_elected(client.clone(), lease, leading, stop, run).await
                    }
                }
            })?),
            None => None,
        };
        let controllers_run = async {
            match controllers {
                Some(controllers) => controllers.run_until(shutdown.clone()).await,
                None => Ok(()),
            }
        };
        let verifier_run = async {
            match verifier {
                Some(verifier) => verifier.run(shutdown.clone()).await.map_err(RunError::from),
                None => Ok(()),
            }
        };
        let cert_run = async {
            if let Some((cert, cfg)) = verifier_cert {
                let renewed = Arc::new(Notify::new());
                let store = cert.store();
                let renewal = cert.keep_renewed("verifier", renewed.clone());
                let publishing = async {
                    if let Some(name) = cfg.ca_configmap {
                        let api = kube::Api::namespaced(client, &cfg.namespace);
                        published::keep_published(api, name, store, renewed).await;
                    }
                };
                tokio::select! {
                    () = shutdown.clone() => {}
                    _ = futures::future::join(renewal, publishing) => {}
                }
            }
        };
        let admin_run = async {
            if let Some(admin) = admin {
                admin.run(shutdown.clone()).await;
            }
        };
        let webhook_run = async {
            if let Some(webhook) = webhook {
                webhook.run(shutdown.clone()).await;
            }
        };
        tokio::try_join!(
            controllers_run,
            verifier_run,
            admin_run.map(Ok),
            webhook_run.map(Ok),
            cert_run.map(Ok),
        )?;
        Ok(())
    }
}

/// Binds, then runs until `shutdown` completes.
pub async fn run_operator(
    config: kube::Config,
    opts: RunOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    bind_operator(config, opts).await?.run(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> kube::Config {
        // Never connected to: these controllers make no requests.
        kube::Config::new("http://127.0.0.1:9".parse().expect("url"))
    }

    #[tokio::test]
    async fn the_controllers_run_on_their_own_thread_and_stop_on_shutdown() {
        let (ran_tx, ran_rx) = std::sync::mpsc::channel();
        let thread = spawn_controllers(config(), move |_client, stop| async move {
            let name = std::thread::current().name().map(str::to_owned);
            stop.await;
            let _ = ran_tx.send(name);
        })
        .expect("thread started");
        thread
            .run_until(futures::future::ready(()))
            .await
            .expect("a clean stop");
        let name = ran_rx.try_recv().expect("the controllers saw the stop");
        assert_eq!(name.as_deref(), Some("controllers"));
    }

    #[tokio::test]
    async fn a_panic_on_the_controller_thread_ends_run_with_an_error() {
        let thread = spawn_controllers(config(), |_client, _stop| async {
            panic!("injected: a controller bug");
        })
        .expect("thread started");
        let ended = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            thread.run_until(futures::future::pending()),
        )
        .await
        .expect("run_until returns without waiting for shutdown");
        let err = ended.expect_err("a panic is an error").to_string();
        assert!(err.contains("panicked"), "{err}");
    }

    /// A verifier-only process elects no leader: `--leader-elect` without
    /// the controller is refused before anything starts.
    #[tokio::test]
    async fn leader_election_needs_the_controller() {
        let opts = |components| RunOptions {
            components,
            verifier_client: None,
            controller: controller::Config::default(),
            verifier: VerifierConfig::default(),
            verifier_cert: None,
            admin_addr: None,
            webhook: None,
            leader: Some(LeaseConfig {
                namespace: "ns".to_owned(),
                name: "lease".to_owned(),
                identity: "me".to_owned(),
                lease_duration: std::time::Duration::from_secs(15),
                renew_deadline: std::time::Duration::from_secs(10),
                retry_period: std::time::Duration::from_secs(2),
            }),
        };
        let verifier_only = Components {
            controller: false,
            webhook: false,
            verifier: true,
        };
        let err = bind_operator(config(), opts(verifier_only))
            .await
            .err()
            .expect("refused");
        assert!(err.to_string().contains("--leader-elect"), "{err}");
        let nothing = Components {
            verifier: false,
            ..verifier_only
        };
        let err = bind_operator(config(), opts(nothing))
            .await
            .err()
            .expect("refused");
        assert!(err.to_string().contains("no part"), "{err}");
    }
}
