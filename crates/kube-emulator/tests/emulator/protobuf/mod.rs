//! Protobuf request bodies: `protobuf::decode` on messages encoded with prost from k8s-pb
//! values (one table per group of kinds, plus bytes the Go encoder wrote), the errors a bad
//! body gets over HTTP, and kubectl 1.32's typed `create` commands, whose objects must read
//! back as the JSON `kubectl apply` of the same object stores.

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::authentication::v1 as authn;
use k8s_pb::api::authorization::v1 as authz;
use k8s_pb::api::coordination::v1 as coordination;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::rbac::v1 as rbac;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use kube_emulator::protobuf::{DecodeError, Expected, decode};
use prost::Message;
use serde_json::{Value, json};

use crate::support::*;

mod apps_kinds;
mod core_kinds;
mod decode_errors;
mod http;
mod kubectl_create;
mod rbac_kinds;
mod review_kinds;

/// `k8s\0` + runtime.Unknown around `message`, as client-go's protobuf serializer writes it
/// (contentEncoding and contentType present and empty).
fn envelope(api_version: &str, kind: &str, message: &impl Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(message.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

/// ObjectMeta as Go encodes an unset one: every non-pointer field present and empty.
fn go_meta(name: &str) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: Some(name.into()),
        generate_name: Some(String::new()),
        namespace: Some(String::new()),
        self_link: Some(String::new()),
        uid: Some(String::new()),
        resource_version: Some(String::new()),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        ..Default::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn expect(api_version: &'static str, kind: &'static str) -> Expected<'static> {
    Expected { api_version, kind }
}

/// Decodes each body and compares it with the JSON Go's encoder writes for the same struct.
fn check_table(cases: Vec<(&str, Vec<u8>, Expected, Value)>) {
    for (what, body, expected, want) in cases {
        let got = decode(&body, expected).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(got, want, "{what}");
    }
}

/// The Deployment `kubectl create deployment web --image=nginx --port=80` builds, plus a
/// rolling update with both IntOrString forms and an env/resources container.
fn deployment(spec_tweak: impl FnOnce(&mut core::PodSpec)) -> apps::Deployment {
    let app = labels(&[("app", "web")]);
    let mut pod = core::PodSpec {
        containers: vec![core::Container {
            name: Some("nginx".into()),
            image: Some("nginx".into()),
            command: vec!["nginx".into(), "-g".into()],
            ports: vec![core::ContainerPort {
                container_port: Some(80),
                host_port: Some(0),
                name: Some(String::new()),
                protocol: Some(String::new()),
                host_ip: Some(String::new()),
            }],
            env: vec![
                core::EnvVar {
                    name: Some("MODE".into()),
                    value: Some("fast".into()),
                    value_from: None,
                },
                core::EnvVar {
                    name: Some("TOKEN".into()),
                    value: Some(String::new()),
                    value_from: Some(core::EnvVarSource {
                        secret_key_ref: Some(core::SecretKeySelector {
                            local_object_reference: Some(core::LocalObjectReference {
                                name: Some("s1".into()),
                            }),
                            key: Some("token".into()),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                },
            ],
            resources: Some(core::ResourceRequirements {
                limits: [(
                    "cpu".to_string(),
                    Quantity {
                        string: Some("500m".into()),
                    },
                )]
                .into(),
                ..Default::default()
            }),
            working_dir: Some(String::new()),
            termination_message_path: Some(String::new()),
            image_pull_policy: Some(String::new()),
            stdin: Some(false),
            tty: Some(false),
            ..Default::default()
        }],
        restart_policy: Some(String::new()),
        dns_policy: Some(String::new()),
        host_network: Some(false),
        service_account_name: Some(String::new()),
        ..Default::default()
    };
    spec_tweak(&mut pod);
    apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            labels: app.clone(),
            ..go_meta("web")
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            selector: Some(meta::LabelSelector {
                match_labels: app.clone(),
                match_expressions: vec![],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: app,
                    ..go_meta("")
                }),
                spec: Some(pod),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: Some("RollingUpdate".into()),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(1),
                        str_val: Some(String::new()),
                    }),
                    max_surge: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: Some("25%".into()),
                    }),
                }),
            }),
            min_ready_seconds: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus::default()),
    }
}
