//! ValidatingAdmissionPolicies and their bindings, created through the dynamic API, denying
//! as the apiserver does.

use super::*;

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
