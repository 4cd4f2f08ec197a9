//! `apikey-operator run`: the verifier and the admin server on every
//! replica, the controllers on the leader (or always, without leader
//! election), all stopped together on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use futures::FutureExt;
use kube::Client;

use crate::admin::{self, AdminState};
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
    /// `--admin-addr`.
    pub admin_addr: SocketAddr,
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
}

/// Runs until `shutdown` completes. Ports are bound before anything starts,
/// so a taken port fails at once.
pub async fn run_operator(
    client: Client,
    opts: RunOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    if let Some(lease) = &opts.leader {
        lease.validate()?;
    }
    let verifier = verifier::bind(client.clone(), opts.verifier).await?;
    let handles = Arc::new(Handles::default());
    let leading = Arc::new(AtomicBool::new(opts.leader.is_none()));
    let sources = Sources {
        controller: handles.clone(),
        index: verifier.index(),
        leading: leading.clone(),
    };
    let admin = admin::bind(
        opts.admin_addr,
        AdminState {
            operator: OperatorMetrics::new(sources.clone()),
            sources,
            verifier_metrics: verifier.metrics(),
            verifier_ready: verifier.readiness(),
        },
    )
    .await?;

    let shutdown = shutdown.boxed().shared();
    let config = opts.controller;
    let controllers = async {
        match opts.leader {
            None => {
                controller::run_with(
                    client.clone(),
                    config,
                    Arc::new(SystemClock),
                    handles,
                    shutdown.clone(),
                )
                .await
            }
            Some(lease) => {
                leader::run_elected(client.clone(), lease, leading, shutdown.clone(), |stop| {
                    controller::run_with(
                        client.clone(),
                        config.clone(),
                        Arc::new(SystemClock),
                        handles.clone(),
                        stop,
                    )
                })
                .await
            }
        }
    };
    let (_, served, _) = tokio::join!(
        controllers,
        verifier.run(shutdown.clone()),
        admin.run(shutdown.clone())
    );
    served?;
    Ok(())
}
