//! Section: what authorization costs. The scale section's burst (n tokens created at once, until
//! all are Ready) on fresh stacks, side by side and interleaved: the operator as the emulator's
//! admin with no webhook (as the scale section runs it), and the operator as a ServiceAccount
//! with exactly the chart's RBAC (`apikey_operator::rbac`; every request of it RBAC-evaluated)
//! and its admission webhook registered (every key and token create reviewed: a key lookup and a
//! SubjectAccessReview). The goal (issue 21): at most 10 % slower.

use super::*;
use apikey_operator::rbac::{self, Install};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use kube_emulator::StaticToken;

const RELEASE_NS: &str = "apikey-system";
const ACCOUNT: &str = "apikey-operator";
const CONFIGURATION: &str = "apikey-operator";

/// One burst: time until all Ready, and the CPU of the operator and of this process (the
/// emulator, where RBAC and the webhook calls are paid).
struct Burst {
    to_ready: Duration,
    cpu: Duration,
}

pub(crate) async fn authz_overhead(n: usize, rounds: usize) -> Vec<Figure> {
    let mut plain = Vec::new();
    let mut authorized = Vec::new();
    for _ in 0..rounds {
        plain.push(burst(n, false).await);
        authorized.push(burst(n, true).await);
    }
    let median = |bursts: &mut Vec<Burst>, of: fn(&Burst) -> Duration| {
        let mut values: Vec<Duration> = bursts.iter().map(of).collect();
        values.sort();
        values[values.len() / 2]
    };
    let label = |what: &str| format!("{what} ({n} tokens, median of {rounds})");
    let (ready_a, ready_p) = (
        median(&mut authorized, |b| b.to_ready),
        median(&mut plain, |b| b.to_ready),
    );
    let (cpu_a, cpu_p) = (
        median(&mut authorized, |b| b.cpu),
        median(&mut plain, |b| b.cpu),
    );
    vec![
        figure(
            "authz",
            label("time until all Ready, RBAC + webhook"),
            ms(ready_a),
            format!("{} (admin, no webhook)", ms(ready_p)),
            ratio(ready_a.as_secs_f64(), ready_p.as_secs_f64()),
            "≤ 1.10",
        ),
        figure(
            "authz",
            label("CPU, operator + API server, RBAC + webhook"),
            ms(cpu_a),
            format!("{} (admin, no webhook)", ms(cpu_p)),
            ratio(cpu_a.as_secs_f64(), cpu_p.as_secs_f64()),
            "≤ 1.10",
        ),
    ]
}

async fn burst(n: usize, authorized: bool) -> Burst {
    let namespaces = (n / 100).clamp(1, 100);
    let token = StaticToken::generate(
        &format!("system:serviceaccount:{RELEASE_NS}:{ACCOUNT}"),
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:apikey-system",
        ],
    );
    let s = stack_with(vec![token.clone()]).await;
    create_namespaces(&s.client, (0..namespaces).map(|i| format!("bench-{i}"))).await;
    let op = if authorized {
        let port = free_port();
        let kubeconfig = authorize(&s, &token.token, port).await;
        let addr = format!("127.0.0.1:{port}");
        let op = Operator::start_with(
            &s,
            &kubeconfig,
            &[
                "--webhook-addr",
                &addr,
                "--webhook-configuration",
                CONFIGURATION,
            ],
        );
        wait_for_ca_bundle(&s.client).await;
        op
    } else {
        Operator::start(&s)
    };
    create_keys(&s.client, "bench", namespaces).await;
    let here = std::process::id();
    let cpu_at_start = (cpu_time(op.pid()), cpu_time(here));
    let start = Instant::now();
    let client = s.client.clone();
    let watch = tokio::spawn({
        let client = client.clone();
        async move { all_ready(&client, None, n, Duration::from_secs(900)).await }
    });
    concurrently(n, |i| {
        let api: Api<ApiToken> = Api::namespaced(client.clone(), &format!("bench-{}", i % namespaces));
        async move {
            let t: ApiToken = serde_json::from_value(json!({
                "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken",
                "metadata": {"name": format!("t-{i}")},
                "spec": {"apiKeyRef": {"name": "key"}, "expiration": {"lifetime": "90d"}, "rotation": {"every": "30d"}}
            }))
            .expect("token");
            api.create(&PostParams::default(), &t).await.expect("token create");
        }
    })
    .await;
    let done = watch.await.ok().flatten().expect("all tokens Ready");
    let cpu = cpu_time(op.pid()).saturating_sub(cpu_at_start.0)
        + cpu_time(here).saturating_sub(cpu_at_start.1);
    op.stop();
    Burst {
        to_ready: done - start,
        cpu,
    }
}

/// The ServiceAccount and the chart's RBAC for it, the webhook's configuration (by URL, no
/// CA yet: the operator sets it), and a kubeconfig with the ServiceAccount's token.
async fn authorize(s: &Stack, token: &str, webhook_port: u16) -> std::path::PathBuf {
    let install = Install {
        fullname: ACCOUNT.to_owned(),
        namespace: RELEASE_NS.to_owned(),
        watch_namespace: None,
        restart_targets: false,
        cert_manager: false,
        verifier_managed_tls: false,
        // The verifier runs in the operator's process here, as one ServiceAccount.
        verifier_separate: false,
        leader_election: false,
    };
    let mut objects = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": RELEASE_NS}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": ACCOUNT, "namespace": RELEASE_NS}}),
    ];
    objects.extend(rbac::objects(
        &rbac::roles(&install),
        (RELEASE_NS, ACCOUNT),
        (RELEASE_NS, ACCOUNT),
    ));
    let text = objects
        .iter()
        .map(|o| serde_json::to_string(o).expect("json"))
        .collect::<Vec<_>>()
        .join("\n---\n");
    apikey_operator::cli::apply::apply_manifests(&s.client, "RBAC", &text)
        .await
        .expect("RBAC applied");
    let client_config = serde_json::from_value(json!({
        "url": format!("https://127.0.0.1:{webhook_port}/validate"),
    }))
    .expect("client config");
    let configuration =
        apikey_operator::admission::registration::configuration(CONFIGURATION, client_config);
    let api: Api<ValidatingWebhookConfiguration> = Api::all(s.client.clone());
    api.create(&PostParams::default(), &configuration)
        .await
        .expect("webhook registered");
    let kubeconfig = s.kubeconfig.with_file_name("operator-sa.kubeconfig");
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: e, cluster: {{server: '{}'}}}}]\n\
         users: [{{name: sa, user: {{token: '{token}'}}}}]\n\
         contexts: [{{name: sa, context: {{cluster: e, user: sa}}}}]\ncurrent-context: sa\n",
        s.emulator.url()
    );
    std::fs::write(&kubeconfig, yaml).expect("kubeconfig");
    kubeconfig
}

/// Waits until the operator has set the webhook configuration's CA bundle.
async fn wait_for_ca_bundle(client: &Client) {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        let set = api.get(CONFIGURATION).await.ok().is_some_and(|c| {
            c.webhooks
                .iter()
                .flatten()
                .all(|w| w.client_config.ca_bundle.is_some())
        });
        if set {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the operator did not set the webhook's caBundle within 60 s");
}
