//! Pruning of unknown fields and defaulting, defaults applied before validation.

use super::*;
use serde_json::json;

#[test]
fn pruning_and_defaulting() {
    let schema = root(json!({
        "type": "object",
        "properties": {
            "known": {"type": "object", "properties": {"a": {"type": "string"}}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                     "properties": {"typed": {"type": "object", "properties": {"x": {"type": "string"}}}}},
            "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {"type": "string"}}}},
            "emb": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object", "properties": {"keep": {"type": "string"}}}}},
            "list": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "string", "default": "dflt"}}}},
            "mode": {"type": "string", "default": "auto"},
            "nested": {"type": "object", "default": {}, "properties": {"inner": {"type": "integer", "default": 3}}},
            "nulled": {"type": "string", "default": "was-null"},
            "keepNull": {"type": "string", "nullable": true, "default": "x"}
        }
    }));
    let mut o = json!({
        "apiVersion": "example.com/v1", "kind": "Thing",
        "metadata": {"name": "a", "labels": {"l": "v"}},
        "status": {"gone": true},
        "spec": {
            "known": {"a": "1", "b": "dropped"},
            "free": {"anything": {"deep": 1}, "typed": {"x": "k", "y": "dropped"}},
            "map": {"k1": {"v": "1", "junk": 2}},
            "emb": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"keep": "y", "drop": "z"}, "extra": 1},
            "list": [{"n": "given", "zz": 1}, {}],
            "nulled": null,
            "keepNull": null,
            "unknown": 1
        }
    });
    let errs = run(&schema, &mut o, None);
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(
        o,
        json!({
            "apiVersion": "example.com/v1", "kind": "Thing",
            "metadata": {"name": "a", "labels": {"l": "v"}},
            "spec": {
                "known": {"a": "1"},
                "free": {"anything": {"deep": 1}, "typed": {"x": "k"}},
                "map": {"k1": {"v": "1"}},
                "emb": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"keep": "y"}},
                "list": [{"n": "given"}, {"n": "dflt"}],
                "mode": "auto",
                "nested": {"inner": 3},
                "nulled": "was-null",
                "keepNull": null
            }
        })
    );
}

#[test]
fn defaults_apply_before_validation() {
    // The default satisfies `required` and the enum.
    check(
        "defaulted required",
        json!({"type": "object", "required": ["mode"], "properties": {"mode": {"type": "string", "enum": ["a", "b"], "default": "a"}}}),
        json!({}),
        &[],
    );
}
