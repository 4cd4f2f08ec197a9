//! The admission webhook, as distinct users against the emulator with RBAC: a tenant cannot
//! create a key or a token whose values would authenticate as someone it cannot act as; owners,
//! platform admins with `impersonate`, a CI ServiceAccount with `serviceaccounts/token` and a
//! GitOps ServiceAccount with the documented role can; the webhook fails closed and keeps its
//! `caBundle` current.

use super::*;
use apikey_operator::admission::{self, WebhookConfig, WebhookTls};
use apikey_operator::api::{ApiKey, ApiToken};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use kube_emulator::{EmulatorConfig, StaticToken};
use serde_json::json;
use tokio::sync::oneshot;

const NS: &str = "team-a";
const CONFIGURATION: &str = "apikey-operator";

/// The emulator with users, RBAC as a platform team would set it up, and the webhook registered.
struct Guarded {
    cluster: Cluster,
    users: Vec<StaticToken>,
    stop: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

impl Guarded {
    async fn start() -> Guarded {
        let users = vec![
            StaticToken::generate("alice", &["team-a"]),
            StaticToken::generate("mallory", &["team-a"]),
            StaticToken::generate("pat", &["platform"]),
        ];
        let cluster = Cluster::start_with(
            NS,
            EmulatorConfig {
                tokens: users.clone(),
                ..Default::default()
            },
        )
        .await;
        let admin = cluster.client.clone();
        for object in [
            // What tenants get in their namespace: ApiKeys and ApiTokens, nothing else.
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "apikeys-edit"},
                "rules": [{"apiGroups": ["apikeys.dev"], "resources": ["apikeys", "apitokens"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "team-a-apikeys", "namespace": NS},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "apikeys-edit"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "team-a"}]}),
            // The platform team may act as anyone, as `kubectl --as` needs.
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "impersonator"},
                "rules": [{"apiGroups": [""], "resources": ["users", "serviceaccounts"], "verbs": ["impersonate"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "platform-impersonates"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "impersonator"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "platform"}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "platform-apikeys"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "apikeys-edit"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "platform"}]}),
            // CI may mint tokens for the deployer ServiceAccount only, as `kubectl create token` needs.
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ci", "namespace": NS}}),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "deployer", "namespace": NS}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": "mint-deployer", "namespace": NS},
                "rules": [{"apiGroups": [""], "resources": ["serviceaccounts/token"],
                    "resourceNames": ["deployer"], "verbs": ["create"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "ci-mints-deployer", "namespace": NS},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "mint-deployer"},
                "subjects": [{"kind": "ServiceAccount", "name": "ci", "namespace": NS}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "ci-apikeys", "namespace": NS},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "apikeys-edit"},
                "subjects": [{"kind": "ServiceAccount", "name": "ci", "namespace": NS}]}),
        ] {
            apply_object(&admin, object).await;
        }

        let webhook = admission::bind(
            admin.clone(),
            WebhookConfig {
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                tls: WebhookTls::Managed {
                    hosts: vec!["127.0.0.1".to_owned()],
                    secret: None,
                },
                configuration: Some(CONFIGURATION.to_owned()),
            },
        )
        .await
        .expect("webhook bound");
        admission::registration::register_url(&admin, CONFIGURATION, &webhook)
            .await
            .expect("webhook registered");
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(webhook.run(async move {
            let _ = stopped.await;
        }));
        Guarded {
            cluster,
            users,
            stop: Some(stop),
            served: Some(served),
        }
    }

    /// A client that authenticates as the static user `name`.
    fn as_user(&self, name: &str) -> Client {
        let user = self
            .users
            .iter()
            .find(|u| u.user.username == name)
            .expect("a static user");
        self.with_token(&user.token)
    }

    fn with_token(&self, token: &str) -> Client {
        let config = self
            .cluster
            .emulator
            .config_with_token(token)
            .expect("client config");
        Client::try_from(config).expect("client")
    }

    /// A client that authenticates as the ServiceAccount `ns/name`, with a TokenRequest token.
    async fn as_service_account(&self, ns: &str, name: &str) -> Client {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.cluster.client.clone(), ns);
        let request: TokenRequest = serde_json::from_value(json!({"spec": {}})).expect("request");
        let issued = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .expect("token issued");
        let token = issued.status.expect("token status").token;
        self.with_token(&token)
    }

    /// Stops the webhook and waits until it has stopped serving.
    async fn stop_webhook(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            let _ = tokio::time::timeout(DEADLINE, served).await;
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Some(served) = self.served.take() {
            served.abort();
        }
    }
}

async fn apply_object(client: &Client, object: serde_json::Value) {
    let kind = object["kind"].as_str().expect("kind").to_owned();
    let name = object["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_owned();
    let ns = object["metadata"]["namespace"].as_str().map(str::to_owned);
    let api_version = object["apiVersion"].as_str().expect("apiVersion");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = kube::core::GroupVersionKind::gvk(group, version, &kind);
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|e| panic!("{kind} is served: {e}"));
    let api: Api<kube::core::DynamicObject> = match &ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.patch(
        &name,
        &kube::api::PatchParams::apply("authz-test").force(),
        &kube::api::Patch::Apply(object),
    )
    .await
    .unwrap_or_else(|e| panic!("{kind} {name} applied: {e}"));
}

/// Creates `yaml` through `api`, which must be refused by the webhook; its message.
async fn denied<K>(api: &Api<K>, yaml: &str) -> String
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    let object: K = apply_yaml(yaml);
    match api.create(&PostParams::default(), &object).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status.message.starts_with(
                    "admission webhook \"authorization.apikeys.dev\" denied the request: "
                ),
                "{}",
                status.message
            );
            status.message
        }
        other => panic!("expected the webhook to refuse {yaml}, got {other:?}"),
    }
}

fn key_yaml(name: &str, kind: &str, owner: &str) -> String {
    format!("metadata: {{name: {name}}}\nspec: {{owner: {{kind: {kind}, name: '{owner}'}}}}")
}

fn token_yaml(name: &str, key: &str) -> String {
    format!("metadata: {{name: {name}}}\nspec: {{apiKeyRef: {{name: {key}}}}}")
}

async fn names<K>(api: &Api<K>) -> Vec<String>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let mut names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .iter()
        .map(|o| o.meta().name.clone().unwrap_or_default())
        .collect();
    names.sort();
    names
}

/// Every attempt of the threat model's admission table, by a tenant who may create ApiKeys and
/// ApiTokens in the namespace: refused by the webhook with a message that says what permission
/// is missing, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_mint_an_identity_it_cannot_act_as() {
    let guarded = Guarded::start().await;
    let alice = guarded.as_user("alice");
    create_key(
        &Api::namespaced(alice.clone(), NS),
        "alice",
        "User",
        "alice",
    )
    .await;

    let mallory = guarded.as_user("mallory");
    let keys: Api<ApiKey> = Api::namespaced(mallory.clone(), NS);
    let tokens: Api<ApiToken> = Api::namespaced(mallory.clone(), NS);

    let message = denied(&keys, &key_yaml("as-alice", "User", "alice")).await;
    assert!(
        message.contains("\"mallory\" may not create an ApiKey owned by user \"alice\"")
            && message.contains("kubectl --as alice"),
        "{message}"
    );
    let message = denied(
        &keys,
        &key_yaml("as-deployer", "ServiceAccount", "deployer"),
    )
    .await;
    assert!(
        message.contains("ServiceAccount team-a/deployer")
            && message.contains("kubectl create token deployer -n team-a"),
        "{message}"
    );
    let message = denied(&tokens, &token_yaml("on-alices-key", "alice")).await;
    assert!(
        message.contains("may not create an ApiToken on ApiKey \"alice\" owned by user \"alice\""),
        "{message}"
    );
    let message = denied(&tokens, &token_yaml("on-a-future-key", "not-yet")).await;
    assert!(
        message.contains(
            "ApiKey \"not-yet\" does not exist in namespace \"team-a\": create the key first"
        ),
        "{message}"
    );
    // `system:` users (a component; a ServiceAccount's user name): the CRD's rule refuses them
    // before the webhook is asked.
    for (name, owner) in [
        ("kcm", "system:kube-controller-manager"),
        ("sa-name", "system:serviceaccount:kube-system:default"),
    ] {
        let system = apply_yaml::<ApiKey>(&key_yaml(name, "User", owner));
        match keys.create(&PostParams::default(), &system).await {
            Err(kube::Error::Api(status)) => assert!(
                status
                    .message
                    .contains("reserved for Kubernetes components"),
                "{status:?}"
            ),
            other => panic!("a key for {owner} went in: {other:?}"),
        }
    }

    let admin_keys: Api<ApiKey> = guarded.cluster.api(NS);
    let admin_tokens: Api<ApiToken> = guarded.cluster.api(NS);
    assert_eq!(names(&admin_keys).await, ["alice"]);
    assert!(names(&admin_tokens).await.is_empty());

    // Changing what does not move the key to another identity is RBAC's business alone.
    create_key(&keys, "mine", "User", "mallory").await;
    create_token(&tokens, "mine", "{apiKeyRef: {name: mine}}").await;
    let relabel = kube::api::Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}}));
    tokens
        .patch("mine", &kube::api::PatchParams::default(), &relabel)
        .await
        .expect("a label on one's own token");
}

/// The positive paths: alice for herself; a platform admin with `impersonate` for her; a CI
/// ServiceAccount with `serviceaccounts/token` for the deployer ServiceAccount; a GitOps
/// ServiceAccount granted the role docs/security.md gives, for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_and_those_who_may_act_as_them_can() {
    let guarded = Guarded::start().await;
    let alice = guarded.as_user("alice");
    create_key(
        &Api::namespaced(alice.clone(), NS),
        "alice",
        "User",
        "alice",
    )
    .await;
    create_token(
        &Api::namespaced(alice, NS),
        "laptop",
        "{apiKeyRef: {name: alice}}",
    )
    .await;

    let pat = guarded.as_user("pat");
    create_key(
        &Api::namespaced(pat.clone(), NS),
        "for-alice",
        "User",
        "alice",
    )
    .await;
    create_token(
        &Api::namespaced(pat.clone(), NS),
        "for-alice",
        "{apiKeyRef: {name: for-alice}}",
    )
    .await;
    // Impersonating a ServiceAccount is enough for its keys too.
    create_key(
        &Api::namespaced(pat, NS),
        "pat-deployer",
        "ServiceAccount",
        "deployer",
    )
    .await;

    let ci = guarded.as_service_account(NS, "ci").await;
    let ci_keys: Api<ApiKey> = Api::namespaced(ci.clone(), NS);
    create_key(&ci_keys, "deployer", "ServiceAccount", "deployer").await;
    create_token(
        &Api::namespaced(ci.clone(), NS),
        "deploy",
        "{apiKeyRef: {name: deployer}}",
    )
    .await;
    // Its permission names one ServiceAccount: not itself, not another.
    let message = denied(&ci_keys, &key_yaml("ci", "ServiceAccount", "ci")).await;
    assert!(
        message.contains("kubectl create token ci -n team-a"),
        "{message}"
    );

    // Argo CD's application controller, with the documented role only.
    let admin = guarded.cluster.client.clone();
    apply_object(
        &admin,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}}),
    )
    .await;
    apply_object(
        &admin,
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "argocd-application-controller", "namespace": "argocd"}}),
    )
    .await;
    apply_object(&admin, documented_gitops_role()).await;
    apply_object(&admin, json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "argocd-apikeys"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "apikeys-gitops"},
        "subjects": [{"kind": "ServiceAccount", "name": "argocd-application-controller", "namespace": "argocd"}]})).await;
    let argo = guarded
        .as_service_account("argocd", "argocd-application-controller")
        .await;
    let argo_keys: Api<ApiKey> = Api::namespaced(argo.clone(), NS);
    let argo_tokens: Api<ApiToken> = Api::namespaced(argo, NS);
    create_key(&argo_keys, "gitops-alice", "User", "alice").await;
    create_token(
        &argo_tokens,
        "gitops-alice",
        "{apiKeyRef: {name: gitops-alice}}",
    )
    .await;
    create_key(&argo_keys, "gitops-deployer", "ServiceAccount", "deployer").await;
    create_token(
        &argo_tokens,
        "gitops-deployer",
        "{apiKeyRef: {name: gitops-deployer}}",
    )
    .await;

    let namespaces: Api<Namespace> = Api::all(admin);
    assert!(namespaces.get_opt("argocd").await.expect("get").is_some());
}

/// The `apikeys-gitops` ClusterRole as docs/security.md shows it.
fn documented_gitops_role() -> serde_json::Value {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/security.md"))
        .expect("docs/security.md");
    let block = doc
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .find(|block| block.contains("name: apikeys-gitops"))
        .expect("the documented apikeys-gitops role");
    serde_yaml::from_str(block).expect("the documented role parses")
}

/// The webhook unreachable: every create is refused (`failurePolicy: Fail`) and nothing is
/// stored. Before that, a `caBundle` overwritten by someone else (a `helm upgrade`) is put back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_fails_closed_and_restores_its_ca_bundle() {
    let mut guarded = Guarded::start().await;
    let alice: Api<ApiKey> = Api::namespaced(guarded.as_user("alice"), NS);
    let configurations: Api<ValidatingWebhookConfiguration> =
        Api::all(guarded.cluster.client.clone());
    let ours = configurations.get(CONFIGURATION).await.expect("registered");
    let bundle = |c: &ValidatingWebhookConfiguration| {
        c.webhooks.as_ref().expect("webhooks")[0]
            .client_config
            .ca_bundle
            .clone()
    };
    let good = bundle(&ours).expect("a caBundle");

    let stranger = apikey_operator::certs::Authority::new(jiff::Timestamp::now()).expect("a CA");
    let mut overwritten = ours.clone();
    overwritten.webhooks.as_mut().expect("webhooks")[0]
        .client_config
        .ca_bundle = Some(ByteString(stranger.cert_pem.into_bytes()));
    configurations
        .replace(CONFIGURATION, &PostParams::default(), &overwritten)
        .await
        .expect("bundle overwritten");
    let restored = wait_for(
        &configurations,
        CONFIGURATION,
        "the operator's caBundle back",
        |c: Option<&ValidatingWebhookConfiguration>| c.and_then(bundle).as_ref() == Some(&good),
    )
    .await;
    assert_eq!(bundle(&restored), Some(good));
    create_key(&alice, "alice", "User", "alice").await;

    guarded.stop_webhook().await;
    let object = apply_yaml::<ApiKey>(&key_yaml("while-down", "User", "alice"));
    match alice.create(&PostParams::default(), &object).await {
        Err(kube::Error::Api(status)) => assert!(
            status
                .message
                .contains("failed calling webhook \"authorization.apikeys.dev\""),
            "{status:?}"
        ),
        other => panic!("expected a refusal while the webhook is down, got {other:?}"),
    }
    let admin_keys: Api<ApiKey> = guarded.cluster.api(NS);
    assert_eq!(names(&admin_keys).await, ["alice"]);
}
