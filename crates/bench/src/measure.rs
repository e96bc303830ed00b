//! The measurements. Each one alternates between the two runtimes (and which goes first), so
//! slow drift of the machine lands on both.

use std::{
    fs,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use lifecycle_testsupport::{
    busybox_rootfs,
    containerd::{Containerd, Options},
    processes_matching,
};

use crate::{
    hooks::{self, HookResults},
    phases::{self, PhaseResults},
    runtime_cmd::{self, RuntimeResults},
    stats::summarize,
    Plan, Runtime, RUNTIMES,
};

/// A value per runtime, in [`RUNTIMES`] order.
pub type PerRuntime<T> = [T; 2];

/// One point of a scaling curve.
#[derive(Clone, Debug)]
pub struct ScalePoint {
    pub n: usize,
    pub values: PerRuntime<f64>,
}

#[derive(Debug, Default)]
pub struct Results {
    /// `ctr run --rm ... /bin/true`, milliseconds.
    pub e2e: PerRuntime<Vec<f64>>,
    /// Shim memory per running container (PSS of all shim processes plus any memfd copy of
    /// the binary they hold), KiB, by container count.
    pub memory: Vec<ScalePoint>,
    /// Wall time to start n containers concurrently (`ctr run -d`), milliseconds.
    pub concurrent: Vec<ScalePoint>,
    /// Median latency of one `ctr run -d` among n started concurrently, milliseconds.
    pub latency: Vec<ScalePoint>,
    /// The runtime library run as a command against `runc run`.
    pub runtime: RuntimeResults,
    /// Phases of `ctr run --rm` from containerd's debug log.
    pub phases: PhaseResults,
    /// postStart cost and grace deadline accuracy (ours only).
    pub hooks: HookResults,
    /// CPU time (user + system) used by the idle shims of the largest scale over the idle
    /// window, milliseconds (NaN when not measured).
    pub idle_cpu: PerRuntime<f64>,
    /// Container count of the idle measurement.
    pub idle_n: usize,
    /// Everything that failed (none is allowed).
    pub failures: Vec<String>,
}

pub fn run_all(plan: &Plan) -> Results {
    let rootfs = tempfile::Builder::new()
        .prefix("lc-bench-rootfs-")
        .tempdir()
        .expect("tempdir");
    busybox_rootfs(rootfs.path());
    let mut results = Results {
        idle_cpu: [f64::NAN; 2],
        ..Results::default()
    };
    {
        // containerd's debug logging would slow both runtimes and is not what a node runs.
        let daemon = Containerd::start_with(Options {
            log_level: Some("info"),
            ..Options::default()
        });
        eprintln!(
            "lifecycle-bench: private containerd pid {} ready (log level info)",
            daemon.pid()
        );
        end_to_end(&daemon, plan, rootfs.path(), &mut results);
        scaling(&daemon, plan, rootfs.path(), &mut results);
    }

    eprintln!(
        "[3/6] runtime as a command vs runc run: create+start+wait+delete of /bin/true, {} interleaved runs each",
        plan.runs
    );
    results.runtime = runtime_cmd::measure(plan.runs, &mut results.failures);
    print_medians(&results.runtime.total, ["lifecycle-runtime", "runc run"]);

    {
        let daemon = Containerd::start_with(Options {
            log_level: Some("debug"),
            ..Options::default()
        });
        eprintln!(
            "lifecycle-bench: private containerd pid {} ready (log level debug, for the log timestamps)",
            daemon.pid()
        );
        let rootfs = path(rootfs.path());
        eprintln!(
            "[4/6] phases of ctr run --rm from containerd's debug log, {} interleaved runs each",
            plan.runs
        );
        results.phases = phases::measure(&daemon, rootfs, plan.runs, &mut results.failures);
        eprintln!(
            "[5/6] Start with a /bin/true exec postStart vs none (ours), {} interleaved runs each",
            plan.runs
        );
        hooks::post_start(
            &daemon,
            rootfs,
            plan.runs,
            &mut results.hooks,
            &mut results.failures,
        );
        print_medians(&results.hooks.start, ["no hook", "postStart"]);
        eprintln!(
            "[6/6] grace deadline: SIGTERM ignored, grace {} s, {} runs",
            hooks::GRACE_SECONDS,
            plan.grace_runs
        );
        hooks::grace(
            &daemon,
            rootfs,
            plan.grace_runs,
            &mut results.hooks,
            &mut results.failures,
        );
        eprintln!(
            "      exit after the deadline: median {:.1} ms",
            summarize(&results.hooks.grace_late).median
        );
    }
    eprintln!("done");
    for f in &mut results.failures {
        // ctr's error output may carry terminal control characters; the report is Markdown.
        *f = f
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
    }
    results
}

fn print_medians(samples: &[Vec<f64>; 2], labels: [&str; 2]) {
    eprintln!(
        "      median {}: {:.1} ms, {}: {:.1} ms",
        labels[0],
        summarize(&samples[0]).median,
        labels[1],
        summarize(&samples[1]).median
    );
}

fn end_to_end(daemon: &Containerd, plan: &Plan, rootfs: &Path, results: &mut Results) {
    eprintln!(
        "[1/6] end to end: ctr run --rm /bin/true, {} interleaved runs each",
        plan.runs
    );
    for i in 0..plan.runs {
        for r in order(i) {
            let id = format!("e2e-{}-{i}", RUNTIMES[r].label);
            let start = Instant::now();
            let out = daemon
                .ctr_command(&[
                    "run",
                    "--rm",
                    "--runtime",
                    RUNTIMES[r].runtime,
                    "--rootfs",
                    path(rootfs),
                    &id,
                    "/bin/true",
                ])
                .output()
                .expect("run ctr");
            let ms = start.elapsed().as_secs_f64() * 1e3;
            if out.status.success() {
                results.e2e[r].push(ms);
            } else {
                results.failures.push(format!(
                    "{id}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        if (i + 1) % 10 == 0 || i + 1 == plan.runs {
            eprintln!("      {}/{}", i + 1, plan.runs);
        }
    }
    print_medians(&results.e2e, [RUNTIMES[0].label, RUNTIMES[1].label]);
}

fn scaling(daemon: &Containerd, plan: &Plan, rootfs: &Path, results: &mut Results) {
    eprintln!(
        "[2/6] n containers started concurrently, shim memory per container, n in {:?}",
        plan.scale
    );
    let max_n = plan.scale.iter().copied().max().unwrap_or(1);
    for (k, &n) in plan.scale.iter().enumerate() {
        let mut point_mem = ScalePoint {
            n,
            values: [0.0; 2],
        };
        let mut point_wall = ScalePoint {
            n,
            values: [0.0; 2],
        };
        let mut point_latency = ScalePoint {
            n,
            values: [0.0; 2],
        };
        for r in order(k) {
            let rt = RUNTIMES[r];
            let ids: Vec<String> = (0..n)
                .map(|j| format!("scale-{}-{n}-{j}", rt.label))
                .collect();
            let failures_before = results.failures.len();
            let (wall, latencies) =
                start_concurrently(daemon, rt, rootfs, &ids, &mut results.failures);
            if results.failures.len() == failures_before {
                wait_running(daemon, &ids, &mut results.failures);
            }
            // A runtime that failed to start them all has no figure at this n.
            let ok = results.failures.len() == failures_before;
            let kib = if ok {
                shim_memory_kib(daemon, rt)
            } else {
                f64::NAN
            };
            point_wall.values[r] = if ok { wall } else { f64::NAN };
            let latency = summarize(&latencies).median;
            point_latency.values[r] = if ok { latency } else { f64::NAN };
            point_mem.values[r] = kib / n as f64;
            eprintln!(
                "      {:>9} n={n:<3} wall {wall:8.1} ms   median per container {latency:8.1} ms   memory {:8.0} KiB/container",
                rt.label,
                kib / n as f64
            );
            if n == max_n && ok {
                let cpu = idle_cpu_ms(daemon, rt, plan.idle);
                results.idle_cpu[r] = cpu;
                results.idle_n = n;
                eprintln!(
                    "      {:>9} n={n:<3} idle CPU {cpu:.1} ms over {:?}",
                    rt.label, plan.idle
                );
            }
            remove_all(daemon, &ids, &mut results.failures);
        }
        results.memory.push(point_mem);
        results.concurrent.push(point_wall);
        results.latency.push(point_latency);
    }
}

/// Which runtime goes first alternates with `i`.
pub fn order(i: usize) -> [usize; 2] {
    if i % 2 == 0 {
        [0, 1]
    } else {
        [1, 0]
    }
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

fn start_concurrently(
    daemon: &Containerd,
    rt: Runtime,
    rootfs: &Path,
    ids: &[String],
    failures: &mut Vec<String>,
) -> (f64, Vec<f64>) {
    let start = Instant::now();
    let outcomes: Vec<Result<f64, String>> = thread::scope(|s| {
        let handles: Vec<_> = ids
            .iter()
            .map(|id| {
                s.spawn(move || {
                    let t = Instant::now();
                    let out = daemon
                        .ctr_command(&[
                            "run",
                            "-d",
                            "--runtime",
                            rt.runtime,
                            "--rootfs",
                            path(rootfs),
                            id,
                            "/bin/sleep",
                            "1000000",
                        ])
                        .output()
                        .expect("run ctr");
                    let ms = t.elapsed().as_secs_f64() * 1e3;
                    if out.status.success() {
                        Ok(ms)
                    } else {
                        Err(format!(
                            "{id}: {}",
                            String::from_utf8_lossy(&out.stderr).trim()
                        ))
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("ctr thread"))
            .collect()
    });
    let wall = start.elapsed().as_secs_f64() * 1e3;
    let mut latencies = Vec::new();
    for o in outcomes {
        match o {
            Ok(ms) => latencies.push(ms),
            Err(e) => failures.push(e),
        }
    }
    (wall, latencies)
}

fn wait_running(daemon: &Containerd, ids: &[String], failures: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = String::from_utf8_lossy(&daemon.ctr_raw(&["task", "ls"]).stdout).into_owned();
        let running = ids
            .iter()
            .filter(|id| {
                list.lines()
                    .any(|l| l.starts_with(id.as_str()) && l.contains("RUNNING"))
            })
            .count();
        if running == ids.len() {
            return;
        }
        if Instant::now() > deadline {
            failures.push(format!(
                "only {running} of {} containers RUNNING after 60 s",
                ids.len()
            ));
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

pub fn remove_all(daemon: &Containerd, ids: &[String], failures: &mut Vec<String>) {
    let tasks = String::from_utf8_lossy(&daemon.ctr_raw(&["task", "ls", "-q"]).stdout).into_owned();
    let containers =
        String::from_utf8_lossy(&daemon.ctr_raw(&["container", "ls", "-q"]).stdout).into_owned();
    for id in ids {
        let has = |list: &str| list.lines().any(|l| l.trim() == id.as_str());
        if !has(&containers) {
            continue;
        }
        let out = daemon.ctr_raw(&["task", "rm", "-f", id]);
        if has(&tasks) && !out.status.success() {
            failures.push(format!(
                "task rm -f {id}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let out = daemon.ctr_raw(&["container", "rm", id]);
        if !out.status.success() {
            failures.push(format!(
                "container rm {id}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
}

/// Shim processes of `rt` serving this daemon.
fn shim_pids(daemon: &Containerd, rt: Runtime) -> Vec<i32> {
    let address = daemon.address.display().to_string();
    processes_matching(rt.shim)
        .into_iter()
        .filter(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            cmdline.contains(&address)
        })
        .collect()
}

/// PSS of every shim process of `rt`, plus the size of every distinct memfd they hold open
/// (a sealed copy of the binary counts even where it is not mapped).
fn shim_memory_kib(daemon: &Containerd, rt: Runtime) -> f64 {
    let mut total = 0.0;
    let mut memfds = std::collections::HashSet::new();
    for pid in shim_pids(daemon, rt) {
        let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        for line in rollup.lines() {
            if let Some(rest) = line.strip_prefix("Pss:") {
                total += rest
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .unwrap_or(0.0);
            }
        }
        for fd in fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let is_memfd = fs::read_link(fd.path())
                .map(|t| t.to_string_lossy().starts_with("/memfd:"))
                .unwrap_or(false);
            if is_memfd {
                if let Ok(meta) = fs::metadata(fd.path()) {
                    use std::os::unix::fs::MetadataExt;
                    if memfds.insert((meta.dev(), meta.ino())) {
                        total += meta.len() as f64 / 1024.0;
                    }
                }
            }
        }
    }
    total
}

/// CPU time (user + system, ms) the shims of `rt` use over `window` while their containers
/// sleep.
fn idle_cpu_ms(daemon: &Containerd, rt: Runtime, window: Duration) -> f64 {
    let pids = shim_pids(daemon, rt);
    let before: f64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
    thread::sleep(window);
    let after: f64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (after - before) * 1e3 / hz
}

/// utime + stime of a process (all its threads), in clock ticks.
fn cpu_ticks(pid: i32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    utime + stime
}
