//! Who a token may authenticate as, and for whom: the attacks of the threat model
//! (docs/security.md), each refused. Forbidden owners and unbounded rotation are refused by the
//! CRD at admission; a key stored past that rule (with the CRD applied without it, as before an
//! upgrade) is refused by the controller and the verifier; a ServiceAccount key stays bound to
//! its ServiceAccount's uid; token ids are bound to their ApiToken; audiences follow the
//! TokenReview contract.

mod admission;
mod audiences;
mod owner;
mod rotation;
mod token_ids;

use crate::support::*;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};

/// The generated CRD of `kind`, and the same with every CEL rule removed
/// (as an older release had it, or as an admin bypassing admission sees it).
fn crd_with_and_without_rules(kind: &str) -> (serde_json::Value, serde_json::Value) {
    fn no_rules(v: &mut serde_json::Value) {
        if let Some(map) = v.as_object_mut() {
            map.remove("x-kubernetes-validations");
            map.values_mut().for_each(no_rules);
        } else if let Some(list) = v.as_array_mut() {
            list.iter_mut().for_each(no_rules);
        }
    }
    let current = apikey_operator::api::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .expect("the CRD");
    let current = serde_json::to_value(&current).expect("CRD as JSON");
    let mut without = current.clone();
    no_rules(&mut without);
    (current, without)
}

async fn apply_crd(cluster: &Cluster, crd: serde_json::Value) {
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(cluster.client.clone());
    let name = crd["metadata"]["name"].as_str().expect("name").to_owned();
    crds.patch(
        &name,
        &PatchParams::apply("authz-test").force(),
        &Patch::Apply(crd),
    )
    .await
    .expect("CRD applied");
}

/// The message of a create the API server refused (422 Invalid).
async fn refused<K>(api: &kube::Api<K>, yaml: &str) -> String
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    let object: K = apply_yaml(yaml);
    match api.create(&kube::api::PostParams::default(), &object).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            status.message
        }
        other => panic!("expected the API server to refuse {yaml}, got {other:?}"),
    }
}
