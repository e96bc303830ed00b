//! Benchmark (not a timed test): create + start + wait + delete of a busybox `/bin/true`
//! bundle through this library, against `runc run` of the same bundle, interleaved.
//!
//! cargo run --release -p lifecycle-runtime --example runtime-bench -- [iterations]
//!
//! Runs as root. The binary is its own helper executable, like the shim.

use std::{
    process::{Command, Stdio as StdStdio},
    time::{Duration, Instant},
};

use lifecycle_runtime::{reaper, Container, CreateOptions, Stdio};
use lifecycle_testsupport::{require_bin, require_root, unique, Bundle};

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Per-phase times of our runs: create, start, wait, delete.
static PHASES: std::sync::Mutex<Vec<[Duration; 4]>> = std::sync::Mutex::new(Vec::new());

fn ours(bundle: &Bundle, id: &str) -> Duration {
    let sub = reaper::subscribe();
    let start = Instant::now();
    let mut marks = [start; 4];
    let created = Container::create(CreateOptions {
        id: id.to_owned(),
        bundle: bundle.path().to_owned(),
        stdio: Stdio::default(),
        state_dir: bundle.path().join("state"),
        hold: lifecycle_runtime::Hold::Caller,
    })
    .expect("create");
    let c = created.container;
    marks[0] = Instant::now();
    c.start().expect("start");
    marks[1] = Instant::now();
    let exit = sub
        .wait_for(c.init_pid(), Some(Duration::from_secs(10)))
        .expect("exit");
    assert_eq!(exit.status, 0);
    marks[2] = Instant::now();
    c.delete().expect("delete");
    marks[3] = Instant::now();
    let phases = [
        marks[0] - start,
        marks[1] - marks[0],
        marks[2] - marks[1],
        marks[3] - marks[2],
    ];
    PHASES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(phases);
    start.elapsed()
}

// The child is reaped by the process-wide reaper, never by Child::wait.
#[allow(clippy::zombie_processes)]
fn runc(bundle: &Bundle, id: &str, root: &std::path::Path) -> Duration {
    let sub = reaper::subscribe();
    let start = Instant::now();
    let child = Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg(id)
        .stdin(StdStdio::null())
        .stdout(StdStdio::null())
        .stderr(StdStdio::null())
        .spawn()
        .expect("spawn runc");
    reaper::notify();
    let exit = sub
        .wait_for(child.id() as i32, Some(Duration::from_secs(10)))
        .expect("runc exits");
    assert_eq!(exit.status, 0, "runc run failed");
    start.elapsed()
}

fn main() {
    lifecycle_runtime::run_helper_if_requested();
    require_root();
    require_bin("runc");
    lifecycle_testsupport::busybox_applets();
    reaper::start();
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    let id = unique("lc-bench");
    let bundle = Bundle::new(&["/bin/true"], &format!("/lc-test/{id}"));
    let root = tempfile::tempdir().expect("runc root");
    // Warm-up (the sealed copy of this binary is made on the first create).
    ours(&bundle, &format!("{id}-w"));
    runc(&bundle, &format!("{id}-rw"), root.path());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..n {
        a.push(ours(&bundle, &format!("{id}-{i}")));
        b.push(runc(&bundle, &format!("{id}-r{i}"), root.path()));
    }
    let (ma, mb) = (median(&mut a), median(&mut b));
    println!("create+start+wait+delete of /bin/true, {n} runs each, interleaved");
    println!(
        "lifecycle-runtime median {:.2} ms (min {:.2})",
        ma.as_secs_f64() * 1e3,
        a[0].as_secs_f64() * 1e3
    );
    println!(
        "runc run          median {:.2} ms (min {:.2})",
        mb.as_secs_f64() * 1e3,
        b[0].as_secs_f64() * 1e3
    );
    println!(
        "ratio {:.2} (target <= 0.5)",
        ma.as_secs_f64() / mb.as_secs_f64()
    );
    let phases = PHASES.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for (i, name) in ["create", "start", "wait", "delete"].iter().enumerate() {
        let mut v: Vec<Duration> = phases.iter().map(|p| p[i]).collect();
        println!(
            "  {name:<7} median {:.2} ms",
            median(&mut v).as_secs_f64() * 1e3
        );
    }
}
