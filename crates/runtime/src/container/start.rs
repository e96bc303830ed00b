//! start: release the held entrypoint, then run poststart hooks.

use super::Container;
use crate::{
    channel::{FromHelper, ToHelper},
    error::Error,
    hooks,
};

impl Container {
    /// Releases the entrypoint. Returns once the entrypoint was exec'd (or failed to be), then
    /// runs the OCI poststart hooks; if one fails, the container is killed and start fails.
    pub fn start(&self) -> Result<(), Error> {
        let held = self
            .held
            .lock()
            .map_err(|_| Error::Protocol("container lock poisoned".into()))?
            .take();
        let Some(chan) = held else {
            if self.exec_fifo {
                self.start_exec_fifo()?;
                return self.poststart();
            }
            return Err(Error::State {
                id: self.id.clone(),
                what: "not in the created state (already started, or loaded from state)".into(),
            });
        };
        if !self.init_alive() {
            return Err(Error::NotRunning {
                id: self.id.clone(),
                pid: self.init_pid,
            });
        }
        chan.send(&ToHelper::Start)
            .map_err(|e| Error::io("release the entrypoint", e))?;
        // The channel closes on exec (close-on-exec): EOF is success.
        match chan.recv() {
            Ok(None) => {}
            Ok(Some((FromHelper::Failed(e), _))) => return Err(e.into()),
            Ok(Some((other, _))) => {
                return Err(Error::Protocol(format!(
                    "unexpected message at start: {other:?}"
                )))
            }
            Err(e) => return Err(Error::io("wait for the entrypoint exec", e)),
        }
        self.poststart()
    }

    /// OCI poststart hooks; if one fails, the container is killed.
    fn poststart(&self) -> Result<(), Error> {
        let poststart = self
            .spec
            .hooks()
            .as_ref()
            .and_then(|h| h.poststart().clone())
            .unwrap_or_default();
        if !poststart.is_empty() {
            if let Err(e) =
                hooks::run_in_caller("poststart", &poststart, &self.hook_state("running"))
            {
                // As runc: a failed poststart hook kills the container and fails start (the
                // runtime spec only asks for a warning; see docs/runtime.md).
                if let Err(ke) = self.cgroup.signal_all(libc::SIGKILL) {
                    log::warn!(
                        "container {}: kill after a failed poststart hook: {ke}",
                        self.id
                    );
                }
                return Err(e);
            }
        }
        Ok(())
    }
}

impl Container {
    /// Start of a [`crate::Hold::ExecFifo`] container, from any process: open exec.fifo for
    /// reading (which releases the init blocked opening it for writing), read its byte, remove
    /// the FIFO (from then on the status is running), then read until EOF: the write end is
    /// close-on-exec, so EOF means the entrypoint was exec'd, and anything before it is the
    /// init's error. The init is checked while waiting, so a dead one never hangs start.
    fn start_exec_fifo(&self) -> Result<(), Error> {
        use std::{
            io::Read,
            os::{fd::AsRawFd, unix::fs::OpenOptionsExt},
        };
        let path = self.exec_fifo_path();
        let not_created = || Error::State {
            id: self.id.clone(),
            what: "not in the created state (already started)".into(),
        };
        if !self.init_alive() {
            return Err(Error::NotRunning {
                id: self.id.clone(),
                pid: self.init_pid,
            });
        }
        // Non-blocking: an open for reading with no writer yet must not block (a reader never
        // sees POLLHUP before the first writer came).
        let mut f = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_created()),
            Err(e) => return Err(Error::io(format!("open {}", path.display()), e)),
        };
        let mut got_byte = false;
        let mut report = Vec::new();
        loop {
            let mut pfd = libc::pollfd {
                fd: f.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll on one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, 100) };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::io("poll exec.fifo", err));
            }
            if n == 0 {
                if !self.init_alive() {
                    if got_byte {
                        break;
                    }
                    return Err(Error::NotRunning {
                        id: self.id.clone(),
                        pid: self.init_pid,
                    });
                }
                continue;
            }
            let mut buf = [0u8; 4096];
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    let mut data = &buf[..k];
                    if !got_byte {
                        got_byte = true;
                        data = &data[1..];
                        // Running from here on, whatever happens next.
                        if let Err(e) = std::fs::remove_file(&path) {
                            log::warn!("container {}: remove {}: {e}", self.id, path.display());
                        }
                    }
                    report.extend_from_slice(data);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("read exec.fifo", e)),
            }
        }
        if !got_byte {
            // EOF before the byte: the writer vanished (killed) before releasing.
            return Err(Error::NotRunning {
                id: self.id.clone(),
                pid: self.init_pid,
            });
        }
        if report.is_empty() {
            return Ok(());
        }
        match serde_json::from_slice::<crate::error::SetupError>(&report) {
            Ok(e) => Err(e.into()),
            Err(_) => Err(Error::Protocol(format!(
                "unexpected data on exec.fifo: {:?}",
                String::from_utf8_lossy(&report)
            ))),
        }
    }
}
