//! The verifier: end to end behind the controller, under abuse, over TLS, behind NGINX (as
//! docs/forward-auth.md configures it, whose gateway examples are checked too), under Kubernetes'
//! own webhook token authenticator (docs/verifier.md's configuration in the upstream server),
//! and its `status.lastUsedAt` reports.

mod abuse;
mod e2e;
mod gateway_docs;
mod last_used;
mod nginx;
mod nginx_gateway;
mod reasons;
mod tls;
mod webhook_authn;
