//! The verifier's HTTP endpoints: TokenReview (Kubernetes webhook token
//! authenticator), forward-auth for gateways, health and metrics. Handlers
//! read the index and never block on the API server.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use k8s_openapi::api::authentication::v1::{TokenReviewStatus, UserInfo};
use serde::Deserialize;
use serde_json::json;

use super::index::{IdentityRef, Reject};
use super::last_used::UsageRecorder;
use super::metrics::{self, Metrics};
use super::watch::{Readiness, SharedIndex};
use crate::api::OwnerKind;
use crate::clock::Clock;

/// Path of the TokenReview endpoint.
pub const TOKEN_REVIEW_PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
/// Largest request body read (a TokenReview is well under 1 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// A request, including reading its body, must complete within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Realm in `WWW-Authenticate` challenges.
pub const REALM: &str = "apikey-operator";

/// `user.extra` keys of an authenticated TokenReview.
pub const EXTRA_API_KEY: &str = "apikeys.dev/apikey";
pub const EXTRA_API_TOKEN: &str = "apikeys.dev/apitoken";
pub const EXTRA_NAMESPACE: &str = "apikeys.dev/namespace";

/// Names of the identity headers of a forward-auth answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderNames {
    pub user: HeaderName,
    pub uid: HeaderName,
    pub groups: HeaderName,
    pub namespace: HeaderName,
    pub api_key: HeaderName,
    pub api_token: HeaderName,
}

impl Default for HeaderNames {
    fn default() -> Self {
        HeaderNames {
            user: HeaderName::from_static("x-auth-user"),
            uid: HeaderName::from_static("x-auth-uid"),
            groups: HeaderName::from_static("x-auth-groups"),
            namespace: HeaderName::from_static("x-auth-namespace"),
            api_key: HeaderName::from_static("x-auth-apikey"),
            api_token: HeaderName::from_static("x-auth-apitoken"),
        }
    }
}

/// A `--verify-header` setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderNameError {
    #[error(
        "--verify-header {0:?} is not FIELD=HEADER; use e.g. user=X-Forwarded-User \
         (fields: user, uid, groups, namespace, apikey, apitoken)"
    )]
    Syntax(String),
    #[error(
        "--verify-header: unknown field {0:?}; fields are user, uid, groups, namespace, apikey, apitoken"
    )]
    UnknownField(String),
    #[error("--verify-header: {0:?} is not a valid HTTP header name")]
    InvalidName(String),
    #[error(
        "--verify-header {field}={name}: {name} means something else in HTTP or is set by the \
         verifier's answer itself; give {field} a header of its own, e.g. X-Forwarded-User"
    )]
    Reserved { field: &'static str, name: String },
    #[error(
        "--verify-header: {first} and {second} would both be sent as {name}; give each field a \
         header of its own"
    )]
    Shared {
        first: &'static str,
        second: &'static str,
        name: String,
    },
}

/// Header names an identity header may not take: the ones the answer sets
/// itself (a user name in `Cache-Control` would drop `no-store`), HTTP's own,
/// and the token's (a gateway passes identity headers on to the upstream).
const RESERVED: [HeaderName; 13] = [
    CONTENT_TYPE,
    CACHE_CONTROL,
    WWW_AUTHENTICATE,
    axum::http::header::CONTENT_LENGTH,
    axum::http::header::TRANSFER_ENCODING,
    axum::http::header::CONNECTION,
    axum::http::header::UPGRADE,
    axum::http::header::TE,
    axum::http::header::TRAILER,
    axum::http::header::DATE,
    axum::http::header::SET_COOKIE,
    AUTHORIZATION,
    X_API_KEY,
];

impl HeaderNames {
    /// The defaults with `FIELD=HEADER` settings applied in order; refused
    /// when a field would take a reserved name or share one with another.
    pub fn from_settings(settings: &[String]) -> Result<HeaderNames, HeaderNameError> {
        let mut names = HeaderNames::default();
        for setting in settings {
            names.set(setting)?;
        }
        names.check()?;
        Ok(names)
    }

    fn fields(&self) -> [(&'static str, &HeaderName); 6] {
        [
            ("user", &self.user),
            ("uid", &self.uid),
            ("groups", &self.groups),
            ("namespace", &self.namespace),
            ("apikey", &self.api_key),
            ("apitoken", &self.api_token),
        ]
    }

    /// Every field has a header of its own, none of them reserved.
    pub fn check(&self) -> Result<(), HeaderNameError> {
        let fields = self.fields();
        for (i, (field, name)) in fields.iter().enumerate() {
            if RESERVED.contains(name) {
                return Err(HeaderNameError::Reserved {
                    field,
                    name: name.to_string(),
                });
            }
            if let Some((second, _)) = fields[i + 1..].iter().find(|(_, other)| other == name) {
                return Err(HeaderNameError::Shared {
                    first: field,
                    second,
                    name: name.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Applies one `FIELD=HEADER` setting, e.g. `user=X-Forwarded-User`.
    pub fn set(&mut self, setting: &str) -> Result<(), HeaderNameError> {
        let (field, name) = setting
            .split_once('=')
            .ok_or_else(|| HeaderNameError::Syntax(setting.to_owned()))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| HeaderNameError::InvalidName(name.to_owned()))?;
        let slot = match field.trim().to_ascii_lowercase().as_str() {
            "user" => &mut self.user,
            "uid" => &mut self.uid,
            "groups" => &mut self.groups,
            "namespace" => &mut self.namespace,
            "apikey" => &mut self.api_key,
            "apitoken" => &mut self.api_token,
            _ => return Err(HeaderNameError::UnknownField(field.to_owned())),
        };
        *slot = name;
        Ok(())
    }
}

/// What the handlers share.
pub struct AppState {
    pub index: SharedIndex,
    pub readiness: Arc<Readiness>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub usage: Arc<UsageRecorder>,
    /// Added to the groups of every authenticated identity.
    pub extra_groups: Vec<String>,
    pub headers: HeaderNames,
    /// The audiences of tokens that list none, nor their key (`--audience`).
    pub audiences: Vec<String>,
}

/// All endpoints, with the body limit and request timeout applied.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(TOKEN_REVIEW_PATH, post(token_review))
        // Envoy's ext_authz appends the original path to the service's path.
        .route("/auth", any(forward_auth))
        .route("/auth/{*path}", any(forward_auth))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(with_timeout))
        .with_state(state)
}

async fn with_timeout(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            "the request was not completed within 10 seconds\n",
        )
            .into_response(),
    }
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.readiness.ready() {
        "ok\n".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the ApiToken and ApiKey watches have not synced yet\n",
        )
            .into_response()
    }
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

impl AppState {
    /// The audiences a verified token is valid for: its own, else its key's
    /// defaults, else the verifier's `--audience` flags.
    fn audiences_of<'a>(&'a self, identity: &IdentityRef<'a>) -> Vec<&'a str> {
        if identity.audiences.is_empty() {
            self.audiences.iter().map(String::as_str).collect()
        } else {
            identity.audiences.iter().collect()
        }
    }

    /// Verifies `presented` now and hands the verdict to `answer`, which
    /// builds the reply from names borrowed under the index's read lock.
    fn verify<R>(
        &self,
        presented: &str,
        answer: impl FnOnce(Result<IdentityRef<'_>, Reject>) -> R,
    ) -> R {
        let now = self.clock.now();
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let verdict = index.verify_noting_use(presented, now);
        if let Ok((identity, true)) = &verdict {
            self.usage.record(*identity, now);
        }
        answer(verdict.map(|(identity, _)| identity))
    }

    /// The identity's groups, without duplicates; borrowed where they can be.
    fn groups(&self, identity: &IdentityRef<'_>) -> Vec<Cow<'_, str>> {
        let mut groups: Vec<Cow<'_, str>> = Vec::with_capacity(3 + self.extra_groups.len());
        if identity.owner_kind == OwnerKind::ServiceAccount {
            groups.push("system:serviceaccounts".into());
            groups.push(format!("system:serviceaccounts:{}", identity.namespace).into());
        }
        groups.push("system:authenticated".into());
        for extra in &self.extra_groups {
            if !groups.iter().any(|g| g == extra) {
                groups.push(extra.as_str().into());
            }
        }
        groups
    }
}

/// The parts of a TokenReview request the verifier reads. Deliberately not
/// `Debug`: it holds the token.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewRequest {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    spec: ReviewSpec,
}

#[derive(Default, Deserialize)]
struct ReviewSpec {
    #[serde(default)]
    token: String,
    #[serde(default)]
    audiences: Vec<String>,
}

const REVIEW_VERSIONS: [&str; 2] = ["authentication.k8s.io/v1", "authentication.k8s.io/v1beta1"];

async fn token_review(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let started = Instant::now();
    let request: ReviewRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            // serde_json's message may quote the input (and so the token):
            // report only where and what kind of error it is.
            let what = match err.classify() {
                serde_json::error::Category::Io => "could not be read",
                serde_json::error::Category::Syntax => "is not valid JSON",
                serde_json::error::Category::Data => "does not have the TokenReview fields",
                serde_json::error::Category::Eof => "ends before the JSON is complete",
            };
            state.metrics.observe(
                metrics::TOKEN_REVIEW,
                metrics::BAD_REQUEST,
                started.elapsed(),
            );
            return bad_request(&format!(
                "the request body {what} (line {}, column {}); send a TokenReview: \
                 {{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenReview\",\
                 \"spec\":{{\"token\":\"<token>\"}}}}",
                err.line(),
                err.column()
            ));
        }
    };
    let api_version = request
        .api_version
        .unwrap_or_else(|| REVIEW_VERSIONS[0].to_owned());
    if !REVIEW_VERSIONS.contains(&api_version.as_str())
        || request.kind.as_deref().is_some_and(|k| k != "TokenReview")
    {
        state.metrics.observe(
            metrics::TOKEN_REVIEW,
            metrics::BAD_REQUEST,
            started.elapsed(),
        );
        return bad_request(
            "expected kind TokenReview with apiVersion authentication.k8s.io/v1 (or v1beta1)",
        );
    }

    let (status, result) = if request.spec.token.is_empty() {
        (
            unauthenticated("spec.token is empty"),
            metrics::NO_CREDENTIALS,
        )
    } else {
        state.verify(&request.spec.token, |verdict| match verdict {
            Ok(identity) => {
                let valid_for = state.audiences_of(&identity);
                match review_audiences(&request.spec.audiences, &valid_for) {
                    Some(audiences) => (authenticated(&state, &identity, audiences), metrics::OK),
                    None => (
                        unauthenticated(
                            "the token is not valid for any of the requested audiences \
                             (spec.audiences); list them in the ApiToken's spec.audiences",
                        ),
                        metrics::WRONG_AUDIENCE,
                    ),
                }
            }
            Err(reject) => (unauthenticated(&reject.to_string()), reject.as_str()),
        })
    };
    state
        .metrics
        .observe(metrics::TOKEN_REVIEW, result, started.elapsed());
    (
        [(CACHE_CONTROL, "no-store")],
        Json(json!({
            "apiVersion": api_version,
            "kind": "TokenReview",
            "metadata": { "creationTimestamp": null },
            "spec": {},
            "status": status,
        })),
    )
        .into_response()
}

/// The audiences a review grants, as the TokenReview API defines them:
/// asked for some, the ones the token is also valid for (`None` when there
/// are none: not authenticated); asked for none, the token's own. The
/// kube-apiserver takes an answer without audiences as "valid for the
/// audiences I asked for", so an empty intersection is never answered as
/// an empty list.
pub fn review_audiences(requested: &[String], valid_for: &[&str]) -> Option<Vec<String>> {
    if requested.is_empty() {
        return Some(valid_for.iter().map(|a| (*a).to_owned()).collect());
    }
    let granted: Vec<String> = requested
        .iter()
        .filter(|a| valid_for.contains(&a.as_str()))
        .cloned()
        .collect();
    (!granted.is_empty()).then_some(granted)
}

/// Whether a token valid for `valid_for` may pass a route that requires
/// every audience of `required` (none: any token).
pub fn route_admits(required: &[String], valid_for: &[&str]) -> bool {
    required
        .iter()
        .all(|audience| valid_for.contains(&audience.as_str()))
}

fn authenticated(
    state: &AppState,
    identity: &IdentityRef<'_>,
    audiences: Vec<String>,
) -> TokenReviewStatus {
    let one = |s: &str| vec![s.to_owned()];
    TokenReviewStatus {
        authenticated: Some(true),
        audiences: (!audiences.is_empty()).then_some(audiences),
        error: None,
        user: Some(UserInfo {
            username: Some(identity.username.to_string()),
            uid: Some(identity.uid.to_owned()),
            groups: Some(
                state
                    .groups(identity)
                    .into_iter()
                    .map(Cow::into_owned)
                    .collect(),
            ),
            extra: Some(
                [
                    (EXTRA_API_KEY.to_owned(), one(identity.api_key)),
                    (EXTRA_API_TOKEN.to_owned(), one(identity.api_token)),
                    (EXTRA_NAMESPACE.to_owned(), one(identity.namespace)),
                ]
                .into(),
            ),
        }),
    }
}

fn unauthenticated(error: &str) -> TokenReviewStatus {
    TokenReviewStatus {
        authenticated: Some(false),
        error: Some(error.to_owned()),
        ..Default::default()
    }
}

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "reason": "BadRequest",
            "code": 400,
            "message": message,
        })),
    )
        .into_response()
}

/// The token of a forward-auth request: `Authorization: Bearer <t>`, else `X-API-Key: <t>`.
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    bearer.or_else(|| {
        headers
            .get(X_API_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    })
}

/// The header in which a gateway names the audience a forward-auth route
/// requires (beside the `audience` query parameter of the verifier's URL).
pub const AUDIENCE_HEADER: &str = "x-auth-audience";

// Header names looked up on every request, parsed once: a `&str` name is
// parsed and checked again at each lookup.
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
const X_AUTH_AUDIENCE: HeaderName = HeaderName::from_static(AUDIENCE_HEADER);

/// The audiences a forward-auth route requires: every `audience` query
/// parameter of the verifier's URL and every `X-Auth-Audience` header, set
/// by the gateway's configuration. The token must be valid for all of them,
/// so a value a client slips in can only narrow what passes, never widen it;
/// the gateway examples overwrite the header all the same. `Err` when the
/// query cannot be read.
fn required_audiences(request: &Request) -> Result<Vec<String>, ()> {
    let mut required = Vec::new();
    if request.uri().query().is_some() {
        let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(request.uri())
            .map_err(|_| ())?;
        required.extend(
            pairs
                .0
                .into_iter()
                .filter(|(n, _)| n == "audience")
                .map(|(_, v)| v),
        );
    }
    for value in request.headers().get_all(X_AUTH_AUDIENCE) {
        required.push(value.to_str().map_err(|_| ())?.trim().to_owned());
    }
    Ok(required)
}

// Takes the request rather than a `HeaderMap`, which axum would copy.
async fn forward_auth(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = Instant::now();
    let Ok(required) = required_audiences(&request) else {
        state.metrics.observe(
            metrics::FORWARD_AUTH,
            metrics::BAD_REQUEST,
            started.elapsed(),
        );
        return (
            StatusCode::BAD_REQUEST,
            "the verifier URL's query or the X-Auth-Audience header cannot be read\n",
        )
            .into_response();
    };
    let (response, result) = match presented_token(request.headers()).filter(|t| !t.is_empty()) {
        None => (
            challenge(
                None,
                "send the token as Authorization: Bearer <token> or X-API-Key: <token>\n",
            ),
            metrics::NO_CREDENTIALS,
        ),
        Some(token) => state.verify(token, |verdict| match verdict {
            Ok(identity) if !route_admits(&required, &state.audiences_of(&identity)) => {
                (forbidden_audience(), metrics::WRONG_AUDIENCE)
            }
            Ok(identity) => (identity_response(&state, &identity), metrics::OK),
            Err(reject) => (
                challenge(Some(reject.as_str()), format!("{reject}\n")),
                reject.as_str(),
            ),
        }),
    };
    state
        .metrics
        .observe(metrics::FORWARD_AUTH, result, started.elapsed());
    response
}

// Builds the response's own header map: one with the identity headers,
// merged into the response by axum, would hash and copy every header again.
// The key's values were made when it was indexed; only the token's name and
// uid and the groups are made here.
fn identity_response(state: &AppState, identity: &IdentityRef<'_>) -> Response {
    let names = &state.headers;
    let key = identity.key_headers;
    let text = |text: &str| HeaderValue::from_str(text).ok();
    let groups = HeaderValue::from_maybe_shared(Bytes::from(state.groups(identity).join(","))).ok();
    let values: [(&HeaderName, Option<HeaderValue>); 6] = [
        (&names.user, key.username.clone()),
        (&names.uid, text(identity.uid)),
        (&names.groups, groups),
        (&names.namespace, key.namespace.clone()),
        (&names.api_key, key.api_key.clone()),
        (&names.api_token, text(identity.api_token)),
    ];
    let mut response = Response::new(Body::from("ok\n"));
    let headers = response.headers_mut();
    headers.reserve(values.len() + 2);
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (name, value) in values {
        let Some(value) = value else {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the identity's {name} cannot be sent as an HTTP header\n"),
            )
                .into_response();
        };
        headers.insert(name.clone(), value);
    }
    response
}

/// 403 for a genuine token that the route's audience does not admit: the
/// token is valid, only not here (RFC 6750 `insufficient_scope`).
fn forbidden_audience() -> Response {
    let mut headers = HeaderMap::with_capacity(2);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(
            "Bearer realm=\"apikey-operator\", error=\"insufficient_scope\", \
             error_description=\"wrong_audience\"",
        ),
    );
    (
        StatusCode::FORBIDDEN,
        headers,
        "the token is not valid for this route's audience; list it in the ApiToken's spec.audiences\n",
    )
        .into_response()
}

/// 401 with an RFC 6750 challenge. `error` is a bounded code, never the token.
/// Built as the identity answer is, without a second header map to merge.
fn challenge(error: Option<&'static str>, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    let headers = response.headers_mut();
    headers.reserve(3);
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(WWW_AUTHENTICATE, challenge_value(error));
    response
}

/// The `WWW-Authenticate` value for `error`, formatted once per code.
fn challenge_value(error: Option<&'static str>) -> HeaderValue {
    static BY_CODE: LazyLock<Vec<(Option<&'static str>, HeaderValue)>> = LazyLock::new(|| {
        std::iter::once(None)
            .chain(Reject::LABELS.into_iter().map(Some))
            .map(|code| (code, format_challenge(code)))
            .collect()
    });
    match BY_CODE.iter().find(|(code, _)| *code == error) {
        Some((_, value)) => value.clone(),
        None => format_challenge(error),
    }
}

fn format_challenge(error: Option<&str>) -> HeaderValue {
    let value = match error {
        None => format!("Bearer realm=\"{REALM}\""),
        Some(code) => {
            format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{code}\""
            )
        }
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod audience_tests;
