//! The helper executable: a sealed, read-only memfd copy of `/proc/self/exe`, made once per
//! process. Helpers are spawned from it (via `/proc/self/fd/N`), so a container process that
//! reaches a helper through /proc finds an immutable anonymous file, never the binary on disk
//! (CVE-2019-5736). An upgrade that replaces the file on disk does not affect running helpers.

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

/// The sealed copy of this process's executable.
pub struct HelperExe {
    fd: OwnedFd,
}

static EXE: OnceLock<HelperExe> = OnceLock::new();

impl HelperExe {
    /// The process-wide copy, made on first use.
    pub fn get() -> Result<&'static HelperExe, Error> {
        if let Some(exe) = EXE.get() {
            return Ok(exe);
        }
        let exe = Self::make()?;
        // Two threads racing here both made a copy; one is dropped.
        let _ = EXE.set(exe);
        EXE.get()
            .ok_or_else(|| Error::Protocol("helper executable vanished".into()))
    }

    fn make() -> Result<HelperExe, Error> {
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
        Ok(HelperExe { fd: dst.into() })
    }

    /// Path through which the sealed copy can be executed by this process.
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
