//! `local` mode: the embedded Kubernetes API emulator (crate `kube-emulator`)
//! with the operator wired exactly as `run` wires it, a kubeconfig written for
//! kubectl once every listener is bound (an admin context, current, and one
//! per ordinary user: `alice` in group `team-a`, plus `--users`; all on TLS, a
//! request without credentials is anonymous), and manifests applied at start.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use kube_emulator::{Anonymous, Emulator, EmulatorConfig, KubeconfigAdmin, StaticToken};
use tracing::info;

use super::apply::{ApplyError, apply_path};
use super::run::{self, RunError, RunOptions};
use crate::{admission, controller, verifier};

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
    #[error(transparent)]
    Users(#[from] UsersFileError),
    #[error("cannot register the admission webhook with the embedded API server: {0}")]
    Webhook(String),
}

/// Why `--users FILE` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UsersFileError {
    #[error("cannot read the users file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the users file {path} is not valid: {source}")]
    Format {
        path: String,
        source: kube_emulator::TokenFileError,
    },
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
    /// A static token file with more users for the kubeconfig.
    pub users: Option<PathBuf>,
    /// The verifier's settings.
    pub verifier: verifier::VerifierConfig,
    /// The admin server (/metrics, /healthz, /readyz); none when `None`.
    pub admin_addr: Option<SocketAddr>,
}

/// Runs emulator and operator until `shutdown`, then stops them in order and
/// compacts the state files.
pub async fn run_local(
    opts: LocalOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), LocalError> {
    let users = kubeconfig_users(opts.users.as_deref())?;
    // The operator and the verifier run as the chart's two ServiceAccounts, with the chart's
    // RBAC (`crate::rbac`), authenticated by tokens only this process knows.
    let operator_token = StaticToken::generate(&service_account_user(OPERATOR_ACCOUNT), &SA_GROUPS);
    let verifier_token = StaticToken::generate(&service_account_user(VERIFIER_ACCOUNT), &SA_GROUPS);
    let mut tokens = users.clone();
    tokens.extend([operator_token.clone(), verifier_token.clone()]);
    let emulator = Emulator::start(EmulatorConfig {
        port: opts.port,
        state_file: opts.state.clone(),
        tokens,
        // kube-apiserver's default: a request without credentials is `system:anonymous`, whom
        // RBAC lets read only the public endpoints. Every kubeconfig context is on TLS, where
        // kubectl sends its token; the operator's own client carries the admin's token.
        anonymous: Anonymous::Enabled,
        ..Default::default()
    })
    .await?;
    let admin = emulator.client().await?;
    grant_service_accounts(&admin).await?;
    let operator = run::bind_operator(
        emulator.config_with_token(&operator_token.token)?,
        RunOptions {
            verifier_client: Some(emulator.config_with_token(&verifier_token.token)?),
            components: run::Components::ALL,
            verifier_cert: None,
            controller: controller::Config::default(),
            verifier: opts.verifier,
            admin_addr: opts.admin_addr,
            leader: None,
            webhook: Some(admission::WebhookConfig {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                tls: admission::WebhookTls::Managed {
                    hosts: vec!["127.0.0.1".to_owned()],
                    secret: None,
                },
                configuration: Some(WEBHOOK_CONFIGURATION.to_owned()),
            }),
        },
    )
    .await?;
    // Only now: a second instance whose ports are taken must not point the
    // first one's kubeconfig at an API server that is about to go away.
    emulator.write_kubeconfig_with(&opts.kubeconfig, &users, KubeconfigAdmin::Tls)?;
    let client = admin;
    super::install_crds(client.clone(), Duration::from_secs(30)).await?;
    if let Some(webhook) = operator.webhook() {
        admission::registration::register_url(&client, WEBHOOK_CONFIGURATION, webhook)
            .await
            .map_err(|e| LocalError::Webhook(e.to_string()))?;
    }
    let verify_addr = operator
        .verify_addr()
        .map_or_else(String::new, |addr| addr.to_string());
    // The manifests go through the webhook, so the operator serves while they are applied;
    // a manifest that fails stops it again.
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        tokio::select! {
            () = shutdown => {}
            // Only a send stops it: the sender is dropped once all manifests are in.
            Ok(()) = failed_rx => {}
        }
    };
    let apply = async {
        let mut applied = 0;
        for path in &opts.apply {
            match apply_path(&client, path).await {
                Ok(n) => applied += n,
                Err(e) => {
                    let _ = failed_tx.send(());
                    return Err(e);
                }
            }
        }
        info!(
            api = %emulator.url(),
            kubeconfig = %opts.kubeconfig.display(),
            verifier = %verify_addr,
            applied,
            "local mode ready: try `kubectl --kubeconfig {} get apitokens -A`",
            opts.kubeconfig.display()
        );
        Ok(())
    };
    let (ran, applied) = tokio::join!(operator.run(stop), apply);
    // The emulator goes down (and compacts its state) whether or not the operator failed.
    emulator.shutdown().await?;
    info!("local mode stopped");
    applied?;
    Ok(ran?)
}

/// Where `local` puts the operator's ServiceAccounts, as the chart's release namespace.
pub const SYSTEM_NAMESPACE: &str = "apikey-system";
/// The operator's ServiceAccount (controller and webhook), as the chart names it.
pub const OPERATOR_ACCOUNT: &str = "apikey-operator";
/// The verifier's ServiceAccount, as the chart names it.
pub const VERIFIER_ACCOUNT: &str = "apikey-operator-verifier";
const SA_GROUPS: [&str; 2] = [
    "system:serviceaccounts",
    "system:serviceaccounts:apikey-system",
];

fn service_account_user(name: &str) -> String {
    format!("system:serviceaccount:{SYSTEM_NAMESPACE}:{name}")
}

/// The namespace, the two ServiceAccounts and exactly the RBAC the chart gives them (with its
/// default values, the verifier on plain HTTP as `local` serves it).
async fn grant_service_accounts(admin: &kube::Client) -> Result<(), LocalError> {
    let install = crate::rbac::Install {
        fullname: OPERATOR_ACCOUNT.to_owned(),
        namespace: SYSTEM_NAMESPACE.to_owned(),
        watch_namespace: None,
        restart_targets: false,
        cert_manager: false,
        verifier_managed_tls: false,
        verifier_separate: true,
        leader_election: false,
    };
    let objects = crate::rbac::install_objects(&install, OPERATOR_ACCOUNT, VERIFIER_ACCOUNT);
    super::apply::apply_objects(admin, "the operator's RBAC", &objects).await?;
    Ok(())
}

/// The ValidatingWebhookConfiguration `local` registers (the chart's has the same rules).
pub const WEBHOOK_CONFIGURATION: &str = "apikey-operator";

/// The ordinary users of the kubeconfig: `alice` (group `team-a`, a fresh token each start)
/// unless the users file names its own `alice`, then the file's users.
fn kubeconfig_users(file: Option<&std::path::Path>) -> Result<Vec<StaticToken>, UsersFileError> {
    let from_file = match file {
        None => Vec::new(),
        Some(path) => {
            let shown = || path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| UsersFileError::Io {
                path: shown(),
                source,
            })?;
            kube_emulator::parse_token_file(&text).map_err(|source| UsersFileError::Format {
                path: shown(),
                source,
            })?
        }
    };
    let mut users = Vec::new();
    if !from_file.iter().any(|t| t.user.username == "alice") {
        users.push(StaticToken::generate("alice", &["team-a"]));
    }
    users.extend(from_file);
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users_file(text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "apikey-local-users-{}-{}.csv",
            std::process::id(),
            text.len()
        ));
        std::fs::write(&path, text).expect("users file");
        path
    }

    fn names(users: &[StaticToken]) -> Vec<(&str, Vec<String>)> {
        users
            .iter()
            .map(|t| (t.user.username.as_str(), t.user.groups.clone()))
            .collect()
    }

    #[test]
    fn alice_comes_first_unless_the_users_file_brings_its_own() {
        let none = kubeconfig_users(None).expect("no file");
        assert_eq!(names(&none), [("alice", vec!["team-a".to_owned()])]);
        assert!(none[0].token.len() >= 32, "a random token");

        let path = users_file("t-bob,bob,uid-bob,\"ops,team-b\"\n");
        let with_bob = kubeconfig_users(Some(&path)).expect("bob");
        assert_eq!(
            names(&with_bob),
            [
                ("alice", vec!["team-a".to_owned()]),
                ("bob", vec!["ops".to_owned(), "team-b".to_owned()]),
            ]
        );
        let path = users_file("t-alice,alice,uid-a,admins\n");
        let own_alice = kubeconfig_users(Some(&path)).expect("alice");
        assert_eq!(names(&own_alice), [("alice", vec!["admins".to_owned()])]);
        assert_eq!(own_alice[0].token, "t-alice");

        let path = users_file("only,two\n");
        assert!(matches!(
            kubeconfig_users(Some(&path)),
            Err(UsersFileError::Format { .. })
        ));
    }
}
