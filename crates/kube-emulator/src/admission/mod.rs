//! Admission webhooks. A write passes two gates (from `ops`): the mutating one before its object
//! is validated, the validating one after validation and defaulting, just before it is stored.
//! With webhooks to ask, a gate stops the write with a `Pending` naming them; `http` drops the
//! store lock, asks them (`call`), and runs the write again with `Admission::Answered`, which
//! takes the objects they answered for if nothing changed meanwhile (upstream's GuaranteedUpdate
//! retry otherwise). `matching` decides who is asked, `validation` which configurations are kept.

mod call;
mod matching;
mod policy;
mod validation;

use std::sync::Arc;

use kube::core::cel::{AdmissionRequest, GroupVersionKind, GroupVersionResource, VapEvaluator};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::ops::{WriteCtx, served};
use crate::registry::ResourceDef;
use crate::store::State;

pub use call::{ServiceAddrs, dispatch, dispatch_mutating};
use matching::{Rule, Target, rule_matches, selector_is_empty, selector_matches};
pub use matching::{Webhook, compile_all};
pub use policy::{Policy, compile_policies};
pub use validation::validate_configuration;

/// Store keys of the configurations the gates read.
pub const VALIDATING_KEY: &str = "admissionregistration.k8s.io/validatingwebhookconfigurations";
pub const MUTATING_KEY: &str = "admissionregistration.k8s.io/mutatingwebhookconfigurations";
pub const POLICY_KEY: &str = "admissionregistration.k8s.io/validatingadmissionpolicies";
pub const BINDING_KEY: &str = "admissionregistration.k8s.io/validatingadmissionpolicybindings";

/// Where a write stands with admission webhooks.
#[derive(Debug, Clone, Default)]
pub enum Admission {
    /// Writes the server makes itself (garbage collection, namespace cleanup).
    #[default]
    Exempt,
    /// A client's write: matching webhooks are asked before it is stored.
    Required,
    /// Webhooks answered for the stored object at `base`: the object the mutating ones left
    /// and the one the validating ones allowed, once each phase is over (the inner `None`
    /// being a delete's absent object).
    Answered {
        base: Option<String>,
        mutated: Option<Option<Arc<Value>>>,
        allowed: Option<Option<Arc<Value>>>,
    },
}

/// Which webhooks a gate asks: mutating ones before validation, validating ones after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Mutating,
    Validating,
}

/// The admission operation of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }

    fn options_kind(self) -> &'static str {
        match self {
            Operation::Create => "CreateOptions",
            Operation::Update => "UpdateOptions",
            Operation::Delete => "DeleteOptions",
        }
    }
}

/// One webhook to ask and the AdmissionReview it gets.
#[derive(Debug, Clone)]
pub struct Call {
    pub webhook: Arc<Webhook>,
    pub uid: String,
    pub review: Value,
    pub dry_run: bool,
}

/// A write stopped at a gate: who to ask, and what they are asked about.
#[derive(Debug, Clone)]
pub struct Pending {
    pub phase: Phase,
    pub calls: Vec<Call>,
    base: Option<String>,
    pub object: Option<Arc<Value>>,
}

impl Pending {
    /// The admission state of the write's next run once the webhooks of this phase answered
    /// (`object`: what the mutating ones left; the validating ones allow `self.object`).
    pub fn answered(&self, before: &Admission, object: Option<Arc<Value>>) -> Admission {
        let earlier = match before {
            Admission::Answered { base, mutated, .. } if *base == self.base => mutated.clone(),
            _ => None,
        };
        // A mutation is validated afresh; validation keeps the mutation it followed.
        let (mutated, allowed) = match self.phase {
            Phase::Mutating => (Some(object), None),
            Phase::Validating => (earlier, Some(self.object.clone())),
        };
        Admission::Answered {
            base: self.base.clone(),
            mutated,
            allowed,
        }
    }

    /// Adds the request's options (CreateOptions/UpdateOptions/DeleteOptions fields, which
    /// the gate does not know) to every review; only writes that webhooks see pay for them.
    pub fn with_options(mut self, options: &Value) -> Pending {
        for call in &mut self.calls {
            let target = &mut call.review["request"]["options"];
            if let (Some(t), Some(o)) = (target.as_object_mut(), options.as_object()) {
                t.extend(o.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        self
    }
}

/// What the gate checks, from the write in progress.
pub struct Attempt<'a> {
    pub operation: Operation,
    /// The name the client sent (empty on a create with `generateName`); None: the object's.
    pub name: Option<&'a str>,
    pub object: Option<&'a mut Value>,
    pub old: Option<&'a Arc<Value>>,
}

fn rv_of(old: Option<&Arc<Value>>) -> Option<String> {
    old.and_then(|o| o["metadata"]["resourceVersion"].as_str())
        .map(str::to_string)
}

/// The admission gates `ops` calls: the mutating one before validating the object, the
/// validating one just before storing it. Ok to go on (the object replaced by what webhooks
/// answered on an earlier run), or an error (a `Pending` when webhooks must be asked first).
/// With no configuration stored each costs one `is_empty`.
pub fn gate(
    st: &State,
    ctx: &WriteCtx,
    phase: Phase,
    attempt: Attempt<'_>,
) -> Result<(), ApiError> {
    let hooks = match phase {
        Phase::Mutating => &st.mutating_webhooks,
        Phase::Validating => &st.webhooks,
    };
    let policies = phase == Phase::Validating && !st.policies.is_empty();
    if (hooks.is_empty() && !policies) || exempt(&ctx.def) {
        return Ok(());
    }
    match &ctx.admission {
        Admission::Exempt => return Ok(()),
        Admission::Required => {}
        Admission::Answered {
            base,
            mutated,
            allowed,
        } => {
            let answer = match phase {
                Phase::Mutating => mutated,
                Phase::Validating => allowed,
            };
            if let Some(answer) = answer
                && *base == rv_of(attempt.old)
            {
                if let (Some(new), Some(answer)) = (attempt.object, answer) {
                    *new = (**answer).clone();
                }
                return Ok(());
            }
        }
    }
    let name = match attempt.name {
        Some(n) => n.to_string(),
        None => attempt
            .object
            .as_ref()
            .and_then(|o| o["metadata"]["name"].as_str())
            .unwrap_or_default()
            .to_string(),
    };
    if policies {
        policy::check(st, ctx, &attempt, &name)?;
    }
    let calls = matching_calls(st, ctx, hooks, &attempt, &name)?;
    if calls.is_empty() {
        return Ok(());
    }
    Err(ApiError::admission_pending(Pending {
        phase,
        calls,
        base: rv_of(attempt.old),
        object: attempt.object.map(|o| Arc::new(o.clone())),
    }))
}

/// Upstream never sends the admission configuration kinds themselves to webhooks.
fn exempt(def: &ResourceDef) -> bool {
    def.group == "admissionregistration.k8s.io"
}

fn namespace_labels(st: &State, ctx: &WriteCtx, attempt: &Attempt<'_>, ns: &str) -> Value {
    if is_namespaces(&ctx.def)
        && ctx.subresource.is_none()
        && attempt.operation != Operation::Delete
        && let Some(obj) = &attempt.object
    {
        return obj["metadata"]["labels"].clone();
    }
    st.get("/namespaces", "", ns)
        .map(|n| n["metadata"]["labels"].clone())
        .unwrap_or(Value::Null)
}

/// The namespace of a request as upstream's attributes carry it: a Namespace's own name for
/// namespaces.
fn request_namespace(ctx: &WriteCtx, attempt: &Attempt<'_>, name: &str) -> String {
    if !is_namespaces(&ctx.def) {
        return ctx.namespace.clone();
    }
    attempt
        .old
        .and_then(|o| o["metadata"]["name"].as_str())
        .or_else(|| {
            attempt
                .object
                .as_ref()
                .and_then(|o| o["metadata"]["name"].as_str())
        })
        .unwrap_or(name)
        .to_string()
}

fn is_namespaces(def: &ResourceDef) -> bool {
    def.group.is_empty() && def.plural == "namespaces"
}

/// What decides whether a webhook or a policy sees a request.
pub struct Scope<'a> {
    pub rules: &'a [Rule],
    pub exclude: &'a [Rule],
    pub namespace_selector: &'a Value,
    pub object_selector: &'a Value,
    pub match_equivalent: bool,
}

/// The version a request is sent at when `scope` matches it (the request's own, or with
/// `matchPolicy: Equivalent` another served version of the resource), else None.
fn matched_version(
    st: &State,
    ctx: &WriteCtx,
    attempt: &Attempt<'_>,
    name: &str,
    namespace: &str,
    scope: &Scope<'_>,
) -> Result<Option<String>, ApiError> {
    let def = &ctx.def;
    // Namespace selector (cluster-scoped objects other than namespaces always match).
    if (!namespace.is_empty() || is_namespaces(def)) && !selector_is_empty(scope.namespace_selector)
    {
        let labels = namespace_labels(st, ctx, attempt, namespace);
        match selector_matches(scope.namespace_selector, &labels) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) => return Err(ApiError::internal(&e)),
        }
    }
    if !selector_is_empty(scope.object_selector) {
        let labels_of = |o: Option<&Value>| o.map(|o| o["metadata"]["labels"].clone());
        let candidates = [
            labels_of(attempt.object.as_deref()),
            labels_of(attempt.old.map(|o| &**o)),
        ];
        let mut matched = false;
        for labels in candidates.into_iter().flatten() {
            matched |= selector_matches(scope.object_selector, &labels)
                .map_err(|e| ApiError::internal(&e))?;
        }
        if !matched {
            return Ok(None);
        }
    }
    let subresource = ctx.subresource.as_deref().unwrap_or_default();
    let matches_version = |rules: &[Rule], version: &str| {
        let target = Target {
            operation: attempt.operation.as_str(),
            group: &def.group,
            version,
            resource: &def.plural,
            subresource,
            namespace,
            name,
        };
        rules.iter().any(|r| rule_matches(r, &target))
    };
    if matches_version(scope.exclude, &ctx.version) {
        return Ok(None);
    }
    if matches_version(scope.rules, &ctx.version) {
        return Ok(Some(ctx.version.clone()));
    }
    if !scope.match_equivalent {
        return Ok(None);
    }
    Ok(def
        .versions
        .iter()
        .find(|v| **v != ctx.version && matches_version(scope.rules, v))
        .cloned())
}

fn matching_calls(
    st: &State,
    ctx: &WriteCtx,
    hooks: &[Arc<Webhook>],
    attempt: &Attempt<'_>,
    name: &str,
) -> Result<Vec<Call>, ApiError> {
    let namespace = request_namespace(ctx, attempt, name);
    let mut calls = Vec::new();
    for hook in hooks {
        let scope = Scope {
            rules: &hook.rules,
            exclude: &[],
            namespace_selector: &hook.namespace_selector,
            object_selector: &hook.object_selector,
            match_equivalent: hook.match_equivalent,
        };
        let Some(version) = matched_version(st, ctx, attempt, name, &namespace, &scope)? else {
            continue;
        };
        let review = review(ctx, attempt, name, &namespace, &version);
        if !conditions_match(hook, ctx, attempt, &review, name, &namespace)? {
            continue;
        }
        let uid = review["request"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        calls.push(Call {
            webhook: hook.clone(),
            uid,
            review,
            dry_run: ctx.dry_run,
        });
    }
    Ok(calls)
}

/// The AdmissionReview v1 request a webhook gets (upstream `CreateV1AdmissionReview`).
fn review(
    ctx: &WriteCtx,
    attempt: &Attempt<'_>,
    name: &str,
    namespace: &str,
    version: &str,
) -> Value {
    let def = &ctx.def;
    let at = |o: Option<&Value>| match o {
        Some(o) => served(def, version, o),
        None => Value::Null,
    };
    let opts = json!({"kind": attempt.operation.options_kind(), "apiVersion": "meta.k8s.io/v1"});
    let mut request = json!({
        "uid": crate::ops::new_uid(),
        "kind": {"group": def.group, "version": version, "kind": def.kind},
        "resource": {"group": def.group, "version": version, "resource": def.plural},
        "requestKind": {"group": def.group, "version": ctx.version, "kind": def.kind},
        "requestResource": {"group": def.group, "version": ctx.version, "resource": def.plural},
        "operation": attempt.operation.as_str(),
        "userInfo": ctx.user.to_json(),
        "object": at(attempt.object.as_deref()),
        "oldObject": at(attempt.old.map(|o| &**o)),
        "dryRun": ctx.dry_run,
        "options": opts,
    });
    if let Some(sub) = &ctx.subresource {
        request["subResource"] = json!(sub);
        request["requestSubResource"] = json!(sub);
    }
    if !name.is_empty() {
        request["name"] = json!(name);
    }
    if !namespace.is_empty() {
        request["namespace"] = json!(namespace);
    }
    json!({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request})
}

/// `matchConditions`: any false skips the webhook; errors fail closed under `Fail` (403) and
/// skip it under `Ignore`, as upstream's matcher.
fn conditions_match(
    hook: &Webhook,
    ctx: &WriteCtx,
    attempt: &Attempt<'_>,
    review: &Value,
    name: &str,
    namespace: &str,
) -> Result<bool, ApiError> {
    if hook.conditions.is_empty() {
        return Ok(true);
    }
    let r = &review["request"];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut builder =
        VapEvaluator::builder()
            .object(r["object"].clone())
            .request(AdmissionRequest {
                operation: attempt.operation.as_str().into(),
                username: ctx.user.username.clone(),
                uid: ctx.user.uid.clone(),
                groups: ctx.user.groups.clone(),
                name: name.into(),
                namespace: namespace.into(),
                dry_run: ctx.dry_run,
                kind: GroupVersionKind {
                    group: s(&r["kind"]["group"]),
                    version: s(&r["kind"]["version"]),
                    kind: s(&r["kind"]["kind"]),
                },
                resource: GroupVersionResource {
                    group: s(&r["resource"]["group"]),
                    version: s(&r["resource"]["version"]),
                    resource: s(&r["resource"]["resource"]),
                },
            });
    if !r["oldObject"].is_null() {
        builder = builder.old_object(r["oldObject"].clone());
    }
    let evaluator = builder.build();
    let mut errors = Vec::new();
    for c in &hook.conditions {
        let result = evaluator.evaluate_compiled(std::slice::from_ref(&c.program));
        let Some(result) = result.first() else {
            continue;
        };
        let message = result.message.as_deref().unwrap_or_default();
        match (&c.program, result.passed) {
            (_, true) => {}
            // kube-cel words a `false` result as "validation expression … evaluated to false".
            (Ok(_), false) if message.starts_with("validation expression") => return Ok(false),
            // Upstream's words (admission/plugin/cel/activation.go).
            (Ok(_), false) => errors.push(format!(
                "expression '{}' resulted in error: {}",
                c.expression,
                message.trim_start_matches("evaluation error: ")
            )),
            (Err(e), false) => errors.push(format!("compilation error: {e}")),
        }
    }
    if errors.is_empty() {
        return Ok(true);
    }
    if hook.fail_open {
        return Ok(false);
    }
    let name = attempt
        .object
        .as_ref()
        .and_then(|o| o["metadata"]["name"].as_str())
        .unwrap_or(name);
    let why = if errors.len() == 1 {
        errors.remove(0)
    } else {
        format!("[{}]", errors.join(", "))
    };
    Err(ApiError::forbidden(&ctx.def, name, &why))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(phase: Phase, base: &str, object: i64) -> Pending {
        Pending {
            phase,
            calls: Vec::new(),
            base: Some(base.into()),
            object: Some(Arc::new(json!(object))),
        }
    }

    fn parts(a: &Admission) -> (Option<Option<Value>>, Option<Option<Value>>) {
        let unwrap = |o: &Option<Option<Arc<Value>>>| {
            o.as_ref()
                .map(|inner| inner.as_ref().map(|v| (**v).clone()))
        };
        match a {
            Admission::Answered {
                mutated, allowed, ..
            } => (unwrap(mutated), unwrap(allowed)),
            other => panic!("not answered: {other:?}"),
        }
    }

    #[test]
    fn answers_carry_over_only_for_the_same_base() {
        let mutated = pending(Phase::Mutating, "5", 1)
            .answered(&Admission::Required, Some(Arc::new(json!(2))));
        assert_eq!(parts(&mutated), (Some(Some(json!(2))), None));
        // Validation keeps the mutation it followed and allows the object it saw.
        let validated = pending(Phase::Validating, "5", 2).answered(&mutated, None);
        assert_eq!(
            parts(&validated),
            (Some(Some(json!(2))), Some(Some(json!(2))))
        );
        // The object changed meanwhile: what was answered for the old one is dropped.
        let moved = pending(Phase::Validating, "6", 3).answered(&mutated, None);
        assert_eq!(parts(&moved), (None, Some(Some(json!(3)))));
        // A new mutation is validated afresh.
        let again = pending(Phase::Mutating, "5", 1).answered(&validated, Some(Arc::new(json!(4))));
        assert_eq!(parts(&again), (Some(Some(json!(4))), None));
    }
}
