//! OpenAPI keyword validation (kube-openapi's SchemaValidator, errors converted as apiextensions
//! does): types, composites, string/number/array/object keywords and enums, ratcheted on update.
//! String formats are checked in `formats`; list items meet their old values through `lists`.

use serde_json::{Map, Value};

use super::access::{
    Additional, additional, items, props, sbool, sf64, sget, si64, sstr, subschemas,
    supported_format, type_list,
};
use super::formats::{format_ok, with_regex};
use super::go_values::{go_float, go_quote};
use super::lists::correlate_item;
use super::paths::{PathName, Seg, child, openapi_field, openapi_name};
use super::{FieldError, FieldErrorKind};

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

pub(super) fn validate_node<'a>(
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
