//! Shared helpers for the authentication, RBAC and review tests: an emulator with two
//! ordinary users (alice in team-a, bob) and anonymous requests enabled, as kube-apiserver's
//! defaults; clients per token; raw requests that return the status code and JSON body.

use kube_emulator::{Anonymous, Emulator, EmulatorConfig, StaticToken};
use serde_json::Value;

pub const ALICE: &str = "alice-token-0123456789";
pub const BOB: &str = "bob-token-0123456789";

pub fn users() -> Vec<StaticToken> {
    vec![
        StaticToken::new(ALICE, "alice", &["team-a"]),
        StaticToken::new(BOB, "bob", &[]),
    ]
}

/// An emulator with alice and bob, anonymous enabled; and an admin client.
pub async fn start_with_users() -> (Emulator, kube::Client) {
    crate::support::start_with(EmulatorConfig {
        tokens: users(),
        anonymous: Anonymous::Enabled,
        ..crate::support::quick_config()
    })
    .await
}

pub fn client_as(emu: &Emulator, token: &str) -> kube::Client {
    kube::Client::try_from(emu.config_with_token(token).expect("config")).expect("client")
}

/// A client that sends no credentials.
pub fn anonymous_client(emu: &Emulator) -> kube::Client {
    let cfg = kube::Config::new(emu.url().parse().expect("url"));
    kube::Client::try_from(cfg).expect("client")
}

/// A client acting as the admin who impersonates `user` in `groups`.
pub fn impersonating(emu: &Emulator, token: &str, user: &str, groups: &[&str]) -> kube::Client {
    let mut cfg = emu.config_with_token(token).expect("config");
    cfg.auth_info.impersonate = Some(user.to_owned());
    if !groups.is_empty() {
        cfg.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
    }
    kube::Client::try_from(cfg).expect("client")
}

/// Sends one request and returns the status code and the JSON body (Null if none).
pub async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Accept", "application/json");
    if body.is_some() {
        req = req.header("Content-Type", "application/json");
    }
    let bytes = body
        .map(|b| serde_json::to_vec(&b).unwrap())
        .unwrap_or_default();
    let resp = client
        .send(req.body(kube::client::Body::from(bytes)).expect("request"))
        .await
        .expect("response");
    let code = resp.status().as_u16();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    (code, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Creates an object as the admin (or fails the test).
pub async fn admin_create(client: &kube::Client, path: &str, obj: Value) -> Value {
    let (code, body) = send(client, "POST", path, Some(obj)).await;
    assert_eq!(code, 201, "create {path}: {body}");
    body
}

pub fn role(ns: &str, name: &str, rules: Value) -> (String, Value) {
    (
        format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"),
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name}, "rules": rules}),
    )
}

pub fn cluster_role(name: &str, rules: Value) -> (String, Value) {
    (
        "/apis/rbac.authorization.k8s.io/v1/clusterroles".to_owned(),
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name}, "rules": rules}),
    )
}

/// A RoleBinding (`ns` set) or ClusterRoleBinding of `role_kind`/`role` to `subject`.
pub fn binding(
    ns: Option<&str>,
    name: &str,
    role_kind: &str,
    role: &str,
    subject: Value,
) -> (String, Value) {
    let (path, kind) = match ns {
        Some(ns) => (
            format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"),
            "RoleBinding",
        ),
        None => (
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings".to_owned(),
            "ClusterRoleBinding",
        ),
    };
    (
        path,
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
            "subjects": [subject]}),
    )
}

pub fn user(name: &str) -> Value {
    serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name})
}

pub fn group(name: &str) -> Value {
    serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name})
}

/// Creates `(path, object)` as the admin.
pub async fn grant(admin: &kube::Client, (path, obj): (String, Value)) -> Value {
    admin_create(admin, &path, obj).await
}
