//! TLS for the verifier from PEM certificate and key files, reloaded when
//! either file changes: [`ReloadingTls::reload_if_changed`] compares the
//! files' modification times and sizes and is polled every few seconds, so a
//! renewed certificate (cert-manager, a mounted Secret) is used without a
//! restart. A broken pair keeps the previous one in use. With a client CA
//! (`--verify-client-ca`, read once at start) every connection must present
//! a certificate that CA signed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::server::danger::ClientCertVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

/// A certificate or key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "cannot read TLS {what} file {path}: {source}; check --verify-tls-cert/--verify-tls-key"
    )]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("TLS {what} file {path} holds no usable PEM {what}: {detail}")]
    Pem {
        what: &'static str,
        path: String,
        detail: String,
    },
    #[error("the TLS certificate and key do not form a usable pair: {0}")]
    Config(String),
    #[error(
        "cannot use the client CA file {path} (--verify-client-ca): {detail}; give a PEM file \
         with the CA certificates that sign the clients' certificates"
    )]
    ClientCa { path: String, detail: String },
}

/// Checks clients' certificates against the CA certificates in the PEM file `path`.
pub fn client_verifier(path: &Path) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let problem = |detail: String| TlsError::ClientCa {
        path: path.display().to_string(),
        detail,
    };
    let pem = std::fs::read(path).map_err(|e| problem(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.map_err(|e| problem(e.to_string()))?)
            .map_err(|e| problem(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(problem("no CERTIFICATE block found".to_owned()));
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(ring::default_provider()))
        .build()
        .map_err(|e| problem(e.to_string()))
}

/// Identifies one version of a file pair.
type Stamp = [(Option<SystemTime>, u64); 2];

/// The current TLS acceptor, replaced when the files change.
pub struct ReloadingTls {
    cert: PathBuf,
    key: PathBuf,
    clients: Option<Arc<dyn ClientCertVerifier>>,
    current: RwLock<(Arc<TlsAcceptor>, Stamp)>,
}

impl ReloadingTls {
    /// Loads the pair; fails if it is unusable, so a typo stops startup.
    pub fn load(cert: &Path, key: &Path) -> Result<ReloadingTls, TlsError> {
        ReloadingTls::load_for_clients(cert, key, None)
    }

    /// Loads the pair, to accept only clients whose certificate `clients`
    /// accepts (any client when `None`).
    pub fn load_for_clients(
        cert: &Path,
        key: &Path,
        clients: Option<Arc<dyn ClientCertVerifier>>,
    ) -> Result<ReloadingTls, TlsError> {
        let stamp = stamp(cert, key);
        let acceptor = acceptor(cert, key, clients.clone())?;
        Ok(ReloadingTls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            clients,
            current: RwLock::new((Arc::new(acceptor), stamp)),
        })
    }

    /// The acceptor for the next connection.
    pub fn acceptor(&self) -> Arc<TlsAcceptor> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// Reloads if either file changed. `Ok(true)` when a new pair is in use;
    /// on error the previous pair stays in use and the error is returned.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamp(&self.cert, &self.key);
        if now == self.current.read().unwrap_or_else(|e| e.into_inner()).1 {
            return Ok(false);
        }
        let result = acceptor(&self.cert, &self.key, self.clients.clone());
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        // Remember the stamp even on error, so a broken pair is reported once.
        current.1 = now;
        current.0 = Arc::new(result?);
        Ok(true)
    }
}

impl crate::serve::TlsSource for ReloadingTls {
    fn acceptor(&self) -> Arc<TlsAcceptor> {
        ReloadingTls::acceptor(self)
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let one = |path: &Path| match std::fs::metadata(path) {
        Ok(meta) => (meta.modified().ok(), meta.len()),
        Err(_) => (None, 0),
    };
    [one(cert), one(key)]
}

fn acceptor(
    cert: &Path,
    key: &Path,
    clients: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<TlsAcceptor, TlsError> {
    let read = |what: &'static str, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            what,
            path: path.display().to_string(),
            source,
        })
    };
    let cert_pem = read("certificate", cert)?;
    let key_pem = read("key", key)?;
    acceptor_for_clients(&cert_pem, &key_pem, clients).map_err(|problem| match problem {
        PemProblem::Certificate(detail) => TlsError::Pem {
            what: "certificate",
            path: cert.display().to_string(),
            detail,
        },
        PemProblem::Key(detail) => TlsError::Pem {
            what: "key",
            path: key.display().to_string(),
            detail,
        },
        PemProblem::Pair(detail) => TlsError::Config(detail),
    })
}

/// What is wrong with a PEM certificate chain and key.
#[derive(Debug, thiserror::Error)]
pub enum PemProblem {
    #[error("the certificate is not usable PEM: {0}")]
    Certificate(String),
    #[error("the private key is not usable PEM: {0}")]
    Key(String),
    #[error("the certificate and key do not form a usable pair: {0}")]
    Pair(String),
}

/// A TLS acceptor (HTTP/1.1, safe defaults, ring) from a PEM certificate
/// chain and private key.
pub fn acceptor_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsAcceptor, PemProblem> {
    acceptor_for_clients(cert_pem, key_pem, None)
}

/// [`acceptor_from_pem`], accepting only clients whose certificate
/// `clients` accepts (any client when `None`).
pub fn acceptor_for_clients(
    cert_pem: &[u8],
    key_pem: &[u8],
    clients: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<TlsAcceptor, PemProblem> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemProblem::Certificate(e.to_string()))?;
    if certs.is_empty() {
        return Err(PemProblem::Certificate(
            "no CERTIFICATE block found".to_owned(),
        ));
    }
    let key_der =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| PemProblem::Key(e.to_string()))?;
    let builder = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| PemProblem::Pair(e.to_string()))?;
    let builder = match clients {
        Some(clients) => builder.with_client_cert_verifier(clients),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key_der)
        .map_err(|e| PemProblem::Pair(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair,
    };
    use tokio_rustls::rustls::ClientConfig;
    use tokio_rustls::rustls::pki_types::ServerName;

    /// A CA for clients, and a client certificate it signed (PEM chain, PEM key).
    fn client_pki() -> (String, String, String) {
        let ca_key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "clients");
        ca.distinguished_name = name;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_pem = ca.clone().self_signed(&ca_key).expect("ca").pem();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().expect("key");
        let mut client = CertificateParams::new(vec!["kube-apiserver".to_owned()]).expect("params");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = client.signed_by(&key, &issuer).expect("client cert");
        (ca_pem, cert.pem(), key.serialize_pem())
    }

    /// Whether the server accepts a handshake from a client with `identity`.
    async fn server_accepts(
        acceptor: TlsAcceptor,
        ca: &str,
        identity: Option<(&str, &str)>,
    ) -> bool {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(cert.expect("pem")).expect("root");
        }
        let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let config = match identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(cert.as_bytes())
                        .collect::<Result<_, _>>()
                        .expect("chain"),
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key"),
                )
                .expect("client auth"),
            None => builder.with_no_client_auth(),
        };
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move { acceptor.accept(a).await.is_ok() });
        let name = ServerName::try_from("verifier.ns.svc").expect("name");
        // Kept open until the server is done: it writes session tickets after the handshake.
        let _client = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, b)
            .await;
        server.await.expect("server task")
    }

    /// With `--verify-client-ca`, only clients presenting a certificate that CA signed get through
    /// the handshake.
    #[tokio::test]
    async fn a_client_ca_admits_only_the_clients_it_signed() {
        let now = jiff::Timestamp::now();
        let server_ca = crate::certs::Authority::new(now).expect("server ca");
        let serving = server_ca
            .issue(&["verifier.ns.svc".to_owned()], now)
            .expect("serving");
        let (client_ca, cert, key) = client_pki();
        let (_, stranger_cert, stranger_key) = client_pki();
        let path = std::env::temp_dir().join(format!("client-ca-{}.pem", std::process::id()));
        std::fs::write(&path, &client_ca).expect("ca file");
        let clients = client_verifier(&path).expect("a usable CA");
        let _ = std::fs::remove_file(&path);
        let acceptor = || {
            acceptor_for_clients(
                serving.cert_pem.as_bytes(),
                serving.key_pem.as_bytes(),
                Some(clients.clone()),
            )
            .expect("acceptor")
        };
        let ca = &server_ca.cert_pem;
        assert!(server_accepts(acceptor(), ca, Some((&cert, &key))).await);
        assert!(
            !server_accepts(acceptor(), ca, None).await,
            "no certificate"
        );
        assert!(
            !server_accepts(acceptor(), ca, Some((&stranger_cert, &stranger_key))).await,
            "a certificate of another CA"
        );
        assert!(client_verifier(Path::new("/nonexistent/ca.pem")).is_err());
    }
}
