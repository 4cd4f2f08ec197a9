//! TokenReview audiences as the Kubernetes API defines them, and forward-auth
//! routes that require an audience: the pure rules as tables, then the
//! endpoints through the router.

use std::sync::{Arc, RwLock};

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use jiff::Timestamp;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::token::TokenValue;
use crate::verifier::index::Index;
use crate::verifier::index::tests::{ID, issued, ready_key, token_json, value};
use crate::verifier::watch::Kind;

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// (requested, the token's audiences, granted or `None`: not authenticated)
type ReviewCase = (
    &'static [&'static str],
    &'static [&'static str],
    Option<&'static [&'static str]>,
);

#[test]
fn review_audiences_are_the_intersection() {
    let cases: [ReviewCase; 7] = [
        // asked for none: the token's own audiences
        (&[], &["api"], Some(&["api"])),
        (&[], &[], Some(&[])),
        // asked for some: only those the token is also valid for
        (&["api", "vault"], &["vault", "db"], Some(&["vault"])),
        (&["api"], &["api"], Some(&["api"])),
        // none in common, or a token valid for none: not authenticated
        (&["anything"], &["api"], None),
        (&["anything"], &[], None),
        (&["a", "b"], &["c"], None),
    ];
    for (requested, valid_for, expected) in cases {
        assert_eq!(
            review_audiences(&strings(requested), valid_for),
            expected.map(strings),
            "{requested:?} against {valid_for:?}"
        );
    }
}

#[test]
fn a_route_admits_tokens_of_its_audience() {
    let cases: [(&[&str], &[&str], bool); 6] = [
        (&[], &[], true),
        (&["api"], &["api", "db"], true),
        (&["api"], &["db"], false),
        (&["api"], &[], false),
        // Several (gateway and client): all are required, so a client can only narrow.
        (&["api", "db"], &["api", "db"], true),
        (&["api", "db"], &["api"], false),
    ];
    for (required, valid_for, admits) in cases {
        assert_eq!(
            route_admits(&strings(required), valid_for),
            admits,
            "{required:?}"
        );
    }
}

struct FixedClock(Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

/// A token valid for `token_audiences` (none: the verifier's defaults, `defaults`).
fn verifier_state(token_audiences: &[&str], defaults: &[&str]) -> (Arc<AppState>, TokenValue) {
    let v = value(ID);
    let mut token = token_json("tok", false, issued(&v));
    token.spec.audiences = strings(token_audiences);
    let mut index = Index::new();
    index.upsert_key(&ready_key());
    index.upsert_token(&token);
    let readiness = Arc::new(Readiness::default());
    readiness.mark(Kind::Token);
    readiness.mark(Kind::Key);
    let state = Arc::new(AppState {
        index: Arc::new(RwLock::new(index)),
        readiness,
        clock: Arc::new(FixedClock("2026-06-01T12:00:30Z".parse().expect("time"))),
        metrics: Arc::new(Metrics::new()),
        usage: Arc::new(UsageRecorder::default()),
        extra_groups: Vec::new(),
        headers: HeaderNames::default(),
        audiences: strings(defaults),
    });
    (state, v)
}

async fn review(state: &Arc<AppState>, token: &TokenValue, audiences: &[&str]) -> Value {
    let mut spec = json!({ "token": token.expose_secret() });
    if !audiences.is_empty() {
        spec["audiences"] = json!(audiences);
    }
    let body =
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec});
    let request = Request::post(TOKEN_REVIEW_PATH)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let response = router(state.clone())
        .oneshot(request)
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let body = to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    serde_json::from_slice(&body).expect("json")
}

#[tokio::test]
async fn an_unlisted_audience_is_not_echoed_as_granted() {
    for (token_audiences, defaults) in [(&["api"][..], &[][..]), (&[], &["api"])] {
        let (state, v) = verifier_state(token_audiences, defaults);
        let body = review(&state, &v, &["anything"]).await;
        assert_eq!(body["status"]["authenticated"], false, "{body}");
        assert!(body["status"].get("audiences").is_none(), "{body}");
        assert!(body["status"].get("user").is_none(), "{body}");
        let error = body["status"]["error"].as_str().expect("error");
        assert!(error.contains("audiences"), "{error}");
    }
}

#[tokio::test]
async fn a_review_gets_the_intersection_or_the_tokens_audiences() {
    let (state, v) = verifier_state(&["api", "vault"], &["default"]);
    let body = review(&state, &v, &["vault", "other"]).await;
    assert_eq!(body["status"]["authenticated"], true, "{body}");
    assert_eq!(body["status"]["audiences"], json!(["vault"]));
    let body = review(&state, &v, &[]).await;
    assert_eq!(body["status"]["authenticated"], true, "{body}");
    assert_eq!(body["status"]["audiences"], json!(["api", "vault"]));

    // A token listing none gets the verifier's defaults.
    let (state, v) = verifier_state(&[], &["https://kubernetes.default.svc.cluster.local"]);
    let body = review(&state, &v, &[]).await;
    assert_eq!(
        body["status"]["audiences"],
        json!(["https://kubernetes.default.svc.cluster.local"])
    );
}

async fn auth(state: &Arc<AppState>, uri: &str, token: &TokenValue) -> StatusCode {
    let request = Request::get(uri)
        .header("authorization", format!("Bearer {}", token.expose_secret()))
        .body(Body::empty())
        .expect("request");
    router(state.clone())
        .oneshot(request)
        .await
        .expect("infallible")
        .status()
}

#[tokio::test]
async fn forward_auth_routes_require_their_audience() {
    let (state, v) = verifier_state(&["api", "a b"], &[]);
    let cases = [
        ("/auth", StatusCode::OK),
        ("/auth?audience=api", StatusCode::OK),
        ("/auth?audience=a%20b", StatusCode::OK),
        ("/auth/some/path?audience=api", StatusCode::OK),
        ("/auth?audience=billing", StatusCode::FORBIDDEN),
        ("/auth/some/path?audience=billing", StatusCode::FORBIDDEN),
        ("/auth?audience=api&audience=billing", StatusCode::FORBIDDEN),
    ];
    for (uri, status) in cases {
        assert_eq!(auth(&state, uri, &v).await, status, "{uri}");
    }
    // The header (as a gateway sets it) is required too, beside the query:
    // one more value, from a client, never lifts the route's requirement.
    let cases = [
        ("/auth", &["api"][..], StatusCode::OK),
        ("/auth", &["billing"], StatusCode::FORBIDDEN),
        ("/auth?audience=billing", &["api"], StatusCode::FORBIDDEN),
        ("/auth?audience=api", &["billing"], StatusCode::FORBIDDEN),
        ("/auth", &["api", "billing"], StatusCode::FORBIDDEN),
    ];
    for (uri, headers, status) in cases {
        let mut request =
            Request::get(uri).header("authorization", format!("Bearer {}", v.expose_secret()));
        for h in headers {
            request = request.header("x-auth-audience", *h);
        }
        let request = request.body(Body::empty()).expect("request");
        let response = router(state.clone()).oneshot(request).await.expect("ok");
        assert_eq!(response.status(), status, "{uri} {headers:?}");
    }
}
