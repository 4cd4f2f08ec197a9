//! The custom resource types `ApiKey` and `ApiToken` (group `apikeys.dev`).
//!
//! Types and schema only, no I/O: the controller and verifier read them, the
//! `crds` command renders them, and `crds/` is generated from them.

mod apikey;
mod apitoken;
mod common;
pub mod conditions;
pub mod owner;

pub use apikey::{ApiKey, ApiKeySpec, ApiKeyStatus, Owner, OwnerKind, TokenDefaults};
pub use apitoken::{
    ApiKeyRef, ApiToken, ApiTokenSpec, ApiTokenStatus, MAX_PREVIOUS, PendingValue, PreviousValue,
    RestartTarget, RestartTargetKind, RetiredValue, SecretTemplate, TokenRotation,
};
pub use common::{Expiration, Rotation};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

/// The API group of both resources.
pub const GROUP: &str = "apikeys.dev";
/// The prefix of this project's annotation and label keys.
pub const GROUP_PREFIX: &str = "apikeys.dev/";
/// The served and stored version of both resources.
pub const VERSION: &str = "v1alpha1";
/// Annotation whose every new value rotates an ApiToken exactly once.
pub const ROTATE_ANNOTATION: &str = "apikeys.dev/rotate";
/// Annotation whose every new value revokes an ApiToken exactly once: the
/// current value and every earlier one stop working at once, and a fresh
/// value is issued.
pub const REVOKE_ANNOTATION: &str = "apikeys.dev/revoke";

/// Both CRDs, in the order they should be applied.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![ApiKey::crd(), ApiToken::crd()];
    for crd in &mut crds {
        for version in &mut crd.spec.versions {
            if let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            {
                walk(schema, &mut |s| {
                    bound_time(s);
                    unwrap_description(s);
                });
            }
        }
    }
    crds
}

/// An RFC 3339 timestamp in the years 0000–9998. `format: date-time` alone
/// (kube-openapi's IsDateTime) checks that the date and the time of day are
/// real, but also takes what no RFC 3339 parser reads: text after a second
/// `t` (`2030-01-01T00:00:00Zt`), any character before the fraction, any
/// number of fraction digits, a zone offset of `+99:99`.
const TIME_PATTERN: &str = concat!(
    "^([0-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-[0-9]{2}-[0-9]{2}",
    "[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]([.][0-9]{1,9})?",
    "([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
);

/// Gives a `date-time` field (every one, spec, status and conditions, by
/// `walk`) the pattern above: only what the Rust clients (jiff) can read gets stored. Go accepts
/// instants to the end of 9999, jiff only to 9999-12-30T22:00Z, and it
/// refuses the odd forms IsDateTime lets through. One such value in a
/// token's status made every later watch event of that token undecodable
/// (a rotation request was ignored); in any token's spec, which every user
/// who may create ApiTokens writes, it made every list of ApiTokens
/// undecodable, so no operator or verifier could start. (An object stored
/// before this bound is dropped alone: see `crate::lean`.)
fn bound_time(schema: &mut JSONSchemaProps) {
    if schema.format.as_deref() == Some("date-time") && schema.pattern.is_none() {
        schema.pattern = Some(TIME_PATTERN.to_owned());
    }
}

/// Doc comments are wrapped at 100 columns in the source; `kubectl explain`
/// shows descriptions as they are, so a wrap would break a sentence in two.
/// Lines are joined within a paragraph; blank lines and list items stay.
fn unwrap_description(schema: &mut JSONSchemaProps) {
    let Some(text) = schema.description.as_mut() else {
        return;
    };
    let mut out = String::with_capacity(text.len());
    for (i, paragraph) in text.split("\n\n").enumerate() {
        if i > 0 {
            out.push_str("\n\n");
        }
        for (j, line) in paragraph.lines().enumerate() {
            let item = line.starts_with("- ") || line.starts_with("* ");
            if j > 0 {
                out.push(if item { '\n' } else { ' ' });
            }
            out.push_str(if item { line } else { line.trim_start() });
        }
    }
    *text = out;
}

/// Applies `change` to `schema` and every schema inside it.
fn walk(schema: &mut JSONSchemaProps, change: &mut impl FnMut(&mut JSONSchemaProps)) {
    change(schema);
    for child in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        walk(child, change);
    }
    match &mut schema.items {
        Some(JSONSchemaPropsOrArray::Schema(item)) => walk(item, change),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => {
            items.iter_mut().for_each(|item| walk(item, change))
        }
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(extra)) = &mut schema.additional_properties {
        walk(extra, change);
    }
}

/// Both CRDs as one multi-document YAML stream, as `apikey-operator crds` prints it.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `kubectl explain` shows a description as it is: the source's line wraps are joined
    /// within a paragraph; paragraphs and list items stay apart.
    #[test]
    fn descriptions_read_as_sentences() {
        let mut schema = JSONSchemaProps {
            description: Some(
                "Deployments whose pods\nread the Secret.\n\nEither:\n- a lifetime\n- an instant"
                    .to_owned(),
            ),
            ..JSONSchemaProps::default()
        };
        unwrap_description(&mut schema);
        assert_eq!(
            schema.description.as_deref(),
            Some("Deployments whose pods read the Secret.\n\nEither:\n- a lifetime\n- an instant")
        );
        let every = crds_yaml().expect("yaml");
        assert!(
            !every.contains("whose pods\n"),
            "a wrapped description in the CRDs"
        );
    }
}
