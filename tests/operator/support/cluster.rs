//! An emulator with our CRDs and a namespace, a controller running on it (on the real clock or a
//! [`ManualClock`]), and clients for it.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use super::DEADLINE;
use apikey_operator::clock::{Clock, SystemClock};
use apikey_operator::controller::{self, Handles};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::{Client, Resource};
use kube_emulator::{Emulator, EmulatorConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct Cluster {
    pub emulator: Emulator,
    pub client: Client,
}

impl Cluster {
    /// An emulator with the CRDs installed and a namespace `ns`.
    pub async fn start(ns: &str) -> Cluster {
        Cluster::start_with(ns, EmulatorConfig::default()).await
    }

    /// The same on an emulator started with `config` (users, anonymous access).
    pub async fn start_with(ns: &str, config: EmulatorConfig) -> Cluster {
        // RUST_LOG=apikey_operator=debug shows the controller's logs under the failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let emulator = Emulator::start(config).await.expect("emulator starts");
        let client = emulator.client().await.expect("client");
        apikey_operator::cli::install_crds(client.clone(), DEADLINE)
            .await
            .expect("CRDs installed");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))
                .expect("namespace");
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .expect("namespace created");
        Cluster { emulator, client }
    }

    pub fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Starts a controller on this cluster.
    pub fn controller(&self) -> Operator {
        Operator::start(self.client.clone())
    }

    /// Starts a controller on this cluster that reads `clock`.
    pub fn controller_on(&self, clock: Arc<dyn Clock>) -> Operator {
        Operator::start_on(self.client.clone(), clock)
    }
}

/// A clock that stands still until the test moves it.
#[derive(Debug)]
pub struct ManualClock(std::sync::Mutex<jiff::Timestamp>);

impl ManualClock {
    pub fn new(at: jiff::Timestamp) -> Arc<ManualClock> {
        Arc::new(ManualClock(std::sync::Mutex::new(at)))
    }

    pub fn set(&self, at: jiff::Timestamp) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> jiff::Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A controller running in the background until dropped or stopped.
pub struct Operator {
    pub handles: Arc<Handles>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Operator {
    pub fn start(client: Client) -> Operator {
        Operator::start_on(client, Arc::new(SystemClock))
    }

    pub fn start_on(client: Client, clock: Arc<dyn Clock>) -> Operator {
        let handles = Arc::new(Handles::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let config = controller::Config {
            resync: Duration::from_secs(600),
            ..Default::default()
        };
        let task = tokio::spawn(controller::run_with(
            client,
            config,
            clock,
            handles.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        Operator {
            handles,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Whether the controller task is still running (it ends only when stopped, or on a panic).
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the controller and waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(DEADLINE, task).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A client for the emulator that counts every request it sends (the
/// emulator's `stats()` counts every client's requests, refused ones included).
pub fn counting_client(url: &str, sent: Arc<std::sync::atomic::AtomicU64>) -> Client {
    let config = kube::Config::new(url.parse().expect("emulator URL"));
    let count = tower::util::MapRequestLayer::new(move |req| {
        sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        req
    });
    kube::client::ClientBuilder::try_from(config)
        .expect("client config")
        .with_layer(&count)
        .build()
}
