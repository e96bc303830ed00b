//! The helper executable, made once per process and used for every helper: a container
//! process that reaches a helper through /proc (CVE-2019-5736) must find a file it cannot
//! change, never the writable binary on disk. Two ways, the first that works:
//!
//! 1. a read-only, detached bind mount of `/proc/self/exe` (`open_tree(OPEN_TREE_CLONE)` and
//!    `mount_setattr(MOUNT_ATTR_RDONLY)`, no mount namespace needed, so a multi-threaded caller
//!    can do it). Opening it for writing fails with EROFS. It costs no memory: its pages are the
//!    binary's own page cache, shared with every shim process. This is what runc's "ro bind"
//!    sealing does, without runc's temporary mount namespace.
//! 2. a sealed memfd copy (`F_SEAL_SEAL|SHRINK|GROW|WRITE`), where the kernel or the caller's
//!    privileges refuse detached mounts. It costs the binary's size in memory per process.
//!
//! Either way the helper is exec'd through `/proc/self/fd/N` of that descriptor, so an upgrade
//! that replaces the file on disk does not change what running helpers are.

use std::{
    fs::File,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::process::CommandExt,
    },
    path::PathBuf,
    process::Command,
    sync::OnceLock,
};

use crate::{channel, error::Error, reaper, Stdio};

/// argv[1] that makes a process run as a helper.
pub(crate) const HELPER_ARG: &str = "__lifecycle_helper";

/// How the helper executable is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sealing {
    /// A detached read-only bind mount of the running binary (no copy).
    ReadOnlyMount,
    /// A sealed memfd copy of the running binary.
    SealedCopy,
}

/// The protected handle of this process's executable.
pub struct HelperExe {
    fd: OwnedFd,
    sealing: Sealing,
}

static EXE: OnceLock<HelperExe> = OnceLock::new();

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: u64 = 0x1;

impl HelperExe {
    /// The process-wide handle, made on first use.
    pub fn get() -> Result<&'static HelperExe, Error> {
        if let Some(exe) = EXE.get() {
            return Ok(exe);
        }
        let exe = match Self::read_only_mount() {
            Ok(exe) => exe,
            Err(mount_err) => {
                log::debug!("read-only mount of the helper executable refused ({mount_err}); using a sealed copy");
                Self::sealed_copy()?
            }
        };
        // Two threads racing here both made one; one is dropped.
        let _ = EXE.set(exe);
        EXE.get()
            .ok_or_else(|| Error::Protocol("helper executable vanished".into()))
    }

    /// A detached, read-only bind mount of `/proc/self/exe`.
    pub fn read_only_mount() -> Result<HelperExe, Error> {
        // SAFETY: open_tree with a static C string; the result is checked.
        let raw = unsafe {
            libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                c"/proc/self/exe".as_ptr(),
                OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
            )
        };
        if raw < 0 {
            return Err(Error::io(
                "open_tree(/proc/self/exe) for the helper executable",
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: open_tree returned a fresh fd.
        let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        // SAFETY: mount_setattr on our fd with a properly sized struct.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                fd.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_EMPTY_PATH,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if rc != 0 {
            return Err(Error::io(
                "make the helper executable's mount read-only",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(HelperExe {
            fd,
            sealing: Sealing::ReadOnlyMount,
        })
    }

    /// A sealed memfd copy of `/proc/self/exe`.
    pub fn sealed_copy() -> Result<HelperExe, Error> {
        let mut src =
            File::open("/proc/self/exe").map_err(|e| Error::io("open /proc/self/exe", e))?;
        // SAFETY: memfd_create with a static C string.
        let raw = unsafe {
            libc::memfd_create(
                c"lifecycle-helper".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if raw < 0 {
            return Err(Error::io(
                "memfd_create for the helper executable",
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: memfd_create returned a fresh fd.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut dst = File::from(fd);
        std::io::copy(&mut src, &mut dst)
            .map_err(|e| Error::io("copy /proc/self/exe into the sealed memfd", e))?;
        let seals =
            libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
        // SAFETY: fcntl on an fd we own.
        if unsafe { libc::fcntl(dst.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(Error::io(
                "seal the helper executable memfd",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(HelperExe {
            fd: dst.into(),
            sealing: Sealing::SealedCopy,
        })
    }

    /// How this handle is protected.
    pub fn sealing(&self) -> Sealing {
        self.sealing
    }

    /// Path through which the protected executable can be executed by this process.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

/// A spawned helper: its pid (reaped by the reaper, never waited for here) and our channel end.
pub(crate) struct Helper {
    pub pid: i32,
    pub chan: channel::CallerEnd,
}

/// Starts a helper with `stdio` as its fds 0-2 (inherited by the container process it makes).
pub(crate) fn spawn_helper(stdio: Stdio) -> Result<Helper, Error> {
    let exe = HelperExe::get()?;
    let (caller, helper) =
        channel::pair().map_err(|e| Error::io("socketpair for the helper", e))?;
    let child_fd = helper.as_raw_fd();
    let mut cmd = Command::new(exe.path());
    cmd.arg0("lifecycle-helper")
        .arg(HELPER_ARG)
        .arg(child_fd.to_string());
    cmd.stdin(to_std(stdio.stdin))
        .stdout(to_std(stdio.stdout))
        .stderr(to_std(stdio.stderr));
    // SAFETY: only fcntl between fork and exec (async-signal-safe): the helper's end of the
    // socketpair is inherited by this one child and by no other concurrently spawned process.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(child_fd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    reaper::start();
    let child = cmd.spawn().map_err(|e| Error::io("spawn the helper", e))?;
    reaper::notify();
    drop(helper);
    // The Child handle is dropped without waiting: the reaper reaps the helper.
    Ok(Helper {
        pid: child.id() as i32,
        chan: caller,
    })
}

fn to_std(fd: Option<OwnedFd>) -> std::process::Stdio {
    match fd {
        Some(fd) => std::process::Stdio::from(fd),
        None => std::process::Stdio::null(),
    }
}
