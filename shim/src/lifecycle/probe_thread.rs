//! httpGet and tcpSocket hooks: a dedicated thread joins the container's network namespace
//! (a thread-level setns, allowed in a multi-threaded process; never on a tokio worker, whose
//! sockets would then land in the container's namespace) and runs the probe there, so only
//! what listens in the container is reachable. The thread ends with the probe; it is never
//! reused. Resolver files are read through the container's root with RESOLVE_IN_ROOT, so a
//! symlink in the container cannot reach the host's files.

use std::{
    ffi::CString,
    fs::File,
    io::Read,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Instant,
};

use lifecycle_hooks::{connect_direct, run_probe, Handler, ProbeRun, ResolverFiles};
use tokio::sync::oneshot;

/// A resolver file larger than this is cut (they are a few lines).
const RESOLVER_FILE_MAX: u64 = 64 * 1024;
const STACK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProbeThreadError {
    #[error("open the container's network namespace {path}: {source}")]
    OpenNetns {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("join the container's network namespace: {0}")]
    Setns(#[source] nix::Error),
    #[error("start the probe thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the handler is not a probe")]
    NotAProbe,
}

/// Runs `handler` on a new thread in the network namespace of `init_pid`.
pub(super) fn spawn(
    init_pid: i32,
    handler: Handler,
    deadline: Instant,
) -> oneshot::Receiver<Result<ProbeRun, ProbeThreadError>> {
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("hook-probe".into())
        .stack_size(STACK)
        .spawn(move || {
            let _ = tx.send(probe(init_pid, &handler, deadline));
        });
    if let Err(e) = spawned {
        let (tx, rx2) = oneshot::channel();
        let _ = tx.send(Err(ProbeThreadError::Thread(e)));
        return rx2;
    }
    rx
}

fn probe(
    init_pid: i32,
    handler: &Handler,
    deadline: Instant,
) -> Result<ProbeRun, ProbeThreadError> {
    let path = format!("/proc/{init_pid}/ns/net");
    let ns = File::open(&path).map_err(|source| ProbeThreadError::OpenNetns { path, source })?;
    let root = File::open(format!("/proc/{init_pid}/root")).ok();
    let hosts = root
        .as_ref()
        .map(|r| read_in_root(r, "etc/hosts"))
        .unwrap_or_default();
    let resolv = root
        .as_ref()
        .map(|r| read_in_root(r, "etc/resolv.conf"))
        .unwrap_or_default();
    drop(root);
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(ProbeThreadError::Setns)?;
    let files = ResolverFiles {
        hosts: &hosts,
        resolv_conf: &resolv,
    };
    run_probe(handler, &files, &mut connect_direct, deadline).ok_or(ProbeThreadError::NotAProbe)
}

/// `path` under the container's root, symlinks resolved inside it; empty when missing.
fn read_in_root(root: &File, path: &str) -> String {
    let Ok(c) = CString::new(path) else {
        return String::new();
    };
    // SAFETY: zeroed open_how is a valid value; the fields are plain integers.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 with a valid dirfd, a NUL-terminated path and a valid open_how.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return String::new();
    }
    // SAFETY: openat2 returned a new fd that nothing else owns.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    let Ok(meta) = file.metadata() else {
        return String::new();
    };
    if !meta.is_file() {
        return String::new();
    }
    let mut s = String::new();
    let _ = file.take(RESOLVER_FILE_MAX).read_to_string(&mut s);
    s
}
