//! The benchmark suite: scale, steady state, rotation storm, time to the
//! verifier's changed answer, and verifier throughput and latency (alone on a
//! core, and behind NGINX) — each figure printed beside a baseline measured in
//! the same run.
//!
//! `cargo bench --bench operator` runs the full suite (10k tokens, 100k
//! indexed tokens); `-- --quick` a short version (CI checks that it runs);
//! `-- --tokens N` sets the scale; `-- --only scale|validation|authz|storm|verifier` runs one
//! section. Results are printed as a Markdown table.
// The allocation counter below is a GlobalAlloc, which needs unsafe; nothing else here does.
#![allow(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apikey_operator::api::{ApiKey, ApiToken};
use apikey_operator::lean::Lean;
use apikey_operator::token;
use apikey_operator::verifier::{self, VerifierConfig};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use kube_emulator::{Emulator, EmulatorConfig, RequestStats};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod authz;
mod child;
mod gateway;
mod harness;
mod load;
mod pinning;
mod scale;
mod storm;
mod throughput;
mod validation;

use authz::*;
use child::*;
use gateway::*;
use harness::*;
use load::*;
use pinning::*;
use scale::*;
use storm::*;
use throughput::*;
use validation::*;

/// The allocator the operator binary ships with (jemalloc, or the system's
/// without the `jemalloc` feature), so the verifier, which runs in this
/// process, is measured on the same stack. It counts per thread the bytes
/// allocated and not freed, so the verifier's memory per indexed token is measured exactly
/// (RSS growth moved with the allocator's caching) and without what other
/// threads free meanwhile (an earlier section's teardown made a process-wide
/// count negative).
struct CountingAlloc;

thread_local! {
    static THREAD_HEAP: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
}

fn track(delta: isize) {
    // `try_with`: a thread's last frees can run after its counter is gone.
    let _ = THREAD_HEAP.try_with(|c| c.set(c.get() + delta));
}

#[cfg(feature = "jemalloc")]
const INNER: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[cfg(not(feature = "jemalloc"))]
const INNER: std::alloc::System = std::alloc::System;

// SAFETY: every call is forwarded unchanged to the inner allocator; the
// counter is bookkeeping in a const-initialized thread local (no allocation).
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let p = unsafe { INNER.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        track(-(layout.size() as isize));
        unsafe { INNER.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        let p = unsafe { INNER.realloc(ptr, layout, new) };
        if !p.is_null() {
            track(new as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Bytes this thread allocated and has not freed.
fn heap_live() -> isize {
    THREAD_HEAP.with(|c| c.get())
}

/// Concurrency of the clients that create objects (baseline and operator alike).
const CONCURRENCY: usize = 32;

struct Settings {
    quick: bool,
    scales: Vec<usize>,
    storm: usize,
    steady: Duration,
    verifier_sizes: Vec<usize>,
    rounds: Rounds,
}

impl Settings {
    fn from_args() -> Settings {
        let args: Vec<String> = std::env::args().collect();
        let quick = args.iter().any(|a| a == "--quick");
        let tokens = args
            .iter()
            .position(|a| a == "--tokens")
            .and_then(|i| args.get(i + 1))
            .and_then(|n| n.parse().ok());
        if quick {
            Settings {
                quick,
                scales: vec![tokens.unwrap_or(200)],
                storm: 100,
                steady: Duration::from_secs(5),
                verifier_sizes: vec![10_000],
                rounds: Rounds {
                    count: 3,
                    each: Duration::from_millis(200),
                },
            }
        } else {
            Settings {
                quick,
                scales: tokens.map_or(vec![1_000, 10_000], |n| vec![n]),
                storm: 1_000,
                steady: Duration::from_secs(60),
                verifier_sizes: vec![1_000, 10_000, 100_000],
                rounds: Rounds {
                    count: 5,
                    each: Duration::from_secs(1),
                },
            }
        }
    }
}

/// One line of the report.
struct Figure {
    section: &'static str,
    name: String,
    value: String,
    baseline: String,
    ratio: String,
    goal: &'static str,
}

fn figure(
    section: &'static str,
    name: impl Into<String>,
    value: impl Into<String>,
    baseline: impl Into<String>,
    ratio: impl Into<String>,
    goal: &'static str,
) -> Figure {
    Figure {
        section,
        name: name.into(),
        value: value.into(),
        baseline: baseline.into(),
        ratio: ratio.into(),
        goal,
    }
}

fn main() {
    if std::env::args().any(|a| a == CHILD_ARG) {
        return verifier_child();
    }
    let settings = Settings::from_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let figures = runtime.block_on(run(&settings));
    println!("\n| section | figure | value | baseline | ratio | goal |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for f in figures {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            f.section, f.name, f.value, f.baseline, f.ratio, f.goal
        );
    }
    println!(
        "\nmachine: {} cores, {}; mode: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu_model(),
        if settings.quick { "quick" } else { "full" }
    );
}

async fn run(settings: &Settings) -> Vec<Figure> {
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let wanted = |section: &str| only.as_deref().is_none_or(|o| o == section);
    let mut figures = Vec::new();
    if wanted("scale") {
        for &n in &settings.scales {
            figures.extend(scale_and_steady(n, settings).await);
        }
    }
    // Reported in the scale section; `--only validation` runs it alone.
    if wanted("scale") || wanted("validation") {
        let n = *settings.scales.first().unwrap_or(&1_000);
        figures.extend(validation_cost(n, if settings.quick { 1 } else { 3 }).await);
    }
    if wanted("authz") {
        let n = *settings.scales.first().unwrap_or(&1_000);
        figures.extend(authz_overhead(n, if settings.quick { 1 } else { 3 }).await);
    }
    if wanted("storm") {
        figures.extend(storm(settings.storm).await);
    }
    if wanted("verifier") {
        // The verifier and the load generator on cores of their own (see `pinning`); the
        // gateway part runs once, at 10k indexed tokens (or the only size).
        let pinning = Pinning::detect();
        if let Ok(p) = &pinning {
            p.pin_self();
        }
        let gateway_size = *settings
            .verifier_sizes
            .iter()
            .find(|&&n| n == 10_000)
            .unwrap_or(&settings.verifier_sizes[0]);
        // Profiling one kind of request (APIKEY_BENCH_KINDS, see `verifier_load`) leaves the
        // gateway out too.
        let gateway = std::env::var_os("APIKEY_BENCH_KINDS").is_none();
        for &n in &settings.verifier_sizes {
            let with_gateway = gateway && n == gateway_size;
            figures.extend(verifier_load(n, &settings.rounds, &pinning, with_gateway).await);
        }
        if let Ok(p) = &pinning {
            p.unpin_self();
        }
    }
    figures
}
