//! delete: kill what is left, remove the cgroup, poststop hooks, remove the state.

use super::Container;
use crate::{error::Error, hooks};

impl Container {
    /// SIGKILLs whatever is left in the cgroup, waits until it is empty, removes the cgroup,
    /// runs poststop hooks (failures are logged, as the runtime spec says) and removes the
    /// state directory. Idempotent: something already gone is not an error.
    pub fn delete(&self) -> Result<(), Error> {
        // Closing the held channel makes a held init exit on its own.
        if let Ok(mut held) = self.held.lock() {
            held.take();
        }
        self.cgroup.destroy()?;
        let state_file = self.state_dir.join(crate::state::STATE_FILE);
        if state_file.exists() {
            let poststop = self
                .spec
                .hooks()
                .as_ref()
                .and_then(|h| h.poststop().clone())
                .unwrap_or_default();
            if !poststop.is_empty() {
                if let Err(e) =
                    hooks::run_in_caller("poststop", &poststop, &self.hook_state("stopped"))
                {
                    log::warn!("container {}: {e}", self.id);
                }
            }
        }
        match std::fs::remove_dir_all(&self.state_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(
                format!("remove state dir {}", self.state_dir.display()),
                e,
            )),
        }
    }
}
