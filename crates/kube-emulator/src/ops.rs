//! The API verbs (create, update, patch, delete) on the locked `State`: metadata bookkeeping,
//! status subresource isolation, generation, finalizers, CR validation and kind-specific rules.
//! Called by `http` for requests and by `gc` for cascading deletion.

use std::sync::Arc;

use rand::Rng;
use serde_json::{Value, json};

use super::error::{ApiError, field_error};
use super::patch::{self, PatchKind, Writer};
use super::registry::ResourceDef;
use super::schema::{self, FieldErrorKind};
use super::store::{CRD_KEY, EventType, State};

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";
pub const CRD_CLEANUP: &str = "customresourcecleanup.apiextensions.k8s.io";

/// How unknown fields of a custom resource are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    #[default]
    Prune,
    Strict,
}

/// The request-independent context of one write.
#[derive(Debug, Clone)]
pub struct WriteCtx {
    pub def: Arc<ResourceDef>,
    pub version: String,
    /// Empty for cluster-scoped resources.
    pub namespace: String,
    pub dry_run: bool,
    pub manager: String,
    pub validation: FieldValidation,
    /// `Some("status")` for writes to the status subresource.
    pub subresource: Option<String>,
}

impl WriteCtx {
    /// A context for writes the server makes itself (GC, namespace cleanup).
    pub fn system(def: Arc<ResourceDef>, namespace: &str) -> WriteCtx {
        WriteCtx {
            version: def.storage_version.clone(),
            def,
            namespace: namespace.to_string(),
            dry_run: false,
            manager: "emulator-gc".into(),
            validation: FieldValidation::Prune,
            subresource: None,
        }
    }

    fn writer<'a>(&'a self, api_version: &'a str, now: &'a str) -> Writer<'a> {
        Writer {
            manager: &self.manager,
            subresource: self.subresource.as_deref().unwrap_or_default(),
            api_version,
            now,
        }
    }
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn new_uid() -> String {
    let mut rng = rand::rng();
    let b: [u8; 16] = rng.random();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The object as served at `version` (objects are stored at the storage version; conversion
/// between CRD versions is `None`-strategy: only apiVersion changes).
pub fn served(def: &ResourceDef, version: &str, obj: &Value) -> Value {
    let mut out = obj.clone();
    out["apiVersion"] = Value::String(def.api_version(version));
    out
}

/// A stored object as a write answers with it: the stored copy itself when the
/// request's version is the one stored (no copy of the object), else converted.
fn served_stored(def: &ResourceDef, version: &str, stored: &Arc<Value>) -> Arc<Value> {
    if stored["apiVersion"].as_str() == Some(def.api_version(version).as_str()) {
        stored.clone()
    } else {
        Arc::new(served(def, version, stored))
    }
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn set_finalizers(obj: &mut Value, list: &[String]) {
    if list.is_empty() {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("finalizers");
        }
    } else {
        obj["metadata"]["finalizers"] = json!(list);
    }
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn validate_name(def: &ResourceDef, name: &str) -> Result<(), ApiError> {
    let ok = if def.plural == "namespaces" && def.group.is_empty() {
        name.len() <= 63 && !name.contains('.') && is_dns_subdomain(name)
    } else {
        is_dns_subdomain(name)
    };
    if ok {
        return Ok(());
    }
    Err(ApiError::invalid(
        def,
        name,
        &[field_error(
            "metadata.name",
            FieldErrorKind::Invalid,
            format!(
                "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
        )],
    ))
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters: a
/// label value (when not empty) or the name part of a qualified name.
fn is_label_token(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// Why `key` is not a qualified name (`[prefix/]name`), as the real server words it.
fn qualified_name_error(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Some("prefix part must be non-empty".to_owned());
        }
        if !is_dns_subdomain(prefix) {
            return Some("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_owned());
        }
    }
    if name.is_empty() {
        return Some("name part must be non-empty".to_owned());
    }
    if name.len() > 63 {
        return Some("name part must be no more than 63 characters".to_owned());
    }
    if name.contains('/') || !is_label_token(name) {
        return Some(QUALIFIED_NAME_MSG.to_owned());
    }
    None
}

/// Total size of all annotations (keys and values) the real server allows.
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// `metadata.labels` and `metadata.annotations` syntax, checked on every write
/// as the real server does (apimachinery `ValidateLabels`, `ValidateAnnotations`).
fn validate_metadata(def: &ResourceDef, name: &str, obj: &Value) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    if let Some(labels) = obj["metadata"]["labels"].as_object() {
        for (key, value) in labels {
            if let Some(why) = qualified_name_error(key) {
                errors.push(field_error(
                    "metadata.labels",
                    FieldErrorKind::Invalid,
                    format!("Invalid value: {}: {why}", quote(key)),
                ));
            }
            let value = value.as_str().unwrap_or_default();
            if value.len() > 63 {
                errors.push(field_error(
                    "metadata.labels",
                    FieldErrorKind::Invalid,
                    format!(
                        "Invalid value: {}: must be no more than 63 characters",
                        quote(value)
                    ),
                ));
            } else if !value.is_empty() && !is_label_token(value) {
                errors.push(field_error(
                    "metadata.labels",
                    FieldErrorKind::Invalid,
                    format!(
                        "Invalid value: {}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                        quote(value)
                    ),
                ));
            }
        }
    }
    if let Some(annotations) = obj["metadata"]["annotations"].as_object() {
        let mut total = 0;
        for (key, value) in annotations {
            total += key.len() + value.as_str().map_or(0, str::len);
            if let Some(why) = qualified_name_error(&key.to_lowercase()) {
                errors.push(field_error(
                    "metadata.annotations",
                    FieldErrorKind::Invalid,
                    format!("Invalid value: {}: {why}", quote(key)),
                ));
            }
        }
        if total > ANNOTATIONS_MAX_BYTES {
            errors.push(field_error(
                "metadata.annotations",
                FieldErrorKind::TooLong,
                format!("Too long: must have at most {ANNOTATIONS_MAX_BYTES} bytes"),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(def, name, &errors))
    }
}

/// Whether a field whose change bumps `metadata.generation` (anything but metadata, and status
/// where it is a subresource) differs between two objects; compared in place, without copies.
fn spec_changed(def: &ResourceDef, a: &Value, b: &Value) -> bool {
    let counts = |k: &str| k != "metadata" && !(def.status_subresource && k == "status");
    let empty = serde_json::Map::new();
    let (a, b) = (
        a.as_object().unwrap_or(&empty),
        b.as_object().unwrap_or(&empty),
    );
    a.iter()
        .filter(|(k, _)| counts(k))
        .any(|(k, v)| b.get(k) != Some(v))
        || b.keys().filter(|k| counts(k)).any(|k| !a.contains_key(k))
}

fn check_kind(def: &ResourceDef, version: &str, obj: &Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    if let Some(kind) = obj["kind"].as_str()
        && kind != def.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the object ({kind}) does not match the kind of the request ({})",
            def.kind
        )));
    }
    if let Some(av) = obj["apiVersion"].as_str()
        && av != def.api_version(version)
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            def.api_version(version)
        )));
    }
    Ok(())
}

/// Validates a custom resource against its CRD schema (defaults, pruning, CEL in `schema`).
fn validate_custom(ctx: &WriteCtx, obj: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
    let Some((schema, prepared)) = ctx.def.schema(&ctx.version) else {
        return Ok(());
    };
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let before = (ctx.validation == FieldValidation::Strict).then(|| obj.clone());
    let checked = match ctx.def.schema_problem(&ctx.version) {
        Some(problem) => Err(schema::malformed(problem)),
        None => schema::validate_and_prune_checked(schema, prepared, obj, old),
    };
    checked.map_err(|errors| ApiError::invalid(&ctx.def, &name, &errors))?;
    if let Some(before) = before {
        let mut unknown = Vec::new();
        pruned_paths(&before, obj, String::new(), &mut unknown);
        if !unknown.is_empty() {
            let fields: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            return Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                ctx.def.kind,
                ctx.version,
                ctx.def.kind,
                fields.join(", ")
            )));
        }
    }
    Ok(())
}

/// Paths present in `before` but pruned from `after` (what strict validation reports).
fn pruned_paths(before: &Value, after: &Value, prefix: String, out: &mut Vec<String>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for (k, bv) in b {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match a.get(k) {
                    Some(av) => pruned_paths(bv, av, path, out),
                    None if prefix.is_empty() && k == "status" => {}
                    None => out.push(path),
                }
            }
        }
        (Value::Array(b), Value::Array(a)) => {
            for (i, (bv, av)) in b.iter().zip(a).enumerate() {
                pruned_paths(bv, av, format!("{prefix}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn base64(bytes: &[u8]) -> Value {
    serde_json::to_value(k8s_openapi::ByteString(bytes.to_vec())).unwrap_or(Value::Null)
}

/// Kind-specific rules the real server applies on every write.
fn apply_kind_rules(
    st: &State,
    ctx: &WriteCtx,
    obj: &mut Value,
    creating: bool,
) -> Result<(), ApiError> {
    match (ctx.def.group.as_str(), ctx.def.plural.as_str()) {
        ("", "secrets") => {
            if obj["type"].as_str().is_none_or(str::is_empty) {
                obj["type"] = json!("Opaque");
            }
            if let Some(Value::Object(string_data)) =
                obj.as_object_mut().and_then(|m| m.remove("stringData"))
            {
                for (k, v) in string_data {
                    let s = v.as_str().unwrap_or_default().as_bytes().to_vec();
                    obj["data"][k] = base64(&s);
                }
            }
        }
        ("", "namespaces") => {
            if creating {
                obj["spec"]["finalizers"] = json!(["kubernetes"]);
                obj["status"] = json!({"phase": "Active"});
            }
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            accept_crd(st, ctx, obj, creating)?;
        }
        _ => {}
    }
    Ok(())
}

/// Validates a CRD and fills in what the apiextensions controllers would: status and finalizer.
fn accept_crd(st: &State, ctx: &WriteCtx, obj: &mut Value, creating: bool) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let spec = &obj["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    let kind = spec["names"]["kind"].as_str().unwrap_or_default();
    let mut errors = Vec::new();
    if group.is_empty() {
        errors.push(field_error(
            "spec.group",
            FieldErrorKind::Required,
            "Required value",
        ));
    }
    if plural.is_empty() {
        errors.push(field_error(
            "spec.names.plural",
            FieldErrorKind::Required,
            "Required value",
        ));
    }
    if kind.is_empty() {
        errors.push(field_error(
            "spec.names.kind",
            FieldErrorKind::Required,
            "Required value",
        ));
    }
    if name != format!("{plural}.{group}") {
        errors.push(field_error(
            "metadata.name",
            FieldErrorKind::Invalid,
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    if !matches!(spec["scope"].as_str(), Some("Namespaced" | "Cluster")) {
        errors.push(field_error(
            "spec.scope",
            FieldErrorKind::Invalid,
            "Unsupported value: must be one of \"Cluster\", \"Namespaced\"",
        ));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    let storage: Vec<&str> = versions
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .filter_map(|v| v["name"].as_str())
        .collect();
    if storage.len() != 1 {
        errors.push(field_error(
            "spec.versions",
            FieldErrorKind::Invalid,
            "Invalid value: must have exactly one version marked as storage version",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(&ctx.def, &name, &errors));
    }
    let clash = st
        .registry
        .all()
        .iter()
        .any(|d| d.group == group && d.plural == plural && d.custom.is_none());
    if clash {
        return Err(ApiError::invalid(
            &ctx.def,
            &name,
            &[field_error(
                "spec.names.plural",
                FieldErrorKind::Invalid,
                "Invalid value: conflicts with a built-in resource",
            )],
        ));
    }
    let mut accepted = obj["spec"]["names"].clone();
    if accepted["singular"].as_str().is_none_or(str::is_empty) {
        accepted["singular"] = json!(kind.to_lowercase());
    }
    if accepted["listKind"].as_str().is_none_or(str::is_empty) {
        accepted["listKind"] = json!(format!("{kind}List"));
    }
    obj["spec"]["names"] = accepted.clone();
    let mut stored: Vec<Value> = obj["status"]["storedVersions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let storage_version = json!(storage[0]);
    if !stored.contains(&storage_version) {
        stored.push(storage_version);
    }
    let since = obj["status"]["conditions"][0]["lastTransitionTime"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(now_rfc3339);
    obj["status"] = json!({
        "acceptedNames": accepted,
        "storedVersions": stored,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": since},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": since},
        ],
    });
    if creating {
        let mut f = finalizers(obj);
        if !f.iter().any(|x| x == CRD_CLEANUP) {
            f.push(CRD_CLEANUP.to_string());
            set_finalizers(obj, &f);
        }
    }
    Ok(())
}

fn namespace_gate(st: &State, ctx: &WriteCtx) -> Result<(), ApiError> {
    if !ctx.def.namespaced {
        return Ok(());
    }
    let Some(nsdef) = st.registry.lookup("", "v1", "namespaces") else {
        return Ok(());
    };
    match st.get(&nsdef.key(), "", &ctx.namespace) {
        None => Err(ApiError::not_found(&nsdef, &ctx.namespace)),
        Some(ns) if ns["metadata"]["deletionTimestamp"].is_string() => Err(ApiError::forbidden(
            &ctx.def,
            "",
            &format!(
                "unable to create new content in namespace {} because it is being terminated",
                ctx.namespace
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// POST: creates an object; returns it as served.
pub fn create(st: &mut State, ctx: &WriteCtx, mut obj: Value) -> Result<Arc<Value>, ApiError> {
    check_kind(&ctx.def, &ctx.version, &obj)?;
    let def = ctx.def.clone();
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    let md = &mut obj["metadata"];
    let name = match md["name"].as_str().filter(|n| !n.is_empty()) {
        Some(n) => n.to_string(),
        None => match md["generateName"].as_str().filter(|n| !n.is_empty()) {
            Some(prefix) => format!("{prefix}{}", random_suffix()),
            None => {
                return Err(ApiError::invalid(
                    &def,
                    "",
                    &[field_error(
                        "metadata.name",
                        FieldErrorKind::Required,
                        "Required value: name or generateName is required",
                    )],
                ));
            }
        },
    };
    validate_name(&def, &name)?;
    md["name"] = json!(name);
    if def.namespaced {
        if let Some(ns) = md["namespace"].as_str()
            && ns != ctx.namespace
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        md["namespace"] = json!(ctx.namespace);
    } else if let Some(m) = md.as_object_mut() {
        m.remove("namespace");
    }
    let now = now_rfc3339();
    if let Some(m) = md.as_object_mut() {
        for k in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            m.remove(k);
        }
    }
    md["uid"] = json!(new_uid());
    md["creationTimestamp"] = json!(now);
    md["generation"] = json!(1);
    obj["apiVersion"] = json!(def.api_version(&def.storage_version));
    obj["kind"] = json!(def.kind);
    if def.status_subresource
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
    namespace_gate(st, ctx)?;
    validate_metadata(&def, &name, &obj)?;
    apply_kind_rules(st, ctx, &mut obj, true)?;
    if def.custom.is_some() {
        validate_custom(ctx, &mut obj, None)?;
    }
    if st.get(&def.key(), &ctx.namespace, &name).is_some() {
        return Err(ApiError::already_exists(&def, &name));
    }
    if obj["metadata"]["managedFields"].is_null() {
        let av = def.api_version(&ctx.version);
        patch::record_update(None, &mut obj, &ctx.writer(&av, &now));
    }
    if ctx.dry_run {
        return Ok(Arc::new(served(&def, &ctx.version, &obj)));
    }
    // A whole-store collection only when an owner is absent: with every owner
    // present there is nothing to collect, and scanning per write is quadratic.
    if st.owner_missing(&obj) {
        st.gc_pending = true;
    }
    let stored = st.put(&def, obj, EventType::Added);
    Ok(served_stored(&def, &ctx.version, &stored))
}

/// Loads the current object or 404s.
pub fn current(st: &State, ctx: &WriteCtx, name: &str) -> Result<Arc<Value>, ApiError> {
    st.get(&ctx.def.key(), &ctx.namespace, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&ctx.def, name))
}

/// PUT: replaces an object (or its status); `track` records managedFields for the writer.
pub fn update(
    st: &mut State,
    ctx: &WriteCtx,
    name: &str,
    obj: Value,
) -> Result<Arc<Value>, ApiError> {
    check_kind(&ctx.def, &ctx.version, &obj)?;
    let old = current(st, ctx, name)?;
    if let Some(body_name) = obj["metadata"]["name"].as_str()
        && body_name != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    match obj["metadata"]["resourceVersion"].as_str() {
        Some(rv) if Some(rv) != old["metadata"]["resourceVersion"].as_str() => {
            return Err(ApiError::stale(&ctx.def, name));
        }
        None if ctx.def.custom.is_some() => {
            return Err(ApiError::invalid_by_resource(
                &ctx.def,
                name,
                &[field_error(
                    "metadata.resourceVersion",
                    FieldErrorKind::Invalid,
                    "Invalid value: 0: must be specified for an update",
                )],
            ));
        }
        _ => {}
    }
    commit_update(st, ctx, &old, obj, Commit::Client)
}

/// How `commit_update` treats the new object.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Commit {
    /// Sent by a client (update, patch): isolate the subresource, record the writer.
    Client,
    /// Merged by server-side apply (managedFields recorded already) from a
    /// converted copy, which may differ from the stored object outside status.
    Applied,
    /// Merged by server-side apply from the stored object itself: a status
    /// apply changed nothing outside status, so there is nothing to isolate.
    AppliedToStored,
}

/// Shared tail of update and patch: isolation, validation, generation, finalizers, store.
fn commit_update(
    st: &mut State,
    ctx: &WriteCtx,
    old: &Arc<Value>,
    mut new: Value,
    how: Commit,
) -> Result<Arc<Value>, ApiError> {
    let def = ctx.def.clone();
    let name = old["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let status = ctx.subresource.as_deref() == Some("status");
    if status && how == Commit::AppliedToStored {
        // Nothing to isolate: the merge started from `old` and touched status only.
    } else if status {
        let mut base = (**old).clone();
        match new.get("status") {
            Some(s) => base["status"] = s.clone(),
            None => {
                if let Some(m) = base.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        if let Some(mf) = new["metadata"].get("managedFields") {
            base["metadata"]["managedFields"] = mf.clone();
        }
        new = base;
    } else if def.status_subresource {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    if !new["metadata"].is_object() {
        new["metadata"] = json!({});
    }
    for k in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "resourceVersion",
    ] {
        match old["metadata"].get(k) {
            Some(v) => new["metadata"][k] = v.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(k);
                }
            }
        }
    }
    new["apiVersion"] = json!(def.api_version(&def.storage_version));
    new["kind"] = json!(def.kind);
    let deleting = old["metadata"]["deletionTimestamp"].is_string();
    if deleting {
        let before = finalizers(old);
        if let Some(added) = finalizers(&new).into_iter().find(|f| !before.contains(f)) {
            return Err(ApiError::invalid(
                &def,
                &name,
                &[field_error(
                    "metadata.finalizers",
                    FieldErrorKind::Forbidden,
                    // Go's %#v of a []string.
                    format!(
                        "no new finalizers can be added if the object is being deleted, found new finalizers []string{{\"{added}\"}}"
                    ),
                )],
            ));
        }
    }
    validate_metadata(&def, &name, &new)?;
    apply_kind_rules(st, ctx, &mut new, false)?;
    if def.custom.is_some() {
        validate_custom(ctx, &mut new, Some(old))?;
    }
    if spec_changed(&def, &new, old) {
        let gen_ = old["metadata"]["generation"].as_i64().unwrap_or(1);
        new["metadata"]["generation"] = json!(gen_ + 1);
    }
    if new["metadata"].get("managedFields").is_none()
        && let Some(mf) = old["metadata"].get("managedFields")
    {
        new["metadata"]["managedFields"] = mf.clone();
    }
    let now = now_rfc3339();
    if how == Commit::Client {
        let av = def.api_version(&ctx.version);
        patch::record_update(Some(old), &mut new, &ctx.writer(&av, &now));
    }
    if new == **old {
        return Ok(served_stored(&def, &ctx.version, old));
    }
    if ctx.dry_run {
        return Ok(Arc::new(served(&def, &ctx.version, &new)));
    }
    if deleting && finalizers(&new).is_empty() && !is_namespace(&def) {
        let ns = ctx.namespace.clone();
        st.put(&def, new, EventType::Modified);
        let gone = st.remove(&def, &ns, &name).unwrap_or_else(|| old.clone());
        return Ok(served_stored(&def, &ctx.version, &gone));
    }
    if new["metadata"]["ownerReferences"] != old["metadata"]["ownerReferences"]
        && st.owner_missing(&new)
    {
        st.gc_pending = true;
    }
    let stored = st.put(&def, new, EventType::Modified);
    Ok(served_stored(&def, &ctx.version, &stored))
}

fn is_namespace(def: &ResourceDef) -> bool {
    def.group.is_empty() && def.plural == "namespaces"
}

/// PATCH in any of the four patch types; apply may create the object.
pub fn patch(
    st: &mut State,
    ctx: &WriteCtx,
    name: &str,
    kind: PatchKind,
    body: &[u8],
    force: bool,
) -> Result<Arc<Value>, ApiError> {
    if kind == PatchKind::Strategic && ctx.def.custom.is_some() {
        return Err(ApiError::unsupported_media(
            "application/strategic-merge-patch+json is not supported for custom resources",
        ));
    }
    if kind == PatchKind::Apply {
        return apply(st, ctx, name, parse_apply_body(body)?, force);
    }
    let old = current(st, ctx, name)?;
    let mut target = served(&ctx.def, &ctx.version, &old);
    match kind {
        PatchKind::Json => patch::json_patch(&mut target, body)?,
        PatchKind::Merge => patch::merge_patch(&mut target, body)?,
        PatchKind::Strategic => patch::strategic_patch(&mut target, body)?,
        PatchKind::Apply => {}
    }
    if target["metadata"]["name"].as_str() != Some(name) {
        return Err(ApiError::bad_request(
            "metadata.name cannot be changed by a patch",
        ));
    }
    if target["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"] {
        return Err(ApiError::stale(&ctx.def, name));
    }
    commit_update(st, ctx, &old, target, Commit::Client)
}

/// An apply body: YAML, or JSON (a subset of YAML), which clients such as kube-rs send and which
/// parses far faster with a JSON parser. Callers parse it before taking the store lock.
pub fn parse_apply_body(body: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(_) => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}"))),
    }
}

/// PATCH with `application/apply-patch+yaml` (server-side apply) of a parsed body.
pub fn apply(
    st: &mut State,
    ctx: &WriteCtx,
    name: &str,
    mut applied: Value,
    force: bool,
) -> Result<Arc<Value>, ApiError> {
    check_kind(&ctx.def, &ctx.version, &applied)?;
    if applied["apiVersion"].is_null() || applied["kind"].is_null() {
        return Err(ApiError::bad_request(
            "apiVersion and kind must be set in an apply request",
        ));
    }
    if let Some(n) = applied["metadata"]["name"].as_str()
        && n != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    applied["metadata"]["name"] = json!(name);
    if let Some(m) = applied.as_object_mut() {
        match ctx.subresource.as_deref() {
            Some("status") => {
                m.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"))
            }
            _ if ctx.def.status_subresource => {
                m.remove("status");
            }
            _ => {}
        }
    }
    if ctx.subresource.is_some()
        && let Some(md) = applied["metadata"].as_object_mut()
    {
        // resourceVersion stays: it is the apply's precondition, on subresources too.
        md.retain(|k, _| k == "name" || k == "namespace" || k == "resourceVersion");
    }
    let av = ctx.def.api_version(&ctx.version);
    let now = now_rfc3339();
    let writer = ctx.writer(&av, &now);
    let old = st.get(&ctx.def.key(), &ctx.namespace, name).cloned();
    if let Some(rv) = applied["metadata"]["resourceVersion"].as_str()
        && old
            .as_ref()
            .and_then(|o| o["metadata"]["resourceVersion"].as_str())
            != Some(rv)
    {
        return Err(ApiError::stale(&ctx.def, name));
    }
    // The stored object itself when it is already at the request's version.
    let converted = old
        .as_ref()
        .filter(|o| o["apiVersion"].as_str() != Some(av.as_str()))
        .map(|o| served(&ctx.def, &ctx.version, o));
    let current_served = converted.as_ref().or(old.as_deref());
    let merged = patch::server_side_apply(current_served, &applied, &writer, force)
        .map_err(|conflicts| ApiError::apply_conflict(&ctx.def, &conflicts))?;
    match old {
        None if ctx.subresource.is_some() => Err(ApiError::not_found(&ctx.def, name)),
        None => create(st, ctx, merged),
        Some(old) if converted.is_some() => commit_update(st, ctx, &old, merged, Commit::Applied),
        Some(old) => commit_update(st, ctx, &old, merged, Commit::AppliedToStored),
    }
}

/// Options of a DELETE (from the DeleteOptions body or query).
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub propagation: Option<String>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    /// `dryRun: [All]` in the DeleteOptions body.
    pub dry_run: bool,
}

/// What a delete produced.
pub enum Deleted {
    /// The object is still there, terminating until its finalizers are gone;
    /// a delete answers with it.
    Terminating(Value),
    /// The object is gone (or would be, in a dry run), as it was last stored.
    /// A delete answers with a Success `Status` naming it; a deletecollection
    /// lists the object.
    Gone(Value),
}

impl Deleted {
    /// The object, for a deletecollection's list.
    pub fn into_object(self) -> Value {
        match self {
            Deleted::Terminating(o) | Deleted::Gone(o) => o,
        }
    }

    /// The answer to a delete of one object.
    pub fn answer(self, def: &ResourceDef) -> Value {
        match self {
            Deleted::Terminating(o) => o,
            Deleted::Gone(o) => json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": o["metadata"]["name"], "group": def.group,
                            "kind": def.plural, "uid": o["metadata"]["uid"]},
            }),
        }
    }
}

pub fn delete(
    st: &mut State,
    ctx: &WriteCtx,
    name: &str,
    opts: &DeleteOpts,
) -> Result<Deleted, ApiError> {
    let def = ctx.def.clone();
    let old = current(st, ctx, name)?;
    if let Some(uid) = &opts.uid
        && old["metadata"]["uid"].as_str() != Some(uid)
    {
        return Err(ApiError::conflict(
            &def,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                old["metadata"]["uid"].as_str().unwrap_or_default()
            ),
        ));
    }
    if let Some(rv) = &opts.resource_version
        && old["metadata"]["resourceVersion"].as_str() != Some(rv)
    {
        return Err(ApiError::conflict(
            &def,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                old["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
            ),
        ));
    }
    let mut obj = (*old).clone();
    let mut fins = finalizers(&obj);
    match opts.propagation.as_deref() {
        Some("Foreground") if !fins.iter().any(|f| f == FOREGROUND) => {
            fins.push(FOREGROUND.to_string())
        }
        Some("Orphan") if !fins.iter().any(|f| f == ORPHAN) => fins.push(ORPHAN.to_string()),
        Some("Foreground" | "Orphan" | "Background") | None => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid propagationPolicy {other:?}: must be Orphan, Background or Foreground"
            )));
        }
    }
    let terminating = !fins.is_empty() || is_namespace(&def);
    if terminating {
        set_finalizers(&mut obj, &fins);
        if !obj["metadata"]["deletionTimestamp"].is_string() {
            obj["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            let gen_ = obj["metadata"]["generation"].as_i64().unwrap_or(1);
            obj["metadata"]["generation"] = json!(gen_ + 1);
        }
        if is_namespace(&def) {
            obj["status"]["phase"] = json!("Terminating");
        }
        if obj == *old || ctx.dry_run {
            return Ok(Deleted::Terminating(served(&def, &ctx.version, &obj)));
        }
        st.gc_pending = true;
        let stored = st.put(&def, obj, EventType::Modified);
        return Ok(Deleted::Terminating(served(&def, &ctx.version, &stored)));
    }
    let gone = if ctx.dry_run {
        old.clone()
    } else {
        st.remove(&def, &ctx.namespace, name).unwrap_or(old)
    };
    Ok(Deleted::Gone(served(&def, &ctx.version, &gone)))
}

/// Removes one finalizer (server-side, for GC and namespace/CRD cleanup).
pub fn drop_finalizer(
    st: &mut State,
    def: &Arc<ResourceDef>,
    ns: &str,
    name: &str,
    finalizer: &str,
) {
    let Some(old) = st.get(&def.key(), ns, name).cloned() else {
        return;
    };
    let mut obj = (*old).clone();
    let fins: Vec<String> = finalizers(&obj)
        .into_iter()
        .filter(|f| f != finalizer)
        .collect();
    set_finalizers(&mut obj, &fins);
    if fins.is_empty() && obj["metadata"]["deletionTimestamp"].is_string() {
        st.remove(def, ns, name);
    } else if obj != *old {
        st.put(def, obj, EventType::Modified);
    }
}

/// Replaces an object with a server-computed value (GC removing ownerReferences).
pub fn rewrite(st: &mut State, def: &Arc<ResourceDef>, obj: Value) {
    st.put(def, obj, EventType::Modified);
}

/// Metadata bookkeeping helpers used by the initial namespaces.
pub fn seed_namespace(st: &mut State, name: &str) {
    let Some(def) = st.registry.lookup("", "v1", "namespaces") else {
        return;
    };
    if st.get(&def.key(), "", name).is_some() {
        return;
    }
    let ctx = WriteCtx::system(def, "");
    let _ = create(st, &ctx, json!({"metadata": {"name": name}}));
}

pub fn is_crd(def: &ResourceDef) -> bool {
    def.key() == CRD_KEY
}
