//! The operator binary as a child process, for tests that kill it (SIGKILL)
//! or read what it writes to stderr.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `apikey-operator run` process; killed (SIGKILL) when dropped.
pub struct OperatorProcess {
    child: Child,
    pub log: PathBuf,
}

impl OperatorProcess {
    /// Starts `apikey-operator run --kubeconfig <kubeconfig> --verify-addr 127.0.0.1:0`
    /// (admin and webhook ports 127.0.0.1:0 too) with `env` added, stderr appended to `log`.
    pub fn spawn(kubeconfig: &Path, env: &[(&str, &str)], log: &Path) -> OperatorProcess {
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(log)
            .expect("operator log file");
        let mut command = Command::new(operator_binary());
        command
            .arg("run")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--verify-addr", "127.0.0.1:0"])
            .env_remove("KUBECONFIG")
            .env_remove("RUST_LOG")
            // Tests run in parallel: the default admin (9090) and webhook (9443) ports
            // would be taken by whichever operator started first. `env` may override.
            .env("APIKEY_OPERATOR_ADMIN_ADDR", "127.0.0.1:0")
            .env("APIKEY_OPERATOR_WEBHOOK_ADDR", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("operator binary starts");
        OperatorProcess {
            child,
            log: log.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash or an OOM kill would, and reap the process.
    pub fn kill(mut self) {
        self.kill_now();
    }

    fn kill_now(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running (false after a crash or exit).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process's resident set size in KiB (Linux `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib_of(self.pid())
    }

    /// Number of open file descriptors of the process (Linux `/proc/<pid>/fd`).
    pub fn open_fds(&self) -> Option<usize> {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .ok()
            .map(|d| d.count())
    }

    /// Waits until the log contains `needle` (e.g. a start-up line).
    pub async fn wait_for_log(&mut self, needle: &str, within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(line) = text.lines().rev().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            assert!(
                self.running(),
                "operator exited before logging {needle:?}; log:\n{text}"
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "operator did not log {needle:?} within {within:?}; log:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// The operator binary: `APIKEY_OPERATOR_BIN` if set (a private copy, when
/// the target directory is shared with builds of other branches that replace
/// `target/debug/apikey-operator` while tests run), else the one Cargo built.
pub fn operator_binary() -> PathBuf {
    std::env::var_os("APIKEY_OPERATOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_apikey-operator")))
}

/// Resident set size in KiB of process `pid`.
pub fn rss_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The `addr=` of the verifier's "verifier listening" log line.
pub fn listening_addr(line: &str) -> std::net::SocketAddr {
    let plain = strip_ansi(line);
    plain
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .and_then(|a| a.trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("no addr= in {plain:?}"))
}

/// Removes terminal colour codes from a log line.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
