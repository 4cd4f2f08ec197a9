//! Authentication as kube-apiserver does it: static bearer tokens, 401 for tokens nobody
//! issued, anonymous requests as `system:anonymous`, and TokenRequest tokens that act as
//! their ServiceAccount (audiences and expiration honoured) until it is deleted or recreated.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kube_emulator::{Anonymous, EmulatorConfig};
use serde_json::{Value, json};

use crate::users::*;

fn whoami_body() -> Value {
    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
}

const WHOAMI: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
const SA_PATH: &str = "/api/v1/namespaces/default/serviceaccounts";

async fn whoami(client: &kube::Client) -> (u16, Value) {
    let (code, body) = send(client, "POST", WHOAMI, Some(whoami_body())).await;
    (code, body["status"]["userInfo"].clone())
}

#[tokio::test]
async fn static_tokens_authenticate_their_users() {
    let (emu, admin) = start_with_users().await;
    let (code, alice) = whoami(&client_as(&emu, ALICE)).await;
    assert_eq!(code, 201);
    assert_eq!(
        alice,
        json!({"username": "alice", "groups": ["team-a", "system:authenticated"]})
    );
    let (_, me) = whoami(&admin).await;
    assert_eq!(me["username"], "system:admin");
    assert!(
        me["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("system:masters"))
    );
}

#[tokio::test]
async fn unknown_tokens_are_401_with_the_upstream_body() {
    let (emu, _admin) = start_with_users().await;
    let stranger = client_as(&emu, "nobody-issued-this");
    for (method, path) in [
        ("GET", "/api/v1/namespaces/default/secrets"),
        ("GET", "/version"),
    ] {
        let (code, body) = send(&stranger, method, path, None).await;
        assert_eq!(code, 401, "{path}");
        assert_eq!(
            body,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
        );
    }
}

#[tokio::test]
async fn anonymous_requests_get_only_the_public_info() {
    let (emu, _admin) = start_with_users().await;
    let anon = anonymous_client(&emu);
    assert_eq!(send(&anon, "GET", "/version", None).await.0, 200);
    assert_eq!(send(&anon, "GET", "/healthz", None).await.0, 200);
    let (code, body) = send(&anon, "GET", "/api", None).await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "forbidden: User \"system:anonymous\" cannot get path \"/api\""
    );
    let (code, body) = send(&anon, "GET", "/api/v1/namespaces/default/secrets", None).await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "secrets is forbidden: User \"system:anonymous\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\""
    );
}

#[tokio::test]
async fn anonymous_requests_are_401_when_disabled() {
    let (emu, _admin) = crate::support::start_with(EmulatorConfig {
        anonymous: Anonymous::Disabled,
        ..crate::support::quick_config()
    })
    .await;
    let (code, body) = send(&anonymous_client(&emu), "GET", "/version", None).await;
    assert_eq!((code, body["reason"].as_str()), (401, Some("Unauthorized")));
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
        .expect("JSON claims")
}

async fn request_token(admin: &kube::Client, sa: &str, spec: Value) -> (u16, Value) {
    send(
        admin,
        "POST",
        &format!("{SA_PATH}/{sa}/token"),
        Some(
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}),
        ),
    )
    .await
}

#[tokio::test]
async fn token_request_tokens_act_as_the_service_account_until_it_is_gone() {
    let (emu, admin) = start_with_users().await;
    let sa = admin_create(&admin, SA_PATH, json!({"metadata": {"name": "robot"}})).await;
    let uid = sa["metadata"]["uid"].as_str().unwrap().to_owned();
    let (code, answer) = request_token(&admin, "robot", json!({"expirationSeconds": 600})).await;
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["kind"], "TokenRequest");
    let token = answer["status"]["token"].as_str().unwrap().to_owned();
    let c = claims(&token);
    assert_eq!(c["sub"], "system:serviceaccount:default:robot");
    assert_eq!(c["kubernetes.io"]["serviceaccount"]["uid"], uid.as_str());
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 600);
    let expires = jiff::Timestamp::from_second(c["exp"].as_i64().unwrap()).unwrap();
    assert_eq!(
        answer["status"]["expirationTimestamp"],
        expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    );

    let robot = client_as(&emu, &token);
    let (code, me) = whoami(&robot).await;
    assert_eq!(code, 201);
    assert_eq!(me["username"], "system:serviceaccount:default:robot");
    assert_eq!(me["uid"], uid.as_str());
    assert_eq!(
        me["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ])
    );

    // Deleted, then recreated under the same name: the token was bound to the old uid.
    assert_eq!(
        send(&admin, "DELETE", &format!("{SA_PATH}/robot"), None)
            .await
            .0,
        200
    );
    assert_eq!(whoami(&robot).await.0, 401);
    admin_create(&admin, SA_PATH, json!({"metadata": {"name": "robot"}})).await;
    assert_eq!(whoami(&robot).await.0, 401);
}

#[tokio::test]
async fn token_requests_honour_audiences_and_limits() {
    let (emu, admin) = start_with_users().await;
    admin_create(&admin, SA_PATH, json!({"metadata": {"name": "robot"}})).await;

    // Default: an hour, for the API server's own audience.
    let (_, answer) = request_token(&admin, "robot", json!({})).await;
    assert_eq!(answer["spec"]["expirationSeconds"], 3600);
    let c = claims(answer["status"]["token"].as_str().unwrap());
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3600
    );

    // A token for another audience is not accepted by the API server, but TokenReview
    // confirms it for that audience.
    let (_, answer) = request_token(&admin, "robot", json!({"audiences": ["vault"]})).await;
    let vault_token = answer["status"]["token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&vault_token)["aud"], json!(["vault"]));
    assert_eq!(whoami(&client_as(&emu, &vault_token)).await.0, 401);
    let (code, review) = send(
        &admin,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        Some(
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                    "spec": {"token": vault_token, "audiences": ["vault"]}}),
        ),
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(review["status"]["authenticated"], true);
    assert_eq!(review["status"]["audiences"], json!(["vault"]));
    assert_eq!(
        review["status"]["user"]["username"],
        "system:serviceaccount:default:robot"
    );

    let (code, err) = request_token(&admin, "robot", json!({"expirationSeconds": 60})).await;
    assert_eq!(code, 422);
    assert_eq!(
        err["message"],
        "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
    );
    let (code, err) = request_token(&admin, "ghost", json!({})).await;
    assert_eq!(
        (code, err["message"].as_str()),
        (404, Some("serviceaccounts \"ghost\" not found"))
    );
}
