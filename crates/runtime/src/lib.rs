//! Native OCI runtime: an OCI bundle to a running container and back, runc-style, without a
//! runc binary.
//!
//! # Process model
//!
//! The caller (the shim) is multi-threaded, so it never unshares or joins namespaces itself.
//! Every process that creates or enters a container is a fresh, single-threaded *helper*: the
//! caller's own executable re-executed from a sealed, read-only memfd copy made once per caller
//! process ([`HelperExe`]), the `runc init` pattern. A binary using this library must call
//! [`run_helper_if_requested`] first thing in `main`.
//!
//! Processes this library starts (container init, exec processes) end up as children of the
//! caller (CLONE_PARENT from the helper), so the caller reaps them and gets their exit status.
//! The library itself never waits for a container process: the caller's single [`reaper`] does.
//!
//! # API (stable surface used by the shim and the hooks)
//!
//! - [`Container::create`]: build the container from a bundle; the init is held before the
//!   entrypoint until [`Container::start`].
//! - [`Container::start`]: release the entrypoint (then OCI `poststart` hooks).
//! - [`Container::exec`]: a new process inside the running container (all its namespaces, its
//!   cgroup, user, caps, no_new_privs, seccomp, env, cwd, rlimits, terminal). Lifecycle exec
//!   hooks use this path too.
//! - [`Container::kill`], [`Container::pids`], [`Container::pause`], [`Container::resume`],
//!   [`Container::update`], [`Container::oom_watcher`], [`Container::delete`] (idempotent),
//!   [`Container::load`] (state of a container created by an earlier process, for the shim's
//!   `delete` subcommand).
//!
//! # Reaping
//!
//! Subscribe to the [`reaper`] before anything that spawns (create, exec): every exit is fanned
//! out to every subscriber, including the library's own helpers and hook processes, so ignore
//! pids you do not know. Once the reaper runs, do not use `std::process::Command::wait` or
//! `output` in the same process; wait through a subscription and call [`reaper::notify`] after
//! spawning. See docs/runtime.md.

mod cgroups;
mod channel;
mod container;
mod error;
mod exe;
mod helper;
mod hooks;
mod init;
mod lsm;
mod namespaces;
mod process;
pub mod reaper;
mod rootfs;
mod seccomp;
mod signal;
mod state;
mod validate;

pub use cgroups::warm::{warm_migration, Warmup};
pub use container::{
    Container, CreateOptions, Created, Hold, OomEvent, OomWatcher, Spawned, Status, Stdio,
};
pub use error::Error;
pub use exe::{HelperExe, Sealing};
pub use signal::Signal;

/// The spec checks `Container::create` makes before creating anything (fields the runtime does
/// not implement, obviously wrong values), on their own: for the fuzz targets (crates/fuzz).
#[doc(hidden)]
pub fn validate_spec(spec: &oci_spec::runtime::Spec) -> Result<(), Error> {
    validate::spec(spec)
}

/// The named mount options `mounts[].options` may use (for a features document such as
/// `lifecycle-runc features`); filesystem data options (`mode=`, `size=`...) pass through.
pub fn mount_options() -> Vec<&'static str> {
    rootfs::known_options()
}

/// A default config.json, the one `runc spec` writes, for a bundle whose root is `rootfs/`: `sh`
/// on a terminal, hostname `runc`, runc's capabilities, rlimit, mounts, device rule, masked and
/// read-only paths and namespaces. `lifecycle-runc spec` writes it; tests start from it and
/// edit the JSON.
pub fn default_spec() -> serde_json::Value {
    let caps = serde_json::json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "ambient": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// If this process was started as a helper (`argv[1]` is the helper marker), runs the helper and
/// exits; otherwise returns at once. Call it first thing in `main`, before any thread starts.
pub fn run_helper_if_requested() {
    let mut args = std::env::args_os();
    if args.nth(1).as_deref() != Some(std::ffi::OsStr::new(exe::HELPER_ARG)) {
        return;
    }
    // Nobody (including a container process) may ptrace us or open our /proc/self/exe.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let fd = args
        .next()
        .and_then(|a| a.to_str().and_then(|s| s.parse::<i32>().ok()));
    let code = match fd {
        Some(fd) if fd > 2 => {
            // Anything else the caller leaked to us (an fd without O_CLOEXEC from another
            // thread) must not be held by a container init while it waits for start: close it.
            // SAFETY: close_range on fd ranges that exclude stdio and our channel.
            unsafe {
                libc::syscall(libc::SYS_close_range, 3u32, (fd - 1) as u32, 0u32);
                libc::syscall(libc::SYS_close_range, (fd + 1) as u32, u32::MAX, 0u32);
            }
            helper::main(fd)
        }
        _ => 2,
    };
    std::process::exit(code);
}
