//! NGINX with the `server` block of docs/forward-auth.md, as `nginx.rs` runs it: the binary, the
//! configuration (the block as written, with only its listen port, the two addresses and the CA
//! file replaced), the process, and the verifier's certificate made as the chart's operator
//! makes it for the Service the block asks.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apikey_operator::certs::{Authority, CertStore, service_names};
use jiff::Timestamp;

use super::gateway_docs::nginx_example;
use crate::support::DEADLINE;
use crate::support::ports::free_ports;
use crate::support::temp_dir::{TempDir, temp_dir};

/// The `nginx` binary with the auth_request module; `None` (after a note) when there is none and
/// `APIKEY_NGINX_REQUIRED` is not `1`.
pub(super) fn nginx_binary() -> Option<PathBuf> {
    let required = std::env::var("APIKEY_NGINX_REQUIRED").is_ok_and(|v| v == "1");
    // Debian puts it in /usr/sbin, which is not on every user's PATH.
    let found = ["nginx", "/usr/sbin/nginx"]
        .into_iter()
        .find_map(|candidate| Some((candidate, Command::new(candidate).arg("-V").output().ok()?)));
    let missing = match &found {
        None => "nginx is not installed",
        Some((_, out))
            if !String::from_utf8_lossy(&out.stderr)
                .contains("--with-http_auth_request_module") =>
        {
            "this nginx lacks the auth_request module"
        }
        Some((binary, _)) => return Some(PathBuf::from(binary)),
    };
    assert!(
        !required,
        "APIKEY_NGINX_REQUIRED=1 but {missing} (apt-get install nginx)"
    );
    eprintln!("note: skipping the NGINX test: {missing} (apt-get install nginx)");
    None
}

/// `text` with `from`, which must occur exactly once, replaced.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "the nginx example of docs/forward-auth.md must contain `{from}` once: the test replaces it"
    );
    text.replacen(from, to, 1)
}

/// The doc's `proxy_pass https://HOST:PORT/…` to the verifier: `HOST:PORT`.
fn doc_verifier_address(server: &str) -> String {
    let addresses: Vec<&str> = server
        .lines()
        .filter_map(|line| line.trim().strip_prefix("proxy_pass https://"))
        .filter_map(|rest| rest.split_once('/').map(|(address, _)| address))
        .collect();
    let [address] = addresses.as_slice() else {
        panic!(
            "the nginx example of docs/forward-auth.md must ask the verifier over HTTPS once (`proxy_pass https://…/auth`), found {addresses:?}"
        );
    };
    (*address).to_owned()
}

/// The doc's `proxy_ssl_trusted_certificate`: the file NGINX reads the verifier's CA from.
fn doc_trusted_ca(server: &str) -> String {
    let files: Vec<&str> = server
        .lines()
        .filter_map(|line| line.trim().strip_prefix("proxy_ssl_trusted_certificate "))
        .map(|rest| rest.trim_end_matches(';').trim())
        .collect();
    let [file] = files.as_slice() else {
        panic!(
            "the nginx example of docs/forward-auth.md must name the verifier's CA once (`proxy_ssl_trusted_certificate`), found {files:?}"
        );
    };
    (*file).to_owned()
}

/// The verifier's certificate as the chart's operator makes it (its own CA, a certificate for
/// the names of the Service the doc's `proxy_pass` asks), and the CA in a file, as NGINX reads the
/// chart's ConfigMap mounted.
pub(super) struct VerifierCert {
    pub store: Arc<CertStore>,
    pub ca_file: PathBuf,
    _dir: TempDir,
}

pub(super) fn verifier_cert() -> VerifierCert {
    let address = doc_verifier_address(&nginx_example());
    let host = address.split(':').next().unwrap_or_default();
    let [service, namespace, ..] = host.split('.').collect::<Vec<_>>()[..] else {
        panic!(
            "the nginx example's verifier is not a Service name (`<name>.<namespace>.svc`): {host}"
        );
    };
    let now = Timestamp::now();
    let ca = Authority::new(now).expect("CA");
    let serving = ca
        .issue(&service_names(service, namespace), now)
        .expect("certificate");
    let dir = temp_dir("nginx-ca");
    let ca_file = dir.join("ca.crt");
    std::fs::write(&ca_file, &ca.cert_pem).expect("CA file");
    let store = Arc::new(CertStore::new(ca.cert_pem, &serving).expect("certificate store"));
    VerifierCert {
        store,
        ca_file,
        _dir: dir,
    }
}

/// The doc's server block, inside a main configuration that keeps every file in `dir`. Replaced:
/// the listen port, the backend's address, the verifier's address (its name stays in
/// `proxy_ssl_name`, which NGINX checks the certificate against) and the CA file.
fn nginx_conf(
    dir: &Path,
    port: u16,
    backend: SocketAddr,
    verifier: SocketAddr,
    ca_file: &Path,
) -> String {
    let server = nginx_example();
    let (address, ca) = (doc_verifier_address(&server), doc_trusted_ca(&server));
    let server = replace_once(&server, "listen 80;", &format!("listen 127.0.0.1:{port};"));
    let server = replace_once(
        &server,
        "proxy_pass http://backend;",
        &format!("proxy_pass http://{backend};"),
    );
    let server = replace_once(
        &server,
        &format!("proxy_pass https://{address}/"),
        &format!("proxy_pass https://{verifier}/"),
    );
    let server = replace_once(
        &server,
        &format!("proxy_ssl_trusted_certificate {ca};"),
        &format!("proxy_ssl_trusted_certificate {};", ca_file.display()),
    );
    let d = dir.display();
    format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n    \
         fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n\n\
         {server}}}\n"
    )
}

struct Nginx {
    child: Child,
    error_log: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// Starts NGINX on `dir/nginx.conf` and waits until `port` accepts connections. `Err` with
    /// the error log when NGINX exits first.
    fn start(binary: &Path, dir: &Path, port: u16) -> Result<Nginx, String> {
        let error_log = dir.join("error.log");
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(&error_log)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        let mut nginx = Nginx { child, error_log };
        let deadline = Instant::now() + DEADLINE;
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(nginx);
            }
            if let Ok(Some(status)) = nginx.child.try_wait() {
                return Err(format!("nginx exited ({status}):\n{}", nginx.log()));
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {port} within {DEADLINE:?}:\n{}",
                nginx.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.error_log).unwrap_or_default()
    }
}

/// NGINX with the doc's configuration in front of `backend`, asking `verifier` and trusting the
/// CA in `ca_file`.
pub(super) struct Gateway {
    // Before the directory, so NGINX stops before the directory is removed.
    _nginx: Nginx,
    _dir: TempDir,
    pub addr: SocketAddr,
}

pub(super) fn start_gateway(
    binary: &Path,
    backend: SocketAddr,
    verifier: SocketAddr,
    ca_file: &Path,
) -> Gateway {
    let dir = temp_dir("nginx");
    // A port picked free can be taken before NGINX binds it; then it starts again.
    let mut attempt = 1;
    loop {
        let [port] = free_ports();
        let conf = nginx_conf(&dir, port, backend, verifier, ca_file);
        std::fs::write(dir.join("nginx.conf"), conf).expect("conf");
        match Nginx::start(binary, &dir, port) {
            Ok(nginx) => {
                return Gateway {
                    _nginx: nginx,
                    _dir: dir,
                    addr: SocketAddr::from(([127, 0, 0, 1], port)),
                };
            }
            Err(log) if log.contains("Address already in use") && attempt < 3 => attempt += 1,
            Err(log) => panic!("{log}"),
        }
    }
}
