//! Protobuf bodies over HTTP: a typed client's update and delete bodies, and the status
//! codes and messages bad bodies get.

use super::*;

/// Sends `body` as protobuf with kubectl's Accept; the JSON answer or (code, reason, message).
async fn send_protobuf(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<Value, (u16, String, String)> {
    let req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/vnd.kubernetes.protobuf")
        .header(
            "accept",
            "application/vnd.kubernetes.protobuf,application/json",
        )
        .body(body)
        .expect("request builds");
    match client.request::<Value>(req).await {
        Ok(v) => Ok(v),
        Err(kube::Error::Api(s)) => Err((s.code, s.reason.clone(), s.message.clone())),
        Err(other) => panic!("expected an answer from the emulator, got {other:?}"),
    }
}

async fn post_protobuf(client: &kube::Client, path: &str, body: Vec<u8>) -> (u16, String, String) {
    send_protobuf(client, "POST", path, body)
        .await
        .expect_err("the body is refused")
}

#[tokio::test]
async fn typed_client_update_and_delete_bodies() {
    let (_emu, client) = start().await;
    let path = "/api/v1/namespaces/default/configmaps";
    let cm = |mode: &str| core::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            namespace: Some("default".into()),
            ..go_meta("settings")
        }),
        data: labels(&[("mode", mode)]),
        ..Default::default()
    };
    let created = send_protobuf(
        &client,
        "POST",
        path,
        envelope("v1", "ConfigMap", &cm("fast")),
    )
    .await
    .expect("created");
    assert_eq!(created["data"], json!({"mode": "fast"}));
    let one = format!("{path}/settings");
    let updated = send_protobuf(
        &client,
        "PUT",
        &one,
        envelope("v1", "ConfigMap", &cm("slow")),
    )
    .await
    .expect("updated");
    assert_eq!(updated["data"], json!({"mode": "slow"}));

    // A typed delete's DeleteOptions body is honoured: dryRun keeps the object, a uid
    // precondition that does not match is a conflict.
    let dry_run = meta::DeleteOptions {
        dry_run: vec!["All".into()],
        ..Default::default()
    };
    send_protobuf(
        &client,
        "DELETE",
        &one,
        envelope("v1", "DeleteOptions", &dry_run),
    )
    .await
    .expect("dry-run delete");
    let wrong_uid = meta::DeleteOptions {
        preconditions: Some(meta::Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    let (code, _, _) = send_protobuf(
        &client,
        "DELETE",
        &one,
        envelope("v1", "DeleteOptions", &wrong_uid),
    )
    .await
    .expect_err("precondition fails");
    assert_eq!(code, 409);
    send_protobuf(
        &client,
        "DELETE",
        &one,
        envelope("v1", "DeleteOptions", &meta::DeleteOptions::default()),
    )
    .await
    .expect("deleted");

    // Answers are JSON whenever Accept allows it; protobuf alone is a 406.
    let get = |accept: &str| {
        axum::http::Request::get("/api/v1/namespaces/default")
            .header("accept", accept)
            .body(Vec::new())
            .expect("request builds")
    };
    let ns: Value = client
        .request(get("application/vnd.kubernetes.protobuf,application/json"))
        .await
        .expect("JSON answer");
    assert_eq!(ns["metadata"]["name"], "default");
    match client
        .request::<Value>(get("application/vnd.kubernetes.protobuf"))
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (406, "NotAcceptable")),
        other => panic!("expected 406, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_protobuf_bodies_over_http() {
    let (_emu, client) = start().await;
    install_crd(&client, WIDGET_CRD).await;
    // Garbage in a protobuf body: 400 naming the kind, as kube-apiserver answers.
    let (code, reason, message) =
        post_protobuf(&client, "/api/v1/namespaces", b"\x01\x02garbage".to_vec()).await;
    assert_eq!((code, reason.as_str()), (400, "BadRequest"));
    assert!(
        message.starts_with("the object provided is unrecognized (must be of type Namespace)"),
        "{message}"
    );
    // A built-in kind the emulator has no decoder for: 415 naming media type and kind.
    let event = envelope("v1", "Event", &core::Event::default());
    let (code, reason, message) =
        post_protobuf(&client, "/api/v1/namespaces/default/events", event).await;
    assert_eq!((code, reason.as_str()), (415, "UnsupportedMediaType"));
    assert!(
        message.contains("application/vnd.kubernetes.protobuf") && message.contains("Event"),
        "{message}"
    );
    // A pod-template field the emulator does not convert: 415 naming the field.
    let with_volume = deployment(|p| p.volumes = vec![core::Volume::default()]);
    let (code, _, message) = post_protobuf(
        &client,
        "/apis/apps/v1/namespaces/default/deployments",
        envelope("apps/v1", "Deployment", &with_volume),
    )
    .await;
    assert_eq!(code, 415);
    assert!(message.contains("spec.template.spec.volumes"), "{message}");
    // Custom resources have no protobuf form: 400, as upstream.
    let (code, _, message) = post_protobuf(
        &client,
        "/apis/test.apikeys.dev/v1/namespaces/default/widgets",
        envelope("test.apikeys.dev/v1", "Widget", &core::ConfigMap::default()),
    )
    .await;
    assert_eq!(code, 400);
    assert!(
        message.starts_with("Widget in version \"v1\" cannot be handled as a Widget: object *unstructured.Unstructured does not implement the protobuf marshalling interface"),
        "{message}"
    );
}
