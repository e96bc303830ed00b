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
        let not_running = || Error::NotRunning {
            id: self.id.clone(),
            pid: self.init_pid,
        };
        // A pidfd taken before the start-time check names exactly the process we checked: a
        // pid recycled in between can never receive the signal.
        // SAFETY: pidfd_open with a pid and no flags.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.init_pid, 0) };
        if pidfd < 0 {
            return Err(not_running());
        }
        // SAFETY: a fresh fd from the kernel.
        let pidfd =
            unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(pidfd as i32) };
        if !self.init_alive() {
            return Err(not_running());
        }
        use std::os::fd::AsRawFd;
        // SAFETY: pidfd_send_signal on our pidfd, no siginfo.
        if unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        } != 0
        {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ESRCH) {
                return Err(not_running());
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
