//! The served resource types: the fixed built-ins plus one entry per stored CRD.
//! Discovery, OpenAPI, tables and the store all look resource types up here.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

/// One served resource type (a REST collection).
#[derive(Debug, Clone)]
pub struct ResourceDef {
    pub group: String,
    /// Served versions, preferred first.
    pub versions: Vec<String>,
    /// The version objects are stored in.
    pub storage_version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
    /// Reviews (access reviews, TokenReview): only `create`, answered and never stored.
    pub create_only: bool,
    /// Set for custom resources: schema and printer columns per version.
    pub custom: Option<CustomInfo>,
    /// The store key of another resource whose objects these are, served converted
    /// (events.k8s.io Events are core Events, as upstream: one store, two views).
    pub view_of: Option<&'static str>,
}

/// What a CRD adds to a resource type.
#[derive(Debug, Clone, Default)]
pub struct CustomInfo {
    /// Per version, its schema and what validating against it can skip
    /// (`schema::Prepared`, worked out once here rather than on every write).
    pub schemas: HashMap<String, (Value, super::schema::Prepared)>,
    /// Versions whose schema `schema::check` rejected, with the problem (checked once here
    /// rather than on every write).
    pub schema_problems: HashMap<String, String>,
    pub printer_columns: HashMap<String, Vec<Value>>,
}

impl ResourceDef {
    /// Store key: `group/plural` (group empty for the core group), or the key of the resource
    /// this one is a view of.
    pub fn key(&self) -> String {
        match self.view_of {
            Some(key) => key.to_string(),
            None => format!("{}/{}", self.group, self.plural),
        }
    }

    /// Whether objects are served at `version` exactly as stored (no conversion but apiVersion).
    pub fn served_as_stored(&self, version: &str) -> bool {
        self.view_of.is_none() && version == self.storage_version
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    /// `apitokens.apikeys.dev` or `secrets`, as error messages name resources.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `ApiToken.apikeys.dev` or `Secret`, as 422 messages name kinds.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }

    /// `version`'s schema, with what validating against it can skip.
    pub fn schema(&self, version: &str) -> Option<(&Value, &super::schema::Prepared)> {
        let (schema, prepared) = self.custom.as_ref()?.schemas.get(version)?;
        Some((schema, prepared))
    }

    /// Why the schema of `version` cannot be used for validation, if it cannot.
    pub fn schema_problem(&self, version: &str) -> Option<&str> {
        self.custom
            .as_ref()?
            .schema_problems
            .get(version)
            .map(String::as_str)
    }
}

#[allow(clippy::too_many_arguments)] // a table row, read positionally
fn builtin(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    short_names: &[&str],
    categories: &[&str],
    status: bool,
) -> ResourceDef {
    ResourceDef {
        group: group.into(),
        versions: vec![version.into()],
        storage_version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        namespaced,
        short_names: short_names.iter().map(|s| s.to_string()).collect(),
        categories: categories.iter().map(|s| s.to_string()).collect(),
        status_subresource: status,
        create_only: false,
        custom: None,
        view_of: None,
    }
}

/// A create-only review kind (`authorization.k8s.io`, `authentication.k8s.io`).
fn review(group: &str, kind: &str, plural: &str, namespaced: bool) -> ResourceDef {
    ResourceDef {
        create_only: true,
        ..builtin(group, "v1", kind, plural, namespaced, &[], &[], false)
    }
}

const RBAC: &str = "rbac.authorization.k8s.io";
const AUTHZ: &str = "authorization.k8s.io";
const AUTHN: &str = "authentication.k8s.io";

/// All resource types currently served.
#[derive(Debug, Clone)]
pub struct Registry {
    defs: Vec<Arc<ResourceDef>>,
}

impl Registry {
    pub fn builtins() -> Vec<ResourceDef> {
        vec![
            builtin(
                "",
                "v1",
                "Namespace",
                "namespaces",
                false,
                &["ns"],
                &[],
                true,
            ),
            builtin("", "v1", "Secret", "secrets", true, &[], &[], false),
            builtin(
                "",
                "v1",
                "ConfigMap",
                "configmaps",
                true,
                &["cm"],
                &[],
                false,
            ),
            builtin(
                "",
                "v1",
                "ServiceAccount",
                "serviceaccounts",
                true,
                &["sa"],
                &[],
                false,
            ),
            builtin("", "v1", "Event", "events", true, &["ev"], &[], false),
            ResourceDef {
                view_of: Some(crate::events::CORE_KEY),
                ..builtin(
                    "events.k8s.io",
                    "v1",
                    "Event",
                    "events",
                    true,
                    &["ev"],
                    &[],
                    false,
                )
            },
            builtin(
                "coordination.k8s.io",
                "v1",
                "Lease",
                "leases",
                true,
                &[],
                &[],
                false,
            ),
            builtin(
                "apps",
                "v1",
                "Deployment",
                "deployments",
                true,
                &["deploy"],
                &["all"],
                true,
            ),
            builtin(
                "apps",
                "v1",
                "StatefulSet",
                "statefulsets",
                true,
                &["sts"],
                &["all"],
                true,
            ),
            builtin(
                "apps",
                "v1",
                "DaemonSet",
                "daemonsets",
                true,
                &["ds"],
                &["all"],
                true,
            ),
            builtin(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
                false,
                &["crd", "crds"],
                &["api-extensions"],
                true,
            ),
            builtin(
                "admissionregistration.k8s.io",
                "v1",
                "ValidatingWebhookConfiguration",
                "validatingwebhookconfigurations",
                false,
                &[],
                &["api-extensions"],
                false,
            ),
            builtin(
                "admissionregistration.k8s.io",
                "v1",
                "MutatingWebhookConfiguration",
                "mutatingwebhookconfigurations",
                false,
                &[],
                &["api-extensions"],
                false,
            ),
            builtin(
                "admissionregistration.k8s.io",
                "v1",
                "ValidatingAdmissionPolicy",
                "validatingadmissionpolicies",
                false,
                &[],
                &["api-extensions"],
                true,
            ),
            builtin(
                "admissionregistration.k8s.io",
                "v1",
                "ValidatingAdmissionPolicyBinding",
                "validatingadmissionpolicybindings",
                false,
                &[],
                &["api-extensions"],
                false,
            ),
            builtin(RBAC, "v1", "Role", "roles", true, &[], &[], false),
            builtin(
                RBAC,
                "v1",
                "ClusterRole",
                "clusterroles",
                false,
                &[],
                &[],
                false,
            ),
            builtin(
                RBAC,
                "v1",
                "RoleBinding",
                "rolebindings",
                true,
                &[],
                &[],
                false,
            ),
            builtin(
                RBAC,
                "v1",
                "ClusterRoleBinding",
                "clusterrolebindings",
                false,
                &[],
                &[],
                false,
            ),
            review(AUTHZ, "SubjectAccessReview", "subjectaccessreviews", false),
            review(
                AUTHZ,
                "LocalSubjectAccessReview",
                "localsubjectaccessreviews",
                true,
            ),
            review(
                AUTHZ,
                "SelfSubjectAccessReview",
                "selfsubjectaccessreviews",
                false,
            ),
            review(
                AUTHZ,
                "SelfSubjectRulesReview",
                "selfsubjectrulesreviews",
                false,
            ),
            review(AUTHN, "SelfSubjectReview", "selfsubjectreviews", false),
            review(AUTHN, "TokenReview", "tokenreviews", false),
        ]
    }

    /// Built-ins plus the resource types of the given (accepted) CRD objects.
    pub fn build<'a>(crds: impl Iterator<Item = &'a Value>) -> Registry {
        let mut defs: Vec<Arc<ResourceDef>> = Self::builtins().into_iter().map(Arc::new).collect();
        for crd in crds {
            if let Some(def) = def_from_crd(crd) {
                defs.push(Arc::new(def));
            }
        }
        Registry { defs }
    }

    pub fn all(&self) -> &[Arc<ResourceDef>] {
        &self.defs
    }

    /// The resource type serving `plural` in `group`/`version`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        self.defs
            .iter()
            .find(|d| d.group == group && d.plural == plural && d.serves(version))
            .cloned()
    }

    /// Served group/versions, with the core group first.
    pub fn group_versions(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for d in &self.defs {
            match out.iter_mut().find(|(g, _)| *g == d.group) {
                Some((_, versions)) => {
                    for v in &d.versions {
                        if !versions.contains(v) {
                            versions.push(v.clone());
                        }
                    }
                }
                None => out.push((d.group.clone(), d.versions.clone())),
            }
        }
        out
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The resource type a CRD object defines, or None if it is malformed.
pub fn def_from_crd(crd: &Value) -> Option<ResourceDef> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let group = spec["group"].as_str()?;
    let plural = names["plural"].as_str()?;
    let kind = names["kind"].as_str()?;
    let mut custom = CustomInfo::default();
    let mut served = Vec::new();
    let mut storage = None;
    let mut status = false;
    for v in spec["versions"].as_array()? {
        let name = v["name"].as_str()?;
        if v["served"].as_bool().unwrap_or(false) {
            served.push(name.to_string());
        }
        if v["storage"].as_bool().unwrap_or(false) {
            storage = Some(name.to_string());
        }
        if v["subresources"]["status"].is_object() {
            status = true;
        }
        if let Some(schema) = v["schema"].get("openAPIV3Schema") {
            if let Err(problem) = super::schema::check(schema) {
                custom.schema_problems.insert(name.to_string(), problem);
            }
            custom.schemas.insert(
                name.to_string(),
                (schema.clone(), super::schema::Prepared::new(schema)),
            );
        }
        if let Some(cols) = v["additionalPrinterColumns"].as_array() {
            custom
                .printer_columns
                .insert(name.to_string(), cols.clone());
        }
    }
    if served.is_empty() {
        return None;
    }
    served.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
    Some(ResourceDef {
        group: group.to_string(),
        storage_version: storage.unwrap_or_else(|| served[0].clone()),
        versions: served,
        kind: kind.to_string(),
        plural: plural.to_string(),
        singular: names["singular"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| kind.to_lowercase()),
        namespaced: spec["scope"].as_str() != Some("Cluster"),
        short_names: strings(&names["shortNames"]),
        categories: strings(&names["categories"]),
        status_subresource: status,
        create_only: false,
        custom: Some(custom),
        view_of: None,
    })
}

/// Kubernetes version ordering: GA > beta > alpha, higher numbers first.
fn version_priority(v: &str) -> (u8, u32, u32) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let major: u32 = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    let (stage, minor) = if tail.is_empty() {
        (3, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n.parse().unwrap_or(0))
    } else {
        (0, 0)
    };
    (stage, major, minor)
}
