//! The container init: the clone child of the create helper. It sets the container up in the
//! order of [`SETUP`], reports Ready, waits for Start, runs [`AFTER_START`], then applies the
//! process spec and execs the entrypoint. Errors go to the caller over the channel, then the
//! init exits (as pid 1 of its pid namespace, taking everything else with it).

use std::{
    ffi::CStr,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
};

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use crate::{
    channel::{FromHelper, HelperEnd, ToHelper},
    error::SetupError,
    helper::CreateConfig,
    hooks, process, rootfs,
};

type R = Result<(), SetupError>;

pub(crate) struct Init {
    chan: HelperEnd,
    cfg: CreateConfig,
    host_pid: i32,
    exe: Option<PathBuf>,
}

impl Init {
    fn spec(&self) -> &Spec {
        &self.cfg.spec
    }

    fn has_new(&self, typ: LinuxNamespaceType) -> bool {
        self.spec()
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|nss| nss.iter().any(|n| n.typ() == typ && n.path().is_none()))
    }

    fn process(&self) -> &Process {
        static EMPTY: std::sync::OnceLock<Process> = std::sync::OnceLock::new();
        self.spec()
            .process()
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(Process::default))
    }

    fn state_json(&self, status: &str) -> Vec<u8> {
        let empty = Default::default();
        let st = hooks::HookState {
            oci_version: self.spec().version(),
            id: &self.cfg.id,
            status,
            pid: self.host_pid,
            bundle: &self.cfg.bundle,
            annotations: self.spec().annotations().as_ref().unwrap_or(&empty),
        };
        serde_json::to_vec(&st).unwrap_or_default()
    }
}

/// One setup step: a name (reported on failure), why it sits where it sits, and the code.
struct Step {
    name: &'static str,
    #[allow(dead_code)]
    why: &'static str,
    run: fn(&mut Init) -> R,
}

/// Setup before the container is held, in order.
const SETUP: &[Step] = &[
    Step { name: "userns-root", why: "in a new user namespace become its root first, so everything set up below belongs to the container's root", run: become_root },
    Step { name: "propagation", why: "before any mount: mounts made here must never propagate to the host (rootfsPropagation, default rslave)", run: set_propagation },
    Step { name: "bind-rootfs", why: "pivot_root needs the new root to be a mount point; binding inside our private mount ns leaves the host untouched", run: bind_rootfs },
    Step { name: "mounts", why: "spec mounts in their order, before pivot_root, so bind sources are still host paths", run: spec_mounts },
    Step { name: "devices", why: "after the /dev mount they populate: default nodes, spec devices, /dev symlinks", run: devices },
    Step { name: "runtime-hooks", why: "prestart/createRuntime run by the caller once the namespaces and mounts exist, before pivot_root", run: runtime_hooks },
    Step { name: "create-container-hooks", why: "createContainer hooks run in the container's namespaces, before pivot_root", run: create_container_hooks },
    Step { name: "pivot-root", why: "after all mounts that need host paths; detaches the host root from the container", run: pivot_root },
    Step { name: "console", why: "needs the container's /dev/pts (after pivot_root); before masking and read-only remounts", run: console },
    Step { name: "sysctls", why: "written through /proc/sys before readonlyPaths makes it read-only", run: sysctls },
    Step { name: "readonly-paths", why: "after sysctls, before masking (runc's order)", run: readonly_paths },
    Step { name: "masked-paths", why: "after the last write through /proc", run: masked_paths },
    Step { name: "readonly-root", why: "the last change to the mount tree", run: readonly_root },
    Step { name: "hostname", why: "in the new UTS namespace; independent of mounts", run: hostname },
    Step { name: "loopback", why: "a new network namespace starts with lo down; runc brings it up", run: loopback },
    Step { name: "oom-score-adj", why: "while still privileged, before the user changes", run: oom_score_adj },
    Step { name: "entrypoint", why: "last before holding: a missing entrypoint fails create, not start (as runc)", run: entrypoint },
];

/// After start, before the process spec is applied and the entrypoint exec'd.
const AFTER_START: &[Step] = &[
    Step {
        name: "start-container-hooks",
        why: "run in the container after start, before the entrypoint",
        run: start_container_hooks,
    },
    Step {
        name: "rlimits",
        why: "before the user change: raising a limit needs privilege",
        run: rlimits,
    },
];

fn fail(chan: &HelperEnd, e: SetupError) -> ! {
    let _ = chan.send(&FromHelper::Failed(e));
    // SAFETY: exit without unwinding into the helper's code.
    unsafe { libc::_exit(1) }
}

/// Where the init reports a failure after start.
enum Gate {
    /// The creating process's channel.
    Channel,
    /// The write end of exec.fifo, read by whoever ran start (the creating process may be
    /// gone). Close-on-exec: EOF tells start that the entrypoint was exec'd.
    Fifo(std::fs::File),
}

fn fail_started(init: &Init, gate: &mut Gate, e: SetupError) -> ! {
    if let Gate::Fifo(f) = gate {
        use std::io::Write;
        let _ = f.write_all(&serde_json::to_vec(&e).unwrap_or_default());
        // SAFETY: exit without unwinding into the helper's code.
        unsafe { libc::_exit(1) }
    }
    fail(&init.chan, e)
}

/// Blocks until start opens exec.fifo for reading (runc's pattern), then tells it so with
/// one byte. The fd is an `O_PATH` handle opened by the caller on the host side; reopening it
/// through /proc/self/fd works inside the container.
fn wait_exec_fifo(chan: &HelperEnd, fifo: OwnedFd) -> std::fs::File {
    use std::io::Write;
    let path =
        std::ffi::CString::new(format!("/proc/self/fd/{}", fifo.as_raw_fd())).unwrap_or_default();
    let fd = loop {
        // SAFETY: open with a valid C string.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd >= 0 {
            break fd;
        }
        let errno = nix::errno::Errno::last();
        if errno != nix::errno::Errno::EINTR {
            fail(
                chan,
                SetupError::sys("exec-fifo", format!("open {path:?} for writing"), errno),
            );
        }
    };
    drop(fifo);
    // SAFETY: a fresh fd.
    let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    if let Err(e) = f.write_all(b"0") {
        fail(chan, SetupError::io("exec-fifo", "write exec.fifo", &e));
    }
    f
}

pub(crate) fn run(chan: HelperEnd, cfg: CreateConfig, host_pid: i32, fifo: Option<OwnedFd>) -> ! {
    let mut init = Init {
        chan,
        cfg,
        host_pid,
        exe: None,
    };
    for step in SETUP {
        if let Err(mut e) = (step.run)(&mut init) {
            if e.step.is_empty() {
                e.step = step.name.to_owned();
            }
            fail(&init.chan, e);
        }
    }
    if let Err(e) = init.chan.send(&FromHelper::Ready) {
        fail(&init.chan, SetupError::io("ready", "report ready", &e));
    }
    // Held here until start. EOF means the caller gave up on us: exit quietly.
    let mut gate = match fifo {
        None => match init.chan.recv() {
            Ok(Some((ToHelper::Start, _))) => Gate::Channel,
            // SAFETY: exit without unwinding.
            _ => unsafe { libc::_exit(1) },
        },
        Some(fifo) => Gate::Fifo(wait_exec_fifo(&init.chan, fifo)),
    };
    for step in AFTER_START {
        if let Err(e) = (step.run)(&mut init) {
            fail_started(&init, &mut gate, e);
        }
    }
    let seccomp = init
        .spec()
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().clone());
    let exe = init.exe.clone().unwrap_or_default();
    let setgroups = setgroups_allowed();
    let e = process::finalize_and_exec(init.process(), seccomp.as_ref(), &exe, setgroups);
    fail_started(&init, &mut gate, e)
}

fn become_root(i: &mut Init) -> R {
    if !i.has_new(LinuxNamespaceType::User) {
        return Ok(());
    }
    // SAFETY: plain integer syscalls.
    if unsafe { libc::setresgid(0, 0, 0) } != 0 || unsafe { libc::setresuid(0, 0, 0) } != 0 {
        return Err(SetupError::sys(
            "userns-root",
            "become root in the user namespace (is uid/gid 0 mapped?)",
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

fn set_propagation(i: &mut Init) -> R {
    let prop = i
        .spec()
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone())
        .filter(|s| !s.is_empty());
    let flags = match prop.as_deref() {
        None => libc::MS_SLAVE | libc::MS_REC,
        Some(p) => rootfs::propagation_flags(p).ok_or_else(|| {
            SetupError::new(
                "propagation",
                format!("linux.rootfsPropagation {p:?} is not a propagation mode"),
            )
        })?,
    };
    rootfs::mount("propagation", None, Path::new("/"), None, flags, None)
}

fn bind_rootfs(i: &mut Init) -> R {
    let root = i.cfg.rootfs.clone();
    // pivot_root refuses a new root whose parent mount is shared: make the parent private
    // (only inside our mount namespace).
    if let Some(parent) = root.parent().and_then(rootfs::mountpoint_of) {
        rootfs::mount("bind-rootfs", None, &parent, None, libc::MS_PRIVATE, None)?;
    }
    rootfs::mount(
        "bind-rootfs",
        Some(&root),
        &root,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
}

fn spec_mounts(i: &mut Init) -> R {
    let mounts = i.spec().mounts().clone().unwrap_or_default();
    let label = i
        .spec()
        .linux()
        .as_ref()
        .and_then(|l| l.mount_label().clone());
    for (n, m) in mounts.iter().enumerate() {
        rootfs::mount_one(
            n,
            m,
            &i.cfg.rootfs,
            &i.cfg.bundle,
            &i.cfg.cgroup_mounts,
            label.as_deref(),
        )?;
    }
    Ok(())
}

fn devices(i: &mut Init) -> R {
    let devs = i
        .spec()
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default();
    // A /dev bind-mounted from elsewhere is used as it is (runc's rule).
    let dev_is_bind = i.spec().mounts().iter().flatten().any(|m| {
        m.destination() == Path::new("/dev")
            && (m.typ().as_deref() == Some("bind")
                || m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind"))
    });
    if dev_is_bind {
        return Ok(());
    }
    rootfs::setup_dev(&i.cfg.rootfs, &devs, i.has_new(LinuxNamespaceType::User))
}

fn runtime_hooks(i: &mut Init) -> R {
    if !i.cfg.runtime_hooks {
        return Ok(());
    }
    i.chan
        .send(&FromHelper::RunHooks)
        .map_err(|e| SetupError::io("runtime-hooks", "ask for hooks", &e))?;
    match i.chan.recv() {
        Ok(Some((ToHelper::HooksDone, _))) => Ok(()),
        // The caller reports the hook failure itself; just go.
        // SAFETY: exit without unwinding.
        _ => unsafe { libc::_exit(1) },
    }
}

fn create_container_hooks(i: &mut Init) -> R {
    let hooks = i
        .spec()
        .hooks()
        .as_ref()
        .and_then(|h| h.create_container().clone())
        .unwrap_or_default();
    if hooks.is_empty() {
        return Ok(());
    }
    let state = i.state_json("created");
    hooks::run_in_init("createContainer", &hooks, &state)
        .map_err(|e| SetupError::new("create-container-hooks", e))
}

fn pivot_root(i: &mut Init) -> R {
    rootfs::pivot_root(&i.cfg.rootfs)?;
    // The rootfs bind was made under a private parent (pivot_root needs it): apply the
    // requested propagation to the new / now, as runc does after pivot_root.
    let prop = i
        .spec()
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone());
    if let Some(flags) = prop.as_deref().and_then(rootfs::propagation_flags) {
        rootfs::mount("pivot-root", None, Path::new("/"), None, flags, None)?;
    }
    Ok(())
}

fn console(i: &mut Init) -> R {
    if !i.process().terminal().unwrap_or(false) {
        return Ok(());
    }
    let p = i.process().clone();
    setup_console(&i.chan, &p, true)
}

/// Opens a pty in the container's devpts, sends the master to the caller, and makes the slave
/// this process's controlling terminal and stdio.
pub(crate) fn setup_console(chan: &HelperEnd, p: &Process, bind_console: bool) -> R {
    let step = "console";
    // SAFETY: open with a static C string.
    let master = unsafe {
        libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if master < 0 {
        return Err(SetupError::sys(
            step,
            "open /dev/ptmx",
            nix::errno::Errno::last(),
        ));
    }
    // SAFETY: fresh fd.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: valid fd and buffer.
    if unsafe { libc::unlockpt(master.as_raw_fd()) } != 0
        || unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) } != 0
    {
        return Err(SetupError::sys(
            step,
            "unlockpt/ptsname",
            nix::errno::Errno::last(),
        ));
    }
    // SAFETY: ptsname_r wrote a NUL-terminated string.
    let slave_path = unsafe { CStr::from_ptr(name.as_ptr()) }.to_owned();
    // SAFETY: valid C string.
    let slave = unsafe {
        libc::open(
            slave_path.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(SetupError::sys(
            step,
            format!("open {slave_path:?}"),
            nix::errno::Errno::last(),
        ));
    }
    // SAFETY: fresh fd.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    if let Some(size) = p.console_size() {
        let ws = libc::winsize {
            ws_row: size.height() as u16,
            ws_col: size.width() as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: ioctl with a valid winsize.
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    if bind_console {
        let console = Path::new("/dev/console");
        if !console.exists() {
            std::fs::File::create(console)
                .map_err(|e| SetupError::io(step, "create /dev/console", &e))?;
        }
        let sp = PathBuf::from(slave_path.to_string_lossy().into_owned());
        rootfs::mount(step, Some(&sp), console, None, libc::MS_BIND, None)?;
    }
    chan.send_with_fd(&FromHelper::Console, Some(master.as_fd()))
        .map_err(|e| SetupError::io(step, "send the pty master", &e))?;
    drop(master);
    // SAFETY: session and terminal syscalls on our own fds.
    unsafe {
        libc::setsid();
        if libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) != 0 {
            return Err(SetupError::sys(
                step,
                "TIOCSCTTY",
                nix::errno::Errno::last(),
            ));
        }
        for fd in 0..3 {
            if libc::dup2(slave.as_raw_fd(), fd) < 0 {
                return Err(SetupError::sys(
                    step,
                    "dup2 the pty slave onto stdio",
                    nix::errno::Errno::last(),
                ));
            }
        }
    }
    Ok(())
}

fn sysctls(i: &mut Init) -> R {
    let sysctls = i
        .spec()
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().clone())
        .unwrap_or_default();
    let mut keys: Vec<_> = sysctls.keys().collect();
    keys.sort();
    for k in keys {
        let path = PathBuf::from("/proc/sys").join(k.replace('.', "/"));
        std::fs::write(&path, &sysctls[k]).map_err(|e| {
            SetupError::io("sysctls", format!("linux.sysctl {k}={:?}", sysctls[k]), &e)
        })?;
    }
    Ok(())
}

fn readonly_paths(i: &mut Init) -> R {
    let paths = i
        .spec()
        .linux()
        .as_ref()
        .and_then(|l| l.readonly_paths().clone())
        .unwrap_or_default();
    rootfs::readonly_paths(&paths)
}

fn masked_paths(i: &mut Init) -> R {
    let paths = i
        .spec()
        .linux()
        .as_ref()
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default();
    rootfs::mask_paths(&paths)
}

fn readonly_root(i: &mut Init) -> R {
    if i.spec()
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        rootfs::readonly_root()?;
    }
    Ok(())
}

fn hostname(i: &mut Init) -> R {
    if let Some(h) = i.spec().hostname().clone() {
        nix::unistd::sethostname(&h)
            .map_err(|e| SetupError::sys("hostname", format!("sethostname {h:?}"), e))?;
    }
    if let Some(d) = i.spec().domainname().clone() {
        let c = std::ffi::CString::new(d.clone()).unwrap_or_default();
        // SAFETY: valid pointer and length.
        if unsafe { libc::setdomainname(c.as_ptr(), d.len()) } != 0 {
            return Err(SetupError::sys(
                "hostname",
                format!("setdomainname {d:?}"),
                nix::errno::Errno::last(),
            ));
        }
    }
    Ok(())
}

fn loopback(i: &mut Init) -> R {
    if !i.has_new(LinuxNamespaceType::Network) {
        return Ok(());
    }
    // SAFETY: socket/ioctl with a zeroed, correctly sized ifreq.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(SetupError::sys(
                "loopback",
                "socket",
                nix::errno::Errno::last(),
            ));
        }
        let s = OwnedFd::from_raw_fd(s);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (d, c) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *c as libc::c_char;
        }
        if libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) != 0 {
            return Err(SetupError::sys(
                "loopback",
                "SIOCGIFFLAGS lo",
                nix::errno::Errno::last(),
            ));
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) != 0 {
            return Err(SetupError::sys(
                "loopback",
                "SIOCSIFFLAGS lo up",
                nix::errno::Errno::last(),
            ));
        }
    }
    Ok(())
}

fn oom_score_adj(i: &mut Init) -> R {
    process::set_oom_score_adj(&i.process().clone())
}

fn entrypoint(i: &mut Init) -> R {
    let p = i.process().clone();
    i.exe = Some(process::find_executable(&p, "rootfs")?);
    Ok(())
}

fn start_container_hooks(i: &mut Init) -> R {
    let hooks = i
        .spec()
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().clone())
        .unwrap_or_default();
    if hooks.is_empty() {
        return Ok(());
    }
    let state = i.state_json("created");
    hooks::run_in_init("startContainer", &hooks, &state)
        .map_err(|e| SetupError::new("start-container-hooks", e))
}

fn rlimits(i: &mut Init) -> R {
    process::set_rlimits(&i.process().clone())
}

/// False when this user namespace denies setgroups (then additionalGids cannot be set).
pub(crate) fn setgroups_allowed() -> bool {
    std::fs::read_to_string("/proc/self/setgroups")
        .map(|s| s.trim() != "deny")
        .unwrap_or(true)
}
