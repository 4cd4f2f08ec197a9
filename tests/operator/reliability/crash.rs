//! Crash safety: the operator *process* is SIGKILLed at
//! random points while it issues and rotates values, and started again. The
//! emulator and an in-process verifier stay up throughout, so we can check,
//! while it happens and afterwards, that
//! - every token converges to Ready with its Secret's value hashing to `status.hash`,
//! - the verifier never accepts a value whose hash status did not record
//!   (abandoned pending values, tampered Secrets),
//! - no token rotates more than once per rotate request, and restart targets
//!   are rolled at most once per new value.
//!
//! 100 trials by default, 50 in each of two worlds run at once; `APIKEY_SOAK=1`
//! runs 1000 (see docs/reliability.md). `APIKEY_SEED=<n>` replays the sequence
//! of actions of both worlds (not the kill timing).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::process::OperatorProcess;
use crate::support::temp_dir::temp_dir;
use crate::support::*;
use apikey_operator::api::{ApiToken, ROTATE_ANNOTATION};
use apikey_operator::token::{self, TokenId, TokenKind};
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

const NS: &str = "crash";
const RESTART_TARGET: &str = "app";

/// Everything the background observers learned while the trials ran.
#[derive(Default)]
struct Observed {
    /// Every hash status ever recorded as a token's current or previous value, by token.
    recorded: HashMap<String, Vec<String>>,
    /// Consecutive distinct values of each restart annotation on the Deployment.
    rolls: HashMap<String, Vec<String>>,
    /// Hashes the verifier accepted before the recorder saw them; checked at the end.
    unconfirmed: HashSet<(String, String)>,
    violations: Vec<String>,
    forged: Vec<String>,
}

impl Observed {
    fn is_recorded(&self, token: &str, hash: &str) -> bool {
        self.recorded
            .get(token)
            .is_some_and(|hashes| hashes.iter().any(|h| h == hash))
    }
}

type Shared = Arc<Mutex<Observed>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Observed> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records every hash any ApiToken status carried (current or previous).
async fn record_hashes(client: Client, shared: Shared) {
    let api: kube::Api<ApiToken> = kube::Api::namespaced(client, NS);
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        let (Ok(Event::Apply(token)) | Ok(Event::InitApply(token))) = event else {
            continue;
        };
        let Some(status) = token.status.as_ref() else {
            continue;
        };
        let mut observed = lock(&shared);
        let hashes = observed.recorded.entry(token.name_any()).or_default();
        for hash in status
            .hash
            .iter()
            .chain(status.previous.iter().map(|p| &p.hash))
        {
            if !hashes.contains(hash) {
                hashes.push(hash.clone());
            }
        }
    }
}

/// Records each change of a restart annotation on the restart target.
async fn record_rolls(client: Client, shared: Shared) {
    let api: kube::Api<Deployment> = kube::Api::namespaced(client, NS);
    let config = watcher::Config::default().fields(&format!("metadata.name={RESTART_TARGET}"));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        let (Ok(Event::Apply(d)) | Ok(Event::InitApply(d))) = event else {
            continue;
        };
        let annotations = d
            .spec
            .and_then(|s| s.template.metadata)
            .and_then(|m| m.annotations)
            .unwrap_or_default();
        let mut observed = lock(&shared);
        for (key, value) in annotations {
            let Some(token) = key.strip_prefix("token-hash.apikeys.dev/") else {
                continue;
            };
            let seq = observed.rolls.entry(token.to_owned()).or_default();
            if seq.last() != Some(&value) {
                seq.push(value);
            }
        }
    }
}

/// Asks the verifier about every value found in a Secret (and every forged
/// value) over and over; an accepted value must have been recorded in status.
async fn probe(
    client: Client,
    verifier: Arc<InProcessVerifier>,
    shared: Shared,
    stop: Arc<AtomicBool>,
    probes: Arc<AtomicU64>,
) {
    let secrets: kube::Api<Secret> = kube::Api::namespaced(client.clone(), NS);
    let tokens: kube::Api<ApiToken> = kube::Api::namespaced(client, NS);
    let managed = ListParams::default().labels("app.kubernetes.io/managed-by=apikey-operator");
    while !stop.load(Ordering::Relaxed) {
        let mut values: Vec<String> = match secrets.list(&managed).await {
            Ok(list) => list
                .items
                .iter()
                .filter_map(|s| s.data.as_ref()?.get("token"))
                .filter_map(|v| String::from_utf8(v.0.clone()).ok())
                .collect(),
            Err(_) => Vec::new(),
        };
        let forged = lock(&shared).forged.clone();
        values.extend(forged.iter().cloned());
        for value in values {
            probes.fetch_add(1, Ordering::Relaxed);
            let Ok(identity) = verifier.verify(&value) else {
                continue;
            };
            let hash = token::hash_value(&value).as_str().to_owned();
            if forged.contains(&value) {
                lock(&shared).violations.push(format!(
                    "a forged value of {} was accepted",
                    identity.api_token
                ));
                continue;
            }
            if lock(&shared).is_recorded(&identity.api_token, &hash) {
                continue;
            }
            // The verifier's watch may be ahead of the recorder's: ask the API.
            let in_status = tokens
                .get(&identity.api_token)
                .await
                .ok()
                .and_then(|t| t.status)
                .is_some_and(|s| {
                    s.hash.as_deref() == Some(&hash) || s.previous.iter().any(|p| p.hash == hash)
                });
            if !in_status {
                lock(&shared)
                    .unconfirmed
                    .insert((identity.api_token.clone(), hash));
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

struct World {
    cluster: Cluster,
    kubeconfig: PathBuf,
    log: PathBuf,
    shared: Shared,
    /// Rotate requests made per token, and how many fell in the current epoch
    /// (between two convergence checks) while the token already had a value.
    triggers: BTreeMap<String, u32>,
    epoch_triggers: BTreeMap<String, (u32, bool)>,
    /// `status.rotations` at the last convergence check.
    rotations_at_check: BTreeMap<String, i64>,
    names: Vec<String>,
    /// What was done to each token, for failure messages.
    history: BTreeMap<String, Vec<String>>,
    trial: usize,
}

/// What a trial does to the cluster while the operator starts or runs.
enum Action {
    Create(String),
    Rotate(Vec<String>, String),
    DeleteSecret(String),
    Tamper(String),
}

impl World {
    async fn act(&mut self, action: &Action, rng: &mut StdRng) {
        let (what, names) = match action {
            Action::Create(name) => ("create", vec![name.clone()]),
            Action::Rotate(names, _) => ("rotate", names.clone()),
            Action::DeleteSecret(name) => ("delete Secret", vec![name.clone()]),
            Action::Tamper(name) => ("tamper", vec![name.clone()]),
        };
        for name in names {
            self.history
                .entry(name)
                .or_default()
                .push(format!("trial {}: {what}", self.trial));
        }
        match action {
            Action::Create(name) => self.create_token(name, rng).await,
            Action::Rotate(names, request) => {
                for name in names {
                    self.request_rotation(name, request).await;
                }
            }
            Action::DeleteSecret(name) => self.delete_secret(name).await,
            Action::Tamper(name) => self.tamper(name).await,
        }
    }

    fn tokens(&self) -> kube::Api<ApiToken> {
        self.cluster.api(NS)
    }

    fn spawn(&self) -> OperatorProcess {
        OperatorProcess::spawn(&self.kubeconfig, &[], &self.log)
    }

    async fn create_token(&mut self, name: &str, rng: &mut StdRng) {
        let spec = match rng.random_range(0..4) {
            0 => "{apiKeyRef: {name: k}}".to_owned(),
            1 => "{apiKeyRef: {name: k}, rotation: {gracePeriod: 1h}}".to_owned(),
            2 => format!(
                "{{apiKeyRef: {{name: k}}, rotation: {{restartTargets: [{{kind: Deployment, name: {RESTART_TARGET}}}]}}}}"
            ),
            _ => format!(
                "{{apiKeyRef: {{name: k}}, expiration: {{lifetime: 30d}}, rotation: {{gracePeriod: 2s, restartTargets: [{{kind: Deployment, name: {RESTART_TARGET}}}]}}}}"
            ),
        };
        create_token(&self.tokens(), name, &spec).await;
        self.names.push(name.to_owned());
    }

    async fn request_rotation(&mut self, name: &str, request: &str) {
        let had_value = self
            .tokens()
            .get(name)
            .await
            .expect("token")
            .status
            .is_some_and(|s| s.hash.is_some());
        let patch = json!({"metadata": {"annotations": {ROTATE_ANNOTATION: request}}});
        self.tokens()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("rotate annotation");
        *self.triggers.entry(name.to_owned()).or_default() += 1;
        let epoch = self.epoch_triggers.entry(name.to_owned()).or_default();
        epoch.0 += 1;
        epoch.1 |= had_value;
    }

    async fn delete_secret(&mut self, name: &str) {
        let _ = self
            .cluster
            .api::<Secret>(NS)
            .delete(name, &DeleteParams::default())
            .await;
    }

    /// Writes a well-formed value for the token's real id into its Secret, as
    /// someone with write access to Secrets could.
    async fn tamper(&mut self, name: &str) {
        let Some(id) = self
            .tokens()
            .get(name)
            .await
            .ok()
            .and_then(|t| t.status?.token_id)
            .and_then(|id| TokenId::parse(&id).ok())
        else {
            return;
        };
        let forged = token::generate(TokenKind::Personal, &id);
        let value = forged.expose_secret().to_owned();
        lock(&self.shared).forged.push(value.clone());
        let patch = json!({"data": {"token": ByteString(value.into_bytes())}});
        let _ = self
            .cluster
            .api::<Secret>(NS)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await;
    }

    /// Waits until every token is Ready with its value in its Secret, every
    /// rotate request consumed, then checks the rotation counts of this epoch.
    async fn converged(&mut self, verifier: &InProcessVerifier) {
        for name in self.names.clone() {
            let tokens = self.tokens();
            let secrets = self.cluster.api::<Secret>(NS);
            let (token, value) = eventually(&format!("{name} to converge"), || {
                settled_with_value(&tokens, &secrets, &name)
            })
            .await;
            eventually(&format!("the verifier to accept {name}'s value"), || {
                let ok = verifier.verify(&value).is_ok();
                async move { ok.then_some(()) }
            })
            .await;

            let rotations = token.status.as_ref().and_then(|s| s.rotations).unwrap_or(0);
            let before = self
                .rotations_at_check
                .insert(name.clone(), rotations)
                .unwrap_or(0);
            let (made, had_value) = self.epoch_triggers.remove(&name).unwrap_or_default();
            let delta = rotations - before;
            assert!(
                delta <= i64::from(made),
                "{name} rotated {delta} times for {made} rotate requests"
            );
            if had_value && delta < 1 {
                let events = events_for(&self.cluster.client, NS, &name).await;
                panic!(
                    "{name} had a value and got {made} rotate requests but did not rotate\n\
                     history: {:?}\nstatus: {:#?}\nannotations: {:?}\nevents: {events:#?}",
                    self.history.get(&name),
                    token.status,
                    token.annotations()
                );
            }
        }
    }
}

/// The trials run in two independent worlds at once (each its own emulator,
/// operator process and verifier), half of them in each: the same number of
/// kills, in half the time, since a trial mostly waits for the process.
const WORLDS: u64 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_issue_and_rotation_never_breaks_the_promises() {
    let seed: u64 = std::env::var("APIKEY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("APIKEY_SEED={seed}");
    let trials = if soak() { 1000 } else { 100 };
    let max_tokens = if soak() { 60 } else { 24 };
    let worlds: Vec<_> = (0..WORLDS)
        .map(|n| {
            let trials = trials / WORLDS as usize;
            tokio::spawn(run_world(n, seed.wrapping_add(n), trials, max_tokens))
        })
        .collect();
    let mut failed = Vec::new();
    for (n, world) in worlds.into_iter().enumerate() {
        match world.await {
            Ok(summary) => println!("{summary}"),
            Err(err) => {
                let payload = err.into_panic();
                let message = payload
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| payload.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                failed.push(format!("world {n}: {message}"));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "APIKEY_SEED={seed}\n{}",
        failed.join("\n")
    );
}

/// World `n`'s trials from `seed`; panics on a broken promise, else
/// returns what it did.
async fn run_world(n: u64, seed: u64, trials: usize, max_tokens: usize) -> String {
    let mut rng = StdRng::seed_from_u64(seed);
    let cluster = Cluster::start(NS).await;
    let dir = temp_dir(&format!("crash{n}"));
    let kubeconfig = dir.join("kubeconfig");
    cluster
        .emulator
        .write_kubeconfig(&kubeconfig)
        .expect("kubeconfig");
    let log = dir.join("operator.log");
    println!("world {n}: operator log: {}", log.display());

    create_key(&cluster.api(NS), "k", "User", "u").await;
    let deployment: Deployment = apply_yaml(&format!(
        "metadata: {{name: {RESTART_TARGET}}}\nspec:\n  selector: {{matchLabels: {{app: a}}}}\n  template:\n    metadata: {{labels: {{app: a}}}}\n    spec: {{containers: [{{name: c, image: busybox}}]}}\n"
    ));
    cluster
        .api::<Deployment>(NS)
        .create(&PostParams::default(), &deployment)
        .await
        .expect("deployment");

    let verifier = Arc::new(InProcessVerifier::start(cluster.client.clone()).await);
    let shared: Shared = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let probes = Arc::new(AtomicU64::new(0));
    let observers = [
        tokio::spawn(record_hashes(cluster.client.clone(), shared.clone())),
        tokio::spawn(record_rolls(cluster.client.clone(), shared.clone())),
    ];
    let prober = tokio::spawn(probe(
        cluster.client.clone(),
        verifier.clone(),
        shared.clone(),
        stop.clone(),
        probes.clone(),
    ));

    let mut world = World {
        cluster,
        kubeconfig,
        log,
        shared: shared.clone(),
        triggers: BTreeMap::new(),
        epoch_triggers: BTreeMap::new(),
        rotations_at_check: BTreeMap::new(),
        names: Vec::new(),
        history: BTreeMap::new(),
        trial: 0,
    };
    for i in 0..4 {
        world.create_token(&format!("t{i}"), &mut rng).await;
    }

    let started = std::time::Instant::now();
    for trial in 0..trials {
        world.trial = trial;
        let check = trial % 10 == 9;
        let roll: u32 = rng.random_range(0..100);
        let act_early = rng.random_bool(0.5);
        let act_delay = Duration::from_millis(rng.random_range(0..400));
        let kill_delay = Duration::from_millis(rng.random_range(0..900));
        let mut targets: Vec<String> = (0..rng.random_range(1..=3))
            .map(|_| world.names[rng.random_range(0..world.names.len())].clone())
            .collect();
        targets.sort();
        targets.dedup();
        let new_name = format!("n{trial}");
        let create = roll < 30 && world.names.len() < max_tokens;

        let action = if create {
            Action::Create(new_name)
        } else if roll < 85 {
            Action::Rotate(targets, format!("trial-{trial}"))
        } else if roll < 93 {
            Action::DeleteSecret(targets[0].clone())
        } else {
            Action::Tamper(targets[0].clone())
        };

        if act_early {
            world.act(&action, &mut rng).await;
        }
        let operator = world.spawn();
        if !act_early {
            tokio::time::sleep(act_delay).await;
            world.act(&action, &mut rng).await;
        }
        if check {
            world
                .history
                .values_mut()
                .for_each(|h| h.push(format!("trial {trial}: converged")));
            world.converged(&verifier).await;
        } else {
            tokio::time::sleep(kill_delay).await;
        }
        operator.kill();
    }

    // Last start: everything converges without help.
    let operator = world.spawn();
    world.converged(&verifier).await;
    let elapsed = started.elapsed();

    stop.store(true, Ordering::Relaxed);
    let _ = prober.await;
    // Give the recorder time to see the last writes, then settle unconfirmed hashes.
    let shared2 = shared.clone();
    let unconfirmed = lock(&shared).unconfirmed.clone();
    for (name, hash) in unconfirmed {
        eventually("the recorder to catch up", || {
            let ok = lock(&shared2).is_recorded(&name, &hash);
            async move { ok.then_some(()) }
        })
        .await;
    }
    drop(operator);
    for o in observers {
        o.abort();
    }

    let observed = std::mem::take(&mut *lock(&shared));
    assert!(observed.violations.is_empty(), "{:#?}", observed.violations);
    for (name, seq) in &observed.rolls {
        let recorded = observed.recorded.get(name).cloned().unwrap_or_default();
        let distinct: HashSet<&String> = seq.iter().collect();
        assert_eq!(
            distinct.len(),
            seq.len(),
            "{name}: a restart target went back to an old value: {seq:?}"
        );
        for value in seq {
            assert!(
                recorded
                    .iter()
                    .any(|h| h.trim_start_matches("sha256:").starts_with(value.as_str())),
                "{name}: rolled onto {value}, which status never recorded"
            );
        }
    }
    for name in &world.names {
        let token = world.tokens().get(name).await.expect("token");
        let rotations = token.status.and_then(|s| s.rotations).unwrap_or(0);
        let made = world.triggers.get(name).copied().unwrap_or(0);
        assert!(
            i64::from(made) >= rotations,
            "{name}: {rotations} rotations for {made} requests"
        );
    }
    let secrets = world
        .cluster
        .api::<Secret>(NS)
        .list(&ListParams::default())
        .await
        .expect("secrets");
    let managed = secrets
        .items
        .iter()
        .filter(|s| s.labels().contains_key("apikeys.dev/token"))
        .count();
    assert_eq!(
        managed,
        world.names.len(),
        "one Secret per token, no orphans"
    );
    format!(
        "world {n}: {trials} trials, {} tokens, {} rotate requests, {} verifier probes, {} forged values, {:?}",
        world.names.len(),
        world.triggers.values().sum::<u32>(),
        probes.load(Ordering::Relaxed),
        observed.forged.len(),
        elapsed
    )
}
