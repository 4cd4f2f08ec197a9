//! `apikey-operator local` as README.md's quickstart runs it: the real binary
//! with `--kubeconfig <tmp>/kubeconfig --apply examples/quickstart.yaml` (and
//! free ports), the machine's kubectl against the kubeconfig it writes, the
//! quickstart token's value read from its Secret and accepted by the
//! verifier's `/auth`, a rotation with the `rotate` subcommand, and a clean
//! exit on SIGTERM with no token value in the log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::local::{LocalProcess, kubectl, kubectl_with_input, start_ready};
use crate::support::ports::free_ports;
use crate::support::process::operator_binary;
use crate::support::temp_dir::temp_dir;
use crate::support::{DEADLINE, eventually, http, secret_value};
use apikey_operator::api::ApiToken;
use apikey_operator::token;
use k8s_openapi::api::core::v1::Secret;

pub(super) const NS: &str = "demo";
pub(super) const TOKEN: &str = "alice-laptop";

pub(super) fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.yaml")
}

pub(super) async fn get_token(kubeconfig: &Path) -> Option<ApiToken> {
    let json = kubectl(
        kubeconfig,
        &["get", "apitoken", TOKEN, "-n", NS, "-o", "json"],
    )
    .await?;
    serde_json::from_str(&json).ok()
}

pub(super) async fn secret_token_value(kubeconfig: &Path) -> Option<String> {
    let json = kubectl(
        kubeconfig,
        &["get", "secret", TOKEN, "-n", NS, "-o", "json"],
    )
    .await?;
    let secret: Secret = serde_json::from_str(&json).ok()?;
    Some(secret_value(&secret, "token"))
}

pub(super) fn is_ready(token: &ApiToken) -> bool {
    token.status.as_ref().is_some_and(|s| {
        s.pending.is_none()
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// `/auth` with `X-API-Key: value`: (status, head).
pub(super) async fn auth(verify: SocketAddr, value: &str) -> (u16, String) {
    let (status, head, _) =
        http::request(verify, "GET", "/auth", &[("X-API-Key", value)], "").await;
    (status, head)
}

/// The non-secret token id and separator stripped: what must never be logged.
fn secret_part(value: &str) -> &str {
    &value[value.len() - 40..]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_in_local_mode_authenticates_and_stops_cleanly() {
    let dir = temp_dir("local-mode");
    let kubeconfig = dir.join("kubeconfig");
    let log = dir.join("local.log");
    let [verify_port, admin_port] = free_ports();
    let verify = SocketAddr::from(([127, 0, 0, 1], verify_port));
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
    let mut local = LocalProcess::spawn(&kubeconfig, &[&quickstart()], verify, admin, &log);

    eventually("the kubeconfig to be written", || {
        local.assert_running(&log);
        let written = std::fs::read_to_string(&kubeconfig)
            .is_ok_and(|k| k.contains("server: https://127.0.0.1:"));
        async move { written.then_some(()) }
    })
    .await;
    // No context on plain HTTP, where kubectl would send no credentials and the
    // request would be anonymous.
    let written = std::fs::read_to_string(&kubeconfig).expect("kubeconfig");
    assert!(!written.contains("server: http://"), "{written}");
    let token = eventually("the quickstart token to be Ready", || async {
        get_token(&kubeconfig).await.filter(is_ready)
    })
    .await;
    let table = kubectl(&kubeconfig, &["get", "apikeys,apitokens", "-n", NS])
        .await
        .expect("kubectl get");
    let row = table
        .lines()
        .find(|l| l.starts_with(&format!("apitoken.apikeys.dev/{TOKEN}")))
        .unwrap_or_else(|| panic!("no {TOKEN} row:\n{table}"));
    assert!(
        row.split_whitespace().nth(2) == Some("True"),
        "READY column: {table}"
    );

    // The value, as README's `kubectl get secret … | base64 -d` reads it.
    let value = secret_token_value(&kubeconfig).await.expect("the Secret");
    assert_eq!(
        Some(token::hash_value(&value).as_str()),
        token.status.as_ref().and_then(|s| s.hash.as_deref()),
        "the Secret holds the recorded value"
    );
    let head = eventually("the verifier to accept the value", || async {
        let (status, head) = auth(verify, &value).await;
        (status == 200).then_some(head)
    })
    .await;
    assert_eq!(
        header(&head, "x-auth-user"),
        Some("alice@example.com"),
        "{head}"
    );
    assert_eq!(header(&head, "x-auth-apitoken"), Some(TOKEN), "{head}");
    assert_eq!(header(&head, "x-auth-namespace"), Some(NS), "{head}");
    assert_eq!(header(&head, "x-auth-apikey"), Some("alice"), "{head}");
    let (status, _) = auth(verify, "akpat_not_a_token").await;
    assert_eq!(status, 401, "a made-up value is rejected");
    let (status, _, body) = http::request(admin, "GET", "/readyz", &[], "").await;
    assert_eq!(status, 200, "admin /readyz: {body}");

    // README: `apikey-operator rotate alice-laptop -n demo --kubeconfig …` gives a
    // fresh value; the quickstart's 1h grace period keeps the old one valid.
    let rotate = {
        let kubeconfig = kubeconfig.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(operator_binary())
                .args(["rotate", TOKEN, "-n", NS, "--request", "r1", "--wait", "30"])
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .env_remove("KUBECONFIG")
                .output()
                .expect("rotate runs")
        })
        .await
        .expect("rotate task")
    };
    assert!(
        rotate.status.success(),
        "rotate failed: {}",
        String::from_utf8_lossy(&rotate.stderr)
    );
    assert!(
        String::from_utf8_lossy(&rotate.stdout)
            .contains(": rotated (r1); a fresh value is in Secret"),
        "{}",
        String::from_utf8_lossy(&rotate.stdout)
    );
    let new_value = eventually("the Secret to hold a new value", || async {
        secret_token_value(&kubeconfig)
            .await
            .filter(|v| *v != value)
    })
    .await;
    eventually("the verifier to accept the new value", || async {
        (auth(verify, &new_value).await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(
        auth(verify, &value).await.0,
        200,
        "the previous value works during its grace period"
    );
    // The rotation's Event, written as events.k8s.io/v1, in kubectl's core/v1 views of it.
    let described = eventually("the rotation's Event in kubectl describe", || async {
        kubectl(&kubeconfig, &["describe", "apitoken", TOKEN, "-n", NS])
            .await
            .filter(|d| d.contains("Rotated"))
    })
    .await;
    let events = described.split("Events:").nth(1).unwrap_or_default();
    assert!(
        events.contains("apikey-operator") && events.contains("on request \"r1\""),
        "{described}"
    );
    let listed = kubectl(&kubeconfig, &["get", "events", "-n", NS, "-o", "name"])
        .await
        .expect("kubectl get events");
    assert!(listed.contains(&format!("event/{TOKEN}.")), "{listed}");

    // SIGTERM: everything stops in order and the process exits 0.
    local.assert_running(&log);
    let sent = Command::new("kill")
        .args(["-TERM", &local.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "SIGTERM sent");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = local.child.try_wait().expect("process status") {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "local did not exit within {DEADLINE:?} of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(status.success(), "local exited with {status}; log:\n{text}");
    assert!(text.contains("local mode ready"), "log:\n{text}");
    assert!(
        !text.contains('\u{1b}'),
        "terminal colour codes in a log file:\n{text}"
    );
    assert!(text.contains("local mode stopped"), "log:\n{text}");
    for v in [&value, &new_value] {
        assert!(
            !text.contains(secret_part(v)),
            "the log contains a token value"
        );
    }
}

#[test]
fn local_help_names_the_documented_flags() {
    let out = Command::new(operator_binary())
        .args(["local", "--help"])
        .output()
        .expect("apikey-operator runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--kubeconfig",
        "--apply",
        "--state",
        "--port",
        "--verify-addr",
        "--admin-addr",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

/// A second `local` whose verifier port is taken fails before it writes its
/// kubeconfig, so the running instance's kubeconfig keeps pointing at a live
/// API server.
#[test]
fn a_busy_port_fails_before_the_kubeconfig_is_written() {
    let dir = temp_dir("local-busy");
    let kubeconfig = dir.join("kubeconfig");
    let running = "# the kubeconfig of an instance that is running\n";
    std::fs::write(&kubeconfig, running).expect("kubeconfig");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port to take");
    let busy = taken.local_addr().expect("its address");
    let [admin_port] = free_ports();
    let out = Command::new(operator_binary())
        .arg("local")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--verify-addr")
        .arg(busy.to_string())
        .arg("--admin-addr")
        .arg(SocketAddr::from(([127, 0, 0, 1], admin_port)).to_string())
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("apikey-operator local runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "local started on a taken port: {stderr}"
    );
    assert!(stderr.contains(&busy.to_string()), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&kubeconfig).expect("kubeconfig"),
        running,
        "the failed start rewrote the kubeconfig"
    );
}

/// README's walk-through for alice in `local`: after the platform admin's role binding her own
/// key goes in, and a key for bob is refused by the operator's admission webhook with the
/// message README quotes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_local_mode_alice_may_create_her_own_key_and_not_bobs() {
    let dir = temp_dir("local-webhook");
    // Ready once the quickstart is applied.
    let (_local, kubeconfig) = start_ready(&dir, &[&quickstart()]).await;
    for args in [
        &["create", "namespace", "team-a"][..],
        &[
            "create",
            "role",
            "apikeys-editor",
            "-n",
            "team-a",
            "--verb=get,list,watch,create,update,patch,delete",
            "--resource=apikeys,apitokens",
        ],
        &[
            "create",
            "rolebinding",
            "alice-apikeys",
            "-n",
            "team-a",
            "--role=apikeys-editor",
            "--user=alice",
        ],
    ] {
        let (ok, out) = kubectl_with_input(&kubeconfig, args, "").await;
        assert!(ok, "kubectl {args:?}: {out}");
    }
    // The operator and the verifier run as the chart's ServiceAccounts with the chart's RBAC
    // (`apikey_operator::rbac`, which tests/operator/manifests/rbac_source.rs holds the chart
    // to): the verifier's may not read Secrets, the operator's may.
    for (account, allowed) in [
        ("apikey-operator-verifier", "no"),
        ("apikey-operator", "yes"),
    ] {
        let user = format!("--as=system:serviceaccount:apikey-system:{account}");
        let args = ["auth", "can-i", "get", "secrets", "-A", &user];
        let (_, out) = kubectl_with_input(&kubeconfig, &args, "").await;
        assert_eq!(out.trim(), allowed, "{account} get secrets");
    }
    let key = |name: &str, owner: &str| {
        format!(
            "apiVersion: apikeys.dev/v1alpha1\nkind: ApiKey\nmetadata: {{name: {name}}}\n\
             spec: {{owner: {{kind: User, name: {owner}}}}}\n"
        )
    };
    let alice_applies = ["--context", "alice", "apply", "-n", "team-a", "-f", "-"];
    let (ok, out) = kubectl_with_input(&kubeconfig, &alice_applies, &key("mine", "alice")).await;
    assert!(ok, "her own key: {out}");
    let (ok, out) = kubectl_with_input(&kubeconfig, &alice_applies, &key("bobs", "bob")).await;
    assert!(!ok, "a key for bob went in: {out}");
    assert!(
        out.contains(
            "admission webhook \"authorization.apikeys.dev\" denied the request: \"alice\" may \
             not create an ApiKey owned by user \"bob\""
        ),
        "{out}"
    );
}

/// What a person at kubectl reads for the two typing mistakes people make most: a duration
/// with a word for a unit, and both kinds of expiry at once. Each answer names the field and
/// says what to write; neither quotes a regular expression or counts properties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_answers_a_mistyped_expiration_in_words() {
    let dir = temp_dir("local-validation");
    let (_local, kubeconfig) = start_ready(&dir, &[&quickstart()]).await;
    let token = |expiration: &str| {
        format!(
            "apiVersion: apikeys.dev/v1alpha1\nkind: ApiToken\nmetadata: {{name: typo}}\n\
             spec: {{apiKeyRef: {{name: alice}}, expiration: {expiration}}}\n"
        )
    };
    for (expiration, says) in [
        (
            "{lifetime: 90days}",
            "spec.expiration.lifetime: Invalid value: \"90days\": use a duration such as 90d, \
             720h or 1h30m",
        ),
        (
            "{lifetime: 90d, expiresAt: \"2030-01-01T00:00:00Z\"}",
            "spec.expiration: Invalid value: set lifetime or expiresAt, not both",
        ),
    ] {
        let (ok, out) = kubectl_with_input(
            &kubeconfig,
            &["apply", "-n", "demo", "-f", "-"],
            &token(expiration),
        )
        .await;
        assert!(!ok, "{expiration} went in: {out}");
        assert!(out.contains(says), "{expiration}: {out}");
        for jargon in ["should match", "(?:", "Too many", "must have at most"] {
            assert!(!out.contains(jargon), "{expiration}: {jargon:?} in {out}");
        }
    }
}
