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

/// How the operator runs in a burst.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// As the emulator's admin, no webhook: the scale section.
    Plain,
    /// As the ServiceAccount with the chart's RBAC, no webhook.
    RbacOnly,
    /// As the ServiceAccount with the chart's RBAC, and a webhook that allows every request
    /// without looking anything up: what any validating webhook costs.
    TrivialWebhook,
    /// As the ServiceAccount with the chart's RBAC, and the operator's webhook.
    Authorized,
}

pub(crate) async fn authz_overhead(n: usize, rounds: usize) -> Vec<Figure> {
    let mut plain = Vec::new();
    let mut rbac_only = Vec::new();
    let mut trivial = Vec::new();
    let mut authorized = Vec::new();
    for _ in 0..rounds {
        plain.push(burst(n, Mode::Plain).await);
        rbac_only.push(burst(n, Mode::RbacOnly).await);
        trivial.push(burst(n, Mode::TrivialWebhook).await);
        authorized.push(burst(n, Mode::Authorized).await);
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
    let (ready_r, cpu_r) = (
        median(&mut rbac_only, |b| b.to_ready),
        median(&mut rbac_only, |b| b.cpu),
    );
    let (ready_t, cpu_t) = (
        median(&mut trivial, |b| b.to_ready),
        median(&mut trivial, |b| b.cpu),
    );
    vec![
        figure(
            "authz",
            label("time until all Ready, RBAC only"),
            ms(ready_r),
            format!("{} (admin, no webhook)", ms(ready_p)),
            ratio(ready_r.as_secs_f64(), ready_p.as_secs_f64()),
            "≤ 1.10",
        ),
        figure(
            "authz",
            label("CPU, RBAC only"),
            ms(cpu_r),
            format!("{} (admin, no webhook)", ms(cpu_p)),
            ratio(cpu_r.as_secs_f64(), cpu_p.as_secs_f64()),
            "≤ 1.10",
        ),
        figure(
            "authz",
            label("time until all Ready, RBAC + a webhook that only allows"),
            ms(ready_t),
            format!("{} (admin, no webhook)", ms(ready_p)),
            ratio(ready_t.as_secs_f64(), ready_p.as_secs_f64()),
            "-",
        ),
        figure(
            "authz",
            label("CPU, RBAC + a webhook that only allows"),
            ms(cpu_t),
            format!("{} (admin, no webhook)", ms(cpu_p)),
            ratio(cpu_t.as_secs_f64(), cpu_p.as_secs_f64()),
            "-",
        ),
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

async fn burst(n: usize, mode: Mode) -> Burst {
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
    let mut trivial_hook = None;
    let op = match mode {
        Mode::Plain => Operator::start(&s),
        Mode::RbacOnly => {
            let kubeconfig = authorize(&s, &token.token, None).await;
            Operator::start_with(&s, &kubeconfig, &["--webhook-addr", "127.0.0.1:0"])
        }
        Mode::Authorized => {
            let port = free_port();
            let kubeconfig = authorize(&s, &token.token, Some((port, None))).await;
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
        }
        Mode::TrivialWebhook => {
            let (port, ca, server) = allow_all_webhook().await;
            trivial_hook = Some(server);
            let kubeconfig = authorize(&s, &token.token, Some((port, Some(ca)))).await;
            Operator::start_with(&s, &kubeconfig, &["--webhook-addr", "127.0.0.1:0"])
        }
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
    create_tokens(&client, n, namespaces).await;
    let done = watch.await.ok().flatten().expect("all tokens Ready");
    let cpu = cpu_time(op.pid()).saturating_sub(cpu_at_start.0)
        + cpu_time(here).saturating_sub(cpu_at_start.1);
    op.stop();
    if let Some(server) = trivial_hook {
        server.abort();
    }
    Burst {
        to_ready: done - start,
        cpu,
    }
}

/// The ServiceAccount and the chart's RBAC for it, the webhook's configuration (by URL, no
/// CA yet: the operator sets it), and a kubeconfig with the ServiceAccount's token.
async fn authorize(
    s: &Stack,
    token: &str,
    webhook: Option<(u16, Option<String>)>,
) -> std::path::PathBuf {
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
    let objects = rbac::install_objects(&install, ACCOUNT, ACCOUNT);
    apikey_operator::cli::apply::apply_objects(&s.client, "RBAC", &objects)
        .await
        .expect("RBAC applied");
    if let Some((webhook_port, ca_bundle)) = webhook {
        let mut client_config: k8s_openapi::api::admissionregistration::v1::WebhookClientConfig =
            serde_json::from_value(json!({
                "url": format!("https://127.0.0.1:{webhook_port}/validate"),
            }))
            .expect("client config");
        client_config.ca_bundle = ca_bundle.map(|pem| k8s_openapi::ByteString(pem.into_bytes()));
        let configuration =
            apikey_operator::admission::registration::configuration(CONFIGURATION, client_config);
        let api: Api<ValidatingWebhookConfiguration> = Api::all(s.client.clone());
        api.create(&PostParams::default(), &configuration)
            .await
            .expect("webhook registered");
    }
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

/// An HTTPS webhook that allows every AdmissionReview without looking anything up: its port,
/// its CA (PEM) and the task serving it.
async fn allow_all_webhook() -> (u16, String, tokio::task::JoinHandle<()>) {
    use apikey_operator::certs::{Authority, CertStore};
    use axum::routing::post;
    let now = jiff::Timestamp::now();
    let ca = Authority::new(now).expect("CA");
    let serving = ca
        .issue(&["127.0.0.1".to_owned()], now)
        .expect("certificate");
    let store: Arc<dyn apikey_operator::serve::TlsSource> =
        Arc::new(CertStore::new(ca.cert_pem.clone(), &serving).expect("store"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let router = axum::Router::new().route(
        "/validate",
        post(
            |axum::Json(review): axum::Json<serde_json::Value>| async move {
                axum::Json(json!({
                    "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "response": {"uid": review["request"]["uid"], "allowed": true},
                }))
            },
        ),
    );
    let server = tokio::spawn(apikey_operator::serve::serve(
        listener,
        router,
        Some(store),
        futures::future::pending::<()>(),
    ));
    (port, ca.cert_pem, server)
}
