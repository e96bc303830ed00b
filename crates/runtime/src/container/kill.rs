//! kill, pids, pause, resume, update.

use oci_spec::runtime::LinuxResources;

use super::Container;
use crate::error::Error;

impl Container {
    /// Sends `signal` to the init, or with `all` to every process in the container's cgroup.
    pub fn kill(&self, signal: i32, all: bool) -> Result<(), Error> {
        if all {
            return self.cgroup.signal_all(signal);
        }
        if !self.init_alive() {
            return Err(Error::NotRunning {
                id: self.id.clone(),
                pid: self.init_pid,
            });
        }
        // SAFETY: kill with integers; the pid was just checked to be our init.
        if unsafe { libc::kill(self.init_pid, signal) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ESRCH) {
                return Err(Error::NotRunning {
                    id: self.id.clone(),
                    pid: self.init_pid,
                });
            }
            return Err(Error::io(format!("kill({}, {signal})", self.init_pid), err));
        }
        Ok(())
    }

    /// Pids (caller's pid namespace) of every process in the container's cgroup.
    pub fn pids(&self) -> Result<Vec<i32>, Error> {
        self.cgroup.pids()
    }

    /// Freezes every process of the container.
    pub fn pause(&self) -> Result<(), Error> {
        self.cgroup.freeze(true)
    }

    pub fn resume(&self) -> Result<(), Error> {
        self.cgroup.freeze(false)
    }

    /// Applies new resource limits. Device rules cannot change after create: an update that
    /// carries the create-time rules (containerd's CRI sends the whole resources object) is
    /// fine, different rules fail by name rather than being ignored.
    pub fn update(&self, resources: &LinuxResources) -> Result<(), Error> {
        let created = self
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.devices().clone())
            .unwrap_or_default();
        if let Some(devices) = resources.devices() {
            if !devices.is_empty() && *devices != created {
                return Err(Error::unsupported(
                    "linux.resources.devices in an update (device rules are fixed at create)",
                ));
            }
        }
        self.cgroup.apply(resources)
    }
}
