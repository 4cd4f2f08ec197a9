//! Shared helpers for the emulator integration tests: start an emulator, install the inline test
//! CRD (`Widget`), poll with a deadline, and run the machine's kubectl against it.

use std::future::Future;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube_emulator::{Emulator, EmulatorConfig};

/// A namespaced test kind with a status subresource, printer columns, short name and category.
pub const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.apikeys.dev
spec:
  group: test.apikeys.dev
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wdg]
    categories: [testing]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
    additionalPrinterColumns:
    - name: Owner
      type: string
      jsonPath: .spec.ownerRef.name
    - name: Ready
      type: string
      jsonPath: .status.conditions[?(@.type=="Ready")].status
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        description: A test widget.
        properties:
          spec:
            type: object
            description: Desired state of the widget.
            required: [size]
            properties:
              size:
                type: integer
                minimum: 1
                description: How big the widget is.
              ownerRef:
                type: object
                properties:
                  name: {type: string, description: Name of the owner.}
              items:
                type: array
                items: {type: string}
          status:
            type: object
            properties:
              conditions:
                type: array
                items:
                  type: object
                  properties:
                    type: {type: string}
                    status: {type: string}
"#;

/// A cluster-scoped test kind without subresources.
pub const GADGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.test.apikeys.dev
spec:
  group: test.apikeys.dev
  scope: Cluster
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

pub fn quick_config() -> EmulatorConfig {
    EmulatorConfig {
        bookmark_interval: Duration::from_millis(200),
        ..EmulatorConfig::default()
    }
}

pub async fn start() -> (Emulator, kube::Client) {
    start_with(quick_config()).await
}

pub async fn start_with(cfg: EmulatorConfig) -> (Emulator, kube::Client) {
    let emu = Emulator::start(cfg).await.expect("emulator starts");
    let client = emu.client().await.expect("client for the emulator");
    (emu, client)
}

pub async fn install_crd(client: &kube::Client, yaml: &str) {
    let crd: CustomResourceDefinition = serde_yaml::from_str(yaml).expect("test CRD parses");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("CRD is created");
}

pub fn widget_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("test.apikeys.dev", "v1", "Widget"),
        "widgets",
    )
}

pub fn gadget_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("test.apikeys.dev", "v1", "Gadget"),
        "gadgets",
    )
}

pub fn widgets(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &widget_resource())
}

/// A Widget object with the given name and size.
pub fn widget(name: &str, size: i64) -> DynamicObject {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "test.apikeys.dev/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": size},
    }))
    .expect("widget JSON is a DynamicObject")
}

/// Polls `check` until it returns Some or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The status code of a kube API error, for asserting on failures.
pub fn api_code<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> (u16, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

pub use crate::temp_dir::{TempDir, temp_dir};

/// kubectl pointed at one emulator, with its own discovery cache.
pub struct Kubectl {
    pub dir: TempDir,
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    pub fn new(emu: &Emulator) -> Kubectl {
        let dir = temp_dir("kubectl");
        let kubeconfig = dir.join("kubeconfig");
        emu.write_kubeconfig(&kubeconfig)
            .expect("kubeconfig written");
        Kubectl { dir, kubeconfig }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("/usr/bin/kubectl");
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", self.dir.join("cache"))
            .env("HOME", &*self.dir);
        cmd
    }

    /// Runs kubectl on a blocking thread and returns its output.
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.command(args);
        tokio::task::spawn_blocking(move || cmd.output().expect("kubectl runs"))
            .await
            .expect("kubectl thread")
    }

    /// Runs kubectl and returns stdout, failing the test on a non-zero exit.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn write(&self, name: &str, content: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, content).expect("manifest written");
        path.display().to_string()
    }
}
