//! TokenRequest, TokenReview and the authorization reviews (including bytes Go's encoder
//! wrote), and DeleteOptions under any group version.

use super::*;

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
