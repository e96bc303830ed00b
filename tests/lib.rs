//! What the end-to-end tests share: running `ctr` against a private containerd
//! ([`lifecycle_testsupport::containerd::Containerd`]) with our runtime, reading task state, and
//! the annotation keys and entrypoints the hook tests use. The tests are the `[[test]]` targets
//! beside this file.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Output,
    thread,
    time::{Duration, Instant},
};

use lifecycle_testsupport::{
    busybox_rootfs,
    containerd::{Containerd, RUNTIME},
    unique,
};

pub const PS: &str = "lifecycle.shim/post-start";
pub const PRE: &str = "lifecycle.shim/pre-stop";
pub const GRACE: &str = "lifecycle.shim/termination-grace-period-seconds";
/// An entrypoint that runs until killed (pid 1 ignores SIGTERM without a handler).
pub const FOREVER: &[&str] = &["/bin/sh", "-c", "sleep 1000 & wait"];

/// A command's status and output, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A busybox root filesystem directory for `ctr run --rootfs` (removed with the TempDir).
pub fn rootfs() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("lc-rootfs-")
        .tempdir()
        .expect("tempdir");
    let root = dir.path().join("rootfs");
    busybox_rootfs(&root);
    (dir, root)
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A `LifecycleHandler` that runs `script` with `/bin/sh -c` in the container.
pub fn exec_handler(script: &str) -> String {
    serde_json::json!({"exec": {"command": ["/bin/sh", "-c", script]}}).to_string()
}

/// `ctr run` with our runtime, `annotations` as `--annotation K=V`, more flags, a rootfs dir.
pub fn run_args(
    annotations: &[(&str, String)],
    flags: &[&str],
    root: &Path,
    id: &str,
    cmd: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = vec!["run".into(), "--runtime".into(), RUNTIME.into()];
    for (k, v) in annotations {
        args.push("--annotation".into());
        args.push(format!("{k}={v}"));
    }
    args.extend(flags.iter().map(|s| s.to_string()));
    args.push("--rootfs".into());
    args.push(path_str(root).into());
    args.push(id.into());
    args.extend(cmd.iter().map(|s| s.to_string()));
    args
}

/// `ctr` with owned arguments (see [`run_args`]).
pub fn ctr_raw(c: &Containerd, args: &[String]) -> Output {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    c.ctr_raw(&a)
}

/// `ctr` with owned arguments, asserting success; its stdout.
pub fn ctr_ok(c: &Containerd, args: &[String]) -> String {
    let out = ctr_raw(c, args);
    assert!(out.status.success(), "ctr {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `f` every 20 ms until it holds; fails the test after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// The task's STATUS column in `ctr task ls` ("" when there is no task).
pub fn task_status(c: &Containerd, id: &str) -> String {
    task_field(c, id, 2)
}

/// The task's PID column in `ctr task ls` (0 when there is no task).
pub fn task_pid(c: &Containerd, id: &str) -> i32 {
    task_field(c, id, 1).parse().unwrap_or(0)
}

fn task_field(c: &Containerd, id: &str, n: usize) -> String {
    let out = c.ctr(&["task", "ls"]);
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .and_then(|l| l.split_whitespace().nth(n))
        .unwrap_or("")
        .to_owned()
}

/// Output of a command run in the container with `ctr task exec`.
pub fn exec_out(c: &Containerd, id: &str, script: &str) -> String {
    let eid = unique("x");
    c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        &eid,
        id,
        "/bin/sh",
        "-c",
        script,
    ])
}

/// Kills (if needed) every process of a container and removes its task and record.
pub fn remove(c: &Containerd, id: &str) {
    let _ = c.ctr_raw(&["task", "kill", "-a", "-s", "SIGKILL", id]);
    wait_for("task to stop", Duration::from_secs(10), || {
        let s = task_status(c, id);
        s.is_empty() || s == "STOPPED"
    });
    let _ = c.ctr_raw(&["task", "rm", id]);
    c.ctr(&["container", "rm", id]);
}

/// A file of the container's rootfs ("" when missing).
pub fn read(root: &Path, file: &str) -> String {
    fs::read_to_string(root.join(file)).unwrap_or_default()
}

/// The `/tasks/...` topics of `ctr events` output that concern `id`, in order.
pub fn task_topics(events: &str, id: &str) -> Vec<String> {
    events
        .lines()
        .filter(|l| l.contains(id))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("/tasks/")))
        .map(str::to_owned)
        .collect()
}
