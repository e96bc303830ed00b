//! OOM notification for cgroup v1: an eventfd registered on the container's
//! `memory.oom_control` through `cgroup.event_control`, read on a small thread that publishes
//! TaskOOM. The kernel also signals the eventfd when the cgroup is removed, which ends the
//! thread. (cgroup v2's `memory.events` is not watched yet.)

use std::{
    fs::{self, File},
    io::{self, Read},
    os::fd::{AsRawFd, FromRawFd},
    path::{Path, PathBuf},
    sync::Arc,
    thread,
};

use containerd_shim_protos::events::task::TaskOOM;

use crate::events::{Event, EventSink};

const MEMORY_V1: &str = "/sys/fs/cgroup/memory";

#[derive(Debug, thiserror::Error)]
pub enum OomError {
    #[error("cgroup {path}: {source}")]
    Cgroup { path: PathBuf, source: io::Error },
    #[error("eventfd: {0}")]
    EventFd(#[source] io::Error),
}

/// Starts watching the container's memory cgroup (v1), if there is one.
pub fn watch(
    container_id: &str,
    cgroups_path: Option<&str>,
    events: Arc<dyn EventSink>,
) -> Result<(), OomError> {
    let Some(path) = cgroups_path.filter(|p| p.starts_with('/')) else {
        return Ok(());
    };
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        return Ok(());
    }
    let dir = Path::new(MEMORY_V1).join(path.trim_start_matches('/'));
    if !dir.is_dir() {
        return Ok(());
    }
    let err = |source| OomError::Cgroup {
        path: dir.clone(),
        source,
    };
    let control = File::open(dir.join("memory.oom_control")).map_err(err)?;
    // SAFETY: eventfd with flags only; the fd is owned by the File below.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if efd < 0 {
        return Err(OomError::EventFd(io::Error::last_os_error()));
    }
    // SAFETY: efd is a fresh descriptor we own.
    let mut eventfd = unsafe { File::from_raw_fd(efd) };
    fs::write(
        dir.join("cgroup.event_control"),
        format!("{} {}", eventfd.as_raw_fd(), control.as_raw_fd()),
    )
    .map_err(err)?;
    let id = container_id.to_owned();
    thread::Builder::new()
        .name("oom".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let _control = control;
            let mut buf = [0u8; 8];
            while eventfd.read_exact(&mut buf).is_ok() {
                // The same wakeup comes when the cgroup is removed.
                if !dir.exists() {
                    break;
                }
                let mut e = TaskOOM::new();
                e.container_id = id.clone();
                log::info!("container {id} hit its memory limit (OOM)");
                events.publish(Event::Oom(e));
            }
        })
        .map_err(OomError::EventFd)?;
    Ok(())
}
