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

#[test]
fn core_kinds_decode_as_go_writes_their_json() {
    let ns = core::Namespace {
        metadata: Some(go_meta("team-a")),
        spec: Some(core::NamespaceSpec::default()),
        status: Some(core::NamespaceStatus {
            phase: Some(String::new()),
            conditions: vec![],
        }),
    };
    let sa = core::ServiceAccount {
        metadata: Some(meta::ObjectMeta {
            namespace: Some("default".into()),
            labels: labels(&[("team", "a")]),
            ..go_meta("robot")
        }),
        secrets: vec![core::ObjectReference {
            name: Some("robot-token".into()),
            ..Default::default()
        }],
        image_pull_secrets: vec![core::LocalObjectReference {
            name: Some("registry".into()),
        }],
        // A pointer: false is kept.
        automount_service_account_token: Some(false),
    };
    let secret = core::Secret {
        metadata: Some(go_meta("s1")),
        data: [("a".to_string(), b"b".to_vec())].into(),
        r#type: Some("foo".into()),
        immutable: Some(true),
        ..Default::default()
    };
    let cm = core::ConfigMap {
        metadata: Some(go_meta("c1")),
        data: labels(&[("mode", "fast")]),
        binary_data: [("bin".to_string(), vec![0u8, 1, 2])].into(),
        immutable: None,
    };
    let lease = coordination::Lease {
        metadata: Some(go_meta("leader")),
        spec: Some(coordination::LeaseSpec {
            holder_identity: Some("pod-1".into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(meta::MicroTime {
                seconds: Some(1_800_000_000),
                nanos: Some(123_456_789),
            }),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    };
    check_table(vec![
        (
            "namespace",
            envelope("v1", "Namespace", &ns),
            expect("v1", "Namespace"),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"},
                   "spec": {}, "status": {}}),
        ),
        (
            "serviceaccount",
            envelope("v1", "ServiceAccount", &sa),
            expect("v1", "ServiceAccount"),
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "robot", "namespace": "default", "labels": {"team": "a"}},
                   "secrets": [{"name": "robot-token"}],
                   "imagePullSecrets": [{"name": "registry"}],
                   "automountServiceAccountToken": false}),
        ),
        (
            "secret: bytes as base64",
            envelope("v1", "Secret", &secret),
            expect("v1", "Secret"),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"},
                   "data": {"a": "Yg=="}, "type": "foo", "immutable": true}),
        ),
        (
            "configmap",
            envelope("v1", "ConfigMap", &cm),
            expect("v1", "ConfigMap"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"},
                   "data": {"mode": "fast"}, "binaryData": {"bin": "AAEC"}}),
        ),
        (
            "lease: MicroTime with microseconds",
            envelope("coordination.k8s.io/v1", "Lease", &lease),
            expect("coordination.k8s.io/v1", "Lease"),
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                   "metadata": {"name": "leader"},
                   "spec": {"holderIdentity": "pod-1", "leaseDurationSeconds": 15,
                            "renewTime": "2027-01-15T08:00:00.123456Z", "leaseTransitions": 0}}),
        ),
    ]);
}

#[test]
fn object_meta_converts_every_field() {
    let m = meta::ObjectMeta {
        name: Some("c1".into()),
        generate_name: Some("c-".into()),
        namespace: Some("ns".into()),
        uid: Some("u-1".into()),
        resource_version: Some("7".into()),
        generation: Some(2),
        creation_timestamp: Some(meta::Time {
            seconds: Some(1_800_000_000),
            nanos: Some(0),
        }),
        deletion_grace_period_seconds: Some(0),
        labels: labels(&[("app", "web")]),
        annotations: labels(&[("note", "x")]),
        owner_references: vec![meta::OwnerReference {
            api_version: Some("v1".into()),
            kind: Some("Secret".into()),
            name: Some("owner".into()),
            uid: Some("u-0".into()),
            controller: Some(true),
            block_owner_deletion: None,
        }],
        finalizers: vec!["example.com/keep".into()],
        managed_fields: vec![meta::ManagedFieldsEntry {
            manager: Some("kubectl".into()),
            operation: Some("Update".into()),
            api_version: Some("v1".into()),
            fields_type: Some("FieldsV1".into()),
            fields_v1: Some(meta::FieldsV1 {
                raw: Some(br#"{"f:data":{}}"#.to_vec()),
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let cm = core::ConfigMap {
        metadata: Some(m),
        ..Default::default()
    };
    check_table(vec![(
        "metadata",
        envelope("v1", "ConfigMap", &cm),
        expect("v1", "ConfigMap"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": "c1", "generateName": "c-", "namespace": "ns", "uid": "u-1",
            "resourceVersion": "7", "generation": 2,
            "creationTimestamp": "2027-01-15T08:00:00Z", "deletionGracePeriodSeconds": 0,
            "labels": {"app": "web"}, "annotations": {"note": "x"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Secret", "name": "owner",
                                 "uid": "u-0", "controller": true}],
            "finalizers": ["example.com/keep"],
            "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                               "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}}],
        }}),
    )]);
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

#[test]
fn deployments_and_daemonsets_decode_with_their_pod_template() {
    let daemon_set = apps::DaemonSet {
        metadata: Some(go_meta("agent")),
        spec: Some(apps::DaemonSetSpec {
            selector: Some(meta::LabelSelector {
                match_labels: labels(&[("app", "agent")]),
                match_expressions: vec![meta::LabelSelectorRequirement {
                    key: Some("tier".into()),
                    operator: Some("In".into()),
                    values: vec!["node".into()],
                }],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(go_meta("")),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: Some("agent".into()),
                        image: Some("agent:1".into()),
                        ..Default::default()
                    }],
                    tolerations: vec![core::Toleration {
                        operator: Some("Exists".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    check_table(vec![
        (
            "deployment",
            envelope("apps/v1", "Deployment", &deployment(|_| {})),
            expect("apps/v1", "Deployment"),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{
                            "name": "nginx", "image": "nginx", "command": ["nginx", "-g"],
                            "ports": [{"containerPort": 80}],
                            "env": [{"name": "MODE", "value": "fast"},
                                    {"name": "TOKEN", "valueFrom": {"secretKeyRef":
                                        {"name": "s1", "key": "token"}}}],
                            "resources": {"limits": {"cpu": "500m"}},
                        }]},
                    },
                    "strategy": {"type": "RollingUpdate",
                                 "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}},
                },
                "status": {}}),
        ),
        (
            "daemonset",
            envelope("apps/v1", "DaemonSet", &daemon_set),
            expect("apps/v1", "DaemonSet"),
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
                "spec": {
                    "selector": {"matchLabels": {"app": "agent"}, "matchExpressions": [
                        {"key": "tier", "operator": "In", "values": ["node"]}]},
                    "template": {"metadata": {}, "spec": {
                        "containers": [{"name": "agent", "image": "agent:1", "resources": {}}],
                        "tolerations": [{"operator": "Exists"}]}},
                    "updateStrategy": {},
                },
                "status": {"currentNumberScheduled": 0, "numberMisscheduled": 0,
                           "desiredNumberScheduled": 0, "numberReady": 0}}),
        ),
    ]);
}

/// Sets one field of the Deployment's pod spec.
type PodTweak = Box<dyn FnOnce(&mut core::PodSpec)>;

#[test]
fn unconverted_pod_fields_are_refused_with_415_naming_the_field() {
    let cases: Vec<(PodTweak, &str)> = vec![
        (
            Box::new(|p| {
                p.volumes = vec![core::Volume {
                    name: Some("data".into()),
                    ..Default::default()
                }]
            }),
            "spec.template.spec.volumes",
        ),
        (
            Box::new(|p| p.affinity = Some(core::Affinity::default())),
            "spec.template.spec.affinity",
        ),
        (
            Box::new(|p| p.containers[0].liveness_probe = Some(core::Probe::default())),
            "spec.template.spec.containers[0].livenessProbe",
        ),
        (
            Box::new(|p| {
                p.containers[0].volume_mounts = vec![core::VolumeMount::default()];
            }),
            "spec.template.spec.containers[0].volumeMounts",
        ),
        (
            Box::new(|p| {
                p.init_containers = vec![core::Container {
                    name: Some("init".into()),
                    security_context: Some(core::SecurityContext::default()),
                    ..Default::default()
                }];
            }),
            "spec.template.spec.initContainers[0].securityContext",
        ),
    ];
    for (tweak, field) in cases {
        let body = envelope("apps/v1", "Deployment", &deployment(tweak));
        let err = decode(&body, expect("apps/v1", "Deployment")).expect_err(field);
        assert_eq!(
            err,
            DecodeError::FieldNotDecoded {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                field: field.into(),
            }
        );
        assert_eq!(err.code(), 415);
        let message = err.to_string();
        assert!(
            message.contains("application/vnd.kubernetes.protobuf")
                && message.contains("Deployment")
                && message.contains(field),
            "{message}"
        );
    }
}

#[test]
fn rbac_kinds_decode_as_kubectl_create_sends_them() {
    let rule = rbac::PolicyRule {
        verbs: vec!["get".into(), "list".into()],
        api_groups: vec![String::new()],
        resources: vec!["secrets".into()],
        resource_names: vec!["s1".into()],
        non_resource_ur_ls: vec![],
    };
    let role = rbac::Role {
        metadata: Some(go_meta("reader")),
        rules: vec![rule],
    };
    let aggregated = rbac::ClusterRole {
        metadata: Some(go_meta("agg")),
        rules: vec![],
        aggregation_rule: Some(rbac::AggregationRule {
            cluster_role_selectors: vec![meta::LabelSelector {
                match_labels: labels(&[("a", "b")]),
                match_expressions: vec![],
            }],
        }),
    };
    let subjects = vec![
        rbac::Subject {
            kind: Some("User".into()),
            api_group: Some("rbac.authorization.k8s.io".into()),
            name: Some("alice".into()),
            namespace: Some(String::new()),
        },
        rbac::Subject {
            kind: Some("ServiceAccount".into()),
            api_group: Some(String::new()),
            name: Some("robot".into()),
            namespace: Some("default".into()),
        },
    ];
    let role_ref = |kind: &str, name: &str| rbac::RoleRef {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: Some(kind.into()),
        name: Some(name.into()),
    };
    let binding = rbac::RoleBinding {
        metadata: Some(go_meta("rb")),
        subjects: subjects.clone(),
        role_ref: Some(role_ref("Role", "reader")),
    };
    let cluster_binding = rbac::ClusterRoleBinding {
        metadata: Some(go_meta("crb")),
        subjects: subjects[..1].to_vec(),
        role_ref: Some(role_ref("ClusterRole", "agg")),
    };
    let gv = "rbac.authorization.k8s.io/v1";
    let subjects_json = json!([
        {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"},
        {"kind": "ServiceAccount", "name": "robot", "namespace": "default"},
    ]);
    check_table(vec![
        (
            "role",
            envelope(gv, "Role", &role),
            expect(gv, "Role"),
            json!({"apiVersion": gv, "kind": "Role", "metadata": {"name": "reader"},
                   "rules": [{"verbs": ["get", "list"], "apiGroups": [""],
                              "resources": ["secrets"], "resourceNames": ["s1"]}]}),
        ),
        (
            // `rules` has no omitempty: kubectl's own JSON says `"rules": null` here too.
            "aggregated clusterrole",
            envelope(gv, "ClusterRole", &aggregated),
            expect(gv, "ClusterRole"),
            json!({"apiVersion": gv, "kind": "ClusterRole", "metadata": {"name": "agg"},
                   "rules": null,
                   "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]}}),
        ),
        (
            "rolebinding",
            envelope(gv, "RoleBinding", &binding),
            expect(gv, "RoleBinding"),
            json!({"apiVersion": gv, "kind": "RoleBinding", "metadata": {"name": "rb"},
                   "subjects": subjects_json,
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                               "name": "reader"}}),
        ),
        (
            "clusterrolebinding",
            envelope(gv, "ClusterRoleBinding", &cluster_binding),
            expect(gv, "ClusterRoleBinding"),
            json!({"apiVersion": gv, "kind": "ClusterRoleBinding", "metadata": {"name": "crb"},
                   "subjects": [subjects_json[0].clone()],
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                               "name": "agg"}}),
        ),
    ]);
}

/// Bytes Go's `protobuf.NewSerializer` wrote for
/// `TokenRequest{spec:{audiences:["api"], expirationSeconds:600}}` (kubernetes-authn-authz
/// reference, 1.3): every non-pointer field present and empty.
const GO_TOKEN_REQUEST: &str = "6b387300\
    0a280a1861757468656e7469636174696f6e2e6b38732e696f2f7631120c546f6b656e52657175657374\
    1222\
    0a100a0012001a0022002a0032003800420012080a0361706920d8041a040a001200\
    1a002200";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

#[test]
fn authentication_and_authorization_reviews_decode() {
    let authn_gv = "authentication.k8s.io/v1";
    let authz_gv = "authorization.k8s.io/v1";
    let attributes = authz::ResourceAttributes {
        namespace: Some("default".into()),
        verb: Some("get".into()),
        group: Some(String::new()),
        version: Some(String::new()),
        resource: Some("secrets".into()),
        subresource: Some(String::new()),
        name: Some(String::new()),
        field_selector: None,
        label_selector: None,
    };
    let go_status = || authz::SubjectAccessReviewStatus {
        allowed: Some(false),
        denied: Some(false),
        reason: Some(String::new()),
        evaluation_error: Some(String::new()),
    };
    let ssar = authz::SelfSubjectAccessReview {
        metadata: Some(go_meta("")),
        spec: Some(authz::SelfSubjectAccessReviewSpec {
            resource_attributes: Some(attributes.clone()),
            non_resource_attributes: None,
        }),
        status: Some(go_status()),
    };
    let sar = authz::SubjectAccessReview {
        metadata: Some(go_meta("")),
        spec: Some(authz::SubjectAccessReviewSpec {
            non_resource_attributes: Some(authz::NonResourceAttributes {
                path: Some("/healthz".into()),
                verb: Some("get".into()),
            }),
            user: Some("alice".into()),
            groups: vec!["team-a".into()],
            extra: [(
                "scopes".to_string(),
                authz::ExtraValue {
                    items: vec!["x".into()],
                },
            )]
            .into(),
            uid: Some(String::new()),
            resource_attributes: None,
        }),
        status: Some(go_status()),
    };
    let lsar = authz::LocalSubjectAccessReview {
        metadata: Some(meta::ObjectMeta {
            namespace: Some("default".into()),
            ..go_meta("")
        }),
        spec: Some(authz::SubjectAccessReviewSpec {
            resource_attributes: Some(attributes),
            user: Some("alice".into()),
            ..Default::default()
        }),
        status: None,
    };
    let rules = authz::SelfSubjectRulesReview {
        metadata: Some(go_meta("")),
        spec: Some(authz::SelfSubjectRulesReviewSpec {
            namespace: Some("default".into()),
        }),
        status: Some(authz::SubjectRulesReviewStatus {
            incomplete: Some(false),
            evaluation_error: Some(String::new()),
            ..Default::default()
        }),
    };
    let whoami = authn::SelfSubjectReview {
        metadata: Some(go_meta("")),
        status: Some(authn::SelfSubjectReviewStatus {
            user_info: Some(authn::UserInfo {
                username: Some(String::new()),
                uid: Some(String::new()),
                ..Default::default()
            }),
        }),
    };
    let review = authn::TokenReview {
        metadata: Some(go_meta("")),
        spec: Some(authn::TokenReviewSpec {
            token: Some("t0k3n".into()),
            audiences: vec!["api".into()],
        }),
        status: Some(authn::TokenReviewStatus {
            authenticated: Some(false),
            user: Some(authn::UserInfo::default()),
            audiences: vec![],
            error: Some(String::new()),
        }),
    };
    let token_request = authn::TokenRequest {
        metadata: Some(go_meta("robot")),
        spec: Some(authn::TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            bound_object_ref: Some(authn::BoundObjectReference {
                kind: Some("Secret".into()),
                api_version: Some("v1".into()),
                name: Some("s1".into()),
                u_id: Some("u-1".into()),
            }),
        }),
        status: None,
    };
    let sar_status = json!({"allowed": false});
    check_table(vec![
        (
            "TokenRequest bytes from Go",
            hex(&GO_TOKEN_REQUEST.replace(' ', "")),
            expect("authentication.k8s.io/v1", "TokenRequest"),
            json!({"apiVersion": authn_gv, "kind": "TokenRequest", "metadata": {},
                   "spec": {"audiences": ["api"], "expirationSeconds": 600,
                            "boundObjectRef": null},
                   "status": {"token": "", "expirationTimestamp": null}}),
        ),
        (
            "TokenRequest with a bound object (uID is uid in JSON)",
            envelope(authn_gv, "TokenRequest", &token_request),
            expect(authn_gv, "TokenRequest"),
            json!({"apiVersion": authn_gv, "kind": "TokenRequest", "metadata": {"name": "robot"},
                   "spec": {"audiences": null, "expirationSeconds": 3600,
                            "boundObjectRef": {"kind": "Secret", "apiVersion": "v1",
                                               "name": "s1", "uid": "u-1"}},
                   "status": {"token": "", "expirationTimestamp": null}}),
        ),
        (
            "TokenReview",
            envelope(authn_gv, "TokenReview", &review),
            expect(authn_gv, "TokenReview"),
            json!({"apiVersion": authn_gv, "kind": "TokenReview", "metadata": {},
                   "spec": {"token": "t0k3n", "audiences": ["api"]},
                   "status": {"user": {}}}),
        ),
        (
            "SelfSubjectReview (kubectl auth whoami)",
            envelope(authn_gv, "SelfSubjectReview", &whoami),
            expect(authn_gv, "SelfSubjectReview"),
            json!({"apiVersion": authn_gv, "kind": "SelfSubjectReview", "metadata": {},
                   "status": {"userInfo": {}}}),
        ),
        (
            "SelfSubjectAccessReview (kubectl auth can-i get secrets)",
            envelope(authz_gv, "SelfSubjectAccessReview", &ssar),
            expect(authz_gv, "SelfSubjectAccessReview"),
            json!({"apiVersion": authz_gv, "kind": "SelfSubjectAccessReview", "metadata": {},
                   "spec": {"resourceAttributes": {"namespace": "default", "verb": "get",
                                                   "resource": "secrets"}},
                   "status": sar_status}),
        ),
        (
            "SubjectAccessReview",
            envelope(authz_gv, "SubjectAccessReview", &sar),
            expect(authz_gv, "SubjectAccessReview"),
            json!({"apiVersion": authz_gv, "kind": "SubjectAccessReview", "metadata": {},
                   "spec": {"nonResourceAttributes": {"path": "/healthz", "verb": "get"},
                            "user": "alice", "groups": ["team-a"],
                            "extra": {"scopes": ["x"]}},
                   "status": sar_status}),
        ),
        (
            "LocalSubjectAccessReview",
            envelope(authz_gv, "LocalSubjectAccessReview", &lsar),
            expect(authz_gv, "LocalSubjectAccessReview"),
            json!({"apiVersion": authz_gv, "kind": "LocalSubjectAccessReview",
                   "metadata": {"namespace": "default"},
                   "spec": {"resourceAttributes": {"namespace": "default", "verb": "get",
                                                   "resource": "secrets"},
                            "user": "alice"},
                   "status": sar_status}),
        ),
        (
            "SelfSubjectRulesReview (kubectl auth can-i --list)",
            envelope(authz_gv, "SelfSubjectRulesReview", &rules),
            expect(authz_gv, "SelfSubjectRulesReview"),
            json!({"apiVersion": authz_gv, "kind": "SelfSubjectRulesReview", "metadata": {},
                   "spec": {"namespace": "default"},
                   "status": {"resourceRules": null, "nonResourceRules": null,
                              "incomplete": false}}),
        ),
    ]);
}

#[test]
fn delete_options_decode_under_any_group_version() {
    let opts = meta::DeleteOptions {
        propagation_policy: Some("Foreground".into()),
        preconditions: Some(meta::Preconditions {
            uid: Some("u-1".into()),
            resource_version: None,
        }),
        dry_run: vec!["All".into()],
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    check_table(vec![(
        "DeleteOptions from an apps/v1 typed client",
        envelope("apps/v1", "DeleteOptions", &opts),
        expect("v1", "DeleteOptions"),
        json!({"apiVersion": "apps/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
               "preconditions": {"uid": "u-1"}, "propagationPolicy": "Foreground",
               "dryRun": ["All"]}),
    )]);
}

#[test]
fn bad_bodies_are_worded_as_the_apiserver_words_them() {
    let ns = expect("v1", "Namespace");
    let broken_raw = {
        let unknown = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some("v1".into()),
                kind: Some("Namespace".into()),
            }),
            raw: Some(vec![0x0a, 0x05, 0x01]), // metadata says 5 bytes, has 1
            ..Default::default()
        };
        [b"k8s\0".to_vec(), unknown.encode_to_vec()].concat()
    };
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "JSON sent as protobuf",
            br#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x"}}"#.to_vec(),
            400,
            r#"the object provided is unrecognized (must be of type Namespace): provided data does not appear to be a protobuf message, expected prefix [107 56 115 0] ({"apiVersion":"v1","kind":"Nam ...)"#,
        ),
        (
            "empty",
            vec![],
            400,
            "the object provided is unrecognized (must be of type Namespace): empty data (<empty>)",
        ),
        (
            "prefix only",
            b"k8s\0".to_vec(),
            400,
            "the object provided is unrecognized (must be of type Namespace): empty body (6b387300)",
        ),
        (
            "broken message",
            broken_raw,
            400,
            "Namespace in version \"v1\" cannot be handled as a Namespace: ",
        ),
        (
            "a kind the emulator does not decode",
            envelope("v1", "Event", &core::Event::default()),
            415,
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (the emulator does not decode application/vnd.kubernetes.protobuf bodies of kind Event in v1)",
        ),
    ];
    for (what, body, code, message) in cases {
        let err = decode(&body, ns).expect_err(what);
        assert_eq!(err.code(), code, "{what}");
        assert!(err.to_string().starts_with(message), "{what}: {err}");
    }
    // An envelope without apiVersion and kind takes the endpoint's.
    let bare = [
        b"k8s\0".to_vec(),
        Unknown {
            raw: Some(
                core::Namespace {
                    metadata: Some(go_meta("bare")),
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            ..Default::default()
        }
        .encode_to_vec(),
    ]
    .concat();
    let got = decode(&bare, ns).expect("defaults from the endpoint");
    assert_eq!(
        (&got["apiVersion"], &got["kind"]),
        (&json!("v1"), &json!("Namespace"))
    );
}

/// Sends `body` as protobuf with kubectl's Accept; the JSON answer or (code, reason, message).
async fn send_protobuf(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<Value, (u16, String, String)> {
    let req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/vnd.kubernetes.protobuf")
        .header(
            "accept",
            "application/vnd.kubernetes.protobuf,application/json",
        )
        .body(body)
        .expect("request builds");
    match client.request::<Value>(req).await {
        Ok(v) => Ok(v),
        Err(kube::Error::Api(s)) => Err((s.code, s.reason.clone(), s.message.clone())),
        Err(other) => panic!("expected an answer from the emulator, got {other:?}"),
    }
}

async fn post_protobuf(client: &kube::Client, path: &str, body: Vec<u8>) -> (u16, String, String) {
    send_protobuf(client, "POST", path, body)
        .await
        .expect_err("the body is refused")
}

#[tokio::test]
async fn typed_client_update_and_delete_bodies() {
    let (_emu, client) = start().await;
    let path = "/api/v1/namespaces/default/configmaps";
    let cm = |mode: &str| core::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            namespace: Some("default".into()),
            ..go_meta("settings")
        }),
        data: labels(&[("mode", mode)]),
        ..Default::default()
    };
    let created = send_protobuf(
        &client,
        "POST",
        path,
        envelope("v1", "ConfigMap", &cm("fast")),
    )
    .await
    .expect("created");
    assert_eq!(created["data"], json!({"mode": "fast"}));
    let one = format!("{path}/settings");
    let updated = send_protobuf(
        &client,
        "PUT",
        &one,
        envelope("v1", "ConfigMap", &cm("slow")),
    )
    .await
    .expect("updated");
    assert_eq!(updated["data"], json!({"mode": "slow"}));

    // A typed delete's DeleteOptions body is honoured: dryRun keeps the object, a uid
    // precondition that does not match is a conflict.
    let dry_run = meta::DeleteOptions {
        dry_run: vec!["All".into()],
        ..Default::default()
    };
    send_protobuf(
        &client,
        "DELETE",
        &one,
        envelope("v1", "DeleteOptions", &dry_run),
    )
    .await
    .expect("dry-run delete");
    let wrong_uid = meta::DeleteOptions {
        preconditions: Some(meta::Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    let (code, _, _) = send_protobuf(
        &client,
        "DELETE",
        &one,
        envelope("v1", "DeleteOptions", &wrong_uid),
    )
    .await
    .expect_err("precondition fails");
    assert_eq!(code, 409);
    send_protobuf(
        &client,
        "DELETE",
        &one,
        envelope("v1", "DeleteOptions", &meta::DeleteOptions::default()),
    )
    .await
    .expect("deleted");

    // Answers are JSON whenever Accept allows it; protobuf alone is a 406.
    let get = |accept: &str| {
        axum::http::Request::get("/api/v1/namespaces/default")
            .header("accept", accept)
            .body(Vec::new())
            .expect("request builds")
    };
    let ns: Value = client
        .request(get("application/vnd.kubernetes.protobuf,application/json"))
        .await
        .expect("JSON answer");
    assert_eq!(ns["metadata"]["name"], "default");
    match client
        .request::<Value>(get("application/vnd.kubernetes.protobuf"))
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (406, "NotAcceptable")),
        other => panic!("expected 406, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_protobuf_bodies_over_http() {
    let (_emu, client) = start().await;
    install_crd(&client, WIDGET_CRD).await;
    // Garbage in a protobuf body: 400 naming the kind, as kube-apiserver answers.
    let (code, reason, message) =
        post_protobuf(&client, "/api/v1/namespaces", b"\x01\x02garbage".to_vec()).await;
    assert_eq!((code, reason.as_str()), (400, "BadRequest"));
    assert!(
        message.starts_with("the object provided is unrecognized (must be of type Namespace)"),
        "{message}"
    );
    // A built-in kind the emulator has no decoder for: 415 naming media type and kind.
    let event = envelope("v1", "Event", &core::Event::default());
    let (code, reason, message) =
        post_protobuf(&client, "/api/v1/namespaces/default/events", event).await;
    assert_eq!((code, reason.as_str()), (415, "UnsupportedMediaType"));
    assert!(
        message.contains("application/vnd.kubernetes.protobuf") && message.contains("Event"),
        "{message}"
    );
    // A pod-template field the emulator does not convert: 415 naming the field.
    let with_volume = deployment(|p| p.volumes = vec![core::Volume::default()]);
    let (code, _, message) = post_protobuf(
        &client,
        "/apis/apps/v1/namespaces/default/deployments",
        envelope("apps/v1", "Deployment", &with_volume),
    )
    .await;
    assert_eq!(code, 415);
    assert!(message.contains("spec.template.spec.volumes"), "{message}");
    // Custom resources have no protobuf form: 400, as upstream.
    let (code, _, message) = post_protobuf(
        &client,
        "/apis/test.apikeys.dev/v1/namespaces/default/widgets",
        envelope("test.apikeys.dev/v1", "Widget", &core::ConfigMap::default()),
    )
    .await;
    assert_eq!(code, 400);
    assert!(
        message.starts_with("Widget in version \"v1\" cannot be handled as a Widget: object *unstructured.Unstructured does not implement the protobuf marshalling interface"),
        "{message}"
    );
}

/// The stored object without what the server sets or what only one path adds (the
/// last-applied annotation, managedFields), and without nulls: Go decodes a JSON null into
/// the zero value and writes it back omitted (`creationTimestamp: null` in kubectl's JSON).
fn comparable(mut obj: Value) -> Value {
    fn strip_nulls(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.retain(|_, v| !v.is_null());
                m.values_mut().for_each(strip_nulls);
            }
            Value::Array(a) => a.iter_mut().for_each(strip_nulls),
            _ => {}
        }
    }
    if let Some(meta) = obj["metadata"].as_object_mut() {
        for server_set in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "generation",
            "managedFields",
            "namespace",
            "name",
        ] {
            meta.remove(server_set);
        }
        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
            if annotations.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    strip_nulls(&mut obj);
    obj
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_typed_creates_store_what_apply_of_the_same_object_stores() {
    let (emu, _client) = start().await;
    let k = Kubectl::new(&emu);
    // (what to create, how to read it back), in namespace "pb" by protobuf and in "js" by
    // `kubectl apply` of the JSON kubectl itself prints for the same command.
    let commands: Vec<(Vec<&str>, &str)> = vec![
        (vec!["serviceaccount", "robot"], "serviceaccount/robot"),
        (
            vec![
                "secret",
                "generic",
                "s1",
                "--from-literal=user=admin",
                "--type=example.com/creds",
            ],
            "secret/s1",
        ),
        (
            vec![
                "secret",
                "docker-registry",
                "pull",
                "--docker-server=registry.example.com",
                "--docker-username=u",
                "--docker-password=p",
            ],
            "secret/pull",
        ),
        (
            vec![
                "configmap",
                "c1",
                "--from-literal=mode=fast",
                "--from-literal=level=3",
            ],
            "configmap/c1",
        ),
        (
            vec![
                "deployment",
                "web",
                "--image=nginx",
                "--port=80",
                "--replicas=2",
                "--",
                "nginx",
                "-g",
                "daemon off;",
            ],
            "deployment/web",
        ),
    ];
    // `kubectl create namespace` is itself one of the typed creates under test.
    for ns in ["pb", "js"] {
        let out = k.ok(&["create", "namespace", ns]).await;
        assert!(out.contains(&format!("namespace/{ns} created")), "{out}");
    }
    k.ok(&["create", "namespace", "team-a"]).await;
    let team_a: Value =
        serde_json::from_str(&k.ok(&["get", "namespace", "team-a", "-o", "json"]).await)
            .expect("namespace JSON");
    assert_eq!(team_a["status"]["phase"], "Active");

    for (args, object) in commands {
        // Flags go before `--`: what follows it is the container's command.
        let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        let (generator, command) = args.split_at(split);
        let create = |flags: &[&'static str]| -> Vec<&str> {
            [&["create"][..], generator, flags, command].concat()
        };
        let out = k.ok(&create(&["-n", "pb"])).await;
        assert!(out.contains("created"), "kubectl {args:?}: {out}");

        let dry = k
            .ok(&create(&["-n", "js", "--dry-run=client", "-o", "json"]))
            .await;
        let manifest = k.write(&format!("{}.json", object.replace('/', "-")), &dry);
        k.ok(&["apply", "-n", "js", "-f", &manifest]).await;

        let read = |ns: &'static str| {
            let k = &k;
            async move {
                let got = k.ok(&["get", object, "-n", ns, "-o", "json"]).await;
                comparable(serde_json::from_str(&got).expect("object JSON"))
            }
        };
        let (by_protobuf, by_apply) = (read("pb").await, read("js").await);
        assert_eq!(by_protobuf, by_apply, "{object}");
    }

    // The fields kubectl filled arrived, not just equal empties on both sides.
    let web: Value = serde_json::from_str(
        &k.ok(&["get", "deployment", "web", "-n", "pb", "-o", "json"])
            .await,
    )
    .expect("deployment JSON");
    assert_eq!(web["spec"]["replicas"], 2);
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["command"],
        json!(["nginx", "-g", "daemon off;"])
    );
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 80}])
    );
    let s1 = k
        .ok(&[
            "get",
            "secret",
            "s1",
            "-n",
            "pb",
            "-o",
            "jsonpath={.type} {.data.user}",
        ])
        .await;
    assert_eq!(s1, "example.com/creds YWRtaW4=");
}
