//! Command-line entry point: parses arguments and hands over to the library.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use apikey_operator::cli::{self, run, tokens};
use apikey_operator::{controller, leader, verifier};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

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

/// The admin server: /metrics, /healthz, /readyz.
#[derive(clap::Args)]
struct AdminArgs {
    /// Address of the admin server (/metrics, /healthz, /readyz). In a
    /// cluster use 0.0.0.0:9090 (the Helm chart does).
    #[arg(long, default_value = apikey_operator::admin::DEFAULT_ADDR, env = "APIKEY_OPERATOR_ADMIN_ADDR")]
    admin_addr: SocketAddr,
}

/// Leader election, for running several replicas.
#[derive(clap::Args)]
struct LeaderArgs {
    /// Reconcile only while holding a coordination.k8s.io Lease; every
    /// replica still serves the verifier.
    #[arg(long)]
    leader_elect: bool,
    /// Namespace of the Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    leader_election_namespace: String,
    /// Name of the Lease.
    #[arg(long, default_value = "apikey-operator-leader")]
    leader_election_id: String,
    /// This replica's name in the Lease (default: host name and process id).
    #[arg(long)]
    leader_election_identity: Option<String>,
    /// How long a leader's claim lasts; a new leader takes over at most this
    /// long after the old one died (whole seconds).
    #[arg(long, default_value = "15s", value_parser = leader::parse_period)]
    lease_duration: Duration,
    /// The leader stops reconciling when it could not renew for this long.
    #[arg(long, default_value = "10s", value_parser = leader::parse_period)]
    renew_deadline: Duration,
    /// How often the leader renews and the others try to acquire (e.g. 2s, 500ms).
    #[arg(long, default_value = "2s", value_parser = leader::parse_period)]
    retry_period: Duration,
}

impl LeaderArgs {
    fn config(self) -> Option<leader::LeaseConfig> {
        self.leader_elect.then(|| leader::LeaseConfig {
            namespace: self.leader_election_namespace,
            name: self.leader_election_id,
            identity: self
                .leader_election_identity
                .unwrap_or_else(leader::default_identity),
            lease_duration: self.lease_duration,
            renew_deadline: self.renew_deadline,
            retry_period: self.retry_period,
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
        /// At most this many ApiTokens (and as many ApiKeys) are reconciled at
        /// once; also bounds the API connections the operator opens (1..=1024).
        #[arg(long, default_value_t = apikey_operator::controller::DEFAULT_CONCURRENCY,
              value_parser = clap::value_parser!(u16).range(1..=1024),
              env = "APIKEY_OPERATOR_CONCURRENCY")]
        concurrency: u16,
        #[command(flatten)]
        verify: VerifyArgs,
        #[command(flatten)]
        admin: AdminArgs,
        #[command(flatten)]
        leader: LeaderArgs,
    },
    /// Run everything on this machine: an embedded Kubernetes API server,
    /// the controller and the verifier, until Ctrl-C. Writes a kubeconfig so
    /// that kubectl works against it.
    #[cfg(feature = "local")]
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
        #[command(flatten)]
        admin: AdminArgs,
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
    /// List ApiTokens with their key, readiness, expiry and grace state.
    List {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Namespace (default: the kubeconfig context's).
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// All namespaces.
        #[arg(long, short = 'A', conflicts_with = "namespace")]
        all_namespaces: bool,
    },
    /// Show one ApiToken in detail, conditions included.
    Status {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Name of the ApiToken.
        name: String,
        /// Namespace (default: the kubeconfig context's).
        #[arg(long, short = 'n')]
        namespace: Option<String>,
    },
    /// Create an ApiToken, wait for its value and print it once on stdout.
    ///
    /// The value is printed exactly once, by this command: copy it now. It
    /// stays in the token's Secret for workloads that mount it.
    CreateToken {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Name of the new ApiToken.
        name: String,
        /// The ApiKey it belongs to (same namespace).
        #[arg(long)]
        key: String,
        /// Namespace (default: the kubeconfig context's).
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// Each value expires this long after its issue, e.g. 90d.
        #[arg(long, conflicts_with = "expires_at")]
        lifetime: Option<String>,
        /// Every value expires at this RFC 3339 time, e.g. 2027-01-31T00:00:00Z.
        #[arg(long)]
        expires_at: Option<jiff::Timestamp>,
        /// Rotate on this period, e.g. 30d.
        #[arg(long)]
        rotate_every: Option<String>,
        /// Rotate this long before expiry, e.g. 7d (needs --lifetime).
        #[arg(long)]
        renew_before: Option<String>,
        /// The previous value stays valid this long after a rotation, e.g. 1h.
        #[arg(long)]
        grace_period: Option<String>,
        /// Display name.
        #[arg(long)]
        display_name: Option<String>,
        /// Description.
        #[arg(long)]
        description: Option<String>,
        /// Tag KEY=VALUE (repeatable).
        #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
        tags: Vec<(String, String)>,
        /// Name of the Secret for the value (default: the token's name).
        #[arg(long)]
        secret_name: Option<String>,
        /// Wait up to this many seconds for the value.
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
    /// Print a shell completion script: `source <(apikey-operator completions bash)`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

/// The program's name as invoked: `kubectl apikey` when called as the kubectl plugin.
fn program_name() -> &'static str {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let base = std::path::Path::new(&argv0)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if base == "kubectl-apikey" {
        "kubectl apikey"
    } else {
        "apikey-operator"
    }
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

/// jemalloc keeps the operator's memory closer to what it holds than glibc's
/// malloc after a burst of work (see the `jemalloc` feature in Cargo.toml).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let name = program_name();
    let matches = Cli::command().bin_name(name).name(name).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
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
            concurrency,
            verify,
            admin,
            leader,
        } => {
            let verifier = verify.config(namespace.clone())?;
            let config =
                cli::config(cluster.kubeconfig.as_deref(), cluster.context.as_deref()).await?;
            let opts = run::RunOptions {
                controller: controller::Config {
                    namespace,
                    selector,
                    concurrency,
                    ..Default::default()
                },
                verifier,
                admin_addr: admin.admin_addr,
                leader: leader.config(),
            };
            run::run_operator(config, opts, shutdown_signal()).await?;
        }
        #[cfg(feature = "local")]
        Command::Local {
            kubeconfig,
            apply,
            state,
            port,
            verify,
            admin,
        } => {
            let opts = apikey_operator::local::LocalOptions {
                kubeconfig,
                apply,
                state,
                port,
                verifier: verify.config(None)?,
                admin_addr: Some(admin.admin_addr),
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
        Command::List {
            cluster,
            namespace,
            all_namespaces,
        } => {
            let client =
                cli::client(cluster.kubeconfig.as_deref(), cluster.context.as_deref()).await?;
            let ns = (!all_namespaces)
                .then(|| namespace.unwrap_or_else(|| client.default_namespace().to_owned()));
            let items = tokens::list(client, ns.as_deref()).await?;
            if items.is_empty() {
                match &ns {
                    Some(ns) => eprintln!("No ApiTokens in namespace {ns}."),
                    None => eprintln!("No ApiTokens found."),
                }
            } else {
                print!(
                    "{}",
                    tokens::list_table(&items, jiff::Timestamp::now(), ns.is_none())
                );
            }
        }
        Command::Status {
            cluster,
            name,
            namespace,
        } => {
            let client =
                cli::client(cluster.kubeconfig.as_deref(), cluster.context.as_deref()).await?;
            let ns = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
            let token = tokens::get(client, &ns, &name).await?;
            print!("{}", tokens::status_text(&token, jiff::Timestamp::now()));
        }
        Command::CreateToken {
            cluster,
            name,
            key,
            namespace,
            lifetime,
            expires_at,
            rotate_every,
            renew_before,
            grace_period,
            display_name,
            description,
            tags,
            secret_name,
            wait,
        } => {
            let client =
                cli::client(cluster.kubeconfig.as_deref(), cluster.context.as_deref()).await?;
            let ns = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
            let new = tokens::NewToken {
                name,
                key,
                lifetime,
                expires_at,
                rotate_every,
                renew_before,
                grace_period,
                display_name,
                description,
                tags: tags.into_iter().collect::<BTreeMap<_, _>>(),
                secret_name,
            };
            let (token, value) =
                tokens::create_token(client, &ns, &new, Duration::from_secs(wait)).await?;
            let secret = token
                .status
                .as_ref()
                .and_then(|s| s.secret_name.clone())
                .unwrap_or_default();
            eprintln!(
                "ApiToken {ns}/{} is Ready. Its value follows on stdout; copy it now, this command will not show it again.\n\
                 (Workloads read it from Secret {ns}/{secret}; anyone who may read that Secret can read the value.)",
                new.name
            );
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{}", value.expose_secret())?;
            stdout.flush()?;
        }
        Command::Completions { shell } => {
            let name = program_name().replace(' ', "-");
            clap_complete::generate(shell, &mut Cli::command(), name, &mut std::io::stdout());
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
