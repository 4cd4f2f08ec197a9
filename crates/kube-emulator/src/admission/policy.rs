//! ValidatingAdmissionPolicy with its bindings: CEL validations run in the validating gate
//! under the store lock (no call leaves the process), before the validating webhooks, as
//! upstream's plugin order has it. Denials in upstream's words (`policy/validating/
//! dispatcher.go`, `validator.go`); `mod.rs` calls `check`, `store` compiles the policies.

use std::sync::Arc;

use kube::core::cel::{CompiledVapExpression, VapError, VapEvaluator};
use serde_json::{Value, json};

use super::matching::{Condition, Rule, compile_expression, conditions, rules};
use super::{Attempt, Scope, matched_version, request_namespace};
use crate::error::ApiError;
use crate::ops::{WriteCtx, served};
use crate::store::State;

/// `matchConstraints` of a policy or `matchResources` of a binding.
#[derive(Debug)]
pub struct Constraints {
    rules: Vec<Rule>,
    exclude: Vec<Rule>,
    namespace_selector: Value,
    object_selector: Value,
    match_equivalent: bool,
}

impl Constraints {
    fn compile(v: &Value) -> Constraints {
        Constraints {
            rules: rules(&v["resourceRules"]),
            exclude: rules(&v["excludeResourceRules"]),
            namespace_selector: v["namespaceSelector"].clone(),
            object_selector: v["objectSelector"].clone(),
            match_equivalent: v["matchPolicy"].as_str() != Some("Exact"),
        }
    }

    fn scope(&self) -> Scope<'_> {
        Scope {
            rules: &self.rules,
            exclude: &self.exclude,
            namespace_selector: &self.namespace_selector,
            object_selector: &self.object_selector,
            match_equivalent: self.match_equivalent,
        }
    }
}

#[derive(Debug)]
struct Validation {
    expression: String,
    program: Result<CompiledVapExpression, VapError>,
    message: Option<String>,
    reason: Option<String>,
}

#[derive(Debug)]
struct Binding {
    name: String,
    resources: Option<Constraints>,
    deny: bool,
}

/// A stored ValidatingAdmissionPolicy with the bindings that name it.
#[derive(Debug)]
pub struct Policy {
    name: String,
    fail_open: bool,
    constraints: Constraints,
    conditions: Vec<Condition>,
    validations: Vec<Validation>,
    bindings: Vec<Binding>,
}

/// Policies with at least one binding, in policy-name order.
pub fn compile_policies<'a>(
    policies: impl Iterator<Item = &'a Value>,
    bindings: impl Iterator<Item = &'a Value> + Clone,
) -> Arc<[Arc<Policy>]> {
    let mut out = Vec::new();
    for p in policies {
        let name = p["metadata"]["name"].as_str().unwrap_or_default();
        let bound: Vec<Binding> = bindings
            .clone()
            .filter(|b| b["spec"]["policyName"].as_str() == Some(name))
            .map(|b| Binding {
                name: b["metadata"]["name"].as_str().unwrap_or_default().into(),
                resources: b["spec"]["matchResources"]
                    .is_object()
                    .then(|| Constraints::compile(&b["spec"]["matchResources"])),
                deny: b["spec"]["validationActions"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == "Deny")),
            })
            .collect();
        if bound.is_empty() {
            continue;
        }
        let spec = &p["spec"];
        let validations = spec["validations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                let expression = v["expression"].as_str().unwrap_or_default();
                Validation {
                    expression: expression.to_string(),
                    program: compile_expression(expression, v["messageExpression"].as_str()),
                    message: v["message"].as_str().map(|m| m.trim().to_string()),
                    reason: v["reason"].as_str().map(str::to_string),
                }
            })
            .collect();
        out.push(Arc::new(Policy {
            name: name.to_string(),
            fail_open: spec["failurePolicy"].as_str() == Some("Ignore"),
            constraints: Constraints::compile(&spec["matchConstraints"]),
            conditions: conditions(&spec["matchConditions"]),
            validations,
            bindings: bound,
        }));
    }
    out.into()
}

/// How a failed validation reaches the client: the reason's code, 422 Invalid by default.
fn code_of(reason: &str) -> u16 {
    match reason {
        "Forbidden" => 403,
        "Unauthorized" => 401,
        "RequestEntityTooLarge" => 413,
        _ => 422,
    }
}

/// One denial: the message after "denied request: " and the reason.
struct Denial {
    message: String,
    reason: String,
}

/// Evaluates every matching policy and binding; the first denial is the client's error.
pub fn check(
    st: &State,
    ctx: &WriteCtx,
    attempt: &Attempt<'_>,
    name: &str,
) -> Result<(), ApiError> {
    let namespace = request_namespace(ctx, attempt, name);
    for policy in st.policies.iter() {
        let Some(version) = matched_version(
            st,
            ctx,
            attempt,
            name,
            &namespace,
            &policy.constraints.scope(),
        )?
        else {
            continue;
        };
        for binding in &policy.bindings {
            if let Some(resources) = &binding.resources {
                let scope = resources.scope();
                let bound = if resources.rules.is_empty() {
                    matches_selectors(st, ctx, attempt, name, &namespace, &scope)?
                } else {
                    matched_version(st, ctx, attempt, name, &namespace, &scope)?.is_some()
                };
                if !bound {
                    continue;
                }
            }
            if let Some(denial) = evaluate(st, ctx, attempt, policy, name, &namespace, &version)
                && binding.deny
            {
                return Err(deny(ctx, attempt, name, policy, binding, denial));
            }
        }
    }
    Ok(())
}

/// Selectors alone (a binding's `matchResources` without rules constrains by them only).
fn matches_selectors(
    st: &State,
    ctx: &WriteCtx,
    attempt: &Attempt<'_>,
    name: &str,
    namespace: &str,
    scope: &Scope<'_>,
) -> Result<bool, ApiError> {
    let everything = [Rule {
        operations: vec!["*".into()],
        api_groups: vec!["*".into()],
        api_versions: vec!["*".into()],
        resources: vec!["*/*".into()],
        scope: "*".into(),
        resource_names: Vec::new(),
    }];
    let scope = Scope {
        rules: &everything,
        ..*scope
    };
    Ok(matched_version(st, ctx, attempt, name, namespace, &scope)?.is_some())
}

fn evaluate(
    st: &State,
    ctx: &WriteCtx,
    attempt: &Attempt<'_>,
    policy: &Policy,
    name: &str,
    namespace: &str,
    version: &str,
) -> Option<Denial> {
    let def = &ctx.def;
    let at = |o: Option<&Value>| o.map(|o| served(def, version, o));
    let request = kube::core::cel::AdmissionRequest {
        operation: attempt.operation.as_str().into(),
        username: ctx.user.username.clone(),
        uid: ctx.user.uid.clone(),
        groups: ctx.user.groups.clone(),
        name: name.into(),
        namespace: namespace.into(),
        dry_run: ctx.dry_run,
        kind: kube::core::cel::GroupVersionKind {
            group: def.group.clone(),
            version: version.into(),
            kind: def.kind.clone(),
        },
        resource: kube::core::cel::GroupVersionResource {
            group: def.group.clone(),
            version: version.into(),
            resource: def.plural.clone(),
        },
    };
    let mut builder = VapEvaluator::builder().request(request);
    if let Some(o) = at(attempt.object.as_deref()) {
        builder = builder.object(o);
    }
    if let Some(o) = at(attempt.old.map(|o| &**o)) {
        builder = builder.old_object(o);
    }
    if !namespace.is_empty()
        && !super::is_namespaces(def)
        && let Some(ns) = st.get("/namespaces", "", namespace)
    {
        builder = builder.namespace_object((**ns).clone());
    }
    let evaluator = builder.build();
    let failed = |message: String| (!policy.fail_open).then_some(message);
    // matchConditions: a false one skips the policy; errors count per failurePolicy.
    for c in &policy.conditions {
        let result = evaluator.evaluate_compiled(std::slice::from_ref(&c.program));
        let r = result.first()?;
        let message = r.message.as_deref().unwrap_or_default();
        match (&c.program, r.passed) {
            (_, true) => {}
            (Ok(_), false) if message.starts_with("validation expression") => return None,
            (Ok(_), false) => {
                return failed(format!(
                    "expression '{}' resulted in error: {}",
                    c.expression,
                    message.trim_start_matches("evaluation error: ")
                ))
                .map(invalid);
            }
            (Err(e), false) => return failed(format!("compilation error: {e}")).map(invalid),
        }
    }
    for v in &policy.validations {
        let result = evaluator.evaluate_compiled(std::slice::from_ref(&v.program));
        let Some(r) = result.first() else {
            continue;
        };
        if r.passed {
            continue;
        }
        let message = r.message.as_deref().unwrap_or_default();
        let error = match &v.program {
            Err(e) => Some(format!("compilation error: {e}")),
            Ok(_)
                if message.starts_with("evaluation error: ")
                    || message.starts_with("expression returned non-boolean") =>
            {
                Some(format!(
                    "expression '{}' resulted in error: {}",
                    v.expression,
                    message.trim_start_matches("evaluation error: ")
                ))
            }
            Ok(_) => None,
        };
        if let Some(error) = error {
            match failed(error) {
                Some(m) => return Some(invalid(m)),
                None => continue,
            }
        }
        // kube-cel's fallback wording, replaced by upstream's.
        // kube-cel gives the messageExpression's result or its own fallback wording, which
        // upstream's `message`, then `failed expression: …`, replace.
        let message = match message.trim() {
            m if !m.is_empty() && !m.starts_with("validation expression '") => m.to_string(),
            _ => v
                .message
                .clone()
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| format!("failed expression: {}", v.expression.trim())),
        };
        return Some(Denial {
            message,
            reason: v.reason.clone().unwrap_or_else(|| "Invalid".into()),
        });
    }
    None
}

fn invalid(message: String) -> Denial {
    Denial {
        message,
        reason: "Invalid".into(),
    }
}

/// upstream: `admission.NewForbidden` with the reason's code and one cause.
fn deny(
    ctx: &WriteCtx,
    attempt: &Attempt<'_>,
    name: &str,
    policy: &Policy,
    binding: &Binding,
    denial: Denial,
) -> ApiError {
    let def = &ctx.def;
    let name = if !name.is_empty() {
        name.to_string()
    } else {
        let md = attempt.object.as_ref().map(|o| &o["metadata"]);
        md.and_then(|m| m["name"].as_str().filter(|n| !n.is_empty()))
            .or_else(|| md.and_then(|m| m["generateName"].as_str()))
            .unwrap_or("Unknown")
            .to_string()
    };
    let message = format!(
        "ValidatingAdmissionPolicy '{}' with binding '{}' denied request: {}",
        policy.name, binding.name, denial.message
    );
    let code = code_of(&denial.reason);
    ApiError::admission_denial(json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("{} \"{name}\" is forbidden: {message}", def.qualified_plural()),
        "reason": denial.reason,
        "details": {"name": name, "group": def.group, "kind": def.plural, "causes": [{"message": message}]},
        "code": code,
    }))
}
