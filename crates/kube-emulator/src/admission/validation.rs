//! What upstream's `ValidateValidatingWebhookConfiguration` refuses with 422, in its words: the
//! fields the gate relies on (names, clientConfig, sideEffects, failurePolicy, timeouts,
//! review versions, matchConditions). Called by `ops` on every write of a configuration.

use serde_json::{Value, json};

use super::matching::compile;
use crate::schema::FieldError;

fn supported(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| s.to_string()).collect()
}

/// The field errors of a ValidatingWebhookConfiguration; empty when it may be stored.
pub fn validate_configuration(config: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let hooks = config["webhooks"].as_array().cloned().unwrap_or_default();
    let mut names = Vec::new();
    for (i, w) in hooks.iter().enumerate() {
        let at = |f: &str| format!("webhooks[{i}].{f}");
        let name = w["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            errs.push(FieldError::required(at("name"), ""));
        } else if name.split('.').filter(|s| !s.is_empty()).count() < 3 {
            errs.push(FieldError::invalid(
                at("name"),
                &json!(name),
                "should be a domain with at least three segments separated by dots",
            ));
        } else if names.contains(&name) {
            errs.push(FieldError::duplicate(at("name"), &json!(name)));
        }
        names.push(name);
        let cc = &w["clientConfig"];
        match (cc["url"].as_str(), cc["service"].is_object()) {
            (Some(_), true) | (None, false) => errs.push(FieldError::required(
                at("clientConfig"),
                "exactly one of url or service is required",
            )),
            (Some(url), false) if !url.starts_with("https://") => errs.push(FieldError::invalid(
                at("clientConfig.url"),
                &json!(url),
                "'https' is the only allowed URL scheme",
            )),
            _ => {}
        }
        if cc["service"].is_object() {
            for f in ["namespace", "name"] {
                if cc["service"][f].as_str().is_none_or(str::is_empty) {
                    errs.push(FieldError::required(
                        at(&format!("clientConfig.service.{f}")),
                        format!("service {f} is required"),
                    ));
                }
            }
        }
        match w["sideEffects"].as_str() {
            None => errs.push(FieldError::required(
                at("sideEffects"),
                "must specify one of None, NoneOnDryRun",
            )),
            Some("None" | "NoneOnDryRun") => {}
            Some(other) => errs.push(FieldError::not_supported(
                at("sideEffects"),
                &json!(other),
                &supported(&["None", "NoneOnDryRun"]),
            )),
        }
        if let Some(p) = w["failurePolicy"].as_str()
            && !matches!(p, "Fail" | "Ignore")
        {
            errs.push(FieldError::not_supported(
                at("failurePolicy"),
                &json!(p),
                &supported(&["Fail", "Ignore"]),
            ));
        }
        if let Some(p) = w["matchPolicy"].as_str()
            && !matches!(p, "Exact" | "Equivalent")
        {
            errs.push(FieldError::not_supported(
                at("matchPolicy"),
                &json!(p),
                &supported(&["Equivalent", "Exact"]),
            ));
        }
        if let Some(t) = w["timeoutSeconds"].as_i64()
            && !(1..=30).contains(&t)
        {
            errs.push(FieldError::invalid(
                at("timeoutSeconds"),
                &json!(t),
                "the timeout value must be between 1 and 30 seconds",
            ));
        }
        let versions = w["admissionReviewVersions"].as_array();
        if versions.is_none_or(|v| v.is_empty()) {
            errs.push(FieldError::required(
                at("admissionReviewVersions"),
                "must specify one of v1, v1beta1",
            ));
        } else if versions.is_some_and(|v| !v.iter().any(|x| x == "v1")) {
            // The emulator sends v1 reviews only; upstream would also speak v1beta1.
            errs.push(FieldError::invalid(
                at("admissionReviewVersions"),
                &w["admissionReviewVersions"],
                "must include at least one of v1",
            ));
        }
    }
    // Expressions that do not compile, found by compiling as the gate would.
    let single = |w: &Value| compile(&json!({"webhooks": [w]}));
    for (i, w) in hooks.iter().enumerate() {
        for hook in single(w) {
            for (j, c) in hook.conditions.iter().enumerate() {
                if let Err(e) = &c.program {
                    errs.push(FieldError::invalid(
                        format!("webhooks[{i}].matchConditions[{j}].expression"),
                        &w["matchConditions"][j]["expression"],
                        format!("compilation failed: {e}"),
                    ));
                }
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(w: Value) -> Vec<String> {
        validate_configuration(&json!({"webhooks": [w]}))
            .iter()
            .map(FieldError::to_string_like_apiserver)
            .collect()
    }

    #[test]
    fn configurations_are_refused_as_upstream_words_it() {
        let ok = json!({"name": "a.b.dev", "clientConfig": {"url": "https://x"}, "sideEffects": "None",
                        "admissionReviewVersions": ["v1"]});
        assert_eq!(rendered(ok.clone()), Vec::<String>::new());
        let with = |k: &str, v: Value| {
            let mut w = ok.clone();
            w[k] = v;
            rendered(w)
        };
        assert_eq!(
            with("sideEffects", json!("Some")),
            [
                "webhooks[0].sideEffects: Unsupported value: \"Some\": supported values: \"None\", \"NoneOnDryRun\""
            ]
        );
        assert_eq!(
            with("timeoutSeconds", json!(31)),
            [
                "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds"
            ]
        );
        assert_eq!(
            with("clientConfig", json!({"url": "http://x"})),
            [
                "webhooks[0].clientConfig.url: Invalid value: \"http://x\": 'https' is the only allowed URL scheme"
            ]
        );
        assert_eq!(
            with("name", json!("short.dev")),
            [
                "webhooks[0].name: Invalid value: \"short.dev\": should be a domain with at least three segments separated by dots"
            ]
        );
        assert_eq!(
            with("failurePolicy", json!("Maybe")),
            [
                "webhooks[0].failurePolicy: Unsupported value: \"Maybe\": supported values: \"Fail\", \"Ignore\""
            ]
        );
        assert_eq!(
            with(
                "matchConditions",
                json!([{"name": "c", "expression": "object.("}])
            )
            .len(),
            1
        );
    }
}
