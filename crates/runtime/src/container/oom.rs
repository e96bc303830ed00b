//! OOM notification: cgroup v1 eventfd on memory.oom_control, cgroup v2 memory.events
//! (oom_kill counter, watched with inotify).

use std::{
    fs::File,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    path::PathBuf,
};

use super::Container;
use crate::{cgroups::Cgroup, error::Error};

/// What woke an [`OomWatcher`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OomEvent {
    /// The kernel's OOM killer acted in the container's cgroup.
    Oom,
    /// The cgroup was removed (the container was deleted): stop watching.
    Gone,
}

/// Blocks until the container's memory cgroup reports an OOM. One per container; run
/// [`OomWatcher::wait`] on a dedicated thread, or poll [`AsFd::as_fd`] for readability.
pub struct OomWatcher {
    fd: OwnedFd,
    kind: Kind,
}

enum Kind {
    /// The eventfd, and the memory.oom_control file it is registered on (kept open).
    V1 { _control: File, dir: PathBuf },
    /// inotify on memory.events; the last oom_kill count seen.
    V2 { events: PathBuf, last: u64 },
}

impl AsFd for OomWatcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Container {
    /// Starts watching the container's memory cgroup for OOM kills.
    pub fn oom_watcher(&self) -> Result<OomWatcher, Error> {
        match &self.cgroup {
            Cgroup::V1(v1) => {
                let dir = v1.controller_dir("memory").ok_or_else(|| {
                    Error::unsupported("OOM notification (no cgroup v1 memory controller)")
                })?;
                let control_path = dir.join("memory.oom_control");
                let control = File::open(&control_path).map_err(|e| Error::Cgroup {
                    path: control_path.clone(),
                    what: "open".into(),
                    source: e,
                })?;
                // SAFETY: eventfd with flags; returns a fresh fd.
                let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
                if efd < 0 {
                    return Err(Error::io("eventfd", std::io::Error::last_os_error()));
                }
                // SAFETY: fresh fd.
                let fd = unsafe { OwnedFd::from_raw_fd(efd) };
                let reg = format!("{} {}", fd.as_raw_fd(), control.as_raw_fd());
                crate::cgroups::write(&dir, "cgroup.event_control", &reg)?;
                Ok(OomWatcher {
                    fd,
                    kind: Kind::V1 {
                        _control: control,
                        dir,
                    },
                })
            }
            Cgroup::V2(v2) => {
                let events = v2.dir().join("memory.events");
                if !events.exists() {
                    return Err(Error::unsupported(format!(
                        "OOM notification ({} is missing: no memory controller)",
                        events.display()
                    )));
                }
                // SAFETY: inotify_init1 with flags.
                let ifd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
                if ifd < 0 {
                    return Err(Error::io("inotify_init1", std::io::Error::last_os_error()));
                }
                // SAFETY: fresh fd.
                let fd = unsafe { OwnedFd::from_raw_fd(ifd) };
                let c = std::ffi::CString::new(events.as_os_str().as_encoded_bytes())
                    .unwrap_or_default();
                // SAFETY: valid fd and C string.
                if unsafe {
                    libc::inotify_add_watch(
                        fd.as_raw_fd(),
                        c.as_ptr(),
                        libc::IN_MODIFY | libc::IN_DELETE_SELF | libc::IN_IGNORED,
                    )
                } < 0
                {
                    return Err(Error::io(
                        format!("inotify watch {}", events.display()),
                        std::io::Error::last_os_error(),
                    ));
                }
                let last = oom_kills(&events).unwrap_or(0);
                Ok(OomWatcher {
                    fd,
                    kind: Kind::V2 { events, last },
                })
            }
        }
    }
}

fn oom_kills(events: &std::path::Path) -> Option<u64> {
    let text = std::fs::read_to_string(events).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}

impl OomWatcher {
    /// Blocks until the next OOM (or until the cgroup is removed).
    pub fn wait(&mut self) -> Result<OomEvent, Error> {
        loop {
            let mut buf = [0u8; 4096];
            // SAFETY: read into a live buffer.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::io("wait for an OOM event", err));
            }
            match &mut self.kind {
                // The eventfd also fires when the cgroup goes away.
                Kind::V1 { dir, .. } => {
                    return Ok(if dir.exists() {
                        OomEvent::Oom
                    } else {
                        OomEvent::Gone
                    })
                }
                Kind::V2 { events, last } => {
                    let Some(now) = oom_kills(events) else {
                        return Ok(OomEvent::Gone);
                    };
                    if now > *last {
                        *last = now;
                        return Ok(OomEvent::Oom);
                    }
                }
            }
        }
    }
}
