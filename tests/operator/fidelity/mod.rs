//! Fidelity: our CRDs and our emulator checked against the upstream Kubernetes code that serves
//! CRDs and custom resources (`k8s.io/apiextensions-apiserver`, built by
//! `tests/upstream/setup.sh`, started by `tests/upstream/mod.rs`). See docs/fidelity.md.
//!
//! Every test skips with a note when the upstream build is missing (CI builds it first).

#[path = "../../upstream/mod.rs"]
mod upstream;

use std::collections::BTreeMap;
use std::time::Duration;

use apikey_operator::api::{ApiKey, ApiKeyStatus, ApiToken, ROTATE_ANNOTATION};
use apikey_operator::controller::FIELD_MANAGER;
use apikey_operator::controller::token_state::{self, IssueKind};
use apikey_operator::token::hash_value;
use axum::http::{self, Method};
use jiff::Timestamp;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use kube_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};
use upstream::Upstream;

const DEADLINE: Duration = Duration::from_secs(60);
const NS: &str = "fidelity";
const WIDGETS: &str = "/apis/fidelity.apikeys.dev/v1/namespaces/fidelity/widgets";
const APIKEYS: &str = "/apis/apikeys.dev/v1alpha1/namespaces/fidelity/apikeys";
const APITOKENS: &str = "/apis/apikeys.dev/v1alpha1/namespaces/fidelity/apitokens";
const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const JSON: &str = "application/json";
const MERGE: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
const APPLY: &str = "application/apply-patch+yaml";
const STRATEGIC: &str = "application/strategic-merge-patch+json";

// ---------------------------------------------------------------------------------------------
// 2. Our CRDs are accepted as they are.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_crds_are_established_upstream_as_generated() {
    let Some(up) = Upstream::start("our_crds_are_established_upstream_as_generated").await else {
        return;
    };
    let api: Api<CustomResourceDefinition> = Api::all(up.client.clone());
    for crd in apikey_operator::api::crds() {
        let name = crd.name_any();
        api.create(&PostParams::default(), &crd)
            .await
            .unwrap_or_else(|e| panic!("upstream rejects CRD {name}: {e}"));
        let established = tokio::time::timeout(
            DEADLINE,
            kube::runtime::wait::await_condition(
                api.clone(),
                &name,
                kube::runtime::wait::conditions::is_crd_established(),
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("{name} not Established within {DEADLINE:?}"))
        .expect("watch CRD");
        let stored = established.expect("CRD exists");
        let conditions = stored
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        for c in &conditions {
            // NonStructuralSchema / KubernetesAPIApprovalPolicyConformant must not appear.
            assert!(
                matches!(c.type_.as_str(), "NamesAccepted" | "Established"),
                "{name}: unexpected condition {c:?}"
            );
            assert_eq!(c.status, "True", "{name}: {c:?}");
        }
        // Accepted as they are: what the server stores is what we generate (after its defaults).
        let sent = serde_json::to_value(&crd.spec).expect("spec json");
        let kept = serde_json::to_value(&stored.spec).expect("spec json");
        let missing = missing_in(&sent, &kept, "spec");
        assert!(
            missing.is_empty(),
            "{name}: the server changed or dropped: {missing:#?}"
        );
        let version = &stored.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .is_some_and(|s| s.status.is_some())
        );
        assert!(
            !version
                .additional_printer_columns
                .clone()
                .unwrap_or_default()
                .is_empty()
        );
    }
    // The resources are served, with CEL rules evaluated by the upstream code.
    let keys: Api<ApiKey> = Api::namespaced(up.client.clone(), NS);
    let key: ApiKey = serde_json::from_value(json!({
        "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiKey",
        "metadata": {"name": "k1"},
        "spec": {"owner": {"kind": "User", "name": "alice"},
                 "tokenDefaults": {"expiration": {"lifetime": "90d"}}}
    }))
    .expect("ApiKey");
    keys.create(&PostParams::default(), &key)
        .await
        .expect("ApiKey created");
    let err = keys
        .patch(
            "k1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"owner": {"name": "bob"}}})),
        )
        .await
        .expect_err("owner is immutable");
    assert!(
        err.to_string().contains("owner is immutable"),
        "CEL rule message: {err}"
    );
}

/// Every leaf of `sent` that is missing or different in `kept`, as `path: sent != kept`.
fn missing_in(sent: &Value, kept: &Value, path: &str) -> Vec<String> {
    match (sent, kept) {
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .flat_map(|(k, v)| {
                missing_in(v, b.get(k).unwrap_or(&Value::Null), &format!("{path}.{k}"))
            })
            .collect(),
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .flat_map(|(i, (x, y))| missing_in(x, y, &format!("{path}[{i}]")))
            .collect(),
        (a, b) if a == b => Vec::new(),
        (a, b) => vec![format!("{path}: {a} != {b}")],
    }
}

// ---------------------------------------------------------------------------------------------
// 3. The differential conformance suite.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_behave_as_upstream() {
    let Some(up) = Upstream::start("custom_resources_behave_as_upstream").await else {
        return;
    };
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator starts");
    let emu_client = emulator.client().await.expect("emulator client");
    // The upstream server serves no Namespaces (and runs no admission); the emulator needs one.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(emu_client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}})).expect("namespace"),
        )
        .await
        .expect("namespace created");

    let upstream_run = run_suite(Target::new("upstream", up.client.clone())).await;
    let emulator_run = run_suite(Target::new("emulator", emu_client)).await;

    let allow = AllowList::load();
    let mut unexpected = Vec::new();
    let mut allowed = Vec::new();
    assert_eq!(
        upstream_run.iter().map(|o| &o.step).collect::<Vec<_>>(),
        emulator_run.iter().map(|o| &o.step).collect::<Vec<_>>(),
        "both runs take the same steps"
    );
    for (u, e) in upstream_run.iter().zip(&emulator_run) {
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
        "{} allowed differences (tests/upstream/allowlist.md):",
        allowed.len()
    );
    for a in &allowed {
        eprintln!("  {a}");
    }
    let stale = allow.unused();
    if std::env::var_os("FIDELITY_DUMP").is_some() {
        for (u, e) in upstream_run.iter().zip(&emulator_run) {
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
struct Observation {
    step: String,
    observed: Value,
}

/// A server under test plus what the suite saw on it.
struct Target {
    name: &'static str,
    client: Client,
    seen: Vec<Observation>,
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
struct Answer {
    code: u16,
    body: Value,
    warnings: Vec<String>,
}

impl Answer {
    fn rv(&self) -> String {
        self.body["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

impl Target {
    fn new(name: &'static str, client: Client) -> Target {
        Target {
            name,
            client,
            seen: Vec::new(),
            ids: Ids::default(),
        }
    }

    async fn send(
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
    async fn call(
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

    async fn call_accept(
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
    async fn watch(&mut self, step: &str, path: &str) {
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

/// The widget CRD: one of each schema feature the suite exercises.
fn widget_crd() -> Value {
    json!({
      "apiVersion": "apiextensions.k8s.io/v1",
      "kind": "CustomResourceDefinition",
      "metadata": {"name": "widgets.fidelity.apikeys.dev"},
      "spec": {
        "group": "fidelity.apikeys.dev",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                  "shortNames": ["wdg"], "categories": ["fidelity"]},
        "versions": [{
          "name": "v1", "served": true, "storage": true,
          "subresources": {"status": {}},
          "additionalPrinterColumns": [
            {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
            {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
          ],
          "schema": {"openAPIV3Schema": {
            "type": "object",
            "properties": {
              "spec": {
                "type": "object",
                "required": ["size"],
                "x-kubernetes-validations": [
                  {"rule": "!has(self.name) || self.name != 'forbidden'",
                   "message": "name must not be forbidden", "fieldPath": ".name",
                   "reason": "FieldValueForbidden"},
                  {"rule": "!has(self.min) || !has(self.max) || self.min <= self.max",
                   "messageExpression": "self.min > 100 ? 'min is far above max' : 'min exceeds max'"}
                ],
                "properties": {
                  "size": {"type": "integer", "minimum": 1, "maximum": 10},
                  "color": {"type": "string", "enum": ["red", "green", "blue"], "default": "red"},
                  "name": {"type": "string", "minLength": 2, "maxLength": 8, "pattern": "^[a-z]+$"},
                  "tags": {"type": "array", "maxItems": 3, "x-kubernetes-list-type": "set",
                           "items": {"type": "string"}},
                  "ports": {"type": "array", "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                            "items": {"type": "object", "required": ["name"],
                                      "properties": {"name": {"type": "string"},
                                                     "port": {"type": "integer", "format": "int32"}}}},
                  "labels": {"type": "object", "maxProperties": 2,
                             "additionalProperties": {"type": "string"}},
                  "when": {"type": "string", "format": "date-time"},
                  "mode": {"type": "string",
                           "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "mode is immutable"}]},
                  "min": {"type": "integer"},
                  "max": {"type": "integer"},
                  "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                  "count": {"x-kubernetes-int-or-string": true},
                  "note": {"type": "string", "nullable": true}
                }
              },
              "status": {
                "type": "object",
                "properties": {
                  "phase": {"type": "string", "enum": ["Pending", "Ready"]},
                  "observedGeneration": {"type": "integer", "format": "int64"}
                }
              }
            }
          }}
        }]
      }
    })
}

fn widget(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
           "metadata": {"name": name}, "spec": spec})
}

/// Creates the CRDs (not compared: the emulator establishes at once, upstream a moment later)
/// and waits until their resources are served.
async fn install_crds(t: &Target) {
    let mut crds = vec![widget_crd()];
    for crd in apikey_operator::api::crds() {
        crds.push(serde_json::to_value(crd).expect("crd json"));
    }
    for crd in crds {
        let (code, _, body) = t.send(Method::POST, CRDS, JSON, JSON, Some(&crd)).await;
        assert_eq!(
            code,
            201,
            "{}: CRD create: {}",
            t.name,
            String::from_utf8_lossy(&body)
        );
    }
    for path in [WIDGETS, APIKEYS, APITOKENS] {
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

/// The same sequence on any server; returns what it saw. Steps read earlier answers (current
/// resourceVersions, uids) from the raw values, never from the normalised ones.
async fn run_suite(mut t: Target) -> Vec<Observation> {
    install_crds(&t).await;
    let w = |name: &str| format!("{WIDGETS}/{name}");

    // CRD status as the clients see it once established.
    let crd = t
        .send(
            Method::GET,
            &format!("{CRDS}/widgets.fidelity.apikeys.dev"),
            JSON,
            JSON,
            None,
        )
        .await;
    let crd: Value = serde_json::from_slice(&crd.2).expect("crd json");
    let conditions: Vec<Value> = crd["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|c| json!({"type": c["type"], "status": c["status"], "reason": c["reason"]}))
        .collect();
    t.seen.push(Observation {
        step: "crd-status".into(),
        observed: json!({"conditions": conditions, "acceptedNames": crd["status"]["acceptedNames"],
                         "storedVersions": crd["status"]["storedVersions"]}),
    });

    // create, get, defaults, pruning
    let created = t
        .call(
            "create",
            Method::POST,
            WIDGETS,
            JSON,
            Some(widget(
                "w1",
                json!({"size": 1, "bogus": true, "free": {"any": {"x": 1}}}),
            )),
        )
        .await;
    t.call(
        "create-exists",
        Method::POST,
        WIDGETS,
        JSON,
        Some(widget("w1", json!({"size": 1}))),
    )
    .await;
    t.call(
        "create-status-dropped",
        Method::POST,
        WIDGETS,
        JSON,
        Some(
            json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "w-status"}, "spec": {"size": 2},
                       "status": {"phase": "Ready"}}),
        ),
    )
    .await;
    t.call(
        "create-unknown-top-level",
        Method::POST,
        WIDGETS,
        JSON,
        Some(
            json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "w-top"}, "spec": {"size": 2}, "extra": 1}),
        ),
    )
    .await;
    t.call(
        "create-strict-unknown",
        Method::POST,
        &format!("{WIDGETS}?fieldValidation=Strict"),
        JSON,
        Some(widget("w-strict", json!({"size": 1, "bogus": true}))),
    )
    .await;
    t.call(
        "create-dry-run",
        Method::POST,
        &format!("{WIDGETS}?dryRun=All"),
        JSON,
        Some(widget("w-dry", json!({"size": 1}))),
    )
    .await;
    t.call("get-dry-run", Method::GET, &w("w-dry"), JSON, None)
        .await;
    t.call(
        "create-generate-name",
        Method::POST,
        WIDGETS,
        JSON,
        Some(
            json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"generateName": "gen-"}, "spec": {"size": 1}}),
        ),
    )
    .await;
    t.call(
        "create-bad-name",
        Method::POST,
        WIDGETS,
        JSON,
        Some(widget("Bad_Name", json!({"size": 1}))),
    )
    .await;
    t.call(
        "create-kind-mismatch",
        Method::POST,
        WIDGETS,
        JSON,
        Some(
            json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Gadget",
                       "metadata": {"name": "w-kind"}, "spec": {"size": 1}}),
        ),
    )
    .await;
    t.call(
        "create-namespace-mismatch",
        Method::POST,
        WIDGETS,
        JSON,
        Some(
            json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "w-ns", "namespace": "other"}, "spec": {"size": 1}}),
        ),
    )
    .await;
    t.call("get", Method::GET, &w("w1"), JSON, None).await;
    t.call("get-missing", Method::GET, &w("nope"), JSON, None)
        .await;
    let rv_after_create = created.rv();

    // list with selectors
    for (name, labels) in [
        ("sel-a", json!({"app": "a", "tier": "x"})),
        ("sel-b", json!({"app": "b"})),
        ("sel-c", json!({"other": "y"})),
    ] {
        t.call(
            &format!("create-{name}"),
            Method::POST,
            WIDGETS,
            JSON,
            Some(
                json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                           "metadata": {"name": name, "labels": labels}, "spec": {"size": 3}}),
            ),
        )
        .await;
    }
    t.call("list", Method::GET, WIDGETS, JSON, None).await;
    for (step, query) in [
        ("list-label-eq", "labelSelector=app%3Da"),
        ("list-label-in", "labelSelector=app+in+(a,b)"),
        ("list-label-notin", "labelSelector=app+notin+(a)"),
        ("list-label-exists", "labelSelector=tier"),
        ("list-label-not-exists", "labelSelector=!tier"),
        ("list-label-ne", "labelSelector=app!%3Da"),
        ("list-label-multi", "labelSelector=app%3Da,tier%3Dx"),
        ("list-label-bad", "labelSelector=app%3D%3D%3Da"),
        ("list-field-name", "fieldSelector=metadata.name%3Dsel-b"),
        (
            "list-field-namespace",
            "fieldSelector=metadata.namespace%3Dfidelity",
        ),
        ("list-field-unsupported", "fieldSelector=spec.size%3D3"),
    ] {
        t.call(step, Method::GET, &format!("{WIDGETS}?{query}"), JSON, None)
            .await;
    }
    t.call(
        "list-all-namespaces",
        Method::GET,
        "/apis/fidelity.apikeys.dev/v1/widgets?labelSelector=app",
        JSON,
        None,
    )
    .await;

    // paging
    let page = t
        .call(
            "list-page-1",
            Method::GET,
            &format!("{WIDGETS}?limit=2"),
            JSON,
            None,
        )
        .await;
    let token = page.body["metadata"]["continue"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let page = t
        .call(
            "list-page-2",
            Method::GET,
            &format!("{WIDGETS}?limit=2&continue={token}"),
            JSON,
            None,
        )
        .await;
    let token = page.body["metadata"]["continue"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    t.call(
        "list-page-3",
        Method::GET,
        &format!("{WIDGETS}?limit=10&continue={token}"),
        JSON,
        None,
    )
    .await;
    t.call(
        "list-page-bad-continue",
        Method::GET,
        &format!("{WIDGETS}?limit=2&continue=garbage"),
        JSON,
        None,
    )
    .await;

    // update
    let current = t
        .call("get-for-update", Method::GET, &w("w1"), JSON, None)
        .await;
    let mut body = current.body.clone();
    body["metadata"]["resourceVersion"] = json!(rv_after_create.clone());
    body["spec"]["size"] = json!(2);
    t.call(
        "update-same-rv-as-create",
        Method::PUT,
        &w("w1"),
        JSON,
        Some(body.clone()),
    )
    .await;
    body["metadata"]["resourceVersion"] = json!(rv_after_create.clone());
    body["spec"]["size"] = json!(3);
    t.call(
        "update-stale-rv",
        Method::PUT,
        &w("w1"),
        JSON,
        Some(body.clone()),
    )
    .await;
    body["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("resourceVersion");
    t.call(
        "update-no-rv",
        Method::PUT,
        &w("w1"),
        JSON,
        Some(body.clone()),
    )
    .await;
    let current = t
        .call("get-after-update", Method::GET, &w("w1"), JSON, None)
        .await;
    let mut body = current.body.clone();
    t.call(
        "update-noop",
        Method::PUT,
        &w("w1"),
        JSON,
        Some(body.clone()),
    )
    .await;
    body["metadata"]["labels"] = json!({"touched": "yes"});
    let labelled = t
        .call(
            "update-metadata-only",
            Method::PUT,
            &w("w1"),
            JSON,
            Some(body.clone()),
        )
        .await;
    let mut body = labelled.body.clone();
    body["status"] = json!({"phase": "Ready"});
    t.call(
        "update-status-via-main-ignored",
        Method::PUT,
        &w("w1"),
        JSON,
        Some(body),
    )
    .await;
    t.call(
        "update-missing",
        Method::PUT,
        &w("nope"),
        JSON,
        Some(
            json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "nope", "resourceVersion": "1"}, "spec": {"size": 1}}),
        ),
    )
    .await;
    t.call(
        "update-name-mismatch",
        Method::PUT,
        &w("w1"),
        JSON,
        Some(widget("w2", json!({"size": 1}))),
    )
    .await;

    // patches
    t.call(
        "merge-patch",
        Method::PATCH,
        &w("w1"),
        MERGE,
        Some(json!({"spec": {"color": "blue", "tags": ["a", "b"]}})),
    )
    .await;
    t.call(
        "merge-patch-null-removes",
        Method::PATCH,
        &w("w1"),
        MERGE,
        Some(json!({"spec": {"tags": null}})),
    )
    .await;
    t.call(
        "merge-patch-stale-rv",
        Method::PATCH,
        &w("w1"),
        MERGE,
        Some(json!({"metadata": {"resourceVersion": rv_after_create}, "spec": {"size": 4}})),
    )
    .await;
    t.call(
        "merge-patch-missing",
        Method::PATCH,
        &w("nope"),
        MERGE,
        Some(json!({"spec": {"size": 4}})),
    )
    .await;
    t.call(
        "json-patch",
        Method::PATCH,
        &w("w1"),
        JSON_PATCH,
        Some(json!([{"op": "replace", "path": "/spec/size", "value": 5},
                       {"op": "add", "path": "/metadata/labels/extra", "value": "1"}])),
    )
    .await;
    t.call(
        "json-patch-test-fails",
        Method::PATCH,
        &w("w1"),
        JSON_PATCH,
        Some(json!([{"op": "test", "path": "/spec/size", "value": 9}])),
    )
    .await;
    t.call(
        "json-patch-missing-path",
        Method::PATCH,
        &w("w1"),
        JSON_PATCH,
        Some(json!([{"op": "replace", "path": "/spec/nothing/deeper", "value": 1}])),
    )
    .await;
    t.call(
        "json-patch-invalid-result",
        Method::PATCH,
        &w("w1"),
        JSON_PATCH,
        Some(json!([{"op": "replace", "path": "/spec/size", "value": 99}])),
    )
    .await;
    t.call(
        "strategic-merge-patch",
        Method::PATCH,
        &w("w1"),
        STRATEGIC,
        Some(json!({"spec": {"size": 4}})),
    )
    .await;
    t.call(
        "merge-patch-status-ignored",
        Method::PATCH,
        &w("w1"),
        MERGE,
        Some(json!({"status": {"phase": "Pending"}})),
    )
    .await;

    // status subresource
    t.call(
        "status-merge-patch",
        Method::PATCH,
        &format!("{}/status", w("w1")),
        MERGE,
        Some(json!({"status": {"phase": "Ready", "observedGeneration": 3}, "spec": {"size": 9}})),
    )
    .await;
    t.call(
        "status-invalid",
        Method::PATCH,
        &format!("{}/status", w("w1")),
        MERGE,
        Some(json!({"status": {"phase": "Broken"}})),
    )
    .await;
    let current = t
        .call("get-for-status-put", Method::GET, &w("w1"), JSON, None)
        .await;
    let mut body = current.body.clone();
    body["status"]["phase"] = json!("Pending");
    body["metadata"]["labels"] = json!({"from-status": "ignored"});
    t.call(
        "status-put",
        Method::PUT,
        &format!("{}/status", w("w1")),
        JSON,
        Some(body),
    )
    .await;
    t.call(
        "status-get",
        Method::GET,
        &format!("{}/status", w("w1")),
        JSON,
        None,
    )
    .await;

    // server-side apply by two managers
    let apply = |size: i64, extra: Value| {
        let mut spec = json!({"size": size});
        spec.as_object_mut()
            .expect("spec")
            .extend(extra.as_object().cloned().unwrap_or_default());
        json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
               "metadata": {"name": "w-ssa", "labels": {"owner": "a"}}, "spec": spec})
    };
    t.call(
        "apply-no-manager",
        Method::PATCH,
        &w("w-ssa"),
        APPLY,
        Some(apply(1, json!({}))),
    )
    .await;
    t.call(
        "apply-create-a",
        Method::PATCH,
        &format!("{}?fieldManager=a", w("w-ssa")),
        APPLY,
        Some(apply(
            1,
            json!({"name": "abc", "ports": [{"name": "http", "port": 80}]}),
        )),
    )
    .await;
    t.call("apply-same-value-b", Method::PATCH, &format!("{}?fieldManager=b", w("w-ssa")), APPLY,
           Some(json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "w-ssa"}, "spec": {"size": 1, "ports": [{"name": "grpc", "port": 90}]}}))).await;
    t.call("apply-conflict-b", Method::PATCH, &format!("{}?fieldManager=b", w("w-ssa")), APPLY,
           Some(json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "w-ssa"}, "spec": {"size": 2, "name": "xyz", "ports": [{"name": "grpc", "port": 90}]}}))).await;
    t.call("apply-force-b", Method::PATCH, &format!("{}?fieldManager=b&force=true", w("w-ssa")), APPLY,
           Some(json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "w-ssa"}, "spec": {"size": 2, "ports": [{"name": "grpc", "port": 90}]}}))).await;
    t.call(
        "apply-a-drops-fields",
        Method::PATCH,
        &format!("{}?fieldManager=a", w("w-ssa")),
        APPLY,
        Some(
            json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "w-ssa"}, "spec": {"size": 2}}),
        ),
    )
    .await;
    t.call(
        "apply-invalid",
        Method::PATCH,
        &format!("{}?fieldManager=a", w("w-ssa")),
        APPLY,
        Some(
            json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "w-ssa"}, "spec": {"size": 0}}),
        ),
    )
    .await;
    t.call("apply-stale-rv", Method::PATCH, &format!("{}?fieldManager=a", w("w-ssa")), APPLY,
           Some(json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "w-ssa", "resourceVersion": rv_after_create}, "spec": {"size": 2}}))).await;
    t.call(
        "apply-status",
        Method::PATCH,
        &format!("{}/status?fieldManager=ctl&force=true", w("w-ssa")),
        APPLY,
        Some(
            json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "w-ssa"}, "status": {"phase": "Ready"}}),
        ),
    )
    .await;
    t.call(
        "update-after-apply",
        Method::PATCH,
        &format!("{}?fieldManager=editor", w("w-ssa")),
        MERGE,
        Some(json!({"spec": {"color": "green"}})),
    )
    .await;
    t.call("get-ssa", Method::GET, &w("w-ssa"), JSON, None)
        .await;
    t.call("delete-ssa", Method::DELETE, &w("w-ssa"), JSON, None)
        .await;

    // schema violations, one per create
    let invalid: [(&str, Value); 20] = [
        ("minimum", json!({"size": 0})),
        ("maximum", json!({"size": 11})),
        ("type-string-for-int", json!({"size": "one"})),
        ("type-float-for-int", json!({"size": 1.5})),
        ("enum", json!({"size": 1, "color": "purple"})),
        ("min-length", json!({"size": 1, "name": "a"})),
        ("max-length", json!({"size": 1, "name": "abcdefghij"})),
        ("pattern", json!({"size": 1, "name": "ABC"})),
        (
            "max-items",
            json!({"size": 1, "tags": ["a", "b", "c", "d"]}),
        ),
        ("set-duplicate", json!({"size": 1, "tags": ["a", "a"]})),
        (
            "map-duplicate-key",
            json!({"size": 1, "ports": [{"name": "x"}, {"name": "x"}]}),
        ),
        (
            "map-missing-key",
            json!({"size": 1, "ports": [{"port": 1}]}),
        ),
        (
            "max-properties",
            json!({"size": 1, "labels": {"a": "1", "b": "2", "c": "3"}}),
        ),
        ("date-time", json!({"size": 1, "when": "yesterday"})),
        ("required", json!({"color": "red"})),
        ("null-not-nullable", json!({"size": 1, "name": null})),
        ("object-for-string", json!({"size": 1, "name": {"a": 1}})),
        ("cel-rule", json!({"size": 1, "name": "forbidden"})),
        (
            "cel-message-expression",
            json!({"size": 1, "min": 5, "max": 2}),
        ),
        (
            "several-at-once",
            json!({"size": 0, "color": "purple", "name": "A"}),
        ),
    ];
    for (case, spec) in invalid {
        t.call(
            &format!("invalid-{case}"),
            Method::POST,
            WIDGETS,
            JSON,
            Some(widget(&format!("bad-{case}"), spec)),
        )
        .await;
    }
    t.call(
        "valid-edge-values",
        Method::POST,
        WIDGETS,
        JSON,
        Some(widget(
            "edge",
            json!({"size": 10, "name": "ab", "count": "50%", "note": null,
                                      "when": "2030-01-01T00:00:00Z", "mode": "fast"}),
        )),
    )
    .await;
    // The date-time format's quirks (kube-openapi's IsDateTime): both servers
    // take or refuse the same texts; what is taken is deleted again.
    let forms = [
        "2030-01-01T00:00:00Zt",
        "2030-01-01t00:00:00.5z",
        "2030-01-01T00:00:00x5Z",
        "2030-01-01T00:00:00.1234567891+99:99",
        "2030-01-01T00:00:00+0100",
        "2030-01-01T00:00",
        "2030-01-01T00:00:00",
        "2030-01-01 00:00:00Z",
        "2030-02-30T00:00:00Z",
        "2030-01-01T24:00:00Z",
    ];
    for (i, when) in forms.into_iter().enumerate() {
        let name = format!("when-{i}");
        let answer = t
            .call(
                &format!("date-time-form-{i}"),
                Method::POST,
                WIDGETS,
                JSON,
                Some(widget(&name, json!({"size": 1, "when": when}))),
            )
            .await;
        if answer.code == 201 {
            t.call(
                &format!("date-time-form-{i}-delete"),
                Method::DELETE,
                &w(&name),
                JSON,
                None,
            )
            .await;
        }
    }
    t.call(
        "invalid-spec-not-object",
        Method::POST,
        WIDGETS,
        JSON,
        Some(
            json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "bad-spec"}, "spec": "nope"}),
        ),
    )
    .await;
    t.call(
        "cel-transition-rule",
        Method::PATCH,
        &w("edge"),
        MERGE,
        Some(json!({"spec": {"mode": "slow"}})),
    )
    .await;
    t.call(
        "invalid-update",
        Method::PATCH,
        &w("edge"),
        MERGE,
        Some(json!({"spec": {"size": 0, "name": "forbidden"}})),
    )
    .await;

    // our own CRDs' rules
    let key = |name: &str, spec: Value| {
        json!({"apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiKey",
                                                "metadata": {"name": name}, "spec": spec})
    };
    t.call("apikey-create", Method::POST, APIKEYS, JSON,
           Some(key("k1", json!({"owner": {"kind": "User", "name": "alice"}, "tags": {"team": "a"},
                                 "tokenDefaults": {"expiration": {"lifetime": "90d"}, "rotation": {"every": "30d"}}})))).await;
    t.call(
        "apikey-owner-immutable",
        Method::PATCH,
        &format!("{APIKEYS}/k1"),
        MERGE,
        Some(json!({"spec": {"owner": {"name": "bob"}}})),
    )
    .await;
    t.call("apikey-invalid", Method::POST, APIKEYS, JSON,
           Some(key("k2", json!({"owner": {"kind": "Robot", "name": ""},
                                 "tokenDefaults": {"expiration": {"lifetime": "90 days", "expiresAt": "2030-01-01T00:00:00Z"}}})))).await;
    t.call(
        "apitoken-create",
        Method::POST,
        APITOKENS,
        JSON,
        Some(
            json!({"apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken",
                       "metadata": {"name": "t1"}, "spec": {"apiKeyRef": {"name": "k1"}}}),
        ),
    )
    .await;
    t.call(
        "apitoken-invalid",
        Method::POST,
        APITOKENS,
        JSON,
        Some(
            json!({"apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken",
                       "metadata": {"name": "t2"}, "spec": {}}),
        ),
    )
    .await;
    t.call_accept(
        "apikey-table",
        Method::GET,
        APIKEYS,
        JSON,
        "application/json;as=Table;v=v1;g=meta.k8s.io",
        None,
    )
    .await;
    t.call_accept(
        "widget-table",
        Method::GET,
        &format!("{WIDGETS}?labelSelector=app"),
        JSON,
        "application/json;as=Table;v=v1;g=meta.k8s.io",
        None,
    )
    .await;

    // watch from a resourceVersion (history replay), with bookmarks requested
    let mark = t
        .call(
            "watch-mark",
            Method::PATCH,
            &w("sel-a"),
            MERGE,
            Some(json!({"metadata": {"labels": {"mark": "1"}}})),
        )
        .await
        .rv();
    t.call(
        "watch-write-1",
        Method::PATCH,
        &w("sel-a"),
        MERGE,
        Some(json!({"spec": {"size": 4}})),
    )
    .await;
    t.call(
        "watch-write-2",
        Method::PATCH,
        &w("sel-b"),
        MERGE,
        Some(json!({"metadata": {"labels": {"app": "c"}}})),
    )
    .await;
    t.call("watch-write-3", Method::DELETE, &w("sel-c"), JSON, None)
        .await;
    t.watch(
        "watch-from-rv",
        &format!(
            "{WIDGETS}?watch=true&allowWatchBookmarks=true&resourceVersion={mark}&timeoutSeconds=2"
        ),
    )
    .await;
    t.watch(
        "watch-from-rv-selector",
        &format!(
            "{WIDGETS}?watch=true&labelSelector=app%3Db&resourceVersion={mark}&timeoutSeconds=2"
        ),
    )
    .await;
    t.watch(
        "watch-name-field",
        &format!("{WIDGETS}?watch=true&fieldSelector=metadata.name%3Dsel-a&timeoutSeconds=1"),
    )
    .await;
    t.watch("watch-initial-events", &format!(
        "{WIDGETS}?watch=true&labelSelector=app&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=2")).await;
    t.watch("watch-initial-events-without-bookmarks", &format!(
        "{WIDGETS}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1")).await;

    // finalizers and deletionTimestamp
    t.call(
        "create-finalized",
        Method::POST,
        WIDGETS,
        JSON,
        Some(
            json!({"apiVersion": "fidelity.apikeys.dev/v1", "kind": "Widget",
                       "metadata": {"name": "w-fin", "finalizers": ["fidelity.apikeys.dev/hold"]},
                       "spec": {"size": 1}}),
        ),
    )
    .await;
    t.call("delete-precondition-uid", Method::DELETE, &w("w-fin"), JSON,
                     Some(json!({"kind": "DeleteOptions", "apiVersion": "v1",
                                 "preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}}))).await;
    t.call("delete-finalized", Method::DELETE, &w("w-fin"), JSON, None)
        .await;
    t.call("get-deleting", Method::GET, &w("w-fin"), JSON, None)
        .await;
    t.call(
        "spec-write-while-deleting",
        Method::PATCH,
        &w("w-fin"),
        MERGE,
        Some(json!({"spec": {"size": 2}})),
    )
    .await;
    t.call("add-finalizer-while-deleting", Method::PATCH, &w("w-fin"), JSON_PATCH,
           Some(json!([{"op": "add", "path": "/metadata/finalizers/-", "value": "fidelity.apikeys.dev/late"}]))).await;
    t.call("delete-again", Method::DELETE, &w("w-fin"), JSON, None)
        .await;
    t.call(
        "remove-finalizer",
        Method::PATCH,
        &w("w-fin"),
        MERGE,
        Some(json!({"metadata": {"finalizers": null}})),
    )
    .await;
    t.call(
        "get-after-finalizer-removed",
        Method::GET,
        &w("w-fin"),
        JSON,
        None,
    )
    .await;
    t.call("delete-missing", Method::DELETE, &w("w-fin"), JSON, None)
        .await;
    t.call(
        "get-generate-name-list",
        Method::GET,
        &format!("{WIDGETS}?labelSelector=app"),
        JSON,
        None,
    )
    .await;
    t.call(
        "delete-dry-run",
        Method::DELETE,
        &format!("{}?dryRun=All", w("w-status")),
        JSON,
        None,
    )
    .await;
    t.call(
        "get-after-dry-run-delete",
        Method::GET,
        &w("w-status"),
        JSON,
        None,
    )
    .await;
    t.call(
        "delete-collection",
        Method::DELETE,
        &format!("{WIDGETS}?labelSelector=app"),
        JSON,
        None,
    )
    .await;
    t.call(
        "list-after-delete-collection",
        Method::GET,
        &format!("{WIDGETS}?labelSelector=app"),
        JSON,
        None,
    )
    .await;

    // A CRD whose CEL message would cost too much to evaluate (estimated at create time).
    let mut costly = widget_crd();
    costly["metadata"]["name"] = json!("costlies.fidelity.apikeys.dev");
    costly["spec"]["names"] = json!({"plural": "costlies", "singular": "costly", "kind": "Costly"});
    costly["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"]
        [1]["messageExpression"] =
        json!("'min ' + string(self.min) + ' exceeds max ' + string(self.max)");
    t.call(
        "crd-cel-cost-exceeded",
        Method::POST,
        CRDS,
        JSON,
        Some(costly),
    )
    .await;
    let mut nonstructural = widget_crd();
    nonstructural["metadata"]["name"] = json!("loose.fidelity.apikeys.dev");
    nonstructural["spec"]["names"] =
        json!({"plural": "loose", "singular": "loose", "kind": "Loose"});
    nonstructural["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["untyped"] = json!({"description": "no type"});
    t.call(
        "crd-not-structural",
        Method::POST,
        CRDS,
        JSON,
        Some(nonstructural),
    )
    .await;

    t.seen
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

/// `tests/upstream/allowlist.md`: a Markdown table of `| step | path | reason |`. `step` matches
/// the whole step name, `path` a prefix of the differing path (`.body.message`); in both `*`
/// stands for any characters.
struct AllowList {
    entries: Vec<(String, String, String)>,
    used: std::cell::RefCell<Vec<bool>>,
}

impl AllowList {
    fn load() -> AllowList {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/upstream/allowlist.md");
        let text = std::fs::read_to_string(path).expect("tests/upstream/allowlist.md");
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

// ---------------------------------------------------------------------------------------------
// 4. The operator's custom-resource writes against the upstream server.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_status_apply_and_rotation_request_work_upstream() {
    let Some(up) =
        Upstream::start("operator_status_apply_and_rotation_request_work_upstream").await
    else {
        return;
    };
    let client = up.client.clone();
    // install_crds: server-side apply of both CRDs with our field manager, wait for Established.
    apikey_operator::cli::install_crds(client.clone(), DEADLINE)
        .await
        .expect("install_crds against upstream");
    // Applying again is a no-op, as when the operator restarts.
    apikey_operator::cli::install_crds(client.clone(), DEADLINE)
        .await
        .expect("install_crds again");

    let keys: Api<ApiKey> = Api::namespaced(client.clone(), NS);
    let tokens: Api<ApiToken> = Api::namespaced(client.clone(), NS);
    let key: ApiKey = serde_json::from_value(json!({
        "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiKey", "metadata": {"name": "k1"},
        "spec": {"owner": {"kind": "User", "name": "alice"}}
    }))
    .expect("ApiKey");
    let key = keys
        .create(&PostParams::default(), &key)
        .await
        .expect("key");
    // The status write exactly as the key reconciler makes it: apply on /status, our manager,
    // force, and the read resourceVersion as a precondition.
    let status = ApiKeyStatus {
        principal: Some("alice".into()),
        tokens: Some(0),
        ready_tokens: Some(0),
        expired_tokens: Some(0),
        observed_generation: key.metadata.generation,
        ..Default::default()
    };
    let body = json!({
        "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiKey",
        "metadata": {"name": "k1", "resourceVersion": key.resource_version()},
        "status": status,
    });
    let written = keys
        .patch_status(
            "k1",
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .expect("status apply");
    assert_eq!(
        written.status.as_ref().and_then(|s| s.principal.as_deref()),
        Some("alice")
    );
    assert_eq!(
        written.metadata.generation, key.metadata.generation,
        "status writes keep generation"
    );
    let managers: Vec<(String, Option<String>)> = written
        .managed_fields()
        .iter()
        .map(|m| (m.manager.clone().unwrap_or_default(), m.subresource.clone()))
        .collect();
    assert!(
        managers.contains(&(FIELD_MANAGER.to_owned(), Some("status".to_owned()))),
        "{managers:?}"
    );
    // The same write with the old resourceVersion is a conflict (the reconciler then re-reads).
    let stale = keys
        .patch_status(
            "k1",
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .expect_err("stale resourceVersion");
    assert!(
        matches!(&stale, kube::Error::Api(s) if s.code == 409),
        "{stale}"
    );

    // A rotation request: `apikey-operator rotate` sets the annotation by merge patch.
    let token: ApiToken = serde_json::from_value(json!({
        "apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken", "metadata": {"name": "t1"},
        "spec": {"apiKeyRef": {"name": "k1"}}
    }))
    .expect("ApiToken");
    tokens
        .create(&PostParams::default(), &token)
        .await
        .expect("token");
    apikey_operator::cli::rotate(client.clone(), NS, "t1", "r1", None)
        .await
        .expect("rotate annotation");
    let token = tokens.get("t1").await.expect("token");
    assert_eq!(
        token
            .annotations()
            .get(ROTATE_ANNOTATION)
            .map(String::as_str),
        Some("r1")
    );
    assert_eq!(token_state::rotation_request(&token), Some("r1"));
    assert_eq!(
        token.metadata.generation,
        Some(1),
        "annotations do not bump generation"
    );

    // The controller records the request in status.pending, then promotes it.
    let hash = hash_value("fidelity-test-value");
    let pending = token_state::pending(
        &token.status.clone().unwrap_or_default(),
        &token,
        IssueKind::Initial,
        &hash,
        "tid",
        Timestamp::now(),
    );
    let apply_status = |status: &apikey_operator::api::ApiTokenStatus, rv: Option<String>| {
        json!({"apiVersion": "apikeys.dev/v1alpha1", "kind": "ApiToken",
               "metadata": {"name": "t1", "resourceVersion": rv}, "status": status})
    };
    let written = tokens
        .patch_status(
            "t1",
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(apply_status(&pending, token.resource_version())),
        )
        .await
        .expect("pending status");
    let recorded = written.status.clone().unwrap_or_default();
    assert_eq!(
        recorded
            .pending
            .as_ref()
            .and_then(|p| p.rotation_request.as_deref()),
        Some("r1")
    );
    let mut done = token_state::promoted(&recorded, hash.as_str(), "tid");
    done.pending = None;
    done.last_rotation_request = Some("r1".into());
    tokens
        .patch_status(
            "t1",
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(apply_status(&done, written.resource_version())),
        )
        .await
        .expect("promoted status");
    // `rotate --wait` sees it recorded.
    apikey_operator::cli::rotate(
        client.clone(),
        NS,
        "t1",
        "r1",
        Some(Duration::from_secs(10)),
    )
    .await
    .expect("rotate --wait sees the request recorded");
    let token = tokens.get("t1").await.expect("token");
    let status = token.status.clone().expect("status");
    assert!(status.pending.is_none(), "pending cleared by the apply");
    assert_eq!(status.hash.as_deref(), Some(hash.as_str()));

    // The verifier's lastUsedAt write: applied for this token's uid, refused
    // (422) for another's, as for a token deleted and created again.
    let usage = |uid: &str| apikey_operator::verifier::last_used::Usage {
        namespace: NS.into(),
        name: "t1".into(),
        uid: uid.to_owned(),
        at: "2026-06-01T12:00:00Z".parse().expect("time"),
    };
    let params = PatchParams {
        field_manager: Some(apikey_operator::verifier::last_used::FIELD_MANAGER.to_owned()),
        ..Default::default()
    };
    let own = apikey_operator::verifier::last_used::usage_patch(&usage(
        token.uid().as_deref().expect("uid"),
    ));
    let used = tokens
        .patch_status("t1", &params, &Patch::<()>::Json(own))
        .await
        .expect("lastUsedAt for this token");
    assert_eq!(
        used.status.and_then(|s| s.last_used_at).map(|t| t.0),
        Some("2026-06-01T12:00:00Z".parse().expect("time"))
    );
    let other = apikey_operator::verifier::last_used::usage_patch(&usage("another-uid"));
    match tokens
        .patch_status("t1", &params, &Patch::<()>::Json(other))
        .await
    {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 422, "{e:?}"),
        other => panic!("a patch for another uid must be refused: {other:?}"),
    }

    // A status time in the year 9999, or with text after it, which Go takes
    // and the Rust clients cannot decode, is refused upstream too
    // (manifests/crds.rs checks every field), and so is such a spec time.
    for bad in ["9999-12-31T23:59:59Z", "2030-01-01T00:00:00Zt"] {
        let far = Patch::Merge(json!({"status": {"lastUsedAt": bad}}));
        match tokens
            .patch_status("t1", &PatchParams::default(), &far)
            .await
        {
            Err(kube::Error::Api(e)) => assert!(
                e.code == 422 && e.message.contains("status.lastUsedAt"),
                "{e:?}"
            ),
            other => panic!("{bad} was not refused upstream: {other:?}"),
        }
        let spec = Patch::Merge(json!({"spec": {"expiration": {"expiresAt": bad}}}));
        match tokens.patch("t1", &PatchParams::default(), &spec).await {
            Err(kube::Error::Api(e)) => assert!(
                e.code == 422 && e.message.contains("spec.expiration.expiresAt"),
                "{e:?}"
            ),
            other => panic!("{bad} in spec was not refused upstream: {other:?}"),
        }
    }
}
