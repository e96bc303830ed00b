//! The runtime library alone, run as a command, against `runc run` of the same bundle: both
//! are a process that creates, starts, waits for and deletes a busybox `/bin/true` container
//! (what `runc run` does), measured from spawn to exit by the parent.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio as StdStdio},
    time::{Duration, Instant},
};

use lifecycle_runtime::{reaper, Container, CreateOptions, Stdio};
use lifecycle_testsupport::{require_bin, unique, Bundle};

/// The hidden subcommand: `lifecycle-bench __run-bundle BUNDLE STATE_DIR ID`.
pub const RUN_BUNDLE: &str = "__run-bundle";

/// Samples of the comparison, milliseconds.
#[derive(Debug, Default)]
pub struct RuntimeResults {
    /// Whole command, spawn to exit: ours, `runc run`.
    pub total: [Vec<f64>; 2],
    /// Our command's own phases (create, start, wait, delete), as it reports them.
    pub phases: Vec<[f64; 4]>,
}

pub const PHASES: [&str; 4] = ["create", "start", "wait", "delete"];

/// The subcommand: create + start + wait + delete through the library; prints the four phase
/// durations in microseconds on one line.
pub fn run_bundle(args: Vec<String>) -> ExitCode {
    let [bundle, state, id] = match <[String; 3]>::try_from(args) {
        Ok(a) => a,
        Err(_) => {
            eprintln!("usage: lifecycle-bench {RUN_BUNDLE} BUNDLE STATE_DIR ID");
            return ExitCode::from(2);
        }
    };
    reaper::start();
    let sub = reaper::subscribe();
    let t0 = Instant::now();
    let created = match Container::create(CreateOptions {
        id,
        bundle: PathBuf::from(bundle),
        stdio: Stdio::default(),
        state_dir: PathBuf::from(state),
        hold: lifecycle_runtime::Hold::Caller,
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("create: {e}");
            return ExitCode::FAILURE;
        }
    };
    let c = created.container;
    let t1 = Instant::now();
    if let Err(e) = c.start() {
        eprintln!("start: {e}");
        let _ = c.delete();
        return ExitCode::FAILURE;
    }
    let t2 = Instant::now();
    let status = sub
        .wait_for(c.init_pid(), Some(Duration::from_secs(10)))
        .map(|e| e.status);
    let t3 = Instant::now();
    if let Err(e) = c.delete() {
        eprintln!("delete: {e}");
        return ExitCode::FAILURE;
    }
    let t4 = Instant::now();
    if status != Some(0) {
        eprintln!("the container exited with {status:?}");
        return ExitCode::FAILURE;
    }
    let us = |a: Instant, b: Instant| (b - a).as_micros();
    println!(
        "{} {} {} {}",
        us(t0, t1),
        us(t1, t2),
        us(t2, t3),
        us(t3, t4)
    );
    ExitCode::SUCCESS
}

/// `runs` interleaved runs of each (after one warm-up of each).
pub fn measure(runs: usize, failures: &mut Vec<String>) -> RuntimeResults {
    require_bin("runc");
    let exe = std::env::current_exe().expect("current_exe");
    let id = unique("lc-bench-rt");
    // One cgroup level, which both runtimes remove at delete.
    let bundle = Bundle::new(&["/bin/true"], &format!("/{id}"));
    let runc_root = tempfile::tempdir().expect("runc root");
    let mut results = RuntimeResults::default();
    for i in 0..=runs {
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for r in order {
            let run_id = format!("{id}-{i}-{r}");
            let sample = if r == 0 {
                ours(&exe, bundle.path(), &run_id)
            } else {
                runc(bundle.path(), runc_root.path(), &run_id)
            };
            match sample {
                // Run 0 is the warm-up (page cache, the binaries' first exec).
                Ok(_) if i == 0 => {}
                Ok((ms, phases)) => {
                    results.total[r].push(ms);
                    if let Some(p) = phases {
                        results.phases.push(p);
                    }
                }
                Err(e) => failures.push(format!("{run_id}: {e}")),
            }
        }
    }
    results
}

type Sample = Result<(f64, Option<[f64; 4]>), String>;

fn ours(exe: &Path, bundle: &Path, id: &str) -> Sample {
    let state = tempfile::tempdir().map_err(|e| e.to_string())?;
    let start = Instant::now();
    let out = Command::new(exe)
        .arg(RUN_BUNDLE)
        .arg(bundle)
        .arg(state.path().join("state"))
        .arg(id)
        .stdin(StdStdio::null())
        .stderr(StdStdio::piped())
        .output()
        .map_err(|e| e.to_string())?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let us: Vec<f64> = text
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let phases = <[f64; 4]>::try_from(us.as_slice())
        .ok()
        .map(|p| p.map(|v| v / 1e3));
    Ok((ms, phases))
}

fn runc(bundle: &Path, root: &Path, id: &str) -> Sample {
    let start = Instant::now();
    let out = Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(StdStdio::null())
        .stderr(StdStdio::piped())
        .output()
        .map_err(|e| e.to_string())?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() {
        return Err(format!(
            "runc run: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok((ms, None))
}
