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

/// Runs `runc run` on the bundle in the foreground; returns (status, stdout).
// The child is reaped by the process-wide reaper, never by Child::wait.
#[allow(clippy::zombie_processes)]
fn runc_run(fx: &Fixture) -> (i32, String, String) {
    let runc = require_bin("runc");
    let root = tempfile::tempdir().expect("runc root");
    let sub = reaper::subscribe();
    let mut child = Command::new(runc)
        .arg("--root")
        .arg(root.path())
        .args(["run", "--bundle"])
        .arg(fx.bundle.path())
        .arg(format!("{}-runc", fx.id))
        .stdin(StdStdio::null())
        .stdout(StdStdio::piped())
        .stderr(StdStdio::piped())
        .spawn()
        .expect("spawn runc");
    reaper::notify();
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let errs = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    let _ = out.read_to_string(&mut stdout);
    // Waited through the reaper, never through Child::wait (the reaper would race it).
    let exit = sub
        .wait_for(child.id() as i32, Some(Duration::from_secs(30)))
        .expect("runc exits");
    (exit.status, stdout, errs.join().unwrap_or_default())
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
    let ours: Vec<&str> = o.stdout.lines().filter(known).collect();
    let theirs: Vec<&str> = runc_out.lines().filter(known).collect();
    assert!(
        o.stdout
            .contains("/sys/fs/cgroup ro,nosuid,nodev,noexec,relatime tmpfs ro,mode=755"),
        "{}",
        o.stdout
    );
    assert!(theirs.len() > 40, "runc reported too little: {runc_out}");
    let mut diff = Vec::new();
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
    assert!(
        diff.is_empty(),
        "observations differ from runc:\n{}",
        diff.join("\n")
    );
}
