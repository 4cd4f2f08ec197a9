//! What `spec.secret` asks of the token's Secret: its name and data key, and
//! whether its extra labels and annotations are ones the API server accepts
//! (the CRD schema cannot express that).

use crate::api::ApiToken;

/// Key of the value inside the Secret when `spec.secret.key` is not set.
pub const DEFAULT_SECRET_KEY: &str = "token";

/// Where the token's value goes.
pub fn secret_target(token: &ApiToken) -> (String, String) {
    let spec = token.spec.secret.as_ref();
    let name = spec
        .and_then(|s| s.name.clone())
        .unwrap_or_else(|| token.metadata.name.clone().unwrap_or_default());
    let key = spec
        .and_then(|s| s.key.clone())
        .unwrap_or_else(|| DEFAULT_SECRET_KEY.to_owned());
    (name, key)
}

/// What the API server would refuse in the Secret's extra labels and
/// annotations (`spec.secret.labels`, `spec.secret.annotations`), which the
/// CRD schema cannot express; `None` when they are valid.
pub fn secret_template_error(token: &ApiToken) -> Option<String> {
    let template = token.spec.secret.as_ref()?;
    for (key, value) in &template.labels {
        if let Some(why) = qualified_name_error(key) {
            return Some(format!(
                "spec.secret.labels: key {key:?} is not a valid label key: {why}"
            ));
        }
        if value.len() > 63 {
            return Some(format!(
                "spec.secret.labels: the value of {key:?} is {} characters long, a label value allows at most 63",
                value.len()
            ));
        }
        if !value.is_empty() && !is_label_token(value) {
            return Some(format!(
                "spec.secret.labels: the value of {key:?} is not a valid label value: use letters, \
                 digits, '-', '_' and '.', starting and ending with a letter or digit"
            ));
        }
    }
    // The operator records the template's keys in one more annotation (a
    // JSON object of two lists of quoted keys).
    let record = 32
        + template
            .labels
            .keys()
            .chain(template.annotations.keys())
            .map(|k| k.len() + 3)
            .sum::<usize>();
    let mut total = record;
    for (key, value) in &template.annotations {
        total += key.len() + value.len();
        if let Some(why) = qualified_name_error(&key.to_lowercase()) {
            return Some(format!(
                "spec.secret.annotations: key {key:?} is not a valid annotation key: {why}"
            ));
        }
    }
    // Leaves room for the annotation the operator adds.
    const ANNOTATIONS_MAX: usize = 256 * 1024 - 512;
    if total > ANNOTATIONS_MAX {
        return Some(format!(
            "spec.secret.annotations are {total} bytes with the record of the labels' and \
             annotations' keys the operator adds, at most {ANNOTATIONS_MAX} are allowed"
        ));
    }
    None
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters.
fn is_label_token(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Why `key` is not a Kubernetes qualified name (`[dns-subdomain/]name`).
fn qualified_name_error(key: &str) -> Option<&'static str> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let dns = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|l| {
                !l.is_empty()
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            });
        if !dns {
            return Some(
                "the prefix before '/' must be a lowercase DNS subdomain such as example.com",
            );
        }
    }
    if name.len() > 63 {
        return Some("the name part must be no more than 63 characters");
    }
    if name.contains('/') || !is_label_token(name) {
        return Some(
            "the name part must consist of letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        );
    }
    None
}
