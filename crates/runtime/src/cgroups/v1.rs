//! cgroup v1: one directory per hierarchy, the same relative path in each.

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};
use serde::{Deserialize, Serialize};

use super::{read_trim, write, write_field};
use crate::error::Error;

/// Marks the cgroup2 tree of a hybrid host in the hierarchy list (joined, never mounted into
/// the container, no controllers).
pub(crate) const HYBRID_V2: &str = "(cgroup2)";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Hierarchy {
    pub mountpoint: PathBuf,
    /// Controllers (or `name=...`) mounted there.
    pub controllers: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct V1 {
    pub hierarchies: Vec<Hierarchy>,
    pub path: String,
}

impl V1 {
    pub fn new(hierarchies: Vec<Hierarchy>, path: &str) -> Self {
        V1 {
            hierarchies,
            path: path.to_owned(),
        }
    }

    fn rel(&self) -> &str {
        self.path.trim_start_matches('/')
    }

    pub fn dirs(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.hierarchies
            .iter()
            .map(|h| h.mountpoint.join(self.rel()))
    }

    /// The directory of the hierarchy that has `controller`.
    pub fn controller_dir(&self, controller: &str) -> Option<PathBuf> {
        self.hierarchies
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .map(|h| h.mountpoint.join(self.rel()))
    }

    /// The directory used to list processes (pids, else freezer, else the first).
    pub fn main_dir(&self) -> PathBuf {
        self.controller_dir("pids")
            .or_else(|| self.controller_dir("freezer"))
            .or_else(|| self.dirs().next())
            .unwrap_or_default()
    }

    pub fn create(&self, resources: Option<&LinuxResources>) -> Result<(), Error> {
        for h in &self.hierarchies {
            let dir = h.mountpoint.join(self.rel());
            if h.controllers.iter().any(|c| c == "cpuset") {
                create_cpuset(&h.mountpoint, self.rel())?;
            } else {
                fs::create_dir_all(&dir).map_err(|e| Error::Cgroup {
                    path: dir.clone(),
                    what: "mkdir".into(),
                    source: e,
                })?;
            }
        }
        let empty = LinuxResources::default();
        self.apply_inner(resources.unwrap_or(&empty), true)
    }

    pub fn apply(&self, r: &LinuxResources) -> Result<(), Error> {
        self.apply_inner(r, false)
    }

    fn need(&self, controller: &str, field: &str) -> Result<PathBuf, Error> {
        self.controller_dir(controller).ok_or_else(|| {
            Error::unsupported(format!(
                "{field} (no cgroup v1 {controller} controller on this host)"
            ))
        })
    }

    fn apply_inner(&self, r: &LinuxResources, creating: bool) -> Result<(), Error> {
        if creating {
            // Devices are set at create only: an update never widens what a container can open.
            if let Some(dir) = self.controller_dir("devices") {
                apply_devices(&dir, r.devices().as_deref().unwrap_or(&[]))?;
            } else if r.devices().as_ref().is_some_and(|d| !d.is_empty()) {
                return Err(Error::unsupported(
                    "linux.resources.devices (no cgroup v1 devices controller on this host)",
                ));
            }
        }
        if let Some(m) = r.memory() {
            let dir = self.need("memory", "linux.resources.memory")?;
            if let Some(v) = m.reservation() {
                write(&dir, "memory.soft_limit_in_bytes", &v.to_string())?;
            }
            let limit = m.limit();
            let swap = m.swap();
            // memory.memsw must stay >= memory.limit: raise whichever must go first.
            match (limit, swap) {
                (Some(l), Some(s)) => {
                    if write(&dir, "memory.limit_in_bytes", &l.to_string()).is_err() {
                        write_field(
                            &dir,
                            "memory.memsw.limit_in_bytes",
                            &s.to_string(),
                            "linux.resources.memory.swap",
                        )?;
                        write(&dir, "memory.limit_in_bytes", &l.to_string())?;
                    } else {
                        write_field(
                            &dir,
                            "memory.memsw.limit_in_bytes",
                            &s.to_string(),
                            "linux.resources.memory.swap",
                        )?;
                    }
                }
                (Some(l), None) => write(&dir, "memory.limit_in_bytes", &l.to_string())?,
                (None, Some(s)) => write_field(
                    &dir,
                    "memory.memsw.limit_in_bytes",
                    &s.to_string(),
                    "linux.resources.memory.swap",
                )?,
                (None, None) => {}
            }
            if let Some(v) = m.kernel_tcp() {
                write_field(
                    &dir,
                    "memory.kmem.tcp.limit_in_bytes",
                    &v.to_string(),
                    "linux.resources.memory.kernelTCP",
                )?;
            }
            warn_kernel_memory(m);
            if let Some(v) = m.swappiness() {
                if v > 100 {
                    return Err(Error::InvalidSpec(format!(
                        "linux.resources.memory.swappiness {v} is above 100"
                    )));
                }
                write(&dir, "memory.swappiness", &v.to_string())?;
            }
            if let Some(true) = m.disable_oom_killer() {
                write(&dir, "memory.oom_control", "1")?;
            }
        }
        if let Some(c) = r.cpu() {
            let needs_cpu = c.shares().is_some()
                || c.quota().is_some()
                || c.period().is_some()
                || c.realtime_runtime().is_some()
                || c.realtime_period().is_some();
            if needs_cpu {
                let dir = self.need("cpu", "linux.resources.cpu")?;
                if let Some(v) = c.shares() {
                    write(&dir, "cpu.shares", &v.to_string())?;
                }
                if let Some(v) = c.period() {
                    write(&dir, "cpu.cfs_period_us", &v.to_string())?;
                }
                if let Some(v) = c.quota() {
                    write(&dir, "cpu.cfs_quota_us", &v.to_string())?;
                }
                if let Some(v) = c.realtime_period() {
                    write_field(
                        &dir,
                        "cpu.rt_period_us",
                        &v.to_string(),
                        "linux.resources.cpu.realtimePeriod",
                    )?;
                }
                if let Some(v) = c.realtime_runtime() {
                    write_field(
                        &dir,
                        "cpu.rt_runtime_us",
                        &v.to_string(),
                        "linux.resources.cpu.realtimeRuntime",
                    )?;
                }
            }
            if c.idle().is_some() {
                return Err(Error::unsupported(
                    "linux.resources.cpu.idle (cgroup v2 only)",
                ));
            }
            if c.burst().is_some() {
                let dir = self.need("cpu", "linux.resources.cpu.burst")?;
                write_field(
                    &dir,
                    "cpu.cfs_burst_us",
                    &c.burst().unwrap_or_default().to_string(),
                    "linux.resources.cpu.burst",
                )?;
            }
            if let Some(v) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
                write(
                    &self.need("cpuset", "linux.resources.cpu.cpus")?,
                    "cpuset.cpus",
                    v,
                )?;
            }
            if let Some(v) = c.mems().as_deref().filter(|s| !s.is_empty()) {
                write(
                    &self.need("cpuset", "linux.resources.cpu.mems")?,
                    "cpuset.mems",
                    v,
                )?;
            }
        }
        if let Some(p) = r.pids() {
            let dir = self.need("pids", "linux.resources.pids")?;
            let v = if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".into()
            };
            write(&dir, "pids.max", &v)?;
        }
        if let Some(b) = r.block_io() {
            let dir = self.need("blkio", "linux.resources.blockIO")?;
            if let Some(w) = b.weight() {
                write_field(
                    &dir,
                    "blkio.weight",
                    &w.to_string(),
                    "linux.resources.blockIO.weight",
                )?;
            }
            if let Some(w) = b.leaf_weight() {
                write_field(
                    &dir,
                    "blkio.leaf_weight",
                    &w.to_string(),
                    "linux.resources.blockIO.leafWeight",
                )?;
            }
            for d in b.weight_device().as_deref().unwrap_or(&[]) {
                if let Some(w) = d.weight() {
                    write_field(
                        &dir,
                        "blkio.weight_device",
                        &format!("{}:{} {w}", d.major(), d.minor()),
                        "linux.resources.blockIO.weightDevice",
                    )?;
                }
                if let Some(w) = d.leaf_weight() {
                    write_field(
                        &dir,
                        "blkio.leaf_weight_device",
                        &format!("{}:{} {w}", d.major(), d.minor()),
                        "linux.resources.blockIO.weightDevice.leafWeight",
                    )?;
                }
            }
            let throttles = [
                (
                    b.throttle_read_bps_device(),
                    "blkio.throttle.read_bps_device",
                    "throttleReadBpsDevice",
                ),
                (
                    b.throttle_write_bps_device(),
                    "blkio.throttle.write_bps_device",
                    "throttleWriteBpsDevice",
                ),
                (
                    b.throttle_read_iops_device(),
                    "blkio.throttle.read_iops_device",
                    "throttleReadIOPSDevice",
                ),
                (
                    b.throttle_write_iops_device(),
                    "blkio.throttle.write_iops_device",
                    "throttleWriteIOPSDevice",
                ),
            ];
            for (list, file, field) in throttles {
                for d in list.as_deref().unwrap_or(&[]) {
                    write_field(
                        &dir,
                        file,
                        &format!("{}:{} {}", d.major(), d.minor(), d.rate()),
                        &format!("linux.resources.blockIO.{field}"),
                    )?;
                }
            }
        }
        for h in r.hugepage_limits().as_deref().unwrap_or(&[]) {
            let dir = self.need("hugetlb", "linux.resources.hugepageLimits")?;
            write_field(
                &dir,
                &format!("hugetlb.{}.limit_in_bytes", h.page_size()),
                &h.limit().to_string(),
                "linux.resources.hugepageLimits",
            )?;
        }
        if let Some(n) = r.network() {
            if let Some(id) = n.class_id() {
                write(
                    &self.need("net_cls", "linux.resources.network.classID")?,
                    "net_cls.classid",
                    &id.to_string(),
                )?;
            }
            for p in n.priorities().as_deref().unwrap_or(&[]) {
                write(
                    &self.need("net_prio", "linux.resources.network.priorities")?,
                    "net_prio.ifpriomap",
                    &format!("{} {}", p.name(), p.priority()),
                )?;
            }
        }
        if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
            return Err(Error::unsupported("linux.resources.rdma"));
        }
        if r.unified().as_ref().is_some_and(|m| !m.is_empty()) {
            return Err(Error::unsupported(
                "linux.resources.unified (cgroup v2 only; this host uses cgroup v1)",
            ));
        }
        Ok(())
    }

    pub fn freeze(&self, frozen: bool) -> Result<(), Error> {
        let dir = self.need("freezer", "pause/resume")?;
        if !dir.exists() {
            return Ok(());
        }
        let want = if frozen { "FROZEN" } else { "THAWED" };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            write(&dir, "freezer.state", want)?;
            if read_trim(&dir.join("freezer.state"))? == want {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Cgroup {
                    path: dir,
                    what: format!("freezer.state did not reach {want}"),
                    source: std::io::Error::from(std::io::ErrorKind::TimedOut),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A new cpuset cgroup has empty cpus/mems, and a process cannot join it: copy the parent's
/// down the path, as runc does.
fn create_cpuset(mountpoint: &Path, rel: &str) -> Result<(), Error> {
    let mut dir = mountpoint.to_path_buf();
    for comp in rel.split('/').filter(|c| !c.is_empty()) {
        let parent = dir.clone();
        dir.push(comp);
        if !dir.exists() {
            fs::create_dir(&dir)
                .or_else(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(|e| Error::Cgroup {
                    path: dir.clone(),
                    what: "mkdir".into(),
                    source: e,
                })?;
        }
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if read_trim(&dir.join(file))?.is_empty() {
                let v = read_trim(&parent.join(file))?;
                write(&dir, file, &v)?;
            }
        }
    }
    Ok(())
}

fn device_rule(d: &LinuxDeviceCgroup) -> String {
    let typ = match d.typ() {
        None | Some(LinuxDeviceType::A) => "a",
        Some(LinuxDeviceType::B) => "b",
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => "c",
        Some(LinuxDeviceType::P) => "p",
    };
    let major = d.major().map_or("*".to_owned(), |m| m.to_string());
    let minor = d.minor().map_or("*".to_owned(), |m| m.to_string());
    let access = d
        .access()
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or("rwm");
    if typ == "a" {
        return format!("a {major}:{minor} {access}");
    }
    format!("{typ} {major}:{minor} {access}")
}

fn apply_devices(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), Error> {
    for r in rules {
        let access = r.access().as_deref().unwrap_or("rwm");
        if access.chars().any(|c| !matches!(c, 'r' | 'w' | 'm')) {
            return Err(Error::InvalidSpec(format!(
                "linux.resources.devices access {access:?} must be made of r, w, m"
            )));
        }
        let file = if r.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        write(dir, file, &device_rule(r))?;
    }
    Ok(())
}

/// `memory.kernel` is deprecated by the runtime spec (1.1, NOT RECOMMENDED), and Linux 5.16
/// removed kernel memory limits; runc 1.0 and later ignore it. So do we, saying so in the log.
pub(crate) fn warn_kernel_memory(m: &oci_spec::runtime::LinuxMemory) {
    #[allow(deprecated)]
    if let Some(v) = m.kernel() {
        log::warn!(
            "linux.resources.memory.kernel ({v}) is ignored: kernel memory limits were removed \
             from Linux (runc ignores it too)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_rules_format_like_runc() {
        let d = oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap();
        assert_eq!(device_rule(&d), "a *:* rwm");
        let d = oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .access("rw")
            .build()
            .unwrap();
        assert_eq!(device_rule(&d), "c 1:3 rw");
    }
}
