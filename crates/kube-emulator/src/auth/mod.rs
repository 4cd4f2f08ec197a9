//! Who a request is and what it may do, in kube-apiserver's order: bearer-token authentication
//! (static tokens, bound ServiceAccount tokens, anonymous), impersonation, then the
//! `system:masters` bypass and RBAC. `http` calls `authenticate`, `impersonation::apply` and
//! `authorize` before routing; `tokens`, `reviews` and `escalation` serve the endpoints and
//! write checks built on the same decision.

mod aggregation;
mod attributes;
mod bootstrap;
pub mod escalation;
pub mod impersonation;
pub mod rbac;
pub mod reviews;
pub mod tokens;

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::HeaderMap;

pub use attributes::Attributes;
pub use bootstrap::seed_bootstrap_policy;
pub use rbac::{Decision, Policy};
pub use tokens::{BoundTokens, TokenFileError, parse_token_file};

use crate::error::ApiError;
use crate::store::State;
use crate::user::UserInfo;

pub const MASTERS: &str = "system:masters";
pub const AUTHENTICATED: &str = "system:authenticated";
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
pub const ANONYMOUS: &str = "system:anonymous";

/// What a request without credentials is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Anonymous {
    /// The emulator's behaviour before it had users: a request without a token is the admin
    /// (`system:admin`, group `system:masters`), so tests that build a bare `kube::Config` on
    /// `Emulator::url()` keep working. Not a kube-apiserver mode.
    #[default]
    Admin,
    /// kube-apiserver's default `--anonymous-auth=true`: user `system:anonymous`, group
    /// `system:unauthenticated`, allowed only what RBAC grants them (the health and version
    /// paths of `system:public-info-viewer`).
    Enabled,
    /// `--anonymous-auth=false`: 401.
    Disabled,
}

/// A static bearer token and the user it authenticates as (one row of kube-apiserver's
/// `--token-auth-file`).
#[derive(Clone, PartialEq, Eq)]
pub struct StaticToken {
    pub token: String,
    pub user: UserInfo,
}

impl std::fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticToken")
            .field("token", &"<redacted>")
            .field("user", &self.user)
            .finish()
    }
}

impl StaticToken {
    /// A fresh random token for `username` in `groups` (uid empty).
    pub fn generate(username: &str, groups: &[&str]) -> StaticToken {
        StaticToken::new(&tokens::random_token(), username, groups)
    }

    /// A token for `username` in `groups` (uid empty).
    pub fn new(token: &str, username: &str, groups: &[&str]) -> StaticToken {
        StaticToken {
            token: token.to_owned(),
            user: UserInfo {
                username: username.to_owned(),
                uid: String::new(),
                groups: groups.iter().map(|g| (*g).to_owned()).collect(),
                extra: Default::default(),
            },
        }
    }
}

/// The authenticators of one emulator.
#[derive(Debug)]
pub struct Authn {
    static_tokens: HashMap<String, UserInfo>,
    pub bound: BoundTokens,
    anonymous: Anonymous,
}

impl Authn {
    /// `tokens` later in the list win over earlier ones with the same token, as in a token file.
    pub fn new(tokens: &[StaticToken], anonymous: Anonymous) -> Authn {
        let static_tokens = tokens
            .iter()
            .filter(|t| !t.token.is_empty())
            .map(|t| (t.token.clone(), with_authenticated(t.user.clone())))
            .collect();
        Authn {
            static_tokens,
            bound: BoundTokens::default(),
            anonymous,
        }
    }

    /// The user of a request, from its `Authorization: Bearer` header; 401 for a token no
    /// authenticator accepts, and for no token when anonymous requests are disabled.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        lookup_sa: impl FnOnce(&str, &str) -> Option<(String, bool)>,
        now: i64,
    ) -> Result<UserInfo, ApiError> {
        match bearer_token(headers) {
            Some(token) => {
                if let Some(user) = self.static_tokens.get(token) {
                    return Ok(user.clone());
                }
                self.bound
                    .authenticate(token, tokens::API_AUDIENCE, lookup_sa, now)
                    .ok_or_else(ApiError::unauthorized)
            }
            None => match self.anonymous {
                Anonymous::Admin => Ok(UserInfo::admin()),
                Anonymous::Enabled => Ok(anonymous()),
                Anonymous::Disabled => Err(ApiError::unauthorized()),
            },
        }
    }

    /// A static token's user, for TokenReview.
    pub fn static_user(&self, token: &str) -> Option<UserInfo> {
        self.static_tokens.get(token).cloned()
    }
}

pub fn anonymous() -> UserInfo {
    UserInfo {
        username: ANONYMOUS.to_owned(),
        groups: vec![UNAUTHENTICATED.to_owned()],
        ..UserInfo::default()
    }
}

/// Adds `system:authenticated` as kube-apiserver's authenticated-group adder does.
pub fn with_authenticated(mut user: UserInfo) -> UserInfo {
    let marked = user
        .groups
        .iter()
        .any(|g| g == AUTHENTICATED || g == UNAUTHENTICATED);
    if user.username != ANONYMOUS && !marked {
        user.groups.push(AUTHENTICATED.to_owned());
    }
    user
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive, single spaces).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let mut parts = value.trim().splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Brings the RBAC index up to date after RBAC objects changed: aggregated ClusterRoles are
/// recomputed (and stored) first, then the index is rebuilt.
pub fn refresh(st: &mut State) {
    if !st.rbac_dirty {
        return;
    }
    aggregation::aggregate(st);
    st.policy = Arc::new(Policy::build(st));
    st.rbac_dirty = false;
}

/// The authorizer chain: `system:masters` is allowed everything, then RBAC decides.
pub fn decide(policy: &Policy, user: &UserInfo, a: &Attributes) -> Decision {
    if user.groups.iter().any(|g| g == MASTERS) {
        return Decision {
            allowed: true,
            reason: String::new(),
        };
    }
    policy.decide(user, a)
}

/// 403 as kube-apiserver words a denial of `a`.
pub fn forbidden(user: &UserInfo, a: &Attributes, reason: &str) -> ApiError {
    let body = if !a.resource_request {
        format!(
            "User {:?} cannot {} path {:?}",
            user.username, a.verb, a.path
        )
    } else if !a.namespace.is_empty() {
        format!(
            "User {:?} cannot {} resource {:?} in API group {:?} in the namespace {:?}",
            user.username,
            a.verb,
            a.resource_path(),
            a.api_group,
            a.namespace
        )
    } else {
        format!(
            "User {:?} cannot {} resource {:?} in API group {:?} at the cluster scope",
            user.username,
            a.verb,
            a.resource_path(),
            a.api_group
        )
    };
    let body = body
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let err = if reason.is_empty() {
        body
    } else {
        format!("{body}: {reason}")
    };
    ApiError::forbidden_resource(&a.api_group, &a.resource, &a.name, &err)
}
