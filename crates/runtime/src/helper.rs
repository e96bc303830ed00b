//! Helper mode: a fresh single-threaded process (the caller's binary re-executed from the
//! sealed copy) that joins namespaces and the cgroup, then clones the container init (create)
//! or an exec process with CLONE_PARENT, so that process is the caller's child.

use std::{
    fs::File,
    io::{Read, Write},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    path::PathBuf,
};

use oci_spec::runtime::{LinuxSeccomp, Process, Spec};
use serde::{Deserialize, Serialize};

use crate::{
    channel::{FromHelper, HelperEnd, ToHelper},
    error::SetupError,
    init, namespaces, process,
    rootfs::CgroupMount,
};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum HelperRequest {
    Create(Box<CreateConfig>),
    Exec(Box<ExecConfig>),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CreateConfig {
    pub id: String,
    pub bundle: PathBuf,
    /// Absolute host path of the root filesystem.
    pub rootfs: PathBuf,
    pub spec: Spec,
    pub cgroup_procs: Vec<PathBuf>,
    pub cgroup_mounts: Vec<CgroupMount>,
    /// The caller has prestart/createRuntime hooks to run: stop and ask.
    pub runtime_hooks: bool,
    /// The request frame carries an `O_PATH` fd of `exec.fifo`: hold on it, not the channel.
    #[serde(default)]
    pub exec_fifo: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ExecConfig {
    pub init_pid: i32,
    /// The init's start time, so a recycled pid is never joined.
    pub init_start_time: u64,
    pub process: Process,
    pub seccomp: Option<LinuxSeccomp>,
    pub cgroup_procs: Vec<PathBuf>,
    pub setgroups: bool,
}

/// Helper entry point; returns the exit code. The caller learns the outcome from the channel,
/// never from this code.
pub(crate) fn main(fd: RawFd) -> i32 {
    // SAFETY: the fd number came from our own spawner and nothing else owns it.
    let chan = unsafe { HelperEnd::from_raw(fd) };
    // Not inherited by anything exec'd later, whatever happens.
    // SAFETY: fcntl on our fd.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    let (req, req_fd) = match chan.recv() {
        Ok(Some((ToHelper::Request(r), fd))) => (*r, fd),
        _ => return 1,
    };
    // Our fd 2 is the container's stderr: a panic must not print there. Report it on a
    // second (close-on-exec) copy of the channel instead. (With panic = "abort" the process
    // just dies and the caller reports that the helper exited without a word.)
    std::panic::set_hook(Box::new(|_| {}));
    // SAFETY: fcntl on our fd; the copy is owned below.
    let report_fd = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    // SAFETY: a fresh fd from F_DUPFD_CLOEXEC.
    let report = (report_fd >= 0).then(|| unsafe { HelperEnd::from_raw(report_fd) });
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match req {
        HelperRequest::Create(c) => {
            let fifo = if c.exec_fifo { req_fd } else { None };
            if c.exec_fifo && fifo.is_none() {
                return Err((
                    chan,
                    SetupError::new("exec-fifo", "the create request came without exec.fifo"),
                ));
            }
            create(chan, *c, fifo)
        }
        HelperRequest::Exec(e) => exec(chan, *e),
    }));
    match res {
        Ok(Ok(())) => 0,
        Ok(Err((chan, e))) => {
            let _ = chan.send(&FromHelper::Failed(e));
            1
        }
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            if let Some(report) = report {
                let _ = report.send(&FromHelper::Failed(SetupError::new(
                    "helper",
                    format!("panic: {msg}"),
                )));
            }
            101
        }
    }
}

type HelperResult = Result<(), (HelperEnd, SetupError)>;

fn join_cgroup(files: &[PathBuf]) -> Result<(), SetupError> {
    let me = std::process::id().to_string();
    for f in files {
        std::fs::write(f, &me)
            .map_err(|e| SetupError::io("cgroup", format!("join {}", f.display()), &e))?;
    }
    Ok(())
}

/// A pipe on which the clone child waits for "go" (after the helper reported its pid and,
/// for a new user namespace, wrote its id maps). The helper writes the child's host pid.
fn go_pipe() -> Result<(OwnedFd, OwnedFd), SetupError> {
    let mut fds = [0; 2];
    // SAFETY: valid array for pipe2.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(SetupError::sys("clone", "pipe", nix::errno::Errno::last()));
    }
    // SAFETY: fresh fds.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// clone(2) like fork (null stack: the child runs on a copy of our stack), with CLONE_PARENT
/// so the child is the caller's, and `ns_flags` for new namespaces. Safe to allocate in the
/// child: the helper is single-threaded.
fn clone_child(ns_flags: libc::c_int) -> Result<i32, SetupError> {
    let flags = (ns_flags | libc::CLONE_PARENT) as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: raw clone without CLONE_VM behaves like fork; the process is single-threaded.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    if pid < 0 {
        return Err(SetupError::sys(
            "clone",
            format!("clone(flags {flags:#x})"),
            nix::errno::Errno::last(),
        ));
    }
    Ok(pid as i32)
}

/// In the child: wait for the helper's go (its host pid). EOF means the helper failed.
fn wait_go(r: OwnedFd) -> i32 {
    let mut f = File::from(r);
    let mut buf = [0u8; 4];
    if f.read_exact(&mut buf).is_err() {
        // SAFETY: exit without running anything inherited from the helper.
        unsafe { libc::_exit(1) };
    }
    i32::from_le_bytes(buf)
}

fn create(chan: HelperEnd, cfg: CreateConfig, fifo: Option<OwnedFd>) -> HelperResult {
    let nss = cfg
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    let pre = (|| {
        // Open every namespace to join before joining any: a join changes what paths mean.
        let mut joins = Vec::new();
        for k in namespaces::JOIN_ORDER {
            if let Some(path) = nss
                .iter()
                .find(|n| n.typ() == k.typ)
                .and_then(|n| n.path().clone())
            {
                let f = File::open(&path).map_err(|e| {
                    SetupError::io(
                        "namespaces",
                        format!(
                            "open linux.namespaces[type={}].path {}",
                            k.proc_name,
                            path.display()
                        ),
                        &e,
                    )
                })?;
                joins.push((k, f));
            }
        }
        // Join the cgroup before the init exists, so no container process can ever fork
        // outside it.
        join_cgroup(&cfg.cgroup_procs)?;
        for (k, f) in &joins {
            // SAFETY: setns on an open namespace fd.
            if unsafe { libc::setns(f.as_raw_fd(), k.flag) } != 0 {
                return Err(SetupError::sys(
                    "namespaces",
                    format!("join {} namespace", k.proc_name),
                    nix::errno::Errno::last(),
                ));
            }
        }
        let (r, w) = go_pipe()?;
        let flags = namespaces::new_flags(&nss);
        // A new user namespace is created alone first (see `userns_stage`).
        let first = if flags & libc::CLONE_NEWUSER != 0 {
            libc::CLONE_NEWUSER
        } else {
            flags
        };
        let pid = clone_child(first)?;
        Ok((r, w, flags, pid))
    })();
    let (r, w, flags, pid) = match pre {
        Ok(v) => v,
        Err(e) => return Err((chan, e)),
    };
    if pid == 0 {
        drop(w);
        let host_pid = wait_go(r);
        if flags & libc::CLONE_NEWUSER != 0 {
            userns_stage(chan, cfg, flags, fifo);
        }
        init::run(chan, cfg, host_pid, fifo);
    }
    drop(r);
    drop(fifo);
    let post = (|| {
        if flags & libc::CLONE_NEWUSER != 0 {
            // The user-namespace stage reports the init's pid itself.
            write_id_maps(pid, &cfg.spec)?;
        } else {
            chan.send(&FromHelper::Pid(pid))
                .map_err(|e| SetupError::io("clone", "report the init pid", &e))?;
        }
        File::from(w)
            .write_all(&pid.to_le_bytes())
            .map_err(|e| SetupError::io("clone", "release the init", &e))
    })();
    post.map_err(|e| (chan, e))
}

/// In a new user namespace whose maps the helper just wrote: become its root, then create the
/// other namespaces, so that they and what they make (such as the IPC namespace's mqueue
/// instance) belong to the container's root, as with runc; then clone the init (a new pid
/// namespace applies to children), again with CLONE_PARENT, report its pid and release it.
fn userns_stage(
    chan: HelperEnd,
    cfg: CreateConfig,
    flags: libc::c_int,
    fifo: Option<OwnedFd>,
) -> ! {
    let res = (|| {
        // Only the uid, as runc's nsexec: the gid becomes 0 in the init's first step. (So the
        // mqueue instance is 0:65534, exactly as under runc.)
        // SAFETY: plain integer syscall.
        if unsafe { libc::setresuid(0, 0, 0) } != 0 {
            return Err(SetupError::sys(
                "userns",
                "become root in the new user namespace (is uid/gid 0 mapped?)",
                nix::errno::Errno::last(),
            ));
        }
        let rest = flags & !(libc::CLONE_NEWUSER | libc::CLONE_NEWPID);
        // SAFETY: unshare with namespace flags.
        if rest != 0 && unsafe { libc::unshare(rest) } != 0 {
            return Err(SetupError::sys(
                "namespaces",
                format!("unshare({rest:#x}) in the user namespace"),
                nix::errno::Errno::last(),
            ));
        }
        let (r, w) = go_pipe()?;
        let pid = clone_child(flags & libc::CLONE_NEWPID)?;
        Ok((r, w, pid))
    })();
    let (r, w, pid) = match res {
        Ok(v) => v,
        Err(e) => {
            let _ = chan.send(&FromHelper::Failed(e));
            // SAFETY: exit without unwinding.
            unsafe { libc::_exit(1) }
        }
    };
    if pid == 0 {
        drop(w);
        let host_pid = wait_go(r);
        init::run(chan, cfg, host_pid, fifo);
    }
    drop(r);
    drop(fifo);
    let sent = chan
        .send(&FromHelper::Pid(pid))
        .and_then(|()| File::from(w).write_all(&pid.to_le_bytes()));
    if let Err(e) = sent {
        let _ = chan.send(&FromHelper::Failed(SetupError::io(
            "clone",
            "report and release the init",
            &e,
        )));
    }
    // SAFETY: exit without unwinding; the init goes on alone.
    unsafe { libc::_exit(0) }
}

/// uid_map/gid_map of a child in a new user namespace, written from outside (the parent's
/// side), as runc does.
fn write_id_maps(pid: i32, spec: &Spec) -> Result<(), SetupError> {
    let linux = spec.linux().as_ref();
    for (file, maps) in [
        ("uid_map", linux.and_then(|l| l.uid_mappings().clone())),
        ("gid_map", linux.and_then(|l| l.gid_mappings().clone())),
    ] {
        let maps = maps.unwrap_or_default();
        if maps.is_empty() {
            continue;
        }
        let text: String = maps
            .iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect();
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, text.as_bytes()).map_err(|e| {
            SetupError::io(
                "userns",
                format!("write {path} ({})", text.trim().replace('\n', ", ")),
                &e,
            )
        })?;
    }
    Ok(())
}

fn exec(chan: HelperEnd, cfg: ExecConfig) -> HelperResult {
    let pre = (|| {
        // Pin the init's /proc directory, then check it is still our init (not a recycled
        // pid): namespace files opened through this directory fail once that process is gone.
        let gone = || {
            SetupError::new(
                "namespaces",
                format!("container init {} is gone", cfg.init_pid),
            )
        };
        let proc_dir = File::open(format!("/proc/{}", cfg.init_pid)).map_err(|_| gone())?;
        let pinned = format!("/proc/self/fd/{}", proc_dir.as_raw_fd());
        let stat = std::fs::read_to_string(format!("{pinned}/stat")).map_err(|_| gone())?;
        if crate::state::start_time_from_stat(&stat) != Some(cfg.init_start_time) {
            return Err(gone());
        }
        let mut joins = Vec::new();
        for k in namespaces::JOIN_ORDER {
            let theirs = format!("{pinned}/ns/{}", k.proc_name);
            let ours = format!("/proc/self/ns/{}", k.proc_name);
            let (Ok(t), Ok(o)) = (std::fs::metadata(&theirs), std::fs::metadata(&ours)) else {
                continue;
            };
            use std::os::unix::fs::MetadataExt;
            // Joining a namespace we are already in is an error for user namespaces, and
            // useless for the rest.
            if t.ino() == o.ino() && t.dev() == o.dev() {
                continue;
            }
            let f = File::open(&theirs)
                .map_err(|e| SetupError::io("namespaces", format!("open {theirs}"), &e))?;
            joins.push((k, f));
        }
        if joins.is_empty() {
            return Err(SetupError::new(
                "namespaces",
                format!("container init {} is gone", cfg.init_pid),
            ));
        }
        join_cgroup(&cfg.cgroup_procs)?;
        for (k, f) in &joins {
            // SAFETY: setns on an open namespace fd.
            if unsafe { libc::setns(f.as_raw_fd(), k.flag) } != 0 {
                return Err(SetupError::sys(
                    "namespaces",
                    format!("join the container's {} namespace", k.proc_name),
                    nix::errno::Errno::last(),
                ));
            }
        }
        let (r, w) = go_pipe()?;
        // The pid namespace applies to children only: the exec process is this fork.
        let pid = clone_child(0)?;
        Ok((r, w, pid))
    })();
    let (r, w, pid) = match pre {
        Ok(v) => v,
        Err(e) => return Err((chan, e)),
    };
    if pid == 0 {
        drop(w);
        wait_go(r);
        exec_child(chan, cfg);
    }
    drop(r);
    let post = (|| {
        chan.send(&FromHelper::Pid(pid))
            .map_err(|e| SetupError::io("clone", "report the exec pid", &e))?;
        File::from(w)
            .write_all(&pid.to_le_bytes())
            .map_err(|e| SetupError::io("clone", "release the exec process", &e))
    })();
    post.map_err(|e| (chan, e))
}

fn exec_child(chan: HelperEnd, cfg: ExecConfig) -> ! {
    let res = (|| {
        let p = &cfg.process;
        if p.terminal().unwrap_or(false) {
            init::setup_console(&chan, p, false)?;
        }
        process::set_rlimits(p)?;
        process::set_oom_score_adj(p)?;
        std::env::set_current_dir("/").map_err(|e| SetupError::io("cwd", "chdir /", &e))?;
        let exe = process::find_executable(p, "the container")?;
        Err(process::finalize_and_exec(
            p,
            cfg.seccomp.as_ref(),
            &exe,
            cfg.setgroups,
        ))
    })();
    let e = match res {
        Ok(()) => SetupError::new("exec", "returned without exec"),
        Err(e) => e,
    };
    let _ = chan.send(&FromHelper::Failed(e));
    // SAFETY: exit without unwinding into the helper's code.
    unsafe { libc::_exit(1) }
}
