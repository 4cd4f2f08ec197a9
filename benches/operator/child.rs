//! The verifier as a process of its own: this binary re-executed with `--verifier-child`, on the
//! servers' core, serving an index of tokens this process generated. Only token ids and hashes
//! cross the pipe; the values stay here, for the load. The child counts the heap its index takes
//! (the counting allocator of `main.rs` is its allocator too) and reports it.

use super::*;

/// The argument that makes this binary a verifier child.
pub(crate) const CHILD_ARG: &str = "--verifier-child";

/// A running verifier child.
pub(crate) struct VerifierProcess {
    child: Child,
    pub(crate) addr: SocketAddr,
    /// Heap bytes the child's index allocated for the tokens and still holds.
    pub(crate) index_heap: isize,
    /// The worker threads of the child's runtime (sized to its cores).
    pub(crate) workers: usize,
    /// Up to 1,000 valid values, for the load.
    pub(crate) valid: Vec<String>,
}

impl VerifierProcess {
    /// Starts a child and gives it `n` tokens; returns once it serves them.
    pub(crate) fn start(pinning: Option<&Pinning>, n: usize) -> VerifierProcess {
        use std::io::{BufRead, Write};
        let exe = std::env::current_exe().expect("the benchmark's own path");
        // APIKEY_BENCH_WRAPPER (e.g. "valgrind --tool=callgrind") runs the child under a
        // profiler, as it does the operator in the other sections.
        let wrapper = std::env::var("APIKEY_BENCH_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut c = server_command(pinning, std::path::Path::new(program));
                c.args(words).arg(&exe);
                c
            }
            None => server_command(pinning, &exe),
        };
        let mut child = command
            .arg(CHILD_ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the verifier child");
        let mut valid = Vec::with_capacity(1000);
        {
            let stdin = child.stdin.as_mut().expect("child stdin");
            let mut stdin = std::io::BufWriter::new(stdin);
            for _ in 0..n {
                let id = token::TokenId::generate();
                let value = token::generate(token::TokenKind::Personal, &id);
                writeln!(stdin, "{} {}", id.as_str(), value.hash().as_str()).expect("to child");
                if valid.len() < 1000 {
                    valid.push(value.expose_secret().to_owned());
                }
            }
            writeln!(stdin, "end").expect("to child");
            stdin.flush().expect("to child");
        }
        let stdout = child.stdout.take().expect("child stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the verifier child's answer");
        let words: Vec<&str> = line.split_whitespace().collect();
        let ["ready", addr, heap, workers] = words[..] else {
            panic!(
                "the verifier child answered {line:?}, expected `ready <addr> <heap> <workers>`"
            );
        };
        VerifierProcess {
            addr: addr.parse().expect("child address"),
            index_heap: heap.parse().expect("child heap"),
            workers: workers.parse().expect("child workers"),
            child,
            valid,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes its stdin, which ends it, and waits.
    pub(crate) fn stop(mut self) {
        drop(self.child.stdin.take());
        exit_or_kill(&mut self.child, Duration::from_secs(10));
    }
}

impl Drop for VerifierProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child's side: an emulator for the verifier's watches, the verifier on a runtime whose
/// default size follows the cores it was given, the tokens of stdin in its index; prints
/// `ready <addr> <index heap bytes> <workers>` and serves until stdin closes.
pub(crate) fn verifier_child() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (_emulator, client) = emulator_with_crds(EmulatorConfig::default()).await;
        let cfg = VerifierConfig {
            addr: "127.0.0.1:0".parse().expect("addr"),
            ..Default::default()
        };
        let v = verifier::bind(client, cfg).await.expect("verifier");
        let addr = v.local_addr();
        let index = v.index();
        let readiness = v.readiness();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(v.run(async move {
            let _ = stopped.await;
        }));
        // Fill the index only after the watches' first list: its end drops
        // whatever the list did not contain.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !readiness.ready() {
            assert!(
                Instant::now() < deadline,
                "the verifier's watches never synced"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let lines: Vec<String> = std::io::stdin()
            .lines()
            .map_while(Result::ok)
            .take_while(|l| l != "end")
            .collect();
        let heap_before = heap_live();
        fill_index(&index, &lines);
        let index_heap = heap_live() - heap_before;
        drop(lines);
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        println!("ready {addr} {index_heap} {workers}");
        // Serve until the parent closes stdin.
        let _ = tokio::task::spawn_blocking(|| {
            std::io::copy(&mut std::io::stdin(), &mut std::io::sink())
        })
        .await;
        let _ = stop.send(());
        let _ = served.await;
    });
}

/// One ApiKey `load/key` and a token per `<tokenId> <hash>` line, with names and uids as long
/// as real ones (a uid is 36 characters).
fn fill_index(index: &verifier::watch::SharedIndex, lines: &[String]) {
    let key: ApiKey = serde_json::from_value(json!({
        "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiKey",
        "metadata": {"name": "key", "namespace": "load", "uid": "key-uid"},
        "spec": {"owner": {"kind": "User", "name": "load"}},
        "status": {"principal": "load", "conditions": [{"type": "Ready", "status": "True", "reason": "OwnerResolved", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    }))
    .expect("key");
    let mut idx = index.write().expect("index lock");
    idx.upsert_key(&key);
    for (i, line) in lines.iter().enumerate() {
        let (id, hash) = line.split_once(' ').expect("`<tokenId> <hash>`");
        let t: ApiToken = serde_json::from_value(json!({
            "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken",
            "metadata": {"name": format!("service-token-{i:06}"), "namespace": "load", "uid": format!("{i:08}-0000-4000-8000-000000000000")},
            "spec": {"apiKeyRef": {"name": "key"}},
            "status": {"tokenId": id, "hash": hash}
        }))
        .expect("token");
        idx.upsert_token(&t);
    }
}
