//! Test support shared by the workspace's tests: preconditions that fail loudly, busybox root
//! filesystems, OCI bundles with a runc-like default spec, and leak checks.
//!
//! Privileged tests never skip: when a precondition is missing they panic with a message that
//! names what is missing.

use std::{
    fs,
    os::unix::fs::{symlink, PermissionsExt},
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::{json, Value};

pub mod containerd;
#[cfg(feature = "cri")]
pub mod cri;

/// Where Debian's busybox-static installs the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Fails the test unless it runs as root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (it creates namespaces, mounts and cgroups); run the test suite as root"
    );
}

/// Fails the test unless `bin` is found (absolute path, or on PATH).
pub fn require_bin(bin: &str) -> PathBuf {
    if bin.starts_with('/') {
        assert!(
            Path::new(bin).exists(),
            "{bin} is missing: run scripts/setup (apt-get install)"
        );
        return PathBuf::from(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(bin);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("{bin} is not on PATH: run scripts/setup (apt-get install)");
}

/// Builds a busybox root filesystem in `root`: the static busybox, a symlink per applet,
/// the usual top-level directories, and /etc/passwd and /etc/group with root, a user 1000
/// and nobody.
pub fn busybox_rootfs(root: &Path) {
    let busybox = require_bin(BUSYBOX);
    for dir in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "home/user",
        "var/run",
        "run",
    ] {
        fs::create_dir_all(root.join(dir)).expect("create rootfs dir");
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod /tmp");
    fs::copy(&busybox, root.join("bin/busybox")).expect("copy busybox");
    for applet in busybox_applets() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "bin/busybox" {
            continue;
        }
        let link = root.join(applet);
        if link.exists() || link.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).expect("create applet dir");
        }
        symlink("/bin/busybox", &link).expect("applet symlink");
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .expect("write passwd");
    fs::write(
        root.join("etc/group"),
        "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n",
    )
    .expect("write group");
    fs::write(
        root.join("etc/hosts"),
        "127.0.0.1 localhost\n::1 localhost\n",
    )
    .expect("write hosts");
}

/// The applets of the host's busybox (`busybox --list-full`), computed once per process.
///
/// Safe beside a process-wide child reaper (e.g. `lifecycle_runtime::reaper`): the list is
/// read from the pipe to its end, and who reaps `busybox` afterwards does not matter.
pub fn busybox_applets() -> &'static [String] {
    static APPLETS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    APPLETS.get_or_init(|| {
        let busybox = require_bin(BUSYBOX);
        let mut child = Command::new(&busybox)
            .arg("--list-full")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("busybox --list-full");
        let mut list = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout pipe"), &mut list)
            .expect("read busybox --list-full");
        // A reaper may have taken the exit status first (ECHILD): the list is what matters.
        if let Ok(status) = child.wait() {
            assert!(status.success(), "busybox --list-full failed: {status}");
        }
        assert!(
            list.contains("bin/sh"),
            "busybox --list-full listed no sh: {list:?}"
        );
        list.lines().map(str::to_owned).collect()
    })
}

/// cgroup directories (under every mounted hierarchy in /sys/fs/cgroup, v1 and v2) whose path
/// relative to the hierarchy root is `cgroup_path`, and that still exist.
pub fn cgroup_dirs_left(cgroup_path: &str) -> Vec<PathBuf> {
    let rel = cgroup_path.trim_start_matches('/');
    let mut left = Vec::new();
    let Ok(entries) = fs::read_dir("/sys/fs/cgroup") else {
        return left;
    };
    for e in entries.flatten() {
        let dir = e.path().join(rel);
        if dir.is_dir() {
            left.push(dir);
        }
    }
    if Path::new("/sys/fs/cgroup")
        .join(rel)
        .join("cgroup.procs")
        .exists()
    {
        left.push(Path::new("/sys/fs/cgroup").join(rel));
    }
    left
}

/// The default spec `runc spec` writes (`lifecycle_runtime::default_spec`), with `args` as the
/// process, no terminal, and `cgroups_path` as the container's cgroup. Tests edit the returned
/// JSON.
pub fn default_spec(args: &[&str], cgroups_path: &str) -> Value {
    let mut spec = lifecycle_runtime::default_spec();
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = json!(args);
    spec["linux"]["cgroupsPath"] = cgroups_path.into();
    spec
}

/// An OCI bundle in a temporary directory: `rootfs/` (busybox) and `config.json`.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub spec: Value,
}

impl Bundle {
    /// A busybox bundle running `args`, in the cgroup `cgroups_path`.
    pub fn new(args: &[&str], cgroups_path: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("lc-bundle-")
            .tempdir()
            .expect("bundle tempdir");
        busybox_rootfs(&dir.path().join("rootfs"));
        let bundle = Bundle {
            dir,
            spec: default_spec(args, cgroups_path),
        };
        bundle.write_spec();
        bundle
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Writes `self.spec` to `config.json` (call after editing `spec`).
    pub fn write_spec(&self) {
        let text = serde_json::to_vec_pretty(&self.spec).expect("serialize spec");
        fs::write(self.dir.path().join("config.json"), text).expect("write config.json");
    }
}

/// A unique name for a test object (container id, cgroup, namespace), so that tests running in
/// parallel never share one.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Mount points (field 5 of /proc/self/mountinfo) that contain `needle`.
pub fn mounts_containing(needle: &str) -> Vec<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Pids of live processes whose command line contains `needle`.
pub fn processes_matching(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    let me = std::process::id() as i32;
    for entry in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            pids.push(pid);
        }
    }
    pids
}
