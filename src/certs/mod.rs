//! The operator's own certificate authorities and serving certificates, for
//! its HTTPS endpoints (the admission webhook, the verifier), made with rcgen
//! (ECDSA P-256). A CA lives ten years and only signs serving certificates,
//! which live one year and are renewed a month before they end, so the CA
//! bundle clients trust changes only with the CA. `secret` shares a pair
//! between replicas, `managed` keeps one renewed, `published` hands the CA
//! bundle to clients through a ConfigMap.

pub mod managed;
pub mod published;
pub mod secret;

use std::sync::{Arc, RwLock};

use jiff::{SignedDuration, Timestamp};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tokio_rustls::TlsAcceptor;

use crate::verifier::tls::{PemProblem, acceptor_from_pem};

/// How long a new CA is valid.
pub const CA_VALIDITY: SignedDuration = SignedDuration::from_hours(10 * 365 * 24);
/// How long a new serving certificate is valid.
pub const SERVING_VALIDITY: SignedDuration = SignedDuration::from_hours(365 * 24);
/// A certificate this close to its end is replaced.
pub const RENEW_BEFORE: SignedDuration = SignedDuration::from_hours(30 * 24);
/// The CA's subject; a serving certificate's issuer names it. Every CA the
/// operator makes has it (each its own key): certificates issued since the
/// first release must keep verifying against the CAs stored then.
const CA_NAME: &str = "apikey-operator admission webhook CA";

/// The DNS names a certificate for the Service `service` in `namespace` is
/// made for: `<service>.<namespace>`, `….svc` and `….svc.cluster.local`.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    ["", ".svc", ".svc.cluster.local"]
        .iter()
        .map(|suffix| format!("{service}.{namespace}{suffix}"))
        .collect()
}

/// Why a certificate could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("a certificate the operator made cannot be used: {0}")]
    Pem(#[from] PemProblem),
    #[error("{0} is outside the range of certificate dates")]
    Date(Timestamp),
}

/// A CA: its certificate and key (PEM), and its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authority {
    pub cert_pem: String,
    pub key_pem: String,
    pub not_after: Timestamp,
}

/// A serving certificate (PEM), the names it is for, and its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Serving {
    pub cert_pem: String,
    pub key_pem: String,
    pub hosts: Vec<String>,
    pub not_after: Timestamp,
}

fn date(at: Timestamp) -> Result<time::OffsetDateTime, CertError> {
    time::OffsetDateTime::from_unix_timestamp(at.as_second()).map_err(|_| CertError::Date(at))
}

/// The CA's parameters: the same each time, so an issuer can be rebuilt from
/// the stored key alone (its name and key identifier are all a signature
/// needs).
fn ca_params(now: Timestamp) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = date(now - SignedDuration::from_hours(1))?;
    params.not_after = date(now + CA_VALIDITY)?;
    Ok(params)
}

impl Authority {
    /// A new CA valid from an hour ago (clock skew) for [`CA_VALIDITY`].
    pub fn new(now: Timestamp) -> Result<Authority, CertError> {
        let key = KeyPair::generate()?;
        let cert = ca_params(now)?.self_signed(&key)?;
        Ok(Authority {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after: now + CA_VALIDITY,
        })
    }

    /// A serving certificate for `hosts` (DNS names or IP addresses), signed
    /// by this CA, ending no later than the CA does.
    pub fn issue(&self, hosts: &[String], now: Timestamp) -> Result<Serving, CertError> {
        let ca_key = KeyPair::from_pem(&self.key_pem)?;
        let issuer = Issuer::new(ca_params(now)?, ca_key);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(hosts.to_vec())?;
        let mut name = DistinguishedName::new();
        name.push(
            DnType::CommonName,
            hosts.first().map_or("apikey-operator", String::as_str),
        );
        params.distinguished_name = name;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let not_after = (now + SERVING_VALIDITY).min(self.not_after);
        params.not_before = date(now - SignedDuration::from_hours(1))?;
        params.not_after = date(not_after)?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Serving {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            hosts: hosts.to_vec(),
            not_after,
        })
    }

    /// Whether this CA must be replaced at `now`: it ends within
    /// [`RENEW_BEFORE`] plus a serving certificate's life.
    pub fn due(&self, now: Timestamp) -> bool {
        self.not_after - RENEW_BEFORE - SERVING_VALIDITY <= now
    }
}

impl Serving {
    /// Whether this certificate must be replaced at `now` to serve `hosts`.
    pub fn due(&self, hosts: &[String], now: Timestamp) -> bool {
        self.hosts != hosts || self.not_after - RENEW_BEFORE <= now
    }
}

/// What an endpoint serves with: the CA bundle its clients must trust and
/// the serving certificate, swapped whole when renewed.
pub struct CertStore {
    current: RwLock<(String, Arc<TlsAcceptor>)>,
}

impl CertStore {
    pub fn new(ca_bundle: String, serving: &Serving) -> Result<CertStore, CertError> {
        let acceptor = acceptor_from_pem(serving.cert_pem.as_bytes(), serving.key_pem.as_bytes())?;
        Ok(CertStore {
            current: RwLock::new((ca_bundle, Arc::new(acceptor))),
        })
    }

    /// Serves with `serving` from now on, trusted through `ca_bundle`.
    pub fn replace(&self, ca_bundle: String, serving: &Serving) -> Result<(), CertError> {
        let acceptor = acceptor_from_pem(serving.cert_pem.as_bytes(), serving.key_pem.as_bytes())?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (ca_bundle, Arc::new(acceptor));
        Ok(())
    }

    /// The PEM CA certificates clients must trust (the webhook's `caBundle`).
    pub fn ca_bundle(&self) -> String {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }
}

impl crate::serve::TlsSource for CertStore {
    fn acceptor(&self) -> Arc<TlsAcceptor> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    fn now() -> Timestamp {
        "2026-12-01T00:00:00Z".parse().expect("time")
    }

    /// A TLS client trusting `ca_pem` completes a handshake with a server
    /// presenting `serving`, under `host`.
    async fn handshake(ca_pem: &str, serving: &Serving, host: &str) -> Result<(), String> {
        let store = CertStore::new(ca_pem.to_owned(), serving).map_err(|e| e.to_string())?;
        let acceptor = crate::serve::TlsSource::acceptor(&store);
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.expect("pem")).expect("root");
        }
        let client = ClientConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move { acceptor.accept(a).await.map(drop) });
        let name = ServerName::try_from(host.to_owned()).expect("name");
        let connected = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, b)
            .await
            .map(drop)
            .map_err(|e| e.to_string());
        let _ = server.await;
        connected
    }

    #[tokio::test]
    async fn a_serving_certificate_is_trusted_through_its_ca_for_its_names_only() {
        let ca = Authority::new(now()).expect("ca");
        let hosts = vec!["hook.apikeys.svc".to_owned(), "127.0.0.1".to_owned()];
        let serving = ca.issue(&hosts, now()).expect("serving");
        // The current time is real here: rustls checks validity against the system clock.
        let ca = Authority::new(Timestamp::now()).expect("ca");
        let serving_now = ca.issue(&hosts, Timestamp::now()).expect("serving");
        handshake(&ca.cert_pem, &serving_now, "hook.apikeys.svc")
            .await
            .expect("trusted for its DNS name");
        handshake(&ca.cert_pem, &serving_now, "127.0.0.1")
            .await
            .expect("trusted for its IP address");
        let other = handshake(&ca.cert_pem, &serving_now, "other.svc").await;
        assert!(other.is_err(), "not for another name");
        let stranger = Authority::new(Timestamp::now()).expect("another ca");
        let untrusted = handshake(&stranger.cert_pem, &serving_now, "hook.apikeys.svc").await;
        assert!(untrusted.is_err(), "not through another CA");
        assert_eq!(serving.not_after, now() + SERVING_VALIDITY);
    }

    #[test]
    fn certificates_are_renewed_a_month_before_they_end_or_when_the_names_change() {
        let ca = Authority::new(now()).expect("ca");
        let hosts = vec!["hook.ns.svc".to_owned()];
        let serving = ca.issue(&hosts, now()).expect("serving");
        assert!(!serving.due(&hosts, now()));
        assert!(!serving.due(
            &hosts,
            serving.not_after - RENEW_BEFORE - SignedDuration::from_secs(1)
        ));
        assert!(serving.due(&hosts, serving.not_after - RENEW_BEFORE));
        assert!(serving.due(&["other.ns.svc".to_owned()], now()));
        // The CA is replaced while it can still sign a full year's certificate.
        assert!(!ca.due(now()));
        assert!(ca.due(ca.not_after - SERVING_VALIDITY - RENEW_BEFORE));
        // A serving certificate never outlives its CA.
        let late = ca.not_after - SignedDuration::from_hours(24);
        assert_eq!(
            ca.issue(&hosts, late).expect("late").not_after,
            ca.not_after
        );
    }
}
