//! lifecycle-runc as containerd-shim-runc-v2's runc (`ctr run --runc-binary`), through a
//! private containerd: run, exec, kill, delete. As root; nothing skips.

use std::{path::Path, process::Output};

use lifecycle_testsupport::{
    busybox_rootfs,
    containerd::{Containerd, Options},
    require_bin, unique,
};

const BIN: &str = env!("CARGO_BIN_EXE_lifecycle-runc");

fn check(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn ctr_run_exec_kill_delete_with_runc_binary() {
    let shim = require_bin("containerd-shim-runc-v2");
    let c = Containerd::start_with(Options {
        // Only the runc shim is used; the lifecycle shim slot is filled with it too.
        shim: Some(shim),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    busybox_rootfs(&root);
    let root = root.to_str().unwrap();
    let run = |flags: &[&str], id: &str, cmd: &[&str]| {
        let mut args = vec![
            "run",
            "--runtime",
            "io.containerd.runc.v2",
            "--runc-binary",
            BIN,
        ];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--rootfs", root, id]);
        args.extend_from_slice(cmd);
        c.ctr_raw(&args)
    };

    // Foreground: output and exit status come back through the shim.
    let id = unique("lcrv2");
    let out = run(
        &["--rm"],
        &id,
        &["sh", "-c", "echo hello-from-lifecycle-runc; exit 3"],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        c.log()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello-from-lifecycle-runc"));

    // Detached, then exec, kill and delete.
    let id = unique("lcrv2");
    check("ctr run -d", &run(&["-d"], &id, &["sleep", "100"]));
    let tasks = check("ctr task ls", &c.ctr_raw(&["task", "ls"]));
    assert!(
        tasks
            .lines()
            .any(|l| l.contains(&id) && l.contains("RUNNING")),
        "{tasks}"
    );
    // The shim really drives lifecycle-runc: its state is in lifecycle-runc's format, under
    // the root containerd-shim-runc-v2 passes (inside the daemon's mount namespace).
    let state = std::process::Command::new("nsenter")
        .args(["-t", &c.pid().to_string(), "-m", "--", BIN, "--root"])
        .arg(format!("/run/containerd/runc/{}", c.namespace))
        .args(["state", &id])
        .output()
        .unwrap();
    let state: serde_json::Value =
        serde_json::from_str(&check("lifecycle-runc state", &state)).unwrap();
    assert_eq!(state["status"], "running");
    assert!(
        state["created"].as_str().is_some_and(|c| c.ends_with('Z')),
        "{state}"
    );
    let out = c.ctr_raw(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "sh",
        "-c",
        "echo in-exec; exit 5",
    ]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("in-exec"));
    let ps = check("ctr task ps", &c.ctr_raw(&["task", "ps", &id]));
    assert!(ps.lines().count() >= 2, "{ps}");
    check("ctr task pause", &c.ctr_raw(&["task", "pause", &id]));
    let tasks = check("ctr task ls", &c.ctr_raw(&["task", "ls"]));
    assert!(
        tasks
            .lines()
            .any(|l| l.contains(&id) && l.contains("PAUSED")),
        "{tasks}"
    );
    check("ctr task resume", &c.ctr_raw(&["task", "resume", &id]));
    check(
        "ctr task kill",
        &c.ctr_raw(&["task", "kill", "-s", "SIGKILL", &id]),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let tasks = check("ctr task ls", &c.ctr_raw(&["task", "ls"]));
        if tasks
            .lines()
            .any(|l| l.contains(&id) && l.contains("STOPPED"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never stopped: {tasks}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    check("ctr task delete", &c.ctr_raw(&["task", "delete", &id]));
    check(
        "ctr container delete",
        &c.ctr_raw(&["container", "delete", &id]),
    );
    assert!(!Path::new(&format!("/sys/fs/cgroup/pids/default/{id}")).exists());
}
