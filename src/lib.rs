//! apikey-operator: manage API keys and API tokens as Kubernetes resources.
//!
//! `api` holds the custom resource types, `token` and `schedule` the pure
//! decisions, `controller` and `verifier` the I/O shells around them, and
//! `emulator` the embedded Kubernetes API server used by `local` mode and tests.
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod cli;
pub mod clock;
pub mod controller;
pub mod duration;
pub mod emulator;
pub mod leader;
pub mod lean;
pub mod local;
pub mod metrics;
pub mod schedule;
pub mod token;
pub mod verifier;
