//! The committed `crds/` and the Helm chart's `crds/` must equal what the
//! Rust types generate, and the `crds` command must print exactly that.

use std::process::Command;

use crate::support::{create_key, create_token};

const COMMITTED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crds/apikeys.dev.yaml"
));
const CHART: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/charts/apikey-operator/crds/apikeys.dev.yaml"
));

#[test]
fn committed_crds_match_the_types() {
    let generated = apikey_operator::api::crds_yaml().expect("CRDs render as YAML");
    assert!(
        generated == COMMITTED,
        "crds/apikeys.dev.yaml is stale; regenerate it with \
         `cargo run -- crds > crds/apikeys.dev.yaml` and commit the result"
    );
}

#[test]
fn chart_crds_match_the_types() {
    let generated = apikey_operator::api::crds_yaml().expect("CRDs render as YAML");
    assert!(
        generated == CHART,
        "charts/apikey-operator/crds/apikeys.dev.yaml is stale; regenerate it with \
         `cargo run -- crds > charts/apikey-operator/crds/apikeys.dev.yaml` and commit the result"
    );
}

#[test]
fn crds_command_prints_the_committed_crds() {
    let out = Command::new(env!("CARGO_BIN_EXE_apikey-operator"))
        .arg("crds")
        .output()
        .expect("run apikey-operator crds");
    assert!(
        out.status.success(),
        "crds failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), COMMITTED);
}

#[test]
fn crds_are_namespaced_with_status_and_immutability_rules() {
    let crds = apikey_operator::api::crds();
    let names: Vec<_> = crds.iter().map(|c| c.spec.names.kind.as_str()).collect();
    assert_eq!(names, ["ApiKey", "ApiToken"]);
    for crd in &crds {
        assert_eq!(crd.spec.group, "apikeys.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        assert!(
            crd.spec
                .names
                .short_names
                .as_ref()
                .is_some_and(|s| !s.is_empty())
        );
        assert!(
            crd.spec
                .names
                .categories
                .as_ref()
                .is_some_and(|c| !c.is_empty())
        );
    }
    let yaml = apikey_operator::api::crds_yaml().expect("CRDs render as YAML");
    assert_eq!(
        yaml.matches("rule: self == oldSelf").count(),
        2,
        "owner and apiKeyRef are immutable"
    );
    // Exactly one of lifetime and expiresAt, and durations, are checked by CEL rules whose
    // messages say what to write, not by keywords that answer with a count or a regex.
    assert!(yaml.contains("rule: '!has(self.expiresAt) || !has(self.lifetime)'"));
    assert!(yaml.contains("rule: has(self.expiresAt) || has(self.lifetime)"));
    assert!(
        !yaml.contains("maxProperties: 1\n"),
        "expiration counts properties"
    );
    assert_eq!(
        yaml.matches(apikey_operator::duration::DURATION_MESSAGE)
            .count(),
        8,
        "the four duration fields of a key's defaults and of a token"
    );
    assert!(!yaml.contains("pattern: ^(?:[0-9]+w"), "a duration pattern");
}

/// Every time in either status, conditions included, refuses the year 9999
/// and text after the time (Go accepts both; the Rust clients cannot decode
/// them, and one such value froze its token for the operator and the
/// verifier), and still takes 9998.
#[tokio::test]
async fn status_times_refuse_the_year_9999() {
    use apikey_operator::api::{ApiKey, ApiToken};
    use kube::api::{Api, Patch, PatchParams};
    use serde_json::{Value, json};

    let emulator = kube_emulator::Emulator::start(Default::default())
        .await
        .expect("emulator starts");
    let client = emulator.client().await.expect("client");
    apikey_operator::cli::install_crds(client.clone(), std::time::Duration::from_secs(30))
        .await
        .expect("CRDs installed");
    let keys: Api<ApiKey> = Api::namespaced(client.clone(), "default");
    let tokens: Api<ApiToken> = Api::namespaced(client.clone(), "default");
    create_key(&keys, "alice", "User", "alice").await;
    create_token(&tokens, "t", "{apiKeyRef: {name: alice}}").await;

    // (resource, field, the status with `AT` where the time goes)
    const CONDITION: &str = r#"{"conditions": [{"type": "Ready", "status": "True",
        "reason": "Issued", "message": "", "lastTransitionTime": "AT"}]}"#;
    let cases = [
        (
            "apikeys",
            "status.conditions[0].lastTransitionTime",
            CONDITION,
        ),
        (
            "apitokens",
            "status.conditions[0].lastTransitionTime",
            CONDITION,
        ),
        ("apitokens", "status.issuedAt", r#"{"issuedAt": "AT"}"#),
        ("apitokens", "status.expiresAt", r#"{"expiresAt": "AT"}"#),
        (
            "apitokens",
            "status.nextRotationAt",
            r#"{"nextRotationAt": "AT"}"#,
        ),
        (
            "apitokens",
            "status.lastRotatedAt",
            r#"{"lastRotatedAt": "AT"}"#,
        ),
        ("apitokens", "status.lastUsedAt", r#"{"lastUsedAt": "AT"}"#),
        (
            "apitokens",
            "status.pending.startedAt",
            r#"{"pending": {"hash": "sha256:00", "reason": "Issue", "startedAt": "AT"}}"#,
        ),
        (
            "apitokens",
            "status.previous[0].validUntil",
            r#"{"previous": [{"hash": "sha256:00", "validUntil": "AT"}]}"#,
        ),
    ];
    for (resource, field, status) in &cases {
        let write = |at: &str| {
            let status: Value = serde_json::from_str(&status.replace("AT", at)).expect("case");
            let patch = Patch::Merge(json!({ "status": status }));
            let (keys, tokens) = (keys.clone(), tokens.clone());
            async move {
                let params = PatchParams::default();
                if *resource == "apikeys" {
                    keys.patch_status("alice", &params, &patch).await.map(drop)
                } else {
                    tokens.patch_status("t", &params, &patch).await.map(drop)
                }
            }
        };
        // The year 9999, and a form the date-time format alone takes.
        for bad in ["9999-12-31T23:59:59Z", "2026-01-01T00:00:00Zt"] {
            match write(bad).await {
                Err(kube::Error::Api(e)) => assert!(
                    e.code == 422 && e.message.contains(field),
                    "{resource} {field}: {bad} refused, but not as invalid at that field: {e:?}"
                ),
                other => panic!("{resource} {field}: {bad} was not refused: {other:?}"),
            }
        }
        if let Err(e) = write("9998-12-31T23:59:59Z").await {
            panic!("{resource} {field}: the year 9998 was refused: {e}");
        }
        // Back to an ordinary time, so the next case's write is about its field only.
        write("2026-01-01T00:00:00Z")
            .await
            .expect("an ordinary time");
    }
}
