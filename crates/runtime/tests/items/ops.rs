//! exec, pids, pause/resume, update, resources, terminal, namespaces. Included by containers.rs.

use std::{fs, io::Read, os::fd::OwnedFd, time::Duration};

use lifecycle_runtime::{reaper, Status, Stdio};
use serde_json::json;

use crate::common::*;

fn process_with(c: &lifecycle_runtime::Container, args: &[&str]) -> oci_spec::runtime::Process {
    let mut p = c.spec().process().clone().expect("process");
    p.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
    p
}

/// Runs an exec in `c`, returns (status, stdout).
fn exec_output(c: &lifecycle_runtime::Container, p: &oci_spec::runtime::Process) -> (i32, String) {
    let sub = reaper::subscribe();
    let (r, w) = pipe();
    let spawned = c
        .exec(
            p,
            Stdio {
                stdin: None,
                stdout: Some(w),
                stderr: None,
            },
        )
        .expect("exec");
    let out = drain(r);
    let exit = sub
        .wait_for(spawned.pid, Some(Duration::from_secs(10)))
        .expect("exec process exits");
    (exit.status, out.join().unwrap_or_default())
}

pub fn exec_into_created_and_running() {
    let fx = Fixture::new(&["/bin/sleep", "1000"]);
    let c = fx.create(Stdio::default()).expect("create").container;
    let script = "tr '\\0' ' ' < /proc/1/cmdline; echo; hostname; grep memory /proc/self/cgroup; grep -E '^(Uid|CapEff|NoNewPrivs)' /proc/self/status; pwd; exit 7";
    let mut p = process_with(&c, &["/bin/sh", "-c", script]);
    p.set_cwd("/tmp".into());
    // While the init is held (CREATED), as postStart before-entrypoint needs.
    let (status, out) = exec_output(&c, &p);
    assert_eq!(status, 7, "{out}");
    // The held init is still the helper binary (pid 1 of the container), not yet the entrypoint.
    assert!(
        out.starts_with("lifecycle-helper ") && out.contains("\nrunc\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!("memory:{}", fx.cgroup)),
        "exec joined the container's cgroup: {out}"
    );
    assert!(
        out.contains("CapEff:\t0000000020000420") && out.contains("NoNewPrivs:\t1"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("/tmp"), "{out}");
    assert_eq!(c.status(), Status::Created);
    c.start().expect("start");
    let (_, out) = exec_output(
        &c,
        &process_with(&c, &["/bin/sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline"]),
    );
    assert_eq!(out, "/bin/sleep 1000 ");
    let mut p = process_with(&c, &["/bin/sh", "-c", "id -u; id -g"]);
    p.user_mut().set_uid(1000);
    p.user_mut().set_gid(1000);
    let (status, out) = exec_output(&c, &p);
    assert_eq!((status, out.as_str()), (0, "1000\n1000\n"));
    let p = process_with(&c, &["/no/such/binary"]);
    let err = c
        .exec(&p, Stdio::default())
        .err()
        .expect("exec of a missing binary fails")
        .to_string();
    assert!(
        err.contains("process.args[0] \"/no/such/binary\" not found in the container"),
        "{err}"
    );
    c.delete().expect("delete");
    fx.assert_clean();
}

pub fn pids_pause_resume_kill_all() {
    let fx = Fixture::new(&["/bin/sh", "-c", "sleep 1000 & sleep 1000 & wait"]);
    let sub = reaper::subscribe();
    let c = fx.create(Stdio::default()).expect("create").container;
    c.start().expect("start");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while c.pids().expect("pids").len() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let pids = c.pids().expect("pids");
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert!(pids.contains(&c.init_pid()));
    c.pause().expect("pause");
    assert_eq!(c.status(), Status::Paused);
    let freezer = format!("/sys/fs/cgroup/freezer{}/freezer.state", fx.cgroup);
    assert_eq!(
        fs::read_to_string(&freezer).expect("freezer.state").trim(),
        "FROZEN"
    );
    let p = process_with(&c, &["/bin/true"]);
    let err = c
        .exec(&p, Stdio::default())
        .err()
        .expect("no exec while paused")
        .to_string();
    assert!(err.contains("paused"), "{err}");
    c.resume().expect("resume");
    assert_eq!(c.status(), Status::Running);
    assert_eq!(
        fs::read_to_string(&freezer).expect("freezer.state").trim(),
        "THAWED"
    );
    // Pause again, then kill everything: delete must thaw to let SIGKILL through.
    c.pause().expect("pause");
    c.delete().expect("delete of a paused container");
    let exit = sub
        .wait_for(c.init_pid(), Some(Duration::from_secs(10)))
        .expect("init reaped");
    assert_eq!(exit.status, 128 + libc::SIGKILL);
    fx.assert_clean();
}

pub fn resources_at_create_and_update() {
    let mut fx = Fixture::new(&["/bin/sleep", "1000"]);
    fx.bundle.spec["linux"]["resources"]["memory"] =
        // `kernel` is ignored with a warning, as runc does (kernel memory limits are gone).
        json!({"limit": 67108864, "reservation": 33554432, "swappiness": 10, "kernel": 16777216});
    fx.bundle.spec["linux"]["resources"]["cpu"] =
        json!({"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"});
    fx.bundle.spec["linux"]["resources"]["pids"] = json!({"limit": 50});
    let c = fx.create(Stdio::default()).expect("create").container;
    c.start().expect("start");
    let p = process_with(
        &c,
        &["/bin/sh", "-c", "cd /sys/fs/cgroup; cat memory/memory.limit_in_bytes memory/memory.soft_limit_in_bytes memory/memory.swappiness cpu/cpu.shares cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us cpuset/cpuset.cpus pids/pids.max"],
    );
    let (status, out) = exec_output(&c, &p);
    assert_eq!(status, 0);
    assert_eq!(out, "67108864\n33554432\n10\n512\n50000\n100000\n0\n50\n");
    let update: oci_spec::runtime::LinuxResources = serde_json::from_value(
        json!({"memory": {"limit": 134217728}, "pids": {"limit": 20}, "cpu": {"quota": 20000}}),
    )
    .expect("resources");
    c.update(&update).expect("update");
    // The create-time device rules may come along (as containerd's CRI sends them); others not.
    let mut same = update.clone();
    same.set_devices(
        fx.bundle.spec["linux"]["resources"]["devices"]
            .as_array()
            .map(|d| serde_json::from_value(json!(d)).expect("rules")),
    );
    c.update(&same)
        .expect("update with the create-time device rules");
    let mut other = update.clone();
    other.set_devices(Some(
        serde_json::from_value(json!([{"allow": true, "access": "rwm"}])).expect("rules"),
    ));
    let err = c
        .update(&other)
        .expect_err("device rules cannot change")
        .to_string();
    assert!(
        err.contains("linux.resources.devices in an update"),
        "{err}"
    );
    let host = |f: &str| {
        fs::read_to_string(format!("/sys/fs/cgroup/{f}"))
            .expect("cgroup file")
            .trim()
            .to_owned()
    };
    assert_eq!(
        host(&format!("memory{}/memory.limit_in_bytes", fx.cgroup)),
        "134217728"
    );
    assert_eq!(host(&format!("pids{}/pids.max", fx.cgroup)), "20");
    assert_eq!(host(&format!("cpu{}/cpu.cfs_quota_us", fx.cgroup)), "20000");
    c.delete().expect("delete");
    fx.assert_clean();
}

/// Reads a pty master on a thread into a shared buffer (until EIO, once every slave closed).
fn read_console(master: OwnedFd) -> std::sync::Arc<std::sync::Mutex<String>> {
    let buf = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let out = buf.clone();
    std::thread::spawn(move || {
        let mut f = fs::File::from(master);
        let mut chunk = [0u8; 1024];
        while let Ok(n) = f.read(&mut chunk) {
            if n == 0 {
                break;
            }
            out.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    buf
}

/// Waits until the console shows everything in `want` (the processes stay alive meanwhile,
/// so no output can be lost to a closing slave).
fn wait_console(buf: &std::sync::Mutex<String>, want: &[&str]) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = buf.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if want.iter().all(|w| text.contains(w)) || std::time::Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn terminal_for_init_and_exec() {
    let mut fx = Fixture::new(&["/bin/sh", "-c", "tty; stty size; sleep 1000"]);
    fx.bundle.spec["process"]["terminal"] = json!(true);
    fx.bundle.spec["process"]["consoleSize"] = json!({"height": 30, "width": 100});
    let sub = reaper::subscribe();
    let created = fx.create(Stdio::default()).expect("create");
    let master = created
        .console
        .expect("a pty master for a terminal process");
    let c = created.container;
    let out = read_console(master);
    c.start().expect("start");
    let text = wait_console(&out, &["/dev/pts/0", "30 100"]);
    assert!(
        text.contains("/dev/pts/0") && text.contains("30 100"),
        "{text:?}"
    );
    let mut p = process_with(&c, &["/bin/sh", "-c", "tty; sleep 1000"]);
    p.set_console_size(None);
    let spawned = c.exec(&p, Stdio::default()).expect("exec with a terminal");
    let exec_out = read_console(spawned.console.expect("exec pty master"));
    let text = wait_console(&exec_out, &["/dev/pts/1"]);
    assert!(text.contains("/dev/pts/1"), "{text:?}");
    c.kill(libc::SIGKILL, true).expect("kill");
    sub.wait_for(c.init_pid(), Some(Duration::from_secs(10)))
        .expect("init exits");
    c.delete().expect("delete");
    fx.assert_clean();
}

pub fn user_namespace_with_maps() {
    let mut fx = Fixture::new(&["/bin/sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; stat -c %u /bin/busybox; grep CapEff /proc/self/status"]);
    use std::os::unix::fs::PermissionsExt;
    // The mapped root (host uid 100000) must be able to reach the rootfs.
    fs::set_permissions(fx.bundle.path(), fs::Permissions::from_mode(0o755)).expect("chmod bundle");
    fx.bundle.spec["linux"]["namespaces"]
        .as_array_mut()
        .expect("ns")
        .push(json!({"type": "user"}));
    fx.bundle.spec["linux"]["uidMappings"] =
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    fx.bundle.spec["linux"]["gidMappings"] =
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    let o = run_to_exit(&fx);
    assert_eq!(o.status, 0, "{}", o.stderr);
    // exec joins the user namespace first, then the rest.
    let mut fx2 = Fixture::new(&["/bin/sleep", "1000"]);
    fs::set_permissions(fx2.bundle.path(), fs::Permissions::from_mode(0o755))
        .expect("chmod bundle");
    fx2.bundle.spec["linux"] = fx.bundle.spec["linux"].clone();
    fx2.bundle.spec["linux"]["cgroupsPath"] = json!(fx2.cgroup);
    let c = fx2
        .create(Stdio::default())
        .expect("create in a user namespace")
        .container;
    c.start().expect("start");
    let (status, out) = exec_output(
        &c,
        &process_with(&c, &["/bin/sh", "-c", "cat /proc/self/uid_map; id -u"]),
    );
    assert_eq!(status, 0);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        vec!["0", "100000", "65536", "0"],
        "{out}"
    );
    c.delete().expect("delete");
    fx2.assert_clean();
    let words: Vec<&str> = o.stdout.split_whitespace().collect();
    assert_eq!(
        &words[..8],
        &["0", "100000", "65536", "0", "100000", "65536", "0", "65534"],
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("CapEff:\t0000000020000420"),
        "{}",
        o.stdout
    );
}

pub fn join_namespaces_by_path() {
    let a = Fixture::new(&["/bin/sleep", "1000"]);
    let ca = a.create(Stdio::default()).expect("create a").container;
    ca.start().expect("start a");
    let net = format!("/proc/{}/ns/net", ca.init_pid());
    let ipc = format!("/proc/{}/ns/ipc", ca.init_pid());
    let want = format!(
        "{}\n{}\n",
        fs::read_link(&net).expect("ns").display(),
        fs::read_link(&ipc).expect("ns").display()
    );
    let o = sh(
        "readlink /proc/self/ns/net; readlink /proc/self/ns/ipc",
        |s| {
            for ns in s["linux"]["namespaces"].as_array_mut().expect("ns") {
                match ns["type"].as_str() {
                    Some("network") => ns["path"] = json!(net),
                    Some("ipc") => ns["path"] = json!(ipc),
                    _ => {}
                }
            }
        },
    );
    assert_eq!(o.stdout, want);
    ca.delete().expect("delete a");
    a.assert_clean();
}

pub fn oom_is_reported() {
    let mut fx = Fixture::new(&[
        "/bin/sh",
        "-c",
        "dd if=/dev/zero of=/dev/null bs=64M count=1; echo dd=$?; sleep 1000",
    ]);
    fx.bundle.spec["linux"]["resources"]["memory"] = json!({"limit": 16777216});
    let (out_r, out_w) = pipe();
    let c = fx
        .create(Stdio {
            stdin: None,
            stdout: Some(out_w),
            stderr: None,
        })
        .expect("create")
        .container;
    let mut watcher = c.oom_watcher().expect("oom watcher");
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let first = watcher.wait();
        let _ = tx.send(());
        (first, watcher)
    });
    let out = drain(out_r);
    c.start().expect("start");
    rx.recv_timeout(Duration::from_secs(20))
        .expect("an OOM event within 20s");
    let (first, mut watcher) = waiter.join().expect("waiter");
    assert_eq!(first.expect("wait"), lifecycle_runtime::OomEvent::Oom);
    // The notification comes as the OOM starts; the kill is counted just after.
    let read = || {
        fs::read_to_string(format!(
            "/sys/fs/cgroup/memory{}/memory.oom_control",
            fx.cgroup
        ))
        .expect("oom_control")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut control = read();
    while control.contains("oom_kill 0") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        control = read();
    }
    assert!(
        control
            .lines()
            .any(|l| l.starts_with("oom_kill ") && l != "oom_kill 0"),
        "{control}"
    );
    c.delete().expect("delete");
    // After delete the watcher learns the cgroup is gone instead of blocking forever.
    assert_eq!(
        watcher.wait().expect("wait after delete"),
        lifecycle_runtime::OomEvent::Gone
    );
    drop(out.join());
    fx.assert_clean();
}

/// The shim creates, execs and deletes from several threads at once.
pub fn concurrent_containers_from_threads() {
    let handles: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let o = sh(
                    &format!("echo container-{i}; cat /proc/self/cgroup | grep -c lc-test"),
                    |_| {},
                );
                assert_eq!(o.status, 0, "{}", o.stderr);
                // Every hierarchy of the host (including the v2 tree of a hybrid host).
                let n = fs::read_to_string("/proc/self/cgroup")
                    .expect("cgroup")
                    .lines()
                    .count();
                assert_eq!(o.stdout, format!("container-{i}\n{n}\n"));
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
}

pub fn rootfs_propagation_modes() {
    for (mode, want) in [("rshared", true), ("rprivate", false), ("rslave", false)] {
        let o = sh("awk '$5 == \"/\"' /proc/self/mountinfo", |s| {
            s["linux"]["rootfsPropagation"] = json!(mode)
        });
        assert_eq!(o.status, 0, "{mode}: {}", o.stderr);
        assert_eq!(o.stdout.contains(" shared:"), want, "{mode}: {}", o.stdout);
    }
}
