//! The operator's integration tests, one binary: the controller and the verifier against the
//! embedded emulator, the operator binary as a process (CLI, local mode, leader election,
//! crashes), what we ship as YAML (CRDs, chart, examples), and our CRDs against the upstream
//! Kubernetes code. `support` holds what they share.

// The fidelity suite's `json!` literals nest deeply.
#![recursion_limit = "512"]

mod authz;
mod bad_input;
mod cli;
mod controller;
mod fidelity;
mod leader;
mod leak_scan;
mod manifests;
mod reliability;
mod support;
mod verifier;
