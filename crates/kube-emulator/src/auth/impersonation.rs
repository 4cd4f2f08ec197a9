//! `Impersonate-User`, `-Group`, `-Uid` and `-Extra-*` headers (what `kubectl --as`,
//! `--as-group` and `--as-uid` send), checked item by item against the `impersonate` verb as
//! kube-apiserver's legacy impersonation filter does; the result replaces the requester.

use axum::http::HeaderMap;

use super::attributes::{Attributes, percent_decode};
use super::{ANONYMOUS, AUTHENTICATED, UNAUTHENTICATED, decide, forbidden};
use crate::error::ApiError;
use crate::user::UserInfo;

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA: &str = "impersonate-extra-";

/// One thing asked to be impersonated (`v1.ObjectReference` in the filter).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Request {
    ServiceAccount { namespace: String, name: String },
    User(String),
    Group(String),
    Extra { key: String, value: String },
    Uid(String),
}

impl Request {
    /// What `impersonate` is checked on.
    fn attributes(&self) -> Attributes {
        match self {
            Request::ServiceAccount { namespace, name } => {
                Attributes::resource("impersonate", "", "serviceaccounts", namespace, name)
            }
            Request::User(name) => Attributes::resource("impersonate", "", "users", "", name),
            Request::Group(name) => Attributes::resource("impersonate", "", "groups", "", name),
            Request::Extra { key, value } => Attributes::resource(
                "impersonate",
                "authentication.k8s.io",
                &format!("userextras/{key}"),
                "",
                value,
            ),
            Request::Uid(uid) => {
                Attributes::resource("impersonate", "authentication.k8s.io", "uids", "", uid)
            }
        }
    }

    /// Go's `%v` of the ObjectReference, for the 400 message.
    fn go_string(&self) -> String {
        let (kind, ns, name, api, field) = match self {
            Request::ServiceAccount { namespace, name } => {
                ("ServiceAccount", namespace.as_str(), name.as_str(), "", "")
            }
            Request::User(n) => ("User", "", n.as_str(), "", ""),
            Request::Group(n) => ("Group", "", n.as_str(), "", ""),
            Request::Extra { key, value } => (
                "UserExtra",
                "",
                value.as_str(),
                "authentication.k8s.io/v1",
                key.as_str(),
            ),
            Request::Uid(u) => ("UID", "", u.as_str(), "authentication.k8s.io/v1", ""),
        };
        format!("{{{kind} {ns} {name}  {api}  {field}}}")
    }
}

fn split_sa_username(user: &str) -> Option<(String, String)> {
    let rest = user.strip_prefix("system:serviceaccount:")?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':'))
        .then(|| (ns.to_owned(), name.to_owned()))
}

fn requests(headers: &HeaderMap) -> Result<Vec<Request>, ApiError> {
    let text = |v: &axum::http::HeaderValue| v.to_str().unwrap_or_default().to_owned();
    let mut out = Vec::new();
    let user = headers.get(USER).map(text).filter(|u| !u.is_empty());
    if let Some(u) = &user {
        out.push(match split_sa_username(u) {
            Some((namespace, name)) => Request::ServiceAccount { namespace, name },
            None => Request::User(u.clone()),
        });
    }
    let mut others = false;
    for g in headers.get_all(GROUP) {
        others = true;
        out.push(Request::Group(text(g)));
    }
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix(EXTRA) {
            others = true;
            out.push(Request::Extra {
                key: percent_decode(key),
                value: text(value),
            });
        }
    }
    if let Some(uid) = headers.get(UID).map(text).filter(|u| !u.is_empty()) {
        others = true;
        out.push(Request::Uid(uid));
    }
    if others && user.is_none() {
        let listed: Vec<String> = out.iter().map(Request::go_string).collect();
        return Err(ApiError::bad_request(format!(
            "requested [{}] without impersonating a user",
            listed.join(" ")
        )));
    }
    Ok(out)
}

/// Whether the request asks to impersonate anyone (cheap: most requests do not).
pub fn requested(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|k| k.as_str().starts_with("impersonate-"))
}

/// The user the request acts as: `requestor` itself, or whom it may impersonate; 403 (on the
/// first item it may not impersonate) or 400 (groups without a user).
pub fn apply(
    policy: &super::Policy,
    requestor: UserInfo,
    headers: &HeaderMap,
) -> Result<UserInfo, ApiError> {
    let asked = requests(headers)?;
    if asked.is_empty() {
        return Ok(requestor);
    }
    let groups_given = asked.iter().any(|r| matches!(r, Request::Group(_)));
    let mut user = UserInfo::default();
    for r in &asked {
        let attrs = r.attributes();
        let d = decide(policy, &requestor, &attrs);
        if !d.allowed {
            return Err(forbidden(&requestor, &attrs, &d.reason));
        }
        match r {
            Request::ServiceAccount { namespace, name } => {
                user.username = format!("system:serviceaccount:{namespace}:{name}");
                if !groups_given {
                    user.groups = vec![
                        "system:serviceaccounts".to_owned(),
                        format!("system:serviceaccounts:{namespace}"),
                    ];
                }
            }
            Request::User(name) => user.username = name.clone(),
            Request::Group(g) => user.groups.push(g.clone()),
            Request::Extra { key, value } => user
                .extra
                .entry(key.clone())
                .or_default()
                .push(value.clone()),
            Request::Uid(uid) => user.uid = uid.clone(),
        }
    }
    let marker = if user.username == ANONYMOUS {
        UNAUTHENTICATED
    } else {
        AUTHENTICATED
    };
    let marked = user
        .groups
        .iter()
        .any(|g| g == UNAUTHENTICATED || (user.username != ANONYMOUS && g == AUTHENTICATED));
    if !marked {
        user.groups.push(marker.to_owned());
    }
    Ok(user)
}
