//! `apikey-operator local --state FILE` across a `kill -9`: every answered write is on disk,
//! so the quickstart token, its Secret and the value in it come back after a restart with the
//! same file and the same value authenticates. The state files are private (0600) and a state
//! file others may read is refused with the `chmod 600` that fixes it.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::local_mode::{NS, TOKEN, auth, get_token, is_ready, quickstart, secret_token_value};
use crate::support::eventually;
use crate::support::local::LocalProcess;
use crate::support::ports::free_ports;
use crate::support::process::operator_binary;
use crate::support::temp_dir::temp_dir;
use apikey_operator::token;

fn addrs() -> (SocketAddr, SocketAddr) {
    let [verify, admin] = free_ports();
    (
        SocketAddr::from(([127, 0, 0, 1], verify)),
        SocketAddr::from(([127, 0, 0, 1], admin)),
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("state file")
        .permissions()
        .mode()
        & 0o777
}

/// Starts `local --state state` and waits for the quickstart token to be Ready with a value
/// the verifier accepts: (process, verifier address, value).
async fn ready_local(dir: &Path, state: &Path, log: &Path) -> (LocalProcess, SocketAddr, String) {
    let kubeconfig = dir.join("kubeconfig");
    let _ = std::fs::remove_file(&kubeconfig);
    let (verify, admin) = addrs();
    let mut local = LocalProcess::spawn_with(
        &kubeconfig,
        &[&quickstart()],
        verify,
        admin,
        log,
        &["--state".as_ref(), state.as_os_str()],
    );
    eventually("the kubeconfig to be written", || {
        local.assert_running(log);
        let written = std::fs::read_to_string(&kubeconfig).is_ok_and(|k| k.contains("server:"));
        async move { written.then_some(()) }
    })
    .await;
    let token = eventually("the quickstart token to be Ready", || async {
        get_token(&kubeconfig).await.filter(is_ready)
    })
    .await;
    let value = secret_token_value(&kubeconfig).await.expect("the Secret");
    assert_eq!(
        Some(token::hash_value(&value).as_str()),
        token.status.as_ref().and_then(|s| s.hash.as_deref()),
        "the Secret holds the recorded value"
    );
    eventually("the verifier to accept the value", || async {
        (auth(verify, &value).await.0 == 200).then_some(())
    })
    .await;
    (local, verify, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_and_its_value_survive_kill_9_of_local() {
    let dir = temp_dir("local-state");
    let state = dir.join("state.json");
    let journal = PathBuf::from(format!("{}.journal", state.display()));
    let log = dir.join("local.log");
    let (mut local, _, value) = ready_local(&dir, &state, &log).await;
    assert_eq!(mode(&state), 0o600);
    assert_eq!(mode(&journal), 0o600);
    assert!(
        std::fs::metadata(&journal).expect("journal").len() > 0,
        "the changes since start are in the journal"
    );
    // SIGKILL: nothing runs on the way out.
    local.child.kill().expect("kill -9");
    local.child.wait().expect("local ends");

    let (mut again, verify, value_after) = ready_local(&dir, &state, &dir.join("again.log")).await;
    assert_eq!(value_after, value, "the same value, not a reissued one");
    assert_eq!(
        auth(verify, &value).await.0,
        200,
        "{TOKEN} in {NS} authenticates"
    );
    let text = std::fs::read_to_string(dir.join("again.log")).expect("log");
    assert!(
        !text.contains("value issued"),
        "the value was issued again:\n{text}"
    );
    again.child.kill().expect("kill -9");
    again.child.wait().expect("local ends");

    // Others may read it: refused before anything starts.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (verify, admin) = addrs();
    let out = Command::new(operator_binary())
        .arg("local")
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .arg("--state")
        .arg(&state)
        .arg("--verify-addr")
        .arg(verify.to_string())
        .arg("--admin-addr")
        .arg(admin.to_string())
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("apikey-operator local runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started with a 0644 state file: {stderr}"
    );
    assert!(
        stderr.contains(&format!("chmod 600 {}", state.display())),
        "{stderr}"
    );
}
