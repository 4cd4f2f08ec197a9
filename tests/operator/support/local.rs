//! `apikey-operator local` as a child process, and the machine's kubectl
//! against the kubeconfig it writes.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::ports::free_ports;
use super::process::operator_binary;
use super::wait::eventually;

/// A `local` process, SIGKILLed if the test ends before it exited.
pub struct LocalProcess {
    pub child: Child,
}

impl LocalProcess {
    /// `local --kubeconfig kubeconfig --apply apply… --verify-addr verify --admin-addr admin`,
    /// its stderr written to `log`.
    pub fn spawn(
        kubeconfig: &Path,
        apply: &[&Path],
        verify: SocketAddr,
        admin: SocketAddr,
        log: &Path,
    ) -> LocalProcess {
        LocalProcess::spawn_with(kubeconfig, apply, verify, admin, log, &[])
    }

    /// `spawn` with `more` arguments for `local` (e.g. `--state FILE`).
    pub fn spawn_with(
        kubeconfig: &Path,
        apply: &[&Path],
        verify: SocketAddr,
        admin: SocketAddr,
        log: &Path,
        more: &[&std::ffi::OsStr],
    ) -> LocalProcess {
        let stderr = std::fs::File::create(log).expect("log file");
        let mut command = Command::new(operator_binary());
        command
            .arg("local")
            .args(more)
            .arg("--kubeconfig")
            .arg(kubeconfig);
        for path in apply {
            command.arg("--apply").arg(path);
        }
        let child = command
            .arg("--verify-addr")
            .arg(verify.to_string())
            .arg("--admin-addr")
            .arg(admin.to_string())
            .env_remove("KUBECONFIG")
            .env_remove("RUST_LOG")
            .env_remove("APIKEY_OPERATOR_VERIFY_ADDR")
            .env_remove("APIKEY_OPERATOR_ADMIN_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("apikey-operator local starts");
        LocalProcess { child }
    }

    /// Fails the test, with the log, if the process exited.
    pub fn assert_running(&mut self, log: &Path) {
        if let Some(status) = self.child.try_wait().expect("process status") {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            panic!("local exited early with {status}; log:\n{text}");
        }
    }
}

/// A `local` on free ports, its kubeconfig and log in `dir`, applying
/// `apply`, once it logged that it is ready; and the kubeconfig's path.
pub async fn start_ready(dir: &Path, apply: &[&Path]) -> (LocalProcess, PathBuf) {
    let kubeconfig = dir.join("kubeconfig");
    let log = dir.join("local.log");
    let [verify_port, admin_port] = free_ports();
    let verify = SocketAddr::from(([127, 0, 0, 1], verify_port));
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
    let mut local = LocalProcess::spawn(&kubeconfig, apply, verify, admin, &log);
    eventually("local mode ready", || {
        local.assert_running(&log);
        let ready = std::fs::read_to_string(&log).is_ok_and(|l| l.contains("local mode ready"));
        async move { ready.then_some(()) }
    })
    .await;
    (local, kubeconfig)
}

impl Drop for LocalProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The machine's kubectl with `kubeconfig`: stdout, or `None` when it fails.
pub async fn kubectl(kubeconfig: &Path, args: &[&str]) -> Option<String> {
    let kubeconfig: PathBuf = kubeconfig.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(&args)
            .output()
            .expect("kubectl runs (is /usr/bin/kubectl installed?)");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .await
    .expect("kubectl task")
}

/// The machine's kubectl with `kubeconfig` and `input` on stdin: (success, stdout and stderr).
pub async fn kubectl_with_input(kubeconfig: &Path, args: &[&str], input: &str) -> (bool, String) {
    let kubeconfig: PathBuf = kubeconfig.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let input = input.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs (is /usr/bin/kubectl installed?)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("manifest written");
        let out = child.wait_with_output().expect("kubectl ends");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    })
    .await
    .expect("kubectl task")
}
