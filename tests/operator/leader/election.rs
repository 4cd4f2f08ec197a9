//! Leader election with two real processes: `apikey-operator run
//! --leader-elect` twice against one emulator. Only the leader reconciles,
//! both serve the verifier and the admin port, and when the leader is killed
//! (no chance to release the Lease) the other takes over within the lease
//! duration and issues the next token. Stopped by SIGTERM, a leader releases
//! the Lease and exits cleanly.

use super::{LEASE, LEASE_NAME, holder};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::ports::free_ports;
use crate::support::{Cluster, create_key, create_token, token_condition, wait_for};
use apikey_operator::api::ApiToken;
use apikey_operator::api::conditions::READY;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;

const NS: &str = "leader";

struct Replica {
    identity: &'static str,
    child: Child,
    admin: u16,
}

impl Replica {
    fn start(identity: &'static str, kubeconfig: &Path) -> Replica {
        let [admin, verify] = free_ports();
        let child = Command::new(env!("CARGO_BIN_EXE_apikey-operator"))
            .args(["run", "--kubeconfig"])
            .arg(kubeconfig)
            .args(["--webhook-addr", "127.0.0.1:0"])
            .args([
                "--leader-elect",
                "--leader-election-namespace",
                NS,
                "--leader-election-identity",
                identity,
                "--lease-duration",
                "3s",
                "--renew-deadline",
                "2s",
                "--retry-period",
                "250ms",
                "--verify-addr",
                &format!("127.0.0.1:{verify}"),
                "--admin-addr",
                &format!("127.0.0.1:{admin}"),
            ])
            .env(
                "RUST_LOG",
                std::env::var("REPLICA_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("apikey-operator starts");
        Replica {
            identity,
            child,
            admin,
        }
    }

    /// GET on the admin port; `None` while it does not answer.
    async fn admin_get(&self, path: &str) -> Option<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.admin))
            .await
            .ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let code = response.get(9..12)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n")?.1.to_owned();
        Some((code, body))
    }

    /// The value of an unlabelled gauge or counter line on /metrics.
    async fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.admin_get("/metrics").await?;
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_for_holder(leases: &Api<Lease>, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + crate::support::DEADLINE;
    loop {
        if let Some(h) = holder(leases).await.filter(|h| ok(h)) {
            return h;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_the_other_takes_over_when_it_dies() {
    let cluster = Cluster::start(NS).await;
    let dir = crate::support::temp_dir::temp_dir("leader");
    let kubeconfig = dir.join("kubeconfig");
    cluster
        .emulator
        .write_kubeconfig(&kubeconfig)
        .expect("kubeconfig written");

    let mut replicas = vec![
        Replica::start("replica-a", &kubeconfig),
        Replica::start("replica-b", &kubeconfig),
    ];
    let leases: Api<Lease> = cluster.api(NS);
    let first = wait_for_holder(&leases, "a leader", |h| h.starts_with("replica-")).await;

    create_key(&cluster.api(NS), "alice", "User", "alice").await;
    let tokens: Api<ApiToken> = cluster.api(NS);
    create_token(&tokens, "one", "{apiKeyRef: {name: alice}}").await;
    wait_for(&tokens, "one", "Ready", token_condition(READY, "True")).await;

    // Both replicas serve /healthz and become ready; only the leader counts reconciles.
    for replica in &replicas {
        let last = std::sync::Mutex::new(None);
        let ready = tokio::time::timeout(crate::support::DEADLINE, async {
            loop {
                let answer = replica.admin_get("/readyz").await;
                if matches!(answer, Some((200, _))) {
                    return;
                }
                *last.lock().unwrap() = answer;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(
            ready.is_ok(),
            "{} not ready; last /readyz: {:?}",
            replica.identity,
            last.lock().unwrap()
        );
    }
    let (leader, follower): (Vec<&Replica>, Vec<&Replica>) =
        replicas.iter().partition(|r| r.identity == first);
    assert_eq!(leader[0].metric("apikey_operator_leader").await, Some(1.0));
    assert_eq!(
        follower[0].metric("apikey_operator_leader").await,
        Some(0.0)
    );
    let (_, follower_metrics) = follower[0].admin_get("/metrics").await.expect("metrics");
    assert!(
        !follower_metrics.contains("apikey_operator_reconciles_total{"),
        "the follower reconciled: {follower_metrics}"
    );
    let (_, leader_metrics) = leader[0].admin_get("/metrics").await.expect("metrics");
    assert!(
        leader_metrics
            .contains("apikey_operator_reconciles_total{kind=\"ApiToken\",result=\"success\"}")
    );
    assert!(
        leader_metrics.contains("apikey_verifier_requests")
            || leader_metrics.contains("apikey_verifier_index_tokens"),
        "the verifier's metrics are on the admin port too"
    );

    // SIGKILL: the Lease is not released, the other replica must wait it out.
    let index = replicas
        .iter()
        .position(|r| r.identity == first)
        .expect("leader");
    let killed = Instant::now();
    drop(replicas.remove(index));
    let second = wait_for_holder(&leases, "a new leader", |h| h != first).await;
    let took = killed.elapsed();
    assert!(
        took <= LEASE + Duration::from_secs(2),
        "takeover took {took:?}, more than the lease duration ({LEASE:?}) plus slack"
    );
    assert_eq!(second, replicas[0].identity);

    create_token(&tokens, "two", "{apiKeyRef: {name: alice}}").await;
    wait_for(&tokens, "two", "Ready", token_condition(READY, "True")).await;
    assert_eq!(
        replicas[0].metric("apikey_operator_leader").await,
        Some(1.0)
    );
    let lease = leases.get(LEASE_NAME).await.expect("lease");
    assert_eq!(
        lease.spec.and_then(|s| s.lease_transitions),
        Some(1),
        "one takeover"
    );

    // SIGTERM: the leader stops its controllers (on their own thread),
    // releases the Lease and exits cleanly.
    let mut last = replicas.remove(0);
    let sent = Command::new("kill")
        .args(["-TERM", &last.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "SIGTERM sent");
    let deadline = Instant::now() + crate::support::DEADLINE;
    let status = loop {
        if let Some(status) = last.child.try_wait().expect("the replica's status") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the leader did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "the leader exited with {status}");
    assert_eq!(holder(&leases).await, None, "the Lease was released");
}
