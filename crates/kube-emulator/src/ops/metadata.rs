//! Metadata bookkeeping and checks shared by the verbs: uids, generated names, finalizers,
//! name/label/annotation syntax as apimachinery validates it, and whether a change bumps
//! `metadata.generation`. Used by `create`, `update`, `delete` and `crd`.

use rand::Rng;
use serde_json::{Value, json};

use crate::error::{ApiError, field_error};
use crate::registry::ResourceDef;
use crate::schema::FieldErrorKind;

pub(crate) fn new_uid() -> String {
    let mut rng = rand::rng();
    let b: [u8; 16] = rng.random();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

pub(super) fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub(super) fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn set_finalizers(obj: &mut Value, list: &[String]) {
    if list.is_empty() {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("finalizers");
        }
    } else {
        obj["metadata"]["finalizers"] = json!(list);
    }
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Why `name` is not a valid path segment (`path.IsValidPathSegmentName`).
fn path_segment_problem(name: &str) -> Option<String> {
    if name == "." || name == ".." {
        return Some(format!("may not be '{name}'"));
    }
    ["/", "%"]
        .iter()
        .find(|bad| name.contains(*bad))
        .map(|bad| format!("may not contain '{bad}'"))
}

pub(super) fn validate_name(def: &ResourceDef, name: &str) -> Result<(), ApiError> {
    if def.group == crate::auth::rbac::GROUP {
        // RBAC names are path segments (`system:discovery`), as `ValidateRBACName`.
        if let Some(why) = path_segment_problem(name) {
            return Err(ApiError::invalid(
                def,
                name,
                &[field_error(
                    "metadata.name",
                    FieldErrorKind::Invalid,
                    format!("Invalid value: \"{name}\": {why}"),
                )],
            ));
        }
        return Ok(());
    }
    let ok = if def.plural == "namespaces" && def.group.is_empty() {
        name.len() <= 63 && !name.contains('.') && is_dns_subdomain(name)
    } else {
        is_dns_subdomain(name)
    };
    if ok {
        return Ok(());
    }
    Err(ApiError::invalid(
        def,
        name,
        &[field_error(
            "metadata.name",
            FieldErrorKind::Invalid,
            format!(
                "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
        )],
    ))
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters: a
/// label value (when not empty) or the name part of a qualified name.
fn is_label_token(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// Why `key` is not a qualified name (`[prefix/]name`), as the real server words it.
fn qualified_name_error(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Some("prefix part must be non-empty".to_owned());
        }
        if !is_dns_subdomain(prefix) {
            return Some("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_owned());
        }
    }
    if name.is_empty() {
        return Some("name part must be non-empty".to_owned());
    }
    if name.len() > 63 {
        return Some("name part must be no more than 63 characters".to_owned());
    }
    if name.contains('/') || !is_label_token(name) {
        return Some(QUALIFIED_NAME_MSG.to_owned());
    }
    None
}

/// Total size of all annotations (keys and values) the real server allows.
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// `metadata.labels` and `metadata.annotations` syntax, checked on every write
/// as the real server does (apimachinery `ValidateLabels`, `ValidateAnnotations`).
pub(super) fn validate_metadata(
    def: &ResourceDef,
    name: &str,
    obj: &Value,
) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    if let Some(labels) = obj["metadata"]["labels"].as_object() {
        for (key, value) in labels {
            if let Some(why) = qualified_name_error(key) {
                errors.push(field_error(
                    "metadata.labels",
                    FieldErrorKind::Invalid,
                    format!("Invalid value: {}: {why}", quote(key)),
                ));
            }
            let value = value.as_str().unwrap_or_default();
            if value.len() > 63 {
                errors.push(field_error(
                    "metadata.labels",
                    FieldErrorKind::Invalid,
                    format!(
                        "Invalid value: {}: must be no more than 63 characters",
                        quote(value)
                    ),
                ));
            } else if !value.is_empty() && !is_label_token(value) {
                errors.push(field_error(
                    "metadata.labels",
                    FieldErrorKind::Invalid,
                    format!(
                        "Invalid value: {}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                        quote(value)
                    ),
                ));
            }
        }
    }
    if let Some(annotations) = obj["metadata"]["annotations"].as_object() {
        let mut total = 0;
        for (key, value) in annotations {
            total += key.len() + value.as_str().map_or(0, str::len);
            if let Some(why) = qualified_name_error(&key.to_lowercase()) {
                errors.push(field_error(
                    "metadata.annotations",
                    FieldErrorKind::Invalid,
                    format!("Invalid value: {}: {why}", quote(key)),
                ));
            }
        }
        if total > ANNOTATIONS_MAX_BYTES {
            errors.push(field_error(
                "metadata.annotations",
                FieldErrorKind::TooLong,
                format!("Too long: must have at most {ANNOTATIONS_MAX_BYTES} bytes"),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(def, name, &errors))
    }
}

/// Whether a field whose change bumps `metadata.generation` (anything but metadata, and status
/// where it is a subresource) differs between two objects; compared in place, without copies.
pub(super) fn spec_changed(def: &ResourceDef, a: &Value, b: &Value) -> bool {
    let counts = |k: &str| k != "metadata" && !(def.status_subresource && k == "status");
    let empty = serde_json::Map::new();
    let (a, b) = (
        a.as_object().unwrap_or(&empty),
        b.as_object().unwrap_or(&empty),
    );
    a.iter()
        .filter(|(k, _)| counts(k))
        .any(|(k, v)| b.get(k) != Some(v))
        || b.keys().filter(|k| counts(k)).any(|k| !a.contains_key(k))
}
