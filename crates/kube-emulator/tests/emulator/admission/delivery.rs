//! Calling the webhook: failure policy when it is down, serving certificates, timeouts,
//! service addresses, invalid answers, and dry runs.

use super::*;

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
