//! apikey-operator: manage API keys and API tokens as Kubernetes resources.
//!
//! `api` holds the custom resource types, `token` and `schedule` the pure
//! decisions, `controller` and `verifier` the I/O shells around them; `local`
//! (feature `local`) runs them beside the embedded Kubernetes API server of the
//! `kube-emulator` crate.
#![forbid(unsafe_code)]

pub mod admin;
pub mod admission;
pub mod api;
pub mod certs;
pub mod cli;
pub mod clock;
pub mod controller;
pub mod duration;
pub mod leader;
pub mod lean;
pub mod metrics;
pub mod rbac;
pub mod schedule;
pub mod serve;
pub mod token;
pub mod verifier;
