//! The reconcilers: thin I/O shells around the pure decisions.
//!
//! `token` issues, rotates, renews and expires ApiToken values into Secrets
//! (deciding with `token_state` and `schedule`); `key` resolves ApiKey owners,
//! counts tokens and adopts them. `runner` wires both kube-rs Controllers
//! with their watches; `context` holds what they share, `backoff` what
//! happens after a failure, `metrics` what they count.

mod backoff;
mod conditions;
mod context;
mod error;
mod faults;
mod hashed_secret;
mod key;
mod key_throttle;
mod metrics;
mod runner;
mod token;
pub mod token_state;
mod write;

pub use context::{Config, Context, DEFAULT_CONCURRENCY, Handles};
pub use error::Error;
pub use faults::{FaultPoint, Faults};
pub use metrics::{API_KEY, API_TOKEN, ControllerMetrics};
pub use runner::{UNDECODABLE, run_with};

/// Field manager of every write the controller makes.
pub const FIELD_MANAGER: &str = "apikey-operator";
/// Label on every Secret the operator manages; the Secret watch selects on it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "apikey-operator";
/// Label naming the ApiToken a managed Secret belongs to.
pub const TOKEN_LABEL: &str = "apikeys.dev/token";
