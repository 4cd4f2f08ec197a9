//! The emulator's own tests, one binary: conformance with what kube-rs and kubectl expect of a
//! Kubernetes API server, structural-schema and CEL handling, fidelity to the upstream
//! apiextensions-apiserver (`upstream`, which skips without its build), and a throughput probe.
//! `support` starts emulators and installs the test CRDs they share.

// The fidelity suite's `json!` literals nest deeply.
#![recursion_limit = "512"]

mod admission;
mod authn;
mod conformance;
mod fidelity;
mod kubectl;
mod kubectl_auth;
mod perf;
mod protobuf;
mod rbac;
mod readme_example;
mod reviews;
mod schema;
mod support;
mod temp_dir;
#[path = "../upstream/mod.rs"]
mod upstream;
mod users;
