//! The operator's own custom-resource writes against the upstream server: `install_crds`
//! (server-side apply, twice), the status apply of both reconcilers with our field manager and
//! the read resourceVersion as precondition, `rotate` and `rotate --wait`, the verifier's
//! `lastUsedAt` patch, and the refusal of times no Rust client can decode.

use apikey_operator::api::{ApiKey, ApiKeyStatus, ApiToken, ROTATE_ANNOTATION};
use apikey_operator::cli::CliError;
use apikey_operator::controller::FIELD_MANAGER;
use apikey_operator::controller::token_state::{self, IssueKind};
use apikey_operator::token::hash_value;
use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::support::upstream::Upstream;
use crate::support::upstream::differential::{DEADLINE, NS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_status_apply_and_rotation_request_work_upstream() {
    let Some(up) =
        Upstream::start("operator_status_apply_and_rotation_request_work_upstream").await
    else {
        return;
    };
    let client = up.client.clone();
    // install_crds: server-side apply of both CRDs with our field manager, wait for Established.
    apikey_operator::cli::install_crds(client.clone(), DEADLINE)
        .await
        .expect("install_crds against upstream");
    // Applying again is a no-op, as when the operator restarts.
    apikey_operator::cli::install_crds(client.clone(), DEADLINE)
        .await
        .expect("install_crds again");

    let keys: Api<ApiKey> = Api::namespaced(client.clone(), NS);
    let tokens: Api<ApiToken> = Api::namespaced(client.clone(), NS);
    let key: ApiKey = serde_json::from_value(json!({
        "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiKey", "metadata": {"name": "k1"},
        "spec": {"owner": {"kind": "User", "name": "alice"}}
    }))
    .expect("ApiKey");
    let key = keys
        .create(&PostParams::default(), &key)
        .await
        .expect("key");
    // The status write exactly as the key reconciler makes it: apply on /status, our manager,
    // force, and the read resourceVersion as a precondition.
    let status = ApiKeyStatus {
        principal: Some("alice".into()),
        tokens: Some(0),
        ready_tokens: Some(0),
        expired_tokens: Some(0),
        observed_generation: key.metadata.generation,
        ..Default::default()
    };
    let body = json!({
        "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiKey",
        "metadata": {"name": "k1", "resourceVersion": key.resource_version()},
        "status": status,
    });
    let written = keys
        .patch_status(
            "k1",
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .expect("status apply");
    assert_eq!(
        written.status.as_ref().and_then(|s| s.principal.as_deref()),
        Some("alice")
    );
    assert_eq!(
        written.metadata.generation, key.metadata.generation,
        "status writes keep generation"
    );
    let managers: Vec<(String, Option<String>)> = written
        .managed_fields()
        .iter()
        .map(|m| (m.manager.clone().unwrap_or_default(), m.subresource.clone()))
        .collect();
    assert!(
        managers.contains(&(FIELD_MANAGER.to_owned(), Some("status".to_owned()))),
        "{managers:?}"
    );
    // The same write with the old resourceVersion is a conflict (the reconciler then re-reads).
    let stale = keys
        .patch_status(
            "k1",
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .expect_err("stale resourceVersion");
    assert!(
        matches!(&stale, kube::Error::Api(s) if s.code == 409),
        "{stale}"
    );

    // A rotation request: `apikey-operator rotate` sets the annotation by merge patch.
    let token: ApiToken = serde_json::from_value(json!({
        "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken", "metadata": {"name": "t1"},
        "spec": {"apiKeyRef": {"name": "k1"}}
    }))
    .expect("ApiToken");
    tokens
        .create(&PostParams::default(), &token)
        .await
        .expect("token");
    apikey_operator::cli::rotate(client.clone(), NS, "t1", "r1", None)
        .await
        .expect("rotate annotation");
    let token = tokens.get("t1").await.expect("token");
    assert_eq!(
        token
            .annotations()
            .get(ROTATE_ANNOTATION)
            .map(String::as_str),
        Some("r1")
    );
    assert_eq!(token_state::rotation_request(&token), Some("r1"));
    assert_eq!(
        token.metadata.generation,
        Some(1),
        "annotations do not bump generation"
    );

    // The controller records the request in status.pending, then promotes it.
    let hash = hash_value("fidelity-test-value");
    let pending = token_state::pending(
        &token.status.clone().unwrap_or_default(),
        &token,
        IssueKind::Initial,
        &hash,
        "tid",
        Timestamp::now(),
    );
    let apply_status = |status: &apikey_operator::api::ApiTokenStatus, rv: Option<String>| {
        json!({"apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken",
               "metadata": {"name": "t1", "resourceVersion": rv}, "status": status})
    };
    let written = tokens
        .patch_status(
            "t1",
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(apply_status(&pending, token.resource_version())),
        )
        .await
        .expect("pending status");
    let recorded = written.status.clone().unwrap_or_default();
    assert_eq!(
        recorded
            .pending
            .as_ref()
            .and_then(|p| p.rotation_request.as_deref()),
        Some("r1")
    );
    let mut done = token_state::promoted(&recorded, hash.as_str(), "tid");
    done.pending = None;
    // The Secret the value went to, as the controller records it with every issue.
    done.secret_name = Some("t1".into());
    done.last_rotation_request = Some(Box::new("r1".into()));
    tokens
        .patch_status(
            "t1",
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(apply_status(&done, written.resource_version())),
        )
        .await
        .expect("promoted status");
    // `rotate --wait` sees it recorded, and refuses to send the same request again.
    let token = tokens.get("t1").await.expect("token");
    assert!(
        matches!(
            apikey_operator::cli::requests::rotated(&token, "r1", Timestamp::now()),
            Some(Ok(_))
        ),
        "rotate --wait sees the request recorded"
    );
    let again = apikey_operator::cli::rotate(client.clone(), NS, "t1", "r1", None).await;
    assert!(
        matches!(again, Err(CliError::RequestRepeated { .. })),
        "{again:?}"
    );
    let status = token.status.clone().expect("status");
    assert!(status.pending.is_none(), "pending cleared by the apply");
    assert_eq!(status.hash.as_deref(), Some(hash.as_str()));

    // The verifier's lastUsedAt write: applied for this token's uid, refused
    // (422) for another's, as for a token deleted and created again.
    let usage = |uid: &str| apikey_operator::verifier::last_used::Usage {
        namespace: NS.into(),
        name: "t1".into(),
        uid: uid.to_owned(),
        at: "2026-06-01T12:00:00Z".parse().expect("time"),
    };
    let params = PatchParams {
        field_manager: Some(apikey_operator::verifier::last_used::FIELD_MANAGER.to_owned()),
        ..Default::default()
    };
    let own = apikey_operator::verifier::last_used::usage_patch(&usage(
        token.uid().as_deref().expect("uid"),
    ));
    let used = tokens
        .patch_status("t1", &params, &Patch::<()>::Json(own))
        .await
        .expect("lastUsedAt for this token");
    assert_eq!(
        used.status.and_then(|s| s.last_used_at).map(|t| t.0),
        Some("2026-06-01T12:00:00Z".parse().expect("time"))
    );
    let other = apikey_operator::verifier::last_used::usage_patch(&usage("another-uid"));
    match tokens
        .patch_status("t1", &params, &Patch::<()>::Json(other))
        .await
    {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 422, "{e:?}"),
        other => panic!("a patch for another uid must be refused: {other:?}"),
    }

    // A status time in the year 9999, or with text after it, which Go takes
    // and the Rust clients cannot decode, is refused upstream too
    // (manifests/crds.rs checks every field), and so is such a spec time.
    for bad in ["9999-12-31T23:59:59Z", "2030-01-01T00:00:00Zt"] {
        let far = Patch::Merge(json!({"status": {"lastUsedAt": bad}}));
        match tokens
            .patch_status("t1", &PatchParams::default(), &far)
            .await
        {
            Err(kube::Error::Api(e)) => assert!(
                e.code == 422 && e.message.contains("status.lastUsedAt"),
                "{e:?}"
            ),
            other => panic!("{bad} was not refused upstream: {other:?}"),
        }
        let spec = Patch::Merge(json!({"spec": {"expiration": {"expiresAt": bad}}}));
        match tokens.patch("t1", &PatchParams::default(), &spec).await {
            Err(kube::Error::Api(e)) => assert!(
                e.code == 422 && e.message.contains("spec.expiration.expiresAt"),
                "{e:?}"
            ),
            other => panic!("{bad} in spec was not refused upstream: {other:?}"),
        }
    }
}
