//! The verifier: end to end behind the controller, under abuse, over TLS, behind NGINX, and its
//! `status.lastUsedAt` reports.

mod abuse;
mod e2e;
mod last_used;
mod nginx;
mod tls;
