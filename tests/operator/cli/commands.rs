//! The kubectl-user subcommands as the real binary runs them against an
//! emulator kubeconfig (the controller runs in-process): `create-token`
//! prints the value once on stdout and nowhere else, `rotate` requests and
//! waits for a rotation (`revoke` and the refusals: `requests.rs`), `list` shows key,
//! readiness, expiry and grace, and `status` one token in detail; `list`,
//! `status`, `create-token` and `revoke` default to the kubeconfig context's
//! namespace.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::process::operator_binary;
use crate::support::temp_dir::{TempDir, temp_dir};
use crate::support::*;
use apikey_operator::api::ApiToken;
use apikey_operator::token;
use k8s_openapi::api::core::v1::Secret;

pub(super) const NS: &str = "cli";

/// The binary with `args` and `--kubeconfig kubeconfig`; blocking work off the runtime.
pub(super) async fn run(kubeconfig: &Path, args: &[&str]) -> Output {
    let kubeconfig: PathBuf = kubeconfig.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(operator_binary())
            .args(&args)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .env_remove("KUBECONFIG")
            .env("RUST_LOG", "warn")
            .output()
            .expect("apikey-operator runs")
    })
    .await
    .expect("command task")
}

pub(super) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(super) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Succeeded; its stdout.
pub(super) fn ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed: {}", stderr(out));
    stdout(out)
}

/// An emulator, a controller, a key `ci-bot` and kubeconfigs: one whose
/// context namespace is `default`, one whose context namespace is `NS`.
pub(super) struct Setup {
    pub(super) cluster: Cluster,
    _op: Operator,
    _dir: TempDir,
    pub(super) kubeconfig: PathBuf,
    pub(super) kubeconfig_in_ns: PathBuf,
}

pub(super) async fn setup() -> Setup {
    let cluster = Cluster::start(NS).await;
    let op = cluster.controller();
    create_key(&cluster.api(NS), "ci-bot", "User", "ci@example.com").await;
    let dir = temp_dir("cli");
    let kubeconfig = dir.join("kubeconfig");
    cluster
        .emulator
        .write_kubeconfig(&kubeconfig)
        .expect("kubeconfig");
    let text = std::fs::read_to_string(&kubeconfig).expect("kubeconfig");
    assert!(text.contains("namespace: default"), "{text}");
    let kubeconfig_in_ns = dir.join("kubeconfig-in-ns");
    std::fs::write(
        &kubeconfig_in_ns,
        text.replace("namespace: default", &format!("namespace: {NS}")),
    )
    .expect("kubeconfig");
    Setup {
        cluster,
        _op: op,
        _dir: dir,
        kubeconfig,
        kubeconfig_in_ns,
    }
}

/// The cells of the row of `name` in a table printed by `list`.
pub(super) fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    let line = table
        .lines()
        .find(|l| l.split("   ").next().map(str::trim) == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in:\n{table}"));
    line.split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_token_prints_the_value_once_on_stdout() {
    let s = setup().await;
    let out = run(
        &s.kubeconfig,
        &[
            "create-token",
            "ci-deploy",
            "--key",
            "ci-bot",
            "-n",
            NS,
            "--lifetime",
            "90d",
            "--rotate-every",
            "30d",
            "--grace-period",
            "1h",
            "--display-name",
            "CI deploy",
            "--tag",
            "team=payments",
            "--secret-name",
            "ci-deploy-token",
        ],
    )
    .await;
    let printed = ok(&out, "create-token");
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 1, "stdout is the value and nothing else");
    let value = lines[0];
    assert!(token::parse(value).is_ok(), "a well-formed value");
    assert!(value.starts_with("akpat_"), "a personal token");

    let token = s
        .cluster
        .api::<ApiToken>(NS)
        .get("ci-deploy")
        .await
        .expect("the ApiToken exists");
    let status = token.status.as_ref().expect("status");
    assert_eq!(
        Some(token::hash_value(value).as_str()),
        status.hash.as_deref(),
        "the printed value is the recorded one"
    );
    let secret = s
        .cluster
        .api::<Secret>(NS)
        .get("ci-deploy-token")
        .await
        .expect("the named Secret");
    assert!(
        secret_value(&secret, "token") == value,
        "the named Secret holds the printed value"
    );
    let spec = &token.spec;
    assert_eq!(spec.api_key_ref.name, "ci-bot");
    assert_eq!(spec.display_name.as_deref(), Some("CI deploy"));
    assert_eq!(spec.tags.get("team").map(String::as_str), Some("payments"));
    assert_eq!(
        spec.expiration.as_ref().and_then(|e| e.lifetime.as_deref()),
        Some("90d")
    );
    let rotation = &spec.rotation.as_ref().expect("rotation").schedule;
    assert_eq!(rotation.every.as_deref(), Some("30d"));
    assert_eq!(rotation.grace_period.as_deref(), Some("1h"));

    let note = stderr(&out);
    assert!(note.contains("will not show it again"), "{note}");
    assert!(note.contains(&format!("{NS}/ci-deploy-token")), "{note}");
    assert!(!note.contains(value), "stderr carries the value");

    // The same name again: refused, nothing printed.
    let again = run(
        &s.kubeconfig,
        &["create-token", "ci-deploy", "--key", "ci-bot", "-n", NS],
    )
    .await;
    assert!(!again.status.success());
    assert!(stdout(&again).is_empty());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );

    // Without -n: the kubeconfig context's namespace.
    let out = run(
        &s.kubeconfig_in_ns,
        &["create-token", "from-context", "--key", "ci-bot"],
    )
    .await;
    let value = ok(&out, "create-token without -n");
    let token = s
        .cluster
        .api::<ApiToken>(NS)
        .get("from-context")
        .await
        .expect("created in the context's namespace");
    assert_eq!(
        Some(token::hash_value(value.trim_end()).as_str()),
        token.status.as_ref().and_then(|s| s.hash.as_deref())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_list_and_status_show_what_the_status_says() {
    let s = setup().await;
    let tokens = s.cluster.api::<ApiToken>(NS);
    create_token(
        &tokens,
        "rotated",
        "{apiKeyRef: {name: ci-bot}, rotation: {gracePeriod: 1h}}",
    )
    .await;
    let rotated = ready_token(&tokens, "rotated").await;
    create_token(
        &tokens,
        "dated",
        "{apiKeyRef: {name: ci-bot}, expiration: {lifetime: 90d}}",
    )
    .await;
    ready_token(&tokens, "dated").await;
    create_token(&tokens, "orphan", "{apiKeyRef: {name: nobody}}").await;
    wait_for(
        &s.cluster.api::<ApiToken>(NS),
        "orphan",
        "ApiKeyNotFound",
        token_reason("ApiKeyNotFound"),
    )
    .await;

    // rotate: requests, waits, reports.
    let out = run(
        &s.kubeconfig,
        &["rotate", "rotated", "-n", NS, "--request", "r1"],
    )
    .await;
    let said = ok(&out, "rotate");
    let after = s
        .cluster
        .api::<ApiToken>(NS)
        .get("rotated")
        .await
        .expect("token");
    let status = after.status.as_ref().expect("status");
    assert_eq!(
        status.rotations,
        Some(1),
        "rotated once, before rotate returned"
    );
    assert_eq!(
        status.last_rotation_request.as_deref().map(String::as_str),
        Some("r1")
    );
    assert_ne!(
        status.hash,
        rotated.status.as_ref().and_then(|s| s.hash.clone())
    );
    // What it reports is what the status records: where the value is, until when the old works.
    let grace_end = status.previous.first().map(|p| p.valid_until.0);
    assert_eq!(
        said.trim(),
        format!(
            "apitoken {NS}/rotated: rotated (r1); a fresh value is in Secret {NS}/rotated; \
             earlier values are accepted until {}",
            grace_end.expect("a previous value in grace")
        )
    );
    let value = secret_value(
        &s.cluster
            .api::<Secret>(NS)
            .get("rotated")
            .await
            .expect("Secret"),
        "token",
    );

    // list -n NS.
    let table = ok(&run(&s.kubeconfig, &["list", "-n", NS]).await, "list");
    let header: Vec<&str> = table
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "KEY", "READY", "EXPIRES", "GRACE"],
        "{table}"
    );
    assert_eq!(table.lines().count(), 4, "{table}");
    let r = row(&table, "rotated");
    assert_eq!(&r[..4], ["rotated", "ci-bot", "True", "never"], "{table}");
    assert!(
        r[4].starts_with("1 previous value valid for ") && r[4].ends_with('m'),
        "grace of the rotated value: {table}"
    );
    let d = row(&table, "dated");
    assert_eq!(&d[..3], ["dated", "ci-bot", "True"], "{table}");
    assert_eq!(d[3], "in 90d", "a fresh 90-day value: {table}");
    assert_eq!(d[4], "-", "{table}");
    assert_eq!(
        row(&table, "orphan")[1..],
        ["nobody", "False (ApiKeyNotFound)", "-", "-"],
        "{table}"
    );
    assert!(!table.contains(&value), "list carries a value");

    // The context's namespace without -n; -A adds a NAMESPACE column.
    let from_context = ok(
        &run(&s.kubeconfig_in_ns, &["list"]).await,
        "list without -n",
    );
    assert_eq!(from_context.lines().count(), 4, "{from_context}");
    assert_eq!(
        row(&from_context, "dated")[..3],
        ["dated", "ci-bot", "True"]
    );
    let elsewhere = run(&s.kubeconfig, &["list"]).await;
    assert!(ok(&elsewhere, "list in namespace default").is_empty());
    assert!(
        stderr(&elsewhere).contains("No ApiTokens in namespace default"),
        "{}",
        stderr(&elsewhere)
    );
    let all = ok(&run(&s.kubeconfig, &["list", "-A"]).await, "list -A");
    let header: Vec<&str> = all
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAMESPACE", "NAME", "KEY", "READY", "EXPIRES", "GRACE"],
        "{all}"
    );
    assert_eq!(row(&all, NS).len(), 6, "{all}");

    // status: one token in detail.
    let detail = ok(
        &run(&s.kubeconfig_in_ns, &["status", "rotated"]).await,
        "status",
    );
    let token_id = status.token_id.as_deref().expect("tokenId");
    let field = |label: &str, value: &str| format!("{label:<16}{value}");
    for line in [
        format!("ApiToken {NS}/rotated"),
        field("Key:", "ci-bot"),
        field("Ready:", "True"),
        field("Token id:", token_id),
        field("Secret:", "rotated (key token)"),
        field("Expires:", "never"),
        field("Rotations:", "1"),
        "Conditions:".to_owned(),
    ] {
        assert!(
            detail.lines().any(|l| l.trim_end() == line),
            "{line:?} missing from:\n{detail}"
        );
    }
    assert!(
        detail
            .lines()
            .any(|l| l.starts_with(&field("Grace:", "1 previous value valid for "))),
        "{detail}"
    );
    assert!(
        detail.lines().any(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells.starts_with(&["Ready", "True", "Rotated"])
        }),
        "{detail}"
    );
    assert!(!detail.contains(&value), "status carries a value");

    let missing = run(&s.kubeconfig, &["status", "nope", "-n", NS]).await;
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains(&format!("ApiToken {NS}/nope not found")),
        "{}",
        stderr(&missing)
    );
}

/// The command fails with nothing on stdout, well within its `--wait`; its stderr.
pub(super) async fn fails_at_once(kubeconfig: &Path, args: &[&str]) -> String {
    let started = std::time::Instant::now();
    let out = run(kubeconfig, args).await;
    let said = stderr(&out);
    assert!(!out.status.success(), "{args:?} succeeded: {said}");
    assert!(stdout(&out).is_empty(), "{args:?}: {}", stdout(&out));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{args:?} took {:?} to fail: {said}",
        started.elapsed()
    );
    said
}

/// Every command a message suggests (between backticks) names the namespace.
pub(super) fn assert_hints_name_the_namespace(said: &str) {
    for (i, hint) in said.split('`').enumerate() {
        if i % 2 == 1 {
            assert!(
                hint.contains(&format!(" -n {NS}")),
                "hint `{hint}` without -n {NS} in: {said}"
            );
        }
    }
}

/// `create-token` refuses at once, creating nothing, a token on a missing
/// key or one the operator would never give a value; one that is not Ready
/// in time says what its conditions say and how to delete it, and every
/// command it suggests carries `-n`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_token_refuses_early_and_says_how_to_clean_up() {
    let s = setup().await;
    let tokens = s.cluster.api::<ApiToken>(NS);
    let refused: [(&[&str], &str); 6] = [
        (&["--key", "nobody"], "ApiKey cli/nobody not found"),
        (
            &["--key", "ci-bot", "--lifetime", "9x"],
            "invalid value '9x' for '--lifetime <LIFETIME>'",
        ),
        (&["--key", "ci-bot", "--lifetime", "0s"], "0s is zero"),
        (&["--key", "ci-bot", "--rotate-every", "0m"], "0m is zero"),
        (
            &["--key", "ci-bot", "--expires-at", "2020-01-01T00:00:00Z"],
            "--expires-at (2020-01-01T00:00:00Z) is in the past",
        ),
        (
            &[
                "--key",
                "ci-bot",
                "--lifetime",
                "1h",
                "--renew-before",
                "2h",
            ],
            "spec.rotation.renewBefore (2h) must be shorter than spec.expiration.lifetime (1h)",
        ),
    ];
    for (flags, why) in refused {
        let mut args = vec!["create-token", "doomed", "-n", NS, "--wait", "20"];
        args.extend_from_slice(flags);
        let said = fails_at_once(&s.kubeconfig, &args).await;
        assert!(said.contains(why), "{flags:?}: {said}");
        assert_hints_name_the_namespace(&said);
        assert!(
            tokens.get_opt("doomed").await.expect("get").is_none(),
            "{flags:?}: an ApiToken was created"
        );
    }

    // A key whose ServiceAccount does not exist: its tokens wait, not Ready.
    create_key(&s.cluster.api(NS), "sa-key", "ServiceAccount", "ghost").await;
    let out = run(
        &s.kubeconfig,
        &[
            "create-token",
            "waiting",
            "--key",
            "sa-key",
            "-n",
            NS,
            "--wait",
            "5",
        ],
    )
    .await;
    let said = stderr(&out);
    assert!(!out.status.success(), "{said}");
    assert!(stdout(&out).is_empty(), "{said}");
    assert!(
        said.contains("is not Ready after 5s: its conditions say Ready=False (ApiKeyNotReady: "),
        "{said}"
    );
    assert!(
        said.contains(&format!("`kubectl delete apitoken waiting -n {NS}`")),
        "{said}"
    );
    assert_hints_name_the_namespace(&said);

    let again = run(
        &s.kubeconfig,
        &["create-token", "waiting", "--key", "sa-key", "-n", NS],
    )
    .await;
    let said = stderr(&again);
    assert!(said.contains("already exists"), "{said}");
    assert_hints_name_the_namespace(&said);
}

/// `run` refuses, before it reaches for a cluster, a renamed identity header that would replace
/// one the answer needs (a user name in `Cache-Control` would drop `no-store`) or that two fields
/// would share.
#[test]
fn run_refuses_identity_headers_that_collide() {
    for (setting, says) in [
        ("user=Cache-Control", "give user a header of its own"),
        (
            "uid=X-Auth-User",
            "user and uid would both be sent as x-auth-user",
        ),
    ] {
        let out = Command::new(operator_binary())
            .args([
                "run",
                "--kubeconfig",
                "/nonexistent/kubeconfig",
                "--verify-header",
                setting,
            ])
            .output()
            .expect("run the operator");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{setting}: {said}");
        assert!(said.contains(says), "{setting}: {said}");
    }
}
