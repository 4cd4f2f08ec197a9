//! What reaches a validating webhook and what comes back: denials, the review's contents,
//! patch/apply as create/update, and rules, selectors, match conditions and subresources.

use super::*;

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
