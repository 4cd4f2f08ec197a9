//! The operator with nothing but what the chart gives it: the rendered RBAC and webhook
//! configuration applied to the emulator (which enforces RBAC), the operator and the verifier
//! started from their rendered Deployments' own arguments, each client authenticated as its
//! Deployment's ServiceAccount.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use super::helm_chart::{apply_rendered, find, helm, template};
use crate::support::*;
use apikey_operator::admission::registration::WEBHOOK_NAME;
use apikey_operator::api::{ApiKey, ApiToken};
use apikey_operator::cli::args::{Cli, Command};
use apikey_operator::cli::run;
use clap::Parser;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_emulator::{EmulatorConfig, StaticToken};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};

const RELEASE_NS: &str = "apikey-system";
const FULLNAME: &str = "ako-apikey-operator";
const VERIFIER: &str = "ako-apikey-operator-verifier";

/// The rendered Deployment `name`'s container arguments, with the environment the pod would
/// give them, the listen addresses moved to this machine's loopback (the webhook's to
/// `webhook`) and mounted files to `mounts`.
fn deployment_args(docs: &[Value], name: &str, webhook: SocketAddr, mounts: &Path) -> Vec<String> {
    let deployment = find(docs, "Deployment")
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
        .expect("the Deployment");
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args");
    let mut out = vec!["apikey-operator".to_owned()];
    for arg in args {
        let arg = arg
            .as_str()
            .expect("a string")
            .replace("$(POD_NAMESPACE)", RELEASE_NS)
            .replace("$(POD_NAME)", "ako-0")
            .replace("/etc/apikey-operator", &mounts.display().to_string());
        let arg = match arg.split_once('=') {
            Some(("--verify-addr" | "--admin-addr", _)) => {
                format!("{}=127.0.0.1:0", arg.split('=').next().unwrap_or_default())
            }
            Some(("--webhook-addr", _)) => format!("--webhook-addr={webhook}"),
            _ => arg,
        };
        out.push(arg);
    }
    out
}

/// A token for the chart's ServiceAccount `name`, and a client config with it.
async fn as_service_account(cluster: &Cluster, name: &str) -> kube::Config {
    let accounts: Api<ServiceAccount> = cluster.api(RELEASE_NS);
    let request: TokenRequest = serde_json::from_value(json!({"spec": {}})).expect("request");
    let token = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .expect("a token for the chart's ServiceAccount")
        .status
        .expect("status")
        .token;
    cluster
        .emulator
        .config_with_token(&token)
        .expect("client config")
}

/// `run` with `args`, bound, as `config`'s user.
async fn bind(args: &[String], config: kube::Config) -> run::BoundOperator {
    let Command::Run(run_args) = Cli::try_parse_from(args)
        .expect("the chart's args parse")
        .command
    else {
        panic!("the chart runs `run`: {args:?}");
    };
    let (_, opts) = run_args.into_options().expect("options");
    run::bind_operator(config, opts).await.expect("bound")
}

/// Runs `bound` until the returned sender is used or dropped.
fn start(
    bound: run::BoundOperator,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), run::RunError>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(bound.run(async move {
        let _ = stopped.await;
    }));
    (stop, running)
}

/// Keys and tokens become Ready and their values authenticate, the webhook shares its
/// certificate through the chart's Secret, sets its configuration's `caBundle` and refuses a
/// tenant's key for another user — all on the permissions the chart grants, and no others.
/// The verifier runs apart under its own account: it serves HTTPS with the certificate the
/// operator keeps in the chart's Secret, trusted through the CA the operator publishes, writes
/// `lastUsedAt`, and may not read Secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_runs_on_the_charts_rbac_alone() {
    let helm = require_helm!();
    let docs = template(&helm, &[], &["--include-crds"]);
    let [port] = ports::free_ports::<1>();
    let webhook_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let alice = StaticToken::generate("alice", &["team-a"]);
    let service_addrs = HashMap::from([(
        (RELEASE_NS.to_owned(), format!("{FULLNAME}-webhook"), 443),
        webhook_addr,
    )]);
    let cluster = Cluster::start_with(
        RELEASE_NS,
        EmulatorConfig {
            tokens: vec![alice.clone()],
            service_addrs,
            ..Default::default()
        },
    )
    .await;
    let applied = apply_rendered(&cluster, docs.clone()).await;
    assert!(
        applied
            .iter()
            .any(|k| k == "ValidatingWebhookConfiguration")
    );

    // The operator (controller and webhook), as the chart's ServiceAccount.
    let mounts = crate::support::temp_dir::temp_dir("chart-mounts");
    let config = as_service_account(&cluster, FULLNAME).await;
    let args = deployment_args(&docs, FULLNAME, webhook_addr, &mounts);
    let operator = bind(&args, config).await;
    assert_eq!(operator.verify_addr(), None, "the verifier runs apart");
    let (stop, running) = start(operator);

    // The verifier, as its own ServiceAccount, with the certificate the operator made, mounted.
    let system_secrets: Api<Secret> = cluster.api(RELEASE_NS);
    let verifier_tls = system_secrets
        .get(&format!("{VERIFIER}-tls"))
        .await
        .expect("the operator made the verifier's Secret");
    let tls_dir = mounts.join("tls");
    std::fs::create_dir_all(&tls_dir).expect("mount dir");
    for file in ["tls.crt", "tls.key"] {
        let data = verifier_tls.data.as_ref().and_then(|d| d.get(file));
        std::fs::write(tls_dir.join(file), &data.expect(file).0).expect("mounted");
    }
    let verifier_config = as_service_account(&cluster, VERIFIER).await;
    let args = deployment_args(&docs, VERIFIER, webhook_addr, &mounts);
    let verifier = bind(&args, verifier_config.clone()).await;
    let verify = verifier.verify_addr().expect("it serves the verifier");
    let (stop_verifier, verifier_running) = start(verifier);
    let as_verifier = Client::try_from(verifier_config).expect("the verifier's client");

    // A tenant in team-a, with the rights a platform team gives.
    let admin = cluster.client.clone();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "team-a"}})).expect("ns"),
        )
        .await
        .expect("team-a");
    for object in [
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "apikeys", "namespace": "team-a"},
            "rules": [{"apiGroups": ["apikeys.dev"], "resources": ["apikeys", "apitokens"],
                "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "apikeys", "namespace": "team-a"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "apikeys"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]}),
    ] {
        let api: Api<kube::core::DynamicObject> = Api::namespaced_with(
            admin.clone(),
            "team-a",
            &kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
                "rbac.authorization.k8s.io",
                "v1",
                object["kind"].as_str().expect("kind"),
            )),
        );
        let name = object["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        api.patch(
            &name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(object),
        )
        .await
        .expect("RBAC applied");
    }
    let as_alice = Client::try_from(
        cluster
            .emulator
            .config_with_token(&alice.token)
            .expect("alice's config"),
    )
    .expect("alice's client");
    let keys: Api<ApiKey> = Api::namespaced(as_alice.clone(), "team-a");
    let tokens: Api<ApiToken> = Api::namespaced(as_alice.clone(), "team-a");

    // The webhook answers under the chart's RBAC: its own key goes in, another user's does not.
    create_key(&keys, "alice", "User", "alice").await;
    let other =
        apply_yaml::<ApiKey>("metadata: {name: bob}\nspec: {owner: {kind: User, name: bob}}");
    match keys.create(&PostParams::default(), &other).await {
        Err(kube::Error::Api(s)) => assert!(
            s.code == 403
                && s.message
                    .contains("may not create an ApiKey owned by user \"bob\""),
            "{s:?}"
        ),
        other => panic!("expected the webhook to refuse, got {other:?}"),
    }
    create_token(&tokens, "laptop", "{apiKeyRef: {name: alice}}").await;
    settled_token(&tokens, "laptop").await;
    let secrets: Api<Secret> = Api::namespaced(as_alice, "team-a");
    let (_, value) = settled_with_value(&tokens, &secrets, "laptop")
        .await
        .expect("a value in alice's Secret");
    // Over HTTPS, trusted through the CA the operator publishes, for the Service's name.
    let maps: Api<ConfigMap> = cluster.api(RELEASE_NS);
    let ca = wait_for(|| async {
        let map = maps.get_opt(&format!("{VERIFIER}-ca")).await.ok()??;
        map.data?.get("ca.crt").cloned()
    })
    .await;
    let review = wait_until_authenticated(verify, &ca, &value).await;
    assert_eq!(review["status"]["user"]["username"], "alice");

    // The verifier's account reads no Secret, neither the operator's nor a tenant's.
    for (namespace, name) in [
        (RELEASE_NS, format!("{VERIFIER}-tls")),
        ("team-a", "laptop".to_owned()),
    ] {
        let secrets: Api<Secret> = Api::namespaced(as_verifier.clone(), namespace);
        match secrets.get(&name).await {
            Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
            other => panic!("the verifier read Secret {namespace}/{name}: {other:?}"),
        }
        assert!(secrets.list(&Default::default()).await.is_err());
    }
    // It writes lastUsedAt (at the latest when it stops, with what it noted).
    let _ = stop_verifier.send(());
    verifier_running
        .await
        .expect("the verifier's task")
        .expect("the verifier stopped cleanly");
    let token = tokens.get("laptop").await.expect("the token");
    let status = token.status.expect("status");
    assert!(status.last_used_at.is_some(), "{status:?}");

    // The webhook's certificate is in the chart's Secret, its CA in the configuration.
    let tls = system_secrets
        .get(&format!("{FULLNAME}-webhook-tls"))
        .await
        .expect("the webhook's Secret");
    let ca = tls.data.as_ref().and_then(|d| d.get("ca.crt")).cloned();
    let configurations: Api<ValidatingWebhookConfiguration> = Api::all(admin);
    let configuration = configurations.get(FULLNAME).await.expect("configuration");
    let webhook = &configuration.webhooks.as_ref().expect("webhooks")[0];
    assert_eq!(webhook.name, WEBHOOK_NAME);
    assert_eq!(webhook.client_config.ca_bundle, ca);

    let _ = stop.send(());
    running
        .await
        .expect("the operator's task")
        .expect("the operator stopped cleanly");
}

/// Waits until `probe` gives something.
async fn wait_for<T, F, Fut>(probe: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {DEADLINE:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A TokenReview of `value` over HTTPS to `addr`, trusting `ca` for the verifier Service's
/// name; the answer's JSON.
async fn token_review_https(addr: SocketAddr, ca: &str, value: &str) -> std::io::Result<Value> {
    let mut roots = RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(der.expect("PEM")).expect("a root");
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = format!("{VERIFIER}.{RELEASE_NS}.svc");
    let name = ServerName::try_from(host.clone()).expect("name");
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    let body = token_review_body(value);
    let request = format!(
        "POST /apis/authentication.k8s.io/v1/tokenreviews HTTP/1.1\r\nHost: {host}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await?;
    let mut out = String::new();
    tls.read_to_string(&mut out).await?;
    let (_, json) = out.split_once("\r\n\r\n").unwrap_or_default();
    Ok(serde_json::from_str(json).unwrap_or(Value::Null))
}

/// Waits until the verifier at `addr` authenticates `value` over HTTPS; its TokenReview answer.
async fn wait_until_authenticated(addr: SocketAddr, ca: &str, value: &str) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let review = token_review_https(addr, ca, value)
            .await
            .expect("an HTTPS exchange trusted through the published CA");
        if review["status"]["authenticated"] == json!(true) {
            return review;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not authenticated within {DEADLINE:?}: {review}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The chart registers the webhook with the rules `local` registers (one definition in
/// `admission::registration`): the same operations, resources, failure policy and timeout.
#[test]
fn the_charts_webhook_configuration_matches_the_operators() {
    let helm = require_helm!();
    let docs = template(&helm, &[], &[]);
    let rendered = find(&docs, "ValidatingWebhookConfiguration")[0]["webhooks"][0].clone();
    let ours =
        apikey_operator::admission::registration::configuration(FULLNAME, Default::default());
    let ours = serde_json::to_value(&ours).expect("JSON")["webhooks"][0].clone();
    let without_client = |mut v: Value| {
        v.as_object_mut().expect("a webhook").remove("clientConfig");
        v
    };
    assert_eq!(without_client(rendered.clone()), without_client(ours));
    assert_eq!(rendered["clientConfig"]["service"]["path"], "/validate");
    assert!(
        rendered["clientConfig"]["caBundle"].is_null(),
        "the operator sets it"
    );
}

/// The chart's roles for people join the built-in ones: a user bound to `edit` in a namespace
/// may manage keys and tokens there, but not write their status (the hashes values are
/// checked against), which `edit` itself never grants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_edit_role_manages_keys_and_tokens_but_not_their_status() {
    use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
    let helm = require_helm!();
    let docs = template(&helm, &[], &["--include-crds"]);
    let carol = StaticToken::generate("carol", &[]);
    let cluster = Cluster::start_with(
        RELEASE_NS,
        EmulatorConfig {
            tokens: vec![carol.clone()],
            ..Default::default()
        },
    )
    .await;
    apply_rendered(&cluster, docs).await;
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "carol-edits", "namespace": RELEASE_NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol"}]});
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> = cluster.api(RELEASE_NS);
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(binding).expect("binding"),
        )
        .await
        .expect("carol may edit the namespace");
    let as_carol = Client::try_from(
        cluster
            .emulator
            .config_with_token(&carol.token)
            .expect("carol's config"),
    )
    .expect("carol's client");
    let may = |verb: &str, resource: &str, subresource: &str| {
        let review = json!({"spec": {"resourceAttributes": {"namespace": RELEASE_NS,
            "verb": verb, "group": "apikeys.dev", "resource": resource,
            "subresource": subresource}}});
        let reviews: Api<SelfSubjectAccessReview> = Api::all(as_carol.clone());
        async move {
            let review: SelfSubjectAccessReview = serde_json::from_value(review).expect("review");
            reviews
                .create(&PostParams::default(), &review)
                .await
                .expect("an access review")
                .status
                .expect("status")
                .allowed
        }
    };
    for verb in ["get", "list", "create", "update", "patch", "delete"] {
        for resource in ["apikeys", "apitokens"] {
            assert!(may(verb, resource, "").await, "{verb} {resource}");
            assert!(
                !may(verb, resource, "status").await,
                "{verb} {resource}/status"
            );
        }
    }
    let keys: Api<ApiKey> = Api::namespaced(as_carol, RELEASE_NS);
    keys.list(&Default::default())
        .await
        .expect("edit lists keys");
}
