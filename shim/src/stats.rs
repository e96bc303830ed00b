//! Stats: the container's cgroup counters as containerd's cgroups `Metrics` (v1 or v2), read
//! from cgroupfs. Read-only, so no runtime call is needed.

use std::{
    collections::HashMap,
    fs, io,
    path::{Path, PathBuf},
};

use containerd_shim_protos::{
    cgroups::metrics as v1,
    cgroups_v2::metrics as v2,
    protobuf::{well_known_types::any::Any, Message},
};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("the container has no cgroups path")]
    NoCgroup,
    #[error("cgroups path {0:?} is a systemd slice: stats read only cgroupfs paths")]
    Systemd(String),
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("encoding metrics: {0}")]
    Encode(#[source] containerd_shim_protos::protobuf::Error),
}

fn read_u64(path: &Path) -> Option<u64> {
    let s = fs::read_to_string(path).ok()?;
    let s = s.trim();
    if s == "max" {
        return Some(u64::MAX);
    }
    s.parse().ok()
}

fn read_kv(path: &Path) -> HashMap<String, u64> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

fn v1_metrics(rel: &str) -> Result<Any, StatsError> {
    let dir = |ctrl: &str| Path::new(CGROUP_ROOT).join(ctrl).join(rel);
    let mut m = v1::Metrics::new();

    let pids = dir("pids");
    if pids.exists() {
        let mut p = v1::PidsStat::new();
        p.current = read_u64(&pids.join("pids.current")).unwrap_or(0);
        p.limit = read_u64(&pids.join("pids.max"))
            .filter(|l| *l != u64::MAX)
            .unwrap_or(0);
        m.pids = Some(p).into();
    }

    let cpuacct = dir("cpuacct");
    let cpu = dir("cpu");
    if cpuacct.exists() {
        let mut usage = v1::CPUUsage::new();
        usage.total = read_u64(&cpuacct.join("cpuacct.usage")).unwrap_or(0);
        let stat = read_kv(&cpuacct.join("cpuacct.stat"));
        // cpuacct.stat is in USER_HZ ticks; containerd reports nanoseconds.
        let tick_ns = 1_000_000_000 / 100;
        usage.user = stat.get("user").copied().unwrap_or(0) * tick_ns;
        usage.kernel = stat.get("system").copied().unwrap_or(0) * tick_ns;
        usage.per_cpu = fs::read_to_string(cpuacct.join("cpuacct.usage_percpu"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        let mut c = v1::CPUStat::new();
        c.usage = Some(usage).into();
        let t = read_kv(&cpu.join("cpu.stat"));
        let mut th = v1::Throttle::new();
        th.periods = t.get("nr_periods").copied().unwrap_or(0);
        th.throttled_periods = t.get("nr_throttled").copied().unwrap_or(0);
        th.throttled_time = t.get("throttled_time").copied().unwrap_or(0);
        c.throttling = Some(th).into();
        m.cpu = Some(c).into();
    }

    let mem = dir("memory");
    if mem.exists() {
        let s = read_kv(&mem.join("memory.stat"));
        let g = |k: &str| s.get(k).copied().unwrap_or(0);
        let mut ms = v1::MemoryStat::new();
        ms.cache = g("cache");
        ms.rss = g("rss");
        ms.rss_huge = g("rss_huge");
        ms.mapped_file = g("mapped_file");
        ms.dirty = g("dirty");
        ms.writeback = g("writeback");
        ms.pg_pg_in = g("pgpgin");
        ms.pg_pg_out = g("pgpgout");
        ms.pg_fault = g("pgfault");
        ms.pg_maj_fault = g("pgmajfault");
        ms.inactive_anon = g("inactive_anon");
        ms.active_anon = g("active_anon");
        ms.inactive_file = g("inactive_file");
        ms.active_file = g("active_file");
        ms.unevictable = g("unevictable");
        ms.hierarchical_memory_limit = g("hierarchical_memory_limit");
        ms.hierarchical_swap_limit = g("hierarchical_memsw_limit");
        ms.total_cache = g("total_cache");
        ms.total_rss = g("total_rss");
        ms.total_rss_huge = g("total_rss_huge");
        ms.total_mapped_file = g("total_mapped_file");
        ms.total_dirty = g("total_dirty");
        ms.total_writeback = g("total_writeback");
        ms.total_pg_pg_in = g("total_pgpgin");
        ms.total_pg_pg_out = g("total_pgpgout");
        ms.total_pg_fault = g("total_pgfault");
        ms.total_pg_maj_fault = g("total_pgmajfault");
        ms.total_inactive_anon = g("total_inactive_anon");
        ms.total_active_anon = g("total_active_anon");
        ms.total_inactive_file = g("total_inactive_file");
        ms.total_active_file = g("total_active_file");
        ms.total_unevictable = g("total_unevictable");
        let entry = |prefix: &str| {
            let mut e = v1::MemoryEntry::new();
            e.usage = read_u64(&mem.join(format!("{prefix}.usage_in_bytes"))).unwrap_or(0);
            e.max = read_u64(&mem.join(format!("{prefix}.max_usage_in_bytes"))).unwrap_or(0);
            e.limit = read_u64(&mem.join(format!("{prefix}.limit_in_bytes"))).unwrap_or(0);
            e.failcnt = read_u64(&mem.join(format!("{prefix}.failcnt"))).unwrap_or(0);
            e
        };
        ms.usage = Some(entry("memory")).into();
        ms.swap = Some(entry("memory.memsw")).into();
        ms.kernel = Some(entry("memory.kmem")).into();
        ms.kernel_tcp = Some(entry("memory.kmem.tcp")).into();
        m.memory = Some(ms).into();
    }

    let mut any = Any::new();
    any.type_url = "io.containerd.cgroups.v1.Metrics".into();
    any.value = m.write_to_bytes().map_err(StatsError::Encode)?;
    Ok(any)
}

fn v2_metrics(rel: &str) -> Result<Any, StatsError> {
    let dir = Path::new(CGROUP_ROOT).join(rel);
    if !dir.exists() {
        return Err(StatsError::Read {
            path: dir,
            source: io::ErrorKind::NotFound.into(),
        });
    }
    let mut m = v2::Metrics::new();
    let mut p = v2::PidsStat::new();
    p.current = read_u64(&dir.join("pids.current")).unwrap_or(0);
    p.limit = read_u64(&dir.join("pids.max"))
        .filter(|l| *l != u64::MAX)
        .unwrap_or(0);
    m.pids = Some(p).into();
    let c = read_kv(&dir.join("cpu.stat"));
    let g = |k: &str| c.get(k).copied().unwrap_or(0);
    let mut cpu = v2::CPUStat::new();
    cpu.usage_usec = g("usage_usec");
    cpu.user_usec = g("user_usec");
    cpu.system_usec = g("system_usec");
    cpu.nr_periods = g("nr_periods");
    cpu.nr_throttled = g("nr_throttled");
    cpu.throttled_usec = g("throttled_usec");
    m.cpu = Some(cpu).into();
    let s = read_kv(&dir.join("memory.stat"));
    let g = |k: &str| s.get(k).copied().unwrap_or(0);
    let mut mem = v2::MemoryStat::new();
    mem.anon = g("anon");
    mem.file = g("file");
    mem.kernel_stack = g("kernel_stack");
    mem.slab = g("slab");
    mem.sock = g("sock");
    mem.shmem = g("shmem");
    mem.file_mapped = g("file_mapped");
    mem.file_dirty = g("file_dirty");
    mem.file_writeback = g("file_writeback");
    mem.inactive_anon = g("inactive_anon");
    mem.active_anon = g("active_anon");
    mem.inactive_file = g("inactive_file");
    mem.active_file = g("active_file");
    mem.unevictable = g("unevictable");
    mem.pgfault = g("pgfault");
    mem.pgmajfault = g("pgmajfault");
    mem.usage = read_u64(&dir.join("memory.current")).unwrap_or(0);
    mem.usage_limit = read_u64(&dir.join("memory.max")).unwrap_or(0);
    mem.swap_usage = read_u64(&dir.join("memory.swap.current")).unwrap_or(0);
    mem.swap_limit = read_u64(&dir.join("memory.swap.max")).unwrap_or(0);
    mem.max_usage = read_u64(&dir.join("memory.peak")).unwrap_or(0);
    m.memory = Some(mem).into();
    let mut any = Any::new();
    any.type_url = "io.containerd.cgroups.v2.Metrics".into();
    any.value = m.write_to_bytes().map_err(StatsError::Encode)?;
    Ok(any)
}

/// Metrics for the cgroup at `cgroups_path` (the spec's `linux.cgroupsPath`).
pub fn metrics(cgroups_path: Option<&str>) -> Result<Any, StatsError> {
    let path = cgroups_path
        .filter(|p| !p.is_empty())
        .ok_or(StatsError::NoCgroup)?;
    if !path.starts_with('/') && path.split(':').count() == 3 {
        return Err(StatsError::Systemd(path.to_owned()));
    }
    let rel = path.trim_start_matches('/');
    if Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
        v2_metrics(rel)
    } else {
        v1_metrics(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_cgroup_and_systemd_paths_are_errors() {
        assert!(matches!(metrics(None), Err(StatsError::NoCgroup)));
        assert!(matches!(
            metrics(Some("system.slice:lc:abc")),
            Err(StatsError::Systemd(_))
        ));
    }

    #[test]
    fn kv_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("stat");
        fs::write(&f, "user 12\nsystem 3\nbogus\n").unwrap();
        let kv = read_kv(&f);
        assert_eq!(kv.get("user"), Some(&12));
        assert_eq!(kv.get("system"), Some(&3));
        fs::write(&f, "max\n").unwrap();
        assert_eq!(read_u64(&f), Some(u64::MAX));
    }
}
