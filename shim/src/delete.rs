//! The `delete` action: containerd runs it when a shim died (and after every clean shim
//! exit), in the bundle directory. It kills whatever is left of the container, removes its
//! cgroup and state, unmounts the rootfs, and answers a DeleteResponse. Everything already
//! gone is not an error. Blocking code, no async runtime.

use std::{io, path::PathBuf, time::SystemTime};

use containerd_shim_protos::{api::DeleteResponse, protobuf::Message};
use lifecycle_runtime::Container;

use crate::{events::timestamp, flags::Flags, mount, task::STATE_DIR};

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("cleaning up container {id}: {source}")]
    Runtime {
        id: String,
        source: lifecycle_runtime::Error,
    },
    #[error(transparent)]
    Mount(#[from] mount::MountError),
    #[error("encoding the DeleteResponse: {0}")]
    Encode(#[source] containerd_shim_protos::protobuf::Error),
}

/// The answer containerd expects from a cleanup: the init killed by SIGKILL, now.
pub fn response(pid: i32) -> Result<Vec<u8>, DeleteError> {
    let mut r = DeleteResponse::new();
    r.pid = pid.max(0) as u32;
    r.exit_status = 128 + libc::SIGKILL as u32;
    r.exited_at = Some(timestamp(SystemTime::now())).into();
    r.write_to_bytes().map_err(DeleteError::Encode)
}

pub fn run(flags: &Flags) -> Result<Vec<u8>, DeleteError> {
    let bundle = match &flags.bundle {
        Some(b) => b.clone(),
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    };
    let state_dir = bundle.join(STATE_DIR);
    let mut pid = 0;
    let mut cleanup = Ok(());
    if state_dir.exists() {
        // delete waits for killed processes through the reaper.
        lifecycle_runtime::reaper::start();
        cleanup = match Container::load(&state_dir) {
            Ok(container) => {
                pid = container.init_pid();
                container.delete()
            }
            Err(lifecycle_runtime::Error::NoState { source, .. })
                if source.kind() == io::ErrorKind::NotFound =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        };
    }
    // The rootfs comes off even when the runtime could not clean up, so that containerd can
    // remove the bundle.
    mount::unmount_all(&bundle.join("rootfs"))?;
    remove_dead_socket(&bundle);
    cleanup.map_err(|source| DeleteError::Runtime {
        id: flags.id.clone(),
        source,
    })?;
    response(pid)
}

/// A shim that was killed leaves its socket file behind: remove it, unless a live shim (the
/// pod's, serving other tasks) still answers there.
fn remove_dead_socket(bundle: &std::path::Path) {
    let Ok(address) = std::fs::read_to_string(bundle.join("address")) else {
        return;
    };
    let path = address
        .trim()
        .strip_prefix("unix://")
        .unwrap_or(address.trim());
    if path.is_empty() || std::os::unix::net::UnixStream::connect(path).is_ok() {
        return;
    }
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_is_sigkill_now() {
        let r = DeleteResponse::parse_from_bytes(&response(42).unwrap()).unwrap();
        assert_eq!(r.pid, 42);
        assert_eq!(r.exit_status, 137);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((r.exited_at.seconds - now).abs() <= 2);
    }

    #[test]
    fn nothing_left_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let flags = Flags::parse(
            [
                "-namespace",
                "n",
                "-id",
                "gone",
                "-bundle",
                &dir.path().display().to_string(),
                "delete",
            ]
            .iter()
            .map(|s| s.to_string()),
        )
        .unwrap();
        let r = DeleteResponse::parse_from_bytes(&run(&flags).unwrap()).unwrap();
        assert_eq!((r.pid, r.exit_status), (0, 137));
    }
}
