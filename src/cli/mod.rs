//! The command line: `args` holds the clap types, `commands` runs each
//! subcommand; `run` wires the operator (for `run` and `local`), `local`
//! adds the embedded API server (feature `local`), `apply` applies manifest
//! files, `tokens` serves kubectl users (list, status, create-token),
//! `requests` sends rotate and revoke requests. Here: the errors, building a
//! client from a kubeconfig, installing the CRDs.

pub mod apply;
pub mod args;
pub mod commands;
#[cfg(feature = "local")]
pub mod local;
pub mod requests;
pub mod run;
pub mod tokens;

pub use requests::{Revoked, Rotated, revoke, rotate};

use std::path::Path;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// Errors of CLI commands, each saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("could not read kubeconfig {path}: {source}; pass --kubeconfig with a readable file")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error(
        "could not load the Kubernetes client configuration: {0}; set KUBECONFIG or pass --kubeconfig"
    )]
    Config(String),
    #[error("ApiToken {namespace}/{name} not found; check the name and --namespace")]
    TokenNotFound { namespace: String, name: String },
    #[error("Kubernetes API request failed while {action}: {source}")]
    Kube {
        action: &'static str,
        source: kube::Error,
    },
    #[error("timed out after {0:?} waiting for the operator to act; is it running?")]
    Timeout(Duration),
    #[error(
        "ApiToken {namespace}/{name} already exists; pick another name, or rotate it with \
         `rotate {name} -n {namespace}`"
    )]
    TokenExists { namespace: String, name: String },
    #[error(
        "{verb} request {request:?} was acted on before, and each request value {verb}s once; \
         pass another --request (or none: the current time) to {verb} again"
    )]
    RequestRepeated { verb: &'static str, request: String },
    #[error("ApiToken {namespace}/{name} is not rotated: {reason}: {message}")]
    NotRotated {
        namespace: String,
        name: String,
        reason: String,
        message: String,
    },
    #[error(
        "the operator has not acted on rotate request {request:?} of ApiToken {namespace}/{name} \
         within {timeout:?}; is the operator running? The annotation stays set and is acted on \
         as soon as it runs: check `status {name} -n {namespace}` and the operator's logs"
    )]
    RotateTimeout {
        namespace: String,
        name: String,
        request: String,
        timeout: Duration,
    },
    #[error(
        "the operator has not acted on revoke request {request:?} of ApiToken {namespace}/{name} \
         within {timeout:?}, so its values may still be accepted; is the operator running? The \
         annotation stays set and is acted on as soon as it runs: check \
         `status {name} -n {namespace}` and the operator's logs, or set spec.disabled: true to \
         refuse every value without it"
    )]
    RevokeTimeout {
        namespace: String,
        name: String,
        request: String,
        timeout: Duration,
    },
    #[error("the API server rejected the ApiToken: {0}")]
    Invalid(String),
    #[error(
        "ApiToken {namespace}/{name} was created but is not Ready after {timeout:?}: \
         {conditions}. Its value will be in its Secret once issued: check \
         `status {name} -n {namespace}` and the operator's logs, or delete it with \
         `kubectl delete apitoken {name} -n {namespace}`"
    )]
    NotReady {
        namespace: String,
        name: String,
        timeout: Duration,
        conditions: String,
    },
    #[error(
        "ApiKey {namespace}/{key} not found, so nothing was created; check --key and -n, or \
         create the key first"
    )]
    KeyNotFound { namespace: String, key: String },
    #[error("the operator would give this ApiToken no value, so nothing was created: {0}")]
    WouldBeInvalid(String),
    #[error(
        "{from} ({at}) is in the past, so the ApiToken would never get a value and nothing was \
         created; give a later --expires-at, or a --lifetime"
    )]
    ExpiryPassed {
        at: jiff::Timestamp,
        from: &'static str,
    },
}

/// A client for `kubeconfig` (or the usual KUBECONFIG / in-cluster discovery).
pub async fn client(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Client, CliError> {
    let config = config(kubeconfig, context).await?;
    Client::try_from(config).map_err(|e| CliError::Config(e.to_string()))
}

/// The connection settings from `kubeconfig` (or the usual KUBECONFIG /
/// in-cluster discovery).
pub async fn config(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Config, CliError> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..Default::default()
    };
    Ok(match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|source| CliError::Kubeconfig {
                path: path.display().to_string(),
                source,
            })?;
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| CliError::Config(e.to_string()))?
        }
        None if context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| CliError::Config(e.to_string()))?,
        None => Config::infer()
            .await
            .map_err(|e| CliError::Config(e.to_string()))?,
    })
}

/// Creates or updates both CRDs (server-side apply) and waits until they are Established.
pub async fn install_crds(client: Client, timeout: Duration) -> Result<(), CliError> {
    let api: Api<CustomResourceDefinition> = Api::all(client);
    for crd in crate::api::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply(crate::controller::FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .map_err(|source| CliError::Kube {
            action: "installing the CRDs",
            source,
        })?;
        let established = kube::runtime::wait::conditions::is_crd_established();
        tokio::time::timeout(
            timeout,
            kube::runtime::wait::await_condition(api.clone(), &name, established),
        )
        .await
        .map_err(|_| CliError::Timeout(timeout))?
        .map_err(|e| CliError::Config(e.to_string()))?;
    }
    Ok(())
}
