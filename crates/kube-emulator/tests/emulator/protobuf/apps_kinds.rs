//! apps/v1 kinds with their pod template (Deployments, DaemonSets), and the pod fields the
//! converter does not handle, refused with 415 naming the field.

use super::*;

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
