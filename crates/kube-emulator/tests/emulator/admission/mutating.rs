//! Mutating webhooks: the JSONPatch they answer with is applied before validating webhooks
//! see the object.

use super::*;

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
