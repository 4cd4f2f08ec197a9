//! What the operator's tests share: an emulator with our CRDs and a controller on it
//! (`cluster`), objects made from YAML (`objects`), waits with a deadline, never a bare sleep
//! (`wait`), a verifier in this process (`verifier`) and HTTP to it (`http`), the operator binary
//! as a child process (`process`, and `local` with kubectl against it), a runtime of one test's own for the tests that count panics or
//! read logs (`isolated`), temporary directories, free ports and the upstream API server (the
//! last three from the emulator crate's tests).

pub mod cluster;
pub mod http;
pub mod isolated;
pub mod local;
pub mod objects;
pub mod process;
#[path = "../../../crates/kube-emulator/tests/emulator/temp_dir.rs"]
pub mod temp_dir;
/// The upstream API server of the fidelity tests, and free ports, from the emulator's tests.
#[path = "../../../crates/kube-emulator/tests/upstream/mod.rs"]
pub mod upstream;
pub mod verifier;
pub mod wait;

use std::time::Duration;

pub use cluster::*;
pub use objects::*;
pub use upstream::ports;
pub use verifier::*;
pub use wait::*;

/// How long any single wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Whether `APIKEY_SOAK=1` asks for the long variants (docs/reliability.md).
pub fn soak() -> bool {
    std::env::var("APIKEY_SOAK").is_ok_and(|v| v == "1")
}
