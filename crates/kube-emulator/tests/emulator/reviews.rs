//! Access reviews answered by the same RBAC decision as requests: SelfSubjectAccessReview
//! (`kubectl auth can-i`), SubjectAccessReview, LocalSubjectAccessReview,
//! SelfSubjectRulesReview (`can-i --list`) and SelfSubjectReview (`kubectl auth whoami`).

use serde_json::{Value, json};

use crate::users::*;

const AUTHZ: &str = "/apis/authorization.k8s.io/v1";

fn review(kind: &str, spec: Value) -> Value {
    json!({"apiVersion": "authorization.k8s.io/v1", "kind": kind, "spec": spec})
}

fn list_secrets() -> Value {
    json!({"namespace": "default", "verb": "list", "resource": "secrets"})
}

#[tokio::test]
async fn self_subject_access_reviews_answer_for_the_caller() {
    let (emu, admin) = start_with_users().await;
    let alice = client_as(&emu, ALICE);
    let ask = || {
        review(
            "SelfSubjectAccessReview",
            json!({"resourceAttributes": list_secrets()}),
        )
    };
    let (code, answer) = send(
        &alice,
        "POST",
        &format!("{AUTHZ}/selfsubjectaccessreviews"),
        Some(ask()),
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(answer["kind"], "SelfSubjectAccessReview");
    assert_eq!(answer["spec"]["resourceAttributes"], list_secrets());
    assert_eq!(answer["status"], json!({"allowed": false}));

    grant(
        &admin,
        role(
            "default",
            "reader",
            json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]),
        ),
    )
    .await;
    grant(
        &admin,
        binding(
            Some("default"),
            "alice-reads",
            "Role",
            "reader",
            user("alice"),
        ),
    )
    .await;
    let (_, answer) = send(
        &alice,
        "POST",
        &format!("{AUTHZ}/selfsubjectaccessreviews"),
        Some(ask()),
    )
    .await;
    assert_eq!(
        answer["status"],
        json!({"allowed": true, "reason": "RBAC: allowed by RoleBinding \"alice-reads/default\" of Role \"reader\" to User \"alice\""})
    );
    // Non-resource attributes.
    let (_, answer) = send(
        &alice,
        "POST",
        &format!("{AUTHZ}/selfsubjectaccessreviews"),
        Some(review(
            "SelfSubjectAccessReview",
            json!({"nonResourceAttributes": {"path": "/version", "verb": "get"}}),
        )),
    )
    .await;
    assert_eq!(answer["status"]["allowed"], true);
    // The admin is allowed by system:masters, with no reason.
    let (_, answer) = send(
        &admin,
        "POST",
        &format!("{AUTHZ}/selfsubjectaccessreviews"),
        Some(ask()),
    )
    .await;
    assert_eq!(answer["status"], json!({"allowed": true}));
}

#[tokio::test]
async fn subject_access_reviews_ask_about_someone_else() {
    let (emu, admin) = start_with_users().await;
    grant(
        &admin,
        binding(None, "team-a-views", "ClusterRole", "view", group("team-a")),
    )
    .await;
    let sar = |spec: Value| review("SubjectAccessReview", spec);
    let path = format!("{AUTHZ}/subjectaccessreviews");
    let (code, answer) = send(
        &admin,
        "POST",
        &path,
        Some(sar(json!({
            "user": "alice", "groups": ["team-a"],
            "resourceAttributes": {"namespace": "default", "verb": "get", "resource": "configmaps"}
        }))),
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(
        answer["status"],
        json!({"allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding \"team-a-views\" of ClusterRole \"view\" to Group \"team-a\""})
    );
    // Groups are taken as given: without team-a alice has nothing.
    let (_, answer) = send(&admin, "POST", &path, Some(sar(json!({
        "user": "alice", "resourceAttributes": {"namespace": "default", "verb": "get", "resource": "configmaps"}
    })))).await;
    assert_eq!(answer["status"]["allowed"], false);
    let (code, err) = send(
        &admin,
        "POST",
        &path,
        Some(sar(json!({"resourceAttributes": list_secrets()}))),
    )
    .await;
    assert_eq!(code, 422, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("at least one of user or group must be specified")
    );
    let (code, err) = send(&admin, "POST", &path, Some(sar(json!({"user": "alice"})))).await;
    assert_eq!(code, 422, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains(
            "exactly one of nonResourceAttributes or resourceAttributes must be specified"
        )
    );
    // Asking about others needs create on subjectaccessreviews.
    let (code, err) = send(
        &client_as(&emu, ALICE),
        "POST",
        &path,
        Some(sar(
            json!({"user": "bob", "resourceAttributes": list_secrets()}),
        )),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        err["message"],
        "subjectaccessreviews.authorization.k8s.io is forbidden: User \"alice\" cannot create resource \"subjectaccessreviews\" in API group \"authorization.k8s.io\" at the cluster scope"
    );
}

#[tokio::test]
async fn local_subject_access_reviews_stay_in_their_namespace() {
    let (emu, admin) = start_with_users().await;
    grant(
        &admin,
        binding(
            Some("default"),
            "alice-admin",
            "ClusterRole",
            "admin",
            user("alice"),
        ),
    )
    .await;
    let alice = client_as(&emu, ALICE);
    let path = format!("{AUTHZ}/namespaces/default/localsubjectaccessreviews");
    let lsar = |ns: &str| {
        review(
            "LocalSubjectAccessReview",
            json!({
                "user": "bob", "resourceAttributes": {"namespace": ns, "verb": "list", "resource": "secrets"}
            }),
        )
    };
    let (code, answer) = send(&alice, "POST", &path, Some(lsar("default"))).await;
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["status"]["allowed"], false);
    assert_eq!(answer["metadata"]["namespace"], "default");
    let (code, _) = send(&alice, "POST", &path, Some(lsar("kube-system"))).await;
    assert_eq!(code, 422);
    let elsewhere = format!("{AUTHZ}/namespaces/kube-system/localsubjectaccessreviews");
    assert_eq!(
        send(&alice, "POST", &elsewhere, Some(lsar("kube-system")))
            .await
            .0,
        403
    );
}

#[tokio::test]
async fn self_subject_rules_reviews_list_what_the_caller_may_do() {
    let (emu, admin) = start_with_users().await;
    let alice = client_as(&emu, ALICE);
    grant(&admin, role("default", "reader", json!([
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["s1"], "verbs": ["get"]}
    ]))).await;
    grant(
        &admin,
        binding(
            Some("default"),
            "alice-reads",
            "Role",
            "reader",
            user("alice"),
        ),
    )
    .await;
    let path = format!("{AUTHZ}/selfsubjectrulesreviews");
    let (code, answer) = send(
        &alice,
        "POST",
        &path,
        Some(review(
            "SelfSubjectRulesReview",
            json!({"namespace": "default"}),
        )),
    )
    .await;
    assert_eq!(code, 201, "{answer}");
    let rules = answer["status"]["resourceRules"].as_array().unwrap();
    assert!(rules.contains(&json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["s1"]})), "{rules:?}");
    assert!(rules.contains(&json!({"verbs": ["create"], "apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]})), "{rules:?}");
    assert!(
        answer["status"]["nonResourceRules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["nonResourceURLs"]
                .as_array()
                .unwrap()
                .contains(&json!("/api")))
    );
    assert_eq!(answer["status"]["incomplete"], false);
    let (code, err) = send(
        &alice,
        "POST",
        &path,
        Some(review("SelfSubjectRulesReview", json!({}))),
    )
    .await;
    assert_eq!(
        (code, err["message"].as_str()),
        (400, Some("no namespace on request"))
    );
}

#[tokio::test]
async fn self_subject_reviews_say_who_the_caller_is() {
    let (emu, _admin) = start_with_users().await;
    let (code, answer) = send(
        &client_as(&emu, BOB),
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})),
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(answer["kind"], "SelfSubjectReview");
    assert_eq!(
        answer["status"]["userInfo"],
        json!({"username": "bob", "groups": ["system:authenticated"]})
    );
    // Reviews are create-only.
    let (code, _) = send(
        &client_as(&emu, BOB),
        "GET",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        None,
    )
    .await;
    assert_eq!(code, 403);
}
