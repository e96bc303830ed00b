//! One test per spec item, observed from inside the container. Included by containers.rs.

use serde_json::json;

use crate::common::*;

fn status_line(status: &str, key: &str) -> String {
    status
        .lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .map(|l| l[key.len() + 1..].trim().to_owned())
        .unwrap_or_else(|| panic!("{key} not in {status}"))
}

/// Mount points and options from mountinfo text: (mount point, per-mount options, fstype).
fn mounts(mountinfo: &str) -> Vec<(String, String, String)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            Some((
                f.get(4)?.to_string(),
                f.get(5)?.to_string(),
                post.split(' ').next()?.to_string(),
            ))
        })
        .collect()
}

fn find<'a>(m: &'a [(String, String, String)], point: &str) -> &'a (String, String, String) {
    m.iter()
        .rev()
        .find(|x| x.0 == point)
        .unwrap_or_else(|| panic!("{point} not mounted: {m:?}"))
}

pub fn default_mounts_as_runc() {
    let o = sh("cat /proc/self/mountinfo", |_| {});
    assert_eq!(o.status, 0);
    let m = mounts(&o.stdout);
    assert_eq!(
        find(&m, "/").1.split(',').next(),
        Some("ro"),
        "root.readonly"
    );
    assert_eq!(find(&m, "/proc").2, "proc");
    let dev = find(&m, "/dev");
    assert_eq!(dev.2, "tmpfs");
    assert!(dev.1.contains("nosuid"), "{dev:?}");
    assert_eq!(find(&m, "/dev/pts").2, "devpts");
    let shm = find(&m, "/dev/shm");
    assert!(
        shm.1.contains("noexec") && shm.1.contains("nodev"),
        "{shm:?}"
    );
    assert_eq!(find(&m, "/dev/mqueue").2, "mqueue");
    let sys = find(&m, "/sys");
    assert_eq!(sys.2, "sysfs");
    assert!(sys.1.starts_with("ro"), "{sys:?}");
    let cg = find(&m, "/sys/fs/cgroup");
    assert!(cg.1.starts_with("ro"), "{cg:?}");
    let mem = find(&m, "/sys/fs/cgroup/memory");
    assert!(mem.1.starts_with("ro"), "{mem:?}");
    // Only the container's mounts: nothing from the host's tree below /.
    assert!(
        !m.iter()
            .any(|x| x.0.starts_with("/work") || x.0.starts_with("/tmp/lc-bundle")),
        "{m:?}"
    );
}

pub fn bind_mounts_with_flags_and_propagation() {
    let host = tempfile::tempdir().expect("tempdir");
    std::fs::write(host.path().join("data"), "from-host\n").expect("write");
    let file = host.path().join("data");
    let o = sh(
        "cat /mnt/ro/data; (echo x > /mnt/ro/new) 2>/dev/null && echo WROTE-RO; echo y > /mnt/rw/new && echo wrote-rw; cat /etc/one; cat /proc/self/mountinfo",
        |s| {
            let mounts = s["mounts"].as_array_mut().expect("mounts");
            mounts.push(json!({"destination": "/mnt/ro", "type": "bind", "source": host.path(), "options": ["rbind", "ro", "nosuid", "nodev", "rprivate"]}));
            mounts.push(json!({"destination": "/mnt/rw", "type": "none", "source": host.path(), "options": ["bind", "rw", "noexec"]}));
            mounts.push(json!({"destination": "/etc/one", "source": file, "options": ["bind", "ro"]}));
            mounts.push(json!({"destination": "/mnt/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["noexec", "size=1m", "mode=700"]}));
        },
    );
    assert_eq!(o.status, 0, "{}", o.stderr);
    assert!(o.stdout.starts_with("from-host"), "{}", o.stdout);
    assert!(!o.stdout.contains("WROTE-RO"));
    assert!(o.stdout.contains("wrote-rw"));
    assert!(
        o.stdout.contains("from-host\nwrote-rw\nfrom-host"),
        "{}",
        o.stdout
    );
    let m = mounts(&o.stdout);
    let ro = find(&m, "/mnt/ro");
    assert!(
        ro.1.starts_with("ro") && ro.1.contains("nosuid") && ro.1.contains("nodev"),
        "{ro:?}"
    );
    let rw = find(&m, "/mnt/rw");
    assert!(rw.1.starts_with("rw") && rw.1.contains("noexec"), "{rw:?}");
    let t = find(&m, "/mnt/tmp");
    assert!(t.2 == "tmpfs" && t.1.contains("noexec"), "{t:?}");
    assert_eq!(
        std::fs::read_to_string(host.path().join("new")).expect("written through rw bind"),
        "y\n"
    );
}

pub fn bad_mount_fails_create_by_name() {
    let err = sh_err("true", |s| {
        s["mounts"].as_array_mut().expect("mounts").push(json!({"destination": "/mnt/x", "type": "bind", "source": "/does/not/exist", "options": ["bind"]}));
    });
    assert!(
        err.contains("mounts[7] (/mnt/x)") && err.contains("/does/not/exist"),
        "{err}"
    );
    let err = sh_err("true", |s| {
        s["mounts"].as_array_mut().expect("mounts").push(json!({"destination": "/mnt/x", "type": "bind", "source": "/tmp", "options": ["bind", "idmap"]}));
    });
    assert!(
        err.contains("mounts[7]") && err.contains("idmap") && err.contains("not supported"),
        "{err}"
    );
}

pub fn dev_default_and_spec_devices() {
    let o = sh(
        "for d in null zero full random urandom tty mydev; do stat -c '%n %F %t:%T %a %u' /dev/$d; done; for l in fd stdin ptmx; do readlink /dev/$l; done; echo > /dev/null && echo null-ok",
        |s| {
            s["linux"]["devices"] = json!([{"path": "/dev/mydev", "type": "c", "major": 1, "minor": 3, "fileMode": 384, "uid": 1000, "gid": 1000}]);
        },
    );
    assert_eq!(o.status, 0, "{}", o.stderr);
    for want in [
        "/dev/null character special file 1:3 666 0",
        "/dev/zero character special file 1:5 666 0",
        "/dev/full character special file 1:7 666 0",
        "/dev/random character special file 1:8 666 0",
        "/dev/urandom character special file 1:9 666 0",
        "/dev/tty character special file 5:0 666 0",
        "/dev/mydev character special file 1:3 600 1000",
        "/proc/self/fd\n/proc/self/fd/0\npts/ptmx",
        "null-ok",
    ] {
        assert!(o.stdout.contains(want), "missing {want:?} in {}", o.stdout);
    }
}

pub fn devices_cgroup_denies_unlisted() {
    // /dev/kmsg (c 1:11) is neither a default nor a spec device: the cgroup denies it even to
    // root with a hand-made node. Opened write-only, which needs no CAP_SYSLOG.
    let script = "mknod /tmp/kmsg c 1 11 && ((echo lifecycle-runtime-test > /tmp/kmsg) 2>/dev/null && echo opened || echo denied)";
    let with_mknod = |s: &mut serde_json::Value| {
        s["root"]["readonly"] = json!(false);
        for set in ["bounding", "effective", "permitted"] {
            s["process"]["capabilities"][set]
                .as_array_mut()
                .expect("caps")
                .push(json!("CAP_MKNOD"));
        }
    };
    let o = sh(script, with_mknod);
    assert_eq!(o.stdout.trim(), "denied", "stderr {}", o.stderr);
    // Control: without device rules the same open succeeds.
    let o = sh(script, |s| {
        with_mknod(s);
        s["linux"]["resources"]["devices"] = json!([]);
    });
    assert_eq!(o.stdout.trim(), "opened", "stderr {}", o.stderr);
}

pub fn masked_and_readonly_paths() {
    let o = sh(
        "wc -c < /proc/keys; wc -c < /proc/timer_list; ls /sys/firmware /proc/acpi | wc -l; (echo 1 > /proc/sys/kernel/ns_last_pid) 2>&1; touch /newfile 2>&1; grep -c -E ' /proc/(bus|fs|irq|sys) ro,' /proc/self/mountinfo",
        |_| {},
    );
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines[0].trim(), "0", "/proc/keys masked: {}", o.stdout);
    assert_eq!(
        lines[1].trim(),
        "0",
        "/proc/timer_list masked: {}",
        o.stdout
    );
    assert!(
        lines[2].trim().parse::<u32>().is_ok_and(|n| n <= 3),
        "/sys/firmware, /proc/acpi masked: {}",
        o.stdout
    );
    assert_eq!(
        o.stdout.matches("Read-only file system").count(),
        2,
        "{}",
        o.stdout
    );
    assert_eq!(
        lines.last().map(|l| l.trim()),
        Some("4"),
        "read-only /proc paths: {}",
        o.stdout
    );
}

pub fn sysctls_hostname_domainname() {
    let o = sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni; hostname; cat /proc/sys/kernel/domainname", |s| {
        s["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"});
        s["hostname"] = json!("box-1");
        s["domainname"] = json!("example.test");
    });
    assert_eq!(o.stdout, "1\n1234\nbox-1\nexample.test\n");
    let err = sh_err("true", |s| {
        s["linux"]["sysctl"] = json!({"vm.swappiness": "10"})
    });
    assert!(err.contains("linux.sysctl \"vm.swappiness\""), "{err}");
}

pub fn rlimits_lowered() {
    let o = sh("ulimit -n; ulimit -Hn; ulimit -c", |s| {
        s["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 900}, {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]);
    });
    assert_eq!(o.stdout, "512\n900\n0\n");
}

pub fn capabilities_and_no_new_privs() {
    let o = sh("cat /proc/self/status", |_| {});
    // CAP_KILL (5), CAP_NET_BIND_SERVICE (10), CAP_AUDIT_WRITE (29), as runc gives them.
    for (k, v) in [
        ("CapInh", "0000000000000000"),
        ("CapPrm", "0000000020000420"),
        ("CapEff", "0000000020000420"),
        ("CapBnd", "0000000020000420"),
        ("CapAmb", "0000000000000000"),
        ("NoNewPrivs", "1"),
    ] {
        assert_eq!(status_line(&o.stdout, k), v, "{k}");
    }
    let o = sh("cat /proc/self/status", |s| {
        s["process"]["noNewPrivileges"] = json!(false);
        let caps = json!(["CAP_CHOWN", "CAP_NET_RAW"]);
        s["process"]["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps, "ambient": ["CAP_NET_RAW"]});
    });
    // CAP_CHOWN (0), CAP_NET_RAW (13)
    for (k, v) in [
        ("CapInh", "0000000000002001"),
        ("CapPrm", "0000000000002001"),
        ("CapEff", "0000000000002001"),
        ("CapBnd", "0000000000002001"),
        ("CapAmb", "0000000000002000"),
        ("NoNewPrivs", "0"),
    ] {
        assert_eq!(status_line(&o.stdout, k), v, "{k}");
    }
    let err = sh_err("true", |s| {
        s["process"]["capabilities"]["bounding"] = json!(["CAP_NOT_A_CAP"])
    });
    assert!(err.contains("CAP_NOT_A_CAP"), "{err}");
}

pub fn seccomp_filter() {
    let o = sh(
        "grep Seccomp: /proc/self/status; mkdir /tmp/x 2>&1; echo after",
        |s| {
            s["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [
                    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                    {"names": ["not_a_syscall_in_libseccomp"], "action": "SCMP_ACT_ERRNO"}
                ]
            });
        },
    );
    assert!(o.stdout.contains("Seccomp:\t2"), "{}", o.stdout);
    assert!(o.stdout.contains("Operation not permitted"), "{}", o.stdout);
    assert!(o.stdout.contains("after"));
    // Without no_new_privs the filter is loaded before the user and capability changes (it
    // needs CAP_SYS_ADMIN then), so it applies to them too: here it refuses setresuid with
    // EPERM, and the container does not start.
    let err = sh_err("true", |s| {
        s["process"]["noNewPrivileges"] = json!(false);
        s["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        s["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["setresuid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
    });
    assert!(
        err.contains("setresuid 1000") && err.contains("not permitted"),
        "{err}"
    );
    let o = sh(
        "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; mkdir /tmp/y 2>&1",
        |s| {
            s["process"]["noNewPrivileges"] = json!(false);
            s["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
            });
        },
    );
    assert!(
        o.stdout.contains("Seccomp:\t2") && o.stdout.contains("NoNewPrivs:\t0"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("Operation not permitted"), "{}", o.stdout);
    // A profile older than close_range (runtime-tools' default denies it), without
    // no_new_privs, so loaded before the fd cleanup: the container still starts (the runtime
    // marks fds close-on-exec before it loads the filter), and no fd above 2 reaches it.
    let o = sh("ls /proc/self/fd; echo started", |s| {
        s["process"]["noNewPrivileges"] = json!(false);
        s["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["close_range"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
    });
    assert!(o.stdout.contains("started"), "{}", o.stdout);
    let fds: Vec<&str> = o
        .stdout
        .lines()
        .filter(|l| l.parse::<u32>().is_ok())
        .collect();
    assert!(
        fds.iter().all(|fd| ["0", "1", "2", "3"].contains(fd)),
        "only stdio and ls's own directory fd expected: {fds:?}"
    );
    let err = sh_err(
        "true",
        |s| {
            s["linux"]["seccomp"] =
                json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"})
        },
    );
    assert!(
        err.contains("linux.seccomp.listenerPath is not supported"),
        "{err}"
    );
}

pub fn user_groups_umask_env_cwd() {
    let o = sh(
        "grep -E '^(Uid|Gid|Groups):' /proc/self/status; umask; pwd; echo $FOO",
        |s| {
            s["process"]["user"] =
                json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 20], "umask": 63});
            s["process"]["cwd"] = json!("/home/user");
            s["process"]["env"]
                .as_array_mut()
                .expect("env")
                .push(json!("FOO=bar baz"));
        },
    );
    assert_eq!(o.status, 0, "{}", o.stderr);
    assert!(
        o.stdout.contains("Uid:\t1000\t1000\t1000\t1000"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("Gid:\t1000\t1000\t1000\t1000"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("Groups:\t10 20"), "{}", o.stdout);
    assert!(
        o.stdout.contains("0077\n/home/user\nbar baz\n"),
        "{}",
        o.stdout
    );
}

pub fn no_host_fds_and_pid_namespace() {
    let o = sh(
        "ls /proc/self/fd; echo pid=$$; readlink /proc/self/cwd",
        |_| {},
    );
    // 0-2 and the fd ls uses to read the directory.
    let fds: Vec<&str> = o
        .stdout
        .lines()
        .take_while(|l| !l.starts_with("pid="))
        .collect();
    assert_eq!(fds, vec!["0", "1", "2", "3"], "{}", o.stdout);
    assert!(o.stdout.contains("pid=1\n/\n"), "{}", o.stdout);
}

type Edit = Box<dyn Fn(&mut serde_json::Value)>;

pub fn unimplemented_fields_fail_by_name() {
    let cases: Vec<(&str, Edit)> = vec![
        (
            "linux.intelRdt is not supported",
            Box::new(|s| s["linux"]["intelRdt"] = json!({"closID": "x"})),
        ),
        (
            "linux.namespaces[type=time] is not supported",
            Box::new(|s| {
                s["linux"]["namespaces"]
                    .as_array_mut()
                    .expect("ns")
                    .push(json!({"type": "time"}))
            }),
        ),
        (
            "process.scheduler is not supported",
            Box::new(|s| s["process"]["scheduler"] = json!({"policy": "SCHED_OTHER"})),
        ),
        (
            "process.ioPriority is not supported",
            Box::new(|s| {
                s["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0})
            }),
        ),
        (
            "linux.personality is not supported",
            Box::new(|s| s["linux"]["personality"] = json!({"domain": "LINUX"})),
        ),
        (
            "linux.cgroupsPath \"a.slice:b:c\"",
            Box::new(|s| s["linux"]["cgroupsPath"] = json!("a.slice:b:c")),
        ),
        (
            "linux.resources.rdma is not supported",
            Box::new(|s| s["linux"]["resources"]["rdma"] = json!({"mlx5_1": {"hcaHandles": 3}})),
        ),
        (
            "linux.resources.unified",
            Box::new(|s| s["linux"]["resources"]["unified"] = json!({"memory.high": "1000000"})),
        ),
        (
            "linux.resources.hugepageLimits (no cgroup v1 hugetlb controller on this host)",
            Box::new(|s| {
                s["linux"]["resources"]["hugepageLimits"] =
                    json!([{"pageSize": "2MB", "limit": 1048576}])
            }),
        ),
        (
            "linux.resources.blockIO.weight (no /sys/fs/cgroup/blkio/",
            Box::new(|s| s["linux"]["resources"]["blockIO"] = json!({"weight": 500})),
        ),
    ];
    for (want, edit) in cases {
        let err = sh_err("true", edit);
        assert!(err.contains(want), "want {want:?} in {err:?}");
    }
}

pub fn bad_process_values_fail_by_name() {
    let err = sh_err("true", |s| {
        s["process"]["env"] = json!(["PATH=/bin", "NOVALUE"])
    });
    assert!(
        err.contains("process.env[1] \"NOVALUE\" is not KEY=VALUE"),
        "{err}"
    );
    let err = sh_err("true", |s| {
        s["process"]["args"] = json!(["/bin/sh", "a\u{0}b"])
    });
    assert!(
        err.contains("process.args[1]") && err.contains("NUL"),
        "{err}"
    );
    let err = sh_err("true", |s| s["process"]["cwd"] = json!("relative"));
    assert!(
        err.contains("process.cwd \"relative\" must be an absolute path"),
        "{err}"
    );
    let err = sh_err("true", |s| {
        s["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}])
    });
    assert!(err.contains("soft 10 is above hard 5"), "{err}");
}

pub fn missing_rootfs_fails_by_name() {
    let err = sh_err("true", |s| s["root"]["path"] = json!("no-such-rootfs"));
    assert!(
        err.contains("root.path")
            && err.contains("no-such-rootfs")
            && err.contains("does not exist"),
        "{err}"
    );
}

/// runc 1.1.5 on a host without AppArmor/SELinux fails these too (checked by hand on the CI
/// host; see docs/runtime.md): a confinement setting is never dropped silently.
pub fn lsm_settings_fail_without_the_lsm() {
    assert!(
        !std::path::Path::new("/sys/fs/selinux/enforce").exists(),
        "this test expects a host without SELinux"
    );
    let err = sh_err("true", |s| {
        s["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0")
    });
    assert!(
        err.contains("process.selinuxLabel is set but SELinux is not enabled"),
        "{err}"
    );
    let err = sh_err("true", |s| {
        s["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0")
    });
    assert!(
        err.contains("linux.mountLabel is set but SELinux is not enabled"),
        "{err}"
    );
    let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.starts_with('Y'));
    assert!(!apparmor, "this test expects a host without AppArmor");
    let err = sh_err("true", |s| {
        s["process"]["apparmorProfile"] = json!("docker-default")
    });
    assert!(
        err.contains("process.apparmorProfile is set but AppArmor is not enabled"),
        "{err}"
    );
}

/// An fd the caller leaked (no O_CLOEXEC) must not be held by the container init while it
/// waits for start, nor reach the container.
pub fn leaked_fds_do_not_reach_the_container() {
    let mut fds = [0; 2];
    // SAFETY: plain pipe(2), without O_CLOEXEC on purpose.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let fx = Fixture::new(&["/bin/sleep", "1000"]);
    let c = fx
        .create(lifecycle_runtime::Stdio::default())
        .expect("create")
        .container;
    // SAFETY: closing our write end; if the held init kept a copy, the read would block.
    unsafe { libc::close(fds[1]) };
    let mut pfd = libc::pollfd {
        fd: fds[0],
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, 2000) };
    assert_eq!(
        n, 1,
        "the read end must see EOF at once: the held init holds the leaked write end"
    );
    // SAFETY: closing our read end.
    unsafe { libc::close(fds[0]) };
    c.delete().expect("delete");
    fx.assert_clean();
}

pub fn cgroup_namespace() {
    let o = sh(
        "cat /proc/self/cgroup; readlink /proc/self/ns/cgroup",
        |s| {
            s["linux"]["namespaces"]
                .as_array_mut()
                .expect("ns")
                .push(json!({"type": "cgroup"}));
        },
    );
    assert_eq!(o.status, 0, "{}", o.stderr);
    // Inside its own cgroup namespace the container's cgroup is the root of every hierarchy.
    for l in o.stdout.lines().filter(|l| !l.starts_with("cgroup:")) {
        assert!(l.ends_with(":/"), "{l} in {}", o.stdout);
    }
    let host = std::fs::read_link("/proc/self/ns/cgroup")
        .expect("ns")
        .display()
        .to_string();
    assert!(!o.stdout.contains(&host), "{}", o.stdout);
}

/// CVE-2024-21626: a cwd through /proc/self/fd/N must never land on a host directory. Every
/// fd the init holds at that point is either stdio, our channel (a socket) or nothing, so each
/// attempt fails at start or stays inside the container.
pub fn cwd_through_proc_fd_never_reaches_the_host() {
    for n in 3..9 {
        let mut fx = Fixture::new(&["/bin/sh", "-c", "pwd; ls /"]);
        fx.bundle.spec["process"]["cwd"] = json!(format!("/proc/self/fd/{n}"));
        match try_run(&fx) {
            Err(e) => {
                let text = e.to_string();
                assert!(text.contains("cwd"), "fd {n}: {text}");
            }
            Ok(o) => {
                assert!(!o.stdout.contains("unreachable"), "fd {n}: {}", o.stdout);
                assert!(
                    o.stdout.contains("proc") && !o.stdout.contains("work"),
                    "fd {n}: {}",
                    o.stdout
                );
            }
        }
    }
}
