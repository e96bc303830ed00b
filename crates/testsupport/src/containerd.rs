//! A private containerd for tests.
//!
//! Each [`Containerd`] has its own root, state, gRPC and ttrpc sockets under a temporary
//! directory, and runs in its own mount namespace with a tmpfs over `/run/containerd`
//! (containerd 1.6 still puts shim sockets and `ctr` FIFOs there), so nothing it, its shims or
//! their containers mount is visible on the host, and the system containerd is never touched.
//! `ctr` runs inside that mount namespace too (through `nsenter`), so its FIFOs are private.
//!
//! Dropping it stops the daemon and then, by pid, any shim process that still names this
//! daemon's socket on its command line (and their process groups). Tests assert that nothing
//! was left *before* the drop, with [`Containerd::leftovers`].

use std::{
    fs,
    io::Read,
    os::fd::AsRawFd,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{processes_matching, require_bin, require_root};

/// The shim binary's file name, which is how containerd finds the runtime
/// `io.containerd.lifecycle.v1`.
pub const SHIM_NAME: &str = "containerd-shim-lifecycle-v1";
/// The runtime type containerd maps to [`SHIM_NAME`].
pub const RUNTIME: &str = "io.containerd.lifecycle.v1";

/// Where the built shim binary is: `$LIFECYCLE_SHIM_BIN`, else beside the running test binary's
/// `deps/` directory (cargo's `target/<profile>/`), which `cargo test --workspace` fills.
pub fn shim_binary() -> PathBuf {
    workspace_binary("LIFECYCLE_SHIM_BIN", SHIM_NAME)
}

/// The file name (and package) of the workspace's OCI runtime command line, which
/// containerd-shim-runc-v2 runs in place of runc when `ctr run` is given `--runc-binary`.
pub const RUNC_NAME: &str = "lifecycle-runc";

/// Where the built `lifecycle-runc` binary is: `$LIFECYCLE_RUNC_BIN`, else beside the running
/// test binary's `deps/` directory, like [`shim_binary`].
///
/// `LIFECYCLE_RUNC_BIN` is for checking a test by hand against another runc-compatible binary
/// (e.g. `/usr/sbin/runc`); the default is always the workspace's own build.
pub fn runc_binary() -> PathBuf {
    workspace_binary("LIFECYCLE_RUNC_BIN", RUNC_NAME)
}

/// `$env` if set (it must exist), else the binary `name` of package `name` in cargo's
/// `target/<profile>/`, the parent of the running test binary's `deps/`.
fn workspace_binary(env: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{env}={} does not exist", path.display());
        return path;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary is in target/<profile>/deps");
    let bin = profile_dir.join(name);
    assert!(
        bin.is_file(),
        "{} is missing: build it first (`cargo build -p {name}`, which `cargo test --workspace` does) \
         or set {env}",
        bin.display()
    );
    bin
}

/// Options for [`Containerd::start`].
#[derive(Default)]
pub struct Options {
    /// Enable containerd's CRI plugin (off by default: it starts faster and logs less).
    pub cri: bool,
    /// Extra TOML appended to the config (e.g. CRI runtime handlers).
    pub extra_config: String,
    /// The shim binary to put first on containerd's PATH; default [`shim_binary`].
    pub shim: Option<PathBuf>,
    /// Put no lifecycle shim on containerd's PATH (for tests of other runtimes only, such as
    /// runc-v2 with `--runc-binary`, which then do not need it built).
    pub without_lifecycle_shim: bool,
    /// containerd's log level; default `debug` (tests read the log when they fail).
    pub log_level: Option<&'static str>,
    /// Also give the daemon its own network namespace (loopback only, up) and a tmpfs over
    /// `/var/lib` (where CNI keeps its result cache), so pod networks that CNI plugins create
    /// (bridges, veths, IPAM state) never touch the host. Host-network pods then share the
    /// daemon's network namespace.
    pub private_network: bool,
}

/// A running private containerd.
pub struct Containerd {
    /// Temporary directory holding everything of this daemon (removed on drop).
    pub dir: tempfile::TempDir,
    /// The gRPC socket (what `ctr --address` takes).
    pub address: PathBuf,
    /// The containerd namespace tests use (unique per daemon).
    pub namespace: String,
    child: Option<Child>,
    config: PathBuf,
    path_env: String,
    /// The daemon's mount namespace, held open so that a restarted daemon joins it again (its
    /// running shims' sockets and their containers' mounts live there).
    mnt_ns: Option<fs::File>,
    /// With [`Options::private_network`]: the daemon's network namespace, likewise.
    net_ns: Option<fs::File>,
    private_network: bool,
}

impl Containerd {
    /// Starts a daemon with default options.
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Self {
        require_root();
        require_bin("containerd");
        require_bin("ctr");
        require_bin("nsenter");
        require_bin("unshare");
        let dir = tempfile::Builder::new()
            .prefix("lc-containerd-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path();
        let bin = root.join("bin");
        fs::create_dir_all(&bin).expect("mkdir bin");
        if !opts.without_lifecycle_shim {
            let shim = opts.shim.unwrap_or_else(shim_binary);
            symlink(&shim, bin.join(SHIM_NAME)).expect("symlink shim");
        }
        let address = root.join("containerd.sock");
        let disabled = if opts.cri {
            "[]"
        } else {
            "[\"io.containerd.grpc.v1.cri\"]"
        };
        let config = format!(
            "version = 2\nroot = \"{root}/root\"\nstate = \"{root}/state\"\ndisabled_plugins = {disabled}\n\
             [grpc]\n  address = \"{address}\"\n[ttrpc]\n  address = \"{root}/containerd.sock.ttrpc\"\n\
             [debug]\n  level = \"{level}\"\n{extra}\n",
            root = root.display(),
            address = address.display(),
            extra = opts.extra_config,
            level = opts.log_level.unwrap_or("debug"),
        );
        let config_path = root.join("config.toml");
        fs::write(&config_path, config).expect("write config");
        let path_env = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let namespace = crate::unique("lctest");
        let mut daemon = Containerd {
            dir,
            address,
            namespace,
            child: None,
            config: config_path,
            path_env,
            mnt_ns: None,
            net_ns: None,
            private_network: opts.private_network,
        };
        daemon.spawn();
        daemon
    }

    fn spawn(&mut self) {
        fs::create_dir_all("/run/containerd").expect("mkdir /run/containerd");
        let log = fs::File::create(self.dir.path().join("containerd.log")).expect("containerd.log");
        // A private mount namespace with its own /run/containerd: shim sockets, FIFOs and the
        // containers' rootfs mounts stay in it and vanish with it.
        let mut cmd = match &self.mnt_ns {
            // A restart: back into the namespace the running shims are in.
            Some(ns) => {
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!(
                    "--mount=/proc/{}/fd/{}",
                    std::process::id(),
                    ns.as_raw_fd()
                ));
                if let Some(net) = &self.net_ns {
                    cmd.arg(format!(
                        "--net=/proc/{}/fd/{}",
                        std::process::id(),
                        net.as_raw_fd()
                    ));
                }
                cmd.args(["--", "containerd", "--config"]).arg(&self.config);
                cmd
            }
            None => {
                let mut setup = "mount -t tmpfs -o mode=0711 lc-run /run/containerd".to_owned();
                let mut cmd = Command::new("unshare");
                cmd.args(["--mount", "--propagation", "private"]);
                if self.private_network {
                    cmd.arg("--net");
                    setup.push_str(
                        " && ip link set lo up && mount -t tmpfs -o mode=0755 lc-var-lib /var/lib",
                    );
                }
                cmd.args(["--", "sh", "-c"])
                    .arg(format!("{setup} && exec containerd --config \"$0\""))
                    .arg(&self.config);
                cmd
            }
        };
        let child = cmd
            .env("PATH", &self.path_env)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.address.exists() && self.ctr_raw(&["version"]).status.success() {
                if self.private_network && self.net_ns.is_none() {
                    let ns = format!("/proc/{}/ns/net", self.pid());
                    self.net_ns =
                        Some(fs::File::open(&ns).unwrap_or_else(|e| panic!("open {ns}: {e}")));
                }
                if self.mnt_ns.is_none() {
                    let ns = format!("/proc/{}/ns/mnt", self.pid());
                    self.mnt_ns =
                        Some(fs::File::open(&ns).unwrap_or_else(|e| panic!("open {ns}: {e}")));
                }
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "containerd exited at start ({status}); log:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not start in 20 s; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's pid (its mount namespace is where shims and containers live).
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("containerd running").id() as i32
    }

    /// containerd's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// Runs `ctr --address A -n NS args...` inside the daemon's mount namespace.
    pub fn ctr_raw(&self, args: &[&str]) -> Output {
        self.ctr_command(args).output().expect("run ctr")
    }

    /// A `ctr` command (inside the daemon's mount namespace) to customise before running.
    pub fn ctr_command(&self, args: &[&str]) -> Command {
        let pid = self
            .child
            .as_ref()
            .map(|c| c.id())
            .expect("containerd running");
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(pid.to_string())
            .args(["-m", "--", "ctr", "--address"])
            .arg(&self.address)
            .args(["-n", &self.namespace])
            .args(args)
            .env("PATH", &self.path_env)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs ctr and asserts it succeeded; returns stdout.
    pub fn ctr(&self, args: &[&str]) -> String {
        let out = self.ctr_raw(args);
        assert!(
            out.status.success(),
            "ctr {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the daemon (SIGTERM, then SIGKILL after 10 s) and starts it again with the same
    /// config and state; running shims and containers are untouched.
    pub fn restart(&mut self) {
        self.stop_daemon();
        self.spawn();
    }

    fn stop_daemon(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // `unshare ... sh -c 'exec containerd'` leaves containerd as this very pid.
        let pid = child.id() as i32;
        // SAFETY: signalling a child we spawned and have not reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The mount table of the daemon's private mount namespace.
    pub fn mountinfo(&self) -> String {
        fs::read_to_string(format!("/proc/{}/mountinfo", self.pid())).unwrap_or_default()
    }

    /// Shim processes serving this daemon (their command line names its socket).
    pub fn shim_pids(&self) -> Vec<i32> {
        let addr = self.address.display().to_string();
        processes_matching(SHIM_NAME)
            .into_iter()
            .filter(|pid| cmdline(*pid).contains(&addr))
            .collect()
    }

    /// Processes of any containerd shim (ours, runc-v2, ...) serving this daemon.
    pub fn any_shim_pids(&self) -> Vec<i32> {
        let addr = self.address.display().to_string();
        processes_matching("containerd-shim-")
            .into_iter()
            .filter(|pid| cmdline(*pid).contains(&addr))
            .collect()
    }

    /// What this daemon's containers left behind: shim processes (of any runtime), mounts under
    /// its state directory, and cgroups named after its namespace. Empty when everything is
    /// clean.
    /// Waits up to `timeout` for things to settle (shims exit asynchronously after Delete).
    pub fn leftovers(&self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut found = Vec::new();
            for pid in self.any_shim_pids() {
                found.push(format!("shim process {pid}: {}", cmdline(pid)));
            }
            let state = self.dir.path().display().to_string();
            for line in self.mountinfo().lines() {
                if let Some(mountpoint) = line.split(' ').nth(4) {
                    if mountpoint.starts_with(&state) {
                        found.push(format!("mount {mountpoint}"));
                    }
                }
            }
            // Like runc, a runtime removes the container's cgroup, not the `/<namespace>`
            // parent that `ctr` names: only cgroups below it are leaks.
            for parent in cgroups_named(&self.namespace) {
                for child in fs::read_dir(&parent).into_iter().flatten().flatten() {
                    if child.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        found.push(format!("cgroup {}", child.path().display()));
                    }
                }
            }
            if found.is_empty() || Instant::now() >= deadline {
                return found;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asserts that nothing was left behind (see [`Containerd::leftovers`]).
    pub fn assert_clean(&self) {
        let left = self.leftovers(Duration::from_secs(5));
        assert!(
            left.is_empty(),
            "left behind: {left:#?}\ncontainerd log tail:\n{}",
            tail(&self.log(), 4000)
        );
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let shims = self.any_shim_pids();
        self.stop_daemon();
        // Only processes started for this daemon: shims whose command line names its socket,
        // and their process groups (the containers the shims started).
        for pid in shims.into_iter().chain(self.any_shim_pids()) {
            // SAFETY: plain signal delivery to pids we identified as ours.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
            }
        }
        for cgroup in cgroups_named(&self.namespace) {
            remove_cgroup_tree(&cgroup);
        }
    }
}

fn cmdline(pid: i32) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = fs::File::open(format!("/proc/{pid}/cmdline")) {
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).replace('\0', " ")
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Cgroup directories named `name` directly under any hierarchy root (v1 controllers and the
/// unified tree): `ctr` puts containers in `/<namespace>/<id>`.
pub fn cgroups_named(name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/sys/fs/cgroup") else {
        return found;
    };
    for entry in entries.flatten() {
        let candidate = entry.path().join(name);
        if candidate.is_dir() {
            found.push(candidate);
        }
    }
    found
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// Builds an OCI image from busybox-static offline (umoci + skopeo) and returns the path of a
/// docker-archive tarball named `registry.local/<name>:1`, ready for `ctr images import`.
/// `entrypoint`/`cmd` are the image config's; `stop_signal` sets `StopSignal` when given.
pub fn busybox_image(
    dir: &Path,
    name: &str,
    entrypoint: &[&str],
    cmd: &[&str],
    stop_signal: Option<&str>,
) -> PathBuf {
    for bin in ["umoci", "skopeo"] {
        require_bin(bin);
    }
    let layout = dir.join(format!("{name}-oci"));
    let bundle = dir.join(format!("{name}-bundle"));
    let image = format!("{}:{name}", layout.display());
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle));
    crate::busybox_rootfs(&bundle.join("rootfs"));
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle));
    let mut config = Command::new("umoci");
    config.args([
        "config",
        "--image",
        &image,
        "--config.env",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
    ]);
    for arg in entrypoint {
        config.arg(format!("--config.entrypoint={arg}"));
    }
    for arg in cmd {
        config.arg(format!("--config.cmd={arg}"));
    }
    if let Some(signal) = stop_signal {
        config.arg(format!("--config.stopsignal={signal}"));
    }
    run(&mut config);
    let tar = dir.join(format!("{name}.tar"));
    let _ = fs::remove_file(&tar);
    run(Command::new("skopeo")
        .args(["--insecure-policy", "copy"])
        .arg(format!("oci:{image}"))
        .arg(format!(
            "docker-archive:{}:registry.local/{name}:1",
            tar.display()
        )));
    let _ = fs::remove_dir_all(&bundle);
    tar
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
