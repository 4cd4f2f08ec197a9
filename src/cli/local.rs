//! `local` mode: the embedded Kubernetes API emulator (crate `kube-emulator`)
//! with the operator wired exactly as `run` wires it, a kubeconfig written for
//! kubectl once every listener is bound, and manifests applied at start.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use kube_emulator::{Emulator, EmulatorConfig};
use tracing::info;

use super::apply::{ApplyError, apply_path};
use super::run::{self, RunError, RunOptions};
use crate::{controller, verifier};

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("the embedded API server failed: {0}")]
    Emulator(#[from] kube_emulator::EmulatorError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Cli(#[from] super::CliError),
    #[error(transparent)]
    Run(#[from] RunError),
}

/// What `apikey-operator local` runs with.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// Where to write the kubeconfig for kubectl.
    pub kubeconfig: PathBuf,
    /// Manifest files or directories (their `.yaml`/`.yml`/`.json` files) to apply at start.
    pub apply: Vec<PathBuf>,
    /// Keeps the emulator's objects across restarts.
    pub state: Option<PathBuf>,
    /// API port on 127.0.0.1 (0: a free one).
    pub port: u16,
    /// The verifier's settings.
    pub verifier: verifier::VerifierConfig,
    /// The admin server (/metrics, /healthz, /readyz); none when `None`.
    pub admin_addr: Option<SocketAddr>,
}

/// Runs emulator and operator until `shutdown`, then stops them in order and
/// saves the state.
pub async fn run_local(
    opts: LocalOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), LocalError> {
    let emulator = Emulator::start(EmulatorConfig {
        port: opts.port,
        state_file: opts.state.clone(),
        ..Default::default()
    })
    .await?;
    let operator = run::bind_operator(
        emulator.config()?,
        RunOptions {
            controller: controller::Config::default(),
            verifier: opts.verifier,
            admin_addr: opts.admin_addr,
            leader: None,
        },
    )
    .await?;
    // Only now: a second instance whose ports are taken must not point the
    // first one's kubeconfig at an API server that is about to go away.
    emulator.write_kubeconfig(&opts.kubeconfig)?;
    let client = emulator.client().await?;
    super::install_crds(client.clone(), Duration::from_secs(30)).await?;
    let mut applied = 0;
    for path in &opts.apply {
        applied += apply_path(&client, path).await?;
    }
    info!(
        api = %emulator.url(),
        kubeconfig = %opts.kubeconfig.display(),
        verifier = %operator.verify_addr(),
        applied,
        "local mode ready: try `kubectl --kubeconfig {} get apitokens -A`",
        opts.kubeconfig.display()
    );
    let ran = operator.run(shutdown).await;
    // The emulator goes down (and saves its state) whether or not the operator failed.
    emulator.shutdown().await?;
    info!("local mode stopped");
    Ok(ran?)
}
