//! Bad protobuf bodies handed to `protobuf::decode` directly: each error worded as the
//! apiserver words it.

use super::*;

#[test]
fn bad_bodies_are_worded_as_the_apiserver_words_them() {
    let ns = expect("v1", "Namespace");
    let broken_raw = {
        let unknown = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some("v1".into()),
                kind: Some("Namespace".into()),
            }),
            raw: Some(vec![0x0a, 0x05, 0x01]), // metadata says 5 bytes, has 1
            ..Default::default()
        };
        [b"k8s\0".to_vec(), unknown.encode_to_vec()].concat()
    };
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "JSON sent as protobuf",
            br#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x"}}"#.to_vec(),
            400,
            r#"the object provided is unrecognized (must be of type Namespace): provided data does not appear to be a protobuf message, expected prefix [107 56 115 0] ({"apiVersion":"v1","kind":"Nam ...)"#,
        ),
        (
            "empty",
            vec![],
            400,
            "the object provided is unrecognized (must be of type Namespace): empty data (<empty>)",
        ),
        (
            "prefix only",
            b"k8s\0".to_vec(),
            400,
            "the object provided is unrecognized (must be of type Namespace): empty body (6b387300)",
        ),
        (
            "broken message",
            broken_raw,
            400,
            "Namespace in version \"v1\" cannot be handled as a Namespace: ",
        ),
        (
            "a kind the emulator does not decode",
            envelope("v1", "Event", &core::Event::default()),
            415,
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (the emulator does not decode application/vnd.kubernetes.protobuf bodies of kind Event in v1)",
        ),
    ];
    for (what, body, code, message) in cases {
        let err = decode(&body, ns).expect_err(what);
        assert_eq!(err.code(), code, "{what}");
        assert!(err.to_string().starts_with(message), "{what}: {err}");
    }
    // An envelope without apiVersion and kind takes the endpoint's.
    let bare = [
        b"k8s\0".to_vec(),
        Unknown {
            raw: Some(
                core::Namespace {
                    metadata: Some(go_meta("bare")),
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            ..Default::default()
        }
        .encode_to_vec(),
    ]
    .concat();
    let got = decode(&bare, ns).expect("defaults from the endpoint");
    assert_eq!(
        (&got["apiVersion"], &got["kind"]),
        (&json!("v1"), &json!("Namespace"))
    );
}
