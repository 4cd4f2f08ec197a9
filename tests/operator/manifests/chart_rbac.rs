//! The operator with nothing but what the chart gives it: the rendered RBAC and webhook
//! configuration applied to the emulator (which enforces RBAC), the operator started from the
//! rendered Deployment's own arguments, its client authenticated as the chart's ServiceAccount.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::helm_chart::{apply_rendered, find, helm, template};
use crate::support::*;
use apikey_operator::admission::registration::WEBHOOK_NAME;
use apikey_operator::api::{ApiKey, ApiToken};
use apikey_operator::cli::args::{Cli, Command};
use apikey_operator::cli::run;
use clap::Parser;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_emulator::{EmulatorConfig, StaticToken};
use serde_json::{Value, json};

const RELEASE_NS: &str = "apikey-system";
const FULLNAME: &str = "ako-apikey-operator";

/// The rendered Deployment's container arguments, with the environment the pod would give
/// them, and the listen addresses moved to this machine's loopback (the webhook's to `webhook`).
fn deployment_args(docs: &[Value], webhook: SocketAddr) -> Vec<String> {
    let deployment = find(docs, "Deployment")[0];
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args");
    let mut out = vec!["apikey-operator".to_owned()];
    for arg in args {
        let arg = arg
            .as_str()
            .expect("a string")
            .replace("$(POD_NAMESPACE)", RELEASE_NS)
            .replace("$(POD_NAME)", "ako-0");
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

/// Keys and tokens become Ready and their values authenticate, the webhook shares its
/// certificate through the chart's Secret, sets its configuration's `caBundle` and refuses a
/// tenant's key for another user — all on the permissions the chart grants, and no others.
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

    // The operator, as the chart's ServiceAccount.
    let accounts: Api<ServiceAccount> = cluster.api(RELEASE_NS);
    let request: TokenRequest = serde_json::from_value(json!({"spec": {}})).expect("request");
    let token = accounts
        .create_token_request(FULLNAME, &PostParams::default(), &request)
        .await
        .expect("a token for the chart's ServiceAccount")
        .status
        .expect("status")
        .token;
    let config = cluster
        .emulator
        .config_with_token(&token)
        .expect("client config");
    let args = deployment_args(&docs, webhook_addr);
    let Command::Run(run_args) = Cli::try_parse_from(&args)
        .expect("the chart's args parse")
        .command
    else {
        panic!("the chart runs `run`: {args:?}");
    };
    let (_, opts) = run_args.into_options().expect("options");
    let operator = run::bind_operator(config, opts).await.expect("bound");
    let verify = operator.verify_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(operator.run(async move {
        let _ = stopped.await;
    }));

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
    let review = wait_until_authenticated(verify, &value).await;
    assert_eq!(review["status"]["user"]["username"], "alice");

    // The certificate is in the chart's Secret, its CA in the configuration.
    let system_secrets: Api<Secret> = cluster.api(RELEASE_NS);
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

/// Waits until the verifier at `addr` authenticates `value`; its TokenReview answer.
async fn wait_until_authenticated(addr: SocketAddr, value: &str) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let review = token_review(addr, value).await;
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
