//! The webhook authenticator configuration of docs/verifier.md, as the tests use it: its
//! kubeconfig with only the verifier's address and CA file filled in, and its kube-apiserver
//! flags with only the file path and the cache TTL replaced. So the doc says what runs here.

use std::net::SocketAddr;
use std::path::Path;

use apikey_operator::verifier::http::TOKEN_REVIEW_PATH;

use super::super::gateway_docs::verifier_doc;

const SECTION: &str = "### Kubernetes webhook token authenticator";
/// The placeholders of the doc's kubeconfig that the tests replace.
const DOC_ORIGIN: &str = "https://apikey-operator-verifier.apikey-system.svc:8443";
const DOC_CA_FILE: &str = "/etc/kubernetes/pki/apikey-verifier-ca.crt";
const CONFIG_FILE_FLAG: &str = "--authentication-token-webhook-config-file";
const CACHE_TTL_FLAG: &str = "--authentication-token-webhook-cache-ttl";

/// The fenced blocks (language, text) of the doc's webhook authenticator section.
fn section_blocks() -> Vec<(String, String)> {
    let doc = verifier_doc();
    let mut in_section = false;
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in doc.lines() {
        if let Some((_, text)) = open.as_mut() {
            if line.trim_start().starts_with("```") {
                let block = open.take().expect("open");
                if in_section {
                    blocks.push(block);
                }
            } else {
                text.push_str(line);
                text.push('\n');
            }
        } else if line.starts_with('#') {
            in_section = line.trim_end() == SECTION;
        } else if let Some(lang) = line.trim_start().strip_prefix("```") {
            open = Some((lang.trim().to_owned(), String::new()));
        }
    }
    assert!(!blocks.is_empty(), "docs/verifier.md has no `{SECTION}`");
    blocks
}

fn only_block(lang: &str) -> String {
    let mut found = section_blocks().into_iter().filter(|(l, _)| l == lang);
    let (_, text) = found
        .next()
        .unwrap_or_else(|| panic!("`{SECTION}` of docs/verifier.md has no {lang} block"));
    assert!(
        found.next().is_none(),
        "`{SECTION}` has several {lang} blocks; the tests use one"
    );
    text
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "the webhook kubeconfig of docs/verifier.md must contain `{from}` once: the tests replace it"
    );
    text.replacen(from, to, 1)
}

/// The doc's kubeconfig for a verifier at `verifier` whose certificate chains to `ca_file`.
pub(super) fn kubeconfig(verifier: SocketAddr, ca_file: &Path) -> String {
    let text = only_block("yaml");
    let text = replace_once(&text, DOC_ORIGIN, &format!("https://{verifier}"));
    replace_once(&text, DOC_CA_FILE, &ca_file.display().to_string())
}

/// The doc's kube-apiserver flags, `--name=value` each, as written.
fn doc_flags() -> Vec<(String, String)> {
    only_block("text")
        .lines()
        .map(|line| line.trim().trim_end_matches('\\').trim())
        .filter(|line| line.starts_with("--"))
        .map(|flag| {
            let (name, value) = flag
                .split_once('=')
                .unwrap_or_else(|| panic!("docs/verifier.md: write `{flag}` as --name=value"));
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// The doc's kube-apiserver flags except the config file (the tests write their own, with
/// [`kubeconfig`]), with the cache TTL replaced by `cache_ttl`.
pub(super) fn apiserver_flags(cache_ttl: &str) -> Vec<String> {
    let flags = doc_flags();
    assert!(
        flags.iter().any(|(name, _)| name == CACHE_TTL_FLAG),
        "docs/verifier.md's flags must set {CACHE_TTL_FLAG}"
    );
    flags
        .into_iter()
        .filter(|(name, _)| name != CONFIG_FILE_FLAG)
        .map(|(name, value)| {
            let value = if name == CACHE_TTL_FLAG {
                cache_ttl.to_owned()
            } else {
                value
            };
            format!("{name}={value}")
        })
        .collect()
}

#[test]
fn the_documented_configuration_names_the_verifiers_endpoint() {
    let text = only_block("yaml");
    let config: kube::config::Kubeconfig = serde_yaml::from_str(&text).expect("a kubeconfig");
    let context = config
        .contexts
        .iter()
        .find(|c| Some(&c.name) == config.current_context.as_ref())
        .and_then(|c| c.context.as_ref())
        .expect("the current context");
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.as_ref())
        .expect("the context's cluster");
    assert_eq!(
        cluster.server.as_deref(),
        Some(format!("{DOC_ORIGIN}{TOKEN_REVIEW_PATH}").as_str()),
        "the server is the verifier's TokenReview URL, path included"
    );
    assert_eq!(cluster.certificate_authority.as_deref(), Some(DOC_CA_FILE));
    let flags = doc_flags();
    let names: Vec<&str> = flags.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            CONFIG_FILE_FLAG,
            "--authentication-token-webhook-version",
            CACHE_TTL_FLAG
        ]
    );
    assert!(flags.contains(&("--authentication-token-webhook-version".into(), "v1".into())));
}
