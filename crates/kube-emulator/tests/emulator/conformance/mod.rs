//! kube::Client conformance of the emulator: each test checks one API server behaviour that
//! kube-rs, kube-runtime or the operator rely on, as a real cluster would answer it.

mod deletion;
mod discovery;
mod events;
mod reads;
mod server;
mod state;
mod writes;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;

const T: Duration = Duration::from_secs(10);

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
        ..Default::default()
    }
}
