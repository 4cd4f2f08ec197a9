//! CEL `x-kubernetes-validations`, walked like apiextensions' cel.Validator: rules compiled once
//! per schema node (kube-cel), run with `oldSelf` and ratcheting. The last step of
//! `validate_and_prune` (in `mod.rs`), skipped after type, required, enum or size errors.

use kube::core::cel as kcel;
use serde_json::{Map, Value};

use super::access::{Additional, additional, items, props, sget, sstr, subschemas};
use super::go_values::{go_quote, go_value};
use super::lists::correlate_item;
use super::paths::{Seg, field_path};
use super::{FieldError, FieldErrorKind};

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

pub(super) fn cel_node<'a>(
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
        for rule in &programs.rules {
            eval_rule(&programs.node_type, rule, v, old, path, unchanged, out);
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
    rules: Vec<CompiledRule>,
}

/// One rule, compiled; with the pattern of a rule that is only `self.matches('<pattern>')`
/// (or its negation) compiled once as well. The interpreter compiles a `matches` pattern on every call, which
/// made such a rule cost more than the rest of an object's validation; cel-go, which the
/// API server runs, compiles a constant pattern once when it plans the program.
struct CompiledRule {
    rule: Value,
    program: kcel::CompiledSchema,
    pattern: Option<(regex::Regex, bool)>,
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
            // A string with a format may be typed otherwise in CEL (a date-time is a
            // timestamp), where `matches` does not compile: the interpreter says so.
            let plain_string =
                sstr(&typing, "type") == Some("string") && sget(&typing, "format").is_none();
            let pattern = only_matches(&rule).filter(|_| plain_string);
            CompiledRule {
                rule,
                program,
                pattern,
            }
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

/// `v` as the rules see it: in an object with `properties`, a property whose value is null
/// is absent (`has()` is false), as upstream's `unstructuredMap.Find` treats it; in a map
/// (`additionalProperties`) a null value stays. Borrowed unless there is such a null.
/// Taken once per write, of the whole object (`schema` is the rules' skeleton), before the
/// walk; the stored object keeps its nulls.
pub(super) fn as_cel_sees<'v>(schema: &Value, v: &'v Value) -> std::borrow::Cow<'v, Value> {
    if has_null_property(schema, v) {
        let mut owned = v.clone();
        drop_null_properties(schema, &mut owned);
        std::borrow::Cow::Owned(owned)
    } else {
        std::borrow::Cow::Borrowed(v)
    }
}

/// The schema of `v`'s children: a property's, a list item's or a map value's.
fn child_schema<'s>(schema: &'s Value, key: Option<&str>) -> Option<&'s Value> {
    match key {
        Some(k) => props(schema)
            .and_then(|p| p.get(k))
            .or(match additional(schema) {
                Additional::Schema(extra) => Some(extra),
                _ => None,
            }),
        None => items(schema),
    }
}

fn has_null_property(schema: &Value, v: &Value) -> bool {
    match v {
        Value::Object(map) => {
            let object = props(schema).is_some();
            map.iter().any(|(k, child)| {
                (object && child.is_null())
                    || child_schema(schema, Some(k)).is_some_and(|cs| has_null_property(cs, child))
            })
        }
        Value::Array(list) => child_schema(schema, None)
            .is_some_and(|cs| list.iter().any(|item| has_null_property(cs, item))),
        _ => false,
    }
}

fn drop_null_properties(schema: &Value, v: &mut Value) {
    match v {
        Value::Object(map) => {
            if props(schema).is_some() {
                map.retain(|_, child| !child.is_null());
            }
            for (k, child) in map.iter_mut() {
                if let Some(cs) = child_schema(schema, Some(k)) {
                    drop_null_properties(cs, child);
                }
            }
        }
        Value::Array(list) => {
            if let Some(cs) = child_schema(schema, None) {
                list.iter_mut()
                    .for_each(|item| drop_null_properties(cs, item));
            }
        }
        _ => {}
    }
}

/// The pattern of a rule that is exactly `self.matches('<pattern>')` or its negation
/// `!self.matches('<pattern>')`, with no message expression (whose text only the
/// interpreter can produce), compiled; and whether the rule holds when the pattern matches.
fn only_matches(rule: &Value) -> Option<(regex::Regex, bool)> {
    if sstr(rule, "messageExpression").is_some() {
        return None;
    }
    let text = sstr(rule, "rule")?.trim();
    let (text, holds_on_match) = match text.strip_prefix('!') {
        Some(rest) => (rest, false),
        None => (text, true),
    };
    let pattern = text.strip_prefix("self.matches('")?.strip_suffix("')")?;
    // Escapes and quotes mean CEL string decoding; leave those to the interpreter.
    if pattern.contains(['\\', '\'', '"']) {
        return None;
    }
    Some((regex::Regex::new(pattern).ok()?, holds_on_match))
}

fn eval_rule(
    node_type: &str,
    compiled: &CompiledRule,
    v: &Value,
    old: Option<&Value>,
    path: &[Seg],
    unchanged: bool,
    out: &mut Vec<FieldError>,
) {
    let rule = &compiled.rule;
    let rule_text = sstr(rule, "rule").unwrap_or_default().trim();
    // The immutability rule cannot fail, nor err, on a value equal to its old one.
    if unchanged && old.is_some() && rule_text == "self == oldSelf" && !optional_old_self(rule) {
        return;
    }
    if let (Some((pattern, holds_on_match)), Value::String(text)) = (&compiled.pattern, v) {
        if pattern.is_match(text) != *holds_on_match && !unchanged {
            out.push(rule_failure(node_type, rule, v, path, ""));
        }
        return;
    }
    let result = CEL.with(|validator| validator.validate_compiled(&compiled.program, v, old));
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
                out.push(rule_failure(node_type, rule, v, path, &e.message));
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

/// The error of a rule that evaluated to false; `evaluated` is the message expression's text.
fn rule_failure(
    node_type: &str,
    rule: &Value,
    v: &Value,
    path: &[Seg],
    evaluated: &str,
) -> FieldError {
    let message = sstr(rule, "message")
        .map(str::trim)
        .filter(|m| !m.is_empty());
    let has_expr = sstr(rule, "messageExpression").is_some();
    let detail = if has_expr && !evaluated.trim().is_empty() && !evaluated.contains('\n') {
        evaluated.trim().to_string()
    } else {
        match message {
            Some(m) => m.to_string(),
            None => format!(
                "failed rule: {}",
                sstr(rule, "rule").unwrap_or_default().trim()
            ),
        }
    };
    let at = rule_field_path(path, sstr(rule, "fieldPath"));
    let value = if matches!(node_type, "object" | "array") {
        None
    } else {
        Some(go_value(v))
    };
    match sstr(rule, "reason") {
        Some("FieldValueForbidden") => FieldError::forbidden(at, detail),
        Some("FieldValueRequired") => FieldError::required(at, detail),
        Some("FieldValueDuplicate") => FieldError::raw(at, FieldErrorKind::Duplicate, value, ""),
        _ => FieldError::raw(at, FieldErrorKind::Invalid, value, detail),
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
    use serde_json::json;

    use super::only_matches;

    /// Which rules run on a precompiled pattern: exactly `self.matches('…')` or its negation,
    /// without a message expression, escapes or quotes; everything else is the interpreter's.
    #[test]
    fn only_a_bare_matches_rule_takes_the_precompiled_path() {
        let taken = |rule: serde_json::Value| {
            only_matches(&rule).map(|(re, holds)| (re.to_string(), holds))
        };
        let pattern = "^[0-9]+d$".to_owned();
        assert_eq!(
            taken(json!({"rule": "self.matches('^[0-9]+d$')"})),
            Some((pattern.clone(), true))
        );
        assert_eq!(
            taken(json!({"rule": " !self.matches('^[0-9]+d$') "})),
            Some((pattern, false))
        );
        for rule in [
            json!({"rule": "self.matches('^[0-9]+d$')", "messageExpression": "'bad'"}),
            json!({"rule": "self.matches('^\\\\d+$')"}),
            json!({"rule": "self.matches(\"^a$\")"}),
            json!({"rule": "self.matches('^a$') && self.size() < 5"}),
            json!({"rule": "!!self.matches('^a$')"}),
            json!({"rule": "self.matches('(')"}),
        ] {
            assert!(taken(rule.clone()).is_none(), "{rule}");
        }
    }
}
