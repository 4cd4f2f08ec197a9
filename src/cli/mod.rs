//! The command line: `args` holds the clap types, `commands` runs each
//! subcommand; `run` wires the operator (for `run` and `local`), `local`
//! adds the embedded API server (feature `local`), `apply` applies manifest
//! files, `tokens` serves kubectl users (list, status, create-token). Here:
//! building a client from a kubeconfig, requesting a rotation or a
//! revocation, installing the CRDs.

pub mod apply;
pub mod args;
pub mod commands;
#[cfg(feature = "local")]
pub mod local;
pub mod run;
pub mod tokens;

use std::path::Path;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::json;

use crate::api::{ApiToken, REVOKE_ANNOTATION, ROTATE_ANNOTATION};
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
        "ApiToken {namespace}/{name} already exists; pick another name, or rotate it with `rotate {name}`"
    )]
    TokenExists { namespace: String, name: String },
    #[error(
        "revoke request {request:?} was acted on before, and each request value revokes once; \
         pass another --request (or none: the current time) to revoke again"
    )]
    RevokeRepeated { request: String },
    #[error(
        "the operator has not acted on revoke request {request:?} of ApiToken {namespace}/{name} \
         within {timeout:?}, so its values may still be accepted; is the operator running? The \
         annotation stays set and is acted on as soon as it runs: check `status {name}` and the \
         operator's logs, or set spec.disabled: true to refuse every value without it"
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
        "ApiToken {namespace}/{name} was created but is not Ready after {timeout:?} ({reason}); check `status {name}` and the operator's logs; its value will be in its Secret once issued"
    )]
    NotReady {
        namespace: String,
        name: String,
        timeout: Duration,
        reason: String,
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

/// Requests a rotation by setting the rotate annotation to `request`; with
/// `wait`, waits until the operator recorded it in status.
pub async fn rotate(
    client: Client,
    namespace: &str,
    name: &str,
    request: &str,
    wait: Option<Duration>,
) -> Result<(), CliError> {
    let api: Api<ApiToken> = Api::namespaced(client, namespace);
    let patch = json!({ "metadata": { "annotations": { ROTATE_ANNOTATION: request } } });
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {
            return Err(CliError::TokenNotFound {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            });
        }
        Err(source) => {
            return Err(CliError::Kube {
                action: "setting the rotate annotation",
                source,
            });
        }
    }
    let Some(timeout) = wait else { return Ok(()) };
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let token = api.get(name).await.map_err(|source| CliError::Kube {
            action: "reading the ApiToken",
            source,
        })?;
        let seen = token
            .status
            .as_ref()
            .and_then(|s| s.last_rotation_request.as_deref().map(String::as_str));
        if seen == Some(request) && token.status.as_ref().is_some_and(|s| s.pending.is_none()) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CliError::Timeout(timeout));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What a revocation came to, once the operator acted on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revoked {
    /// Every earlier value is refused; a fresh value is in this Secret.
    Reissued { secret: String },
    /// Every earlier value is refused, and no value is issued for now: the
    /// token's Ready condition says why (disabled, expired, key not Ready, ...).
    NoValue { reason: String, message: String },
}

/// Requests a revocation by setting the revoke annotation to `request`;
/// with `wait`, waits until the operator acted on it and says what it came
/// to (`None` without `wait`).
pub async fn revoke(
    client: Client,
    namespace: &str,
    name: &str,
    request: &str,
    wait: Option<Duration>,
) -> Result<Option<Revoked>, CliError> {
    let api: Api<ApiToken> = Api::namespaced(client, namespace);
    let not_found = || CliError::TokenNotFound {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    };
    let token = api
        .get_opt(name)
        .await
        .map_err(|source| CliError::Kube {
            action: "reading the ApiToken",
            source,
        })?
        .ok_or_else(not_found)?;
    // Reporting an old request as done would tell a user a value is
    // revoked when nothing happened.
    let acted_on = token
        .status
        .as_ref()
        .and_then(|s| s.last_revocation_request.as_deref());
    if acted_on.is_some_and(|r| r == request) {
        return Err(CliError::RevokeRepeated {
            request: request.to_owned(),
        });
    }
    let patch = json!({ "metadata": { "annotations": { REVOKE_ANNOTATION: request } } });
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Err(not_found()),
        Err(source) => {
            return Err(CliError::Kube {
                action: "setting the revoke annotation",
                source,
            });
        }
    }
    let Some(timeout) = wait else { return Ok(None) };
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let token = api.get(name).await.map_err(|source| CliError::Kube {
            action: "reading the ApiToken",
            source,
        })?;
        if let Some(done) = token.status.as_ref().and_then(|s| revoked(s, request)) {
            return Ok(Some(done));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CliError::RevokeTimeout {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                request: request.to_owned(),
                timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the revocation `request` came to, once `status` records it done.
fn revoked(status: &crate::api::ApiTokenStatus, request: &str) -> Option<Revoked> {
    let acted_on = status
        .last_revocation_request
        .as_deref()
        .map(String::as_str);
    if acted_on != Some(request) || status.pending.is_some() {
        return None;
    }
    if let (Some(_), Some(secret)) = (&status.hash, &status.secret_name) {
        return Some(Revoked::Reissued {
            secret: secret.clone(),
        });
    }
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == crate::api::conditions::READY);
    Some(Revoked::NoValue {
        reason: ready.map(|c| c.reason.clone()).unwrap_or_default(),
        message: ready.map(|c| c.message.clone()).unwrap_or_default(),
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
