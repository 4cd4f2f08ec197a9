//! Our CRDs as generated, created on the upstream server: established with no complaint, kept
//! as sent, and served with their CEL rules enforced by upstream CEL.

use apikey_operator::api::ApiKey;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::support::upstream::Upstream;
use crate::support::upstream::differential::{DEADLINE, NS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_crds_are_established_upstream_as_generated() {
    let Some(up) = Upstream::start("our_crds_are_established_upstream_as_generated").await else {
        return;
    };
    let api: Api<CustomResourceDefinition> = Api::all(up.client.clone());
    for crd in apikey_operator::api::crds() {
        let name = crd.name_any();
        api.create(&PostParams::default(), &crd)
            .await
            .unwrap_or_else(|e| panic!("upstream rejects CRD {name}: {e}"));
        let established = tokio::time::timeout(
            DEADLINE,
            kube::runtime::wait::await_condition(
                api.clone(),
                &name,
                kube::runtime::wait::conditions::is_crd_established(),
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("{name} not Established within {DEADLINE:?}"))
        .expect("watch CRD");
        let stored = established.expect("CRD exists");
        let conditions = stored
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        for c in &conditions {
            // NonStructuralSchema / KubernetesAPIApprovalPolicyConformant must not appear.
            assert!(
                matches!(c.type_.as_str(), "NamesAccepted" | "Established"),
                "{name}: unexpected condition {c:?}"
            );
            assert_eq!(c.status, "True", "{name}: {c:?}");
        }
        // Accepted as they are: what the server stores is what we generate (after its defaults).
        let sent = serde_json::to_value(&crd.spec).expect("spec json");
        let kept = serde_json::to_value(&stored.spec).expect("spec json");
        let missing = missing_in(&sent, &kept, "spec");
        assert!(
            missing.is_empty(),
            "{name}: the server changed or dropped: {missing:#?}"
        );
        let version = &stored.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .is_some_and(|s| s.status.is_some())
        );
        assert!(
            !version
                .additional_printer_columns
                .clone()
                .unwrap_or_default()
                .is_empty()
        );
    }
    // The resources are served, with CEL rules evaluated by the upstream code.
    let keys: Api<ApiKey> = Api::namespaced(up.client.clone(), NS);
    let key: ApiKey = serde_json::from_value(json!({
        "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiKey",
        "metadata": {"name": "k1"},
        "spec": {"owner": {"kind": "User", "name": "alice"},
                 "tokenDefaults": {"expiration": {"lifetime": "90d"}}}
    }))
    .expect("ApiKey");
    keys.create(&PostParams::default(), &key)
        .await
        .expect("ApiKey created");
    let err = keys
        .patch(
            "k1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"owner": {"name": "bob"}}})),
        )
        .await
        .expect_err("owner is immutable");
    assert!(
        err.to_string().contains("owner is immutable"),
        "CEL rule message: {err}"
    );
}

/// Every leaf of `sent` that is missing or different in `kept`, as `path: sent != kept`.
fn missing_in(sent: &Value, kept: &Value, path: &str) -> Vec<String> {
    match (sent, kept) {
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .flat_map(|(k, v)| {
                missing_in(v, b.get(k).unwrap_or(&Value::Null), &format!("{path}.{k}"))
            })
            .collect(),
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .flat_map(|(i, (x, y))| missing_in(x, y, &format!("{path}[{i}]")))
            .collect(),
        (a, b) if a == b => Vec::new(),
        (a, b) => vec![format!("{path}: {a} != {b}")],
    }
}
