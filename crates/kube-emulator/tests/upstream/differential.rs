//! The differential half of the fidelity tests: the same requests sent to the upstream server and
//! to the emulator (a [`Target`] each), both answers normalised (uids, resourceVersions,
//! timestamps, generated names, the order of validation causes) and compared, and every
//! difference either listed with its reason in an allow-list or a failure. The emulator's own
//! suite (its test CRDs) uses it, and so does the apikey-operator's (its CRDs' rules).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use axum::http::{self, Method};
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, PostParams};
use kube_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

/// How long one request, or a CRD to be served, may take.
pub const DEADLINE: Duration = Duration::from_secs(60);
/// The namespace both servers are asked about (the upstream server serves no Namespaces, so
/// any name works there).
pub const NS: &str = "fidelity";
pub const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
pub const JSON: &str = "application/json";
pub const MERGE: &str = "application/merge-patch+json";
pub const JSON_PATCH: &str = "application/json-patch+json";
pub const APPLY: &str = "application/apply-patch+yaml";
pub const STRATEGIC: &str = "application/strategic-merge-patch+json";
pub const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// An emulator with the namespace [`NS`], to compare with the upstream server (which needs none:
/// it runs no admission).
pub async fn emulator() -> (Emulator, Client) {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator starts");
    let client = emulator.client().await.expect("emulator client");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}})).expect("namespace"),
        )
        .await
        .expect("namespace created");
    (emulator, client)
}

/// Creates `crds` (not compared: the emulator establishes at once, upstream a moment later) and
/// waits until each path of `served` answers a list.
pub async fn install_crds(t: &Target, crds: &[Value], served: &[&str]) {
    for crd in crds {
        let (code, _, body) = t.send(Method::POST, CRDS, JSON, JSON, Some(crd)).await;
        assert_eq!(
            code,
            201,
            "{}: CRD create: {}",
            t.name,
            String::from_utf8_lossy(&body)
        );
    }
    for path in served {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let (code, _, _) = t.send(Method::GET, path, JSON, JSON, None).await;
            if code == 200 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: {path} not served",
                t.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Runs `suite` on the upstream server and on an emulator and compares the two runs
/// ([`assert_same`]); returns at once, after a note, when the upstream build is missing.
pub async fn compare_with_upstream<Suite, Run>(test: &str, suite: Suite, allowlist: &Path)
where
    Suite: Fn(Target) -> Run,
    Run: Future<Output = Vec<Observation>>,
{
    let Some(up) = super::Upstream::start(test).await else {
        return;
    };
    let (_emulator, client) = emulator().await;
    // Both servers at once: the suite mostly waits (its watches end after `timeoutSeconds`).
    let (upstream_run, emulator_run) = futures::join!(
        suite(Target::new("upstream", up.client.clone())),
        suite(Target::new("emulator", client))
    );
    assert_same(&upstream_run, &emulator_run, allowlist);
}

/// Compares the two runs step by step: fails on a difference `allowlist` does not explain, and
/// on an entry of it that explained nothing (so the list cannot go stale).
pub fn assert_same(upstream: &[Observation], emulator: &[Observation], allowlist: &Path) {
    let allow = AllowList::load(allowlist);
    let mut unexpected = Vec::new();
    let mut allowed = Vec::new();
    assert_eq!(
        upstream.iter().map(|o| &o.step).collect::<Vec<_>>(),
        emulator.iter().map(|o| &o.step).collect::<Vec<_>>(),
        "both runs take the same steps"
    );
    for (u, e) in upstream.iter().zip(emulator) {
        let mut diffs = Vec::new();
        if u.observed["code"] != e.observed["code"] {
            // Different outcomes: one difference, shown with both bodies' gist.
            let gist = |o: &Value| {
                let b = &o["body"];
                json!({"code": o["code"], "reason": b["reason"], "message": b["message"],
                       "kind": b["kind"], "name": b["metadata"]["name"]})
                .to_string()
            };
            diffs.push(Diff {
                path: ".code".into(),
                upstream: gist(&u.observed),
                emulator: gist(&e.observed),
            });
        } else {
            diff(&u.observed, &e.observed, "", &mut diffs);
        }
        for d in diffs {
            match allow.reason(&u.step, &d.path) {
                Some(reason) => allowed.push(format!("{} {}: {reason}", u.step, d.path)),
                None => unexpected.push(format!(
                    "{} {}\n    upstream: {}\n    emulator: {}",
                    u.step, d.path, d.upstream, d.emulator
                )),
            }
        }
    }
    eprintln!(
        "{} allowed differences ({}):",
        allowed.len(),
        allowlist.display()
    );
    for a in &allowed {
        eprintln!("  {a}");
    }
    let stale = allow.unused();
    if std::env::var_os("FIDELITY_DUMP").is_some() {
        for (u, e) in upstream.iter().zip(emulator) {
            eprintln!(
                "== {}\n upstream: {}\n emulator: {}",
                u.step, u.observed, e.observed
            );
        }
    }
    assert!(
        unexpected.is_empty() && stale.is_empty(),
        "{} differences between the emulator and upstream are neither fixed nor allow-listed:\n{}\n\
         allow-list entries that matched nothing (remove them): {stale:#?}",
        unexpected.len(),
        unexpected.join("\n"),
    );
}

/// One observed result of a step, normalised.
pub struct Observation {
    pub step: String,
    pub observed: Value,
}

/// A server under test plus what the suite saw on it.
pub struct Target {
    pub name: &'static str,
    client: Client,
    pub seen: Vec<Observation>,
    ids: Ids,
}

/// Placeholders for values that differ between servers by nature: an object's uids and
/// resourceVersions become `name#n`, numbered by first appearance per object name, so that "same
/// object", "changed or not" and "same version as before" still compare; generated names lose
/// their random suffix.
#[derive(Default)]
struct Ids {
    seen: BTreeMap<(&'static str, String, String), usize>,
    count: BTreeMap<(&'static str, String), usize>,
}

impl Ids {
    fn ordinal(&mut self, what: &'static str, name: &str, value: &str) -> String {
        let key = (what, name.to_owned(), value.to_owned());
        if let Some(n) = self.seen.get(&key) {
            return format!("{what}({name})#{n}");
        }
        let next = self.count.entry((what, name.to_owned())).or_insert(0);
        *next += 1;
        self.seen.insert(key, *next);
        format!("{what}({name})#{next}")
    }
}

/// `gen-x7k2p` (generateName plus 5 random characters) becomes `gen-<random>`.
fn generated_name(name: &str) -> String {
    match name.strip_prefix("gen-") {
        Some(rest) if rest.len() == 5 => "gen-<random>".to_owned(),
        _ => name.to_owned(),
    }
}

/// A raw answer: status code, body, Warning headers.
pub struct Answer {
    pub code: u16,
    pub body: Value,
    pub warnings: Vec<String>,
}

impl Answer {
    pub fn rv(&self) -> String {
        self.body["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

impl Target {
    pub fn new(name: &'static str, client: Client) -> Target {
        Target {
            name,
            client,
            seen: Vec::new(),
            ids: Ids::default(),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        accept: &str,
        body: Option<&Value>,
    ) -> (u16, Vec<String>, Vec<u8>) {
        let bytes = match body {
            Some(v) => serde_json::to_vec(v).expect("body json"),
            None => Vec::new(),
        };
        let request = http::Request::builder()
            .method(method.clone())
            .uri(path)
            .header("content-type", content_type)
            .header("accept", accept)
            .body(kube::client::Body::from(bytes))
            .expect("request");
        let response = tokio::time::timeout(DEADLINE, self.client.send(request))
            .await
            .unwrap_or_else(|_| panic!("{}: {method} {path} timed out", self.name))
            .unwrap_or_else(|e| panic!("{}: {method} {path}: {e}", self.name));
        let code = response.status().as_u16();
        let warnings = response
            .headers()
            .get_all("warning")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        let body = tokio::time::timeout(DEADLINE, response.into_body().collect_bytes())
            .await
            .unwrap_or_else(|_| panic!("{}: {method} {path}: body timed out", self.name))
            .unwrap_or_else(|e| panic!("{}: {method} {path}: body: {e}", self.name));
        (code, warnings, body.to_vec())
    }

    /// Sends a request, records its normalised answer under `step`, and returns it raw.
    pub async fn call(
        &mut self,
        step: &str,
        method: Method,
        path: &str,
        content_type: &str,
        body: Option<Value>,
    ) -> Answer {
        self.call_accept(step, method, path, content_type, JSON, body)
            .await
    }

    pub async fn call_accept(
        &mut self,
        step: &str,
        method: Method,
        path: &str,
        content_type: &str,
        accept: &str,
        body: Option<Value>,
    ) -> Answer {
        let (code, warnings, bytes) = self
            .send(method, path, content_type, accept, body.as_ref())
            .await;
        let body: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        let answer = Answer {
            code,
            body,
            warnings,
        };
        let observed = json!({
            "code": answer.code,
            "warnings": answer.warnings.iter().map(|w| normalise_text(w)).collect::<Vec<_>>(),
            "body": self.normalise(&answer.body),
        });
        self.seen.push(Observation {
            step: step.to_owned(),
            observed,
        });
        answer
    }

    /// A watch that the server ends after `timeoutSeconds`: the events, without periodic
    /// BOOKMARKs (their timing is the server's choice) but with the initial-events-end one.
    pub async fn watch(&mut self, step: &str, path: &str) {
        let (code, _, bytes) = self.send(Method::GET, path, JSON, JSON, None).await;
        let mut events = Vec::new();
        for line in String::from_utf8_lossy(&bytes).lines() {
            let Ok(event) = serde_json::from_str::<Value>(line) else {
                events.push(json!({"unparsed": line}));
                continue;
            };
            let kind = event["type"].as_str().unwrap_or_default();
            if kind == "BOOKMARK" {
                let annotations = &event["object"]["metadata"]["annotations"];
                if annotations["k8s.io/initial-events-end"] == "true" {
                    events.push(json!({"type": "BOOKMARK", "initialEventsEnd": true}));
                }
                continue;
            }
            events.push(json!({"type": kind, "object": self.normalise(&event["object"])}));
        }
        self.seen.push(Observation {
            step: step.to_owned(),
            observed: json!({"code": code, "events": events}),
        });
    }

    fn normalise(&mut self, v: &Value) -> Value {
        let mut v = v.clone();
        if (v.get("items").is_some() || v["kind"] == "Table")
            && let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut)
        {
            if meta.contains_key("resourceVersion") {
                meta.insert("resourceVersion".into(), "<list-rv>".into());
            }
            if meta.get("continue").is_some_and(|c| c != "") {
                meta.insert("continue".into(), "<continue>".into());
            }
        }
        if v["kind"] == "Table" {
            let dates: Vec<usize> = v["columnDefinitions"]
                .as_array()
                .map(|cols| {
                    cols.iter()
                        .enumerate()
                        .filter(|(_, c)| c["type"] == "date")
                        .map(|(i, _)| i)
                        .collect()
                })
                .unwrap_or_default();
            if let Some(rows) = v.get_mut("rows").and_then(Value::as_array_mut) {
                for row in rows {
                    for &i in &dates {
                        if let Some(cell) = row["cells"].get_mut(i) {
                            *cell = "<age>".into();
                        }
                    }
                }
            }
        }
        // The upstream validator reports schema errors in map-iteration order (random): compare
        // the causes as a sorted set, and the summary message by its prefix.
        if let Some(causes) = v
            .get_mut("details")
            .and_then(|d| d.get_mut("causes"))
            .and_then(Value::as_array_mut)
        {
            causes.sort_by_key(|c| c.to_string());
            if causes.len() > 1
                && let Some(message) = v["message"].as_str()
                && let Some((prefix, _)) = message.split_once(" is invalid: [")
            {
                v["message"] = format!("{prefix} is invalid: [<the causes>]").into();
            }
        }
        self.walk(&mut v, "");
        v
    }

    /// `name` is the object the current map belongs to (its metadata's or a Status' details).
    fn walk(&mut self, v: &mut Value, name: &str) {
        match v {
            Value::Object(map) => {
                let own = map
                    .get("metadata")
                    .or_else(|| map.get("details"))
                    .and_then(|m| m.get("name"))
                    .and_then(Value::as_str)
                    .map(generated_name);
                let name = own.as_deref().unwrap_or(name).to_owned();
                for (k, x) in map.iter_mut() {
                    match (k.as_str(), x.as_str()) {
                        ("uid", Some(s)) => *x = self.ids.ordinal("uid", &name, s).into(),
                        ("resourceVersion", Some(s)) if s != "<list-rv>" => {
                            *x = self.ids.ordinal("rv", &name, s).into()
                        }
                        ("name", Some(s)) => *x = generated_name(s).into(),
                        (
                            "creationTimestamp" | "deletionTimestamp" | "time"
                            | "lastTransitionTime",
                            Some(_),
                        ) => *x = "<time>".into(),
                        ("message", Some(s)) => *x = normalise_text(s).into(),
                        _ => self.walk(x, &name),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|x| self.walk(x, name)),
            _ => {}
        }
    }
}

/// UUIDs inside free text (precondition messages) become `<uid>`.
fn normalise_text(s: &str) -> String {
    let re = regex::Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
        .expect("regex");
    re.replace_all(s, "<uid>").into_owned()
}

/// One differing leaf.
struct Diff {
    path: String,
    upstream: String,
    emulator: String,
}

fn diff(u: &Value, e: &Value, path: &str, out: &mut Vec<Diff>) {
    match (u, e) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                diff(
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    &format!("{path}.{k}"),
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                out.push(Diff {
                    path: format!("{path}[]"),
                    upstream: u.to_string(),
                    emulator: e.to_string(),
                });
                return;
            }
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(x, y, &format!("{path}[{i}]"), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(Diff {
            path: path.to_owned(),
            upstream: a.to_string(),
            emulator: b.to_string(),
        }),
    }
}

/// An allow-list file (`allowlist.md` here): a Markdown table of `| step | path | reason |`.
/// `step` matches the whole step name, `path` a prefix of the differing path (`.body.message`);
/// in both `*` stands for any characters.
struct AllowList {
    entries: Vec<(String, String, String)>,
    used: std::cell::RefCell<Vec<bool>>,
}

impl AllowList {
    fn load(path: &Path) -> AllowList {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let mut entries = Vec::new();
        for line in text.lines() {
            let cells: Vec<&str> = line
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            if !line.trim_start().starts_with('|') || cells.len() < 3 {
                continue;
            }
            let unquote = |s: &str| s.trim_matches('`').to_owned();
            let (step, path) = (unquote(cells[0]), unquote(cells[1]));
            if step == "step" || step.starts_with("---") {
                continue;
            }
            entries.push((step, path, cells[2..].join("|")));
        }
        let used = std::cell::RefCell::new(vec![false; entries.len()]);
        AllowList { entries, used }
    }

    fn reason(&self, step: &str, path: &str) -> Option<String> {
        let i = self.entries.iter().position(|(s, p, _)| {
            glob_prefix(s, step) == Some(step.len()) && glob_prefix(p, path).is_some()
        })?;
        self.used.borrow_mut()[i] = true;
        Some(self.entries[i].2.clone())
    }

    fn unused(&self) -> Vec<String> {
        self.entries
            .iter()
            .zip(self.used.borrow().iter())
            .filter(|(_, used)| !**used)
            .map(|((s, p, _), _)| format!("{s} {p}"))
            .collect()
    }
}

/// How much of `text` the glob `pattern` (`*` = any characters) matches from its start, taking
/// the longest match; `None` if it does not match a prefix.
fn glob_prefix(pattern: &str, text: &str) -> Option<usize> {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let mut at = text.strip_prefix(first).map(|_| first.len())?;
    let rest: Vec<&str> = parts.collect();
    for (i, part) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        if last && part.is_empty() {
            return Some(text.len());
        }
        let found = if last {
            text[at..].rfind(part)
        } else {
            text[at..].find(part)
        }?;
        at += found + part.len();
    }
    Some(at)
}
