//! Applying `process` from the spec in the process that will exec the entrypoint (the init
//! after start, or an exec child): rlimits, oom score, user and groups, capabilities,
//! no_new_privs, seccomp, umask, cwd, then execve. The order follows runc's finalizeNamespace.

use std::{
    ffi::CString,
    os::unix::{ffi::OsStrExt, fs::PermissionsExt},
    path::{Path, PathBuf},
    str::FromStr,
};

use caps::{CapSet, CapsHashSet};
use oci_spec::runtime::{LinuxSeccomp, PosixRlimitType, Process};

use crate::error::SetupError;

type R = Result<(), SetupError>;
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn rlimit_resource(t: PosixRlimitType) -> Option<libc::__rlimit_resource_t> {
    Some(match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

/// Checks the parts of `process` that can be checked before any process exists.
pub(crate) fn validate(p: &Process) -> Result<(), String> {
    if p.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err("process.args must not be empty".into());
    }
    if p.command_line().is_some() {
        return Err("process.commandLine (Windows only) is not supported".into());
    }
    if p.io_priority().is_some() {
        return Err("process.ioPriority is not supported".into());
    }
    if p.scheduler().is_some() {
        return Err("process.scheduler is not supported".into());
    }
    if p.exec_cpu_affinity().is_some() {
        return Err("process.execCPUAffinity is not supported".into());
    }
    let nul = |what: &str, v: &str| {
        if v.contains('\0') {
            Err(format!("{what} {v:?} contains a NUL byte"))
        } else {
            Ok(())
        }
    };
    for (i, a) in p.args().iter().flatten().enumerate() {
        nul(&format!("process.args[{i}]"), a)?;
    }
    for (i, e) in p.env().iter().flatten().enumerate() {
        nul(&format!("process.env[{i}]"), e)?;
        if !e.contains('=') {
            return Err(format!("process.env[{i}] {e:?} is not KEY=VALUE"));
        }
    }
    nul("process.cwd", &p.cwd().to_string_lossy())?;
    if !p.cwd().is_absolute() {
        return Err(format!(
            "process.cwd {:?} must be an absolute path",
            p.cwd()
        ));
    }
    for r in p.rlimits().iter().flatten() {
        if rlimit_resource(r.typ()).is_none() {
            return Err(format!(
                "process.rlimits type {:?} is not supported",
                r.typ()
            ));
        }
        if r.soft() > r.hard() {
            return Err(format!(
                "process.rlimits {:?}: soft {} is above hard {}",
                r.typ(),
                r.soft(),
                r.hard()
            ));
        }
    }
    if let Some(c) = p.capabilities() {
        for set in [
            c.bounding(),
            c.effective(),
            c.inheritable(),
            c.permitted(),
            c.ambient(),
        ]
        .into_iter()
        .flatten()
        {
            to_caps(set)?;
        }
    }
    Ok(())
}

fn to_caps(set: &oci_spec::runtime::Capabilities) -> Result<CapsHashSet, String> {
    set.iter()
        .map(|c| {
            let name = format!("CAP_{c}");
            caps::Capability::from_str(&name)
                .map_err(|_| format!("process.capabilities: unknown capability {name}"))
        })
        .collect()
}

/// Applies rlimits (before the user changes: raising a limit needs privilege).
pub(crate) fn set_rlimits(p: &Process) -> R {
    for r in p.rlimits().iter().flatten() {
        let Some(res) = rlimit_resource(r.typ()) else {
            continue;
        };
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: setrlimit with a valid struct.
        if unsafe { libc::setrlimit(res, &lim) } != 0 {
            return Err(SetupError::sys(
                "rlimits",
                format!(
                    "setrlimit {:?} soft {} hard {}",
                    r.typ(),
                    r.soft(),
                    r.hard()
                ),
                nix::errno::Errno::last(),
            ));
        }
    }
    Ok(())
}

pub(crate) fn set_oom_score_adj(p: &Process) -> R {
    if let Some(v) = p.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", v.to_string()).map_err(|e| {
            SetupError::io(
                "oomScoreAdj",
                format!("write {v} to /proc/self/oom_score_adj"),
                &e,
            )
        })?;
    }
    Ok(())
}

/// Finds the executable for `args[0]` in the current root (the container's), searching the
/// process's PATH when the name has no slash. Checked before the container is held, so a
/// missing entrypoint fails create, as with runc.
pub(crate) fn find_executable(p: &Process, where_: &str) -> Result<PathBuf, SetupError> {
    let arg0 = p
        .args()
        .as_ref()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or_default();
    let not_found = || {
        SetupError::new(
            "entrypoint",
            format!("process.args[0] {arg0:?} not found in {where_}"),
        )
    };
    let is_exec = |path: &Path| {
        std::fs::metadata(path)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if arg0.contains('/') {
        let path = if Path::new(&arg0).is_absolute() {
            PathBuf::from(&arg0)
        } else {
            p.cwd().join(&arg0)
        };
        if std::fs::symlink_metadata(&path).is_err() {
            return Err(not_found());
        }
        if !is_exec(&path) {
            return Err(SetupError::new(
                "entrypoint",
                format!("process.args[0] {arg0:?} is not an executable file in {where_}"),
            ));
        }
        return Ok(path);
    }
    let path_var = p
        .env()
        .iter()
        .flatten()
        .find_map(|e| e.strip_prefix("PATH="))
        .map(str::to_owned)
        .unwrap_or_else(|| DEFAULT_PATH.to_owned());
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(&arg0))
        .find(|c| is_exec(c))
        .ok_or_else(not_found)
}

/// Everything from the user change to execve. Never returns on success.
pub(crate) fn finalize_and_exec(
    p: &Process,
    seccomp: Option<&LinuxSeccomp>,
    exe: &Path,
    userns_setgroups: bool,
) -> SetupError {
    // Read the container's /etc/passwd while we still may.
    let env = env_with_home(p);
    match finalize(p, seccomp, userns_setgroups) {
        Ok(()) => exec(p, exe, &env),
        Err(e) => e,
    }
}

/// The process env, plus HOME from the container's /etc/passwd (or "/") when the spec does not
/// set it, as runc does.
fn env_with_home(p: &Process) -> Vec<String> {
    let mut env: Vec<String> = p.env().clone().unwrap_or_default();
    if env.iter().any(|e| e.starts_with("HOME=")) {
        return env;
    }
    let uid = p.user().uid().to_string();
    let home = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|pw| {
            pw.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 6 && f[2] == uid).then(|| f[5].to_owned())
            })
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_owned());
    env.push(format!("HOME={home}"));
    env
}

fn finalize(p: &Process, seccomp: Option<&LinuxSeccomp>, userns_setgroups: bool) -> R {
    let nnp = p.no_new_privileges().unwrap_or(false);
    // No host fd may reach the container (CVE-2024-21626): everything above 2 is closed at
    // exec, including our channel, whose closing tells the caller that exec succeeded. First,
    // before a seccomp filter can be loaded below: the container's own profile may not allow
    // close_range (runtime-tools' default one predates it). Every fd opened after this point is
    // opened close-on-exec (Rust's std does so).
    close_fds_at_exec()?;
    let filter = match seccomp {
        Some(s) => Some(crate::seccomp::build(s).map_err(|e| SetupError::new("seccomp", e))?),
        None => None,
    };
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while we have it.
    if !nnp {
        if let Some(f) = &filter {
            f.load()
                .map_err(|e| SetupError::new("seccomp", format!("load filter: {e}")))?;
        }
    }
    let caps = p.capabilities().as_ref();
    let set_of = |s: Option<&oci_spec::runtime::Capabilities>| {
        s.map(to_caps)
            .transpose()
            .map_err(|e| SetupError::new("capabilities", e))
    };
    let bounding = set_of(caps.and_then(|c| c.bounding().as_ref()))?.unwrap_or_default();
    let effective = set_of(caps.and_then(|c| c.effective().as_ref()))?.unwrap_or_default();
    let permitted = set_of(caps.and_then(|c| c.permitted().as_ref()))?.unwrap_or_default();
    let inheritable = set_of(caps.and_then(|c| c.inheritable().as_ref()))?.unwrap_or_default();
    let ambient = set_of(caps.and_then(|c| c.ambient().as_ref()))?.unwrap_or_default();
    // Bounding first: dropping from it needs CAP_SETPCAP, which the user change may lose.
    for cap in caps::all() {
        if !bounding.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|e| {
                SetupError::new(
                    "capabilities",
                    format!("drop {cap} from the bounding set: {e}"),
                )
            })?;
        }
    }
    // While still privileged: writing /proc/self/attr may need it.
    crate::lsm::set_exec_labels(p)?;
    set_user(p, userns_setgroups)?;
    let cap_err = |set: &str, e: caps::errors::CapsError| {
        SetupError::new("capabilities", format!("set the {set} set: {e}"))
    };
    // capset needs effective within permitted at every call: narrow effective first, then
    // permitted (inheritable while we still hold everything).
    caps::set(None, CapSet::Inheritable, &inheritable).map_err(|e| cap_err("inheritable", e))?;
    caps::set(None, CapSet::Effective, &effective).map_err(|e| cap_err("effective", e))?;
    caps::set(None, CapSet::Permitted, &permitted).map_err(|e| cap_err("permitted", e))?;
    caps::clear(None, CapSet::Ambient).map_err(|e| cap_err("ambient", e))?;
    // The kernel only allows ambient caps that are also permitted and inheritable. runc warns
    // and goes on for the others (its default spec lists ambient caps without inheritable
    // ones); we do the same, see docs/runtime.md.
    for cap in ambient
        .iter()
        .filter(|c| permitted.contains(c) && inheritable.contains(c))
    {
        caps::raise(None, CapSet::Ambient, *cap).map_err(|e| cap_err("ambient", e))?;
    }
    if let Some(mask) = p.user().umask() {
        // SAFETY: umask has no preconditions.
        unsafe { libc::umask(mask as libc::mode_t) };
    }
    chdir_checked(p.cwd())?;
    if nnp {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(SetupError::sys(
                "noNewPrivileges",
                "prctl(PR_SET_NO_NEW_PRIVS)",
                nix::errno::Errno::last(),
            ));
        }
    }
    reset_signals();
    if nnp {
        // As late as possible, so the filter only has to allow execve.
        if let Some(f) = &filter {
            f.load()
                .map_err(|e| SetupError::new("seccomp", format!("load filter: {e}")))?;
        }
    }
    Ok(())
}

/// Marks every fd above 2 close-on-exec: with close_range(CLOSE_RANGE_CLOEXEC) (Linux 5.11),
/// else by walking /proc/self/fd as runc does.
fn close_fds_at_exec() -> R {
    // SAFETY: close_range with flags on a range of fds.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let first = nix::errno::Errno::last();
    let err = |what: &str, e: std::io::Error| {
        SetupError::new(
            "close-fds",
            format!("close_range failed ({first}), and {what}: {e}"),
        )
    };
    let dir = std::fs::read_dir("/proc/self/fd").map_err(|e| err("reading /proc/self/fd", e))?;
    let fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: fcntl on an fd number; one that was the directory's own (now closed) fails
        // with EBADF, which is fine.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0
            && nix::errno::Errno::last() != nix::errno::Errno::EBADF
        {
            return Err(err(
                &format!("fcntl({fd}, F_SETFD, FD_CLOEXEC)"),
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

/// The entrypoint starts with every signal at its default disposition and an empty mask.
/// Ignored signals survive execve, and the Rust runtime of the helper ignores SIGPIPE.
pub(crate) fn reset_signals() {
    /// The kernel's struct sigaction (not glibc's, which refuses signals 32 and 33).
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let dfl = KernelSigaction {
        handler: 0,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: rt_sigaction/rt_sigprocmask with valid pointers and the kernel's sigset size;
    // SIGKILL, SIGSTOP and out-of-range numbers just fail.
    unsafe {
        for sig in 1..=64 {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
        let empty: u64 = 0;
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        );
    }
}

fn set_user(p: &Process, setgroups_allowed: bool) -> R {
    let u = p.user();
    if u.username().is_some() {
        return Err(SetupError::new(
            "user",
            "process.user.username is Windows only and not supported",
        ));
    }
    // Keep the permitted set across the uid change; the sets are written just after.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    if setgroups_allowed {
        let groups: Vec<libc::gid_t> = u.additional_gids().clone().unwrap_or_default();
        // SAFETY: pointer and length of a live Vec.
        if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } != 0 {
            return Err(SetupError::sys(
                "user",
                format!("setgroups {groups:?}"),
                nix::errno::Errno::last(),
            ));
        }
    } else if u.additional_gids().as_ref().is_some_and(|g| !g.is_empty()) {
        return Err(SetupError::new(
            "user",
            "process.user.additionalGids cannot be set: setgroups is denied in this user namespace",
        ));
    }
    // SAFETY: plain integer syscalls.
    if unsafe { libc::setresgid(u.gid(), u.gid(), u.gid()) } != 0 {
        return Err(SetupError::sys(
            "user",
            format!("setresgid {}", u.gid()),
            nix::errno::Errno::last(),
        ));
    }
    // SAFETY: as above.
    if unsafe { libc::setresuid(u.uid(), u.uid(), u.uid()) } != 0 {
        return Err(SetupError::sys(
            "user",
            format!("setresuid {}", u.uid()),
            nix::errno::Errno::last(),
        ));
    }
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    Ok(())
}

/// chdir to the spec cwd and verify the result is inside the container's root: a cwd
/// inherited from the host would show as "(unreachable)" (CVE-2024-21626).
fn chdir_checked(cwd: &Path) -> R {
    std::env::set_current_dir(cwd)
        .map_err(|e| SetupError::io("cwd", format!("process.cwd {}", cwd.display()), &e))?;
    let now = std::env::current_dir().map_err(|e| SetupError::io("cwd", "getcwd", &e))?;
    if !now.is_absolute() || now.starts_with("(unreachable)") {
        return Err(SetupError::new(
            "cwd",
            format!(
                "process.cwd resolves outside the container ({})",
                now.display()
            ),
        ));
    }
    Ok(())
}

fn exec(p: &Process, exe: &Path, env: &[String]) -> SetupError {
    let to_c = |s: &str| CString::new(s).unwrap_or_default();
    let argv: Vec<CString> = p.args().iter().flatten().map(|a| to_c(a)).collect();
    let envp: Vec<CString> = env.iter().map(|e| to_c(e)).collect();
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|c| c.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    let path = CString::new(exe.as_os_str().as_bytes()).unwrap_or_default();
    // SAFETY: null-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::execve(path.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
    SetupError::sys(
        "exec",
        format!("execve {}", exe.display()),
        nix::errno::Errno::last(),
    )
}
