//! A CA and serving certificate the operator makes and keeps renewed itself:
//! shared by every replica through a Secret (`secret::ensure`), or kept in
//! memory by a single process. The admission webhook serves with one; the
//! verifier's is made here for a verifier Deployment that mounts the Secret.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::secret::{self, SecretError};
use super::{Authority, CertError, CertStore, Serving};

/// How often a managed certificate is checked for renewal (and the shared
/// Secret re-read, to pick up another replica's renewal).
pub const RENEW_CHECK_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// Why a managed certificate could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum ManagedError {
    #[error(
        "cannot read or write the certificate Secret {secret}: {source}; check that the \
         operator may get, create and update it"
    )]
    Secret { secret: String, source: kube::Error },
    #[error(transparent)]
    Cert(#[from] CertError),
}

/// Where the CA lives.
enum Keeper {
    /// The Secret every replica reads and renews.
    Secret {
        api: Box<Api<Secret>>,
        namespace: String,
        name: String,
    },
    /// This process only: the CA and the serving certificate made from it.
    Memory(Box<(Authority, Serving)>),
}

/// A certificate for `hosts`, served from [`ManagedCert::store`].
pub struct ManagedCert {
    store: Arc<CertStore>,
    hosts: Vec<String>,
    keeper: Keeper,
}

impl ManagedCert {
    /// Reads (or makes) the pair in the Secret `namespace/name`, or makes one
    /// in memory without a Secret.
    pub async fn load(
        client: &Client,
        hosts: Vec<String>,
        secret: Option<(String, String)>,
        now: Timestamp,
    ) -> Result<ManagedCert, ManagedError> {
        let (store, keeper) = match secret {
            Some((namespace, name)) => {
                let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
                let pair = secret::ensure(&api, &name, &hosts, now)
                    .await
                    .map_err(|e| shown(e, &namespace, &name))?;
                let store = CertStore::new(pair.ca_bundle, &pair.serving)?;
                (
                    store,
                    Keeper::Secret {
                        api: Box::new(api),
                        namespace,
                        name,
                    },
                )
            }
            None => return Self::in_memory(hosts, now),
        };
        Ok(ManagedCert {
            store: Arc::new(store),
            hosts,
            keeper,
        })
    }

    /// A CA and a serving certificate for `hosts` kept in this process only.
    fn in_memory(hosts: Vec<String>, now: Timestamp) -> Result<ManagedCert, ManagedError> {
        let authority = Authority::new(now)?;
        let serving = authority.issue(&hosts, now)?;
        let store = CertStore::new(authority.cert_pem.clone(), &serving)?;
        Ok(ManagedCert {
            store: Arc::new(store),
            hosts,
            keeper: Keeper::Memory(Box::new((authority, serving))),
        })
    }

    /// What to serve with; renewals replace its contents.
    pub fn store(&self) -> Arc<CertStore> {
        self.store.clone()
    }

    /// Renews what is due at `now` (or takes another replica's renewal).
    pub async fn renew(&mut self, now: Timestamp) -> Result<(), ManagedError> {
        match &mut self.keeper {
            Keeper::Secret {
                api,
                namespace,
                name,
            } => {
                let pair = secret::ensure(api, name, &self.hosts, now)
                    .await
                    .map_err(|e| shown(e, namespace, name))?;
                self.store.replace(pair.ca_bundle, &pair.serving)?;
            }
            Keeper::Memory(pair) => {
                let (authority, serving) = &mut **pair;
                let new_ca = authority.due(now);
                if new_ca {
                    *authority = Authority::new(now)?;
                }
                if new_ca || serving.due(&self.hosts, now) {
                    *serving = authority.issue(&self.hosts, now)?;
                    self.store.replace(authority.cert_pem.clone(), serving)?;
                }
            }
        }
        Ok(())
    }

    /// Renews every [`RENEW_CHECK_INTERVAL`], forever; `renewed` is told
    /// when the CA bundle changed. `what` names the certificate in logs.
    pub async fn keep_renewed(mut self, what: &'static str, renewed: Arc<Notify>) {
        let mut ticks = tokio::time::interval(RENEW_CHECK_INTERVAL);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let before = self.store.ca_bundle();
            match self.renew(Timestamp::now()).await {
                Ok(()) if self.store.ca_bundle() != before => {
                    info!(certificate = what, "CA renewed");
                    renewed.notify_one();
                }
                Ok(()) => {}
                Err(err) => {
                    warn!(certificate = what, error = %err, "renewing the certificate failed; retrying later")
                }
            }
        }
    }
}

fn shown(e: SecretError, namespace: &str, name: &str) -> ManagedError {
    match e {
        SecretError::Api(source) => ManagedError::Secret {
            secret: format!("{namespace}/{name}"),
            source,
        },
        SecretError::Cert(e) => ManagedError::Cert(e),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use jiff::{SignedDuration, Timestamp};

    use super::ManagedCert;
    use crate::serve::TlsSource;

    /// In memory, a check renews only what is due: the serving certificate a month before
    /// it ends (the CA with it when the CA is due), not on every check.
    #[tokio::test]
    async fn an_in_memory_certificate_is_replaced_only_when_due() {
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let mut cert =
            ManagedCert::in_memory(vec!["localhost".into()], start).expect("certificate");
        let store = cert.store();
        let (acceptor, ca) = (store.acceptor(), store.ca_bundle());
        let later = start + SignedDuration::from_hours(24 * 30);
        cert.renew(later).await.expect("renew");
        assert!(Arc::ptr_eq(&acceptor, &store.acceptor()), "re-issued early");
        let near_end = start + SignedDuration::from_hours(24 * 340);
        cert.renew(near_end).await.expect("renew");
        assert!(!Arc::ptr_eq(&acceptor, &store.acceptor()), "not renewed");
        assert_eq!(store.ca_bundle(), ca, "the CA lives longer");
    }
}
