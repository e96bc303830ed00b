//! `lifecycle-runc` driven as a runc user would: real busybox bundles, as root. A test that
//! cannot run (not root, no busybox, no runc) fails naming what is missing; nothing skips.
//!
//! The test process is a child subreaper with a small reaper of its own for orphans (the
//! container processes whose `lifecycle-runc` parent exited), standing in for the
//! containerd-shim-runc-v2 that would reap them in production; it never reaps the
//! `lifecycle-runc` processes the tests wait for.

use std::{
    io::{Read, Write},
    os::{
        fd::{FromRawFd, OwnedFd},
        unix::{io::AsRawFd, net::UnixListener},
    },
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use lifecycle_testsupport::{
    cgroup_dirs_left, processes_matching, require_bin, require_root, unique, Bundle,
};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_lifecycle-runc");

fn setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    require_root();
    ONCE.call_once(|| {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        std::thread::spawn(|| loop {
            reap_orphans();
            std::thread::sleep(Duration::from_millis(10));
        });
    });
}

/// Reaps our zombie children except the `lifecycle-runc`/`runc` processes a test waits for.
fn reap_orphans() {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let mut f = stat[close + 2..].split(' ');
        let (state, ppid) = (f.next(), f.next());
        if state == Some("Z")
            && ppid == Some(me.as_str())
            && comm != "lifecycle-runc"
            && comm != "runc"
        {
            // SAFETY: waitpid on our own zombie child.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        }
    }
}

/// One test's world: a --root and a busybox bundle with its own cgroup.
struct World {
    root: tempfile::TempDir,
    bundle: Bundle,
    id: String,
    cgroup: String,
}

impl World {
    fn new(args: &[&str]) -> World {
        setup();
        let id = unique("lcrunc");
        let cgroup = format!("/{id}");
        let bundle = Bundle::new(args, &cgroup);
        World {
            root: tempfile::Builder::new()
                .prefix("lc-runc-root-")
                .tempdir()
                .expect("root tempdir"),
            bundle,
            id,
            cgroup,
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--root").arg(self.root.path()).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Runs to completion. stdout and stderr are files, not pipes: a container started by
    /// the command inherits them (as with runc) and would hold a pipe open.
    fn run(&self, args: &[&str]) -> Output {
        output(self.cmd(args))
    }

    /// Runs and asserts success; stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "lifecycle-runc {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and asserts failure with `code` and `msg` in stderr.
    fn fails(&self, args: &[&str], code: i32, msg: &str) {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "lifecycle-runc {args:?}: {stderr}"
        );
        assert!(
            stderr.contains(msg),
            "lifecycle-runc {args:?}: expected {msg:?} in {stderr:?}"
        );
    }

    fn create(&self) {
        self.ok(&[
            "create",
            "--bundle",
            self.bundle.path().to_str().unwrap(),
            &self.id,
        ]);
    }

    fn state(&self) -> Value {
        serde_json::from_str(&self.ok(&["state", &self.id])).expect("state JSON")
    }

    fn wait_status(&self, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // A `run` in the background may not have created it yet.
            let out = self.run(&["state", &self.id]);
            let s: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            if s["status"] == want {
                return s;
            }
            assert!(Instant::now() < deadline, "status never became {want}: {s}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Nothing left: state dir, cgroup, processes, mounts.
    fn assert_clean(&self) {
        let dir = self.root.path().join(&self.id);
        assert!(!dir.exists(), "state dir {} left behind", dir.display());
        let left = cgroup_dirs_left(&self.cgroup);
        assert!(left.is_empty(), "cgroups left behind: {left:?}");
        let procs = processes_matching(&self.id);
        assert!(procs.is_empty(), "processes left behind: {procs:?}");
        let mounts = lifecycle_testsupport::mounts_containing(self.bundle.path().to_str().unwrap());
        assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
    }
}

/// Runs to completion. stdout and stderr are files, not pipes: a container started by the
/// command inherits them (as with runc) and would hold a pipe open.
fn output(mut cmd: Command) -> Output {
    let (mut out, mut err) = (tempfile::tempfile().unwrap(), tempfile::tempfile().unwrap());
    let status = cmd
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .status()
        .expect("run the command");
    let read = |f: &mut std::fs::File| {
        use std::io::Seek;
        let mut v = Vec::new();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut v).unwrap();
        v
    };
    Output {
        status,
        stdout: read(&mut out),
        stderr: read(&mut err),
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.cmd(&["delete", "--force", &self.id]).output();
    }
}

fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn create_start_state_kill_delete_as_runc() {
    let w = World::new(&["sleep", "100"]);
    w.create();
    let s = w.state();
    assert_eq!(s["status"], "created");
    assert_eq!(s["id"], w.id.as_str());
    let pid = s["pid"].as_i64().unwrap();
    assert!(pid > 0 && alive(pid));
    assert_eq!(s["bundle"], w.bundle.path().to_str().unwrap());
    assert_eq!(s["rootfs"], w.bundle.rootfs().to_str().unwrap());
    assert!(s["created"].as_str().unwrap().ends_with('Z'));
    assert!(w.root.path().join(&w.id).join("exec.fifo").exists());

    // The same bundle under runc 1.1.5: same keys, same status strings.
    let runc = require_bin("runc");
    let runc_root = tempfile::tempdir().unwrap();
    let rid = unique("lcrunc-ref");
    let rb = Bundle::new(&["sleep", "100"], &format!("/{rid}"));
    let runc_cmd = |args: &[&str]| {
        let mut c = Command::new(&runc);
        c.arg("--root")
            .arg(runc_root.path())
            .args(args)
            .stdin(Stdio::null());
        output(c)
    };
    let out = runc_cmd(&["create", "--bundle", rb.path().to_str().unwrap(), &rid]);
    assert!(
        out.status.success(),
        "runc create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Value = serde_json::from_slice(&runc_cmd(&["state", &rid]).stdout).unwrap();
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&s), keys(&theirs), "ours {s} runc {theirs}");
    assert_eq!(theirs["status"], s["status"]);
    runc_cmd(&["start", &rid]);
    let theirs: Value = serde_json::from_slice(&runc_cmd(&["state", &rid]).stdout).unwrap();

    w.ok(&["start", &w.id]);
    let s = w.state();
    assert_eq!(s["status"], "running");
    assert_eq!(s["status"], theirs["status"]);
    assert_eq!(s["pid"].as_i64(), Some(pid));
    assert!(!w.root.path().join(&w.id).join("exec.fifo").exists());
    w.fails(
        &["start", &w.id],
        1,
        "cannot start an already running container",
    );
    w.fails(&["delete", &w.id], 1, "that is not stopped: running");

    w.ok(&["kill", &w.id, "KILL"]);
    runc_cmd(&["kill", &rid, "KILL"]);
    let s = w.wait_status("stopped");
    assert_eq!(s["pid"], 0, "runc reports pid 0 once stopped");
    w.fails(&["kill", &w.id], 1, "container not running");
    w.ok(&["delete", &w.id]);
    w.fails(&["state", &w.id], 1, "container does not exist");
    w.assert_clean();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !runc_cmd(&["delete", &rid]).status.success() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn run_foreground_exits_with_the_container_status() {
    let w = World::new(&["sh", "-c", "echo hello; exit 7"]);
    let out = w.run(&["run", "--bundle", w.bundle.path().to_str().unwrap(), &w.id]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    w.assert_clean();

    // No fd of lifecycle-runc reaches the container: not its log, not one it inherited
    // without close-on-exec (here fd 7).
    let w = World::new(&["sh", "-c", "ls /proc/1/fd; true"]);
    let log = w.root.path().join("log.json");
    let mut cmd = w.cmd(&[
        "--log",
        log.to_str().unwrap(),
        "run",
        "--bundle",
        w.bundle.path().to_str().unwrap(),
        &w.id,
    ]);
    // SAFETY: only dup2 between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            if libc::dup2(2, 7) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0\n1\n2\n");
    w.assert_clean();

    // Signals to `run` reach the container; killed by a signal: 128 + signal, as runc.
    let w = World::new(&[
        "sh",
        "-c",
        "trap 'exit 42' TERM; while true; do sleep 0.05; done",
    ]);
    let mut child = w
        .cmd(&["run", "-bundle", w.bundle.path().to_str().unwrap(), &w.id])
        .spawn()
        .unwrap();
    w.wait_status("running");
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: kill with integers, on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(42));
    w.assert_clean();
    let w = World::new(&["sleep", "100"]);
    let mut child = w
        .cmd(&["run", "-bundle", w.bundle.path().to_str().unwrap(), &w.id])
        .spawn()
        .unwrap();
    w.wait_status("running");
    w.ok(&["kill", &w.id, "9"]);
    assert_eq!(child.wait().unwrap().code(), Some(137));
    w.assert_clean();

    // Detached: returns at once, the container runs on; --pid-file is the init.
    let w = World::new(&["sleep", "100"]);
    let pid_file = w.root.path().join("run.pid");
    w.ok(&[
        "run",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--bundle",
        w.bundle.path().to_str().unwrap(),
        &w.id,
    ]);
    let s = w.state();
    assert_eq!(s["status"], "running");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        s["pid"].to_string()
    );
    w.ok(&["delete", "--force", &w.id]);
    w.assert_clean();
}

#[test]
fn exec_detached_and_foreground() {
    let w = World::new(&["sleep", "100"]);
    w.create();
    w.ok(&["start", &w.id]);
    let out = w.run(&["exec", &w.id, "sh", "-c", "echo in; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "in\n");

    let pid_file = w.root.path().join("exec.pid");
    w.ok(&[
        "exec",
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &w.id,
        "sleep",
        "50",
    ]);
    let text = std::fs::read_to_string(&pid_file).unwrap();
    assert!(
        !text.ends_with('\n'),
        "runc writes the pid without a newline"
    );
    let pid: i64 = text.parse().unwrap();
    assert!(alive(pid));
    let pids: Vec<i64> = serde_json::from_str(&w.ok(&["ps", "--format", "json", &w.id])).unwrap();
    assert!(pids.contains(&pid) && pids.len() == 2, "{pids:?}");
    let table = w.ok(&["ps", &w.id]);
    assert!(
        table.starts_with("UID") && table.contains("sleep 50"),
        "{table}"
    );

    // --process as containerd-shim-runc-v2 passes it, with env, cwd and user.
    let p = w.root.path().join("process.json");
    let mut process = w.bundle.spec["process"].clone();
    process["args"] = json!(["sh", "-c", "echo $FOO:$(pwd):$(id -u)"]);
    process["env"] = json!(["FOO=bar", "PATH=/bin"]);
    process["cwd"] = json!("/tmp");
    process["user"] = json!({"uid": 1000, "gid": 1000});
    std::fs::write(&p, process.to_string()).unwrap();
    let out = w.run(&["exec", "--process", p.to_str().unwrap(), &w.id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "bar:/tmp:1000\n");
    let out = w.run(&[
        "exec",
        "-e",
        "X=1",
        "--cwd",
        "/etc",
        "-u",
        "65534",
        &w.id,
        "sh",
        "-c",
        "echo $X:$(pwd):$(id -u)",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1:/etc:65534\n");

    w.fails(&["exec", &w.id, "/nope"], 255, "exec failed");
    w.ok(&["kill", "--all", &w.id, "KILL"]);
    w.wait_status("stopped");
    w.fails(&["exec", &w.id, "true"], 255, "stopped");
    w.ok(&["delete", &w.id]);
    w.assert_clean();
}

/// Receives one fd over SCM_RIGHTS (what containerd's console socket does).
fn recv_fd(sock: &std::os::unix::net::UnixStream) -> (String, OwnedFd) {
    let mut buf = [0u8; 256];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = [0u64; 8];
    // SAFETY: recvmsg into live buffers, then walking the control data the kernel wrote.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
        let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        assert!(n > 0, "recvmsg: {}", std::io::Error::last_os_error());
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        assert!(
            !cmsg.is_null() && (*cmsg).cmsg_type == libc::SCM_RIGHTS,
            "no fd received"
        );
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>());
        (
            String::from_utf8_lossy(&buf[..n as usize]).into_owned(),
            OwnedFd::from_raw_fd(fd),
        )
    }
}

fn read_until(f: &mut std::fs::File, want: &str) -> String {
    let mut got = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 1024];
    while !got.contains(want) {
        assert!(
            Instant::now() < deadline,
            "never read {want:?}; got {got:?}"
        );
        match f.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    got
}

#[test]
fn console_socket_receives_the_pty_master() {
    let mut w = World::new(&["sh", "-c", "read line; echo got:$line; sleep 100"]);
    w.bundle.spec["process"]["terminal"] = json!(true);
    w.bundle.write_spec();
    let bundle = w.bundle.path().to_str().unwrap().to_owned();

    // A terminal without a console socket is refused, as runc does.
    w.fails(
        &["create", "--bundle", &bundle, &w.id],
        1,
        "cannot allocate tty if runc will detach without setting console socket",
    );
    assert!(!w.root.path().join(&w.id).exists());

    let sock_path = w.root.path().join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let child = w
        .cmd(&[
            "create",
            "--bundle",
            &bundle,
            "--console-socket",
            sock_path.to_str().unwrap(),
            &w.id,
        ])
        .spawn()
        .unwrap();
    let (conn, _) = listener.accept().unwrap();
    let (name, master) = recv_fd(&conn);
    assert_eq!(name, "/dev/ptmx");
    assert!(child.wait_with_output().unwrap().status.success());
    w.ok(&["start", &w.id]);
    let mut pty = std::fs::File::from(master);
    pty.write_all(b"hello\n").unwrap();
    let got = read_until(&mut pty, "got:hello");
    assert!(got.contains("got:hello"), "{got:?}");

    // exec -t with a console socket: a second pty.
    let child = w
        .cmd(&[
            "exec",
            "-t",
            "-d",
            "--console-socket",
            sock_path.to_str().unwrap(),
            &w.id,
            "sh",
            "-c",
            "tty; sleep 100",
        ])
        .spawn()
        .unwrap();
    let (conn, _) = listener.accept().unwrap();
    let (_, master) = recv_fd(&conn);
    let mut pty = std::fs::File::from(master);
    let got = read_until(&mut pty, "/dev/pts/");
    assert!(got.contains("/dev/pts/"), "{got:?}");
    assert!(child.wait_with_output().unwrap().status.success());
    w.ok(&["delete", "--force", &w.id]);
    w.assert_clean();

    // Foreground `run` with a terminal and no console socket relays the pty to its own stdio.
    let mut w = World::new(&["sh", "-c", "tty; exit 4"]);
    w.bundle.spec["process"]["terminal"] = json!(true);
    w.bundle.write_spec();
    let out = w.run(&["run", "--bundle", w.bundle.path().to_str().unwrap(), &w.id]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("/dev/pts/0"),
        "{out:?}"
    );
    w.assert_clean();
}

#[test]
fn list_pause_resume_update() {
    let w = World::new(&["sleep", "100"]);
    w.create();
    w.ok(&["start", &w.id]);
    let list: Value = serde_json::from_str(&w.ok(&["list", "--format", "json"])).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], w.id.as_str());
    assert_eq!(list[0]["status"], "running");
    assert_eq!(list[0]["owner"], "root");
    assert_eq!(w.ok(&["list", "-q"]).trim(), w.id);
    let table = w.ok(&["list"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    );

    w.ok(&["pause", &w.id]);
    assert_eq!(w.state()["status"], "paused");
    w.fails(&["exec", &w.id, "true"], 255, "paused");
    w.fails(&["pause", &w.id], 1, "container not running");
    w.ok(&["resume", &w.id]);
    assert_eq!(w.state()["status"], "running");
    w.fails(&["resume", &w.id], 1, "container not paused");

    // update --resources - (what containerd-shim-runc-v2 sends), then a flag.
    let mut child = w
        .cmd(&["update", "--resources", "-", &w.id])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"pids":{"limit":42}}"#)
        .unwrap();
    assert!(child.wait().unwrap().success());
    let pids_max = cgroup_file("pids", &w.cgroup, "pids.max");
    assert_eq!(std::fs::read_to_string(&pids_max).unwrap().trim(), "42");
    w.ok(&["update", "--memory", "64m", &w.id]);
    let mem = cgroup_file("memory", &w.cgroup, "memory.limit_in_bytes");
    assert_eq!(
        std::fs::read_to_string(&mem).unwrap().trim(),
        (64u64 << 20).to_string()
    );

    // delete --force of a running container.
    w.ok(&["delete", "--force", &w.id]);
    w.assert_clean();
    assert_eq!(
        w.ok(&["list", "--format", "json"]).trim(),
        "null",
        "runc prints null"
    );
}

fn cgroup_file(controller: &str, cgroup: &str, file: &str) -> PathBuf {
    let v1 = Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(cgroup.trim_start_matches('/'))
        .join(file);
    if v1.exists() {
        return v1;
    }
    Path::new("/sys/fs/cgroup")
        .join(cgroup.trim_start_matches('/'))
        .join(file.replace("memory.limit_in_bytes", "memory.max"))
}

#[test]
fn errors_name_what_was_wrong() {
    let w = World::new(&["sleep", "100"]);
    let bundle = w.bundle.path().to_str().unwrap().to_owned();
    w.fails(&["state", "nope"], 1, "container does not exist");
    w.fails(&["delete", "nope"], 1, "container does not exist");
    w.ok(&["delete", "--force", "nope"]);
    w.fails(
        &["create", "--bundle", &bundle, "a/b"],
        1,
        "invalid container ID format",
    );
    w.fails(&["kill", &w.id, "FOO"], 1, "container does not exist");
    w.fails(&["bogus"], 1, "unknown command");
    w.fails(
        &["create", "--bogus", "x"],
        1,
        "flag provided but not defined: -bogus",
    );
    w.fails(
        &["--systemd-cgroup", "list"],
        1,
        "--systemd-cgroup is not supported",
    );
    w.fails(&["events", &w.id], 1, "not supported");
    w.create();
    w.fails(
        &["create", "--bundle", &bundle, &w.id],
        1,
        "container with given ID already exists",
    );
    w.fails(&["kill", &w.id, "FOO"], 1, "unknown signal");
    // A created container can be deleted without --force, as runc.
    w.ok(&["delete", &w.id]);
    w.assert_clean();

    // A bad entrypoint fails create and leaves nothing.
    let mut w = World::new(&["/nope"]);
    w.bundle.spec["process"]["args"] = json!(["/nope"]);
    w.bundle.write_spec();
    w.fails(
        &[
            "create",
            "--bundle",
            w.bundle.path().to_str().unwrap(),
            &w.id,
        ],
        1,
        "/nope",
    );
    w.assert_clean();
}

#[test]
fn log_json_has_the_error_line_containerd_reads() {
    let w = World::new(&["sleep", "100"]);
    let log = w.root.path().join("log.json");
    let out = w.run(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "nope",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "container does not exist"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert_eq!(last["msg"], "container does not exist");
    assert!(last["time"].as_str().unwrap().ends_with('Z'));
    // Without --log: logrus's text format on stderr.
    let out = w.run(&["state", "nope"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("time=\"") && err.contains("level=error msg=\"container does not exist\""),
        "{err}"
    );
}

#[test]
fn features_and_spec() {
    let w = World::new(&["true"]);
    let f: Value = serde_json::from_str(&w.ok(&["features"])).unwrap();
    assert_eq!(f["ociVersionMin"], "1.0.0");
    assert!(f["hooks"].as_array().unwrap().contains(&json!("poststop")));
    assert!(f["mountOptions"]
        .as_array()
        .unwrap()
        .contains(&json!("rbind")));
    assert!(!f["mountOptions"]
        .as_array()
        .unwrap()
        .contains(&json!("idmap")));
    assert_eq!(f["linux"]["cgroup"]["systemd"], false);
    assert!(f["linux"]["capabilities"]
        .as_array()
        .unwrap()
        .contains(&json!("CAP_SYS_ADMIN")));
    assert!(!f["linux"]["seccomp"]["actions"]
        .as_array()
        .unwrap()
        .contains(&json!("SCMP_ACT_NOTIFY")));

    let dir = tempfile::tempdir().unwrap();
    w.ok(&["spec", "--bundle", dir.path().to_str().unwrap()]);
    let spec: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["process"]["args"], json!(["sh"]));
    w.fails(
        &["spec", "--bundle", dir.path().to_str().unwrap()],
        1,
        "exists",
    );
}
