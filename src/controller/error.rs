//! The error of a reconcile: what failed, with a bounded kind for metrics
//! and logs. Every error is retried with the object's backoff (`backoff`).

use super::faults::FaultPoint;

/// Errors of a reconcile. All are retried with per-object exponential backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed while {action}: {source}")]
    Kube {
        action: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("could not serialize {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("object has no {0}; the API server should always set it")]
    MissingField(&'static str),
    #[error("fault injected at {0:?}")]
    InjectedFault(FaultPoint),
}

impl Error {
    /// A bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube {
                source: kube::Error::Api(status),
                ..
            } if status.code == 409 => "conflict",
            Error::Kube { .. } => "api",
            Error::Serialize { .. } => "serialize",
            Error::MissingField(_) => "invalid_object",
            Error::InjectedFault(_) => "injected_fault",
        }
    }
}

impl From<FaultPoint> for Error {
    fn from(point: FaultPoint) -> Self {
        Error::InjectedFault(point)
    }
}

/// Wraps a failed API request with what the reconcile was doing.
pub(super) fn kube_err(action: &'static str) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Kube { action, source }
}
