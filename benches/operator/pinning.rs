//! Cores for the verifier section: the load generator (this process) on one, the servers (the
//! verifier, a re-executed copy of this binary, and NGINX) on another, with `taskset` from
//! util-linux, so that neither measures the scheduler's choices for the other.

use super::*;

/// Which cores the load generator and the servers run on.
#[derive(Clone)]
pub(crate) struct Pinning {
    pub(crate) load: usize,
    pub(crate) server: usize,
    /// Every core this process may use, to give them back after the section.
    all: String,
}

impl Pinning {
    /// The first allowed core for the load, the second for the servers; `Err` says why not.
    pub(crate) fn detect() -> Result<Pinning, String> {
        let all = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                    .map(|l| l.trim().to_owned())
            })
            .ok_or("cannot read the allowed cores (/proc/self/status)")?;
        let cores = parse_cpu_list(&all);
        let [load, server, ..] = cores[..] else {
            return Err(format!("only one core is available ({all})"));
        };
        if Command::new("taskset").arg("-V").output().is_err() {
            return Err("taskset (util-linux) is not installed".to_owned());
        }
        Ok(Pinning { load, server, all })
    }

    /// Moves every thread of this process (and so the threads they start) to the load core.
    pub(crate) fn pin_self(&self) {
        set_own_affinity(&self.load.to_string());
    }

    /// Gives this process its cores back.
    pub(crate) fn unpin_self(&self) {
        set_own_affinity(&self.all);
    }
}

fn set_own_affinity(cores: &str) {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cores])
        .arg(std::process::id().to_string())
        .stdout(Stdio::null())
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "taskset -a -p -c {cores} failed"
    );
}

/// `program`, on the servers' core when pinned.
pub(crate) fn server_command(pinning: Option<&Pinning>, program: &std::path::Path) -> Command {
    match pinning {
        Some(p) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &p.server.to_string()]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// A kernel CPU list such as `0-3,6`.
pub(crate) fn parse_cpu_list(list: &str) -> Vec<usize> {
    let mut cores = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(first), Ok(last)) = (first.parse::<usize>(), last.parse::<usize>()) {
            cores.extend(first..=last);
        }
    }
    cores
}

/// How the section ran, for the report.
pub(crate) fn pinning_note(pinning: &Result<Pinning, String>, workers: usize) -> String {
    match pinning {
        Ok(p) => format!(
            "load generator on CPU {}, verifier (and NGINX) on CPU {} ({workers} runtime worker)",
            p.load, p.server
        ),
        Err(why) => format!("unpinned: {why} ({workers} runtime workers)"),
    }
}
