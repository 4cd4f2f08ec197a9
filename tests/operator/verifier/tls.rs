//! The verifier over HTTPS: serves with the given pair, reloads a changed
//! pair and keeps the old one when the new files are broken. Certificates are
//! made with the `openssl` command; the test is skipped where it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use apikey_operator::verifier::tls::ReloadingTls;
use apikey_operator::verifier::{self, VerifierConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};

use crate::support::temp_dir::temp_dir;

/// A self-signed certificate for `localhost` with common name `cn`.
fn make_cert(dir: &Path, cn: &str) -> Option<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join(format!("{cn}.crt")), dir.join(format!("{cn}.key")));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
        ])
        .args([
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            "subjectAltName=DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .ok()?;
    status.status.success().then_some((cert, key))
}

fn connector(cert: &Path) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for der in CertificateDer::pem_file_iter(cert).expect("pem") {
        roots.add(der.expect("cert")).expect("root");
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn https_get(
    addr: std::net::SocketAddr,
    trust: &Path,
    path: &str,
) -> std::io::Result<String> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = connector(trust).connect(name, tcp).await?;
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut out = String::new();
    tls.read_to_string(&mut out).await?;
    Ok(out)
}

#[test]
fn reload_replaces_a_changed_pair_and_keeps_a_broken_one_out() {
    let dir = temp_dir("reload");
    let (Some((a_cert, a_key)), Some((b_cert, b_key))) =
        (make_cert(&dir, "a"), make_cert(&dir, "bbbbbbbb"))
    else {
        eprintln!("skipped: openssl is not available");
        return;
    };
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::copy(&a_cert, &cert).expect("copy");
    std::fs::copy(&a_key, &key).expect("copy");
    let tls = ReloadingTls::load(&cert, &key).expect("loads");
    assert!(!tls.reload_if_changed().expect("unchanged"));

    std::fs::copy(&b_cert, &cert).expect("copy");
    std::fs::copy(&b_key, &key).expect("copy");
    assert!(tls.reload_if_changed().expect("reloaded"));

    std::fs::write(&key, "not a key").expect("write");
    let err = tls.reload_if_changed().expect_err("broken key");
    assert!(err.to_string().contains("tls.key"), "{err}");
    // Reported once; the previous pair stays in use.
    assert!(!tls.reload_if_changed().expect("unchanged since"));

    assert!(ReloadingTls::load(&dir.join("missing.crt"), &key).is_err());
}

#[tokio::test]
async fn serves_https_with_the_given_pair() {
    let dir = temp_dir("serve");
    let Some((cert, key)) = make_cert(&dir, "a") else {
        eprintln!("skipped: openssl is not available");
        return;
    };
    // No API server: the watches retry in the background, which is fine here.
    let config = kube::Config::new("http://127.0.0.1:9".parse().expect("uri"));
    let client = kube::Client::try_from(config).expect("client");
    let cfg = VerifierConfig {
        addr: "127.0.0.1:0".parse().expect("addr"),
        tls: Some((cert.clone(), key)),
        ..Default::default()
    };
    let bound = verifier::bind(client, cfg).await.expect("bind");
    let addr = bound.local_addr();
    assert_ne!(addr.port(), 0);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bound.run(async {
        let _ = stopped.await;
    }));

    let response = https_get(addr, &cert, "/healthz").await.expect("https");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let response = https_get(addr, &cert, "/readyz").await.expect("https");
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");

    let _ = stop.send(());
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("stops within the drain timeout")
        .expect("task")
        .expect("clean stop");
}
