//! Lifecycle hooks end to end: a private containerd 1.6 drives containerd-shim-lifecycle-v1
//! through `ctr run --annotation lifecycle.shim/...=...`; what the hooks did is observed from
//! inside the container (files in its rootfs, /proc of its processes). Every test ends by
//! asserting that no shim, container process, mount or cgroup was left behind.

use std::{
    fs,
    net::TcpListener,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use lifecycle_integration::*;
use lifecycle_testsupport::{
    containerd::{Containerd, RUNTIME},
    unique,
};

/// After a failed Start: the task is STOPPED with no process left in it, then removed.
fn assert_stopped_and_remove(c: &Containerd, id: &str) {
    assert_eq!(task_status(c, id), "STOPPED", "{}", c.ctr(&["task", "ls"]));
    c.ctr(&["task", "rm", id]);
    c.ctr(&["container", "rm", id]);
}

#[test]
fn post_start_completes_before_start_returns_in_the_containers_namespaces() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let id = unique("ps");
    let hook = "sleep 1; for n in mnt pid uts net cgroup; do \
                echo $n $(readlink /proc/self/ns/$n) $(readlink /proc/1/ns/$n); done > /tmp/ns; \
                cat /proc/self/cgroup > /tmp/cg; echo hello > /tmp/poststart";
    let t = Instant::now();
    let out = ctr_raw(
        &c,
        &run_args(&[(PS, exec_handler(hook))], &["-d"], &root, &id, FOREVER),
    );
    let took = t.elapsed();
    assert!(out.status.success(), "{}\n{}", text(&out), c.log());
    assert!(
        took >= Duration::from_secs(1),
        "Start returned after {took:?}"
    );
    // Start has returned: the file the hook wrote is there.
    assert_eq!(read(&root, "tmp/poststart").trim(), "hello");
    assert_eq!(task_status(&c, &id), "RUNNING");
    let ns = read(&root, "tmp/ns");
    assert_eq!(ns.lines().count(), 5, "{ns}");
    for line in ns.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 3, "{line}");
        assert_eq!(f[1], f[2], "hook and init differ in {}", f[0]);
    }
    let init_cg = exec_out(&c, &id, "cat /proc/1/cgroup");
    assert_eq!(read(&root, "tmp/cg"), init_cg, "cgroup of hook vs init");
    remove(&c, &id);
    c.assert_clean();
}

#[test]
fn before_entrypoint_runs_the_hook_first_and_state_stays_created() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let id = unique("be");
    let annotations = [
        (PS, exec_handler("sleep 1; echo hook > /tmp/mark")),
        (
            "lifecycle.shim/post-start-order",
            "before-entrypoint".into(),
        ),
    ];
    let args = run_args(
        &annotations,
        &["-d"],
        &root,
        &id,
        &[
            "/bin/sh",
            "-c",
            "cat /tmp/mark > /tmp/seen 2>&1 || echo missing > /tmp/seen; sleep 1000 & wait",
        ],
    );
    let c2 = &c;
    let seen_created = thread::scope(|s| {
        let runner = s.spawn(move || ctr_raw(c2, &args));
        let mut seen = false;
        while !runner.is_finished() {
            if task_status(c2, &id) == "CREATED" {
                seen = true;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let out = runner.join().expect("ctr run thread");
        assert!(out.status.success(), "{}", text(&out));
        seen
    });
    assert!(seen_created, "State must be CREATED while the hook runs");
    wait_for("entrypoint to run", Duration::from_secs(5), || {
        !read(&root, "tmp/seen").is_empty()
    });
    assert_eq!(read(&root, "tmp/seen").trim(), "hook");
    assert_eq!(task_status(&c, &id), "RUNNING");
    remove(&c, &id);
    c.assert_clean();
}

/// `ctr run -d` with a failing postStart: the error, then the task STOPPED and nothing left.
fn failing_post_start(c: &Containerd, annotations: &[(&str, String)], expect: &[&str]) {
    let (_d, root) = rootfs();
    let id = unique("fail");
    let out = ctr_raw(c, &run_args(annotations, &["-d"], &root, &id, FOREVER));
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("postStart hook failed: "), "{err}");
    for e in expect {
        assert!(err.contains(e), "expected {e:?} in {err}");
    }
    assert_stopped_and_remove(c, &id);
}

#[test]
fn failing_post_start_fails_start_and_leaves_nothing() {
    let c = Containerd::start();
    failing_post_start(
        &c,
        &[(PS, exec_handler("echo oops; exit 3"))],
        &["exec [/bin/sh -c echo oops; exit 3] exited with code 3: oops"],
    );
    failing_post_start(
        &c,
        &[(PS, r#"{"exec":{"command":["/no/such/binary"]}}"#.into())],
        &["/no/such/binary"],
    );
    failing_post_start(
        &c,
        &[
            (PS, exec_handler("echo slow; sleep 100")),
            ("lifecycle.shim/post-start-timeout-seconds", "1".into()),
        ],
        &["timeout:", "did not complete within 1s", "slow"],
    );
    // Nothing listens on port 1 in the container: refused.
    failing_post_start(
        &c,
        &[(PS, r#"{"tcpSocket":{"port":1,"host":"127.0.0.1"}}"#.into())],
        &["tcpSocket 127.0.0.1:1"],
    );
    c.assert_clean();
}

#[test]
fn malformed_annotation_fails_create_naming_the_key() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let id = unique("bad");
    let out = ctr_raw(
        &c,
        &run_args(
            &[(PRE, r#"{"httpGet":{"port":70000}}"#.into())],
            &["-d"],
            &root,
            &id,
            FOREVER,
        ),
    );
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lifecycle.shim/pre-stop"), "{err}");
    assert!(err.contains("70000"), "{err}");
    // No task exists; only the container record.
    assert_eq!(task_status(&c, &id), "");
    let _ = c.ctr_raw(&["container", "rm", &id]);
    c.assert_clean();
}

#[test]
fn pre_stop_runs_before_the_stop_signal_and_kill_returns_at_once() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let id = unique("pre");
    let annotations = [(PRE, exec_handler("echo prestop >> /tmp/log; sleep 2"))];
    let out = ctr_raw(
        &c,
        &run_args(
            &annotations,
            &["-d"],
            &root,
            &id,
            &[
                "/bin/sh",
                "-c",
                "trap 'echo term >> /tmp/log; exit 0' TERM; sleep 1000 & wait",
            ],
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    let t = Instant::now();
    c.ctr(&["task", "kill", &id]);
    let kill_took = t.elapsed();
    assert!(
        kill_took < Duration::from_millis(1500),
        "Kill waited for the hook: {kill_took:?}"
    );
    assert_eq!(task_status(&c, &id), "RUNNING", "hook still running");
    wait_for("exit after preStop", Duration::from_secs(10), || {
        task_status(&c, &id) == "STOPPED"
    });
    assert!(t.elapsed() >= Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(read(&root, "tmp/log"), "prestop\nterm\n");
    remove(&c, &id);
    c.assert_clean();
}

#[test]
fn sigkill_during_a_long_pre_stop_kills_at_once() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let id = unique("pk");
    let annotations = [(PRE, exec_handler("echo prestop > /tmp/pre; sleep 100"))];
    let out = ctr_raw(&c, &run_args(&annotations, &["-d"], &root, &id, FOREVER));
    assert!(out.status.success(), "{}", text(&out));
    c.ctr(&["task", "kill", &id]);
    wait_for("preStop to start", Duration::from_secs(5), || {
        !read(&root, "tmp/pre").is_empty()
    });
    let t = Instant::now();
    c.ctr(&["task", "kill", "-s", "SIGKILL", &id]);
    wait_for("SIGKILL", Duration::from_secs(5), || {
        task_status(&c, &id) == "STOPPED"
    });
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    remove(&c, &id);
    c.assert_clean();
}

#[test]
fn an_entrypoint_ignoring_sigterm_dies_by_sigkill_at_the_grace_deadline() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let id = unique("gr");
    let annotations = [(GRACE, "2".to_string())];
    let out = ctr_raw(
        &c,
        &run_args(
            &annotations,
            &["-d"],
            &root,
            &id,
            &["/bin/sh", "-c", "trap '' TERM; sleep 1000 & wait"],
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    let t = Instant::now();
    c.ctr(&["task", "kill", &id]);
    wait_for("SIGKILL at the deadline", Duration::from_secs(10), || {
        task_status(&c, &id) == "STOPPED"
    });
    let took = t.elapsed();
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
    let out = c.ctr_raw(&["task", "rm", &id]);
    assert!(out.status.success(), "{}", text(&out));
    c.ctr(&["container", "rm", &id]);
    c.assert_clean();
}

/// `openssl s_server -www` in the network namespace of `pid`, with a fresh self-signed
/// certificate; killed on drop.
struct TlsServer(std::process::Child);

impl TlsServer {
    fn start(dir: &Path, pid: &str, port: u16) -> TlsServer {
        lifecycle_testsupport::require_bin("openssl");
        fs::create_dir_all(dir).expect("tls dir");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let out = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=hook-test", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl req");
        assert!(out.status.success(), "{}", text(&out));
        let child = std::process::Command::new("nsenter")
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .args(["openssl", "s_server", "-quiet", "-www", "-accept"])
            .arg(port.to_string())
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server");
        TlsServer(child)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn init_pid(c: &Containerd, id: &str) -> String {
    let out = c.ctr(&["task", "ls"]);
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_owned()
}

#[test]
fn probes_reach_the_containers_loopback_and_never_the_hosts() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    fs::create_dir_all(root.join("www")).expect("www");
    fs::write(root.join("www/index.html"), "ok").expect("index");
    // A server only on the host's 127.0.0.1: no hook may reach it.
    let host = TcpListener::bind("127.0.0.1:0").expect("bind host loopback");
    let host_port = host.local_addr().expect("addr").port();

    // The server: only on the loopback of its own network namespace.
    let srv = unique("srv");
    let out = ctr_raw(
        &c,
        &run_args(
            &[],
            &["-d"],
            &root,
            &srv,
            &[
                "/bin/busybox",
                "httpd",
                "-f",
                "-p",
                "127.0.0.1:8080",
                "-h",
                "/www",
            ],
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    wait_for("httpd to listen", Duration::from_secs(10), || {
        let eid = unique("w");
        c.ctr_raw(&[
            "task",
            "exec",
            "--exec-id",
            &eid,
            &srv,
            "wget",
            "-q",
            "-O-",
            "http://127.0.0.1:8080/index.html",
        ])
        .status
        .success()
    });
    // A second server in the same namespace that answers every request with a 500.
    c.ctr(&[
        "task", "exec", "-d", "--exec-id", "fivehundred", &srv, "/bin/sh", "-c",
        "while true; do printf 'HTTP/1.0 500 Internal Server Error\\r\\nContent-Length: 6\\r\\n\\r\\nbroken' \\
         | nc -l -p 8081 >/dev/null; done",
    ]);
    wait_for("nc to listen", Duration::from_secs(10), || {
        let eid = unique("w");
        c.ctr_raw(&[
            "task",
            "exec",
            "--exec-id",
            &eid,
            &srv,
            "grep",
            "-q",
            ":1F91 [0-9A-F]*:0000 0A",
            "/proc/net/tcp",
            "/proc/net/tcp6",
        ])
        .status
        .success()
    });
    let pid = init_pid(&c, &srv);
    let netns = format!("network:/proc/{pid}/ns/net");
    // An HTTPS server (self-signed certificate) in the same namespace, started from the host.
    let _tls = TlsServer::start(&_d.path().join("tls"), &pid, 8443);
    wait_for("the TLS server to listen", Duration::from_secs(10), || {
        let eid = unique("w");
        c.ctr_raw(&[
            "task",
            "exec",
            "--exec-id",
            &eid,
            &srv,
            "grep",
            "-q",
            ":20FB [0-9A-F]*:0000 0A",
            "/proc/net/tcp",
            "/proc/net/tcp6",
        ])
        .status
        .success()
    });

    // Containers sharing that network namespace, with postStart probes: a listening server
    // is reached (by IP literal, by `localhost` from the container's /etc/hosts, and by the
    // default host), a 500 and a port open only on the host's loopback fail Start.
    let ok = [
        r#"{"httpGet":{"path":"/index.html","port":8080,"host":"127.0.0.1"}}"#.to_string(),
        r#"{"httpGet":{"path":"/index.html","port":8080,"host":"localhost"}}"#.to_string(),
        r#"{"tcpSocket":{"port":8080}}"#.to_string(),
        // HTTPS without certificate verification (self-signed), as kubelet.
        r#"{"httpGet":{"path":"/","port":8443,"host":"127.0.0.1","scheme":"HTTPS"}}"#.to_string(),
    ];
    for handler in ok {
        let id = unique("pr");
        let out = ctr_raw(
            &c,
            &run_args(
                &[(PS, handler.clone())],
                &["-d", "--with-ns", &netns],
                &root,
                &id,
                FOREVER,
            ),
        );
        assert!(out.status.success(), "{handler}: {}", text(&out));
        remove(&c, &id);
    }
    let failing = [
        (
            r#"{"httpGet":{"path":"/fail","port":8081,"host":"127.0.0.1"}}"#.to_string(),
            "returned HTTP status 500: broken".to_string(),
        ),
        (
            r#"{"httpGet":{"port":8080,"host":"127.0.0.1","scheme":"HTTPS"}}"#.to_string(),
            "httpGet https://127.0.0.1:8080/ failed: exchange with 127.0.0.1:8080".to_string(),
        ),
        (
            format!(r#"{{"tcpSocket":{{"port":{host_port},"host":"127.0.0.1"}}}}"#),
            format!("tcpSocket 127.0.0.1:{host_port}"),
        ),
        (
            format!(r#"{{"httpGet":{{"port":{host_port},"host":"127.0.0.1"}}}}"#),
            format!("httpGet http://127.0.0.1:{host_port}/"),
        ),
    ];
    for (handler, expect) in failing {
        let id = unique("pr");
        let out = ctr_raw(
            &c,
            &run_args(
                &[(PS, handler.clone())],
                &["-d", "--with-ns", &netns],
                &root,
                &id,
                FOREVER,
            ),
        );
        assert!(!out.status.success(), "{handler}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("postStart hook failed: "), "{err}");
        assert!(err.contains(&expect), "expected {expect:?} in {err}");
        assert_stopped_and_remove(&c, &id);
    }
    remove(&c, &srv);
    drop(host);
    c.assert_clean();
}

#[test]
fn hook_runs_with_the_containers_user_caps_no_new_privs_seccomp_and_cgroup() {
    let c = Containerd::start();
    let (dir, root) = rootfs();
    let id = unique("sec");
    // A file only the host has: the hook must not see it.
    let marker = dir.path().join("host-only-marker");
    fs::write(&marker, "host").expect("marker");
    let fields = "'^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):'";
    let hook = format!(
        "grep -E {fields} /proc/self/status > /tmp/hook.status; \
         grep -E {fields} /proc/1/status > /tmp/init.status; \
         cat /proc/self/cgroup > /tmp/hook.cg; cat /proc/1/cgroup > /tmp/init.cg; \
         if test -e {m}; then echo visible; else echo hidden; fi > /tmp/host",
        m = marker.display()
    );
    let caps = serde_json::json!(["CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let mut spec = lifecycle_testsupport::default_spec(FOREVER, &format!("/{}/{id}", c.namespace));
    spec["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
    spec["process"]["capabilities"] = serde_json::json!({
        "bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps,
        "ambient": caps
    });
    spec["process"]["noNewPrivileges"] = true.into();
    spec["linux"]["seccomp"] = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mknod", "mknodat"], "action": "SCMP_ACT_ERRNO"}]
    });
    spec["root"] = serde_json::json!({"path": path_str(&root), "readonly": false});
    spec["annotations"] = serde_json::json!({ PS: exec_handler(&hook) });
    let spec_path = dir.path().join("spec.json");
    fs::write(&spec_path, serde_json::to_vec(&spec).expect("spec")).expect("write spec");
    let out = c.ctr_raw(&[
        "run",
        "--runtime",
        RUNTIME,
        "-d",
        "--config",
        path_str(&spec_path),
        &id,
    ]);
    assert!(out.status.success(), "{}\n{}", text(&out), c.log());
    let hook_status = read(&root, "tmp/hook.status");
    assert!(
        hook_status.contains("Uid:\t1000\t1000\t1000\t1000"),
        "{hook_status}"
    );
    assert!(hook_status.contains("NoNewPrivs:\t1"), "{hook_status}");
    assert!(hook_status.contains("Seccomp:\t2"), "{hook_status}");
    assert!(
        hook_status.contains("CapEff:\t0000000000000420"),
        "{hook_status}"
    );
    assert_eq!(hook_status, read(&root, "tmp/init.status"));
    assert_eq!(read(&root, "tmp/hook.cg"), read(&root, "tmp/init.cg"));
    assert_eq!(read(&root, "tmp/host"), "hidden\n");
    remove(&c, &id);
    c.assert_clean();
}

#[test]
fn hook_output_container_goes_into_the_containers_streams() {
    let c = Containerd::start();
    let (_d, root) = rootfs();
    let id = unique("out");
    let annotations = [
        (PS, exec_handler("echo from-hook; echo err-hook >&2")),
        ("lifecycle.shim/hook-output", "container".into()),
    ];
    let out = ctr_raw(
        &c,
        &run_args(
            &annotations,
            &["--rm"],
            &root,
            &id,
            &["/bin/sh", "-c", "sleep 0.5; echo main"],
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("[postStart] from-hook\n"), "{}", text(&out));
    assert!(stdout.contains("main\n"), "{}", text(&out));
    assert!(stderr.contains("[postStart] err-hook\n"), "{}", text(&out));
    // Without the setting, the output stays in the shim's log.
    let id = unique("out");
    let out = ctr_raw(
        &c,
        &run_args(
            &[(PS, exec_handler("echo quiet-hook"))],
            &["--rm"],
            &root,
            &id,
            &["/bin/sh", "-c", "sleep 0.5; echo main"],
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("quiet-hook"));
    assert!(c.log().contains("quiet-hook"), "shim log has the output");
    c.assert_clean();
}
