//! What we ship as YAML, checked as shipped: the generated CRDs and their printer columns, the
//! Helm chart and its admission policy, the install instructions against the chart, the examples
//! and the Argo CD health check.

mod admission_policy;
mod argocd_health;
mod crds;
mod examples;
#[macro_use]
mod helm_chart;
mod chart_least_privilege;
mod chart_rbac;
mod install_docs;
mod kubectl_get;
mod rbac_source;
