//! CEL rules (`x-kubernetes-validations`): which paths the walk visits, rule results and
//! messages, compile and runtime errors at the root, and ratcheting of unchanged values.

use super::*;
use kube_emulator::schema::{CEL_EMULATED, rules_skeleton};
use serde_json::{Value, json};

fn expiration_schema() -> Value {
    root(json!({
        "type": "object",
        "required": ["owner"],
        "properties": {
            "owner": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "owner is immutable"}]},
            "expiration": {
                "type": "object",
                "properties": {"expiresAt": {"type": "string", "format": "date-time"}, "lifetime": {"type": "string"}},
                "x-kubernetes-validations": [
                    {"rule": "has(self.expiresAt) != has(self.lifetime)", "message": "exactly one of expiresAt or lifetime must be set"}
                ]
            },
            "tags": {"type": "object", "additionalProperties": {"type": "string", "x-kubernetes-validations": [{"rule": "self.size() <= 5", "messageExpression": "'tag ' + self + ' is too long'"}]}},
            "scopes": {"type": "array", "items": {"type": "string"}, "x-kubernetes-validations": [{"rule": "!has(self[0]) || self.size() > 0"}]},
            "limit": {"type": "integer", "x-kubernetes-validations": [{"rule": "self > 0", "reason": "FieldValueForbidden", "message": "must be positive"}]},
            "window": {"type": "object", "properties": {"start": {"type": "integer"}, "end": {"type": "integer"}},
                "x-kubernetes-validations": [{"rule": "!has(self.start) || !has(self.end) || self.start < self.end", "fieldPath": ".end"}]}
        }
    }))
}

#[test]
fn the_cel_walk_visits_only_paths_to_rules() {
    let rule = json!({"rule": "self.size() > 1", "message": "too short"});
    let ruled = json!({"type": "string", "x-kubernetes-validations": [rule]});
    let listed = json!({"type": "array", "items": {"type": "object",
        "properties": {"n": ruled.clone()}}});
    let schema = json!({
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {
                "a": ruled.clone(), "b": {"type": "string"}, "list": listed.clone(),
            }},
            "status": {"type": "object", "properties": {"c": {"type": "string"}}},
        }
    });
    let want = json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {"a": ruled, "list": listed}}}
    });
    assert_eq!(rules_skeleton(&schema), Some(want));
    assert_eq!(
        rules_skeleton(&json!({"type": "object", "properties": {
            "status": {"type": "object", "properties": {"c": {"type": "string"}}}
        }})),
        None
    );
}

#[test]
fn cel_rules() {
    const { assert!(CEL_EMULATED) };
    let schema = expiration_schema();
    let cases: Vec<(&str, Value, Option<Value>, Vec<&str>)> = vec![
        (
            "valid create",
            json!({"owner": "a", "expiration": {"lifetime": "1h"}}),
            None,
            vec![],
        ),
        (
            "neither set",
            json!({"owner": "a", "expiration": {}}),
            None,
            vec![
                "spec.expiration: Invalid value: exactly one of expiresAt or lifetime must be set",
            ],
        ),
        (
            "both set",
            json!({"owner": "a", "expiration": {"lifetime": "1h", "expiresAt": "2030-01-01T00:00:00Z"}}),
            None,
            vec![
                "spec.expiration: Invalid value: exactly one of expiresAt or lifetime must be set",
            ],
        ),
        (
            "transition rule unchanged",
            json!({"owner": "a"}),
            Some(json!({"owner": "a"})),
            vec![],
        ),
        (
            "transition rule changed",
            json!({"owner": "b"}),
            Some(json!({"owner": "a"})),
            vec!["spec.owner: Invalid value: \"b\": owner is immutable"],
        ),
        (
            "transition rule skipped when the old value is absent",
            json!({"owner": "b"}),
            Some(json!({})),
            vec![],
        ),
        (
            "map value rule with messageExpression",
            json!({"owner": "a", "tags": {"ok": "x", "bad": "toolong"}}),
            None,
            vec!["spec.tags[bad]: Invalid value: \"toolong\": tag toolong is too long"],
        ),
        (
            "reason Forbidden",
            json!({"owner": "a", "limit": 0}),
            None,
            vec!["spec.limit: Forbidden: must be positive"],
        ),
        (
            "fieldPath and default message",
            json!({"owner": "a", "window": {"start": 5, "end": 1}}),
            None,
            vec![
                "spec.window.end: Invalid value: failed rule: !has(self.start) || !has(self.end) || self.start < self.end",
            ],
        ),
        (
            "blocking schema error skips CEL",
            json!({"expiration": {}}),
            None,
            vec!["spec.owner: Required value", NOT_CHECKED],
        ),
    ];
    for (name, spec, old_spec, want) in cases {
        let mut o = obj(spec);
        let old = old_spec.map(obj);
        let got = run(&schema, &mut o, old.as_ref());
        assert_eq!(got, want, "case {name}");
    }
}

#[test]
fn cel_root_rules_compile_and_runtime_errors() {
    let schema = json!({
        "type": "object",
        "x-kubernetes-validations": [{"rule": "self.spec.a != 'x'", "message": "a must not be x"}],
        "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
            "spec": {"type": "object", "properties": {"a": {"type": "string"}, "m": {"type": "object", "additionalProperties": {"type": "string"}}},
                "x-kubernetes-validations": [{"rule": "self.m['k'] == 'v'"}]},
            "other": {"type": "object", "x-kubernetes-validations": [{"rule": "self.(("}]}
        }
    });
    let mut o = json!({"apiVersion": "v1", "kind": "K", "metadata": {"name": "n"}, "spec": {"a": "x", "m": {}}, "other": {}});
    let got = run(&schema, &mut o, None);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], "<nil>: Invalid value: a must not be x");
    assert!(
        got[1].starts_with("other: Invalid value: \"object\": rule compile error: compilation failed: ERROR: <input>:1:6: Syntax error"),
        "{}",
        got[1]
    );
    assert_eq!(
        got[2],
        "spec: Invalid value: \"object\": no such key: k evaluating rule: self.m['k'] == 'v'"
    );
}

#[test]
fn ratcheting_keeps_unchanged_invalid_values() {
    let schema = root(json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 3},
            "n": {"type": "integer", "x-kubernetes-validations": [{"rule": "self < 10"}]}
        }
    }));
    let old = obj(json!({"name": "toolong", "n": 20}));
    let mut unchanged = obj(json!({"name": "toolong", "n": 20}));
    assert_eq!(
        run(&schema, &mut unchanged, Some(&old)),
        Vec::<String>::new()
    );
    let mut changed = obj(json!({"name": "toolong2", "n": 21}));
    assert_eq!(
        run(&schema, &mut changed, Some(&old)),
        vec![
            "spec.name: Too long: may not be more than 3 bytes",
            NOT_CHECKED
        ]
    );
    let mut cel_changed = obj(json!({"name": "toolong", "n": 21}));
    assert_eq!(
        run(&schema, &mut cel_changed, Some(&old)),
        vec!["spec.n: Invalid value: 21: failed rule: self < 10"]
    );
}

#[test]
fn list_duplicates_ratchet_on_the_whole_old_object() {
    let schema = root(json!({
        "type": "object",
        "properties": {
            "s": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "n": {"type": "integer"}
        }
    }));
    let duplicate = vec!["spec.s[1]: Duplicate value: \"a\""];
    // An old object that already had duplicates lets an update keep them.
    let old_dup = obj(json!({"s": ["a", "a"], "n": 1}));
    let mut keeps = obj(json!({"s": ["a", "a"], "n": 2}));
    assert_eq!(
        run(&schema, &mut keeps, Some(&old_dup)),
        Vec::<String>::new()
    );
    // A valid old object does not.
    let old_ok = obj(json!({"s": ["a"], "n": 1}));
    let mut adds = obj(json!({"s": ["a", "a"], "n": 1}));
    assert_eq!(run(&schema, &mut adds, Some(&old_ok)), duplicate);
    // Nor does a create.
    let mut created = obj(json!({"s": ["a", "a"]}));
    assert_eq!(run(&schema, &mut created, None), duplicate);
}

/// A rule that is only `self.matches('<pattern>')` runs on a pattern compiled once; it must
/// answer exactly as the interpreter does for the same rule written another way (here in
/// parentheses, which the interpreter runs): the same errors for the same values, with and
/// without a message, through ratcheting, and a formatted string stays the interpreter's.
#[test]
fn a_matches_rule_answers_as_the_interpreter_does() {
    let field = |rule: &str, message: Option<&str>| {
        let mut r = json!({"rule": rule});
        if let Some(m) = message {
            r["message"] = json!(m);
        }
        json!({"type": "string", "x-kubernetes-validations": [r]})
    };
    for (message, not) in [
        (Some("use a duration such as 90d"), ""),
        (None, ""),
        (None, "!"),
    ] {
        let schema =
            |rule: &str| root(json!({"type": "object", "properties": {"d": field(rule, message)}}));
        let fast = schema(&format!("{not}self.matches('^[0-9]+d$')"));
        let interpreted = schema(&format!("{not}(self.matches('^[0-9]+d$'))"));
        // The two spellings of the rule read the same in the messages that quote it.
        let answers = |s: &Value, value: &str, old: Option<&Value>| -> Vec<String> {
            run(s, &mut obj(json!({"d": value})), old)
                .into_iter()
                .map(|e| e.replace("(self.matches('^[0-9]+d$'))", "self.matches('^[0-9]+d$')"))
                .collect()
        };
        let old = obj(json!({"d": "1d"}));
        for value in ["90d", "90days", "", "d"] {
            for old in [None, Some(&old)] {
                assert_eq!(
                    answers(&fast, value, old),
                    answers(&interpreted, value, old),
                    "{value:?}, message {message:?}, update {}",
                    old.is_some()
                );
            }
        }
        // Unchanged invalid values ratchet on both paths.
        let old = obj(json!({"d": if not.is_empty() { "9d" } else { "bad" }}));
        let same = old["spec"]["d"].clone();
        assert_eq!(
            run(&fast, &mut obj(json!({"d": same})), Some(&old)),
            Vec::<String>::new()
        );
    }
}

/// In an object with properties, a property set to null is absent to a rule (`has()` is
/// false), as upstream's CEL sees it; nested objects too; a map's null value stays a value.
#[test]
fn a_null_property_is_absent_to_rules() {
    let nullable = json!({"type": "string", "nullable": true});
    let schema = root(json!({
        "type": "object",
        "properties": {
            "e": {"type": "object", "nullable": true,
                  "properties": {"a": nullable.clone(), "b": nullable.clone()},
                  "x-kubernetes-validations": [{"rule": "has(self.a) != has(self.b)", "message": "one of a, b"}]},
            "outer": {"type": "object", "properties": {
                "inner": {"type": "object", "properties": {"a": nullable.clone()}}},
                "x-kubernetes-validations": [{"rule": "!has(self.inner.a)", "message": "no inner.a"}]},
            "m": {"type": "object", "additionalProperties": nullable,
                  "x-kubernetes-validations": [{"rule": "'k' in self", "message": "k"}]}
        }
    }));
    let none: Vec<String> = Vec::new();
    assert_eq!(
        run(&schema, &mut obj(json!({"e": {"a": "x", "b": null}})), None),
        none
    );
    assert_eq!(
        run(&schema, &mut obj(json!({"e": {"a": null}})), None),
        vec!["spec.e: Invalid value: one of a, b"]
    );
    assert_eq!(
        run(
            &schema,
            &mut obj(json!({"outer": {"inner": {"a": null}}})),
            None
        ),
        none
    );
    assert_eq!(
        run(&schema, &mut obj(json!({"m": {"k": null}})), None),
        none
    );
}
