//! Bearer tokens: the static token file format (`--token-auth-file`) and bound ServiceAccount
//! tokens from TokenRequest (`POST …/serviceaccounts/{name}/token`). Bound tokens look like
//! kube-apiserver's JWTs (their claims decode the same way) but are checked against the table
//! kept here, bound to the ServiceAccount's uid and checked on every use.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use serde_json::{Value, json};

use super::StaticToken;
use crate::error::ApiError;
use crate::user::UserInfo;

/// The audience of the API server itself (kube-apiserver's `--api-audiences`, which defaults
/// to the issuer); tokens without it are refused for API requests.
pub const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";
/// `iss` of the tokens.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

const MIN_EXPIRATION: i64 = 600;
const MAX_EXPIRATION: i64 = 1 << 32;
const DEFAULT_EXPIRATION: i64 = 3600;

/// What a bound token was issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundToken {
    pub namespace: String,
    pub name: String,
    /// The ServiceAccount's uid when the token was issued.
    pub uid: String,
    pub audiences: Vec<String>,
    /// Unix seconds.
    pub expires: i64,
    pub jti: String,
}

/// Why a bound token does not authenticate, as the real validator logs it.
pub fn check_bound(
    tok: &BoundToken,
    sa: Option<(String, bool)>,
    audiences: &[&str],
    now: i64,
) -> Result<UserInfo, String> {
    if now >= tok.expires {
        return Err("service account token has expired".into());
    }
    if !tok
        .audiences
        .iter()
        .any(|a| audiences.contains(&a.as_str()))
    {
        return Err("token audiences is invalid for the target audience".into());
    }
    let Some((uid, deleting)) = sa else {
        return Err(format!("serviceaccounts {:?} not found", tok.name));
    };
    if uid != tok.uid {
        return Err(format!(
            "service account UID ({uid}) does not match claim ({})",
            tok.uid
        ));
    }
    if deleting {
        return Err(format!(
            "service account {}/{} has been deleted",
            tok.namespace, tok.name
        ));
    }
    Ok(service_account_user(tok))
}

fn service_account_user(tok: &BoundToken) -> UserInfo {
    UserInfo {
        username: format!("system:serviceaccount:{}:{}", tok.namespace, tok.name),
        uid: tok.uid.clone(),
        groups: vec![
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{}", tok.namespace),
            super::AUTHENTICATED.to_owned(),
        ],
        extra: [(
            "authentication.kubernetes.io/credential-id".to_owned(),
            vec![format!("JTI={}", tok.jti)],
        )]
        .into_iter()
        .collect(),
    }
}

/// The bound tokens issued so far (they do not survive a restart).
#[derive(Debug, Default)]
pub struct BoundTokens(Mutex<HashMap<String, BoundToken>>);

impl BoundTokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, BoundToken>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, token: &str) -> Option<BoundToken> {
        self.lock().get(token).cloned()
    }

    /// The user of `token` if it is a live bound token for `audience`.
    pub fn authenticate(
        &self,
        token: &str,
        audience: &str,
        lookup_sa: impl FnOnce(&str, &str) -> Option<(String, bool)>,
        now: i64,
    ) -> Option<UserInfo> {
        let tok = self.get(token)?;
        check_bound(&tok, lookup_sa(&tok.namespace, &tok.name), &[audience], now).ok()
    }

    /// TokenReview's view: the user and the audiences matched, or the validator's error.
    pub fn review(
        &self,
        token: &str,
        audiences: &[&str],
        lookup_sa: impl FnOnce(&str, &str) -> Option<(String, bool)>,
        now: i64,
    ) -> Option<Result<(UserInfo, Vec<String>), String>> {
        let tok = self.get(token)?;
        let user = check_bound(&tok, lookup_sa(&tok.namespace, &tok.name), audiences, now);
        Some(user.map(|u| {
            let matched = tok
                .audiences
                .iter()
                .filter(|a| audiences.contains(&a.as_str()))
                .cloned()
                .collect();
            (u, matched)
        }))
    }

    /// Issues a token for a ServiceAccount and returns it (a JWT-shaped string).
    pub fn issue(&self, tok: BoundToken, issued_at: i64) -> String {
        let claims = json!({
            "aud": tok.audiences,
            "exp": tok.expires,
            "iat": issued_at,
            "iss": ISSUER,
            "jti": tok.jti,
            "kubernetes.io": {
                "namespace": tok.namespace,
                "serviceaccount": {"name": tok.name, "uid": tok.uid},
            },
            "nbf": issued_at,
            "sub": format!("system:serviceaccount:{}:{}", tok.namespace, tok.name),
        });
        let header = json!({"alg": "RS256", "kid": "kube-emulator"});
        let mut rng = rand::rng();
        let sig: Vec<u8> = (0..64).map(|_| rng.random::<u8>()).collect();
        let token = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            URL_SAFE_NO_PAD.encode(sig)
        );
        self.lock().insert(token.clone(), tok);
        token
    }
}

fn invalid_token_request(value: i64, why: &str) -> ApiError {
    let detail = format!("Invalid value: {value}: {why}");
    let mut e = ApiError::new(
        422,
        "Invalid",
        format!(
            "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: {detail}"
        ),
    );
    e.details = Some(json!({
        "group": "authentication.k8s.io",
        "kind": "TokenRequest",
        "causes": [{"reason": "FieldValueInvalid", "message": detail, "field": "spec.expirationSeconds"}],
    }));
    e
}

/// The parts of a TokenRequest the emulator honours, checked as upstream validates them.
pub struct TokenSpec {
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
}

pub fn token_spec(body: &Value) -> Result<TokenSpec, ApiError> {
    let spec = &body["spec"];
    let expiration_seconds = match &spec["expirationSeconds"] {
        Value::Null => DEFAULT_EXPIRATION,
        v => v
            .as_i64()
            .ok_or_else(|| ApiError::bad_request("spec.expirationSeconds must be an integer"))?,
    };
    if expiration_seconds < MIN_EXPIRATION {
        return Err(invalid_token_request(
            expiration_seconds,
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration_seconds > MAX_EXPIRATION {
        return Err(invalid_token_request(
            expiration_seconds,
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    if !spec["boundObjectRef"].is_null() {
        return Err(ApiError::bad_request(
            "the emulator does not bind tokens to objects (spec.boundObjectRef)",
        ));
    }
    let mut audiences: Vec<String> = spec["audiences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    if audiences.is_empty() {
        audiences.push(API_AUDIENCE.to_owned());
    }
    Ok(TokenSpec {
        audiences,
        expiration_seconds,
    })
}

/// The TokenRequest answered: the request echoed with metadata from the ServiceAccount and
/// `status.token`, `status.expirationTimestamp`.
pub fn token_response(body: &Value, sa: &Value, spec: &TokenSpec, token: &str, now: i64) -> Value {
    let md = &sa["metadata"];
    let expires = jiff::Timestamp::from_second(now + spec.expiration_seconds)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {
            "name": md["name"],
            "namespace": md["namespace"],
            "uid": md["uid"],
            "creationTimestamp": md["creationTimestamp"],
        },
        "spec": {
            "audiences": spec.audiences,
            "expirationSeconds": spec.expiration_seconds,
            "boundObjectRef": body["spec"]["boundObjectRef"],
        },
        "status": {"token": token, "expirationTimestamp": expires},
    })
}

/// A fresh random static token (43 URL-safe characters).
pub fn random_token() -> String {
    let b: [u8; 32] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(b)
}

pub fn new_jti() -> String {
    let b: [u8; 16] = rand::rng().random();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A line of a token file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("token file line {line}: {problem}")]
pub struct TokenFileError {
    pub line: usize,
    pub problem: String,
}

/// Reads a static token file: CSV rows `token,user,uid[,"group1,group2"]`, as kube-apiserver's
/// `--token-auth-file` (rows with an empty token are skipped, later duplicates win).
pub fn parse_token_file(text: &str) -> Result<Vec<StaticToken>, TokenFileError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields = csv_fields(line).map_err(|problem| TokenFileError {
            line: i + 1,
            problem,
        })?;
        if fields.len() < 3 {
            return Err(TokenFileError {
                line: i + 1,
                problem: format!(
                    "needs at least 3 columns (token,user,uid), found {}",
                    fields.len()
                ),
            });
        }
        if fields[0].is_empty() {
            continue;
        }
        let groups = fields
            .get(3)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        out.push(StaticToken {
            token: fields[0].clone(),
            user: UserInfo {
                username: fields[1].clone(),
                uid: fields[2].clone(),
                groups,
                extra: Default::default(),
            },
        });
    }
    Ok(out)
}

/// The fields of one CSV line (RFC 4180 quoting, as Go's encoding/csv reads it).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, '"') if at_start => {
                quoted = true;
                at_start = false;
            }
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (false, ',') => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
            }
            (_, c) => {
                field.push(c);
                at_start = false;
            }
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    fields.push(field);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(expires: i64) -> BoundToken {
        BoundToken {
            namespace: "ns".into(),
            name: "robot".into(),
            uid: "u1".into(),
            audiences: vec![API_AUDIENCE.into()],
            expires,
            jti: "j".into(),
        }
    }

    #[test]
    fn bound_tokens_are_checked_on_every_use() {
        let live = Some(("u1".to_owned(), false));
        type Case<'a> = (
            BoundToken,
            Option<(String, bool)>,
            &'a [&'a str],
            i64,
            Result<&'a str, &'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                tok(100),
                live.clone(),
                &[API_AUDIENCE],
                99,
                Ok("system:serviceaccount:ns:robot"),
            ),
            (
                tok(100),
                live.clone(),
                &[API_AUDIENCE],
                100,
                Err("service account token has expired"),
            ),
            (
                tok(100),
                live.clone(),
                &["vault"],
                0,
                Err("token audiences is invalid for the target audience"),
            ),
            (
                tok(100),
                None,
                &[API_AUDIENCE],
                0,
                Err("serviceaccounts \"robot\" not found"),
            ),
            (
                tok(100),
                Some(("u2".into(), false)),
                &[API_AUDIENCE],
                0,
                Err("service account UID (u2) does not match claim (u1)"),
            ),
            (
                tok(100),
                Some(("u1".into(), true)),
                &[API_AUDIENCE],
                0,
                Err("service account ns/robot has been deleted"),
            ),
        ];
        for (t, sa, aud, now, want) in cases {
            let got = check_bound(&t, sa, aud, now);
            match (got, want) {
                (Ok(u), Ok(name)) => {
                    assert_eq!(u.username, name);
                    assert_eq!(
                        u.groups,
                        [
                            "system:serviceaccounts",
                            "system:serviceaccounts:ns",
                            "system:authenticated"
                        ]
                    );
                    assert_eq!(u.uid, "u1");
                }
                (Err(e), Err(want)) => assert_eq!(e, want),
                (got, want) => panic!("{got:?} != {want:?}"),
            }
        }
    }

    #[test]
    fn token_files_read_as_kube_apiserver_reads_them() {
        let text = "t1,alice,uid-a,\"team-a,team-b\"\n\n,skipped,x\nt2,bob,uid-b\nt3,carol,,\"ops\",extra\n";
        let tokens = parse_token_file(text).unwrap();
        let rows: Vec<(&str, &str, &str, Vec<String>)> = tokens
            .iter()
            .map(|t| {
                (
                    t.token.as_str(),
                    t.user.username.as_str(),
                    t.user.uid.as_str(),
                    t.user.groups.clone(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (
                    "t1",
                    "alice",
                    "uid-a",
                    vec!["team-a".to_owned(), "team-b".to_owned()]
                ),
                ("t2", "bob", "uid-b", vec![]),
                ("t3", "carol", "", vec!["ops".to_owned()]),
            ]
        );
        let e = parse_token_file("ok,a,b\nbad,only\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(parse_token_file("t,\"open,x").is_err());
    }

    #[test]
    fn token_requests_are_validated_as_upstream() {
        let spec = token_spec(&json!({"spec": {}})).unwrap();
        assert_eq!(
            (spec.expiration_seconds, spec.audiences),
            (3600, vec![API_AUDIENCE.to_owned()])
        );
        let e = token_spec(&json!({"spec": {"expirationSeconds": 60}}))
            .err()
            .unwrap();
        assert_eq!(
            e.message,
            "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
        );
        assert_eq!(e.code, 422);
        let spec = token_spec(&json!({"spec": {"audiences": ["vault"], "expirationSeconds": 600}}))
            .unwrap();
        assert_eq!(
            (spec.expiration_seconds, spec.audiences),
            (600, vec!["vault".to_owned()])
        );
    }
}
