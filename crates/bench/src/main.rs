//! `lifecycle-bench`: measures containerd-shim-lifecycle-v1 against containerd-shim-runc-v2 in
//! one private containerd, each measurement interleaved between the two runtimes in the same
//! run so that machine drift cancels, and writes a Markdown report with SVG plots.
//!
//! Usage: `lifecycle-bench [--quick] [--runs N] [--out docs/benchmarks.md]`; `scripts/bench`
//! builds the release shim and runs it. `--quick` uses tiny counts (the smoke test in the
//! test suite runs it so the harness cannot silently rot; its numbers mean nothing).
//!
//! The binary is also the command that runs a bundle through the runtime library
//! (`lifecycle-bench __run-bundle ...`, compared with `runc run`), and therefore its own helper
//! executable, as the shim is.

mod hooks;
mod measure;
mod phases;
mod report;
mod runtime_cmd;
mod stats;
mod svg;

use std::{path::PathBuf, process::ExitCode, time::Duration};

/// The two runtimes compared, ours first.
pub const RUNTIMES: [Runtime; 2] = [
    Runtime {
        label: "lifecycle",
        runtime: "io.containerd.lifecycle.v1",
        shim: "containerd-shim-lifecycle-v1",
    },
    Runtime {
        label: "runc-v2",
        runtime: "io.containerd.runc.v2",
        shim: "containerd-shim-runc-v2",
    },
];

#[derive(Clone, Copy, Debug)]
pub struct Runtime {
    /// Short name in tables and plots.
    pub label: &'static str,
    /// What `ctr run --runtime` takes.
    pub runtime: &'static str,
    /// The shim binary's name (to find its processes).
    pub shim: &'static str,
}

/// What to measure and how much.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Interleaved runs per runtime for each latency figure.
    pub runs: usize,
    /// Runs of the grace deadline measurement (each waits out a grace period).
    pub grace_runs: usize,
    /// Container counts for the memory and concurrency curves.
    pub scale: Vec<usize>,
    /// How long idle shims are watched for CPU use.
    pub idle: Duration,
    /// Where the report goes; plots go beside it in `benchmarks/`.
    pub out: PathBuf,
}

fn parse_args() -> Result<Plan, String> {
    let mut plan = Plan {
        runs: 30,
        grace_runs: 30,
        scale: vec![1, 5, 10, 25, 50],
        idle: Duration::from_secs(10),
        out: PathBuf::from("docs/benchmarks.md"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => {
                plan.runs = 2;
                plan.grace_runs = 1;
                plan.scale = vec![1, 2];
                plan.idle = Duration::from_millis(500);
            }
            "--runs" => {
                let value = args.next().ok_or("--runs needs a number")?;
                plan.runs = value
                    .parse()
                    .map_err(|_| format!("--runs: {value:?} is not a number"))?;
                plan.grace_runs = plan.runs;
            }
            "--out" => plan.out = PathBuf::from(args.next().ok_or("--out needs a path")?),
            other => {
                return Err(format!(
                    "unknown argument {other:?} (expected --quick, --runs N, --out PATH)"
                ))
            }
        }
    }
    if plan.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    Ok(plan)
}

fn main() -> ExitCode {
    // As in the shim: helpers get SIGPIPE's default disposition back before anything else.
    // SAFETY: signal(2) with a standard disposition, before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    lifecycle_runtime::run_helper_if_requested();
    if std::env::args().nth(1).as_deref() == Some(runtime_cmd::RUN_BUNDLE) {
        return runtime_cmd::run_bundle(std::env::args().skip(2).collect());
    }
    let plan = match parse_args() {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("lifecycle-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let results = measure::run_all(&plan);
    let machine = report::Machine::probe();
    match report::write(&plan, &machine, &results) {
        Ok(()) => {
            eprintln!("lifecycle-bench: wrote {}", plan.out.display());
            println!("{}", report::headline(&results));
            if results.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "lifecycle-bench: {} failures:\n{}",
                    results.failures.len(),
                    results.failures.join("\n")
                );
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("lifecycle-bench: writing the report: {e}");
            ExitCode::FAILURE
        }
    }
}
