//! Command-line entry point: parses arguments and hands over to the library.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use apikey_operator::{cli, controller, verifier};
use clap::{Parser, Subcommand, ValueEnum};
use futures::FutureExt;

/// Manage API keys and API tokens as Kubernetes resources.
#[derive(Parser)]
#[command(name = "apikey-operator", version, about, propagate_version = true)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "APIKEY_OPERATOR_LOG_FORMAT")]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Where to find the cluster.
#[derive(clap::Args)]
struct ClusterArgs {
    /// Kubeconfig file (default: KUBECONFIG, ~/.kube/config or in-cluster).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use.
    #[arg(long)]
    context: Option<String>,
}

/// The verifier's HTTP server (TokenReview and forward-auth; see docs/verifier.md).
#[derive(clap::Args)]
struct VerifyArgs {
    /// Address of the verifier. The default serves only this machine; in a
    /// cluster use 0.0.0.0:8443 (the Helm chart does).
    #[arg(
        long,
        default_value = "127.0.0.1:8080",
        env = "APIKEY_OPERATOR_VERIFY_ADDR"
    )]
    verify_addr: SocketAddr,
    /// PEM certificate (chain) for HTTPS; reloaded when the file changes.
    #[arg(long, requires = "verify_tls_key")]
    verify_tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS; reloaded when the file changes.
    #[arg(long, requires = "verify_tls_cert")]
    verify_tls_key: Option<PathBuf>,
    /// Group added to every authenticated identity (repeatable).
    #[arg(long = "extra-group", value_name = "GROUP")]
    extra_groups: Vec<String>,
    /// Rename a forward-auth identity header, FIELD=HEADER (repeatable), e.g.
    /// user=X-Forwarded-User. Fields: user, uid, groups, namespace, apikey, apitoken.
    #[arg(long = "verify-header", value_name = "FIELD=HEADER")]
    headers: Vec<String>,
}

impl VerifyArgs {
    fn config(
        self,
        namespace: Option<String>,
    ) -> Result<verifier::VerifierConfig, Box<dyn std::error::Error>> {
        let mut headers = verifier::HeaderNames::default();
        for setting in &self.headers {
            headers.set(setting)?;
        }
        Ok(verifier::VerifierConfig {
            addr: self.verify_addr,
            tls: self.verify_tls_cert.zip(self.verify_tls_key),
            extra_groups: self.extra_groups,
            headers,
            namespace,
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions of ApiKey and ApiToken as YAML.
    Crds,
    /// Run the operator against a cluster (in cluster, or the current kubeconfig).
    Run {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Only reconcile this namespace (default: all namespaces).
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// Only reconcile ApiKeys and ApiTokens matching this label selector,
        /// e.g. `shard=a`, so several instances can share the work.
        #[arg(long, short = 'l')]
        selector: Option<String>,
        #[command(flatten)]
        verify: VerifyArgs,
    },
    /// Run everything on this machine: an embedded Kubernetes API server,
    /// the controller and the verifier, until Ctrl-C. Writes a kubeconfig so
    /// that kubectl works against it.
    Local {
        /// Where to write the kubeconfig for kubectl.
        #[arg(long, default_value = "apikey-operator.kubeconfig")]
        kubeconfig: PathBuf,
        /// Manifest file or directory to apply at start (repeatable).
        #[arg(long, value_name = "PATH")]
        apply: Vec<PathBuf>,
        /// Keep the API server's objects in this file across restarts.
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
        /// API server port on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[command(flatten)]
        verify: VerifyArgs,
    },
    /// Request a rotation of an ApiToken (sets the apikeys.dev/rotate annotation).
    Rotate {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Name of the ApiToken.
        name: String,
        /// Namespace of the ApiToken.
        #[arg(long, short = 'n', default_value = "default")]
        namespace: String,
        /// The request value (default: the current time); each new value rotates once.
        #[arg(long)]
        request: Option<String>,
        /// Wait up to this many seconds for the operator to rotate (0: do not wait).
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Crds => {
            print!("{}", apikey_operator::api::crds_yaml()?);
        }
        Command::Run {
            cluster,
            namespace,
            selector,
            verify,
        } => {
            let verify = verify.config(namespace.clone())?;
            let client =
                cli::client(cluster.kubeconfig.as_deref(), cluster.context.as_deref()).await?;
            let config = controller::Config {
                namespace,
                selector,
                ..Default::default()
            };
            // Bind first so that a taken port fails before anything starts.
            let verifier = verifier::bind(client.clone(), verify).await?;
            let shutdown = shutdown_signal().shared();
            let controllers = controller::run(client, config, shutdown.clone());
            let (_, served) = tokio::join!(controllers, verifier.run(shutdown));
            served?;
        }
        Command::Local {
            kubeconfig,
            apply,
            state,
            port,
            verify,
        } => {
            let opts = apikey_operator::local::LocalOptions {
                kubeconfig,
                apply,
                state,
                port,
                verifier: verify.config(None)?,
            };
            apikey_operator::local::run_local(opts, shutdown_signal()).await?;
        }
        Command::Rotate {
            cluster,
            name,
            namespace,
            request,
            wait,
        } => {
            let client =
                cli::client(cluster.kubeconfig.as_deref(), cluster.context.as_deref()).await?;
            let request = request.unwrap_or_else(|| jiff::Timestamp::now().to_string());
            let wait = (wait > 0).then(|| Duration::from_secs(wait));
            cli::rotate(client, &namespace, &name, &request, wait).await?;
            println!("apitoken {namespace}/{name}: rotation requested ({request})");
        }
    }
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
