//! What each subcommand does with its parsed flags: `main` parses, sets up
//! logging and the runtime, and `execute` hands each command to one function
//! here, which calls the library (`run`, `local`, `tokens`, `rotate`, `revoke`).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};

use super::args::{
    Cli, ClusterArgs, Command, CreateTokenArgs, ListArgs, LogFormat, RevokeArgs, RotateArgs,
    RunArgs, StatusArgs,
};
use super::{run, tokens};

type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// The binary's entry point: parses the command line and runs the command.
pub fn main() -> ExitCode {
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

/// Runs one parsed command to its end.
pub async fn execute(command: Command) -> Result {
    match command {
        Command::Crds => print_stdout(crate::api::crds_yaml()?)?,
        Command::Run(args) => run_operator(*args).await?,
        #[cfg(feature = "local")]
        Command::Local(args) => run_local(args).await?,
        Command::Rotate(args) => rotate(args).await?,
        Command::Revoke(args) => revoke(args).await?,
        Command::List(args) => list(args).await?,
        Command::Status(args) => status(args).await?,
        Command::CreateToken(args) => create_token(args).await?,
        Command::Completions { shell } => {
            let name = program_name().replace(' ', "-");
            // Into memory first: clap_complete panics when a write fails.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), name, &mut script);
            print_stdout(script)?;
        }
    }
    Ok(())
}

async fn run_operator(args: RunArgs) -> Result {
    let (cluster, opts) = args.into_options()?;
    let config = cluster.config().await?;
    run::run_operator(config, opts, shutdown_signal()).await?;
    Ok(())
}

#[cfg(feature = "local")]
async fn run_local(args: super::args::LocalArgs) -> Result {
    let opts = super::local::LocalOptions {
        kubeconfig: args.kubeconfig,
        apply: args.apply,
        state: args.state,
        port: args.port,
        users: args.users,
        verifier: args.verify.config(None)?,
        admin_addr: Some(args.admin.admin_addr),
    };
    super::local::run_local(opts, shutdown_signal()).await?;
    Ok(())
}

/// A rotate or revoke request as the command line gives it: the client, the token's
/// namespace (the context's unless given), the request value (the current time unless
/// given), how long to wait, and how the output names the token.
struct TokenRequest {
    client: kube::Client,
    namespace: String,
    name: String,
    request: String,
    wait: Option<Duration>,
    what: String,
}

impl TokenRequest {
    async fn new(
        cluster: ClusterArgs,
        namespace: Option<String>,
        name: String,
        request: Option<String>,
        wait: u64,
    ) -> Result<TokenRequest> {
        let client = cluster.client().await?;
        let namespace = namespace_or_context(namespace, &client);
        Ok(TokenRequest {
            what: format!("apitoken {namespace}/{name}"),
            request: request.unwrap_or_else(|| jiff::Timestamp::now().to_string()),
            wait: (wait > 0).then(|| Duration::from_secs(wait)),
            client,
            namespace,
            name,
        })
    }
}

async fn rotate(args: RotateArgs) -> Result {
    let TokenRequest {
        client,
        namespace,
        name,
        request,
        wait,
        what,
    } = TokenRequest::new(
        args.cluster,
        args.namespace,
        args.name,
        args.request,
        args.wait,
    )
    .await?;
    let said = match super::rotate(client, &namespace, &name, &request, wait).await? {
        None => format!(
            "{what}: rotation requested ({request}); not waiting: the current value stays in the \
             Secret until the operator acts on it"
        ),
        Some(super::Rotated {
            secret,
            earlier_valid_until,
        }) => {
            let earlier = match earlier_valid_until {
                Some(until) => format!("earlier values are accepted until {until}"),
                None => "no earlier value is accepted".to_owned(),
            };
            format!(
                "{what}: rotated ({request}); a fresh value is in Secret {namespace}/{secret}; {earlier}"
            )
        }
    };
    print_stdout(said + "\n")?;
    Ok(())
}

async fn revoke(args: RevokeArgs) -> Result {
    let TokenRequest {
        client,
        namespace,
        name,
        request,
        wait,
        what,
    } = TokenRequest::new(
        args.cluster,
        args.namespace,
        args.name,
        args.request,
        args.wait,
    )
    .await?;
    let said = match super::revoke(client, &namespace, &name, &request, wait).await? {
        None => format!(
            "{what}: revocation requested ({request}); not waiting: until the operator acts on it \
             the values are still accepted"
        ),
        Some(super::Revoked::Reissued { secret }) => format!(
            "{what}: revoked ({request}); every earlier value is refused, a fresh value is in \
             Secret {namespace}/{secret}"
        ),
        Some(super::Revoked::NoValue { reason, message }) => format!(
            "{what}: revoked ({request}); every earlier value is refused, and no value is issued \
             for now ({reason}: {message})"
        ),
    };
    print_stdout(said + "\n")?;
    Ok(())
}

async fn list(args: ListArgs) -> Result {
    let client = args.cluster.client().await?;
    let ns = (!args.all_namespaces).then(|| namespace_or_context(args.namespace, &client));
    let items = tokens::list(client, ns.as_deref()).await?;
    if items.is_empty() {
        match &ns {
            Some(ns) => eprintln!("No ApiTokens in namespace {ns}."),
            None => eprintln!("No ApiTokens found."),
        }
    } else {
        let table = tokens::list_table(&items, jiff::Timestamp::now(), ns.is_none());
        print_stdout(table)?;
    }
    Ok(())
}

async fn status(args: StatusArgs) -> Result {
    let client = args.cluster.client().await?;
    let ns = namespace_or_context(args.namespace, &client);
    let token = tokens::get(client, &ns, &args.name).await?;
    print_stdout(tokens::status_text(&token, jiff::Timestamp::now()))?;
    Ok(())
}

async fn create_token(args: CreateTokenArgs) -> Result {
    let client = args.cluster.client().await?;
    let ns = namespace_or_context(args.namespace, &client);
    let new = tokens::NewToken {
        name: args.name,
        key: args.key,
        lifetime: args.lifetime,
        expires_at: args.expires_at,
        rotate_every: args.rotate_every,
        renew_before: args.renew_before,
        grace_period: args.grace_period,
        display_name: args.display_name,
        description: args.description,
        tags: args.tags.into_iter().collect::<BTreeMap<_, _>>(),
        secret_name: args.secret_name,
    };
    let (token, value) =
        tokens::create_token(client, &ns, &new, Duration::from_secs(args.wait)).await?;
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
    // Unlike the other output, a value nobody read is an error: it is not shown again.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", value.expose_secret())?;
    stdout.flush()?;
    Ok(())
}

/// Writes `text` to stdout. A reader that went away (`… | head`) ends the
/// output quietly, as it does for other command-line tools.
fn print_stdout(text: impl AsRef<[u8]>) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_ref())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// `-n`, or else the kubeconfig context's namespace (as kubectl does).
fn namespace_or_context(namespace: Option<String>, client: &kube::Client) -> String {
    namespace.unwrap_or_else(|| client.default_namespace().to_owned())
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
    let no_color = std::env::var_os("NO_COLOR");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(log_colours(
            std::io::stderr().is_terminal(),
            no_color.as_deref(),
        ))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Colour codes in text logs only on a terminal (a file or a pipe gets plain
/// text), and never with a non-empty NO_COLOR (no-color.org).
fn log_colours(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        let cases: [(bool, Option<&str>, bool); 5] = [
            (true, None, true),
            (true, Some(""), true),
            (true, Some("1"), false),
            (false, None, false),
            (false, Some("1"), false),
        ];
        for (terminal, no_color, want) in cases {
            assert_eq!(
                log_colours(terminal, no_color.map(OsStr::new)),
                want,
                "terminal {terminal}, NO_COLOR {no_color:?}"
            );
        }
    }
}
