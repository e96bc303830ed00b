//! The same bundle under runc (the Debian package) and under this runtime: what the container
//! observes must match, except for differences documented in docs/runtime.md.

use std::{
    io::Read,
    process::{Command, Stdio as StdStdio},
    time::Duration,
};

use lifecycle_runtime::reaper;
use lifecycle_testsupport::require_bin;

use crate::common::*;

/// What the container reports about itself: credentials, limits, fds, /dev, mounts.
const OBSERVE: &str = r#"grep -vE '^(Name|State|Tgid|Ngid|Pid|PPid|TracerPid|FDSize|Vm|Rss|Hugetlb|Threads|voluntary|nonvoluntary|SigQ|ShdPnd|SigPnd|NSpid|NStgid|NSpgid|NSsid)' /proc/self/status
cat /proc/self/limits; env | sort; pwd; ls -ln / | awk '{print $1, $3, $4, $NF}'
ls /sys/fs/cgroup; ip -o link 2>/dev/null | awk '{print $2, $3}'
hostname; id; ulimit -n; ulimit -Hn; umask; echo pid=$$; cat /proc/self/oom_score_adj
ls /proc/self/fd | tr '\n' ' '; echo
for f in /dev/* /dev/pts/*; do stat -c '%n %F %t:%T %a %u:%g' "$f"; done
readlink /dev/ptmx /dev/fd
awk '{for(i=1;i<=NF;i++) if($i=="-") print $5, $6, $(i+1), $(i+3)}' /proc/self/mountinfo
ip link 2>/dev/null | grep -o 'lo: <[^>]*>'
sed -E 's#:/lc-test/.*#:/lc-test/ID#' /proc/self/cgroup
"#;

/// Runs `runc --root <root> <args>`; returns (status, stdout, stderr). Waited through the
/// reaper, never through Child::wait (the reaper would race it).
#[allow(clippy::zombie_processes)]
fn runc(root: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let runc = require_bin("runc");
    // A detached container inherits runc's stdio: never a pipe we read to EOF.
    let detached = args.contains(&"-d");
    let pipe_or_null = || {
        if detached {
            StdStdio::null()
        } else {
            StdStdio::piped()
        }
    };
    let sub = reaper::subscribe();
    let mut child = Command::new(runc)
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(StdStdio::null())
        .stdout(pipe_or_null())
        .stderr(pipe_or_null())
        .spawn()
        .expect("spawn runc");
    reaper::notify();
    let out = child.stdout.take();
    let err = child.stderr.take();
    let errs = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut err) = err {
            let _ = err.read_to_string(&mut s);
        }
        s
    });
    let mut stdout = String::new();
    if let Some(mut out) = out {
        let _ = out.read_to_string(&mut stdout);
    }
    let exit = sub
        .wait_for(child.id() as i32, Some(Duration::from_secs(30)))
        .expect("runc exits");
    (exit.status, stdout, errs.join().unwrap_or_default())
}

/// Runs `runc run` on the bundle in the foreground.
fn runc_run(fx: &Fixture) -> (i32, String, String) {
    let root = tempfile::tempdir().expect("runc root");
    let id = format!("{}-runc", fx.id);
    runc(
        root.path(),
        &["run", "--bundle", &fx.bundle.path().to_string_lossy(), &id],
    )
}

/// Lines only one side has, after dropping lines `known` rejects.
///
/// SigIgn is compared separately: runc passes on the signals its own caller ignores (here,
/// whatever the test runner's environment ignores), while this runtime starts the entrypoint
/// with every signal at its default (documented in docs/runtime.md).
fn differences(ours: &str, runc: &str, known: impl Fn(&&str) -> bool) -> Vec<String> {
    let mut diff = Vec::new();
    if !ours.lines().any(|l| l == "SigIgn:\t0000000000000000") {
        diff.push("+ ours:  SigIgn is not all zero".to_owned());
    }
    let known = |l: &&str| known(l) && !l.starts_with("SigIgn:");
    let ours: Vec<&str> = ours.lines().filter(&known).collect();
    let theirs: Vec<&str> = runc.lines().filter(&known).collect();
    for l in &theirs {
        if !ours.contains(l) {
            diff.push(format!("- runc:  {l}"));
        }
    }
    for l in &ours {
        if !theirs.contains(l) {
            diff.push(format!("+ ours:  {l}"));
        }
    }
    diff
}

pub fn same_observations_as_runc() {
    let mut fx = Fixture::new(&["/bin/sh", "-c", OBSERVE]);
    fx.bundle.spec["process"]["user"] =
        serde_json::json!({"uid": 1000, "gid": 1000, "additionalGids": [10]});
    fx.bundle.spec["process"]["oomScoreAdj"] = serde_json::json!(100);
    fx.bundle.spec["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1"});
    // runc gets its own cgroup so the two never share one.
    let mut runc_spec = fx.bundle.spec.clone();
    runc_spec["linux"]["cgroupsPath"] = serde_json::json!(format!("{}-runc", fx.cgroup));
    let ours_spec = fx.bundle.spec.clone();
    fx.bundle.spec = runc_spec;
    fx.bundle.write_spec();
    let (rs, runc_out, runc_err) = runc_run(&fx);
    assert_eq!(rs, 0, "runc failed: {runc_err}");
    fx.bundle.spec = ours_spec;
    let o = run_to_exit(&fx);
    assert_eq!(o.status, 0, "{}", o.stderr);
    // Documented difference (docs/runtime.md): the tmpfs holding the cgroup v1 binds is
    // read-only here when the cgroup mount asks for ro; runc 1.1 leaves that tmpfs writable.
    let known = |l: &&str| !l.starts_with("/sys/fs/cgroup ");
    assert!(
        o.stdout
            .contains("/sys/fs/cgroup ro,nosuid,nodev,noexec,relatime tmpfs ro,mode=755"),
        "{}",
        o.stdout
    );
    assert!(
        runc_out.lines().count() > 40,
        "runc reported too little: {runc_out}"
    );
    let diff = differences(&o.stdout, &runc_out, known);
    assert!(
        diff.is_empty(),
        "observations differ from runc:\n{}",
        diff.join("\n")
    );
}

/// An exec into a running container, under `runc exec` and under [`Container::exec`].
pub fn same_exec_observations_as_runc() {
    let mut fx = Fixture::new(&["/bin/sleep", "1000"]);
    fx.bundle.spec["process"]["user"] =
        serde_json::json!({"uid": 1000, "gid": 1000, "additionalGids": [10]});
    let ours_spec = fx.bundle.spec.clone();
    fx.bundle.spec["linux"]["cgroupsPath"] = serde_json::json!(format!("{}-runc", fx.cgroup));
    fx.bundle.write_spec();
    let root = tempfile::tempdir().expect("runc root");
    let rid = format!("{}-runc", fx.id);
    let bundle = fx.bundle.path().to_string_lossy().into_owned();
    let (st, _, err) = runc(root.path(), &["run", "-d", "--bundle", &bundle, &rid]);
    assert_eq!(st, 0, "runc run -d: {err}");
    let (st, runc_out, err) = runc(
        root.path(),
        &[
            "exec",
            "--user",
            "1000:1000",
            "--additional-gids",
            "10",
            &rid,
            "/bin/sh",
            "-c",
            OBSERVE,
        ],
    );
    let _ = runc(root.path(), &["delete", "-f", &rid]);
    assert_eq!(st, 0, "runc exec: {err}");

    fx.bundle.spec = ours_spec;
    let sub = reaper::subscribe();
    let c = fx
        .create(lifecycle_runtime::Stdio::default())
        .expect("create")
        .container;
    c.start().expect("start");
    let mut p = c.spec().process().clone().expect("process");
    p.set_args(Some(vec!["/bin/sh".into(), "-c".into(), OBSERVE.into()]));
    let (r, w) = pipe();
    let spawned = c
        .exec(
            &p,
            lifecycle_runtime::Stdio {
                stdin: None,
                stdout: Some(w),
                stderr: None,
            },
        )
        .expect("exec");
    let out = drain(r);
    let exit = sub
        .wait_for(spawned.pid, Some(Duration::from_secs(10)))
        .expect("exec exits");
    let ours = out.join().unwrap_or_default();
    c.delete().expect("delete");
    fx.assert_clean();
    assert_eq!(exit.status, 0, "{ours}");
    // The exec's pid differs by construction; the cgroup tmpfs difference is documented.
    let known = |l: &&str| !l.starts_with("/sys/fs/cgroup ") && !l.starts_with("pid=");
    let diff = differences(&ours, &runc_out, known);
    assert!(
        diff.is_empty(),
        "exec observations differ from runc:\n{}",
        diff.join("\n")
    );
}

/// The same comparison in a user namespace (maps written by the parent, /dev nodes bound from
/// the host, locked mount flags kept).
pub fn same_observations_in_a_user_namespace_as_runc() {
    use std::os::unix::fs::PermissionsExt;
    let mut fx = Fixture::new(&["/bin/sh", "-c", OBSERVE]);
    std::fs::set_permissions(fx.bundle.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod bundle");
    fx.bundle.spec["linux"]["namespaces"]
        .as_array_mut()
        .expect("ns")
        .push(serde_json::json!({"type": "user"}));
    fx.bundle.spec["linux"]["uidMappings"] =
        serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    fx.bundle.spec["linux"]["gidMappings"] =
        serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    let ours_spec = fx.bundle.spec.clone();
    fx.bundle.spec["linux"]["cgroupsPath"] = serde_json::json!(format!("{}-runc", fx.cgroup));
    fx.bundle.write_spec();
    let (rs, runc_out, runc_err) = runc_run(&fx);
    assert_eq!(rs, 0, "runc failed: {runc_err}");
    fx.bundle.spec = ours_spec;
    let o = run_to_exit(&fx);
    assert_eq!(o.status, 0, "{}", o.stderr);
    let known = |l: &&str| !l.starts_with("/sys/fs/cgroup ");
    let diff = differences(&o.stdout, &runc_out, known);
    assert!(
        diff.is_empty(),
        "observations in a user namespace differ from runc:\n{}",
        diff.join("\n")
    );
}
