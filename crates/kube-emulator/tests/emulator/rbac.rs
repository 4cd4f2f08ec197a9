//! RBAC as kube-apiserver enforces it: Roles, ClusterRoles and their bindings to users, groups
//! and ServiceAccounts; subresources, resourceNames and non-resource URLs; aggregation labels;
//! the bootstrap roles; `system:masters`; impersonation; escalation prevention; 403 wording.

use serde_json::{Value, json};

use crate::support::{WIDGET_CRD, install_crd};
use crate::users::*;

const SECRETS: &str = "/api/v1/namespaces/default/secrets";

fn forbidden_message(code_body: &(u16, Value)) -> &str {
    assert_eq!(code_body.0, 403, "{}", code_body.1);
    assert_eq!(code_body.1["reason"], "Forbidden");
    code_body.1["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_role_binding_grants_exactly_its_rules_in_its_namespace() {
    let (emu, admin) = start_with_users().await;
    let alice = client_as(&emu, ALICE);
    admin_create(&admin, SECRETS, json!({"metadata": {"name": "s1"}})).await;
    admin_create(&admin, SECRETS, json!({"metadata": {"name": "s2"}})).await;

    let denied = send(&alice, "GET", SECRETS, None).await;
    assert_eq!(
        forbidden_message(&denied),
        "secrets is forbidden: User \"alice\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\""
    );
    assert_eq!(denied.1["details"], json!({"kind": "secrets"}));

    grant(
        &admin,
        role(
            "default",
            "secret-reader",
            json!([
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}
            ]),
        ),
    )
    .await;
    grant(
        &admin,
        binding(
            Some("default"),
            "alice-reads",
            "Role",
            "secret-reader",
            user("alice"),
        ),
    )
    .await;
    assert_eq!(send(&alice, "GET", SECRETS, None).await.0, 200);
    assert_eq!(
        send(&alice, "GET", &format!("{SECRETS}/s1"), None).await.0,
        200
    );
    // Only the verbs granted, only in that namespace.
    let denied = send(&alice, "DELETE", &format!("{SECRETS}/s1"), None).await;
    assert_eq!(
        forbidden_message(&denied),
        "secrets \"s1\" is forbidden: User \"alice\" cannot delete resource \"secrets\" in API group \"\" in the namespace \"default\""
    );
    assert_eq!(
        denied.1["details"],
        json!({"name": "s1", "kind": "secrets"})
    );
    assert_eq!(
        send(
            &alice,
            "GET",
            "/api/v1/namespaces/kube-system/secrets",
            None
        )
        .await
        .0,
        403
    );
    // bob is not bound.
    assert_eq!(
        send(&client_as(&emu, BOB), "GET", SECRETS, None).await.0,
        403
    );
}

#[tokio::test]
async fn resource_names_limit_rules_to_named_objects() {
    let (emu, admin) = start_with_users().await;
    let alice = client_as(&emu, ALICE);
    for name in ["s1", "s2"] {
        admin_create(&admin, SECRETS, json!({"metadata": {"name": name}})).await;
    }
    grant(&admin, role("default", "s1-only", json!([
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["s1"], "verbs": ["get", "list", "watch"]}
    ]))).await;
    grant(
        &admin,
        binding(
            Some("default"),
            "alice-s1",
            "Role",
            "s1-only",
            user("alice"),
        ),
    )
    .await;
    assert_eq!(
        send(&alice, "GET", &format!("{SECRETS}/s1"), None).await.0,
        200
    );
    assert_eq!(
        send(&alice, "GET", &format!("{SECRETS}/s2"), None).await.0,
        403
    );
    // A list is allowed by a named rule only when a field selector pins that name.
    assert_eq!(send(&alice, "GET", SECRETS, None).await.0, 403);
    let (code, list) = send(
        &alice,
        "GET",
        &format!("{SECRETS}?fieldSelector=metadata.name%3Ds1"),
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn subresources_need_rules_of_their_own() {
    let (emu, admin) = start_with_users().await;
    install_crd(&admin, WIDGET_CRD).await;
    let alice = client_as(&emu, ALICE);
    let widgets = "/apis/test.apikeys.dev/v1/namespaces/default/widgets";
    admin_create(
        &admin,
        widgets,
        json!({"apiVersion": "test.apikeys.dev/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"size": 1}}),
    )
    .await;
    admin_create(
        &admin,
        "/api/v1/namespaces/default/serviceaccounts",
        json!({"metadata": {"name": "robot"}}),
    )
    .await;
    grant(&admin, role("default", "writer", json!([
        {"apiGroups": ["test.apikeys.dev"], "resources": ["widgets"], "verbs": ["get", "update", "patch"]},
        {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["create", "get"]},
    ]))).await;
    grant(
        &admin,
        binding(
            Some("default"),
            "alice-writes",
            "Role",
            "writer",
            group("team-a"),
        ),
    )
    .await;

    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let patch_status = || async {
        let req = http::Request::patch(format!("{widgets}/w/status"))
            .header("Content-Type", "application/merge-patch+json")
            .body(kube::client::Body::from(
                serde_json::to_vec(&status).unwrap(),
            ))
            .unwrap();
        alice.send(req).await.unwrap().status().as_u16()
    };
    assert_eq!(patch_status().await, 403);
    let token_path = "/api/v1/namespaces/default/serviceaccounts/robot/token";
    let token_request =
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}});
    let denied = send(&alice, "POST", token_path, Some(token_request.clone())).await;
    assert_eq!(
        forbidden_message(&denied),
        "serviceaccounts \"robot\" is forbidden: User \"alice\" cannot create resource \"serviceaccounts/token\" in API group \"\" in the namespace \"default\""
    );

    grant(&admin, role("default", "sub-writer", json!([
        {"apiGroups": ["test.apikeys.dev"], "resources": ["widgets/status"], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
    ]))).await;
    grant(
        &admin,
        binding(
            Some("default"),
            "alice-sub",
            "Role",
            "sub-writer",
            user("alice"),
        ),
    )
    .await;
    assert_eq!(patch_status().await, 200);
    assert_eq!(
        send(&alice, "POST", token_path, Some(token_request))
            .await
            .0,
        201
    );
}

#[tokio::test]
async fn cluster_role_bindings_reach_groups_and_service_accounts_everywhere() {
    let (emu, admin) = start_with_users().await;
    let alice = client_as(&emu, ALICE);
    grant(
        &admin,
        binding(None, "team-a-views", "ClusterRole", "view", group("team-a")),
    )
    .await;
    for ns in ["default", "kube-system"] {
        assert_eq!(
            send(
                &alice,
                "GET",
                &format!("/api/v1/namespaces/{ns}/configmaps"),
                None
            )
            .await
            .0,
            200
        );
        // view holds no secrets.
        assert_eq!(
            send(
                &alice,
                "GET",
                &format!("/api/v1/namespaces/{ns}/secrets"),
                None
            )
            .await
            .0,
            403
        );
    }
    // A RoleBinding's ServiceAccount subject without a namespace is in the binding's namespace.
    admin_create(
        &admin,
        "/api/v1/namespaces/default/serviceaccounts",
        json!({"metadata": {"name": "robot"}}),
    )
    .await;
    let (_, answer) = send(
        &admin,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts/robot/token",
        Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})),
    )
    .await;
    let robot = client_as(&emu, answer["status"]["token"].as_str().unwrap());
    assert_eq!(send(&robot, "GET", SECRETS, None).await.0, 403);
    grant(
        &admin,
        binding(
            Some("default"),
            "robot-edits",
            "ClusterRole",
            "edit",
            json!({"kind": "ServiceAccount", "name": "robot"}),
        ),
    )
    .await;
    assert_eq!(send(&robot, "GET", SECRETS, None).await.0, 200);
    assert_eq!(
        send(
            &robot,
            "GET",
            "/api/v1/namespaces/kube-system/secrets",
            None
        )
        .await
        .0,
        403
    );
}

#[tokio::test]
async fn bootstrap_roles_let_users_discover_and_ask() {
    let (emu, admin) = start_with_users().await;
    let (_, roles) = send(
        &admin,
        "GET",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        None,
    )
    .await;
    let names: Vec<&str> = roles["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metadata"]["name"].as_str().unwrap())
        .collect();
    for want in [
        "admin",
        "cluster-admin",
        "edit",
        "system:basic-user",
        "system:discovery",
        "system:public-info-viewer",
        "view",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    let alice = client_as(&emu, ALICE);
    for path in [
        "/api",
        "/apis",
        "/api/v1",
        "/apis/rbac.authorization.k8s.io/v1",
        "/version",
        "/openapi/v3",
    ] {
        assert_eq!(send(&alice, "GET", path, None).await.0, 200, "{path}");
    }
}

#[tokio::test]
async fn aggregation_labels_fold_rules_into_admin_edit_and_view() {
    let (emu, admin) = start_with_users().await;
    let (path, mut obj) = cluster_role(
        "widget-reader",
        json!([
            {"apiGroups": ["test.apikeys.dev"], "resources": ["widgets"], "verbs": ["get", "list", "watch"]}
        ]),
    );
    obj["metadata"]["labels"] = json!({"rbac.authorization.k8s.io/aggregate-to-view": "true"});
    admin_create(&admin, &path, obj).await;
    let rule = json!({"apiGroups": ["test.apikeys.dev"], "resources": ["widgets"], "verbs": ["get", "list", "watch"]});
    for role in ["view", "edit", "admin"] {
        let rules = crate::support::eventually(
            &format!("{role} aggregates widget-reader"),
            std::time::Duration::from_secs(10),
            || {
                let admin = admin.clone();
                let rule = rule.clone();
                async move {
                    let (_, r) = send(
                        &admin,
                        "GET",
                        &format!(
                            "{path}/{role}",
                            path = "/apis/rbac.authorization.k8s.io/v1/clusterroles"
                        ),
                        None,
                    )
                    .await;
                    r["rules"]
                        .as_array()
                        .filter(|rules| rules.contains(&rule))
                        .cloned()
                }
            },
        )
        .await;
        assert!(rules.contains(&rule), "{role}: {rules:?}");
    }
    // The rule is enforced through the aggregated role.
    grant(
        &admin,
        binding(
            Some("default"),
            "alice-views",
            "ClusterRole",
            "view",
            user("alice"),
        ),
    )
    .await;
    install_crd(&admin, WIDGET_CRD).await;
    let alice = client_as(&emu, ALICE);
    let widgets = "/apis/test.apikeys.dev/v1/namespaces/default/widgets";
    assert_eq!(send(&alice, "GET", widgets, None).await.0, 200);
    assert_eq!(
        send(&alice, "DELETE", &format!("{widgets}/w"), None)
            .await
            .0,
        403
    );
}

#[tokio::test]
async fn system_masters_needs_no_binding() {
    let (emu, admin) = start_with_users().await;
    let crb = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/cluster-admin";
    assert_eq!(send(&admin, "DELETE", crb, None).await.0, 200);
    assert_eq!(send(&admin, "GET", SECRETS, None).await.0, 200);
    let root = impersonating(&emu, emu.admin_token(), "root", &["system:masters"]);
    assert_eq!(send(&root, "GET", "/api/v1/secrets", None).await.0, 200);
}

#[tokio::test]
async fn impersonation_needs_the_impersonate_verb() {
    let (emu, admin) = start_with_users().await;
    let as_bob = impersonating(&emu, ALICE, "bob", &[]);
    let denied = send(&as_bob, "GET", SECRETS, None).await;
    assert_eq!(
        forbidden_message(&denied),
        "users \"bob\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
    grant(&admin, cluster_role("impersonate-bob", json!([
        {"apiGroups": [""], "resources": ["users"], "resourceNames": ["bob"], "verbs": ["impersonate"]}
    ]))).await;
    grant(
        &admin,
        binding(
            None,
            "alice-as-bob",
            "ClusterRole",
            "impersonate-bob",
            user("alice"),
        ),
    )
    .await;
    let (code, review) = send(
        &as_bob,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})),
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(
        review["status"]["userInfo"],
        json!({"username": "bob", "groups": ["system:authenticated"]})
    );
    // Groups need their own grant.
    let as_bob_admin = impersonating(&emu, ALICE, "bob", &["system:masters"]);
    let denied = send(&as_bob_admin, "GET", SECRETS, None).await;
    assert_eq!(
        forbidden_message(&denied),
        "groups \"system:masters\" is forbidden: User \"alice\" cannot impersonate resource \"groups\" in API group \"\" at the cluster scope"
    );
    // The admin impersonating alice gets alice's answers.
    let as_alice = impersonating(&emu, emu.admin_token(), "alice", &[]);
    assert_eq!(
        forbidden_message(&send(&as_alice, "GET", SECRETS, None).await),
        "secrets is forbidden: User \"alice\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\""
    );
    // A group without a user is a bad request.
    let mut cfg = emu.config_with_token(emu.admin_token()).unwrap();
    cfg.auth_info.impersonate_groups = Some(vec!["team-a".into()]);
    let groups_only = kube::Client::try_from(cfg).unwrap();
    let (code, body) = send(&groups_only, "GET", SECRETS, None).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .ends_with("without impersonating a user"),
        "{body}"
    );
}

#[tokio::test]
async fn rbac_writes_cannot_escalate() {
    let (emu, admin) = start_with_users().await;
    let alice = client_as(&emu, ALICE);
    // alice administers namespace default (admin: edit + roles and rolebindings).
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

    // A role within what she holds is fine; one beyond it is refused.
    let (path, held) = role(
        "default",
        "reader",
        json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]),
    );
    assert_eq!(send(&alice, "POST", &path, Some(held)).await.0, 201);
    let (path, beyond) = role(
        "default",
        "deleter",
        json!([
            {"apiGroups": ["apps"], "resources": ["deployments", "ghosts"], "verbs": ["get", "escalate"]}
        ]),
    );
    let denied = send(&alice, "POST", &path, Some(beyond)).await;
    assert_eq!(
        forbidden_message(&denied),
        "roles.rbac.authorization.k8s.io \"deleter\" is forbidden: user \"alice\" (groups=[\"team-a\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n\
         {APIGroups:[\"apps\"], Resources:[\"deployments\"], Verbs:[\"escalate\"]}\n\
         {APIGroups:[\"apps\"], Resources:[\"ghosts\"], Verbs:[\"get\" \"escalate\"]}"
    );
    assert_eq!(
        denied.1["details"],
        json!({"name": "deleter", "group": "rbac.authorization.k8s.io", "kind": "roles"})
    );

    // Binding a role she holds is fine; binding cluster-admin is not, until she may `bind` it.
    let (path, ok) = binding(Some("default"), "bob-reads", "Role", "reader", user("bob"));
    assert_eq!(send(&alice, "POST", &path, Some(ok)).await.0, 201);
    let (path, too_much) = binding(
        Some("default"),
        "bob-root",
        "ClusterRole",
        "cluster-admin",
        user("bob"),
    );
    let denied = send(&alice, "POST", &path, Some(too_much.clone())).await;
    assert!(forbidden_message(&denied).starts_with(
        "rolebindings.rbac.authorization.k8s.io \"bob-root\" is forbidden: user \"alice\" (groups=[\"team-a\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n"
    ), "{}", denied.1);
    grant(&admin, cluster_role("bind-cluster-admin", json!([
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "resourceNames": ["cluster-admin"], "verbs": ["bind"]}
    ]))).await;
    grant(
        &admin,
        binding(
            Some("default"),
            "alice-binds",
            "ClusterRole",
            "bind-cluster-admin",
            user("alice"),
        ),
    )
    .await;
    assert_eq!(send(&alice, "POST", &path, Some(too_much)).await.0, 201);

    // A binding's roleRef never changes, whoever asks.
    let mut changed = send(&admin, "GET", &format!("{path}/bob-reads"), None)
        .await
        .1;
    changed["roleRef"]["name"] = json!("other");
    let (code, body) = send(&admin, "PUT", &format!("{path}/bob-reads"), Some(changed)).await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .ends_with("cannot change roleRef"),
        "{body}"
    );
}

#[tokio::test]
async fn aggregation_rules_need_cluster_admin() {
    let (emu, admin) = start_with_users().await;
    let alice = client_as(&emu, ALICE);
    grant(&admin, cluster_role("role-writer", json!([
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["create"]}
    ]))).await;
    grant(
        &admin,
        binding(
            None,
            "alice-writes-roles",
            "ClusterRole",
            "role-writer",
            user("alice"),
        ),
    )
    .await;
    let (path, mut obj) = cluster_role("everything", json!([]));
    obj["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {"x": "y"}}]});
    let denied = send(&alice, "POST", &path, Some(obj)).await;
    assert_eq!(
        forbidden_message(&denied),
        "clusterroles.rbac.authorization.k8s.io \"everything\" is forbidden: must have cluster-admin privileges to use the aggregationRule"
    );
}
