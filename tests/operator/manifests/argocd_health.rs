//! The Argo CD health check (examples/argocd/health.lua), run by a real Lua
//! 5.4 interpreter (Debian's `lua5.4`; CI installs it) on sample ApiTokens
//! and ApiKeys. Skips with a note when no interpreter is installed.

use std::process::Command;

use serde_json::{Value, json};

const SCRIPT: &str = "examples/argocd/health.lua";

/// A JSON value as a Lua table constructor.
fn lua(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("[{k:?}] = {}", lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn interpreter() -> Option<&'static str> {
    ["lua5.4", "lua"].into_iter().find(|bin| {
        Command::new(bin)
            .arg("-v")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// `(status, message)` as Argo CD would get them.
fn health(lua_bin: &str, obj: &Value) -> (String, String) {
    let program = format!(
        "obj = {}\nlocal hs = dofile({:?})\nio.write(hs.status, \"\\n\", hs.message or \"\")",
        lua(obj),
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/argocd/health.lua")
    );
    let out = Command::new(lua_bin)
        .args(["-e", &program])
        .output()
        .expect("lua runs");
    assert!(
        out.status.success(),
        "{SCRIPT} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let (status, message) = text.split_once('\n').expect("two lines");
    (status.to_owned(), message.to_owned())
}

fn token(conditions: Value) -> Value {
    json!({
        "apiVersion": "apikeys.dev/v1alpha1",
        "kind": "ApiToken",
        "metadata": {"name": "t", "namespace": "ns", "generation": 2},
        "spec": {"apiKeyRef": {"name": "k"}},
        "status": {"observedGeneration": 2, "conditions": conditions},
    })
}

fn cond(type_: &str, status: &str, reason: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": format!("{reason} message")})
}

#[test]
fn health_follows_the_conditions() {
    let Some(bin) = interpreter() else {
        eprintln!("skipped: no lua5.4 interpreter (apt-get install lua5.4)");
        return;
    };
    let cases = [
        (
            token(json!([
                cond("Ready", "True", "Issued"),
                cond("Expired", "False", "Valid")
            ])),
            "Healthy",
        ),
        (
            token(json!([cond("Ready", "False", "Issuing")])),
            "Progressing",
        ),
        (
            token(json!([cond("Ready", "False", "ApiKeyNotFound")])),
            "Progressing",
        ),
        (
            token(json!([
                cond("Ready", "False", "Expired"),
                cond("Expired", "True", "Expired")
            ])),
            "Degraded",
        ),
        (
            token(json!([cond("Ready", "False", "SecretConflict")])),
            "Degraded",
        ),
        (
            token(json!([cond("Ready", "False", "InvalidSpec")])),
            "Degraded",
        ),
        (
            token(json!([cond("Ready", "False", "Disabled")])),
            "Suspended",
        ),
        (token(json!([])), "Progressing"),
    ];
    for (obj, want) in cases {
        let (status, message) = health(bin, &obj);
        assert_eq!(status, want, "{obj}: {message}");
    }
    let mut no_status = token(json!([]));
    no_status["status"] = Value::Null;
    assert_eq!(health(bin, &no_status).0, "Progressing");
    let mut stale = token(json!([cond("Ready", "True", "Issued")]));
    stale["status"]["observedGeneration"] = json!(1);
    assert_eq!(
        health(bin, &stale).0,
        "Progressing",
        "status of an older generation"
    );
    let key = json!({
        "kind": "ApiKey",
        "metadata": {"name": "k", "generation": 1},
        "status": {"observedGeneration": 1, "conditions": [cond("Ready", "False", "OwnerNotFound")]},
    });
    assert_eq!(health(bin, &key).0, "Progressing");
}

#[test]
fn the_argocd_cm_patch_carries_the_same_script() {
    let script = std::fs::read_to_string(SCRIPT).expect("health.lua");
    let patch: Value = serde_yaml::from_str(
        &std::fs::read_to_string("examples/argocd/argocd-cm-patch.yaml").expect("patch"),
    )
    .expect("YAML");
    for kind in ["ApiToken", "ApiKey"] {
        let embedded = patch["data"][format!("resource.customizations.health.apikeys.dev_{kind}")]
            .as_str()
            .expect("script present");
        assert_eq!(
            embedded, script,
            "examples/argocd/argocd-cm-patch.yaml differs from health.lua for {kind}; copy the script again"
        );
    }
}
