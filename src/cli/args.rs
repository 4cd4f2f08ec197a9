//! The command line's clap types: every subcommand, its flags and their help
//! text. `commands` runs what they parse; nothing here does I/O except
//! building a client from `--kubeconfig`/`--context`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use kube::Client;

use super::CliError;
use crate::{admin, admission, controller, leader, verifier};

/// Manage API keys and API tokens as Kubernetes resources.
#[derive(Parser)]
#[command(name = "apikey-operator", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "APIKEY_OPERATOR_LOG_FORMAT")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where to find the cluster.
#[derive(clap::Args)]
pub struct ClusterArgs {
    /// Kubeconfig file (default: KUBECONFIG, ~/.kube/config or in-cluster).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use.
    #[arg(long)]
    pub context: Option<String>,
}

impl ClusterArgs {
    /// The connection settings these flags name.
    pub async fn config(&self) -> Result<kube::Config, CliError> {
        super::config(self.kubeconfig.as_deref(), self.context.as_deref()).await
    }

    /// A client for the cluster these flags name.
    pub async fn client(&self) -> Result<Client, CliError> {
        super::client(self.kubeconfig.as_deref(), self.context.as_deref()).await
    }
}

/// The verifier's HTTP server (TokenReview and forward-auth; see docs/verifier.md).
#[derive(clap::Args)]
pub struct VerifyArgs {
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
    /// PEM CA certificates: only clients presenting a certificate they
    /// signed may connect, on every path (read at start).
    #[arg(long, value_name = "FILE", requires = "verify_tls_cert")]
    verify_client_ca: Option<PathBuf>,
    /// Group added to every authenticated identity (repeatable).
    #[arg(long = "extra-group", value_name = "GROUP")]
    extra_groups: Vec<String>,
    /// Rename a forward-auth identity header, FIELD=HEADER (repeatable), e.g.
    /// user=X-Forwarded-User. Fields: user, uid, groups, namespace, apikey, apitoken; each needs a
    /// header of its own, not one HTTP or the answer uses (Cache-Control, Authorization, …).
    #[arg(long = "verify-header", value_name = "FIELD=HEADER")]
    headers: Vec<String>,
    /// Audience of tokens that list none in `spec.audiences` (nor their
    /// key's `tokenDefaults`), repeatable; TokenReview and forward-auth
    /// routes grant only these to such tokens.
    #[arg(
        long = "audience",
        value_name = "AUDIENCE",
        default_value = verifier::DEFAULT_AUDIENCE
    )]
    audiences: Vec<String>,
}

impl VerifyArgs {
    /// The verifier's settings; `namespace` limits what it indexes.
    pub fn config(
        self,
        namespace: Option<String>,
    ) -> Result<verifier::VerifierConfig, verifier::HeaderNameError> {
        let headers = verifier::HeaderNames::from_settings(&self.headers)?;
        Ok(verifier::VerifierConfig {
            addr: self.verify_addr,
            tls: self.verify_tls_cert.zip(self.verify_tls_key),
            client_ca: self.verify_client_ca,
            extra_groups: self.extra_groups,
            headers,
            namespace,
            audiences: self.audiences,
        })
    }
}

/// The admin server: /metrics, /healthz, /readyz.
#[derive(clap::Args)]
pub struct AdminArgs {
    /// Address of the admin server (/metrics, /healthz, /readyz). In a
    /// cluster use 0.0.0.0:9090 (the Helm chart does).
    #[arg(long, default_value = admin::DEFAULT_ADDR, env = "APIKEY_OPERATOR_ADMIN_ADDR")]
    pub admin_addr: SocketAddr,
}

/// The validating admission webhook (who may create which key and token;
/// docs/security.md). Served by every replica; the Helm chart registers it.
#[derive(clap::Args)]
pub struct WebhookArgs {
    /// Address of the admission webhook (HTTPS, path /validate). In a cluster
    /// use 0.0.0.0:9443 (the Helm chart does).
    #[arg(
        long,
        default_value = "127.0.0.1:9443",
        env = "APIKEY_OPERATOR_WEBHOOK_ADDR"
    )]
    webhook_addr: SocketAddr,
    /// PEM certificate (chain) provided from outside, e.g. by cert-manager,
    /// whose CA injector then keeps the configuration's caBundle current.
    /// Without it the operator makes its own CA and certificate.
    #[arg(long, requires = "webhook_tls_key", conflicts_with = "webhook_secret")]
    webhook_tls_cert: Option<PathBuf>,
    /// PEM private key for --webhook-tls-cert.
    #[arg(long, requires = "webhook_tls_cert")]
    webhook_tls_key: Option<PathBuf>,
    /// Secret (in --webhook-namespace) where the operator keeps its webhook
    /// CA and certificate, shared by all replicas. Without it each process
    /// makes its own in memory (one replica only).
    #[arg(long)]
    webhook_secret: Option<String>,
    /// Service (in --webhook-namespace) in front of the webhook: the names the
    /// operator's certificate is made for. Default: localhost and 127.0.0.1.
    #[arg(long)]
    webhook_service: Option<String>,
    /// Namespace of --webhook-secret and --webhook-service.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    webhook_namespace: String,
    /// ValidatingWebhookConfiguration whose caBundle the operator keeps equal
    /// to its own CA.
    #[arg(long)]
    webhook_configuration: Option<String>,
}

impl WebhookArgs {
    /// The webhook's settings.
    pub fn config(self) -> admission::WebhookConfig {
        let ns = self.webhook_namespace;
        let tls = match self.webhook_tls_cert.zip(self.webhook_tls_key) {
            Some((cert, key)) => admission::WebhookTls::Files { cert, key },
            None => admission::WebhookTls::Managed {
                hosts: service_hosts(self.webhook_service.as_deref(), &ns),
                secret: self.webhook_secret.map(|name| (ns.clone(), name)),
            },
        };
        admission::WebhookConfig {
            addr: self.webhook_addr,
            tls,
            configuration: self.webhook_configuration,
        }
    }
}

/// The names a certificate for the Service `service` in `namespace` is made
/// for; without a Service, this machine's.
fn service_hosts(service: Option<&str>, namespace: &str) -> Vec<String> {
    match service {
        Some(svc) => crate::certs::service_names(svc, namespace),
        None => vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
    }
}

/// The verifier's certificate, made and renewed by the operator (the Helm
/// chart's default), for a verifier Deployment that mounts its Secret.
#[derive(clap::Args)]
pub struct VerifierCertArgs {
    /// Secret (in --verify-cert-namespace) where the operator keeps a CA and a
    /// serving certificate for the verifier, renewed like the webhook's and
    /// shared by all replicas. A verifier run elsewhere mounts it
    /// (--verify-tls-cert/--verify-tls-key); one in this process serves with
    /// it unless given those files.
    #[arg(long)]
    verify_cert_secret: Option<String>,
    /// Service (in --verify-cert-namespace) in front of the verifier: the
    /// names the certificate is made for. Default: localhost and 127.0.0.1.
    #[arg(long, requires = "verify_cert_secret")]
    verify_cert_service: Option<String>,
    /// ConfigMap (in --verify-cert-namespace) where the operator publishes the
    /// verifier's CA bundle under `ca.crt`, for its clients.
    #[arg(long, requires = "verify_cert_secret")]
    verify_ca_configmap: Option<String>,
    /// Namespace of --verify-cert-secret, --verify-cert-service and --verify-ca-configmap.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    verify_cert_namespace: String,
}

impl VerifierCertArgs {
    /// The certificate's settings, when the operator manages one.
    pub fn config(self) -> Option<super::run::VerifierCertConfig> {
        let namespace = self.verify_cert_namespace;
        self.verify_cert_secret
            .map(|secret| super::run::VerifierCertConfig {
                hosts: service_hosts(self.verify_cert_service.as_deref(), &namespace),
                secret,
                ca_configmap: self.verify_ca_configmap,
                namespace,
            })
    }
}

/// A part of the operator that `run` can run alone (`--components`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Component {
    /// The reconcilers of ApiKeys and ApiTokens (leader-elected with --leader-elect).
    Controller,
    /// The validating admission webhook.
    Webhook,
    /// The verifier: TokenReview and forward-auth.
    Verifier,
}

/// The parts named by `--components`.
pub fn components(named: &[Component]) -> super::run::Components {
    super::run::Components {
        controller: named.contains(&Component::Controller),
        webhook: named.contains(&Component::Webhook),
        verifier: named.contains(&Component::Verifier),
    }
}

/// Leader election, for running several replicas.
#[derive(clap::Args)]
pub struct LeaderArgs {
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
    /// The Lease settings with `--leader-elect`, else none.
    pub fn config(self) -> Option<leader::LeaseConfig> {
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
pub enum Command {
    /// Print the CustomResourceDefinitions of ApiKey and ApiToken as YAML.
    Crds,
    /// Run the operator against a cluster (in cluster, or the current kubeconfig).
    Run(Box<RunArgs>),
    /// Run everything on this machine: an embedded Kubernetes API server,
    /// the controller and the verifier, until Ctrl-C. Writes a kubeconfig so
    /// that kubectl works against it.
    #[cfg(feature = "local")]
    Local(LocalArgs),
    /// Request a rotation of an ApiToken (sets the apikeys.dev/rotate
    /// annotation) and wait for the fresh value. Fails at once, setting
    /// nothing, when the token cannot rotate (disabled, invalid spec, key
    /// missing or not Ready, expiresAt passed).
    Rotate(RotateArgs),
    /// Revoke an ApiToken at once (sets the apikeys.dev/revoke annotation):
    /// the current value and every earlier one still in its grace period
    /// are refused from then on, and a fresh value is issued. The answer to
    /// a leaked value.
    Revoke(RevokeArgs),
    /// List ApiTokens with their key, readiness, expiry and grace state.
    List(ListArgs),
    /// Show one ApiToken in detail, conditions included.
    Status(StatusArgs),
    /// Create an ApiToken, wait for its value and print it once on stdout.
    ///
    /// The value is printed exactly once, by this command: copy it now. It
    /// stays in the token's Secret for workloads that mount it.
    CreateToken(CreateTokenArgs),
    /// Print a shell completion script: `source <(apikey-operator completions bash)`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Only reconcile this namespace (default: all namespaces).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Only reconcile ApiKeys and ApiTokens matching this label selector,
    /// e.g. `shard=a`, so several instances can share the work.
    #[arg(long, short = 'l')]
    pub selector: Option<String>,
    /// At most this many ApiTokens (and as many ApiKeys) are reconciled at
    /// once; also bounds the API connections the operator opens (1..=1024).
    #[arg(long, default_value_t = controller::DEFAULT_CONCURRENCY,
          value_parser = clap::value_parser!(u16).range(1..=1024),
          env = "APIKEY_OPERATOR_CONCURRENCY")]
    pub concurrency: u16,
    /// The shortest `rotation.every` a token may ask for, e.g. `1h`; at
    /// least `1m` (the CRD's floor). A token asking for less gets
    /// Ready=False, reason InvalidSpec.
    #[arg(long, default_value = "1m", value_parser = parse_min_rotation_period,
          env = "APIKEY_OPERATOR_MIN_ROTATION_PERIOD")]
    pub min_rotation_period: jiff::SignedDuration,
    /// The parts to run, comma-separated: controller, webhook, verifier.
    /// The Helm chart runs controller,webhook in one Deployment and the
    /// verifier in another, which then needs no access to Secrets or Leases.
    #[arg(long, value_enum, value_delimiter = ',', num_args = 1..,
          default_value = "controller,webhook,verifier", env = "APIKEY_OPERATOR_COMPONENTS")]
    pub components: Vec<Component>,
    #[command(flatten)]
    pub verify: VerifyArgs,
    #[command(flatten)]
    pub verify_cert: VerifierCertArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub leader: LeaderArgs,
    #[command(flatten)]
    pub webhook: WebhookArgs,
}

impl RunArgs {
    /// Where the cluster is, and what `run` runs with these flags.
    pub fn into_options(
        self,
    ) -> Result<(ClusterArgs, super::run::RunOptions), verifier::HeaderNameError> {
        let verifier = self.verify.config(self.namespace.clone())?;
        let opts = super::run::RunOptions {
            components: components(&self.components),
            verifier_client: None,
            verifier_cert: self.verify_cert.config(),
            controller: controller::Config {
                namespace: self.namespace,
                selector: self.selector,
                concurrency: self.concurrency,
                min_rotation: self.min_rotation_period,
                ..Default::default()
            },
            verifier,
            admin_addr: Some(self.admin.admin_addr),
            leader: self.leader.config(),
            webhook: Some(self.webhook.config()),
        };
        Ok((self.cluster, opts))
    }
}

#[cfg(feature = "local")]
#[derive(clap::Args)]
pub struct LocalArgs {
    /// Where to write the kubeconfig for kubectl.
    #[arg(long, default_value = "apikey-operator.kubeconfig")]
    pub kubeconfig: PathBuf,
    /// Manifest file or directory to apply at start (repeatable).
    #[arg(long, value_name = "PATH")]
    pub apply: Vec<PathBuf>,
    /// Keep the API server's objects in this file (and FILE.journal) across restarts and
    /// crashes; both hold every token value, are created 0600, and must stay private.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// API server port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// More users for the kubeconfig, in kube-apiserver's static token file format: one
    /// `token,user,uid,"group1,group2"` line each; each gets a context named after the user.
    #[arg(long, value_name = "FILE")]
    pub users: Option<PathBuf>,
    #[command(flatten)]
    pub verify: VerifyArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(clap::Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Name of the ApiToken.
    pub name: String,
    /// Namespace of the ApiToken (default: the kubeconfig context's).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// The request value (default: the current time); each new value rotates once.
    #[arg(long)]
    pub request: Option<String>,
    /// Wait up to this many seconds for the operator to rotate (0: do not wait).
    #[arg(long, default_value_t = 30)]
    pub wait: u64,
}

#[derive(clap::Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Name of the ApiToken.
    pub name: String,
    /// Namespace of the ApiToken (default: the kubeconfig context's).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// The request value (default: the current time); each new value revokes once.
    #[arg(long)]
    pub request: Option<String>,
    /// Wait up to this many seconds for the operator to revoke (0: do not wait).
    #[arg(long, default_value_t = 30)]
    pub wait: u64,
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Namespace (default: the kubeconfig context's).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// All namespaces.
    #[arg(long, short = 'A', conflicts_with = "namespace")]
    pub all_namespaces: bool,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Name of the ApiToken.
    pub name: String,
    /// Namespace (default: the kubeconfig context's).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
}

#[derive(clap::Args)]
pub struct CreateTokenArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Name of the new ApiToken.
    pub name: String,
    /// The ApiKey it belongs to (same namespace).
    #[arg(long)]
    pub key: String,
    /// Namespace (default: the kubeconfig context's).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Each value expires this long after its issue, e.g. 90d.
    #[arg(long, conflicts_with = "expires_at", value_parser = parse_positive_duration)]
    pub lifetime: Option<String>,
    /// Every value expires at this RFC 3339 time, e.g. 2027-01-31T00:00:00Z.
    #[arg(long)]
    pub expires_at: Option<jiff::Timestamp>,
    /// Rotate on this period, e.g. 30d.
    #[arg(long, value_parser = parse_positive_duration)]
    pub rotate_every: Option<String>,
    /// Rotate this long before expiry, e.g. 7d (needs --lifetime).
    #[arg(long, value_parser = parse_positive_duration)]
    pub renew_before: Option<String>,
    /// The previous value stays valid this long after a rotation, e.g. 1h.
    #[arg(long, value_parser = parse_duration)]
    pub grace_period: Option<String>,
    /// Display name.
    #[arg(long)]
    pub display_name: Option<String>,
    /// Description.
    #[arg(long)]
    pub description: Option<String>,
    /// Tag KEY=VALUE (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
    /// Name of the Secret for the value (default: the token's name).
    #[arg(long)]
    pub secret_name: Option<String>,
    /// Wait up to this many seconds for the value.
    #[arg(long, default_value_t = 60)]
    pub wait: u64,
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

/// A duration flag of `create-token`, kept as written for the spec: the
/// operator's grammar (`90d`, `1h30m`), so a typo fails before anything is created.
fn parse_duration(raw: &str) -> Result<String, String> {
    crate::duration::parse_duration(raw).map_err(|e| e.to_string())?;
    Ok(raw.to_owned())
}

/// As [`parse_duration`], and longer than zero (the operator refuses a
/// zero lifetime or rotation period).
fn parse_positive_duration(raw: &str) -> Result<String, String> {
    let period = crate::duration::parse_duration(raw).map_err(|e| e.to_string())?;
    if period.is_zero() {
        return Err(format!("{raw} is zero; give a positive duration, e.g. 90d"));
    }
    Ok(raw.to_owned())
}

/// `--min-rotation-period`: a duration of the CRD's grammar, not under the
/// CRD's own floor of one minute.
fn parse_min_rotation_period(raw: &str) -> Result<jiff::SignedDuration, String> {
    let period = crate::duration::parse_duration(raw).map_err(|e| e.to_string())?;
    if period < crate::schedule::MIN_ROTATION_PERIOD {
        return Err(format!(
            "{raw} is under the CRD's minimum of 1m; give 1m or more"
        ));
    }
    Ok(period)
}

#[cfg(test)]
#[path = "args/tests.rs"]
mod tests;
