//! The shim end to end: a private containerd 1.6 (task API v2) drives
//! containerd-shim-lifecycle-v1 through `ctr`. Every test ends by asserting that no shim
//! process, container process, mount or cgroup was left behind.

use std::{
    path::{Path, PathBuf},
    process::Output,
    thread,
    time::{Duration, Instant},
};

use lifecycle_integration::*;
use lifecycle_testsupport::{
    containerd::{busybox_image, Containerd, RUNTIME},
    unique,
};

/// `ctr run` with our runtime and a rootfs directory.
fn run_args<'a>(flags: &[&'a str], root: &'a Path, id: &'a str, cmd: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", "--runtime", RUNTIME];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--rootfs", path_str(root), id]);
    args.extend_from_slice(cmd);
    args
}

#[test]
fn run_rm_reports_exit_codes_and_output() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    for (cmd, code) in [
        ("echo hello; exit 0", 0),
        ("echo hello; exit 3", 3),
        ("exit 42", 42),
    ] {
        let id = unique("rm");
        let out = c.ctr_raw(&run_args(&["--rm"], &root, &id, &["/bin/sh", "-c", cmd]));
        assert_eq!(
            out.status.code(),
            Some(code),
            "{cmd}: {}\n{}",
            text(&out),
            c.log()
        );
        if code != 42 {
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                "hello",
                "{}",
                text(&out)
            );
        }
    }
    c.assert_clean();
}

#[test]
fn detached_exec_ps_metrics_pause_resume_kill() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let id = unique("det");
    // pid 1 of a pid namespace ignores signals it has no handler for: trap SIGTERM.
    c.ctr(&run_args(
        &["-d"],
        &root,
        &id,
        &["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
    ));
    assert_eq!(task_status(&c, &id), "RUNNING");

    let out = c.ctr_raw(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "/bin/sh",
        "-c",
        "echo from-exec; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "from-exec");
    // The exec id is free again once the exec was deleted.
    let out = c.ctr_raw(&["task", "exec", "--exec-id", "e1", &id, "/bin/true"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let ps = c.ctr(&["task", "ps", &id]);
    let pids: Vec<&str> = ps
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(pids.len(), 2, "sh and sleep: {ps}");

    let metrics = c.ctr(&["task", "metrics", &id]);
    assert!(
        metrics.contains("memory") || metrics.contains("pids"),
        "metrics: {metrics}"
    );

    c.ctr(&["task", "pause", &id]);
    assert_eq!(task_status(&c, &id), "PAUSED");
    c.ctr(&["task", "resume", &id]);
    assert_eq!(task_status(&c, &id), "RUNNING");

    c.ctr(&["task", "kill", "-s", "SIGTERM", &id]);
    wait_for("SIGTERM to stop sh", Duration::from_secs(10), || {
        task_status(&c, &id) == "STOPPED"
    });
    // A second kill of the exited task is NotFound, not a crash or a hang.
    let out = c.ctr_raw(&["task", "kill", "-s", "SIGKILL", &id]);
    assert!(
        !out.status.success(),
        "kill of an exited task must fail: {}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{}",
        text(&out)
    );
    c.ctr(&["task", "rm", &id]);
    c.ctr(&["container", "rm", &id]);
    c.assert_clean();
}

#[test]
fn attached_run_reports_signal_deaths_as_128_plus_signal() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let id = unique("sig");
    let attached = c
        .ctr_command(&run_args(&["--rm"], &root, &id, &["/bin/sleep", "1000"]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ctr run");
    wait_for("task to run", Duration::from_secs(10), || {
        task_status(&c, &id) == "RUNNING"
    });
    c.ctr(&["task", "kill", "-a", "-s", "SIGKILL", &id]);
    let out = attached.wait_with_output().expect("ctr run");
    assert_eq!(out.status.code(), Some(137), "{}", text(&out));
    c.assert_clean();
}

#[test]
fn exec_in_a_shared_container_and_kill_all() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let id = unique("all");
    // A parent with children: `kill -a` must reach all of them.
    c.ctr(&run_args(
        &["-d"],
        &root,
        &id,
        &["/bin/sh", "-c", "sleep 1000 & sleep 1000 & wait"],
    ));
    wait_for("three processes", Duration::from_secs(10), || {
        c.ctr(&["task", "ps", &id]).lines().skip(1).count() == 3
    });
    c.ctr(&["task", "kill", "-a", "-s", "SIGKILL", &id]);
    wait_for("task to stop", Duration::from_secs(10), || {
        task_status(&c, &id) == "STOPPED"
    });
    c.ctr(&["task", "rm", &id]);
    c.ctr(&["container", "rm", &id]);
    c.assert_clean();
}

#[test]
fn tty_run_gets_a_pty() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let id = unique("tty");
    // ctr -t needs a terminal on its own stdin: script(1) provides one.
    let ctr = format!(
        "ctr --address {} -n {} run --rm -t --runtime {RUNTIME} --rootfs {} {id} /bin/sh -c 'tty; exit 7'",
        c.address.display(),
        c.namespace,
        root.display()
    );
    let out = std::process::Command::new("nsenter")
        .args([
            "-t",
            &c.pid().to_string(),
            "-m",
            "--",
            "script",
            "-qec",
            &ctr,
            "/dev/null",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("/dev/pts/"),
        "no pty in the container: {}",
        text(&out)
    );
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    c.assert_clean();
}

#[test]
fn image_from_the_snapshotter_runs_on_overlay_mounts() {
    let c = Containerd::start();
    let images = tempfile::tempdir().expect("tempdir");
    let tar = busybox_image(images.path(), "bbimg", &[], &["/bin/sh"], None);
    c.ctr(&["images", "import", path_str(&tar)]);
    let id = unique("img");
    let out = c.ctr_raw(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "registry.local/bbimg:1",
        &id,
        "/bin/sh",
        "-c",
        "grep -q ' / overlay ' /proc/mounts && echo overlay-root; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}\n{}", text(&out), c.log());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "overlay-root",
        "{}",
        text(&out)
    );
    c.assert_clean();
}

#[test]
fn containers_survive_a_containerd_restart() {
    let mut c = Containerd::start();
    let (d, root) = rootfs();
    let id = unique("rst");
    let log = d.path().join("out.log");
    let uri = format!("file://{}", log.display());
    c.ctr(&run_args(
        &["-d", "--log-uri", &uri],
        &root,
        &id,
        &[
            "/bin/sh",
            "-c",
            "i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.1; done",
        ],
    ));
    wait_for("output", Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .map(|s| s.contains("line-2"))
            .unwrap_or(false)
    });
    let shims = c.shim_pids();
    c.restart();
    assert_eq!(
        c.shim_pids(),
        shims,
        "the same shim serves the task after the restart"
    );
    assert_eq!(shims.len(), 1, "one shim for the task: {shims:?}");
    let status = task_status(&c, &id);
    assert_eq!(
        status,
        "RUNNING",
        "task visible after restart; containerd log:\n{}",
        c.log()
    );
    let before = std::fs::read_to_string(&log).unwrap_or_default().len();
    wait_for("output to keep flowing", Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .map(|s| s.len() > before)
            .unwrap_or(false)
    });
    let out = c.ctr_raw(&[
        "task",
        "exec",
        "--exec-id",
        "after",
        &id,
        "/bin/sh",
        "-c",
        "exit 9",
    ]);
    assert_eq!(
        out.status.code(),
        Some(9),
        "exec after restart: {}",
        text(&out)
    );
    remove(&c, &id);
    c.assert_clean();
}

/// `ctr events`, read on a thread. `start` returns once events are known to flow (a probe
/// task's events arrived), so no event of the test itself can be missed.
struct EventLog {
    child: std::process::Child,
    text: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl EventLog {
    fn start(c: &Containerd, root: &Path) -> EventLog {
        let mut child = c
            .ctr_command(&["events"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("ctr events");
        let mut stdout = child.stdout.take().expect("stdout");
        let shared = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let t = shared.clone();
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
                if n == 0 {
                    break;
                }
                t.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let log = EventLog {
            child,
            text: shared,
            reader: Some(reader),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let probe = unique("probe");
            let out = c.ctr_raw(&run_args(&["--rm"], root, &probe, &["/bin/true"]));
            assert!(out.status.success(), "probe task: {}", text(&out));
            let seen = Instant::now() + Duration::from_secs(1);
            while Instant::now() < seen {
                if task_topics(&log.text.lock().unwrap(), &probe)
                    .contains(&"/tasks/delete".to_owned())
                {
                    return log;
                }
                thread::sleep(Duration::from_millis(20));
            }
            assert!(
                Instant::now() < deadline,
                "ctr events never showed a probe task's events"
            );
        }
    }

    /// Waits until the stream is quiet, stops ctr, and returns what it printed.
    fn stop(mut self) -> String {
        let mut last = self.text.lock().unwrap().len();
        loop {
            thread::sleep(Duration::from_millis(300));
            let now = self.text.lock().unwrap().len();
            if now == last {
                break;
            }
            last = now;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let text = self.text.lock().unwrap().clone();
        text
    }
}

#[test]
fn events_reach_containerd_in_order() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let events = EventLog::start(&c, &root);

    let id = unique("ev");
    let out = c.ctr_raw(&run_args(
        &["--rm"],
        &root,
        &id,
        &["/bin/sh", "-c", "exit 3"],
    ));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));

    let id2 = unique("evx");
    c.ctr(&run_args(&["-d"], &root, &id2, &["/bin/sleep", "1000"]));
    let out = c.ctr_raw(&["task", "exec", "--exec-id", "x1", &id2, "/bin/true"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    c.ctr(&["task", "pause", &id2]);
    c.ctr(&["task", "resume", &id2]);
    remove(&c, &id2);

    let text_out = events.stop();

    assert_eq!(
        task_topics(&text_out, &id),
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ],
        "events:\n{text_out}"
    );
    assert_eq!(
        task_topics(&text_out, &id2),
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exec-added",
            "/tasks/exec-started",
            "/tasks/exit",
            "/tasks/paused",
            "/tasks/resumed",
            "/tasks/exit",
            "/tasks/delete"
        ],
        "events:\n{text_out}"
    );
    c.assert_clean();
}

#[test]
fn stdin_reaches_the_container_and_closes() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let id = unique("in");
    let mut child = c
        .ctr_command(&run_args(
            &["--rm"],
            &root,
            &id,
            &["/bin/sh", "-c", "cat; echo done"],
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ctr run -i");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        std::io::Write::write_all(&mut stdin, b"line one\nline two\n").expect("write stdin");
        // Dropping stdin is EOF: ctr closes the FIFO and calls CloseIO.
    }
    let out = child.wait_with_output().expect("ctr run -i");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "line one\nline two\ndone\n",
        "{}",
        text(&out)
    );
    c.assert_clean();
}

#[test]
fn binary_logger_gets_the_output() {
    let c = Containerd::start();
    let (d, root) = rootfs();
    let logger = d.path().join("logger.sh");
    let log = d.path().join("logged.txt");
    // containerd's binary logging protocol: stdout on fd 3, stderr on fd 4, fd 5 closed when
    // ready; the URI's query becomes arguments.
    std::fs::write(
        &logger,
        "#!/bin/sh\nexec 5>&-\ncat <&3 >\"$2.out\" &\ncat <&4 >\"$2.err\"\nwait\n",
    )
    .expect("write logger");
    std::fs::set_permissions(&logger, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let uri = format!("binary://{}?path={}", logger.display(), log.display());
    let id = unique("bin");
    c.ctr(&run_args(
        &["-d", "--log-uri", &uri],
        &root,
        &id,
        &["/bin/sh", "-c", "echo to-out; echo to-err >&2"],
    ));
    let out_file = PathBuf::from(format!("{}.out", log.display()));
    let err_file = PathBuf::from(format!("{}.err", log.display()));
    wait_for("task to exit", Duration::from_secs(10), || {
        task_status(&c, &id) == "STOPPED"
    });
    wait_for("logger output", Duration::from_secs(10), || {
        std::fs::read_to_string(&out_file)
            .map(|s| s == "to-out\n")
            .unwrap_or(false)
            && std::fs::read_to_string(&err_file)
                .map(|s| s == "to-err\n")
                .unwrap_or(false)
    });
    c.ctr(&["task", "rm", &id]);
    c.ctr(&["container", "rm", &id]);
    c.assert_clean();
    assert!(
        lifecycle_testsupport::processes_matching(path_str(&logger)).is_empty(),
        "logger left running"
    );
}

#[test]
fn a_dead_shim_is_cleaned_up_by_the_delete_action() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let id = unique("dead");
    // Two commands, so sh stays the parent and its command line names the test.
    let marker = format!("sleep 1000; echo {id}");
    c.ctr(&run_args(&["-d"], &root, &id, &["/bin/sh", "-c", &marker]));
    let shims = c.shim_pids();
    assert_eq!(shims.len(), 1, "{shims:?}");
    assert!(
        !lifecycle_testsupport::processes_matching(&marker).is_empty(),
        "the container runs"
    );
    // SAFETY: killing the shim process this test's daemon started.
    unsafe { libc::kill(shims[0], libc::SIGKILL) };
    // containerd notices, runs `containerd-shim-lifecycle-v1 delete`, and drops the task.
    wait_for("task to be gone", Duration::from_secs(15), || {
        task_status(&c, &id).is_empty()
    });
    // The killed shim's socket file goes too (seen from inside the daemon's namespace).
    let sockets = || {
        std::fs::read_dir(format!("/proc/{}/root/run/containerd/s", c.pid()))
            .into_iter()
            .flatten()
            .flatten()
            .count()
    };
    wait_for(
        "the dead shim's socket to be removed",
        Duration::from_secs(10),
        || sockets() == 0,
    );
    c.ctr(&["container", "rm", &id]);
    c.assert_clean();
    assert!(
        lifecycle_testsupport::processes_matching(&marker).is_empty(),
        "container process left running; containerd log:\n{}",
        c.log()
    );
}

#[test]
fn oom_is_reported() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let events = EventLog::start(&c, &root);
    let id = unique("oom");
    // sort keeps all of its input in memory: far over the 16 MiB limit.
    let out = c.ctr_raw(&run_args(
        &["--rm", "--memory-limit", "16777216"],
        &root,
        &id,
        &[
            "/bin/sh",
            "-c",
            "head -c 200000000 /dev/zero | sort >/dev/null",
        ],
    ));
    assert!(
        !out.status.success(),
        "the command should have been OOM-killed: {}",
        text(&out)
    );
    let text_out = events.stop();
    assert!(
        task_topics(&text_out, &id)
            .iter()
            .any(|t| t == "/tasks/oom"),
        "no /tasks/oom event:\n{text_out}"
    );
    c.assert_clean();
}

#[test]
fn a_pod_shares_one_shim_until_its_last_task_is_deleted() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let pod = unique("pod");
    let annotation = format!("io.kubernetes.cri.sandbox-id={pod}");
    let (a, b) = (unique("pa"), unique("pb"));
    for id in [&a, &b] {
        c.ctr(&run_args(
            &["-d", "--annotation", &annotation],
            &root,
            id,
            &["/bin/sleep", "1000"],
        ));
    }
    assert_eq!(c.shim_pids().len(), 1, "one shim for the pod");
    remove(&c, &a);
    assert_eq!(
        c.shim_pids().len(),
        1,
        "the shim stays while the pod has a task"
    );
    assert_eq!(task_status(&c, &b), "RUNNING");
    remove(&c, &b);
    c.assert_clean();
}

#[test]
fn container_processes_inherit_no_ignored_signal_from_the_shim() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    // The shim (a Rust program) ignores SIGPIPE; its containers must not inherit that. Compare
    // with runc's shim, which passes on only what the environment already ignores.
    let cmd = ["/bin/sh", "-c", "grep SigIgn /proc/self/status"];
    let ours = c.ctr_raw(&run_args(&["--rm"], &root, &unique("sig"), &cmd));
    let mut runc_args = vec![
        "run",
        "--rm",
        "--runtime",
        "io.containerd.runc.v2",
        "--rootfs",
        path_str(&root),
    ];
    let runc_id = unique("runc");
    runc_args.push(&runc_id);
    runc_args.extend_from_slice(&cmd);
    let runc = c.ctr_raw(&runc_args);
    assert_eq!(ours.status.code(), Some(0), "{}", text(&ours));
    assert_eq!(runc.status.code(), Some(0), "{}", text(&runc));
    let mask = |out: &Output| {
        let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let hex = line
            .strip_prefix("SigIgn:")
            .map(str::trim)
            .unwrap_or_default()
            .to_owned();
        u64::from_str_radix(&hex, 16).unwrap_or_else(|_| panic!("not a SigIgn line: {line:?}"))
    };
    let (ours_mask, runc_mask) = (mask(&ours), mask(&runc));
    // Nothing ignored that runc's containers do not ignore (the runtime may reset more).
    assert_eq!(
        ours_mask & !runc_mask,
        0,
        "ours {ours_mask:#x}, runc {runc_mask:#x}"
    );
    assert_eq!(
        ours_mask & (1 << (libc::SIGPIPE - 1)),
        0,
        "SIGPIPE ignored: {ours_mask:#x}"
    );
    c.assert_clean();
}

#[test]
fn exec_with_a_tty_gets_the_callers_window_size() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let id = unique("ttyx");
    c.ctr(&run_args(&["-d"], &root, &id, &["/bin/sleep", "1000"]));
    // ctr reads its terminal's size and sends it with ResizePty.
    let ctr = format!(
        "stty rows 33 cols 111; ctr --address {} -n {} task exec -t --exec-id x1 {id} /bin/sh -c 'sleep 0.2; stty size'",
        c.address.display(),
        c.namespace,
    );
    let out = std::process::Command::new("nsenter")
        .args([
            "-t",
            &c.pid().to_string(),
            "-m",
            "--",
            "script",
            "-qec",
            &ctr,
            "/dev/null",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("33 111"),
        "{}",
        text(&out)
    );
    remove(&c, &id);
    c.assert_clean();
}

#[test]
fn fifo_output_survives_a_containerd_restart() {
    let mut c = Containerd::start();
    let (_d, root) = rootfs();
    let id = unique("fifo");
    // Writes while nobody reads the FIFO (ctr -d left, containerd restarting) must neither fail
    // nor kill the writer with SIGPIPE: the shim keeps a read end open.
    c.ctr(&run_args(
        &["-d"],
        &root,
        &id,
        &[
            "/bin/sh",
            "-c",
            "i=0; while [ $i -lt 30 ]; do echo line-$i; i=$((i+1)); sleep 0.1; done",
        ],
    ));
    thread::sleep(Duration::from_millis(500));
    c.restart();
    let out = c.ctr_raw(&["task", "attach", &id]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("line-29"),
        "late output missing: {}",
        text(&out)
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // `ctr task attach` deletes the task once it exited.
    assert_eq!(task_status(&c, &id), "");
    c.ctr(&["container", "rm", &id]);
    c.assert_clean();
}

#[test]
fn sigkill_stops_a_paused_task() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let id = unique("pk");
    c.ctr(&run_args(&["-d"], &root, &id, &["/bin/sleep", "1000"]));
    c.ctr(&["task", "pause", &id]);
    c.ctr(&["task", "kill", "-s", "SIGKILL", &id]);
    wait_for("the paused task to die", Duration::from_secs(10), || {
        task_status(&c, &id) == "STOPPED"
    });
    c.ctr(&["task", "rm", &id]);
    c.ctr(&["container", "rm", &id]);
    c.assert_clean();
}
