//! The operator's wiring, the same for `run` and `local`: the verifier and
//! the admin server on every replica, the controllers on the leader (or
//! always, without leader election), all stopped together on shutdown.
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

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, TryFutureExt};
use kube::Client;
use tokio::sync::oneshot;

use crate::admin::{self, AdminServer, AdminState};
use crate::admission;
use crate::clock::SystemClock;
use crate::controller::{self, Handles};
use crate::leader::{self, LeaseConfig};
use crate::metrics::{OperatorMetrics, Sources};
use crate::verifier::{self, VerifierConfig};

/// Everything `run` needs besides the client.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub controller: controller::Config,
    pub verifier: VerifierConfig,
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
    verifier: verifier::Verifier,
    admin: Option<AdminServer>,
    webhook: Option<admission::Webhook>,
    handles: Arc<Handles>,
    leading: Arc<AtomicBool>,
    controller: controller::Config,
    leader: Option<LeaseConfig>,
}

/// Binds the verifier's and the admin server's ports and checks the Lease
/// settings; [`BoundOperator::run`] starts everything.
pub async fn bind_operator(
    config: kube::Config,
    opts: RunOptions,
) -> Result<BoundOperator, RunError> {
    if let Some(lease) = &opts.leader {
        lease.validate()?;
    }
    let client = Client::try_from(config.clone()).map_err(|e| RunError::Client(e.to_string()))?;
    let verifier = verifier::bind(client.clone(), opts.verifier).await?;
    let webhook = match opts.webhook {
        Some(cfg) => Some(admission::bind(client, cfg).await?),
        None => None,
    };
    let handles = Arc::new(Handles::default());
    let leading = Arc::new(AtomicBool::new(opts.leader.is_none()));
    let admin = match opts.admin_addr {
        Some(addr) => {
            let sources = Sources {
                controller: handles.clone(),
                index: verifier.index(),
                leading: leading.clone(),
            };
            let state = AdminState {
                operator: OperatorMetrics::new(sources.clone()),
                sources,
                verifier_metrics: verifier.metrics(),
                verifier_ready: verifier.readiness(),
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
        handles,
        leading,
        controller: opts.controller,
        leader: opts.leader,
    })
}

impl BoundOperator {
    /// The verifier's address (the real port when port 0 was asked for).
    pub fn verify_addr(&self) -> SocketAddr {
        self.verifier.local_addr()
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
            handles,
            leading,
            controller: settings,
            leader,
        } = self;
        let shutdown = shutdown.boxed().shared();
        let controllers = spawn_controllers(config, move |client, stop| async move {
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
                Some(lease) => leader::run_elected(client.clone(), lease, leading, stop, run).await,
            }
        })?;
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
            controllers.run_until(shutdown.clone()),
            verifier.run(shutdown.clone()).err_into::<RunError>(),
            admin_run.map(Ok),
            webhook_run.map(Ok),
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
}
