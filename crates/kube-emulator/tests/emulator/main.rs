//! The emulator's own tests, one binary: conformance with what kube-rs and kubectl expect of a
//! Kubernetes API server, structural-schema and CEL handling, and a throughput probe.
//! `support` starts emulators and installs the test CRDs they share.

mod conformance;
mod kubectl;
mod perf;
mod protobuf;
mod readme_example;
mod schema;
mod support;
mod temp_dir;
