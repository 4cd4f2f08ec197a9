//! The machine's kubectl (/usr/bin/kubectl) as different users: the admin context, an ordinary
//! user's context (`alice`), `--as` impersonation, `--token`, RBAC objects applied with
//! `kubectl apply`, and the `auth` and `create token` commands.

use std::process::Output;

use kube_emulator::KubeconfigAdmin;

use crate::support::Kubectl;
use crate::users::*;

/// kubectl with a kubeconfig holding the admin context (current), `alice` and `bob`.
fn kubectl_with_users(emu: &kube_emulator::Emulator) -> Kubectl {
    let k = Kubectl::new(emu);
    emu.write_kubeconfig_with(&k.kubeconfig, &users(), KubeconfigAdmin::Tls)
        .expect("kubeconfig with users");
    k
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const READER: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: secret-reader, namespace: default}
rules:
- apiGroups: [\"\"]
  resources: [secrets]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-reads-secrets, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: secret-reader}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}
";

const FORBIDDEN_LIST: &str = "Error from server (Forbidden): secrets is forbidden: User \"alice\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordinary_user_is_forbidden_until_rbac_allows() {
    let (emu, _admin) = start_with_users().await;
    let k = kubectl_with_users(&emu);
    assert!(k.ok(&["get", "secrets"]).await.is_empty());

    for args in [
        &["--context", "alice", "get", "secrets"][..],
        &["--as", "alice", "get", "secrets"],
    ] {
        let out = k.run(args).await;
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr(&out).contains(FORBIDDEN_LIST),
            "{args:?}: {}",
            stderr(&out)
        );
    }

    // `kubectl create role/rolebinding` post protobuf; `apply` posts JSON.
    let manifest = k.write("reader.yaml", READER);
    let applied = k.ok(&["apply", "-f", &manifest]).await;
    assert!(
        applied.contains("role.rbac.authorization.k8s.io/secret-reader created"),
        "{applied}"
    );
    assert!(
        applied.contains("rolebinding.rbac.authorization.k8s.io/alice-reads-secrets created"),
        "{applied}"
    );
    k.ok(&["--context", "alice", "get", "secrets"]).await;
    k.ok(&["--as", "alice", "get", "secrets"]).await;
    let out = k
        .run(&["--context", "alice", "get", "secrets", "-n", "kube-system"])
        .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("in the namespace \"kube-system\""),
        "{}",
        stderr(&out)
    );
    // bob may not impersonate alice.
    let out = k
        .run(&["--context", "bob", "--as", "alice", "get", "secrets"])
        .await;
    assert!(
        stderr(&out).contains("Error from server (Forbidden): users \"alice\" is forbidden: User \"bob\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_token_must_log_in() {
    let (emu, _admin) = start_with_users().await;
    let k = kubectl_with_users(&emu);
    let out = k
        .run(&["--token", "not-a-token", "get", "namespaces"])
        .await;
    assert!(!out.status.success());
    // What kubectl 1.32 prints for a token kube-apiserver refuses: discovery reads the 401.
    assert!(
        stderr(&out).contains(
            "error: You must be logged in to the server (the server has asked for the client to provide credentials)"
        ),
        "{}",
        stderr(&out)
    );
}

// kubectl 1.32 sends these typed requests as protobuf (client-go's PrefersProtobuf).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_auth_commands_and_create_token() {
    let (emu, _admin) = start_with_users().await;
    let k = kubectl_with_users(&emu);
    assert_eq!(
        k.ok(&["auth", "can-i", "list", "secrets"]).await.trim(),
        "yes"
    );
    let out = k
        .run(&["--context", "alice", "auth", "can-i", "list", "secrets"])
        .await;
    assert_eq!(stdout(&out).trim(), "no");
    // `can-i` answers "no" with exit status 1.
    let out = k
        .run(&["auth", "can-i", "list", "secrets", "--as", "alice"])
        .await;
    assert_eq!(stdout(&out).trim(), "no");
    assert_eq!(out.status.code(), Some(1));
    let manifest = k.write("reader.yaml", READER);
    k.ok(&["apply", "-f", &manifest]).await;
    assert_eq!(
        k.ok(&["--context", "alice", "auth", "can-i", "list", "secrets"])
            .await
            .trim(),
        "yes"
    );
    let list = k
        .ok(&["--context", "alice", "auth", "can-i", "--list"])
        .await;
    assert!(list.contains("secrets"), "{list}");

    let whoami = k.ok(&["--context", "alice", "auth", "whoami"]).await;
    assert!(
        whoami.contains("alice") && whoami.contains("[team-a system:authenticated]"),
        "{whoami}"
    );

    k.ok(&["create", "serviceaccount", "robot"]).await;
    let token = k
        .ok(&["create", "token", "robot", "--duration", "10m"])
        .await;
    let robot = k.ok(&["--token", token.trim(), "auth", "whoami"]).await;
    assert!(
        robot.contains("system:serviceaccount:default:robot"),
        "{robot}"
    );
    k.ok(&[
        "create",
        "role",
        "cm-reader",
        "--verb=get",
        "--resource=configmaps",
    ])
    .await;
    k.ok(&[
        "create",
        "rolebinding",
        "bob-cm",
        "--role=cm-reader",
        "--user=bob",
    ])
    .await;
    assert_eq!(
        k.ok(&["--context", "bob", "auth", "can-i", "get", "configmaps"])
            .await
            .trim(),
        "yes"
    );
}
