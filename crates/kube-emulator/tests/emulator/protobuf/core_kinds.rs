//! Core kinds as `protobuf::decode` reads them: a table of core/v1 objects against the JSON
//! Go writes for them, and every ObjectMeta field converted.

use super::*;

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
