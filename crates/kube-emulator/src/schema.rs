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

use std::fmt;

use kube::core::cel as kcel;
use serde_json::{Map, Value};

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
        cel_node(rules, obj, old, &mut path, false, &mut errs);
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

// ---------------------------------------------------------------------------
// Paths

/// A step of a validation path, borrowed from the object being validated (one
/// `String` per visited field was a large share of the emulator's allocations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seg<'a> {
    Field(&'a str),
    Index(usize),
    Key(&'a str),
}

/// `openapi_name` of a path, built only when an error message is formatted
/// (validation visits every node; most produce no error).
#[derive(Clone, Copy)]
struct PathName<'p, 'a>(&'p [Seg<'a>]);

impl std::fmt::Display for PathName<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&openapi_name(self.0))
    }
}

impl PathName<'_, '_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `path` and one more step not borrowed from the object (an absent field, for an error).
fn child<'b>(path: &[Seg<'b>], seg: Seg<'b>) -> Vec<Seg<'b>> {
    let mut out = path.to_vec();
    out.push(seg);
    out
}

/// kube-openapi's path name: `spec.items[0].name`, map keys joined with a dot.
fn openapi_name(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Field(n) | Seg::Key(n) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(n);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The field of an error converted from kube-openapi: `<nil>` at the root.
fn openapi_field(path: &[Seg]) -> String {
    let n = openapi_name(path);
    if n.is_empty() { "<nil>".to_string() } else { n }
}

/// apimachinery `field.Path.String()`: `spec.tags[foo]`, `<nil>` for the root.
fn field_path(path: &[Seg]) -> String {
    if path.is_empty() {
        return "<nil>".to_string();
    }
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Field(n) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(n);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
            Seg::Key(k) => s.push_str(&format!("[{k}]")),
        }
    }
    s
}

// ---------------------------------------------------------------------------
// Go value rendering (`field.Error` prints values with %q, %v or %#v)

/// Render a value the way `field.Error.ErrorBody` does.
fn go_value(v: &Value) -> String {
    match v {
        Value::Null => go_quote("null"),
        Value::String(s) => go_quote(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        other => go_sharp(other),
    }
}

/// Go's `%#v` of a decoded JSON value.
fn go_sharp(v: &Value) -> String {
    match v {
        Value::Null => "interface {}(nil)".to_string(),
        Value::String(s) => go_quote(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(go_sharp).collect();
            format!("[]interface {{}}{{{}}}", parts.join(", "))
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        go_quote(k),
                        m.get(k).map(go_sharp).unwrap_or_default()
                    )
                })
                .collect();
            format!("map[string]interface {{}}{{{}}}", parts.join(", "))
        }
    }
}

fn go_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(f) = n.as_f64() {
        go_float(f)
    } else {
        n.to_string()
    }
}

/// Go's `%v` for a float64 (shortest repr, exponent form outside [1e-4, 1e21)).
fn go_float(f: f64) -> String {
    if f == 0.0 {
        return "0".to_string();
    }
    if !f.is_finite() {
        return if f.is_nan() {
            "NaN".into()
        } else if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let exp = f.abs().log10().floor() as i32;
    if !(-4..21).contains(&exp) {
        let s = format!("{f:e}");
        // Rust: 1e21, 1.5e-5; Go: 1e+21, 1.5e-05.
        if let Some((mant, e)) = s.split_once('e') {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            let digits = if digits.len() < 2 {
                format!("0{digits}")
            } else {
                digits.to_string()
            };
            return format!("{mant}e{sign}{digits}");
        }
        return s;
    }
    format!("{f}")
}

/// Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control()
                || matches!(c as u32, 0x200b..=0x200f | 0x2028..=0x202e | 0xfeff) =>
            {
                if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------
// Schema access (lenient; `check_schema` has already rejected wrong shapes)

fn sget<'a>(s: &'a Value, key: &str) -> Option<&'a Value> {
    s.as_object().and_then(|m| m.get(key))
}

fn sbool(s: &Value, key: &str) -> bool {
    sget(s, key).and_then(Value::as_bool).unwrap_or(false)
}

fn sstr<'a>(s: &'a Value, key: &str) -> Option<&'a str> {
    sget(s, key).and_then(Value::as_str)
}

fn sf64(s: &Value, key: &str) -> Option<f64> {
    sget(s, key).and_then(Value::as_f64)
}

fn si64(s: &Value, key: &str) -> Option<i64> {
    sget(s, key).and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}

fn props(s: &Value) -> Option<&Map<String, Value>> {
    sget(s, "properties").and_then(Value::as_object)
}

fn items(s: &Value) -> Option<&Value> {
    sget(s, "items").filter(|v| v.is_object())
}

enum Additional<'a> {
    Absent,
    Bool(bool),
    Schema(&'a Value),
}

fn additional(s: &Value) -> Additional<'_> {
    match sget(s, "additionalProperties") {
        Some(Value::Bool(b)) => Additional::Bool(*b),
        Some(v @ Value::Object(_)) => Additional::Schema(v),
        _ => Additional::Absent,
    }
}

fn subschemas<'a>(s: &'a Value, key: &str) -> &'a [Value] {
    sget(s, key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The type list kube-openapi checks against (`integer,string` for int-or-string).
fn type_list(s: &Value) -> Vec<&str> {
    if sbool(s, "x-kubernetes-int-or-string") {
        return vec!["integer", "string"];
    }
    match sstr(s, "type") {
        Some(t) if !t.is_empty() => vec![t],
        _ => Vec::new(),
    }
}

const SUPPORTED_FORMATS: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
];

/// The format, or `None` when the apiserver strips it as unsupported.
fn supported_format(s: &Value) -> Option<&str> {
    let f = sstr(s, "format").filter(|f| !f.is_empty())?;
    SUPPORTED_FORMATS
        .contains(&f.replace('-', "").as_str())
        .then_some(f)
}

/// Rejects schema shapes that would make the walk meaningless (the real server
/// refuses such a CRD up front).
fn check_schema(s: &Value, at: &str, depth: usize) -> Result<(), String> {
    if depth > 64 {
        return Err(format!("{at}: nesting too deep"));
    }
    let m = s
        .as_object()
        .ok_or_else(|| format!("{at}: must be an object"))?;
    for (k, v) in m {
        let here = format!("{at}.{k}");
        match k.as_str() {
            "type" | "format" | "pattern" | "x-kubernetes-list-type" | "x-kubernetes-map-type"
                if !v.is_string() =>
            {
                return Err(format!("{here}: must be a string"));
            }
            "properties" => {
                let p = v
                    .as_object()
                    .ok_or_else(|| format!("{here}: must be an object"))?;
                for (name, sub) in p {
                    check_schema(sub, &format!("{here}.{name}"), depth + 1)?;
                }
            }
            "items" | "not" => check_schema(v, &here, depth + 1)?,
            "additionalProperties" if !v.is_boolean() => {
                check_schema(v, &here, depth + 1)?;
            }
            "allOf" | "anyOf" | "oneOf" => {
                let a = v
                    .as_array()
                    .ok_or_else(|| format!("{here}: must be an array"))?;
                for (i, sub) in a.iter().enumerate() {
                    check_schema(sub, &format!("{here}[{i}]"), depth + 1)?;
                }
            }
            "required" | "x-kubernetes-list-map-keys" => {
                let ok = v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
                if !ok {
                    return Err(format!("{here}: must be an array of strings"));
                }
            }
            "enum" if !v.is_array() => {
                return Err(format!("{here}: must be an array"));
            }
            "minimum" | "maximum" | "multipleOf" if !v.is_number() => {
                return Err(format!("{here}: must be a number"));
            }
            "minLength" | "maxLength" | "minItems" | "maxItems" | "minProperties"
            | "maxProperties"
                if !(v.is_i64() || v.is_u64()) =>
            {
                return Err(format!("{here}: must be an integer"));
            }
            "nullable"
            | "exclusiveMinimum"
            | "exclusiveMaximum"
            | "uniqueItems"
            | "x-kubernetes-preserve-unknown-fields"
            | "x-kubernetes-embedded-resource"
            | "x-kubernetes-int-or-string"
                if !v.is_boolean() =>
            {
                return Err(format!("{here}: must be a boolean"));
            }
            "x-kubernetes-validations" => {
                let a = v
                    .as_array()
                    .ok_or_else(|| format!("{here}: must be an array"))?;
                for (i, r) in a.iter().enumerate() {
                    if sstr(r, "rule").is_none() {
                        return Err(format!("{here}[{i}].rule: must be a string"));
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(p) = sstr(s, "pattern")
        && let Err(e) = regex::Regex::new(p)
    {
        return Err(format!("{at}.pattern: {e}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Pruning and defaulting (structuralpruning / structuraldefaulting)

fn prune(v: &mut Value, s: Option<&Value>, is_root: bool) {
    if let Some(s) = s
        && sbool(s, "x-kubernetes-preserve-unknown-fields")
    {
        skip_prune(v, s, is_root);
        return;
    }
    match v {
        Value::Object(m) => {
            let Some(s) = s else {
                m.clear();
                return;
            };
            let embedded = is_root || sbool(s, "x-kubernetes-embedded-resource");
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let child = props(s).and_then(|p| p.get(&k));
                let sub = match (child, additional(s)) {
                    (Some(c), _) => Some(Some(c)),
                    (None, Additional::Schema(a)) => Some(Some(a)),
                    (None, Additional::Bool(true)) => Some(None),
                    _ => None,
                };
                match sub {
                    Some(sub) => {
                        if let Some(cv) = m.get_mut(&k) {
                            prune(cv, sub, false);
                        }
                    }
                    None => {
                        m.remove(&k);
                    }
                }
            }
        }
        Value::Array(a) => {
            let it = s.and_then(items);
            for x in a {
                prune(x, it, false);
            }
        }
        _ => {}
    }
}

fn skip_prune(v: &mut Value, s: &Value, is_root: bool) {
    match v {
        Value::Object(m) => {
            let embedded = is_root || sbool(s, "x-kubernetes-embedded-resource");
            for (k, cv) in m.iter_mut() {
                if embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(c) = props(s).and_then(|p| p.get(k)) {
                    prune(cv, Some(c), false);
                } else if let Additional::Schema(a) = additional(s) {
                    prune(cv, Some(a), false);
                }
            }
        }
        Value::Array(a) => {
            if let Some(it) = items(s) {
                for x in a {
                    skip_prune(x, it, false);
                }
            }
        }
        _ => {}
    }
}

/// Drops `null`s of non-nullable properties that have no default.
fn prune_nulls(v: &mut Value, s: &Value) {
    match v {
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let sub = match (props(s).and_then(|p| p.get(&k)), additional(s)) {
                    (Some(c), _) => Some((c, true)),
                    (None, Additional::Schema(a)) => Some((a, false)),
                    _ => None,
                };
                let Some((sub, is_prop)) = sub else { continue };
                let drop = is_prop
                    && m.get(&k).is_some_and(Value::is_null)
                    && !sbool(sub, "nullable")
                    && sget(sub, "default").is_none();
                if drop {
                    m.remove(&k);
                } else if let Some(cv) = m.get_mut(&k) {
                    prune_nulls(cv, sub);
                }
            }
        }
        Value::Array(a) => {
            if let Some(it) = items(s) {
                for x in a {
                    prune_nulls(x, it);
                }
            }
        }
        _ => {}
    }
}

fn non_nullable_null(v: &Value, s: &Value) -> bool {
    v.is_null() && !sbool(s, "nullable")
}

fn apply_defaults(v: &mut Value, s: &Value) {
    match v {
        Value::Object(m) => {
            if let Some(p) = props(s) {
                for (k, ps) in p {
                    if let Some(d) = sget(ps, "default") {
                        let missing = m.get(k).is_none_or(|cv| non_nullable_null(cv, ps));
                        if missing {
                            m.insert(k.clone(), d.clone());
                        }
                    }
                }
            }
            for (k, cv) in m.iter_mut() {
                if let Some(ps) = props(s).and_then(|p| p.get(k)) {
                    apply_defaults(cv, ps);
                } else if let Additional::Schema(a) = additional(s) {
                    match sget(a, "default") {
                        Some(d) if non_nullable_null(cv, a) => *cv = d.clone(),
                        _ => apply_defaults(cv, a),
                    }
                }
            }
        }
        Value::Array(arr) => {
            if let Some(it) = items(s) {
                for x in arr {
                    match sget(it, "default") {
                        Some(d) if non_nullable_null(x, it) => *x = d.clone(),
                        _ => apply_defaults(x, it),
                    }
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// OpenAPI keyword validation (kube-openapi SchemaValidator, converted errors)

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// swag.IsFloat64AJSONInteger
fn is_json_integer(f: f64) -> bool {
    const MAX: f64 = 9_007_199_254_740_991.0;
    f.is_finite() && (-MAX..=MAX).contains(&f) && f.fract() == 0.0
}

fn type_error(path: &[Seg], expected: &str, actual: &str) -> FieldError {
    let name = openapi_name(path);
    FieldError::raw(
        openapi_field(path),
        FieldErrorKind::TypeInvalid,
        Some(go_quote(actual)),
        format!(
            "{name} in body must be of type {expected}: {}",
            go_quote(actual)
        ),
    )
}

fn invalid_at(path: &[Seg], value: &Value, detail: String) -> FieldError {
    FieldError::invalid(openapi_field(path), value, detail)
}

/// An error kube-openapi reports without a `*Validation` (composite schemas):
/// apiextensions reports it at the root with an empty value.
fn root_invalid(detail: String) -> FieldError {
    FieldError::raw("<nil>", FieldErrorKind::Invalid, Some(go_quote("")), detail)
}

fn validate_node<'a>(
    s: &Value,
    v: &'a Value,
    path: &mut Vec<Seg<'a>>,
    old: Option<&Value>,
    ratcheted: bool,
    out: &mut Vec<FieldError>,
) {
    // Ratcheting: an unchanged (correlated) value keeps its errors as warnings.
    if ratcheted || old.is_some_and(|o| o == v) {
        return;
    }
    let types = type_list(s);
    if v.is_null() {
        if !types.is_empty() && !sbool(s, "nullable") {
            out.push(type_error(path, &types.join(","), "null"));
        }
        validate_enum(s, v, path, out);
        return;
    }
    validate_type(s, v, &types, path, out);
    validate_composites(s, v, path, out);
    if let Value::String(st) = v {
        validate_string(s, st, v, path, out);
        if let Some(f) = supported_format(s)
            && !format_ok(f, st)
        {
            let name = openapi_name(path);
            out.push(FieldError::raw(
                openapi_field(path),
                FieldErrorKind::TypeInvalid,
                Some(go_quote(st)),
                format!("{name} in body must be of type {f}: {}", go_quote(st)),
            ));
        }
    }
    if let Value::Number(n) = v {
        validate_number(s, n, v, path, out);
    }
    if let Value::Array(a) = v {
        validate_array(s, a, path, old, out);
    }
    validate_enum(s, v, path, out);
    if let Value::Object(m) = v {
        validate_object(s, m, path, old, out);
    }
}

fn validate_type(s: &Value, v: &Value, types: &[&str], path: &[Seg], out: &mut Vec<FieldError>) {
    let fmt_name = sstr(s, "format")
        .filter(|f| !f.is_empty())
        .and_then(|_| supported_format(s));
    if types.is_empty() && fmt_name.is_none() {
        return;
    }
    let sch = json_type(v);
    let has = |t: &str| types.contains(&t);
    let is_float_int = sch == "number" && v.as_f64().is_some_and(is_json_integer) && has("integer");
    let is_int_float = sch == "integer" && has("number");
    let stringish = v.is_string() || v.is_array();
    if let Some(f) = fmt_name {
        if !(stringish || has(sch) || is_float_int || is_int_float) {
            // The data's own format is empty for plain JSON values.
            out.push(type_error(path, f, ""));
            return;
        }
        if !(has("number") || has("integer")) && stringish {
            return;
        }
    }
    if !(has(sch) || is_float_int || is_int_float) {
        out.push(type_error(path, &types.join(","), sch));
    }
}

fn validate_composites<'a>(
    s: &Value,
    v: &'a Value,
    path: &mut Vec<Seg<'a>>,
    out: &mut Vec<FieldError>,
) {
    let run = |sub: &Value, path: &mut Vec<Seg<'a>>| {
        let mut e = Vec::new();
        validate_node(sub, v, path, None, false, &mut e);
        e
    };
    let any = subschemas(s, "anyOf");
    if !any.is_empty() {
        let mut best: Option<Vec<FieldError>> = None;
        let mut ok = false;
        for sub in any {
            let e = run(sub, path);
            if e.is_empty() {
                ok = true;
                best = None;
                break;
            }
            if best.as_ref().is_none_or(|b| e.len() < b.len()) {
                best = Some(e);
            }
        }
        if !ok {
            out.push(root_invalid(format!(
                "{} must validate at least one schema (anyOf)",
                go_quote(&openapi_name(path))
            )));
        }
        out.extend(best.unwrap_or_default());
    }
    let one = subschemas(s, "oneOf");
    if !one.is_empty() {
        let mut valid = 0;
        let mut best: Option<Vec<FieldError>> = None;
        for sub in one {
            let e = run(sub, path);
            if e.is_empty() {
                valid += 1;
            } else if best.as_ref().is_none_or(|b| e.len() < b.len()) {
                best = Some(e);
            }
        }
        if valid != 1 {
            let extra = if valid == 0 {
                "Found none valid".to_string()
            } else {
                format!("Found {valid} valid alternatives")
            };
            out.push(root_invalid(format!(
                "{} must validate one and only one schema (oneOf). {extra}",
                go_quote(&openapi_name(path))
            )));
            if valid == 0 {
                out.extend(best.unwrap_or_default());
            }
        }
    }
    let all = subschemas(s, "allOf");
    if !all.is_empty() {
        let mut valid = 0;
        let mut errs = Vec::new();
        for sub in all {
            let e = run(sub, path);
            if e.is_empty() {
                valid += 1;
            }
            errs.extend(e);
        }
        if valid != all.len() {
            let extra = if valid == 0 { ". None validated" } else { "" };
            out.push(root_invalid(format!(
                "{} must validate all the schemas (allOf){extra}",
                go_quote(&openapi_name(path))
            )));
        }
        out.extend(errs);
    }
    if let Some(not) = sget(s, "not").filter(|n| n.is_object())
        && run(not, path).is_empty()
    {
        out.push(root_invalid(format!(
            "{} must not validate the schema (not)",
            go_quote(&openapi_name(path))
        )));
    }
}

fn validate_string(s: &Value, st: &str, v: &Value, path: &[Seg], out: &mut Vec<FieldError>) {
    let name = PathName(path);
    let len = st.chars().count() as i64;
    if let Some(max) = si64(s, "maxLength")
        && len > max
    {
        out.push(FieldError::too_long(openapi_field(path), max));
        return;
    }
    if let Some(min) = si64(s, "minLength")
        && len < min
    {
        out.push(invalid_at(
            path,
            v,
            format!("{name} in body should be at least {min} chars long"),
        ));
        return;
    }
    if let Some(p) = sstr(s, "pattern").filter(|p| !p.is_empty()) {
        let matched = match with_regex(p, |re| re.is_match(st)) {
            Ok(matched) => matched,
            Err(e) => {
                out.push(invalid_at(
                    path,
                    v,
                    format!("{name} in body should match '{p}, but pattern is invalid: {e}'"),
                ));
                return;
            }
        };
        if !matched {
            out.push(invalid_at(
                path,
                v,
                format!("{name} in body should match '{p}'"),
            ));
        }
    }
}

fn validate_number(
    s: &Value,
    n: &serde_json::Number,
    v: &Value,
    path: &[Seg],
    out: &mut Vec<FieldError>,
) {
    let name = PathName(path);
    let int = n.as_i64();
    let data = n.as_f64().unwrap_or(0.0);
    // For integer data kube-openapi converts the bound with int64(bound).
    let bound = |b: f64| -> String {
        if int.is_some() {
            (b as i64).to_string()
        } else {
            go_float(b)
        }
    };
    if let Some(f) = sf64(s, "multipleOf") {
        if f < 0.0 {
            out.push(invalid_at(
                path,
                &Value::from(f),
                format!(
                    "factor MultipleOf declared for {name} must be positive: {}",
                    go_float(f)
                ),
            ));
        } else {
            let not_multiple = match int {
                Some(i) if (f as i64) != 0 => i % (f as i64) != 0,
                _ => {
                    let m = if f < 1.0 { 1.0 / f * data } else { data / f };
                    !is_json_integer(m)
                }
            };
            if not_multiple {
                out.push(invalid_at(
                    path,
                    v,
                    format!("{name} in body should be a multiple of {}", bound(f)),
                ));
            }
        }
    }
    if let Some(min) = sf64(s, "minimum") {
        let excl = sbool(s, "exclusiveMinimum");
        let fail = match int {
            Some(i) => {
                let m = min as i64;
                if excl { i <= m } else { i < m }
            }
            None => {
                if excl {
                    data <= min
                } else {
                    data < min
                }
            }
        };
        if fail {
            let op = if excl {
                "greater than"
            } else {
                "greater than or equal to"
            };
            out.push(invalid_at(
                path,
                v,
                format!("{name} in body should be {op} {}", bound(min)),
            ));
        }
    }
    if let Some(max) = sf64(s, "maximum") {
        let excl = sbool(s, "exclusiveMaximum");
        let fail = match int {
            Some(i) => {
                let m = max as i64;
                if excl { i >= m } else { i > m }
            }
            None => {
                if excl {
                    data >= max
                } else {
                    data > max
                }
            }
        };
        if fail {
            let op = if excl {
                "less than"
            } else {
                "less than or equal to"
            };
            out.push(invalid_at(
                path,
                v,
                format!("{name} in body should be {op} {}", bound(max)),
            ));
        }
    }
}

fn validate_array<'a>(
    s: &Value,
    a: &'a [Value],
    path: &mut Vec<Seg<'a>>,
    old: Option<&Value>,
    out: &mut Vec<FieldError>,
) {
    if let Some(it) = items(s) {
        let old_list = old.and_then(Value::as_array);
        for (i, x) in a.iter().enumerate() {
            let old_item = old_list.and_then(|ol| correlate_item(s, ol, x));
            path.push(Seg::Index(i));
            validate_node(it, x, path, old_item, false, out);
            path.pop();
        }
    }
    let name = PathName(path);
    let size = a.len() as i64;
    if let Some(min) = si64(s, "minItems")
        && size < min
    {
        out.push(invalid_at(
            path,
            &Value::from(size),
            format!("{name} in body should have at least {min} items"),
        ));
    }
    if let Some(max) = si64(s, "maxItems")
        && size > max
    {
        out.push(FieldError::too_many(openapi_field(path), size, max));
    }
    if sbool(s, "uniqueItems") {
        let dup = a.iter().enumerate().any(|(i, x)| a[..i].contains(x));
        if dup {
            out.push(invalid_at(
                path,
                &Value::from(""),
                format!("{name} in body shouldn't contain duplicates"),
            ));
        }
    }
}

/// Numeric-tolerant equality, like kube-openapi's convert-then-DeepEqual.
fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| loose_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, p)| y.get(k).is_some_and(|q| loose_eq(p, q)))
        }
        _ => a == b,
    }
}

fn validate_enum(s: &Value, v: &Value, path: &[Seg], out: &mut Vec<FieldError>) {
    let Some(values) = sget(s, "enum").and_then(Value::as_array) else {
        return;
    };
    if values.is_empty() {
        return;
    }
    if !v.is_null() && values.iter().any(|e| loose_eq(v, e)) {
        return;
    }
    let supported: Vec<String> = values
        .iter()
        .map(|e| match e {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    out.push(FieldError::not_supported(
        openapi_field(path),
        v,
        &supported,
    ));
}

fn validate_object<'a>(
    s: &Value,
    m: &'a Map<String, Value>,
    path: &mut Vec<Seg<'a>>,
    old: Option<&Value>,
    out: &mut Vec<FieldError>,
) {
    let name = PathName(path);
    let count = m.len() as i64;
    if let Some(min) = si64(s, "minProperties")
        && count < min
    {
        out.push(invalid_at(
            path,
            &Value::from(count),
            format!("{name} in body should have at least {min} properties"),
        ));
        return;
    }
    if let Some(max) = si64(s, "maxProperties")
        && count > max
    {
        out.push(FieldError::too_many(openapi_field(path), count, max));
        return;
    }
    let ps = props(s);
    let old_map = old.and_then(Value::as_object);
    match additional(s) {
        Additional::Bool(false) => {
            for k in m.keys() {
                if ps.is_none_or(|p| !p.contains_key(k)) {
                    let msg = if name.is_empty() {
                        format!(".{k} in body is a forbidden property")
                    } else {
                        format!("{name}.{k} in body is a forbidden property")
                    };
                    out.push(invalid_at(path, &Value::from(k.as_str()), msg));
                }
            }
        }
        Additional::Schema(a) => {
            for (k, cv) in m {
                if ps.is_some_and(|p| p.contains_key(k)) {
                    continue;
                }
                path.push(Seg::Key(k));
                validate_node(a, cv, path, old_map.and_then(|o| o.get(k)), false, out);
                path.pop();
            }
        }
        _ => {}
    }
    if let Some(p) = ps {
        for (k, sub) in p {
            if let Some((k, cv)) = m.get_key_value(k) {
                path.push(Seg::Field(k));
                validate_node(sub, cv, path, old_map.and_then(|o| o.get(k)), false, out);
                path.pop();
            }
        }
    }
    if let Some(req) = sget(s, "required").and_then(Value::as_array) {
        for k in req.iter().filter_map(Value::as_str) {
            if !m.contains_key(k) {
                out.push(FieldError::required(
                    openapi_field(&child(path, Seg::Field(k))),
                    "",
                ));
            }
        }
    }
}

/// The old list item correlated with `item` (only `x-kubernetes-list-type: map`
/// lists correlate, by their keys; sets correlate by value).
fn correlate_item<'a>(s: &Value, old: &'a [Value], item: &Value) -> Option<&'a Value> {
    match sstr(s, "x-kubernetes-list-type") {
        Some("map") => {
            let keys = map_keys(s);
            let want = key_tuple(s, &keys, item)?;
            old.iter()
                .find(|o| key_tuple(s, &keys, o).as_ref() == Some(&want))
        }
        Some("set") => old.iter().find(|o| *o == item),
        _ => None,
    }
}

fn map_keys(s: &Value) -> Vec<String> {
    sget(s, "x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The key values of a map-list element (a missing key takes its default).
fn key_tuple(s: &Value, keys: &[String], item: &Value) -> Option<Vec<Value>> {
    let m = item.as_object()?;
    let item_props = items(s).and_then(props);
    keys.iter()
        .map(|k| {
            m.get(k).cloned().or_else(|| {
                item_props
                    .and_then(|p| p.get(k))
                    .and_then(|ks| sget(ks, "default"))
                    .cloned()
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Format checks (kube-openapi strfmt, the formats the apiserver keeps)

fn format_ok(format: &str, s: &str) -> bool {
    match format.replace('-', "").as_str() {
        "datetime" => is_datetime(s),
        "date" => is_date(s),
        "uuid" => re_match(
            r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$",
            s,
        ),
        "uuid3" => re_match(
            r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$",
            s,
        ),
        "uuid4" => re_match(
            r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$",
            s,
        ),
        "uuid5" => re_match(
            r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$",
            s,
        ),
        "ipv4" => s.contains('.') && s.parse::<std::net::IpAddr>().is_ok(),
        "ipv6" => s.contains(':') && s.parse::<std::net::IpAddr>().is_ok(),
        "cidr" => s.split_once('/').is_some_and(|(ip, bits)| {
            match (ip.parse::<std::net::IpAddr>(), bits.parse::<u8>()) {
                (Ok(std::net::IpAddr::V4(_)), Ok(b)) => b <= 32 && !bits.starts_with('+'),
                (Ok(std::net::IpAddr::V6(_)), Ok(b)) => b <= 128 && !bits.starts_with('+'),
                _ => false,
            }
        }),
        "mac" => is_mac(s),
        "hostname" => {
            s.len() <= 255
                && re_match(
                    r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z\p{L}]){2,63})$",
                    s,
                )
        }
        "byte" => is_base64(s),
        "bsonobjectid" => s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()),
        "hexcolor" => re_match(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$", s),
        "rgbcolor" => re_match(
            r"^rgb\(\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*\)$",
            s,
        ),
        "ssn" => re_match(r"^\d{3}[- ]?\d{2}[- ]?\d{4}$", s),
        "duration" => is_duration(s),
        "email" => s
            .rsplit_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty()),
        "uri" => s.starts_with('/') || re_match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", s),
        // password, isbn*, creditcard: accepted as-is here.
        _ => true,
    }
}

fn re_match(pattern: &str, s: &str) -> bool {
    with_regex(pattern, |re| re.is_match(s)).unwrap_or(false)
}

thread_local! {
    static REGEXES: std::cell::RefCell<std::collections::HashMap<String, Result<regex::Regex, regex::Error>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Runs `f` on `pattern` compiled once per thread: compiling costs far more
/// than matching (the profile in BENCHMARKS.md showed it as 61% of the
/// emulator's CPU time). The regex is lent, not cloned: a clone starts with
/// an empty match cache, so every search on it would build its automaton's
/// states again.
fn with_regex<R>(pattern: &str, f: impl FnOnce(&regex::Regex) -> R) -> Result<R, regex::Error> {
    REGEXES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.contains_key(pattern) {
            if cache.len() > 4096 {
                cache.clear();
            }
            cache.insert(pattern.to_owned(), regex::Regex::new(pattern));
        }
        match &cache[pattern] {
            Ok(re) => Ok(f(re)),
            Err(e) => Err(e.clone()),
        }
    })
}

fn digits(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Some(y), Some(m), Some(d)) = (digits(&s[0..4]), digits(&s[5..7]), digits(&s[8..10]))
    else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// kube-openapi's strfmt.IsDateTime, the API server's check of
/// `format: date-time`. It is laxer than RFC 3339, and the emulator keeps its
/// quirks: the text is split at each `t` (any case) and only the first two
/// parts are looked at (`2030-01-01T00:00:00Zt…` passes), the fraction's
/// separator may be any character, and the fraction has any length.
fn is_datetime(s: &str) -> bool {
    if s.len() < 4 {
        return false;
    }
    // Go lowercases the text first; splitting at either case and matching
    // either `z` is the same, without a copy of the text per check.
    let mut parts = s.split(['t', 'T']);
    let (Some(date), Some(time)) = (parts.next(), parts.next()) else {
        return false;
    };
    if !is_date(date) {
        return false;
    }
    with_regex(
        r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?([zZ]|([+-][0-9]{2}:[0-9]{2}))$",
        |re| {
            re.captures(time)
                .is_some_and(|c| &c[1] <= "23" && &c[2] <= "59" && &c[3] <= "59")
        },
    )
    .unwrap_or(false)
}

fn is_mac(s: &str) -> bool {
    let groups = |sep: char, width: usize| -> Option<usize> {
        let parts: Vec<&str> = s.split(sep).collect();
        parts
            .iter()
            .all(|p| p.len() == width && p.bytes().all(|b| b.is_ascii_hexdigit()))
            .then_some(parts.len())
    };
    matches!(groups(':', 2), Some(6 | 8 | 20))
        || matches!(groups('-', 2), Some(6 | 8 | 20))
        || matches!(groups('.', 4), Some(3 | 4 | 10))
}

fn is_base64(s: &str) -> bool {
    if !s.len().is_multiple_of(4) {
        return false;
    }
    let body = s.trim_end_matches('=');
    s.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Go's time.ParseDuration, or strfmt's `<n> <unit>` fallback.
fn is_duration(s: &str) -> bool {
    let go = re_match(
        r"^[-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$",
        s,
    ) || s == "0";
    go || re_match(
        r"^(\s*\d+\s*(ns|us|µs|ms|s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hr|hrs|hour|hours|d|day|days|w|wk|wks|week|weeks)\s*)+$",
        s,
    )
}

// ---------------------------------------------------------------------------
// Embedded resources (schemaobjectmeta.Validate) and list types
// (structurallisttype.ValidateListSetsAndMaps)

fn validate_embedded<'a>(
    s: &Value,
    v: &'a Value,
    path: &mut Vec<Seg<'a>>,
    is_root: bool,
    out: &mut Vec<FieldError>,
) {
    match v {
        Value::Object(m) => {
            if !is_root && sbool(s, "x-kubernetes-embedded-resource") {
                let empty = |k: &str| m.get(k).and_then(Value::as_str).is_none_or(str::is_empty);
                if empty("kind") {
                    path.push(Seg::Field("kind"));
                    out.push(FieldError::required(field_path(path), "must not be empty"));
                    path.pop();
                }
                if empty("apiVersion") {
                    path.push(Seg::Field("apiVersion"));
                    out.push(FieldError::required(field_path(path), "must not be empty"));
                    path.pop();
                }
            }
            for (k, cv) in m {
                if let Some(ps) = props(s).and_then(|p| p.get(k)) {
                    path.push(Seg::Field(k));
                    validate_embedded(ps, cv, path, false, out);
                    path.pop();
                } else if let Additional::Schema(a) = additional(s) {
                    path.push(Seg::Key(k));
                    validate_embedded(a, cv, path, false, out);
                    path.pop();
                }
            }
        }
        Value::Array(a) => {
            if let Some(it) = items(s) {
                for (i, x) in a.iter().enumerate() {
                    path.push(Seg::Index(i));
                    validate_embedded(it, x, path, false, out);
                    path.pop();
                }
            }
        }
        _ => {}
    }
}

fn validate_lists<'a>(s: &Value, v: &'a Value, path: &mut Vec<Seg<'a>>, out: &mut Vec<FieldError>) {
    match v {
        Value::Object(m) => {
            for (k, cv) in m {
                if let Some(ps) = props(s).and_then(|p| p.get(k)) {
                    path.push(Seg::Field(k));
                    validate_lists(ps, cv, path, out);
                    path.pop();
                } else if let Additional::Schema(a) = additional(s) {
                    path.push(Seg::Key(k));
                    validate_lists(a, cv, path, out);
                    path.pop();
                }
            }
        }
        Value::Array(a) => {
            match sstr(s, "x-kubernetes-list-type") {
                Some("set") => {
                    for (i, x) in a.iter().enumerate() {
                        let earlier = a[..i].iter().filter(|y| *y == x).count();
                        if earlier == 1 {
                            path.push(Seg::Index(i));
                            out.push(FieldError::duplicate(field_path(path), x));
                            path.pop();
                        }
                    }
                }
                Some("map") => {
                    let keys = map_keys(s);
                    let mut seen: Vec<Vec<Value>> = Vec::new();
                    for (i, x) in a.iter().enumerate() {
                        path.push(Seg::Index(i));
                        match key_tuple(s, &keys, x) {
                            Some(t) => {
                                if seen.contains(&t) {
                                    let km: Map<String, Value> =
                                        keys.iter().cloned().zip(t.iter().cloned()).collect();
                                    out.push(FieldError::duplicate(
                                        field_path(path),
                                        &Value::Object(km),
                                    ));
                                } else {
                                    seen.push(t);
                                }
                            }
                            None if x.is_object() => {
                                for k in &keys {
                                    if x.get(k).is_none() {
                                        let missing = child(path, Seg::Field(k));
                                        out.push(FieldError::required(field_path(&missing), ""));
                                    }
                                }
                            }
                            None => {}
                        }
                        path.pop();
                    }
                }
                _ => {}
            }
            if let Some(it) = items(s) {
                for (i, x) in a.iter().enumerate() {
                    path.push(Seg::Index(i));
                    validate_lists(it, x, path, out);
                    path.pop();
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// CEL (x-kubernetes-validations), walked like apiextensions' cel.Validator

/// The rules evaluated at a node: its own, then those of its `allOf` branches.
fn node_rules(s: &Value, out: &mut Vec<Value>) {
    if let Some(rules) = sget(s, "x-kubernetes-validations").and_then(Value::as_array) {
        out.extend(rules.iter().cloned());
    }
    for sub in subschemas(s, "allOf") {
        node_rules(sub, out);
    }
}

/// The node's schema without any rules, defaults or composites: only the
/// typing CEL needs.
fn typing_schema(s: &Value) -> Value {
    match s {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                match k.as_str() {
                    "x-kubernetes-validations"
                    | "default"
                    | "allOf"
                    | "anyOf"
                    | "oneOf"
                    | "not" => {}
                    "properties" => {
                        let p: Map<String, Value> = v
                            .as_object()
                            .map(|p| {
                                p.iter()
                                    .map(|(n, ps)| (n.clone(), typing_schema(ps)))
                                    .collect()
                            })
                            .unwrap_or_default();
                        out.insert(k.clone(), Value::Object(p));
                    }
                    "items" | "additionalProperties" => {
                        out.insert(k.clone(), typing_schema(v));
                    }
                    _ => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn cel_node<'a>(
    s: &Value,
    v: &'a Value,
    old: Option<&Value>,
    path: &mut Vec<Seg<'a>>,
    parent_unchanged: bool,
    out: &mut Vec<FieldError>,
) {
    if v.is_null() {
        return;
    }
    // Whether the value equals its old one (ratcheting). Compared only where it is
    // read: comparing every node of a large object was most of this walk's cost.
    let unchanged = || match old {
        Some(o) => o == v,
        None => parent_unchanged,
    };
    if let Some(programs) = node_programs(s) {
        let unchanged = unchanged();
        for (rule, compiled) in &programs.rules {
            eval_rule(
                &programs.node_type,
                rule,
                compiled,
                v,
                old,
                path,
                unchanged,
                out,
            );
        }
    }
    match v {
        Value::Array(a) => {
            if let Some(it) = items(s) {
                // Items without an old counterpart are as unchanged as the list.
                let unchanged = unchanged();
                let old_list = old.and_then(Value::as_array);
                let is_map_list = sstr(s, "x-kubernetes-list-type") == Some("map");
                for (i, x) in a.iter().enumerate() {
                    let oi = if is_map_list {
                        old_list.and_then(|ol| correlate_item(s, ol, x))
                    } else {
                        None
                    };
                    path.push(Seg::Index(i));
                    cel_node(it, x, oi, path, unchanged, out);
                    path.pop();
                }
            }
        }
        Value::Object(m) => {
            let old_map = old.and_then(Value::as_object);
            // A field without an old value is new, unless the whole object is.
            let unchanged = old.is_none() && parent_unchanged;
            if let Additional::Schema(a) = additional(s) {
                for (k, cv) in m {
                    if props(s).is_some_and(|p| p.contains_key(k)) {
                        continue;
                    }
                    path.push(Seg::Key(k));
                    cel_node(a, cv, old_map.and_then(|o| o.get(k)), path, unchanged, out);
                    path.pop();
                }
            }
            if let Some(p) = props(s) {
                for (k, cv) in m {
                    if let Some(ps) = p.get(k) {
                        let root_meta =
                            path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind");
                        let child_unchanged = unchanged && !root_meta;
                        path.push(Seg::Field(k));
                        cel_node(
                            ps,
                            cv,
                            old_map.and_then(|o| o.get(k)),
                            path,
                            child_unchanged,
                            out,
                        );
                        path.pop();
                    }
                }
            }
        }
        _ => {}
    }
}

/// `rule.fieldPath` (`.a.b`, `.m['k']`) appended the way the apiserver does.
fn rule_field_path(path: &[Seg], fp: Option<&str>) -> String {
    let base = field_path(path);
    let Some(fp) = fp.map(str::trim).filter(|f| !f.is_empty()) else {
        return base;
    };
    let normalized = fp
        .trim_start_matches('.')
        .replace("['", "[")
        .replace("']", "]");
    if path.is_empty() {
        normalized
    } else {
        format!("{base}.{normalized}")
    }
}

/// The compiled rules of one schema node, with the node they were compiled from.
struct NodePrograms {
    node: Value,
    node_type: String,
    rules: Vec<(Value, kcel::CompiledSchema)>,
}

thread_local! {
    static CEL: kcel::Validator = kcel::Validator::new();
    static COMPILED: std::cell::RefCell<std::collections::HashMap<usize, std::rc::Rc<NodePrograms>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// The part of `schema` the CEL walk (`cel_node`) needs: every node that has rules,
/// whole, and the properties leading to them; `None` without any rule. Walking the
/// whole object, comparing each node with its old value, took half of the validation
/// of an ApiToken write (callgrind, BENCHMARKS.md), though only `spec` has rules.
pub fn rules_skeleton(schema: &Value) -> Option<Value> {
    if sget(schema, "x-kubernetes-validations").is_some() || sget(schema, "allOf").is_some() {
        return Some(schema.clone());
    }
    let nested = |key: &str| sget(schema, key).is_some_and(|n| rules_skeleton(n).is_some());
    if nested("items") || nested("additionalProperties") {
        // Rare; list and map nodes keep what item correlation reads.
        return Some(schema.clone());
    }
    let children: Map<String, Value> = props(schema)?
        .iter()
        .filter_map(|(k, child)| Some((k.clone(), rules_skeleton(child)?)))
        .collect();
    if children.is_empty() {
        return None;
    }
    let mut skeleton = Map::new();
    if let Some(t) = sget(schema, "type") {
        skeleton.insert("type".into(), t.clone());
    }
    skeleton.insert("properties".into(), Value::Object(children));
    Some(Value::Object(skeleton))
}

/// The node's CEL rules, each compiled against the node's typing (None without rules).
/// Compiling a rule costs far more than running it, and even building the cache key from
/// the schema showed in the profile, so programs are cached per node address and the
/// cached copy of the node is compared (no allocation) to detect a replaced schema.
fn node_programs(s: &Value) -> Option<std::rc::Rc<NodePrograms>> {
    if sget(s, "x-kubernetes-validations").is_none() && sget(s, "allOf").is_none() {
        return None;
    }
    let key = std::ptr::from_ref(s) as usize;
    if let Some(hit) = COMPILED.with(|c| c.borrow().get(&key).filter(|p| p.node == *s).cloned()) {
        return (!hit.rules.is_empty()).then_some(hit);
    }
    let mut rules = Vec::new();
    node_rules(s, &mut rules);
    let typing = typing_schema(s);
    let compiled = rules
        .into_iter()
        .filter(|rule| !sstr(rule, "rule").unwrap_or_default().trim().is_empty())
        .map(|rule| {
            let mut one = typing.clone();
            if let Value::Object(m) = &mut one {
                m.insert(
                    "x-kubernetes-validations".into(),
                    Value::Array(vec![rule.clone()]),
                );
            }
            let program = kcel::compile_schema(&one);
            (rule, program)
        })
        .collect();
    let programs = std::rc::Rc::new(NodePrograms {
        node: s.clone(),
        node_type: sstr(&typing, "type").unwrap_or_default().to_owned(),
        rules: compiled,
    });
    COMPILED.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() > 4096 {
            c.clear();
        }
        c.insert(key, programs.clone());
    });
    (!programs.rules.is_empty()).then_some(programs)
}

#[allow(clippy::too_many_arguments)] // one rule's evaluation context, passed through
fn eval_rule(
    node_type: &str,
    rule: &Value,
    compiled: &kcel::CompiledSchema,
    v: &Value,
    old: Option<&Value>,
    path: &[Seg],
    unchanged: bool,
    out: &mut Vec<FieldError>,
) {
    let rule_text = sstr(rule, "rule").unwrap_or_default().trim();
    // The immutability rule cannot fail, nor err, on a value equal to its old one.
    if unchanged && old.is_some() && rule_text == "self == oldSelf" && !optional_old_self(rule) {
        return;
    }
    let result = CEL.with(|validator| validator.validate_compiled(compiled, v, old));
    // What only errors need is built only for them.
    let Err(errors) = result else { return };
    let message = sstr(rule, "message")
        .map(str::trim)
        .filter(|m| !m.is_empty());
    let rule_error_string = message.unwrap_or(rule_text);
    let node_path = field_path(path);
    let type_value = Some(go_quote(node_type));
    for e in errors.iter() {
        match e.kind {
            kcel::ErrorKind::ValidationFailure => {
                let transition = rule_text.contains("oldSelf");
                if unchanged && !transition {
                    continue; // ratcheted: the real server only warns
                }
                let has_expr = sstr(rule, "messageExpression").is_some();
                let detail =
                    if has_expr && !e.message.trim().is_empty() && !e.message.contains('\n') {
                        e.message.trim().to_string()
                    } else {
                        match message {
                            Some(m) => m.to_string(),
                            None => format!("failed rule: {rule_error_string}"),
                        }
                    };
                let at = rule_field_path(path, sstr(rule, "fieldPath"));
                let value = if matches!(node_type, "object" | "array") {
                    None
                } else {
                    Some(go_value(v))
                };
                let err = match sstr(rule, "reason") {
                    Some("FieldValueForbidden") => FieldError::forbidden(at, detail),
                    Some("FieldValueRequired") => FieldError::required(at, detail),
                    Some("FieldValueDuplicate") => {
                        FieldError::raw(at, FieldErrorKind::Duplicate, value, "")
                    }
                    _ => FieldError::raw(at, FieldErrorKind::Invalid, value, detail),
                };
                out.push(err);
            }
            kcel::ErrorKind::CompilationFailure | kcel::ErrorKind::InvalidRule => {
                out.push(FieldError::raw(
                    node_path.clone(),
                    FieldErrorKind::Invalid,
                    type_value.clone(),
                    format!(
                        "rule compile error: compilation failed: {}",
                        compile_detail(&e.message)
                    ),
                ));
            }
            _ => {
                let cause = lower_first(
                    &std::error::Error::source(e)
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| e.message.clone()),
                );
                out.push(FieldError::raw(
                    node_path.clone(),
                    FieldErrorKind::Invalid,
                    type_value.clone(),
                    format!("{cause} evaluating rule: {rule_error_string}"),
                ));
            }
        }
    }
}

/// Whether the rule sees `oldSelf` as an optional (`optionalOldSelf: true`).
fn optional_old_self(rule: &Value) -> bool {
    rule.get("optionalOldSelf").and_then(Value::as_bool) == Some(true)
}

/// kube-cel prefixes parse errors with `failed to compile rule "<rule>": `;
/// the apiserver shows only the compiler's own text.
fn compile_detail(msg: &str) -> &str {
    match msg.find("\": ") {
        Some(i) if msg.starts_with("failed to compile") => &msg[i + 3..],
        _ => msg,
    }
}

/// cel-go's runtime errors start lower-case (`no such key: k`).
fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
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
