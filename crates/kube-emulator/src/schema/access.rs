//! Schema access: lenient accessors for schema nodes (`sget`, `props`, `items`, …), the
//! formats the apiserver keeps, and `check_schema`, which rejects the wrong shapes up front so
//! the accessors can stay lenient. Used by every walk beside it.

use serde_json::{Map, Value};

pub(super) fn sget<'a>(s: &'a Value, key: &str) -> Option<&'a Value> {
    s.as_object().and_then(|m| m.get(key))
}

pub(super) fn sbool(s: &Value, key: &str) -> bool {
    sget(s, key).and_then(Value::as_bool).unwrap_or(false)
}

pub(super) fn sstr<'a>(s: &'a Value, key: &str) -> Option<&'a str> {
    sget(s, key).and_then(Value::as_str)
}

pub(super) fn sf64(s: &Value, key: &str) -> Option<f64> {
    sget(s, key).and_then(Value::as_f64)
}

pub(super) fn si64(s: &Value, key: &str) -> Option<i64> {
    sget(s, key).and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}

pub(super) fn props(s: &Value) -> Option<&Map<String, Value>> {
    sget(s, "properties").and_then(Value::as_object)
}

pub(super) fn items(s: &Value) -> Option<&Value> {
    sget(s, "items").filter(|v| v.is_object())
}

pub(super) enum Additional<'a> {
    Absent,
    Bool(bool),
    Schema(&'a Value),
}

pub(super) fn additional(s: &Value) -> Additional<'_> {
    match sget(s, "additionalProperties") {
        Some(Value::Bool(b)) => Additional::Bool(*b),
        Some(v @ Value::Object(_)) => Additional::Schema(v),
        _ => Additional::Absent,
    }
}

pub(super) fn subschemas<'a>(s: &'a Value, key: &str) -> &'a [Value] {
    sget(s, key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The type list kube-openapi checks against (`integer,string` for int-or-string).
pub(super) fn type_list(s: &Value) -> Vec<&str> {
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
pub(super) fn supported_format(s: &Value) -> Option<&str> {
    let f = sstr(s, "format").filter(|f| !f.is_empty())?;
    SUPPORTED_FORMATS
        .contains(&f.replace('-', "").as_str())
        .then_some(f)
}

/// Rejects schema shapes that would make the walk meaningless (the real server
/// refuses such a CRD up front).
pub(super) fn check_schema(s: &Value, at: &str, depth: usize) -> Result<(), String> {
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
