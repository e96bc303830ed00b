//! Robustness and security (issue 7): hostile hooks and containers, faults through containerd
//! and `ctr`, bad input. A private containerd 1.6 drives containerd-shim-lifecycle-v1; every
//! test ends by asserting that no shim, container process, mount or cgroup was left behind.
//!
//! Covered elsewhere and not repeated here: httpGet/tcpSocket hooks never reach the host's
//! 127.0.0.1 (`hooks_ctr::probes_reach_the_containers_loopback_and_never_the_hosts`), a cwd
//! through `/proc/self/fd/N` in the runtime library (crates/runtime/tests), a plainly SIGKILLed
//! shim (`shim_ctr::a_dead_shim_is_cleaned_up_by_the_delete_action`), FIFO output across a
//! containerd restart (`shim_ctr::fifo_output_survives_a_containerd_restart`), ttrpc error codes
//! in process (shim/tests/tasks.rs, shim/tests/hooks.rs).

use std::{
    fs,
    io::Read,
    path::Path,
    process::{Child, Output, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use lifecycle_integration::*;
use lifecycle_testsupport::{
    containerd::{shim_binary, Containerd, Options, RUNTIME},
    default_spec, unique,
};

fn alive(pid: i32) -> bool {
    // A zombie still has a /proc entry; only a running or sleeping process counts.
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .map(|(_, rest)| !rest.starts_with('Z'))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

/// A status field of /proc/<pid>/status in KiB (`VmRSS`, `VmHWM`...).
fn status_kib(pid: i32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn thread_count(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn fd_count(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// What a process's descriptors point to, counted by kind (`pipe`, `socket`, a path...).
fn fd_kinds(pid: i32) -> String {
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for e in fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let target = fs::read_link(e.path())
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        let kind = target.split(':').next().unwrap_or("").to_owned();
        *kinds.entry(kind).or_default() += 1;
    }
    format!("{kinds:?}")
}

fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned()
}

/// `ctr run --config` with a spec built from [`default_spec`]; `edit` changes it first.
fn run_config(
    c: &Containerd,
    dir: &Path,
    root: &Path,
    id: &str,
    flags: &[&str],
    args: &[&str],
    edit: impl FnOnce(&mut serde_json::Value),
) -> Output {
    let mut spec = default_spec(args, &format!("/{}/{id}", c.namespace));
    spec["root"] = serde_json::json!({"path": path_str(root), "readonly": false});
    edit(&mut spec);
    let spec_path = dir.join(format!("{id}.json"));
    fs::write(&spec_path, serde_json::to_vec(&spec).expect("spec")).expect("write spec");
    let mut a = vec!["run", "--runtime", RUNTIME];
    a.extend_from_slice(flags);
    a.extend_from_slice(&["--config", path_str(&spec_path), id]);
    c.ctr_raw(&a)
}

const ORDER: &str = "lifecycle.shim/post-start-order";
/// An entrypoint that exits 0 on SIGTERM.
const TERMINABLE: &[&str] = &["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"];

/// `ctr events`, read on a thread, started once events are known to flow.
struct EventLog {
    child: Child,
    text: Arc<Mutex<String>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl EventLog {
    fn start(c: &Containerd, root: &Path) -> EventLog {
        let mut child = c
            .ctr_command(&["events"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("ctr events");
        let mut stdout = child.stdout.take().expect("stdout");
        let shared = Arc::new(Mutex::new(String::new()));
        let t = shared.clone();
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
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
            ctr_ok(c, &run_args(&[], &["--rm"], root, &probe, &["/bin/true"]));
            let seen = Instant::now() + Duration::from_secs(1);
            while Instant::now() < seen {
                if task_topics(&log.text.lock().unwrap(), &probe)
                    .contains(&"/tasks/delete".to_owned())
                {
                    return log;
                }
                thread::sleep(Duration::from_millis(20));
            }
            assert!(Instant::now() < deadline, "ctr events shows nothing");
        }
    }

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

/// The `exit_status` of the init's `/tasks/exit` event.
fn exit_status(events: &str, id: &str) -> Option<u32> {
    events
        .lines()
        .filter(|l| l.contains(id) && l.contains("/tasks/exit"))
        .filter_map(|l| {
            let rest = &l[l.find("exit_status\":")? + "exit_status\":".len()..];
            rest.split(|ch: char| !ch.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .next()
}

// ---------------------------------------------------------------------------------------------
// Hostile hooks and containers
// ---------------------------------------------------------------------------------------------

#[test]
fn a_hook_writing_1_gib_leaves_shim_memory_bounded_and_keeps_the_tail() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let id = unique("gib");
    let hook = "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 1073741824; \
                echo; echo THE-TAIL-MARK; exit 4";
    let args = run_args(&[(PS, exec_handler(hook))], &["-d"], &root, &id, FOREVER);
    let c2 = &c;
    let (out, peak_kib, samples) = thread::scope(|s| {
        let runner = s.spawn(move || ctr_raw(c2, &args));
        let (mut peak, mut samples) = (0u64, 0u32);
        while !runner.is_finished() {
            for pid in c2.shim_pids() {
                let rss = status_kib(pid, "VmRSS");
                if rss > 0 {
                    samples += 1;
                }
                peak = peak.max(rss);
            }
            thread::sleep(Duration::from_millis(50));
        }
        (runner.join().expect("ctr run"), peak, samples)
    });
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exited with code 4"), "{err}");
    assert!(
        err.contains("THE-TAIL-MARK"),
        "the newest bytes are kept: {err}"
    );
    assert!(
        err.len() < 4096,
        "the message carries a bounded tail: {} bytes",
        err.len()
    );
    assert!(samples > 10, "the shim's memory was sampled ({samples})");
    // The shim's resident memory never grew with the output: a debug build serving one
    // container stays far below 64 MiB, while 1 GiB went through it.
    assert!(
        peak_kib < 64 * 1024,
        "shim VmRSS peaked at {peak_kib} KiB while the hook wrote 1 GiB"
    );
    assert_eq!(task_status(&c, &id), "STOPPED");
    // The hook's JSON record (in the daemon's /run/containerd) keeps the tail too.
    let records = format!("/lifecycle-shim/records/{}", c.namespace);
    let mut record = String::new();
    wait_for("the hook's record", Duration::from_secs(5), || {
        record = daemon_dir(&c, &format!("/run/containerd{records}"))
            .iter()
            .map(|f| {
                fs::read_to_string(format!(
                    "/proc/{}/root/run/containerd{records}/{f}",
                    c.pid()
                ))
                .unwrap_or_default()
            })
            .find(|r| r.contains(&id))
            .unwrap_or_default();
        record.contains("THE-TAIL-MARK")
    });
    assert!(record.len() < 64 * 1024, "record of {} bytes", record.len());
    c.ctr(&["task", "rm", &id]);
    c.ctr(&["container", "rm", &id]);
    c.assert_clean();
}

#[test]
fn a_hooks_daemon_and_fork_bomb_stay_within_the_pids_limit_and_die_with_the_container() {
    const LIMIT: usize = 24;
    let c = Containerd::start();
    let (dir, root) = rootfs();
    let id = unique("bomb");
    // The hook returns at once and leaves a daemon (its own session) and a shell forking
    // sleepers until the pids limit refuses (busybox sh then gives up).
    let hook = "setsid sleep 2001 </dev/null >/dev/null 2>&1 & \
                (i=0; while [ $i -lt 500 ]; do sleep 2002 & i=$((i+1)); done) \
                </dev/null >/dev/null 2>&1 & echo forked";
    let out = run_config(&c, dir.path(), &root, &id, &["-d"], FOREVER, |spec| {
        spec["linux"]["resources"]["pids"] = serde_json::json!({"limit": LIMIT});
        spec["annotations"] = serde_json::json!({ PS: exec_handler(hook) });
    });
    assert!(out.status.success(), "{}\n{}", text(&out), c.log());
    let cgroup = format!("/sys/fs/cgroup/pids/{}/{id}", c.namespace);
    let procs = || -> Vec<i32> {
        fs::read_to_string(format!("{cgroup}/cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    };
    // The bomb hits the limit: the kernel counts refusals in pids.events.
    wait_for(
        "the pids limit to refuse a fork",
        Duration::from_secs(20),
        || {
            fs::read_to_string(format!("{cgroup}/pids.events"))
                .unwrap_or_default()
                .trim()
                .strip_prefix("max ")
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
                > 0
        },
    );
    // Forked children become `sleep 2002` once they exec: wait for them to settle.
    let argv = |p: &i32| fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default();
    let count = |pids: &[i32], want: &str| pids.iter().filter(|p| argv(p) == want).count();
    let mut pids = procs();
    let settled = Instant::now() + Duration::from_secs(10);
    while count(&pids, "sleep\x002002\x00") < LIMIT / 2 && Instant::now() < settled {
        thread::sleep(Duration::from_millis(50));
        pids = procs();
    }
    let current: usize = fs::read_to_string(format!("{cgroup}/pids.current"))
        .expect("pids.current")
        .trim()
        .parse()
        .expect("number");
    assert!(current <= LIMIT, "pids.current {current} > {LIMIT}");
    assert!(pids.len() <= LIMIT, "{} processes", pids.len());
    assert_eq!(
        count(&pids, "sleep\x002001\x00"),
        1,
        "the hook's daemon is in the container's cgroup"
    );
    let sleepers = count(&pids, "sleep\x002002\x00");
    assert!(
        sleepers >= LIMIT / 2,
        "the bomb's {sleepers} sleepers are in the container's cgroup"
    );
    remove(&c, &id);
    for pid in pids {
        assert!(!alive(pid), "process {pid} outlived its container");
    }
    c.assert_clean();
}

#[test]
fn a_pre_stop_ignoring_every_signal_is_sigkilled_at_the_deadline() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let id = unique("deaf");
    let ignore_all = "trap '' HUP INT QUIT TERM USR1 USR2 ALRM PIPE";
    let annotations = [
        (
            PRE,
            exec_handler(&format!(
                "{ignore_all}; echo started > /tmp/pre; while :; do sleep 1; done"
            )),
        ),
        (GRACE, "2".to_string()),
    ];
    let entry = format!("{ignore_all}; sleep 1000 & wait");
    let events = EventLog::start(&c, &root);
    ctr_ok(
        &c,
        &run_args(
            &annotations,
            &["-d"],
            &root,
            &id,
            &["/bin/sh", "-c", &entry],
        ),
    );
    let t = Instant::now();
    c.ctr(&["task", "kill", &id]);
    wait_for("preStop to start", Duration::from_secs(5), || {
        !read(&root, "tmp/pre").is_empty()
    });
    wait_for("SIGKILL at the deadline", Duration::from_secs(15), || {
        task_status(&c, &id) == "STOPPED"
    });
    let took = t.elapsed();
    // Grace 2 s for the hook, then the stop signal with the 2 s minimum: about 4 s.
    assert!(
        took >= Duration::from_millis(3500) && took < Duration::from_secs(8),
        "stopped after {took:?}"
    );
    c.ctr(&["task", "rm", &id]);
    c.ctr(&["container", "rm", &id]);
    let ev = events.stop();
    assert_eq!(exit_status(&ev, &id), Some(137), "{ev}");
    c.assert_clean();
}

#[test]
fn a_pre_stop_that_kills_pid_1_ends_in_a_clean_stop() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let id = unique("pk1");
    // PID 1 of a pid namespace only gets signals it handles from inside: SIGKILL from the
    // hook is dropped by the kernel, the handled SIGUSR1 ends it with status 7.
    let annotations = [(
        PRE,
        exec_handler("echo sending > /tmp/pre; kill -KILL 1; kill -USR1 1; sleep 100"),
    )];
    let events = EventLog::start(&c, &root);
    ctr_ok(
        &c,
        &run_args(
            &annotations,
            &["-d"],
            &root,
            &id,
            &["/bin/sh", "-c", "trap 'exit 7' USR1; sleep 1000 & wait"],
        ),
    );
    let t = Instant::now();
    c.ctr(&["task", "kill", &id]);
    wait_for("the init to exit", Duration::from_secs(10), || {
        task_status(&c, &id) == "STOPPED"
    });
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the abandoned hook did not hold the stop: {:?}",
        t.elapsed()
    );
    assert_eq!(read(&root, "tmp/pre"), "sending\n");
    c.ctr(&["task", "rm", &id]);
    c.ctr(&["container", "rm", &id]);
    let ev = events.stop();
    assert_eq!(exit_status(&ev, &id), Some(7), "{ev}");
    assert_eq!(
        task_topics(&ev, &id),
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ],
        "{ev}"
    );
    c.assert_clean();
}

/// A shell loop that tries to open `/proc/<pid>/exe` for writing (and to write a byte) for
/// every process it can see but itself, and writes one line per attempt to `out`.
fn rewrite_every_exe(out: &str) -> String {
    format!(
        "for d in /proc/[0-9]*; do p=${{d#/proc/}}; [ \"$p\" = \"$$\" ] && continue; \
         if {{ printf X >> $d/exe; }} 2>/dev/null; then echo \"$p wrote\"; \
         else echo \"$p denied\"; fi; done >> {out}"
    )
}

#[test]
fn containers_and_hooks_cannot_rewrite_the_shim_binary_cve_2019_5736() {
    // A private copy of the shim, so that a successful attack could not damage the build.
    let bin_dir = tempfile::Builder::new()
        .prefix("lc-shimcopy-")
        .tempdir()
        .expect("tempdir");
    let shim = bin_dir.path().join("containerd-shim-lifecycle-v1");
    fs::copy(shim_binary(), &shim).expect("copy shim");
    let before = sha256(&shim);
    let c = Containerd::start_with(Options {
        shim: Some(shim.clone()),
        ..Options::default()
    });
    let (_d, root) = rootfs();
    let id = unique("cve");
    // before-entrypoint: the hook runs beside the held init, which is still the shim binary.
    let hook = format!(
        "ls -l /proc/1/exe > /tmp/init-exe 2>&1; {}",
        rewrite_every_exe("/tmp/hook-tries")
    );
    let annotations = [
        (PS, exec_handler(&hook)),
        (ORDER, "before-entrypoint".to_string()),
    ];
    ctr_ok(&c, &run_args(&annotations, &["-d"], &root, &id, FOREVER));
    let tries = read(&root, "tmp/hook-tries");
    assert!(
        tries.lines().any(|l| l == "1 denied"),
        "the held init was tried: {tries}"
    );
    assert!(!tries.contains("wrote"), "{tries}");
    // Now a container process keeps trying while execs (helpers entering the container) come
    // and go beside it.
    let loop_script = format!(
        "end=$(($(date +%s)+4)); while [ $(date +%s) -lt $end ]; do {}; done; echo done > /tmp/loop-done",
        rewrite_every_exe("/tmp/exec-tries")
    );
    let lid = unique("loop");
    c.ctr(&[
        "task",
        "exec",
        "-d",
        "--exec-id",
        &lid,
        &id,
        "/bin/sh",
        "-c",
        &loop_script,
    ]);
    let mut execs = 0;
    while read(&root, "tmp/loop-done").is_empty() {
        assert_eq!(exec_out(&c, &id, "echo ok"), "ok\n");
        execs += 1;
    }
    assert!(execs >= 3, "only {execs} execs ran beside the loop");
    let tries = read(&root, "tmp/exec-tries");
    assert!(tries.lines().count() > 10, "{tries}");
    assert!(
        !tries.contains("wrote"),
        "a process's exe was writable:\n{}",
        tries
            .lines()
            .filter(|l| l.contains("wrote"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    remove(&c, &id);
    c.assert_clean();
    drop(c);
    assert_eq!(sha256(&shim), before, "the shim binary on disk changed");
}

/// Host pids of the processes in container `id`'s pids cgroup whose argv is exactly `argv`.
fn container_pids(c: &Containerd, id: &str, argv: &[&str]) -> Vec<i32> {
    let want: String = argv.iter().map(|a| format!("{a}\0")).collect();
    fs::read_to_string(format!(
        "/sys/fs/cgroup/pids/{}/{id}/cgroup.procs",
        c.namespace
    ))
    .unwrap_or_default()
    .lines()
    .filter_map(|l| l.parse().ok())
    .filter(|p: &i32| fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default() == want)
    .collect()
}

fn fds_of(pid: i32) -> Vec<u32> {
    let mut fds: Vec<u32> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    fds
}

#[test]
fn container_processes_hold_only_stdio_descriptors_cve_2024_21626() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let id = unique("fds");
    // Each process is `sleep` itself (no shell, whose own redirections hold descriptors), and
    // its table is read from the host while it runs.
    let hook = serde_json::json!({"exec": {"command": ["/bin/sleep", "2"]}}).to_string();
    let args = run_args(&[(PS, hook)], &["-d"], &root, &id, &["/bin/sleep", "1001"]);
    let c2 = &c;
    let id2 = &id;
    let hook_fds = thread::scope(|s| {
        let runner = s.spawn(move || ctr_raw(c2, &args));
        let mut fds = None;
        while !runner.is_finished() && fds.is_none() {
            if let Some(pid) = container_pids(c2, id2, &["/bin/sleep", "2"]).first() {
                fds = Some(fds_of(*pid));
            }
            thread::sleep(Duration::from_millis(20));
        }
        let out = runner.join().expect("ctr run");
        assert!(out.status.success(), "{}", text(&out));
        fds.expect("the hook was seen running")
    });
    assert_eq!(hook_fds, [0, 1, 2], "descriptors of the postStart hook");
    let init = task_pid(&c, &id);
    assert_eq!(container_pids(&c, &id, &["/bin/sleep", "1001"]), [init]);
    assert_eq!(fds_of(init), [0, 1, 2], "descriptors of the init");
    let eid = unique("e");
    c.ctr(&[
        "task",
        "exec",
        "-d",
        "--exec-id",
        &eid,
        &id,
        "/bin/sleep",
        "1003",
    ]);
    let mut exec = Vec::new();
    wait_for("the exec to run", Duration::from_secs(5), || {
        exec = container_pids(&c, &id, &["/bin/sleep", "1003"]);
        !exec.is_empty()
    });
    assert_eq!(fds_of(exec[0]), [0, 1, 2], "descriptors of the exec");
    remove(&c, &id);
    c.assert_clean();
}

#[test]
fn a_working_directory_through_proc_self_fd_never_reaches_the_host() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let mut inside: Vec<String> = fs::read_dir(&root)
        .expect("rootfs")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    inside.sort();
    for n in 3..9 {
        let id = unique("cwd");
        let cwd = format!("/proc/self/fd/{n}");
        let out = ctr_raw(
            &c,
            &run_args(
                &[],
                &["--cwd", &cwd],
                &root,
                &id,
                &["/bin/sh", "-c", "cd ../../../../../.. && ls -1a | sort"],
            ),
        );
        if out.status.success() {
            let seen: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| *l != "." && *l != "..")
                .map(str::to_owned)
                .collect();
            // Mount points the runtime adds (proc, dev, sys) may be new in the rootfs; nothing
            // else: the listing is the container's root, not the host's.
            for entry in &seen {
                assert!(
                    inside.contains(entry) || ["proc", "dev", "sys"].contains(&entry.as_str()),
                    "cwd {cwd} reached {entry:?} outside the rootfs: {seen:?}"
                );
            }
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            // Refused by name: "container setup failed at step cwd: process.cwd ...".
            assert!(err.contains("process.cwd"), "{err}");
        }
        remove(&c, &id);
    }
    c.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Faults through containerd and ctr
// ---------------------------------------------------------------------------------------------

/// Size of a file (0 when missing).
fn size(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn a_containerd_restart_during_post_start_and_pre_stop_loses_nothing() {
    let mut c = Containerd::start();
    let (dir, root) = rootfs();
    let id = unique("rs");
    let log = dir.path().join("out.log");
    let annotations = [
        (
            PS,
            exec_handler("echo start >> /tmp/ps.start; sleep 3; echo ran >> /tmp/ps.log"),
        ),
        (
            PRE,
            exec_handler("echo start >> /tmp/pre.start; sleep 3; echo ran >> /tmp/pre.log"),
        ),
    ];
    let log_uri = format!("file://{}", log.display());
    let entry = "trap 'echo term >> /tmp/term; exit 3' TERM; \
                 while :; do echo tick; sleep 0.1; done";
    let args = run_args(
        &annotations,
        &["-d", "--log-uri", &log_uri],
        &root,
        &id,
        &["/bin/sh", "-c", entry],
    );
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    // ctr waits for Start, i.e. for the postStart; containerd goes away under it.
    let mut run = c
        .ctr_command(&a)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ctr run");
    wait_for("postStart to begin", Duration::from_secs(10), || {
        !read(&root, "tmp/ps.start").is_empty()
    });
    c.restart();
    let _ = run.wait();
    wait_for("postStart to finish", Duration::from_secs(10), || {
        !read(&root, "tmp/ps.log").is_empty()
    });
    wait_for("the task to be RUNNING", Duration::from_secs(10), || {
        task_status(&c, &id) == "RUNNING"
    });
    // The hook finished once, the task answers, its output still flows.
    assert_eq!(exec_out(&c, &id, "echo ok"), "ok\n");
    let grown = size(&log);
    wait_for("output to keep flowing", Duration::from_secs(5), || {
        size(&log) > grown
    });

    c.ctr(&["task", "kill", &id]);
    wait_for("preStop to begin", Duration::from_secs(10), || {
        !read(&root, "tmp/pre.start").is_empty()
    });
    c.restart();
    wait_for("the exit after preStop", Duration::from_secs(15), || {
        task_status(&c, &id) == "STOPPED"
    });
    assert_eq!(
        read(&root, "tmp/ps.start"),
        "start\n",
        "postStart started once"
    );
    assert_eq!(read(&root, "tmp/ps.log"), "ran\n", "postStart ran once");
    assert_eq!(
        read(&root, "tmp/pre.start"),
        "start\n",
        "preStop started once"
    );
    assert_eq!(
        read(&root, "tmp/pre.log"),
        "ran\n",
        "preStop ran once, to its end"
    );
    assert_eq!(read(&root, "tmp/term"), "term\n", "then the stop signal");
    // The exit status reached containerd across the restart: 3 from the TERM trap (`ctr task
    // rm` warns about a non-zero status).
    let out = c.ctr_raw(&["task", "rm", &id]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("non-zero exit code 3"),
        "{}",
        text(&out)
    );
    c.ctr(&["container", "rm", &id]);
    c.assert_clean();
}

#[test]
fn a_shim_killed_during_a_pre_stop_is_cleaned_up_by_delete() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let id = unique("sk");
    let annotations = [(PRE, exec_handler("echo start > /tmp/pre; sleep 1000"))];
    ctr_ok(&c, &run_args(&annotations, &["-d"], &root, &id, FOREVER));
    c.ctr(&["task", "kill", &id]);
    wait_for("preStop to begin", Duration::from_secs(5), || {
        !read(&root, "tmp/pre").is_empty()
    });
    let procs: Vec<i32> = fs::read_to_string(format!(
        "/sys/fs/cgroup/pids/{}/{id}/cgroup.procs",
        c.namespace
    ))
    .expect("cgroup.procs")
    .lines()
    .filter_map(|l| l.parse().ok())
    .collect();
    assert!(procs.len() >= 3, "init, its sleep, the hook: {procs:?}");
    let shims = c.shim_pids();
    assert_eq!(shims.len(), 1, "{shims:?}");
    // SAFETY: killing the shim process this test's daemon started.
    unsafe { libc::kill(shims[0], libc::SIGKILL) };
    wait_for("containerd's cleanup", Duration::from_secs(15), || {
        task_status(&c, &id).is_empty()
    });
    c.ctr(&["container", "rm", &id]);
    c.assert_clean();
    // containerd (a subreaper) inherits and reaps them once they died.
    wait_for(
        "the container's processes to die",
        Duration::from_secs(5),
        || procs.iter().all(|p| !alive(*p)),
    );
}

#[test]
fn exits_during_post_start_and_pre_stop_are_reported_in_order() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let events = EventLog::start(&c, &root);

    // The entrypoint exits while its postStart runs: Start fails at once, no TaskStart.
    let ps = unique("eps");
    let t = Instant::now();
    let out = ctr_raw(
        &c,
        &run_args(
            &[(PS, exec_handler("sleep 30"))],
            &["-d"],
            &root,
            &ps,
            &["/bin/sh", "-c", "sleep 0.5; exit 3"],
        ),
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("container exited (3) before postStart completed"),
        "{err}"
    );
    assert_eq!(task_status(&c, &ps), "STOPPED");
    let _ = c.ctr_raw(&["task", "rm", &ps]);
    c.ctr(&["container", "rm", &ps]);

    // The entrypoint exits while its preStop runs: the hook is abandoned, the exit reported.
    let pre = unique("epre");
    ctr_ok(
        &c,
        &run_args(
            &[(PRE, exec_handler("sleep 30"))],
            &["-d"],
            &root,
            &pre,
            &["/bin/sh", "-c", "trap '' TERM; sleep 1.5; exit 5"],
        ),
    );
    let t = Instant::now();
    c.ctr(&["task", "kill", &pre]);
    wait_for("the exit during preStop", Duration::from_secs(10), || {
        task_status(&c, &pre) == "STOPPED"
    });
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let _ = c.ctr_raw(&["task", "rm", &pre]);
    c.ctr(&["container", "rm", &pre]);

    let ev = events.stop();
    assert_eq!(
        task_topics(&ev, &ps),
        ["/tasks/create", "/tasks/exit", "/tasks/delete"],
        "{ev}"
    );
    assert_eq!(exit_status(&ev, &ps), Some(3), "{ev}");
    assert_eq!(
        task_topics(&ev, &pre),
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ],
        "{ev}"
    );
    assert_eq!(exit_status(&ev, &pre), Some(5), "{ev}");
    c.assert_clean();
}

#[test]
fn a_shim_binary_replaced_on_disk_leaves_running_containers_and_hooks_working() {
    let bin_dir = tempfile::Builder::new()
        .prefix("lc-upgrade-")
        .tempdir()
        .expect("tempdir");
    let shim = bin_dir.path().join("containerd-shim-lifecycle-v1");
    fs::copy(shim_binary(), &shim).expect("copy shim");
    let c = Containerd::start_with(Options {
        shim: Some(shim.clone()),
        ..Options::default()
    });
    let (_d, root) = rootfs();
    let (a, b) = (unique("upa"), unique("upb"));
    let annotations = [
        (PS, exec_handler("echo ps >> /tmp/hooks-$HOOKID")),
        (PRE, exec_handler("echo pre >> /tmp/hooks-$HOOKID")),
    ];
    for id in [&a, &b] {
        ctr_ok(
            &c,
            &run_args(
                &annotations,
                &["-d", "--env", &format!("HOOKID={id}")],
                &root,
                id,
                TERMINABLE,
            ),
        );
    }
    let old_shims = c.shim_pids();
    assert_eq!(old_shims.len(), 2);
    // The upgrade: a different binary (here a modified copy) renamed over the old path, as
    // package managers do.
    let old = sha256(&shim);
    let new = bin_dir.path().join("new");
    fs::copy(&shim, &new).expect("copy");
    let mut bytes = fs::read(&new).expect("read");
    bytes.extend_from_slice(b"\0lifecycle-shim-upgrade-test\0");
    fs::write(&new, bytes).expect("modify");
    fs::rename(&new, &shim).expect("replace the shim");
    assert_ne!(sha256(&shim), old);

    // Exec and hooks of the running containers use the running binary, not the file.
    assert_eq!(exec_out(&c, &a, "echo ok"), "ok\n");
    c.ctr(&["task", "kill", &a]);
    wait_for("a to stop after preStop", Duration::from_secs(10), || {
        task_status(&c, &a) == "STOPPED"
    });
    assert_eq!(read(&root, &format!("tmp/hooks-{a}")), "ps\npre\n");
    c.ctr(&["task", "rm", &a]);
    c.ctr(&["container", "rm", &a]);

    // The old shim of b dies; containerd runs the new binary's `delete`, which cleans up.
    assert_eq!(exec_out(&c, &b, "echo ok"), "ok\n");
    let b_init = task_pid(&c, &b);
    let b_shim: Vec<i32> = c
        .shim_pids()
        .into_iter()
        .filter(|p| old_shims.contains(p))
        .collect();
    assert_eq!(b_shim.len(), 1, "{b_shim:?}");
    // SAFETY: killing the shim process this test's daemon started.
    unsafe { libc::kill(b_shim[0], libc::SIGKILL) };
    wait_for("the new binary's delete", Duration::from_secs(15), || {
        task_status(&c, &b).is_empty()
    });
    c.ctr(&["container", "rm", &b]);
    assert!(c.log().contains("cleaning up dead shim"), "{}", c.log());
    c.assert_clean();
    assert!(!alive(b_init), "b's init survived");
    // A new container runs on the new binary.
    let n = unique("upn");
    ctr_ok(
        &c,
        &run_args(
            &annotations,
            &["--rm", "--env", &format!("HOOKID={n}")],
            &root,
            &n,
            &["/bin/sleep", "1"],
        ),
    );
    assert_eq!(read(&root, &format!("tmp/hooks-{n}")), "ps\n");
    c.assert_clean();
}

#[test]
fn sigterm_to_the_shim_during_a_pre_stop_finishes_the_sequence_then_exits() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let id = unique("term");
    let annotations = [(
        PRE,
        exec_handler("echo start > /tmp/pre; sleep 2; echo done >> /tmp/pre"),
    )];
    let entry = "trap 'echo term > /tmp/term; exit 0' TERM; sleep 1000 & wait";
    ctr_ok(
        &c,
        &run_args(&annotations, &["-d"], &root, &id, &["/bin/sh", "-c", entry]),
    );
    let shims = c.shim_pids();
    assert_eq!(shims.len(), 1, "{shims:?}");
    let init = task_pid(&c, &id);
    c.ctr(&["task", "kill", &id]);
    wait_for("preStop to begin", Duration::from_secs(5), || {
        !read(&root, "tmp/pre").is_empty()
    });
    // SAFETY: signalling the shim process this test's daemon started.
    unsafe { libc::kill(shims[0], libc::SIGTERM) };
    thread::sleep(Duration::from_millis(500));
    assert!(
        alive(shims[0]),
        "the shim left in the middle of the preStop"
    );
    wait_for("the shim to exit", Duration::from_secs(10), || {
        !alive(shims[0])
    });
    assert_eq!(
        read(&root, "tmp/pre"),
        "start\ndone\n",
        "preStop ran to its end"
    );
    assert_eq!(read(&root, "tmp/term"), "term\n", "then the stop signal");
    assert!(!alive(init));
    // containerd notices the shim is gone and cleans up with `delete`.
    wait_for("the task to be cleaned up", Duration::from_secs(15), || {
        let s = task_status(&c, &id);
        s.is_empty() || s == "STOPPED"
    });
    let _ = c.ctr_raw(&["task", "rm", &id]);
    c.ctr(&["container", "rm", &id]);
    c.assert_clean();
}

#[test]
fn a_second_sigterm_ends_the_shim_without_waiting_for_the_sequence() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let id = unique("term2");
    let annotations = [(PRE, exec_handler("echo start > /tmp/pre; sleep 100"))];
    ctr_ok(&c, &run_args(&annotations, &["-d"], &root, &id, FOREVER));
    let shims = c.shim_pids();
    assert_eq!(shims.len(), 1, "{shims:?}");
    let init = task_pid(&c, &id);
    c.ctr(&["task", "kill", &id]);
    wait_for("preStop to begin", Duration::from_secs(5), || {
        !read(&root, "tmp/pre").is_empty()
    });
    // SAFETY: signalling the shim process this test's daemon started.
    unsafe { libc::kill(shims[0], libc::SIGTERM) };
    thread::sleep(Duration::from_millis(300));
    assert!(alive(shims[0]), "the first SIGTERM waits for the preStop");
    // SAFETY: as above.
    unsafe { libc::kill(shims[0], libc::SIGTERM) };
    wait_for("the shim to exit", Duration::from_secs(5), || {
        !alive(shims[0])
    });
    // containerd's dead-shim cleanup (`delete`) kills what is left.
    wait_for("the cleanup", Duration::from_secs(15), || {
        task_status(&c, &id).is_empty()
    });
    wait_for("the init to die", Duration::from_secs(5), || !alive(init));
    c.ctr(&["container", "rm", &id]);
    c.assert_clean();
}

/// Processes in state Z whose parent is `parent`.
fn zombies_of(parent: i32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.first() == Some(&"Z") && f.get(1).and_then(|p| p.parse().ok()) == Some(parent) {
            found.push(pid);
        }
    }
    found
}

/// Entries of a directory inside the daemon's mount namespace (e.g. `/run/containerd/s`).
fn daemon_dir(c: &Containerd, path: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(format!("/proc/{}/root{path}", c.pid()))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The v2 task bundles containerd keeps for this daemon's namespace.
fn bundles(c: &Containerd) -> Vec<String> {
    let dir = c
        .dir
        .path()
        .join("state/io.containerd.runtime.v2.task")
        .join(&c.namespace);
    let mut v: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn fifty_containers_with_hooks_start_and_stop_concurrently() {
    const THREADS: usize = 10;
    const EACH: usize = 5;
    let c = Containerd::start_with(Options {
        log_level: Some("info"),
        ..Options::default()
    });
    let (_d, root) = rootfs();
    let annotations = [
        (PS, exec_handler("echo ps >> /tmp/h-$HOOKID")),
        (PRE, exec_handler("echo pre >> /tmp/h-$HOOKID")),
        (GRACE, "10".to_string()),
    ];
    let ids: Vec<Vec<String>> = (0..THREADS)
        .map(|_| (0..EACH).map(|_| unique("c50")).collect())
        .collect();
    let t = Instant::now();
    thread::scope(|s| {
        for group in &ids {
            let (c, root, annotations) = (&c, &root, &annotations);
            s.spawn(move || {
                for id in group {
                    ctr_ok(
                        c,
                        &run_args(
                            annotations,
                            &["-d", "--env", &format!("HOOKID={id}")],
                            root,
                            id,
                            TERMINABLE,
                        ),
                    );
                }
            });
        }
    });
    let started = t.elapsed();
    let all: Vec<&String> = ids.iter().flatten().collect();
    let listing = c.ctr(&["task", "ls"]);
    for id in &all {
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with(id.as_str()) && l.contains("RUNNING")),
            "{id} not running:\n{listing}"
        );
        assert_eq!(read(&root, &format!("tmp/h-{id}")), "ps\n", "{id}");
    }
    assert_eq!(c.shim_pids().len(), THREADS * EACH);
    thread::scope(|s| {
        for group in &ids {
            let c = &c;
            s.spawn(move || {
                for id in group {
                    c.ctr(&["task", "kill", id]);
                }
                for id in group {
                    wait_for("the stop", Duration::from_secs(30), || {
                        task_status(c, id) == "STOPPED"
                    });
                    c.ctr(&["task", "rm", id]);
                    c.ctr(&["container", "rm", id]);
                }
            });
        }
    });
    for id in &all {
        assert_eq!(read(&root, &format!("tmp/h-{id}")), "ps\npre\n", "{id}");
    }
    assert!(bundles(&c).is_empty(), "{:?}", bundles(&c));
    c.assert_clean();
    assert!(
        zombies_of(c.pid()).is_empty(),
        "zombies: {:?}",
        zombies_of(c.pid())
    );
    eprintln!(
        "50 containers: started in {started:?}, all done in {:?}",
        t.elapsed()
    );
}

#[test]
fn three_hundred_cycles_with_hooks_leak_nothing() {
    const THREADS: usize = 3;
    const CYCLES: usize = 300;
    let c = Containerd::start_with(Options {
        log_level: Some("warn"),
        ..Options::default()
    });
    let (_d, root) = rootfs();
    // All cycles run in the pod's one shim, so its descriptors can be counted across them.
    let pod = unique("pod");
    let group = format!("io.kubernetes.cri.sandbox-id={pod}");
    ctr_ok(
        &c,
        &run_args(
            &[],
            &["-d", "--annotation", &group],
            &root,
            &pod,
            &["/bin/sleep", "1000"],
        ),
    );
    let shim = c.shim_pids();
    assert_eq!(shim.len(), 1);
    let shim = shim[0];
    let annotations = [
        (PS, exec_handler("echo ps > /tmp/ps-$HOOKID")),
        (PRE, exec_handler("rm -f /tmp/ps-$HOOKID")),
        (GRACE, "5".to_string()),
    ];
    let cycle = |id: &str| {
        ctr_ok(
            &c,
            &run_args(
                &annotations,
                &[
                    "-d",
                    "--annotation",
                    &group,
                    "--env",
                    &format!("HOOKID={id}"),
                ],
                &root,
                id,
                TERMINABLE,
            ),
        );
        // The stop request runs the preStop; `rm -f` then waits for the exit (and SIGKILLs a
        // task still running, which the preStop path must survive too).
        c.ctr(&["task", "kill", id]);
        c.ctr(&["task", "rm", "-f", id]);
        c.ctr(&["container", "rm", id]);
    };
    // One cycle first, so lazily opened descriptors (event clients, ...) count as baseline.
    cycle(&unique("warm"));
    let settle = || thread::sleep(Duration::from_millis(300));
    settle();
    let base = (fd_count(c.pid()), fd_count(shim), thread_count(shim));
    let base_sockets = daemon_dir(&c, "/run/containerd/s");
    let base_bundles = bundles(&c);
    let t = Instant::now();
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..CYCLES / THREADS {
                    cycle(&unique("cyc"));
                }
            });
        }
    });
    let took = t.elapsed();
    // Nothing of the 300 containers is left: tasks, bundles, sockets, processes, zombies.
    let listing = c.ctr(&["container", "ls", "-q"]);
    assert_eq!(listing.trim(), pod, "containers left: {listing}");
    assert_eq!(bundles(&c), base_bundles);
    assert_eq!(daemon_dir(&c, "/run/containerd/s"), base_sockets);
    assert_eq!(c.shim_pids(), [shim], "one shim throughout");
    assert!(zombies_of(shim).is_empty(), "{:?}", zombies_of(shim));
    assert!(zombies_of(c.pid()).is_empty(), "{:?}", zombies_of(c.pid()));
    let procs = fs::read_to_string(format!(
        "/sys/fs/cgroup/pids/{}/{pod}/cgroup.procs",
        c.namespace
    ))
    .unwrap_or_default();
    assert_eq!(procs.lines().count(), 1, "only the pod's sleep: {procs}");
    let cgroups: Vec<String> = fs::read_dir(format!("/sys/fs/cgroup/pids/{}", c.namespace))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cgroups, std::slice::from_ref(&pod), "cgroups left");
    let ps_files: Vec<String> = fs::read_dir(root.join("tmp"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ps-cyc"))
        .collect();
    assert!(
        ps_files.len() < CYCLES,
        "preStop ran in the cycles ({} of {CYCLES} left a postStart file)",
        ps_files.len()
    );
    // Threads may be fewer than at the baseline (idle blocking threads end after 2 s), never
    // more: one stdin copier per container used to stay behind.
    let mut now = (0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        now = (fd_count(c.pid()), fd_count(shim), thread_count(shim));
        if (now.0, now.1) == (base.0, base.1) && now.2 <= base.2 {
            break;
        }
        settle();
    }
    assert_eq!(
        (now.0, now.1),
        (base.0, base.1),
        "(containerd, shim) descriptors after {CYCLES} cycles; the shim's: {}",
        fd_kinds(shim)
    );
    assert!(
        now.2 <= base.2,
        "shim threads: {} after, {} before",
        now.2,
        base.2
    );
    assert!(
        took < Duration::from_secs(110),
        "{CYCLES} cycles took {took:?}"
    );
    eprintln!("{CYCLES} cycles in {took:?}");
    remove(&c, &pod);
    c.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

/// A container whose Create or Start failed: whatever exists of it is removed, tolerantly.
fn remove_failed(c: &Containerd, id: &str) {
    if !task_status(c, id).is_empty() {
        remove(c, id);
    } else {
        let _ = c.ctr_raw(&["container", "rm", id]);
    }
    let left = c.ctr(&["container", "ls", "-q"]);
    assert!(!left.lines().any(|l| l == id), "container {id} left");
}

#[test]
fn every_class_of_malformed_annotation_fails_create_naming_the_key() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let port = r#"{"httpGet":{"port":80,"#;
    let table: &[(&str, String, &str)] = &[
        (PS, "{not json".into(), "invalid JSON"),
        (
            PS,
            "{}".into(),
            "exactly one of exec, httpGet, tcpSocket, sleep",
        ),
        (
            PS,
            r#"{"exec":{"command":["/bin/true"]},"sleep":{"seconds":1}}"#.into(),
            "found 2",
        ),
        (
            PS,
            r#"{"exec":{"command":"ls"}}"#.into(),
            "not a LifecycleHandler",
        ),
        (
            PRE,
            r#"{"exec":{"command":[]}}"#.into(),
            "exec.command is empty",
        ),
        (
            PRE,
            r#"{"exec":{"command":[""]}}"#.into(),
            "exec.command[0] is an empty string",
        ),
        (
            PRE,
            r#"{"httpGet":{"port":70000}}"#.into(),
            "httpGet.port 70000 is out of range 1-65535",
        ),
        (PRE, r#"{"tcpSocket":{"port":0}}"#.into(), "out of range"),
        (
            PRE,
            r#"{"tcpSocket":{"port":"No_Such"}}"#.into(),
            "tcpSocket.port",
        ),
        (
            PRE,
            r#"{"sleep":{"seconds":-1}}"#.into(),
            "sleep.seconds -1 is negative",
        ),
        (
            PRE,
            format!(r#"{port}"scheme":"FTP"}}}}"#),
            "is not HTTP or HTTPS",
        ),
        (
            PRE,
            format!(r#"{port}"path":"/a b"}}}}"#),
            "contains whitespace or control characters",
        ),
        (
            PRE,
            format!(r#"{port}"httpHeaders":[{{"name":"bad name","value":"x"}}]}}}}"#),
            "is not a valid HTTP header name",
        ),
        (GRACE, "-5".into(), "is not an integer >= 0"),
        (GRACE, "soon".into(), "is not an integer >= 0"),
        (
            "lifecycle.shim/post-start-timeout-seconds",
            "0".into(),
            "is not an integer >= 1",
        ),
        (ORDER, "sideways".into(), "is not one of"),
        (
            "lifecycle.shim/stop-signal",
            "SIGNOPE".into(),
            "unknown signal",
        ),
        (
            "lifecycle.shim/stop-signal",
            "SIGKILL".into(),
            "SIGKILL cannot be the stop signal",
        ),
        (
            "lifecycle.shim/hook-output",
            "stdout".into(),
            "is not one of",
        ),
        ("lifecycle.shim/bogus", "1".into(), "unknown setting"),
        (
            "post-start.lifecycle.shim/Bad_Name",
            exec_handler("true"),
            "is not a valid Kubernetes container name",
        ),
    ];
    for (key, value, expect) in table {
        let id = unique("badann");
        let out = ctr_raw(
            &c,
            &run_args(&[(key, value.clone())], &["-d"], &root, &id, FOREVER),
        );
        assert!(!out.status.success(), "{key}={value}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{key}={value}: the key is named: {err}");
        assert!(
            err.contains(expect),
            "{key}={value}: expected {expect:?}: {err}"
        );
        assert_eq!(task_status(&c, &id), "", "{key}={value}: no task");
        remove_failed(&c, &id);
    }
    assert!(bundles(&c).is_empty(), "{:?}", bundles(&c));
    c.assert_clean();
}

#[test]
fn malformed_oci_specs_fail_naming_the_field_and_leave_nothing() {
    type Edit = fn(&mut serde_json::Value);
    let c = Containerd::start();
    let (dir, root) = rootfs();
    let table: &[(&str, Edit, &[&str])] = &[
        (
            "missing root",
            |s| {
                s.as_object_mut().expect("object").remove("root");
            },
            &["root"],
        ),
        (
            "nonexistent entrypoint",
            |s| s["process"]["args"] = serde_json::json!(["/no/such/entrypoint"]),
            &["/no/such/entrypoint"],
        ),
        (
            "bad mount type",
            |s| {
                s["mounts"]
                    .as_array_mut()
                    .expect("mounts")
                    .push(serde_json::json!(
                        {"destination": "/mnt", "type": "nosuchfs", "source": "none"}
                    ))
            },
            &["/mnt", "nosuchfs"],
        ),
        (
            "unknown capability",
            |s| s["process"]["capabilities"]["bounding"] = serde_json::json!(["CAP_NO_SUCH_THING"]),
            &["process.capabilities.bounding[0]", "CAP_NO_SUCH_THING"],
        ),
        (
            "bad cgroupsPath",
            |s| s["linux"]["cgroupsPath"] = serde_json::json!("/../../escape"),
            &["cgroupsPath"],
        ),
        (
            "invalid uid map",
            |s| {
                s["linux"]["namespaces"]
                    .as_array_mut()
                    .expect("namespaces")
                    .push(serde_json::json!({"type": "user"}));
                s["linux"]["uidMappings"] =
                    serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 0}]);
                s["linux"]["gidMappings"] =
                    serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            },
            &["linux.uidMappings[0].size is 0"],
        ),
    ];
    for (what, edit, expect) in table {
        let id = unique("badspec");
        let out = run_config(&c, dir.path(), &root, &id, &["-d"], FOREVER, edit);
        assert!(!out.status.success(), "{what}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        for e in *expect {
            assert!(err.contains(e), "{what}: expected {e:?} in {err}");
        }
        remove_failed(&c, &id);
        let left = c.leftovers(Duration::from_secs(5));
        assert!(left.is_empty(), "{what}: left {left:?}");
    }
    assert!(bundles(&c).is_empty(), "{:?}", bundles(&c));
    c.assert_clean();
}

#[test]
fn a_hook_killed_by_a_signal_is_reported_by_its_name() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let id = unique("sig");
    let out = ctr_raw(
        &c,
        &run_args(
            &[(PS, exec_handler("echo before; kill -USR1 $$; sleep 5"))],
            &["-d"],
            &root,
            &id,
            FOREVER,
        ),
    );
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("was killed by SIGUSR1: before"), "{err}");
    assert!(!err.contains("exited with code"), "{err}");
    assert_eq!(task_status(&c, &id), "STOPPED");
    remove(&c, &id);
    c.assert_clean();
}
