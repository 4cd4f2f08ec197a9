//! The bad-input corpus (`corpus/*.yaml`): each file read with the outcome its header promises
//! (the format is in `mod.rs`).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Rejected(String),
    Condition(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SecretExpect {
    Absent,
    Unchanged,
}

#[derive(Debug)]
pub struct Case {
    pub file: String,
    pub ns: String,
    pub docs: Vec<Value>,
    pub expect: Expect,
    pub events: Vec<String>,
    pub rotations: Option<i64>,
    pub secret: Option<SecretExpect>,
}

impl Case {
    pub fn subject(&self) -> &Value {
        self.docs.last().expect("a subject")
    }
    pub fn kind(&self) -> &str {
        self.subject()["kind"].as_str().unwrap_or_default()
    }
    pub fn name(&self) -> &str {
        self.subject()["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
    }
    /// The Secret the subject (an ApiToken) writes its value to.
    pub fn secret_name(&self) -> String {
        self.subject()["spec"]["secret"]["name"]
            .as_str()
            .unwrap_or(self.name())
            .to_owned()
    }
}

pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/operator/bad_input/corpus")
}

/// Reads and checks every manifest and its header.
pub fn load_corpus() -> Vec<Case> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/operator/bad_input/corpus exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .enumerate()
        .map(|(i, path)| parse_case(path, &format!("bad-{i:02}")))
        .collect()
}

fn parse_case(path: &Path, ns: &str) -> Case {
    let file = path
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or_default()
        .to_owned();
    let text = std::fs::read_to_string(path).expect("manifest readable");
    let mut expect = None;
    let mut events = Vec::new();
    let mut rotations = None;
    let mut secret = None;
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        let line = line.trim_start_matches('#').trim();
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "expect" => {
                assert!(expect.is_none(), "{file}: more than one expect line");
                expect = Some(match value.split_once(' ') {
                    Some(("rejected", why)) => Expect::Rejected(why.trim().to_owned()),
                    Some(("condition", reason)) => Expect::Condition(reason.trim().to_owned()),
                    _ => panic!("{file}: bad expect line {line:?}"),
                });
            }
            "event" => events.push(value.to_owned()),
            "rotations" => rotations = Some(value.parse().expect("rotations: <n>")),
            "secret" => {
                secret = Some(match value {
                    "absent" => SecretExpect::Absent,
                    "unchanged" => SecretExpect::Unchanged,
                    other => panic!("{file}: bad secret line {other:?}"),
                })
            }
            _ => {}
        }
    }
    let expect = expect.unwrap_or_else(|| panic!("{file}: no `# expect:` line"));
    let mut docs = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let mut value: Value = serde::Deserialize::deserialize(document).expect("manifest is YAML");
        if value.is_null() {
            continue;
        }
        if value["metadata"]["namespace"].is_null() {
            value["metadata"]["namespace"] = json!(ns);
        }
        docs.push(value);
    }
    assert!(!docs.is_empty(), "{file}: no documents");
    if matches!(expect, Expect::Rejected(_)) {
        assert!(
            events.is_empty() && rotations.is_none() && secret.is_none(),
            "{file}: a rejected manifest has no other expectations"
        );
    }
    Case {
        file,
        ns: ns.to_owned(),
        docs,
        expect,
        events,
        rotations,
        secret,
    }
}
