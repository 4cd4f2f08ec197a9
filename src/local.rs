//! `local` mode: the embedded Kubernetes API emulator, the controller and the
//! verifier in one process, with a kubeconfig written for kubectl and
//! manifests applied at start. Also the manifest applier it uses.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{FutureExt, TryFutureExt};
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::{Api, Client};
use serde::Deserialize;
use tracing::info;

use crate::{cli, controller, verifier};
use kube_emulator::{Emulator, EmulatorConfig};

/// Field manager of manifests applied by `local --apply`.
pub const APPLY_MANAGER: &str = "apikey-operator-local";

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("could not read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: document {index} is not valid YAML: {source}; fix the manifest")]
    Yaml {
        path: String,
        index: usize,
        source: serde_yaml::Error,
    },
    #[error(
        "{path}: document {index} has no apiVersion, kind or metadata.name; every manifest needs all three"
    )]
    Incomplete { path: String, index: usize },
    #[error("{path}: {kind} ({api_version}) is not served by the API server: {source}")]
    UnknownKind {
        path: String,
        kind: String,
        api_version: String,
        source: kube::Error,
    },
    #[error("{path}: applying {kind} {name} failed: {source}")]
    Apply {
        path: String,
        kind: String,
        name: String,
        source: kube::Error,
    },
    #[error("the embedded API server failed: {0}")]
    Emulator(#[from] kube_emulator::EmulatorError),
    #[error(transparent)]
    Cli(#[from] cli::CliError),
    #[error(transparent)]
    Verifier(#[from] verifier::VerifierError),
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    #[error(transparent)]
    Run(#[from] cli::run::RunError),
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

/// Runs emulator, controller and verifier until `shutdown`, then stops them
/// in order and saves the state.
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
    emulator.write_kubeconfig(&opts.kubeconfig)?;
    let client = emulator.client().await?;
    cli::install_crds(client.clone(), Duration::from_secs(30)).await?;
    let mut applied = 0;
    for path in &opts.apply {
        applied += apply_path(&client, path).await?;
    }
    let verifier = verifier::bind(client.clone(), opts.verifier.clone()).await?;
    let verify_addr: SocketAddr = verifier.local_addr();
    let handles = std::sync::Arc::new(controller::Handles::default());
    let admin = match opts.admin_addr {
        Some(addr) => {
            let sources = crate::metrics::Sources {
                controller: handles.clone(),
                index: verifier.index(),
                leading: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
            };
            Some(
                crate::admin::bind(
                    addr,
                    crate::admin::AdminState {
                        operator: crate::metrics::OperatorMetrics::new(sources.clone()),
                        sources,
                        verifier_metrics: verifier.metrics(),
                        verifier_ready: verifier.readiness(),
                    },
                )
                .await?,
            )
        }
        None => None,
    };
    info!(
        api = %emulator.url(),
        kubeconfig = %opts.kubeconfig.display(),
        verifier = %verify_addr,
        applied,
        "local mode ready: try `kubectl --kubeconfig {} get apitokens -A`",
        opts.kubeconfig.display()
    );
    let shutdown = shutdown.shared();
    let controllers = cli::run::spawn_controllers(emulator.config()?, move |client, stop| {
        controller::run_with(
            client,
            controller::Config::default(),
            std::sync::Arc::new(crate::clock::SystemClock),
            handles,
            stop,
        )
    })?;
    let admin_run = async {
        if let Some(admin) = admin {
            admin.run(shutdown.clone()).await;
        }
    };
    // The first failure stops everything; the emulator goes down either way.
    let ran = tokio::try_join!(
        controllers
            .run_until(shutdown.clone())
            .err_into::<LocalError>(),
        verifier.run(shutdown.clone()).err_into::<LocalError>(),
        admin_run.map(Ok),
    );
    emulator.shutdown().await?;
    info!("local mode stopped");
    ran.map(drop)
}

/// Applies every manifest under `path` (a file, or a directory's YAML/JSON
/// files in name order) by server-side apply. Returns how many objects.
pub async fn apply_path(client: &Client, path: &Path) -> Result<usize, LocalError> {
    let mut files = Vec::new();
    if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|source| LocalError::Read {
            path: path.display().to_string(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| LocalError::Read {
                path: path.display().to_string(),
                source,
            })?;
            let p = entry.path();
            if p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
            {
                files.push(p);
            }
        }
        files.sort();
    } else {
        files.push(path.to_owned());
    }
    let mut count = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| LocalError::Read {
            path: file.display().to_string(),
            source,
        })?;
        count += apply_manifests(client, &file.display().to_string(), &text).await?;
    }
    Ok(count)
}

/// Applies a multi-document YAML stream; `origin` names it in errors.
pub async fn apply_manifests(
    client: &Client,
    origin: &str,
    text: &str,
) -> Result<usize, LocalError> {
    let mut count = 0;
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value =
            serde_json::Value::deserialize(document).map_err(|source| LocalError::Yaml {
                path: origin.to_owned(),
                index: index + 1,
                source,
            })?;
        if value.is_null() {
            continue;
        }
        let object: DynamicObject =
            serde_json::from_value(value).map_err(|_| LocalError::Incomplete {
                path: origin.to_owned(),
                index: index + 1,
            })?;
        let (Some(types), Some(name)) = (object.types.clone(), object.metadata.name.clone()) else {
            return Err(LocalError::Incomplete {
                path: origin.to_owned(),
                index: index + 1,
            });
        };
        let gvk = GroupVersionKind::try_from(&types).map_err(|_| LocalError::Incomplete {
            path: origin.to_owned(),
            index: index + 1,
        })?;
        let (resource, capabilities) =
            discovery::pinned_kind(client, &gvk)
                .await
                .map_err(|source| LocalError::UnknownKind {
                    path: origin.to_owned(),
                    kind: types.kind.clone(),
                    api_version: types.api_version.clone(),
                    source,
                })?;
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Namespaced => {
                let ns = object
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".to_owned());
                Api::namespaced_with(client.clone(), &ns, &resource)
            }
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        api.patch(
            &name,
            &PatchParams::apply(APPLY_MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .map_err(|source| LocalError::Apply {
            path: origin.to_owned(),
            kind: types.kind.clone(),
            name: name.clone(),
            source,
        })?;
        count += 1;
    }
    Ok(count)
}
