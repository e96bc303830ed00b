//! `lifecycle-runc` as runc: a private containerd 1.6 runs busybox containers with the runtime
//! `io.containerd.runc.v2` (Debian's containerd-shim-runc-v2) and `ctr run --runc-binary
//! <lifecycle-runc>`, so every create, start, state, exec, kill, ps and delete the shim makes
//! goes through our command line and runtime library. Every test ends by asserting that no shim
//! process, mount, cgroup or runtime state was left behind.
//!
//! The binary is the workspace build (`cargo build -p lifecycle-runc`); `LIFECYCLE_RUNC_BIN`
//! points the tests at another one, e.g. `/usr/sbin/runc` to check the tests themselves.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use lifecycle_integration::*;
use lifecycle_testsupport::{
    containerd::{busybox_image, runc_binary, Containerd, Options},
    require_bin, unique,
};

/// The runtime type of containerd-shim-runc-v2.
const RUNC_V2: &str = "io.containerd.runc.v2";
const IMAGE: &str = "registry.local/bb:1";

/// A private containerd with the runc-v2 shim on its PATH and a busybox image imported.
struct Setup {
    c: Containerd,
    runc: PathBuf,
    _images: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        require_bin("containerd-shim-runc-v2");
        let runc = runc_binary();
        let c = Containerd::start_with(Options {
            without_lifecycle_shim: true,
            ..Options::default()
        });
        let images = tempfile::tempdir().expect("tempdir");
        let tar = busybox_image(images.path(), "bb", &[], &["/bin/sh"], None);
        c.ctr(&["images", "import", path_str(&tar)]);
        Setup {
            c,
            runc,
            _images: images,
        }
    }

    /// `ctr run --runtime io.containerd.runc.v2 --runc-binary <runc> [flags] IMAGE id cmd...`.
    fn run_args<'a>(&'a self, flags: &[&'a str], id: &'a str, cmd: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "run",
            "--runtime",
            RUNC_V2,
            "--runc-binary",
            path_str(&self.runc),
        ];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[IMAGE, id]);
        args.extend_from_slice(cmd);
        args
    }

    /// The runtime's state directory for this daemon's namespace, as the shim names it with
    /// `--root` (runc-v2's default `/run/containerd/runc/<namespace>`), seen from inside the
    /// daemon's private mount namespace.
    fn runc_root(&self) -> PathBuf {
        Path::new(&format!("/proc/{}/root", self.c.pid()))
            .join("run/containerd/runc")
            .join(&self.c.namespace)
    }

    /// Container ids the runtime still keeps state for.
    fn runc_state_left(&self) -> Vec<String> {
        fs::read_dir(self.runc_root())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Nothing left: no shim, mount or cgroup (testsupport), no runtime state under `--root`.
    fn assert_clean(&self) {
        self.c.assert_clean();
        assert_eq!(
            self.runc_state_left(),
            Vec::<String>::new(),
            "{} kept state in {}",
            self.runc.display(),
            self.runc_root().display()
        );
    }

    /// What to show when a step failed: the daemon's log (it has the shim's runc errors).
    fn log(&self) -> String {
        let log = self.c.log();
        let start = log.len().saturating_sub(6000);
        log.get(start..).unwrap_or(&log).to_owned()
    }
}

#[test]
fn run_to_completion_reports_exit_status_and_output() {
    let s = Setup::new();
    for (script, code) in [("echo hello; exit 0", 0), ("echo hello; exit 3", 3)] {
        let id = unique("done");
        let out =
            s.c.ctr_raw(&s.run_args(&["--rm"], &id, &["/bin/sh", "-c", script]));
        assert_eq!(
            out.status.code(),
            Some(code),
            "{script}: {}\n{}",
            text(&out),
            s.log()
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "hello",
            "{}",
            text(&out)
        );
    }
    s.assert_clean();
}

#[test]
fn detached_task_exec_kill_and_delete() {
    let s = Setup::new();
    let c = &s.c;
    let id = unique("det");
    let out = c.ctr_raw(&s.run_args(
        &["-d"],
        &id,
        // pid 1 of a pid namespace ignores SIGTERM without a handler: trap it.
        &["/bin/sh", "-c", "trap 'exit 3' TERM; sleep 1000 & wait"],
    ));
    assert!(out.status.success(), "{}\n{}", text(&out), s.log());
    assert_eq!(task_status(c, &id), "RUNNING");
    assert_eq!(
        s.runc_state_left(),
        vec![id.clone()],
        "the runtime keeps the container's state under the shim's --root"
    );

    // An exec's output and exit code come back through the shim.
    let out = c.ctr_raw(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "/bin/sh",
        "-c",
        "echo from-exec $(cat /proc/1/comm); exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}\n{}", text(&out), s.log());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "from-exec sh",
        "the exec runs in the container's pid namespace: {}",
        text(&out)
    );
    // The exec id is free again once its process exited and was deleted.
    let out = c.ctr_raw(&["task", "exec", "--exec-id", "e1", &id, "/bin/true"]);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out), s.log());

    // `ctr task ps` is the runtime's `ps`: sh and sleep.
    let ps = c.ctr(&["task", "ps", &id]);
    assert_eq!(ps.lines().skip(1).count(), 2, "sh and sleep: {ps}");

    c.ctr(&["task", "kill", "-s", "SIGTERM", &id]);
    wait_for("SIGTERM to stop the task", Duration::from_secs(10), || {
        task_status(c, &id) == "STOPPED"
    });
    // A kill of the stopped task fails (runc-v2 answers NotFound), it does not hang.
    let out = c.ctr_raw(&["task", "kill", "-s", "SIGKILL", &id]);
    assert!(
        !out.status.success(),
        "kill of a stopped task must fail: {}",
        text(&out)
    );
    // The exit status reached containerd: `ctr task delete` warns about a non-zero one.
    let out = c.ctr_raw(&["task", "delete", &id]);
    assert!(out.status.success(), "{}\n{}", text(&out), s.log());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("non-zero exit code 3"),
        "exit status 3 from the TERM trap: {}",
        text(&out)
    );
    c.ctr(&["container", "delete", &id]);
    s.assert_clean();
}

#[test]
fn kill_of_an_attached_run_gives_128_plus_signal() {
    let s = Setup::new();
    let c = &s.c;
    let id = unique("sig");
    let attached = c
        .ctr_command(&s.run_args(&["--rm"], &id, &["/bin/sleep", "1000"]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ctr run");
    wait_for("the task to run", Duration::from_secs(10), || {
        task_status(c, &id) == "RUNNING"
    });
    c.ctr(&["task", "kill", "-s", "SIGKILL", &id]);
    let out = attached.wait_with_output().expect("ctr run");
    assert_eq!(out.status.code(), Some(137), "{}\n{}", text(&out), s.log());
    s.assert_clean();
}

#[test]
fn kill_all_and_force_delete_of_a_running_task() {
    let s = Setup::new();
    let c = &s.c;
    let id = unique("all");
    let out = c.ctr_raw(&s.run_args(
        &["-d"],
        &id,
        &["/bin/sh", "-c", "sleep 1000 & sleep 1000 & wait"],
    ));
    assert!(out.status.success(), "{}\n{}", text(&out), s.log());
    wait_for("three processes", Duration::from_secs(10), || {
        c.ctr(&["task", "ps", &id]).lines().skip(1).count() == 3
    });
    // `kill --all` reaches every process of the container, not only its init.
    c.ctr(&["task", "kill", "--all", "-s", "SIGKILL", &id]);
    wait_for("the task to stop", Duration::from_secs(10), || {
        task_status(c, &id) == "STOPPED"
    });
    c.ctr(&["task", "delete", &id]);

    // A running task deleted with --force: the shim kills it and deletes the container.
    let id2 = unique("force");
    let out = c.ctr_raw(&s.run_args(&["-d"], &id2, &["/bin/sleep", "1000"]));
    assert!(out.status.success(), "{}\n{}", text(&out), s.log());
    c.ctr(&["task", "delete", "--force", &id2]);
    for id in [&id, &id2] {
        c.ctr(&["container", "delete", id]);
    }
    s.assert_clean();
}

#[test]
fn a_terminal_comes_through_the_console_socket() {
    let s = Setup::new();
    let id = unique("tty");
    // runc-v2 hands the runtime `--console-socket` for `ctr run -t`; ctr needs a terminal on
    // its own stdin, which script(1) provides.
    let ctr = format!(
        "ctr --address {} -n {} run --rm -t --runtime {RUNC_V2} --runc-binary {} {IMAGE} {id} \
         /bin/sh -c 'tty; exit 7'",
        s.c.address.display(),
        s.c.namespace,
        s.runc.display(),
    );
    let out = std::process::Command::new("nsenter")
        .args(["-t", &s.c.pid().to_string(), "-m", "--"])
        .args(["script", "-qec", &ctr, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("/dev/pts/"),
        "no pty in the container: {}\n{}",
        text(&out),
        s.log()
    );
    assert_eq!(out.status.code(), Some(7), "{}\n{}", text(&out), s.log());
    s.assert_clean();
}

#[test]
fn a_failed_exec_reports_the_runtime_error_and_the_task_runs_on() {
    let s = Setup::new();
    let c = &s.c;
    let id = unique("xerr");
    let out = c.ctr_raw(&s.run_args(&["-d"], &id, &["/bin/sleep", "1000"]));
    assert!(out.status.success(), "{}\n{}", text(&out), s.log());
    // The shim reads the runtime's error from its `--log-format json` log and returns it.
    let out = c.ctr_raw(&["task", "exec", "--exec-id", "bad", &id, "/no/such/binary"]);
    assert!(
        !out.status.success(),
        "exec of a missing binary: {}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/no/such/binary"),
        "the runtime's error names the binary: {}\n{}",
        text(&out),
        s.log()
    );
    assert_eq!(task_status(c, &id), "RUNNING");
    let out = c.ctr_raw(&["task", "exec", "--exec-id", "good", &id, "/bin/true"]);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out), s.log());
    c.ctr(&["task", "kill", "-s", "SIGKILL", &id]);
    wait_for("the task to stop", Duration::from_secs(10), || {
        task_status(c, &id) == "STOPPED"
    });
    c.ctr(&["task", "delete", &id]);
    c.ctr(&["container", "delete", &id]);
    s.assert_clean();
}
