//! Structural-schema handling for custom resources, as kube-apiserver does it:
//! prune unknown fields, apply `default`s, then validate (OpenAPI v3 keywords,
//! list-type invariants, embedded resources, CEL `x-kubernetes-validations`).
//!
//! The order, the field paths and the error texts follow apiextensions-apiserver
//! and kube-openapi: keyword errors name the field the way kube-openapi does
//! (`spec.items[0].name`, map keys joined with a dot) and carry its message
//! (`spec.x in body should match '^a$'`); list-type and CEL errors use
//! `field.Path` rendering (`spec.tags[foo]`). On update, errors on values that
//! did not change are dropped ("ratcheting"), as the real server does since 1.30.
//! CEL rules are evaluated with the `kube-cel` crate (see [`CEL_EMULATED`]).
//!
//! This file holds the public API (`validate_and_prune`, `check`, `FieldError`, `Prepared`);
//! the walks live beside it: `prune` and `defaults` (structural pruning and defaulting),
//! `keywords` (OpenAPI keyword validation), `formats`, `embedded`, `lists` and `cel`, over the
//! helpers in `paths`, `go_values` and `access`.

mod access;
mod cel;
mod defaults;
mod embedded;
mod formats;
mod go_values;
mod keywords;
mod lists;
mod paths;
mod prune;

use std::fmt;

use serde_json::Value;

use access::check_schema;
use cel::cel_node;
pub use cel::rules_skeleton;
use defaults::apply_defaults;
use embedded::validate_embedded;
use go_values::{go_quote, go_value};
use keywords::validate_node;
use lists::validate_lists;
use prune::{prune, prune_nulls};

/// Whether `x-kubernetes-validations` CEL rules are evaluated (via the `kube-cel`
/// crate, the `cel` interpreter with the Kubernetes function libraries).
pub const CEL_EMULATED: bool = true;

/// One field-level validation error, shaped like apimachinery's `field.Error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field path as the real apiserver renders it (`spec.items[0].name`,
    /// `spec.tags[foo]`, or `<nil>` for errors not tied to a field).
    pub field: String,
    /// The error type.
    pub kind: FieldErrorKind,
    /// The detail text (may be empty, e.g. for a plain `Required value`).
    pub message: String,
    /// The offending value, already rendered the way Go's `field.Error` prints it
    /// (`"abc"`, `5`, `map[string]interface {}{"name":"a"}`); `None` when the
    /// real server omits it.
    pub bad_value: Option<String>,
}

/// The `field.ErrorType`s this module produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldErrorKind {
    Required,
    Invalid,
    NotSupported,
    TooLong,
    TooMany,
    TypeInvalid,
    Forbidden,
    Duplicate,
}

impl FieldErrorKind {
    /// The machine-readable reason used in `Status.details.causes[].reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::TypeInvalid => "FieldValueTypeInvalid",
            Self::Forbidden => "FieldValueForbidden",
            Self::Duplicate => "FieldValueDuplicate",
        }
    }

    /// The human text Go's `ErrorType.String()` gives.
    pub fn text(&self) -> &'static str {
        match self {
            Self::Required => "Required value",
            Self::Invalid | Self::TypeInvalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
            Self::Forbidden => "Forbidden",
            Self::Duplicate => "Duplicate value",
        }
    }
}

impl FieldError {
    /// `field.Required(path, detail)`.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::raw(field, FieldErrorKind::Required, None, detail)
    }

    /// `field.Forbidden(path, detail)`.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::raw(field, FieldErrorKind::Forbidden, None, detail)
    }

    /// `field.Invalid(path, value, detail)` with a JSON value.
    pub fn invalid(field: impl Into<String>, value: &Value, detail: impl Into<String>) -> Self {
        Self::raw(
            field,
            FieldErrorKind::Invalid,
            Some(go_value(value)),
            detail,
        )
    }

    /// `field.NotSupported(path, value, supported)`.
    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[String]) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::raw(
            field,
            FieldErrorKind::NotSupported,
            Some(go_value(value)),
            detail,
        )
    }

    /// `field.TooLong(path, value, max)`.
    pub fn too_long(field: impl Into<String>, max: i64) -> Self {
        let detail = if max >= 0 {
            format!("may not be more than {max} bytes")
        } else {
            "value is too long".to_string()
        };
        Self::raw(field, FieldErrorKind::TooLong, None, detail)
    }

    /// `field.TooMany(path, actual, max)`.
    pub fn too_many(field: impl Into<String>, actual: i64, max: i64) -> Self {
        let detail = if max == 1 {
            "must have at most 1 item".to_string()
        } else if max >= 0 {
            format!("must have at most {max} items")
        } else {
            "too many items".to_string()
        };
        let value = (actual >= 0).then(|| actual.to_string());
        Self::raw(field, FieldErrorKind::TooMany, value, detail)
    }

    /// `field.Duplicate(path, value)`.
    pub fn duplicate(field: impl Into<String>, value: &Value) -> Self {
        Self::raw(field, FieldErrorKind::Duplicate, Some(go_value(value)), "")
    }

    /// Any error with an already rendered bad value.
    pub fn raw(
        field: impl Into<String>,
        kind: FieldErrorKind,
        bad_value: Option<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            kind,
            message: detail.into(),
            bad_value,
        }
    }

    /// The body after `field: `, as Go's `field.Error.ErrorBody()`.
    pub fn body(&self) -> String {
        let mut s = self.kind.text().to_string();
        match self.kind {
            FieldErrorKind::Required | FieldErrorKind::Forbidden | FieldErrorKind::TooLong => {}
            _ => {
                if let Some(v) = &self.bad_value {
                    s.push_str(": ");
                    s.push_str(v);
                }
            }
        }
        if !self.message.is_empty() {
            s.push_str(": ");
            s.push_str(&self.message);
        }
        s
    }

    /// `field.Error.Error()`: e.g. `spec.owner.kind: Unsupported value: "Robot":
    /// supported values: "User", "ServiceAccount"`.
    pub fn to_string_like_apiserver(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string_like_apiserver())
    }
}

impl std::error::Error for FieldError {}

const NOT_CHECKED: &str = "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

/// Validates `obj` (a whole custom resource object, incl. apiVersion/kind/metadata)
/// against one CRD version's `openAPIV3Schema`. Prunes unknown fields (honouring
/// `x-kubernetes-preserve-unknown-fields` and `x-kubernetes-embedded-resource`;
/// never `apiVersion`/`kind`/`metadata` at the root), drops non-nullable nulls
/// without a default, applies `default`s, then validates: OpenAPI keywords,
/// embedded resources, list-type set/map uniqueness, and CEL
/// `x-kubernetes-validations` (with `oldSelf` when `old` is `Some`; transition
/// rules run only where the old value at that path exists). On update, errors at
/// values equal to their old value are dropped, like the real server's ratcheting.
/// A malformed schema yields one `Invalid` error at `<nil>` naming the problem.
pub fn validate_and_prune(
    schema: &Value,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<(), Vec<FieldError>> {
    if let Err(problem) = check(schema) {
        return Err(malformed(&problem));
    }
    validate_and_prune_checked(schema, &Prepared::new(schema), obj, old)
}

/// What validating against one schema can skip, worked out once per CRD
/// version (see `ResourceDef::schema`) instead of on every write.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// `rules_skeleton` of the schema.
    pub rules: Option<Value>,
    /// Whether any node has a `default` (else the defaulting walk is skipped).
    pub defaults: bool,
    /// Whether any node is an `x-kubernetes-embedded-resource`.
    pub embedded: bool,
}

impl Prepared {
    pub fn new(schema: &Value) -> Prepared {
        Prepared {
            rules: rules_skeleton(schema),
            defaults: mentions(schema, "default"),
            embedded: mentions(schema, "x-kubernetes-embedded-resource"),
        }
    }
}

/// Whether `keyword` is a key anywhere in `schema`. A property of that name
/// also counts: a false "yes" only costs a walk that finds nothing.
fn mentions(schema: &Value, keyword: &str) -> bool {
    match schema {
        Value::Object(m) => m.iter().any(|(k, v)| k == keyword || mentions(v, keyword)),
        Value::Array(a) => a.iter().any(|v| mentions(v, keyword)),
        _ => false,
    }
}

/// Whether a schema has the shape validation relies on; `Err` names the first problem.
/// Walking the schema costs as much as validating an object, so the emulator runs this
/// once per CRD version (see `ResourceDef::schema_problem`), not once per write.
pub fn check(schema: &Value) -> Result<(), String> {
    check_schema(schema, "openAPIV3Schema", 0)
}

/// The error every write gets while its CRD's schema is malformed.
pub fn malformed(problem: &str) -> Vec<FieldError> {
    vec![FieldError::raw(
        "<nil>",
        FieldErrorKind::Invalid,
        Some(go_quote("")),
        format!("invalid CRD schema: {problem}"),
    )]
}

/// `validate_and_prune` for a schema `check` has already accepted.
/// `prepared` is `Prepared::new(schema)`, which callers compute once per schema.
pub fn validate_and_prune_checked(
    schema: &Value,
    prepared: &Prepared,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<(), Vec<FieldError>> {
    prune(obj, Some(schema), true);
    prune_nulls(obj, schema);
    if prepared.defaults {
        apply_defaults(obj, schema);
    }

    let mut errs = Vec::new();
    let mut path = Vec::new();
    validate_node(schema, obj, &mut path, old, false, &mut errs);
    if prepared.embedded {
        validate_embedded(schema, obj, &mut path, true, &mut errs);
    }
    let list_errs = {
        let mut e = Vec::new();
        validate_lists(schema, obj, &mut path, &mut e);
        e
    };
    // The old object is walked only when the new one has list errors: they
    // are dropped (ratcheting) when the old object had some too.
    let old_lists_valid = || {
        old.is_none_or(|o| {
            let mut e = Vec::new();
            validate_lists(schema, o, &mut Vec::new(), &mut e);
            e.is_empty()
        })
    };
    if !list_errs.is_empty() && old_lists_valid() {
        errs.extend(list_errs);
    }
    if errs.iter().any(|e| {
        matches!(
            e.kind,
            FieldErrorKind::NotSupported
                | FieldErrorKind::Required
                | FieldErrorKind::TooLong
                | FieldErrorKind::TooMany
                | FieldErrorKind::TypeInvalid
        )
    }) {
        errs.push(FieldError::raw(
            "<nil>",
            FieldErrorKind::Invalid,
            Some("null".to_string()),
            NOT_CHECKED,
        ));
    } else if let Some(rules) = &prepared.rules {
        let seen = cel::as_cel_sees(rules, obj);
        let old_seen = old.map(|o| cel::as_cel_sees(rules, o));
        let mut path = Vec::new();
        cel_node(
            rules,
            &seen,
            old_seen.as_deref(),
            &mut path,
            false,
            &mut errs,
        );
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prepared_notes_defaults_and_embedded_resources_at_any_depth() {
        let plain = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let nested = json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"items": {"type": "array", "items": {"type": "object",
                "properties": {"n": {"type": "integer", "default": 1}},
                "x-kubernetes-embedded-resource": true}}}}}});
        let p = Prepared::new(&plain);
        assert_eq!((p.defaults, p.embedded), (false, false));
        let p = Prepared::new(&nested);
        assert_eq!((p.defaults, p.embedded), (true, true));
    }
}
