//! The `apikey-operator` binary: everything it does lives in the library's
//! `cli` module; this file only picks the allocator and calls it.
#![forbid(unsafe_code)]

use std::process::ExitCode;

/// jemalloc keeps the operator's memory closer to what it holds than glibc's
/// malloc after a burst of work (see the `jemalloc` feature in Cargo.toml).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    apikey_operator::cli::commands::main()
}
