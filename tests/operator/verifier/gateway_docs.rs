//! The gateway examples of docs/forward-auth.md against the verifier's own list of identity headers:
//! every example must copy all of them from the verifier's answer onto the request, so that none
//! can come from the client. `nginx.rs` runs the NGINX example itself.

use std::collections::BTreeSet;

use apikey_operator::verifier::HeaderNames;
use serde_yaml::Value;

/// The identity headers of a forward-auth answer, lowercase, from the verifier's defaults.
pub(super) fn identity_headers() -> [String; 6] {
    // No `..`: a new identity header does not compile here until the examples are checked for it.
    let HeaderNames {
        user,
        uid,
        groups,
        namespace,
        api_key,
        api_token,
    } = HeaderNames::default();
    [user, uid, groups, namespace, api_key, api_token].map(|name| name.as_str().to_owned())
}

/// A fenced code block of the doc: its language and text.
pub(super) struct Block {
    pub lang: String,
    pub text: String,
}

pub(super) fn verifier_doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/verifier.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

pub(super) fn forward_auth_doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/forward-auth.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The fenced blocks of the doc: the gateway examples.
pub(super) fn forward_auth_blocks(doc: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for line in doc.lines() {
        if let Some(block) = open.as_mut() {
            if line.trim_start().starts_with("```") {
                blocks.push(open.take().expect("open"));
            } else {
                block.text.push_str(line);
                block.text.push('\n');
            }
        } else if let Some(lang) = line.trim_start().strip_prefix("```") {
            open = Some(Block {
                lang: lang.trim().to_owned(),
                text: String::new(),
            });
        }
    }
    assert!(
        open.is_none(),
        "docs/forward-auth.md: a code block is not closed"
    );
    blocks
}

/// The NGINX `server` block of the doc, as written.
pub(super) fn nginx_example() -> String {
    let doc = forward_auth_doc();
    let mut nginx = forward_auth_blocks(&doc)
        .into_iter()
        .filter(|b| b.lang == "nginx");
    let block = nginx
        .next()
        .expect("docs/forward-auth.md has no nginx example");
    assert!(
        nginx.next().is_none(),
        "docs/forward-auth.md has several nginx examples; nginx.rs runs one"
    );
    block.text
}

fn lowercase_set<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    names
        .into_iter()
        .map(|n| n.trim().to_ascii_lowercase())
        .collect()
}

fn expected() -> BTreeSet<String> {
    identity_headers().into_iter().collect()
}

/// Each identity header needs `auth_request_set $v $upstream_http_<name>;` and
/// `proxy_set_header <Name> $v;`, which replaces a client-sent one; the token headers are blanked.
fn check_nginx(text: &str) -> Result<(), String> {
    let statements: Vec<Vec<String>> = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ")
        .split(['{', '}', ';'])
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .collect();
    // `directive a b;` statements, as (a, b).
    let pairs = |directive: &str| -> Vec<(String, String)> {
        statements
            .iter()
            .filter_map(|s| match s.as_slice() {
                [d, a, b] if d == directive => Some((a.clone(), b.clone())),
                _ => None,
            })
            .collect()
    };
    let (auth_sets, proxy_sets) = (pairs("auth_request_set"), pairs("proxy_set_header"));
    let proxy_set = |header: &str, value: &str| {
        proxy_sets
            .iter()
            .any(|(name, v)| name.eq_ignore_ascii_case(header) && v == value)
    };
    for header in identity_headers() {
        let upstream = format!("$upstream_http_{}", header.replace('-', "_"));
        let (variable, _) = auth_sets
            .iter()
            .find(|(_, from)| *from == upstream)
            .ok_or_else(|| format!("no `auth_request_set $… {upstream};`"))?;
        if !proxy_set(&header, variable) {
            return Err(format!("no `proxy_set_header {header} {variable};`"));
        }
    }
    for token_header in ["authorization", "x-api-key"] {
        if !proxy_set(token_header, "\"\"") {
            return Err(format!("no `proxy_set_header {token_header} \"\";`"));
        }
    }
    Ok(())
}

fn check_ingress_nginx(yaml: &Value) -> Result<(), String> {
    let annotations = &yaml["metadata"]["annotations"];
    let listed = annotations["nginx.ingress.kubernetes.io/auth-response-headers"]
        .as_str()
        .ok_or("no nginx.ingress.kubernetes.io/auth-response-headers annotation")?;
    same_set("auth-response-headers", lowercase_set(listed.split(',')))
}

fn check_envoy(yaml: &Value) -> Result<(), String> {
    let filters = yaml["http_filters"]
        .as_sequence()
        .ok_or("no http_filters list")?;
    let ext_authz = filters
        .iter()
        .find(|f| f["name"].as_str() == Some("envoy.filters.http.ext_authz"))
        .ok_or("no envoy.filters.http.ext_authz filter")?;
    let patterns = ext_authz["typed_config"]["http_service"]["authorization_response"]
        ["allowed_upstream_headers"]["patterns"]
        .as_sequence()
        .ok_or("no http_service.authorization_response.allowed_upstream_headers.patterns")?;
    let exact = patterns
        .iter()
        .map(|p| p["exact"].as_str().ok_or("a pattern that is not `exact`"))
        .collect::<Result<Vec<_>, _>>()?;
    same_set("allowed_upstream_headers", lowercase_set(exact))
}

fn check_traefik(yaml: &Value) -> Result<(), String> {
    let listed = yaml["spec"]["forwardAuth"]["authResponseHeaders"]
        .as_sequence()
        .ok_or("no spec.forwardAuth.authResponseHeaders")?
        .iter()
        .map(|h| h.as_str().ok_or("a header name that is not a string"))
        .collect::<Result<Vec<_>, _>>()?;
    same_set("authResponseHeaders", lowercase_set(listed))
}

fn same_set(what: &str, listed: BTreeSet<String>) -> Result<(), String> {
    if listed == expected() {
        Ok(())
    } else {
        Err(format!(
            "{what} lists {listed:?}; the verifier's identity headers are {:?}",
            expected()
        ))
    }
}

/// Which gateway a block configures, and its check.
fn check_block(block: &Block) -> Result<&'static str, String> {
    if block.lang == "nginx" {
        return check_nginx(&block.text).map(|()| "nginx");
    }
    if block.lang != "yaml" {
        return Err(format!(
            "a `{}` block this test does not know; check it here",
            block.lang
        ));
    }
    let yaml: Value = serde_yaml::from_str(&block.text).map_err(|e| format!("not YAML: {e}"))?;
    if block.text.contains("auth-response-headers") {
        check_ingress_nginx(&yaml).map(|()| "ingress-nginx")
    } else if block.text.contains("ext_authz") {
        check_envoy(&yaml).map(|()| "envoy")
    } else if block.text.contains("forwardAuth") {
        check_traefik(&yaml).map(|()| "traefik")
    } else {
        Err("a YAML block this test does not know; check it here".into())
    }
}

#[test]
fn every_gateway_example_copies_every_identity_header_from_the_answer() {
    let doc = forward_auth_doc();
    let mut checked = BTreeSet::new();
    let mut failures = Vec::new();
    for (n, block) in forward_auth_blocks(&doc).iter().enumerate() {
        match check_block(block) {
            Ok(gateway) => {
                checked.insert(gateway);
            }
            Err(why) => failures.push(format!("block {} (`{}`): {why}", n + 1, block.lang)),
        }
    }
    assert!(
        failures.is_empty(),
        "docs/forward-auth.md:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        checked,
        BTreeSet::from(["envoy", "ingress-nginx", "nginx", "traefik"]),
        "the gateway examples checked"
    );
}

/// The check finds what it looks for: renaming any one header in any example fails it.
#[test]
fn an_example_missing_one_identity_header_fails_the_check() {
    let doc = forward_auth_doc();
    let blocks = forward_auth_blocks(&doc);
    assert!(!blocks.is_empty());
    for block in blocks {
        assert!(check_block(&block).is_ok());
        for header in identity_headers() {
            let broken = Block {
                lang: block.lang.clone(),
                text: replace_ignoring_case(&block.text, &header, "X-Auth-Other"),
            };
            assert_ne!(
                broken.text, block.text,
                "{header} is not in a `{}` example",
                block.lang
            );
            assert!(
                check_block(&broken).is_err(),
                "a `{}` example without {header} passed the check",
                block.lang
            );
        }
    }
}

/// `text` with every ASCII-case-insensitive occurrence of `lowercase` replaced by `with`.
fn replace_ignoring_case(text: &str, lowercase: &str, with: &str) -> String {
    // ASCII lowercasing keeps every byte offset, so offsets found in `lower` hold in `text`.
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    for (at, _) in lower.match_indices(lowercase) {
        out.push_str(&text[rest..at]);
        out.push_str(with);
        rest = at + lowercase.len();
    }
    out.push_str(&text[rest..]);
    out
}
