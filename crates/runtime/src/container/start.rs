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
        let chan = self
            .held
            .lock()
            .map_err(|_| Error::Protocol("container lock poisoned".into()))?
            .take()
            .ok_or_else(|| Error::State {
                id: self.id.clone(),
                what: "not in the created state (already started, or loaded from state)".into(),
            })?;
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
