//! What we ship as YAML, checked as shipped: the generated CRDs and their printer columns, the
//! Helm chart and its admission policy, the examples and the Argo CD health check.

mod admission_policy;
mod argocd_health;
mod crds;
mod examples;
mod helm_chart;
mod kubectl_get;
