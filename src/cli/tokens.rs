//! `list`, `status` and `create-token` for kubectl users: what the tokens'
//! status says, in human units ("in 29d", "1 previous value valid for 12m"),
//! and the one command that prints a token's value, once.
//!
//! The texts are built by pure functions that take `now`; the async
//! functions only read and write the API.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};

use super::CliError;
use crate::api::conditions::READY;
use crate::api::{
    ApiKey, ApiKeyRef, ApiToken, ApiTokenSpec, ApiTokenStatus, Expiration, Rotation,
    SecretTemplate, TokenDefaults, TokenRotation,
};
use crate::schedule::{Expiry, MIN_ROTATION_PERIOD, Policy};

/// `5s`, `12m`, `36h`, `29d`, `70y`: one unit, the largest that keeps two
/// significant figures (under 120 s, 120 m, 48 h, 730 d; then years of
/// 365 d), rounded to the nearest whole unit, half up. So a value just issued
/// for 90 days is `90d` (not the `89d` that rounding its 89d23h59m50s down
/// would show), and a countdown is off by at most half a unit either way.
pub fn human_duration(d: SignedDuration) -> String {
    const UNITS: [(&str, u64, u64); 4] = [
        ("s", 1, 120),
        ("m", 60, 120),
        ("h", 3600, 48),
        ("d", 86_400, 730),
    ];
    const YEAR: u64 = 365 * 86_400;
    let secs = d.as_secs().unsigned_abs();
    let nearest = |unit: u64| (secs + unit / 2) / unit;
    for (suffix, unit, below) in UNITS {
        let n = nearest(unit);
        if n < below {
            return format!("{n}{suffix}");
        }
    }
    format!("{}y", nearest(YEAR))
}

/// `in 29d` or `3h ago` relative to `now`.
pub fn relative(at: Timestamp, now: Timestamp) -> String {
    let d = at.duration_since(now);
    if d.is_negative() {
        format!("{} ago", human_duration(d))
    } else {
        format!("in {}", human_duration(d))
    }
}

/// The EXPIRES cell: `in 29d`, `expired 2d ago`, `never`, or `-` before a value exists.
pub fn expiry_text(status: Option<&ApiTokenStatus>, now: Timestamp) -> String {
    let Some(status) = status else {
        return "-".to_owned();
    };
    match status.expires_at.as_ref().map(|t| t.0) {
        Some(at) if at <= now => format!("expired {}", relative(at, now)),
        Some(at) => relative(at, now),
        None if status.hash.is_some() => "never".to_owned(),
        None => "-".to_owned(),
    }
}

/// The grace cell: `1 previous value valid for 12m`, or `-` when no earlier
/// value is still accepted.
pub fn grace_text(status: Option<&ApiTokenStatus>, now: Timestamp) -> String {
    let Some(status) = status else {
        return "-".to_owned();
    };
    let valid: Vec<Timestamp> = status
        .previous
        .iter()
        .map(|p| p.valid_until.0)
        .filter(|until| *until > now)
        .collect();
    let Some(longest) = valid.iter().max() else {
        return "-".to_owned();
    };
    let what = if valid.len() == 1 {
        "1 previous value".to_owned()
    } else {
        format!("{} previous values", valid.len())
    };
    format!(
        "{what} valid for {}",
        human_duration(longest.duration_since(now))
    )
}

fn ready_condition(status: Option<&ApiTokenStatus>) -> Option<&Condition> {
    status?.conditions.iter().find(|c| c.type_ == READY)
}

/// The READY cell: `True`, or `False (Disabled)` with the reason.
pub fn ready_text(status: Option<&ApiTokenStatus>) -> String {
    match ready_condition(status) {
        Some(c) if c.status == "True" => "True".to_owned(),
        Some(c) => format!("{} ({})", c.status, c.reason),
        None => "Unknown".to_owned(),
    }
}

/// `list`'s table, one row per token, sorted by namespace and name.
pub fn list_table(tokens: &[ApiToken], now: Timestamp, with_namespace: bool) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["NAME", "KEY", "READY", "EXPIRES", "GRACE"];
    if with_namespace {
        header.insert(0, "NAMESPACE");
    }
    let mut sorted: Vec<&ApiToken> = tokens.iter().collect();
    sorted.sort_by_key(|t| (t.namespace(), t.name_any()));
    for token in sorted {
        let status = token.status.as_ref();
        let mut row = vec![
            token.name_any(),
            token.spec.api_key_ref.name.clone(),
            ready_text(status),
            expiry_text(status, now),
            grace_text(status, now),
        ];
        if with_namespace {
            row.insert(0, token.namespace().unwrap_or_default());
        }
        rows.push(row);
    }
    table(&header, &rows)
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<width$}   ", width = widths[i]);
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

fn time_line(out: &mut String, label: &str, at: Option<Timestamp>, now: Timestamp) {
    if let Some(at) = at {
        let _ = writeln!(out, "{label:<16}{at} ({})", relative(at, now));
    }
}

/// `status`'s text for one token.
pub fn status_text(token: &ApiToken, now: Timestamp) -> String {
    let mut out = String::new();
    let status = token.status.as_ref();
    let _ = writeln!(
        out,
        "ApiToken {}/{}",
        token.namespace().unwrap_or_default(),
        token.name_any()
    );
    let mut field = |label: &str, value: &str| {
        let _ = writeln!(out, "{label:<16}{value}");
    };
    field("Key:", &token.spec.api_key_ref.name);
    if let Some(name) = &token.spec.display_name {
        field("Display name:", name);
    }
    if let Some(description) = &token.spec.description {
        field("Description:", description);
    }
    field("Ready:", &ready_text(status));
    if let Some(c) = ready_condition(status).filter(|c| !c.message.is_empty()) {
        field("", &c.message);
    }
    if token.spec.disabled {
        field("Disabled:", "yes (spec.disabled)");
    }
    if let Some(s) = status {
        if let Some(id) = &s.token_id {
            field("Token id:", id);
        }
        if let Some(secret) = &s.secret_name {
            let key = token
                .spec
                .secret
                .as_ref()
                .and_then(|t| t.key.clone())
                .unwrap_or_else(|| "token".to_owned());
            field("Secret:", &format!("{secret} (key {key})"));
        }
        if let Some(pending) = &s.pending {
            field(
                "Pending:",
                &format!("a new value is being issued ({})", pending.reason),
            );
        }
    }
    field("Expires:", &expiry_text(status, now));
    field("Grace:", &grace_text(status, now));
    if let Some(s) = status {
        time_line(&mut out, "Issued:", s.issued_at.as_ref().map(|t| t.0), now);
        time_line(
            &mut out,
            "Next rotation:",
            s.next_rotation_at.as_ref().map(|t| t.0),
            now,
        );
        time_line(
            &mut out,
            "Last rotated:",
            s.last_rotated_at.as_ref().map(|t| t.0),
            now,
        );
        if let Some(n) = s.rotations {
            let _ = writeln!(out, "{:<16}{n}", "Rotations:");
        }
        if let Some(request) = &s.last_revocation_request {
            let _ = writeln!(out, "{:<16}on request {request:?}", "Last revoked:");
        }
        time_line(
            &mut out,
            "Last used:",
            s.last_used_at.as_ref().map(|t| t.0),
            now,
        );
        if !s.conditions.is_empty() {
            out.push_str("Conditions:\n");
            let rows: Vec<Vec<String>> = s
                .conditions
                .iter()
                .map(|c| {
                    vec![
                        c.type_.clone(),
                        c.status.clone(),
                        c.reason.clone(),
                        human_duration(now.duration_since(c.last_transition_time.0)),
                        c.message.clone(),
                    ]
                })
                .collect();
            for line in table(&["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"], &rows).lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    out
}

fn kube(action: &'static str) -> impl FnOnce(kube::Error) -> CliError {
    move |source| CliError::Kube { action, source }
}

/// The tokens of `namespace` (all namespaces when `None`).
pub async fn list(client: Client, namespace: Option<&str>) -> Result<Vec<ApiToken>, CliError> {
    let api: Api<ApiToken> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(kube("listing ApiTokens"))?
        .items)
}

/// One token.
pub async fn get(client: Client, namespace: &str, name: &str) -> Result<ApiToken, CliError> {
    let api: Api<ApiToken> = Api::namespaced(client, namespace);
    api.get_opt(name)
        .await
        .map_err(kube("reading the ApiToken"))?
        .ok_or_else(|| CliError::TokenNotFound {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
}

/// A token value read back from its Secret. Debug and Display redact it;
/// only [`RevealedValue::expose_secret`] gives the text, for the one print.
pub struct RevealedValue(String);

impl RevealedValue {
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RevealedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RevealedValue(<redacted>)")
    }
}

impl std::fmt::Display for RevealedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What `create-token` creates.
#[derive(Clone, Debug, Default)]
pub struct NewToken {
    pub name: String,
    pub key: String,
    pub lifetime: Option<String>,
    pub expires_at: Option<Timestamp>,
    pub rotate_every: Option<String>,
    pub renew_before: Option<String>,
    pub grace_period: Option<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub secret_name: Option<String>,
}

/// The ApiToken object for `new`.
pub fn token_object(new: &NewToken) -> ApiToken {
    let expiration = match (&new.lifetime, new.expires_at) {
        (Some(lifetime), _) => Some(Expiration {
            lifetime: Some(lifetime.clone()),
            expires_at: None,
        }),
        (None, Some(at)) => Some(Expiration {
            expires_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at)),
            lifetime: None,
        }),
        (None, None) => None,
    };
    let rotation =
        (new.rotate_every.is_some() || new.renew_before.is_some() || new.grace_period.is_some())
            .then(|| TokenRotation {
                schedule: Rotation {
                    every: new.rotate_every.clone(),
                    renew_before: new.renew_before.clone(),
                    grace_period: new.grace_period.clone(),
                },
                restart_targets: Vec::new(),
            });
    let mut token = ApiToken::new(
        &new.name,
        ApiTokenSpec {
            api_key_ref: ApiKeyRef {
                name: new.key.clone(),
            },
            display_name: new.display_name.clone(),
            description: new.description.clone(),
            tags: new.tags.clone(),
            expiration: expiration.map(Box::new),
            rotation,
            secret: new.secret_name.as_ref().map(|name| {
                Box::new(SecretTemplate {
                    name: Some(name.clone()),
                    ..Default::default()
                })
            }),
            audiences: Vec::new(),
            disabled: false,
        },
    );
    token.status = None;
    token
}

/// What the token's conditions say, for a token that is not Ready in time:
/// `Ready=False (ApiKeyNotReady: …); Expired=False (…)`, or that it has none.
fn conditions_text(token: &ApiToken) -> String {
    let conditions = token
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    if conditions.is_empty() {
        return "it has no conditions yet: is the operator running?".to_owned();
    }
    let said: Vec<String> = conditions
        .iter()
        .map(|c| match c.message.as_str() {
            "" => format!("{}={} ({})", c.type_, c.status, c.reason),
            message => format!("{}={} ({}: {message})", c.type_, c.status, c.reason),
        })
        .collect();
    format!("its conditions say {}", said.join("; "))
}

/// Refuses, before anything is created, a token the operator would give no
/// value: a spec its own policy check refuses (with the key's
/// `tokenDefaults`), or an expiry already past at `now`.
pub fn check_new_token(
    token: &ApiToken,
    defaults: Option<&TokenDefaults>,
    now: Timestamp,
) -> Result<(), CliError> {
    let policy = Policy::resolve(&token.spec, defaults, MIN_ROTATION_PERIOD)
        .map_err(|e| CliError::WouldBeInvalid(e.to_string()))?;
    match policy.expiry {
        Some(Expiry::At(at)) if at <= now => Err(CliError::ExpiryPassed {
            at,
            from: if token.spec.expiration.is_some() {
                "--expires-at"
            } else {
                "the key's tokenDefaults.expiration.expiresAt"
            },
        }),
        _ => Ok(()),
    }
}

/// Creates the ApiToken, waits until its value is issued, and returns the
/// value read from its Secret (checked against the recorded hash). The
/// caller prints it once; nothing else in this program ever does. A missing
/// key or a token that would get no value is refused before anything is
/// created (see [`check_new_token`]).
pub async fn create_token(
    client: Client,
    namespace: &str,
    new: &NewToken,
    timeout: Duration,
) -> Result<(ApiToken, RevealedValue), CliError> {
    let api: Api<ApiToken> = Api::namespaced(client.clone(), namespace);
    let object = token_object(new);
    let keys: Api<ApiKey> = Api::namespaced(client.clone(), namespace);
    let defaults = match keys.get_opt(&new.key).await {
        Ok(Some(key)) => key.spec.token_defaults,
        Ok(None) => {
            return Err(CliError::KeyNotFound {
                namespace: namespace.to_owned(),
                key: new.key.clone(),
            });
        }
        // Someone who may create tokens but not read keys: the operator checks.
        Err(kube::Error::Api(s)) if s.code == 403 => None,
        Err(source) => return Err(kube("reading the ApiKey")(source)),
    };
    check_new_token(&object, defaults.as_ref(), Timestamp::now())?;
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {
            return Err(CliError::TokenExists {
                namespace: namespace.to_owned(),
                name: new.name.clone(),
            });
        }
        Err(kube::Error::Api(s)) if s.code == 422 || s.code == 400 => {
            return Err(CliError::Invalid(s.message));
        }
        Err(source) => return Err(kube("creating the ApiToken")(source)),
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let secrets: Api<Secret> = Api::namespaced(client, namespace);
    loop {
        let token = api
            .get(&new.name)
            .await
            .map_err(kube("reading the ApiToken"))?;
        let status = token.status.as_ref();
        let ready = ready_condition(status).is_some_and(|c| c.status == "True");
        if let (true, Some(hash), Some(secret_name)) = (
            ready,
            status.and_then(|s| s.hash.clone()),
            status.and_then(|s| s.secret_name.clone()),
        ) {
            let key = token
                .spec
                .secret
                .as_ref()
                .and_then(|t| t.key.clone())
                .unwrap_or_else(|| "token".to_owned());
            let secret = secrets
                .get_opt(&secret_name)
                .await
                .map_err(kube("reading the token's Secret"))?;
            let value = secret
                .and_then(|s| s.data)
                .and_then(|mut d| d.remove(&key))
                .and_then(|b| String::from_utf8(b.0).ok())
                .map(RevealedValue);
            // Only the value the status records; a rotation in between shows another hash.
            let recorded = crate::token::TokenHash::parse(&hash).ok();
            if let Some(value) = value.filter(|v| {
                recorded
                    .as_ref()
                    .is_some_and(|h| crate::token::verify(v.expose_secret(), h))
            }) {
                return Ok((token, value));
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CliError::NotReady {
                namespace: namespace.to_owned(),
                name: new.name.clone(),
                timeout,
                conditions: conditions_text(&token),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests;
