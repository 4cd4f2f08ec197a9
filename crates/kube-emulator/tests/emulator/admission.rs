//! Validating admission webhooks, phrased as they would pass on a real kube-apiserver: a test
//! webhook server (hyper + rustls, certificates in `fixtures/admission/`) records every
//! AdmissionReview it gets and answers with what the test says; the tests look at what reached
//! it and at what the client got back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube_emulator::{Emulator, EmulatorConfig, UserInfo};
use serde_json::{Value, json};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

const CA: &[u8] = include_bytes!("fixtures/admission/ca.pem");
const OTHER_CA: &[u8] = include_bytes!("fixtures/admission/other-ca.pem");
const SERVER_CERT: &[u8] = include_bytes!("fixtures/admission/server.pem");
const SERVER_KEY: &[u8] = include_bytes!("fixtures/admission/server-key.pem");

/// What the webhook answers to one AdmissionReview request: the `response` (its `uid` is
/// filled in from the request unless the answer sets one).
type Answer = dyn Fn(&Value) -> Value + Send + Sync;

/// One AdmissionReview as the webhook server received it.
#[derive(Debug, Clone)]
struct Seen {
    path_and_query: String,
    request: Value,
}

struct WebhookServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn allow() -> Value {
    json!({"allowed": true})
}

fn deny(message: &str) -> Value {
    json!({"allowed": false, "status": {"message": message}})
}

impl WebhookServer {
    /// Serves HTTPS on 127.0.0.1 with the fixture certificate; answers after `delay`.
    async fn start(
        delay: Duration,
        answer: impl Fn(&Value) -> Value + Send + Sync + 'static,
    ) -> WebhookServer {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(SERVER_CERT)
            .collect::<Result<_, _>>()
            .expect("fixture certificate parses");
        let key = PrivateKeyDer::from_pem_slice(SERVER_KEY).expect("fixture key parses");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server TLS config");
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("webhook server binds");
        let addr = listener.local_addr().expect("webhook server address");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let answer: Arc<Answer> = Arc::new(answer);
        let recorded = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, seen, answer) = (acceptor.clone(), recorded.clone(), answer.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        respond(req, delay, seen.clone(), answer.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        WebhookServer { addr, seen, task }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }

    /// Names of the objects (or old objects) the webhook was asked about, in order.
    fn names(&self) -> Vec<String> {
        self.seen()
            .iter()
            .map(|s| s.request["name"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

async fn respond(
    req: hyper::Request<Incoming>,
    delay: Duration,
    seen: Arc<Mutex<Vec<Seen>>>,
    answer: Arc<Answer>,
) -> Result<hyper::Response<Full<Bytes>>, hyper::Error> {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let body = req.into_body().collect().await?.to_bytes();
    let review: Value = serde_json::from_slice(&body).unwrap_or_default();
    let request = review["request"].clone();
    seen.lock().expect("seen lock").push(Seen {
        path_and_query,
        request: request.clone(),
    });
    tokio::time::sleep(delay).await;
    let mut response = answer(&request);
    if response.get("uid").is_none() {
        response["uid"] = request["uid"].clone();
    }
    let reply = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
    Ok(hyper::Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(reply.to_string())))
        .expect("response builds"))
}

fn ca_bundle(pem: &[u8]) -> Value {
    serde_json::to_value(ByteString(pem.to_vec())).expect("caBundle encodes")
}

/// A webhook entry calling `url`, for `rules`, allowed to see dry runs.
fn hook(name: &str, url: &str, rules: Value) -> Value {
    json!({
        "name": name,
        "clientConfig": {"url": url, "caBundle": ca_bundle(CA)},
        "rules": rules,
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": 5,
    })
}

fn configmap_rules(operations: &[&str]) -> Value {
    json!([{"operations": operations, "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}])
}

async fn install(client: &kube::Client, name: &str, hooks: Vec<Value>) {
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let config: ValidatingWebhookConfiguration =
        serde_json::from_value(json!({"metadata": {"name": name}, "webhooks": hooks}))
            .expect("configuration parses");
    configs
        .create(&PostParams::default(), &config)
        .await
        .expect("webhook configuration is created");
}

async fn start(cfg: EmulatorConfig) -> (Emulator, kube::Client) {
    let emu = Emulator::start(cfg).await.expect("emulator starts");
    let client = emu.client().await.expect("client for the emulator");
    (emu, client)
}

fn configmap(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .expect("configmap parses")
}

fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> kube::core::Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_denial_reaches_kube_client_and_kubectl_with_the_webhook_message() {
    let server = WebhookServer::start(Duration::ZERO, |req| {
        match req["object"]["metadata"]["name"].as_str() {
            Some("forbidden") => deny("configmaps named forbidden are not allowed"),
            Some("refused") => json!({"allowed": false, "status": {"code": 403, "reason": "Forbidden", "message": "not you"}}),
            _ => allow(),
        }
    })
    .await;
    let (emu, client) = start(EmulatorConfig::default()).await;
    let hooks = vec![hook(
        "deny.test.dev",
        &server.url("/validate"),
        configmap_rules(&["CREATE"]),
    )];
    install(&client, "deny", hooks).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    cms.create(&PostParams::default(), &configmap("fine", json!({})))
        .await
        .expect("an allowed create succeeds");
    // No status code from the webhook: 400, as upstream.
    let status = api_error(
        cms.create(&PostParams::default(), &configmap("forbidden", json!({})))
            .await,
    );
    assert_eq!(status.code, 400);
    assert_eq!(
        status.message,
        "admission webhook \"deny.test.dev\" denied the request: configmaps named forbidden are not allowed"
    );
    let status = api_error(
        cms.create(&PostParams::default(), &configmap("refused", json!({})))
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        status.message,
        "admission webhook \"deny.test.dev\" denied the request: not you"
    );
    assert!(
        cms.get_opt("forbidden").await.expect("get").is_none(),
        "nothing is stored"
    );

    let dir = std::env::temp_dir().join(format!("emu-admission-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = dir.join("kubeconfig");
    emu.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let manifest = dir.join("cm.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: forbidden\ndata:\n  k: v\n",
    )
    .expect("manifest");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("/usr/bin/kubectl")
            .args(["apply", "-f"])
            .arg(&manifest)
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", &dir)
            .output()
            .expect("kubectl runs")
    })
    .await
    .expect("kubectl thread");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("admission webhook \"deny.test.dev\" denied the request: configmaps named forbidden are not allowed"),
        "kubectl says: {stderr}"
    );
}

#[tokio::test]
async fn the_review_carries_the_request_as_sent() {
    let server = WebhookServer::start(Duration::ZERO, |_| allow()).await;
    let (_emu, client) = start(EmulatorConfig::default()).await;
    let rules = configmap_rules(&["*"]);
    install(
        &client,
        "record",
        vec![hook("record.test.dev", &server.url("/v"), rules)],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let pp = PostParams {
        field_manager: Some("tester".into()),
        ..PostParams::default()
    };
    let created = cms
        .create(&pp, &configmap("rec", json!({"a": "1"})))
        .await
        .expect("create");
    let mut changed = created.clone();
    changed.data = Some([("k".to_string(), "w".to_string())].into());
    cms.replace("rec", &PostParams::default(), &changed)
        .await
        .expect("update");
    cms.delete(
        "rec",
        &DeleteParams {
            dry_run: true,
            ..DeleteParams::default()
        },
    )
    .await
    .expect("dry-run delete");

    let seen = server.seen();
    assert_eq!(seen.len(), 3, "{seen:#?}");
    assert!(
        seen[0].path_and_query.starts_with("/v?timeout=5s"),
        "{}",
        seen[0].path_and_query
    );
    let (create, update, delete) = (&seen[0].request, &seen[1].request, &seen[2].request);
    for r in [create, update, delete] {
        assert_eq!(
            r["kind"],
            json!({"group": "", "version": "v1", "kind": "ConfigMap"})
        );
        assert_eq!(
            r["resource"],
            json!({"group": "", "version": "v1", "resource": "configmaps"})
        );
        assert_eq!(r["requestKind"], r["kind"]);
        assert_eq!(r["requestResource"], r["resource"]);
        assert_eq!(
            (r["name"].as_str(), r["namespace"].as_str()),
            (Some("rec"), Some("default"))
        );
        assert!(r["uid"].as_str().is_some_and(|u| !u.is_empty()));
        let user = &r["userInfo"];
        assert!(user["username"].as_str().is_some_and(|u| !u.is_empty()));
        assert!(
            user["groups"]
                .as_array()
                .is_some_and(|g| g.contains(&json!("system:authenticated")))
        );
    }
    // Until the emulator authenticates, every client is its admin.
    assert_eq!(create["userInfo"], UserInfo::admin().to_json());
    assert_ne!(create["uid"], update["uid"], "every call has its own uid");

    assert_eq!(create["operation"], "CREATE");
    assert_eq!(create["dryRun"], false);
    assert!(create["oldObject"].is_null());
    // The object as it is stored: the webhook saw the uid the object got.
    assert_eq!(
        create["object"]["metadata"]["uid"].as_str(),
        created.metadata.uid.as_deref()
    );
    assert_eq!(create["object"]["metadata"]["labels"], json!({"a": "1"}));
    assert_eq!(create["options"]["kind"], "CreateOptions");
    assert_eq!(create["options"]["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(create["options"]["fieldManager"], "tester");

    assert_eq!(update["operation"], "UPDATE");
    assert_eq!(update["object"]["data"], json!({"k": "w"}));
    assert_eq!(update["oldObject"]["data"], json!({"k": "v"}));
    assert_eq!(update["options"]["kind"], "UpdateOptions");

    assert_eq!(delete["operation"], "DELETE");
    assert_eq!(delete["dryRun"], true);
    assert!(delete["object"].is_null());
    assert_eq!(delete["oldObject"]["data"], json!({"k": "w"}));
    assert_eq!(delete["options"]["kind"], "DeleteOptions");
    assert_eq!(delete["options"]["dryRun"], json!(["All"]));
    assert!(
        cms.get_opt("rec").await.expect("get").is_some(),
        "a dry run deletes nothing"
    );
}

#[tokio::test]
async fn patch_and_server_side_apply_are_admitted_as_create_and_update() {
    let server = WebhookServer::start(Duration::ZERO, |req| {
        if req["object"]["data"]["k"] == "bad" {
            deny("bad value")
        } else {
            allow()
        }
    })
    .await;
    let (_emu, client) = start(EmulatorConfig::default()).await;
    install(
        &client,
        "p",
        vec![hook(
            "patch.test.dev",
            &server.url("/"),
            configmap_rules(&["*"]),
        )],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let apply = PatchParams::apply("applier");
    let body = |v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p"}, "data": {"k": v}});
    cms.patch("p", &apply, &Patch::Apply(body("one")))
        .await
        .expect("apply creates");
    cms.patch("p", &apply, &Patch::Apply(body("two")))
        .await
        .expect("apply updates");
    let merge = Patch::Merge(json!({"data": {"k": "bad"}}));
    let status = api_error(cms.patch("p", &PatchParams::default(), &merge).await);
    assert_eq!(
        status.message,
        "admission webhook \"patch.test.dev\" denied the request: bad value"
    );
    let status = api_error(cms.patch("p", &apply, &Patch::Apply(body("bad"))).await);
    assert_eq!(status.code, 400);
    let stored = cms.get("p").await.expect("get");
    assert_eq!(stored.data.unwrap_or_default()["k"], "two");

    let seen = server.seen();
    let ops: Vec<(&str, &str)> = seen
        .iter()
        .map(|s| {
            (
                s.request["operation"].as_str().unwrap_or_default(),
                s.request["options"]["kind"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("CREATE", "CreateOptions"),
            ("UPDATE", "UpdateOptions"),
            ("UPDATE", "UpdateOptions"),
            ("UPDATE", "UpdateOptions")
        ]
    );
    assert_eq!(seen[0].request["options"]["fieldManager"], "applier");
}

#[tokio::test]
async fn rules_selectors_and_match_conditions_choose_the_requests() {
    let server = WebhookServer::start(Duration::ZERO, |_| allow()).await;
    let (_emu, client) = start(EmulatorConfig::default()).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for (name, labels) in [
        ("watched", json!({"admission": "on"})),
        ("unwatched", json!({})),
    ] {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))
                .expect("namespace parses");
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("namespace");
    }
    let mut h = hook(
        "filter.test.dev",
        &server.url("/"),
        configmap_rules(&["CREATE"]),
    );
    h["namespaceSelector"] = json!({"matchLabels": {"admission": "on"}});
    h["objectSelector"] =
        json!({"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]});
    h["matchConditions"] =
        json!([{"name": "not-cel-skipped", "expression": "object.metadata.name != 'cel-skipped'"}]);
    install(&client, "filter", vec![h]).await;

    let watched: Api<ConfigMap> = Api::namespaced(client.clone(), "watched");
    let unwatched: Api<ConfigMap> = Api::namespaced(client.clone(), "unwatched");
    let pp = PostParams::default();
    watched
        .create(&pp, &configmap("asked", json!({})))
        .await
        .expect("create");
    watched
        .create(&pp, &configmap("labelled-skip", json!({"skip": "yes"})))
        .await
        .expect("create");
    watched
        .create(&pp, &configmap("cel-skipped", json!({})))
        .await
        .expect("create");
    unwatched
        .create(&pp, &configmap("other-namespace", json!({})))
        .await
        .expect("create");
    // UPDATE is not in the rule's operations, secrets not in its resources.
    let mut cm = watched.get("asked").await.expect("get");
    cm.data = Some([("k".to_string(), "x".to_string())].into());
    watched.replace("asked", &pp, &cm).await.expect("update");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), "watched");
    secrets
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": "s"}})).expect("secret"),
        )
        .await
        .expect("secret");
    assert_eq!(server.names(), ["asked"]);
}

#[tokio::test]
async fn subresources_match_by_their_own_rules() {
    let server = WebhookServer::start(Duration::ZERO, |_| allow()).await;
    let (_emu, client) = start(EmulatorConfig::default()).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "gizmos.adm.test.dev"},
        "spec": {"group": "adm.test.dev", "scope": "Namespaced",
                 "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"},
                 "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .expect("CRD parses");
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("CRD");
    let rules = json!([{"operations": ["UPDATE"], "apiGroups": ["adm.test.dev"], "apiVersions": ["*"], "resources": ["*/status"]}]);
    install(
        &client,
        "status",
        vec![hook("status.test.dev", &server.url("/"), rules)],
    )
    .await;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("adm.test.dev", "v1", "Gizmo"),
        "gizmos",
    );
    let gizmos: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let g: DynamicObject = serde_json::from_value(json!({"apiVersion": "adm.test.dev/v1", "kind": "Gizmo", "metadata": {"name": "g"}, "spec": {"n": 1}}))
        .expect("gizmo");
    gizmos
        .create(&PostParams::default(), &g)
        .await
        .expect("create");
    gizmos
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"n": 2}})),
        )
        .await
        .expect("main resource update");
    gizmos
        .patch_status(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ok": true}})),
        )
        .await
        .expect("status update");
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "only the status write: {seen:#?}");
    let r = &seen[0].request;
    assert_eq!(
        (r["subResource"].as_str(), r["requestSubResource"].as_str()),
        (Some("status"), Some("status"))
    );
    assert_eq!(r["object"]["status"], json!({"ok": true}));
    assert_eq!(r["oldObject"]["spec"], json!({"n": 2}));
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test]
async fn failure_policy_decides_when_the_webhook_is_down() {
    let (_emu, client) = start(EmulatorConfig::default()).await;
    let port = closed_port().await;
    let url = format!("https://127.0.0.1:{port}/validate");
    let mut fail = hook("down-fail.test.dev", &url, configmap_rules(&["CREATE"]));
    fail["objectSelector"] = json!({"matchLabels": {"policy": "fail"}});
    let mut ignore = hook("down-ignore.test.dev", &url, configmap_rules(&["CREATE"]));
    ignore["failurePolicy"] = json!("Ignore");
    install(&client, "down", vec![fail, ignore]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &configmap("ignored", json!({})))
        .await
        .expect("Ignore lets the write through");
    let status = api_error(
        cms.create(
            &PostParams::default(),
            &configmap("refused", json!({"policy": "fail"})),
        )
        .await,
    );
    assert_eq!(
        (status.code, status.reason.as_str()),
        (500, "InternalError")
    );
    assert!(
        status.message.starts_with(&format!(
            "Internal error occurred: failed calling webhook \"down-fail.test.dev\": failed to call webhook: Post \"https://127.0.0.1:{port}/validate?timeout=5s\": "
        )),
        "{}",
        status.message
    );
    assert!(
        status.message.contains("connection refused"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn the_serving_certificate_must_chain_to_the_ca_bundle() {
    let server = WebhookServer::start(Duration::ZERO, |_| allow()).await;
    let (_emu, client) = start(EmulatorConfig::default()).await;
    let mut h = hook(
        "wrong-ca.test.dev",
        &server.url("/"),
        configmap_rules(&["CREATE"]),
    );
    h["clientConfig"]["caBundle"] = ca_bundle(OTHER_CA);
    install(&client, "wrong-ca", vec![h]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let status = api_error(
        cms.create(&PostParams::default(), &configmap("x", json!({})))
            .await,
    );
    assert_eq!(status.code, 500);
    assert!(
        status
            .message
            .contains("failed calling webhook \"wrong-ca.test.dev\"")
            && status
                .message
                .contains("x509: certificate signed by unknown authority"),
        "{}",
        status.message
    );
    assert!(
        server.seen().is_empty(),
        "no request was made over the refused connection"
    );
}

#[tokio::test]
async fn a_slow_webhook_times_out() {
    let server = WebhookServer::start(Duration::from_secs(3), |_| allow()).await;
    let (_emu, client) = start(EmulatorConfig::default()).await;
    let mut fail = hook(
        "slow.test.dev",
        &server.url("/"),
        configmap_rules(&["CREATE"]),
    );
    fail["timeoutSeconds"] = json!(1);
    fail["objectSelector"] = json!({"matchLabels": {"policy": "fail"}});
    let mut ignore = hook(
        "slow-ignored.test.dev",
        &server.url("/"),
        configmap_rules(&["CREATE"]),
    );
    ignore["timeoutSeconds"] = json!(1);
    ignore["failurePolicy"] = json!("Ignore");
    ignore["objectSelector"] = json!({"matchLabels": {"policy": "ignore"}});
    install(&client, "slow", vec![fail, ignore]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let started = std::time::Instant::now();
    let status = api_error(
        cms.create(
            &PostParams::default(),
            &configmap("slow", json!({"policy": "fail"})),
        )
        .await,
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the call was cut at 1 s"
    );
    assert_eq!(status.code, 500);
    assert!(
        status
            .message
            .contains("failed calling webhook \"slow.test.dev\"")
            && status.message.contains("?timeout=1s\""),
        "{}",
        status.message
    );
    cms.create(
        &PostParams::default(),
        &configmap("late", json!({"policy": "ignore"})),
    )
    .await
    .expect("Ignore lets a timed-out write through");
    assert!(
        server
            .seen()
            .iter()
            .all(|s| s.path_and_query.ends_with("timeout=1s"))
    );
}

#[tokio::test]
async fn services_are_reached_through_the_configured_addresses() {
    let server = WebhookServer::start(Duration::ZERO, |_| deny("from the service")).await;
    let cfg = EmulatorConfig {
        service_addrs: HashMap::from([(
            ("webhooks".to_string(), "webhook".to_string(), 8443),
            server.addr,
        )]),
        ..EmulatorConfig::default()
    };
    let (_emu, client) = start(cfg).await;
    let mut h = hook("svc.test.dev", "unused", configmap_rules(&["CREATE"]));
    h["clientConfig"] = json!({
        "service": {"namespace": "webhooks", "name": "webhook", "port": 8443, "path": "/check"},
        "caBundle": ca_bundle(CA),
    });
    install(&client, "svc", vec![h]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let status = api_error(
        cms.create(&PostParams::default(), &configmap("x", json!({})))
            .await,
    );
    assert_eq!(
        status.message,
        "admission webhook \"svc.test.dev\" denied the request: from the service"
    );
    assert_eq!(server.seen()[0].path_and_query, "/check?timeout=5s");
}

#[tokio::test]
async fn invalid_responses_and_configurations_are_refused() {
    let server = WebhookServer::start(
        Duration::ZERO,
        |_| json!({"allowed": true, "uid": "not-the-request"}),
    )
    .await;
    let (_emu, client) = start(EmulatorConfig::default()).await;
    install(
        &client,
        "bad-uid",
        vec![hook(
            "uid.test.dev",
            &server.url("/"),
            configmap_rules(&["CREATE"]),
        )],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let status = api_error(
        cms.create(&PostParams::default(), &configmap("x", json!({})))
            .await,
    );
    assert_eq!(status.code, 500);
    assert!(
        status
            .message
            .contains("received invalid webhook response: expected response.uid=")
            && status.message.ends_with("got \"not-the-request\""),
        "{}",
        status.message
    );

    // v1 admits only webhooks without side effects on dry runs.
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let mut h = hook(
        "effects.test.dev",
        &server.url("/"),
        configmap_rules(&["CREATE"]),
    );
    h["sideEffects"] = json!("Some");
    let config = serde_json::from_value(json!({"metadata": {"name": "effects"}, "webhooks": [h]}))
        .expect("configuration parses");
    let status = api_error(configs.create(&PostParams::default(), &config).await);
    assert_eq!(status.code, 422);
    assert_eq!(
        status.message,
        "ValidatingWebhookConfiguration.admissionregistration.k8s.io \"effects\" is invalid: webhooks[0].sideEffects: Unsupported value: \"Some\": supported values: \"None\", \"NoneOnDryRun\""
    );
}

#[tokio::test]
async fn webhook_configurations_are_never_sent_to_webhooks() {
    let server = WebhookServer::start(Duration::ZERO, |_| deny("everything")).await;
    let (_emu, client) = start(EmulatorConfig::default()).await;
    let rules = json!([{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"]}]);
    install(
        &client,
        "all",
        vec![hook("all.test.dev", &server.url("/"), rules)],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let status = api_error(
        cms.create(&PostParams::default(), &configmap("x", json!({})))
            .await,
    );
    assert_eq!(status.code, 400);
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    configs
        .delete("all", &DeleteParams::default())
        .await
        .expect("the configuration itself is exempt");
    cms.create(&PostParams::default(), &configmap("x", json!({})))
        .await
        .expect("no webhook once the configuration is gone");
}

#[tokio::test]
async fn dry_run_writes_reach_webhooks_and_store_nothing() {
    let server = WebhookServer::start(Duration::ZERO, |_| allow()).await;
    let (_emu, client) = start(EmulatorConfig::default()).await;
    let mut h = hook(
        "dry.test.dev",
        &server.url("/"),
        configmap_rules(&["CREATE"]),
    );
    h["sideEffects"] = json!("NoneOnDryRun");
    install(&client, "dry", vec![h]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let pp = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    cms.create(&pp, &configmap("dry", json!({})))
        .await
        .expect("dry-run create");
    assert!(cms.get_opt("dry").await.expect("get").is_none());
    let seen = server.seen();
    assert_eq!(seen[0].request["dryRun"], true);
    assert_eq!(seen[0].request["options"]["dryRun"], json!(["All"]));
}

/// An allowed answer carrying a JSONPatch.
fn patch_answer(ops: Value) -> Value {
    let patch =
        serde_json::to_value(ByteString(ops.to_string().into_bytes())).expect("patch encodes");
    json!({"allowed": true, "patchType": "JSONPatch", "patch": patch})
}

#[tokio::test]
async fn mutating_webhooks_patch_the_object_before_it_is_validated() {
    let mutator = WebhookServer::start(Duration::ZERO, |req| {
        if req["operation"] == "DELETE" {
            return allow();
        }
        let size = if req["object"]["metadata"]["name"] == "shrunk" {
            0
        } else {
            7
        };
        patch_answer(json!([
            {"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}},
            {"op": "add", "path": "/spec/size", "value": size},
        ]))
    })
    .await;
    let validator = WebhookServer::start(Duration::ZERO, |_| allow()).await;
    let (_emu, client) = start(EmulatorConfig::default()).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "sprockets.adm.test.dev"},
        "spec": {"group": "adm.test.dev", "scope": "Namespaced",
                 "names": {"plural": "sprockets", "singular": "sprocket", "kind": "Sprocket"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                   "spec": {"type": "object", "properties": {"size": {"type": "integer", "minimum": 1}}}}}}}]}
    }))
    .expect("CRD parses");
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("CRD");
    let rules = json!([{"operations": ["CREATE", "UPDATE"], "apiGroups": ["adm.test.dev"], "apiVersions": ["v1"], "resources": ["sprockets"]}]);
    let mutating: Api<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration> =
        Api::all(client.clone());
    let config = serde_json::from_value(json!({"metadata": {"name": "mutate"},
        "webhooks": [hook("mutate.test.dev", &mutator.url("/mutate"), rules.clone())]}))
    .expect("mutating configuration parses");
    mutating
        .create(&PostParams::default(), &config)
        .await
        .expect("mutating configuration");
    install(
        &client,
        "check",
        vec![hook("check.test.dev", &validator.url("/"), rules)],
    )
    .await;

    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("adm.test.dev", "v1", "Sprocket"),
        "sprockets",
    );
    let sprockets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let sprocket = |name: &str| -> DynamicObject {
        serde_json::from_value(json!({"apiVersion": "adm.test.dev/v1", "kind": "Sprocket",
            "metadata": {"name": name}, "spec": {"size": 3}}))
        .expect("sprocket")
    };
    let created = sprockets
        .create(&PostParams::default(), &sprocket("s"))
        .await
        .expect("create");
    assert_eq!(
        created.labels().get("mutated").map(String::as_str),
        Some("yes")
    );
    assert_eq!(created.data["spec"]["size"], 7);
    // The validating webhook saw the mutated object; the mutating one what the client sent.
    assert_eq!(validator.seen()[0].request["object"]["spec"]["size"], 7);
    assert_eq!(mutator.seen()[0].request["object"]["spec"]["size"], 3);
    assert!(
        mutator.seen()[0]
            .path_and_query
            .starts_with("/mutate?timeout=5s")
    );

    // The schema is checked after mutation: a patch that breaks it is a 422.
    let status = api_error(
        sprockets
            .create(&PostParams::default(), &sprocket("shrunk"))
            .await,
    );
    assert_eq!(status.code, 422, "{}", status.message);
    assert!(status.message.contains("spec.size"), "{}", status.message);

    let updated = sprockets
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .expect("update");
    assert_eq!(updated.data["spec"]["size"], 7);
    let update = &mutator.seen().last().expect("update seen").request.clone();
    assert_eq!(update["operation"], "UPDATE");
    assert_eq!(
        (
            update["object"]["spec"]["size"].as_i64(),
            update["oldObject"]["spec"]["size"].as_i64()
        ),
        (Some(2), Some(7))
    );
}

#[tokio::test]
async fn a_match_condition_that_errors_fails_closed_unless_ignored() {
    let server = WebhookServer::start(Duration::ZERO, |_| allow()).await;
    let (_emu, client) = start(EmulatorConfig::default()).await;
    let condition = json!([{"name": "needs-key", "expression": "object.data.missing == 'x'"}]);
    let mut fail = hook(
        "cel-fail.test.dev",
        &server.url("/"),
        configmap_rules(&["CREATE"]),
    );
    fail["matchConditions"] = condition.clone();
    fail["objectSelector"] = json!({"matchLabels": {"policy": "fail"}});
    let mut ignore = hook(
        "cel-ignore.test.dev",
        &server.url("/"),
        configmap_rules(&["CREATE"]),
    );
    ignore["matchConditions"] = condition;
    ignore["failurePolicy"] = json!("Ignore");
    install(&client, "cel", vec![fail, ignore]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &configmap("skipped", json!({})))
        .await
        .expect("Ignore skips the webhook");
    let status = api_error(
        cms.create(
            &PostParams::default(),
            &configmap("refused", json!({"policy": "fail"})),
        )
        .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert!(
        status.message.starts_with(
            "configmaps \"refused\" is forbidden: expression 'object.data.missing == 'x'' resulted in error: "
        ),
        "{}",
        status.message
    );
    assert!(server.seen().is_empty());
}

async fn create_dynamic(client: &kube::Client, kind: &str, plural: &str, body: Value) {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind),
        plural,
    );
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let mut body = body;
    body["apiVersion"] = json!("admissionregistration.k8s.io/v1");
    body["kind"] = json!(kind);
    let obj: DynamicObject = serde_json::from_value(body).expect("object parses");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("created");
}

#[tokio::test]
async fn validating_admission_policies_deny_through_their_bindings() {
    let (_emu, client) = start(EmulatorConfig::default()).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for (name, labels) in [("guarded", json!({"vap": "on"})), ("free", json!({}))] {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))
                .expect("namespace parses");
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("namespace");
    }
    create_dynamic(&client, "ValidatingAdmissionPolicy", "validatingadmissionpolicies", json!({
        "metadata": {"name": "limits.test.dev"},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"], "resources": ["configmaps"]}]},
            "validations": [
                {"expression": "!has(object.data) || object.data.size() <= 2", "message": "at most two keys"},
                {"expression": "!has(object.metadata.labels) || !('forbidden' in object.metadata.labels)",
                 "messageExpression": "'label forbidden on ' + object.metadata.name", "reason": "Forbidden"},
                {"expression": "object.metadata.name != 'unnamed-rule'"},
            ],
        },
    }))
    .await;
    create_dynamic(
        &client,
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        json!({
            "metadata": {"name": "limits-binding"},
            "spec": {"policyName": "limits.test.dev", "validationActions": ["Deny"],
                     "matchResources": {"namespaceSelector": {"matchLabels": {"vap": "on"}}}},
        }),
    )
    .await;
    let guarded: Api<ConfigMap> = Api::namespaced(client.clone(), "guarded");
    let free: Api<ConfigMap> = Api::namespaced(client.clone(), "free");
    let big: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "big"}, "data": {"a": "1", "b": "2", "c": "3"}}),
    )
    .expect("configmap");
    let pp = PostParams::default();

    let status = api_error(guarded.create(&pp, &big).await);
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        status.message,
        "configmaps \"big\" is forbidden: ValidatingAdmissionPolicy 'limits.test.dev' with binding 'limits-binding' denied request: at most two keys"
    );
    let status = api_error(
        guarded
            .create(&pp, &configmap("labelled", json!({"forbidden": "x"})))
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert!(
        status
            .message
            .ends_with("denied request: label forbidden on labelled"),
        "{}",
        status.message
    );
    let status = api_error(
        guarded
            .create(&pp, &configmap("unnamed-rule", json!({})))
            .await,
    );
    assert!(
        status
            .message
            .ends_with("denied request: failed expression: object.metadata.name != 'unnamed-rule'"),
        "{}",
        status.message
    );
    guarded
        .create(&pp, &configmap("small", json!({})))
        .await
        .expect("a valid object passes");
    free.create(&pp, &big)
        .await
        .expect("the binding does not select this namespace");
}
