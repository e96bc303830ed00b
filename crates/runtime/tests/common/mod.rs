//! Shared pieces of the container tests: a tiny test runner (the binary is `harness = false`
//! because it is also the runtime's helper executable), and helpers to run a bundle and
//! observe it, with leak checks after every test.

#![allow(dead_code)]

use std::{
    fs,
    io::Read,
    os::fd::OwnedFd,
    panic::{catch_unwind, AssertUnwindSafe},
    path::PathBuf,
    time::{Duration, Instant},
};

use lifecycle_runtime::{reaper, Container, CreateOptions, Created, Error, Stdio};
use lifecycle_testsupport::{cgroup_dirs_left, require_root, unique, Bundle};

pub type TestFn = fn();

/// Runs `tests` (name, fn) whose names contain any non-flag argument, one at a time, and exits
/// non-zero if any failed.
pub fn run(tests: &[(&str, TestFn)]) {
    lifecycle_runtime::run_helper_if_requested();
    require_root();
    // Command::output is used by the test support once (busybox applets): before the reaper.
    lifecycle_testsupport::busybox_applets();
    reaper::start();
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let list = std::env::args().any(|a| a == "--list");
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, f) in tests {
        if !filters.is_empty() && !filters.iter().any(|flt| name.contains(flt.as_str())) {
            continue;
        }
        if list {
            println!("{name}: test");
            continue;
        }
        ran += 1;
        let start = Instant::now();
        let res = catch_unwind(AssertUnwindSafe(f));
        match res {
            Ok(()) => println!("test {name} ... ok ({} ms)", start.elapsed().as_millis()),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    if list {
        return;
    }
    // The plain closing line CI readers understand: "N passed, N failed".
    println!("\n{} passed, {} failed", ran - failed.len(), failed.len());
    if !failed.is_empty() {
        println!("failed: {failed:?}");
        std::process::exit(1);
    }
}

/// A bundle with its cgroup path, state dir and id, checked for leaks on drop.
pub struct Fixture {
    pub bundle: Bundle,
    pub id: String,
    pub cgroup: String,
}

impl Fixture {
    pub fn new(args: &[&str]) -> Fixture {
        let id = unique("lcrt");
        let cgroup = format!("/lc-test/{id}");
        let bundle = Bundle::new(args, &cgroup);
        Fixture { bundle, id, cgroup }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.bundle.path().join("state")
    }

    pub fn options(&self, stdio: Stdio) -> CreateOptions {
        CreateOptions {
            id: self.id.clone(),
            bundle: self.bundle.path().to_owned(),
            stdio,
            state_dir: self.state_dir(),
            hold: lifecycle_runtime::Hold::Caller,
        }
    }

    pub fn create(&self, stdio: Stdio) -> Result<Created, Error> {
        self.bundle.write_spec();
        Container::create(self.options(stdio))
    }

    /// Asserts that nothing of the container is left: cgroups, state, processes.
    pub fn assert_clean(&self) {
        let left = cgroup_dirs_left(&self.cgroup);
        assert!(left.is_empty(), "cgroup directories left behind: {left:?}");
        assert!(
            !self.state_dir().exists(),
            "state dir {} left behind",
            self.state_dir().display()
        );
        let procs = lifecycle_testsupport::processes_matching(&self.id);
        assert!(procs.is_empty(), "processes left: {procs:?}");
        let mounts =
            lifecycle_testsupport::mounts_containing(self.bundle.path().to_str().unwrap_or("?"));
        assert!(mounts.is_empty(), "mounts left on the host: {mounts:?}");
    }
}

impl Drop for Fixture {
    /// A failed test must not leak into the next: delete whatever is left (best effort).
    fn drop(&mut self) {
        if let Ok(c) = Container::load(&self.state_dir()) {
            let _ = c.delete();
        }
    }
}

/// A pipe: (read end, write end).
pub fn pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = nix::unistd::pipe().expect("pipe");
    (r, w)
}

/// What a finished container printed and its exit status.
pub struct Outcome {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Reads everything from `fd` on a thread.
pub fn drain(fd: OwnedFd) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = fs::File::from(fd).read_to_string(&mut s);
        s
    })
}

/// create + start + wait + delete; asserts cleanliness afterwards.
pub fn run_to_exit(fx: &Fixture) -> Outcome {
    try_run(fx).expect("create/start")
}

pub fn try_run(fx: &Fixture) -> Result<Outcome, Error> {
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let sub = reaper::subscribe();
    let created = fx.create(Stdio {
        stdin: None,
        stdout: Some(out_w),
        stderr: Some(err_w),
    });
    let created = match created {
        Ok(c) => c,
        Err(e) => {
            fx.assert_clean();
            return Err(e);
        }
    };
    let c = created.container;
    let out = drain(out_r);
    let err = drain(err_r);
    if let Err(e) = c.start() {
        c.delete().expect("delete after failed start");
        fx.assert_clean();
        return Err(e);
    }
    let exit = sub
        .wait_for(c.init_pid(), Some(Duration::from_secs(30)))
        .expect("container exits within 30s");
    c.delete().expect("delete");
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    fx.assert_clean();
    Ok(Outcome {
        status: exit.status,
        stdout,
        stderr,
    })
}

/// Runs `script` with /bin/sh -c in a default bundle after `edit` changed the spec; returns
/// the outcome (asserting cleanliness).
pub fn sh(script: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Outcome {
    let mut fx = Fixture::new(&["/bin/sh", "-c", script]);
    edit(&mut fx.bundle.spec);
    let o = run_to_exit(&fx);
    if o.status != 0 {
        eprintln!(
            "script {script:?} exited {}: stdout {:?} stderr {:?}",
            o.status, o.stdout, o.stderr
        );
    }
    o
}

/// Like [`sh`] but expects create or start to fail; returns the error text.
pub fn sh_err(script: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut fx = Fixture::new(&["/bin/sh", "-c", script]);
    edit(&mut fx.bundle.spec);
    match try_run(&fx) {
        Ok(o) => panic!(
            "expected an error, container exited {} with {:?} {:?}",
            o.status, o.stdout, o.stderr
        ),
        Err(e) => {
            let mut text = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                text.push_str(": ");
                text.push_str(&s.to_string());
                src = s.source();
            }
            text
        }
    }
}
