//! OpenAPI keywords: the error of each, worded as kube-apiserver words it, the rendering of
//! field errors and their reasons, and no panic on odd strings or a malformed schema.

use super::*;
use kube_emulator::schema::{FieldError, FieldErrorKind, validate_and_prune};
use serde_json::{Value, json};

#[test]
fn keyword_errors_match_apiserver_texts() {
    let cases: Vec<(&str, Value, Value, Vec<&str>)> = vec![
        (
            "required nested",
            json!({"type": "object", "required": ["owner"], "properties": {"owner": {"type": "object", "required": ["kind"], "properties": {"kind": {"type": "string"}}}}}),
            json!({"owner": {}}),
            vec!["spec.owner.kind: Required value", NOT_CHECKED],
        ),
        (
            "required missing object",
            json!({"type": "object", "required": ["owner"], "properties": {"owner": {"type": "object"}}}),
            json!({}),
            vec!["spec.owner: Required value", NOT_CHECKED],
        ),
        (
            "type string for integer",
            json!({"type": "object", "properties": {"replicas": {"type": "integer"}}}),
            json!({"replicas": "3"}),
            vec![
                "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
                NOT_CHECKED,
            ],
        ),
        (
            "fractional number for integer",
            json!({"type": "object", "properties": {"replicas": {"type": "integer"}}}),
            json!({"replicas": 2.5}),
            vec![
                "spec.replicas: Invalid value: \"number\": spec.replicas in body must be of type integer: \"number\"",
                NOT_CHECKED,
            ],
        ),
        (
            "integral float accepted for integer, integer accepted for number",
            json!({"type": "object", "properties": {"replicas": {"type": "integer"}, "ratio": {"type": "number"}}}),
            json!({"replicas": 2.0, "ratio": 3}),
            vec![],
        ),
        (
            "boolean and object types",
            json!({"type": "object", "properties": {"on": {"type": "boolean"}, "o": {"type": "object"}, "l": {"type": "array"}}}),
            json!({"on": "yes", "o": [], "l": {}}),
            vec![
                "spec.l: Invalid value: \"object\": spec.l in body must be of type array: \"object\"",
                "spec.o: Invalid value: \"array\": spec.o in body must be of type object: \"array\"",
                "spec.on: Invalid value: \"string\": spec.on in body must be of type boolean: \"string\"",
                NOT_CHECKED,
            ],
        ),
        (
            "enum",
            json!({"type": "object", "properties": {"owner": {"type": "object", "properties": {"kind": {"type": "string", "enum": ["User", "ServiceAccount"]}}}}}),
            json!({"owner": {"kind": "Robot"}}),
            vec![
                "spec.owner.kind: Unsupported value: \"Robot\": supported values: \"User\", \"ServiceAccount\"",
                NOT_CHECKED,
            ],
        ),
        (
            "numeric enum",
            json!({"type": "object", "properties": {"n": {"type": "integer", "enum": [1, 2]}}}),
            json!({"n": 3}),
            vec![
                "spec.n: Unsupported value: 3: supported values: \"1\", \"2\"",
                NOT_CHECKED,
            ],
        ),
        (
            "pattern",
            json!({"type": "object", "properties": {"lifetime": {"type": "string", "pattern": "^[0-9]+[smhd]$"}}}),
            json!({"lifetime": "abc"}),
            vec![
                "spec.lifetime: Invalid value: \"abc\": spec.lifetime in body should match '^[0-9]+[smhd]$'",
            ],
        ),
        (
            "maxLength counts characters",
            json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 3}}}),
            json!({"name": "abcd"}),
            vec![
                "spec.name: Too long: may not be more than 3 bytes",
                NOT_CHECKED,
            ],
        ),
        (
            "maxLength with multibyte characters passes",
            json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 3}}}),
            json!({"name": "äöü"}),
            vec![],
        ),
        (
            "minLength stops before pattern",
            json!({"type": "object", "properties": {"name": {"type": "string", "minLength": 2, "pattern": "^z"}}}),
            json!({"name": "a"}),
            vec![
                "spec.name: Invalid value: \"a\": spec.name in body should be at least 2 chars long",
            ],
        ),
        (
            "minimum and maximum",
            json!({"type": "object", "properties": {"a": {"type": "integer", "minimum": 1}, "b": {"type": "number", "maximum": 1.5}}}),
            json!({"a": 0, "b": 2.5}),
            vec![
                "spec.a: Invalid value: 0: spec.a in body should be greater than or equal to 1",
                "spec.b: Invalid value: 2.5: spec.b in body should be less than or equal to 1.5",
            ],
        ),
        (
            "exclusive bounds",
            json!({"type": "object", "properties": {"a": {"type": "integer", "minimum": 1, "exclusiveMinimum": true}, "b": {"type": "integer", "maximum": 10, "exclusiveMaximum": true}}}),
            json!({"a": 1, "b": 10}),
            vec![
                "spec.a: Invalid value: 1: spec.a in body should be greater than 1",
                "spec.b: Invalid value: 10: spec.b in body should be less than 10",
            ],
        ),
        (
            "multipleOf",
            json!({"type": "object", "properties": {"a": {"type": "integer", "multipleOf": 5}}}),
            json!({"a": 12}),
            vec!["spec.a: Invalid value: 12: spec.a in body should be a multiple of 5"],
        ),
        (
            "minItems and maxItems",
            json!({"type": "object", "properties": {"a": {"type": "array", "minItems": 1, "items": {"type": "string"}}, "b": {"type": "array", "maxItems": 2, "items": {"type": "string"}}}}),
            json!({"a": [], "b": ["x", "y", "z"]}),
            vec![
                "spec.a: Invalid value: 0: spec.a in body should have at least 1 items",
                "spec.b: Too many: 3: must have at most 2 items",
                NOT_CHECKED,
            ],
        ),
        (
            "minProperties and maxProperties",
            json!({"type": "object", "properties": {
                "a": {"type": "object", "minProperties": 2, "additionalProperties": {"type": "string"}},
                "b": {"type": "object", "maxProperties": 1, "additionalProperties": {"type": "string"}}}}),
            json!({"a": {"x": "1"}, "b": {"x": "1", "y": "2"}}),
            vec![
                "spec.a: Invalid value: 1: spec.a in body should have at least 2 properties",
                "spec.b: Too many: 2: must have at most 1 item",
                NOT_CHECKED,
            ],
        ),
        (
            "date-time format",
            json!({"type": "object", "properties": {"t": {"type": "string", "format": "date-time"}, "ok": {"type": "string", "format": "date-time"}}}),
            json!({"t": "yesterday", "ok": "2024-02-29T12:00:00.5+01:00"}),
            vec![
                "spec.t: Invalid value: \"yesterday\": spec.t in body must be of type date-time: \"yesterday\"",
                NOT_CHECKED,
            ],
        ),
        (
            "int32 and unknown formats are stripped like the apiserver does",
            json!({"type": "object", "properties": {"n": {"type": "integer", "format": "int32"}, "s": {"type": "string", "format": "made-up"}}}),
            json!({"n": 9_999_999_999_i64, "s": "anything"}),
            vec![],
        ),
        (
            "other formats",
            json!({"type": "object", "properties": {
                "u": {"type": "string", "format": "uuid"}, "ip": {"type": "string", "format": "ipv4"},
                "d": {"type": "string", "format": "date"}, "b": {"type": "string", "format": "byte"}}}),
            json!({"u": "not-a-uuid", "ip": "10.0.0.1", "d": "2023-02-29", "b": "aGVsbG8="}),
            vec![
                "spec.d: Invalid value: \"2023-02-29\": spec.d in body must be of type date: \"2023-02-29\"",
                "spec.u: Invalid value: \"not-a-uuid\": spec.u in body must be of type uuid: \"not-a-uuid\"",
                NOT_CHECKED,
            ],
        ),
        (
            "additionalProperties map values",
            json!({"type": "object", "properties": {"tags": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 2}}}}),
            json!({"tags": {"foo": 1, "bar": "long"}}),
            vec![
                "spec.tags.bar: Too long: may not be more than 2 bytes",
                "spec.tags.foo: Invalid value: \"integer\": spec.tags.foo in body must be of type string: \"integer\"",
                NOT_CHECKED,
            ],
        ),
        (
            "items paths",
            json!({"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}}}),
            json!({"items": [{"name": "a"}, {}]}),
            vec!["spec.items[1].name: Required value", NOT_CHECKED],
        ),
        (
            "int-or-string",
            json!({"type": "object", "properties": {"port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]}}}),
            json!({"port": true}),
            vec![
                "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\"",
                "<nil>: Invalid value: \"\": \"spec.port\" must validate at least one schema (anyOf)",
                "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer: \"boolean\"",
                NOT_CHECKED,
            ],
        ),
        (
            "int-or-string accepts both",
            json!({"type": "object", "properties": {"a": {"x-kubernetes-int-or-string": true}, "b": {"x-kubernetes-int-or-string": true}}}),
            json!({"a": 8080, "b": "http"}),
            vec![],
        ),
        (
            "nullable keeps null, non-nullable null is dropped before required",
            json!({"type": "object", "required": ["b"], "properties": {"a": {"type": "string", "nullable": true}, "b": {"type": "string"}}}),
            json!({"a": null, "b": null}),
            vec!["spec.b: Required value", NOT_CHECKED],
        ),
        (
            "null list item",
            json!({"type": "object", "properties": {"l": {"type": "array", "items": {"type": "string"}}}}),
            json!({"l": ["a", null]}),
            vec![
                "spec.l[1]: Invalid value: \"null\": spec.l[1] in body must be of type string: \"null\"",
                NOT_CHECKED,
            ],
        ),
        (
            "allOf",
            json!({"type": "object", "properties": {"n": {"type": "integer", "allOf": [{"minimum": 1}, {"maximum": 5}]}}}),
            json!({"n": 7}),
            vec![
                "<nil>: Invalid value: \"\": \"spec.n\" must validate all the schemas (allOf)",
                "spec.n: Invalid value: 7: spec.n in body should be less than or equal to 5",
            ],
        ),
        (
            "oneOf none and not",
            json!({"type": "object", "properties": {
                "n": {"type": "integer", "oneOf": [{"minimum": 10}, {"maximum": 0}]},
                "s": {"type": "string", "not": {"enum": ["root"]}}}}),
            json!({"n": 5, "s": "root"}),
            vec![
                "<nil>: Invalid value: \"\": \"spec.n\" must validate one and only one schema (oneOf). Found none valid",
                "spec.n: Invalid value: 5: spec.n in body should be greater than or equal to 10",
                "<nil>: Invalid value: \"\": \"spec.s\" must not validate the schema (not)",
            ],
        ),
        (
            "oneOf several valid",
            json!({"type": "object", "properties": {"n": {"type": "integer", "oneOf": [{"minimum": 1}, {"maximum": 10}]}}}),
            json!({"n": 5}),
            vec![
                "<nil>: Invalid value: \"\": \"spec.n\" must validate one and only one schema (oneOf). Found 2 valid alternatives",
            ],
        ),
        (
            "list-type set duplicates",
            json!({"type": "object", "properties": {"s": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}}),
            json!({"s": ["a", "b", "a", "a"]}),
            vec!["spec.s[2]: Duplicate value: \"a\""],
        ),
        (
            "list-type map duplicates",
            json!({"type": "object", "properties": {"m": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "v": {"type": "integer"}}}}}}),
            json!({"m": [{"name": "x", "v": 1}, {"name": "x", "v": 2}]}),
            vec!["spec.m[1]: Duplicate value: map[string]interface {}{\"name\":\"x\"}"],
        ),
        (
            "embedded resource needs apiVersion and kind",
            json!({"type": "object", "properties": {"template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}}}),
            json!({"template": {"metadata": {"name": "x"}}}),
            vec![
                "spec.template.kind: Required value: must not be empty",
                "spec.template.apiVersion: Required value: must not be empty",
                NOT_CHECKED,
            ],
        ),
    ];
    for (name, schema, spec, want) in cases {
        check(name, schema, spec, &want);
    }
}

#[test]
fn field_error_rendering_and_reasons() {
    let kinds = [
        (FieldErrorKind::Required, "FieldValueRequired"),
        (FieldErrorKind::Invalid, "FieldValueInvalid"),
        (FieldErrorKind::NotSupported, "FieldValueNotSupported"),
        (FieldErrorKind::TooLong, "FieldValueTooLong"),
        (FieldErrorKind::TooMany, "FieldValueTooMany"),
        (FieldErrorKind::TypeInvalid, "FieldValueTypeInvalid"),
        (FieldErrorKind::Forbidden, "FieldValueForbidden"),
        (FieldErrorKind::Duplicate, "FieldValueDuplicate"),
    ];
    for (k, reason) in kinds {
        assert_eq!(k.reason(), reason);
    }
    let e = FieldError::not_supported(
        "spec.owner.kind",
        &json!("Robot"),
        &["User".to_string(), "ServiceAccount".to_string()],
    );
    assert_eq!(
        e.to_string_like_apiserver(),
        "spec.owner.kind: Unsupported value: \"Robot\": supported values: \"User\", \"ServiceAccount\""
    );
    assert_eq!(
        FieldError::invalid("x", &json!("a\"b\n"), "d").to_string(),
        "x: Invalid value: \"a\\\"b\\n\": d"
    );
    assert_eq!(
        FieldError::invalid("x", &json!(0.00001), "d").to_string(),
        "x: Invalid value: 1e-05: d"
    );
    assert_eq!(
        FieldError::invalid("x", &json!(null), "d").to_string(),
        "x: Invalid value: \"null\": d"
    );
    assert_eq!(
        FieldError::duplicate("x[1]", &json!({"b": [1, "s"], "a": true})).to_string(),
        "x[1]: Duplicate value: map[string]interface {}{\"a\":true, \"b\":[]interface {}{1, \"s\"}}"
    );
    assert_eq!(
        FieldError::required("x", "").to_string(),
        "x: Required value"
    );
    assert_eq!(
        FieldError::forbidden("x", "no").to_string(),
        "x: Forbidden: no"
    );
    assert_eq!(
        FieldError::too_many("x", 3, 2).to_string(),
        "x: Too many: 3: must have at most 2 items"
    );
}

#[test]
fn odd_strings_in_formats_do_not_panic() {
    let schema = root(
        json!({"type": "object", "properties": {"t": {"type": "string", "format": "date-time"}}}),
    );
    // (text, whether kube-openapi's IsDateTime takes it)
    for (t, valid) in [
        ("2024-01-01T00:00:00+aé1", false),
        ("2024-01-01Té0:00:00Z", false),
        ("é", false),
        ("2024-01-01T00:00:00é5Z", true),
        ("2024-01-01T00:00:00+0100", false),
        ("2024-01-01T00:00", false),
        ("2024-01-01T00:00:00", false),
        ("2024-01-01 00:00:00Z", false),
        ("2024-01-01T24:00:00Z", false),
        ("2024-02-30T00:00:00Z", false),
        ("2024-01-01T00:00:00Z", true),
        ("2024-01-01t00:00:00.5z", true),
        ("2024-01-01T00:00:00Zt", true),
        ("2024-01-01T00:00:00Ztrailing", true),
        ("2024-01-01T00:00:00.1234567891+99:99", true),
    ] {
        let mut o = obj(json!({"t": t}));
        let got = run(&schema, &mut o, None);
        assert_eq!(got.is_empty(), valid, "{t}: {got:?}");
    }
}

#[test]
fn malformed_schema_is_an_error_not_a_panic() {
    let bad = [
        json!("not a schema"),
        json!({"type": 5}),
        json!({"properties": []}),
        json!({"properties": {"a": {"pattern": "("}}}),
        json!({"required": "a"}),
        json!({"x-kubernetes-validations": [{"message": "no rule"}]}),
        json!({"items": true}),
    ];
    for s in bad {
        let mut o = json!({"a": "x"});
        let errs = validate_and_prune(&s, &mut o, None).expect_err("malformed schema accepted");
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].message.starts_with("invalid CRD schema: "),
            "{}",
            errs[0].message
        );
    }
}
