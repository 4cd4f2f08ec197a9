//! The verifier: end to end behind the controller, under abuse, over TLS, behind NGINX (as
//! docs/verifier.md configures it, whose gateway examples are checked too), and its
//! `status.lastUsedAt` reports.

mod abuse;
mod e2e;
mod gateway_docs;
mod last_used;
mod nginx;
mod reasons;
mod tls;
