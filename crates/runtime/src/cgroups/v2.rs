//! cgroup v2 (unified hierarchy). Only cgroup.procs, cgroup.freeze and cgroup.kill can be
//! exercised on this project's CI host (its v2 tree has no controllers); controller files are
//! unit-tested against a fake cgroupfs.

use std::{
    fs,
    path::PathBuf,
    time::{Duration, Instant},
};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use super::{read_trim, write};
use crate::error::Error;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct V2 {
    /// The cgroup2 mount point (injectable for tests).
    pub root: PathBuf,
    pub path: String,
}

/// cpu.shares (v1, 2..262144) to cpu.weight (v2, 1..10000), the conversion runc and crun use.
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.saturating_sub(2) * 9999) / 262142
}

impl V2 {
    pub fn new(root: PathBuf, path: &str) -> Self {
        V2 {
            root,
            path: path.to_owned(),
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.root.join(self.path.trim_start_matches('/'))
    }

    pub fn create(&self, resources: Option<&LinuxResources>) -> Result<(), Error> {
        let needed = resources.map(needed_controllers).unwrap_or_default();
        // Enable the needed controllers in every ancestor so the leaf gets their files.
        let mut dir = self.root.clone();
        for comp in self.path.split('/').filter(|c| !c.is_empty()) {
            self.enable(&dir, &needed)?;
            dir.push(comp);
            if let Err(e) = fs::create_dir(&dir) {
                if e.kind() != std::io::ErrorKind::AlreadyExists {
                    return Err(Error::Cgroup {
                        path: dir,
                        what: "mkdir".into(),
                        source: e,
                    });
                }
            }
        }
        match resources {
            Some(r) => self.apply_inner(r, true),
            None => Ok(()),
        }
    }

    fn enable(&self, dir: &std::path::Path, needed: &[&str]) -> Result<(), Error> {
        if needed.is_empty() {
            return Ok(());
        }
        let available = read_trim(&dir.join("cgroup.controllers"))?;
        let mut add = Vec::new();
        for c in needed {
            if !available.split_whitespace().any(|a| a == *c) {
                return Err(Error::unsupported(format!(
                    "linux.resources needing the cgroup v2 {c} controller (not available in {})",
                    dir.display()
                )));
            }
            add.push(format!("+{c}"));
        }
        write(dir, "cgroup.subtree_control", &add.join(" "))
    }

    pub fn apply(&self, r: &LinuxResources) -> Result<(), Error> {
        self.apply_inner(r, false)
    }

    fn apply_inner(&self, r: &LinuxResources, creating: bool) -> Result<(), Error> {
        let dir = self.dir();
        if creating {
            super::devices_bpf::apply(&dir, r.devices().as_deref().unwrap_or(&[]))?;
        }
        if let Some(m) = r.memory() {
            if let Some(v) = m.reservation() {
                write(&dir, "memory.low", &v.to_string())?;
            }
            if let Some(l) = m.limit() {
                write(&dir, "memory.max", &limit(l))?;
            }
            if let Some(s) = m.swap() {
                // v1 swap is memory+swap; v2 swap.max is swap alone.
                let v = match (s, m.limit()) {
                    (-1, _) => "max".to_owned(),
                    (s, Some(l)) if l > 0 => (s - l).max(0).to_string(),
                    (s, _) => s.to_string(),
                };
                write(&dir, "memory.swap.max", &v)?;
            }
            if m.swappiness().is_some() {
                return Err(Error::unsupported(
                    "linux.resources.memory.swappiness (cgroup v1 only)",
                ));
            }
            super::v1::warn_kernel_memory(m);
            if m.kernel_tcp().is_some() {
                return Err(Error::unsupported(
                    "linux.resources.memory.kernelTCP (cgroup v1 only)",
                ));
            }
            if let Some(true) = m.disable_oom_killer() {
                return Err(Error::unsupported(
                    "linux.resources.memory.disableOOMKiller (cgroup v1 only)",
                ));
            }
        }
        if let Some(c) = r.cpu() {
            if let Some(s) = c.shares() {
                write(&dir, "cpu.weight", &shares_to_weight(s).to_string())?;
            }
            if c.quota().is_some() || c.period().is_some() {
                let quota = match c.quota() {
                    Some(q) if q > 0 => q.to_string(),
                    _ => "max".to_owned(),
                };
                let period = c.period().unwrap_or(100_000);
                write(&dir, "cpu.max", &format!("{quota} {period}"))?;
            }
            if let Some(b) = c.burst() {
                write(&dir, "cpu.max.burst", &b.to_string())?;
            }
            if let Some(i) = c.idle() {
                write(&dir, "cpu.idle", &i.to_string())?;
            }
            if c.realtime_period().is_some() || c.realtime_runtime().is_some() {
                return Err(Error::unsupported(
                    "linux.resources.cpu.realtimeRuntime/realtimePeriod (cgroup v1 only)",
                ));
            }
            if let Some(v) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
                write(&dir, "cpuset.cpus", v)?;
            }
            if let Some(v) = c.mems().as_deref().filter(|s| !s.is_empty()) {
                write(&dir, "cpuset.mems", v)?;
            }
        }
        if let Some(p) = r.pids() {
            let v = if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".into()
            };
            write(&dir, "pids.max", &v)?;
        }
        if let Some(b) = r.block_io() {
            if let Some(w) = b.weight() {
                // blkio.weight 10..1000 to io.weight 1..10000
                write(
                    &dir,
                    "io.weight",
                    &format!(
                        "default {}",
                        1 + (u64::from(w).saturating_sub(10) * 9999) / 990
                    ),
                )?;
            }
            let throttles = [
                (b.throttle_read_bps_device(), "rbps"),
                (b.throttle_write_bps_device(), "wbps"),
                (b.throttle_read_iops_device(), "riops"),
                (b.throttle_write_iops_device(), "wiops"),
            ];
            for (list, key) in throttles {
                for d in list.as_deref().unwrap_or(&[]) {
                    write(
                        &dir,
                        "io.max",
                        &format!("{}:{} {key}={}", d.major(), d.minor(), d.rate()),
                    )?;
                }
            }
            if b.leaf_weight().is_some()
                || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
            {
                return Err(Error::unsupported(
                    "linux.resources.blockIO.leafWeight/weightDevice on cgroup v2",
                ));
            }
        }
        for h in r.hugepage_limits().as_deref().unwrap_or(&[]) {
            write(
                &dir,
                &format!("hugetlb.{}.max", h.page_size()),
                &limit(h.limit()),
            )?;
        }
        if r.network().is_some() {
            return Err(Error::unsupported(
                "linux.resources.network (no net_cls/net_prio on cgroup v2)",
            ));
        }
        if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
            return Err(Error::unsupported("linux.resources.rdma"));
        }
        for (k, v) in r.unified().iter().flatten() {
            if k.contains('/') || k.starts_with('.') {
                return Err(Error::InvalidSpec(format!(
                    "linux.resources.unified key {k:?} is not a cgroup file name"
                )));
            }
            write(&dir, k, v)?;
        }
        Ok(())
    }

    pub fn freeze(&self, frozen: bool) -> Result<(), Error> {
        let dir = self.dir();
        if !dir.exists() {
            return Ok(());
        }
        write(&dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
        let want = if frozen { "frozen 1" } else { "frozen 0" };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let events = read_trim(&dir.join("cgroup.events"))?;
            if events.lines().any(|l| l.trim() == want) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Cgroup {
                    path: dir,
                    what: format!("cgroup.events did not reach {want:?}"),
                    source: std::io::Error::from(std::io::ErrorKind::TimedOut),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// SIGKILL everything through cgroup.kill (Linux 5.14+). Ok(false) when the file is absent.
    pub fn kill(&self) -> Result<bool, Error> {
        let dir = self.dir();
        if !dir.join("cgroup.kill").exists() {
            return Ok(false);
        }
        write(&dir, "cgroup.kill", "1")?;
        Ok(true)
    }
}

fn limit(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// The v2 controllers `r` needs enabled in the parent's subtree_control.
fn needed_controllers(r: &LinuxResources) -> Vec<&'static str> {
    let mut out = Vec::new();
    if r.memory().is_some() {
        out.push("memory");
    }
    if let Some(c) = r.cpu() {
        if c.shares().is_some()
            || c.quota().is_some()
            || c.period().is_some()
            || c.burst().is_some()
            || c.idle().is_some()
        {
            out.push("cpu");
        }
        if c.cpus().as_deref().is_some_and(|s| !s.is_empty())
            || c.mems().as_deref().is_some_and(|s| !s.is_empty())
        {
            out.push("cpuset");
        }
    }
    if r.pids().is_some() {
        out.push("pids");
    }
    if r.block_io().is_some() {
        out.push("io");
    }
    if r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
        out.push("hugetlb");
    }
    out
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    };

    use super::*;

    /// A fake cgroupfs: the root offers memory/cpu/pids; files are plain files.
    fn fake_root() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        fs::write(
            t.path().join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids\n",
        )
        .unwrap();
        fs::write(t.path().join("cgroup.subtree_control"), "").unwrap();
        t
    }

    #[test]
    fn shares_convert_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262144), 10000);
    }

    #[test]
    fn controller_files_in_fake_cgroupfs() {
        let root = fake_root();
        // Intermediate cgroup must offer controllers too.
        fs::create_dir(root.path().join("a")).unwrap();
        fs::write(
            root.path().join("a/cgroup.controllers"),
            "cpu memory pids\n",
        )
        .unwrap();
        fs::write(root.path().join("a/cgroup.subtree_control"), "").unwrap();
        let cg = V2::new(root.path().to_owned(), "/a/c1");
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64i64 << 20)
                    .swap(128i64 << 20)
                    .reservation(1i64 << 20)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(1024u64)
                    .quota(50_000i64)
                    .period(100_000u64)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(42).build().unwrap())
            .build()
            .unwrap();
        cg.create(Some(&r)).unwrap();
        let read = |p: &str| fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(read("cgroup.subtree_control"), "+memory +cpu +pids");
        assert_eq!(read("a/cgroup.subtree_control"), "+memory +cpu +pids");
        assert_eq!(read("a/c1/memory.max"), (64u64 << 20).to_string());
        assert_eq!(read("a/c1/memory.swap.max"), (64u64 << 20).to_string());
        assert_eq!(read("a/c1/memory.low"), (1u64 << 20).to_string());
        assert_eq!(read("a/c1/cpu.weight"), "39");
        assert_eq!(read("a/c1/cpu.max"), "50000 100000");
        assert_eq!(read("a/c1/pids.max"), "42");
    }

    #[test]
    fn missing_controller_is_named() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("cgroup.controllers"), "pids\n").unwrap();
        let cg = V2::new(root.path().to_owned(), "/c2");
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(1i64 << 20)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let err = cg.create(Some(&r)).unwrap_err().to_string();
        assert!(err.contains("memory controller"), "{err}");
    }

    #[test]
    fn device_filter_on_a_fake_cgroupfs_fails_by_name() {
        let root = fake_root();
        let cg = V2::new(root.path().to_owned(), "/c3");
        let r = LinuxResourcesBuilder::default()
            .devices(vec![oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .unwrap()])
            .build()
            .unwrap();
        let err = cg.create(Some(&r)).unwrap_err().to_string();
        assert!(
            err.contains("linux.resources.devices") && err.contains("eBPF device filter"),
            "{err}"
        );
    }
}

/// The real cgroup2 tree of this host (`/sys/fs/cgroup/unified` in hybrid mode, no
/// controllers): cgroup.procs, cgroup.freeze/cgroup.events and cgroup.kill for real.
#[cfg(test)]
mod real_tree {
    use std::{os::unix::process::ExitStatusExt, process::Command};

    use super::*;
    use crate::cgroups::Cgroup;

    fn unified_root() -> PathBuf {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "this test needs root (it creates cgroups)"
        );
        for root in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
            let root = PathBuf::from(root);
            if root.join("cgroup.procs").exists() && root.join("cgroup.controllers").exists() {
                return root;
            }
        }
        panic!("no cgroup2 tree at /sys/fs/cgroup/unified or /sys/fs/cgroup");
    }

    #[test]
    fn procs_freeze_kill_on_the_unified_tree() {
        let root = unified_root();
        let parent = format!("lc-test-unit-{}", std::process::id());
        let cg = Cgroup::V2(V2::new(root.clone(), &format!("/{parent}/c")));
        cg.create(None).expect("create");
        let mut child = Command::new("/bin/sleep")
            .arg("100")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        std::fs::write(cg.procs_files()[0].clone(), pid.to_string()).expect("join");
        assert_eq!(cg.pids().expect("pids"), vec![pid]);
        cg.freeze(true).expect("freeze");
        let events =
            std::fs::read_to_string(root.join(&parent).join("c/cgroup.events")).expect("events");
        assert!(events.contains("frozen 1"), "{events}");
        cg.freeze(false).expect("thaw");
        let Cgroup::V2(v2) = &cg else { unreachable!() };
        assert!(
            v2.kill().expect("cgroup.kill"),
            "cgroup.kill exists on this kernel"
        );
        let status = child.wait().expect("wait");
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        cg.destroy().expect("destroy");
        assert!(!root.join(&parent).join("c").exists());
        std::fs::remove_dir(root.join(&parent)).expect("remove parent");
    }
}
