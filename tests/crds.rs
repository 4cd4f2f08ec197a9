//! The committed `crds/` and the Helm chart's `crds/` must equal what the
//! Rust types generate, and the `crds` command must print exactly that.

use std::process::Command;

const COMMITTED: &str = include_str!("../crds/apikeys.dev.yaml");
const CHART: &str = include_str!("../charts/apikey-operator/crds/apikeys.dev.yaml");

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
    assert!(yaml.contains("rule: has(self.expiresAt) != has(self.lifetime)"));
}
