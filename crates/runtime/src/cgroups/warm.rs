//! Pre-arming the kernel's cgroup migration lock, so that joining a container's cgroup does not
//! wait for an RCU grace period on the critical path.
//!
//! Every write to a `cgroup.procs` file takes `cgroup_threadgroup_rwsem` for writing. Unless
//! the host mounted its cgroups with `favordynmods`, that per-cpu rwsem is in its cheap reader
//! mode between migrations, and the first writer must switch it over, which waits for an RCU
//! grace period: 5-28 ms on this kind of machine (12 ms median under load, measured by writing
//! a pid to a fresh v1 cgroup). The switch stays in force for about one grace period after the
//! last writer, so a migration that comes shortly after another one is fast (0.2-0.3 ms).
//! runc and containerd-shim-runc-v2 pay that wait once per container start and once per exec.
//!
//! A [`Warmup`] keeps the lock in writer mode in the background while a container is being
//! created (or a process entered): a thread rewrites the caller's own pid into the
//! `cgroup.procs` of the cgroup it already is in (a migration that moves nothing) every few
//! milliseconds, so the grace period runs while the caller spawns its helper, and the helper's
//! own join finds the lock already switched. The thread stops when the guard is dropped or at
//! its deadline, whichever is first; nothing else changes, and every error is ignored (at
//! worst the join waits as it would have).
//!
//! The one hazard: a process that is moved to another cgroup by someone else between the read
//! of /proc/self/cgroup and the write would be moved back. The shim joins its configured
//! cgroup before it starts any thread (`start`), so nothing of ours races with it.

use std::{
    fs,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

/// How often the warm-up thread migrates: well inside one grace period, so the lock never
/// falls back to reader mode while the guard lives.
const PERIOD: Duration = Duration::from_millis(2);

/// Keeps the cgroup migration lock in writer mode until dropped (or until its deadline).
pub struct Warmup {
    stop: Arc<AtomicBool>,
}

impl Drop for Warmup {
    fn drop(&mut self) {
        // Not joined: the thread notices within one period, and waiting would put its last
        // write back on the caller's path.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts warming the migration lock for at most `max`. None when there is no cgroup file to
/// write (no cgroupfs, or the thread could not start): nothing to stop then.
pub fn warm_migration(max: Duration) -> Option<Warmup> {
    own_procs_file()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::Builder::new()
        .name("cgroup-warm".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let deadline = Instant::now() + max;
            let me = std::process::id().to_string();
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                // Read again every time: the file names the cgroup the process is in now.
                match own_procs_file() {
                    Some(file) => {
                        let _ = fs::write(file, &me);
                    }
                    None => return,
                }
                std::thread::sleep(PERIOD);
            }
        })
        .ok()?;
    Some(Warmup { stop })
}

/// The `cgroup.procs` of the cgroup this process is in, on one hierarchy (the lock is global,
/// so any hierarchy will do): the unified one when the host has only that, else the first v1
/// hierarchy whose mount point exists.
fn own_procs_file() -> Option<PathBuf> {
    let data = fs::read_to_string("/proc/self/cgroup").ok()?;
    procs_file_from(&data, |p| p.exists())
}

fn procs_file_from(
    proc_self_cgroup: &str,
    exists: impl Fn(&std::path::Path) -> bool,
) -> Option<PathBuf> {
    let root = PathBuf::from("/sys/fs/cgroup");
    let mut unified = None;
    for (hier, controllers, path) in super::proc_cgroup_lines(proc_self_cgroup) {
        let rel = path.trim_start_matches('/');
        let dir = if hier == "0" {
            // On a hybrid host the unified tree is mounted at /sys/fs/cgroup/unified.
            let hybrid = root.join("unified");
            let base = if exists(&hybrid.join("cgroup.procs")) {
                hybrid
            } else {
                root.clone()
            };
            unified = Some(base.join(rel).join("cgroup.procs"));
            continue;
        } else if let Some(name) = controllers.strip_prefix("name=") {
            root.join(name).join(rel)
        } else {
            root.join(controllers).join(rel)
        };
        let file = dir.join("cgroup.procs");
        if exists(&file) {
            return Some(file);
        }
    }
    unified.filter(|f| exists(f))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn picks_a_v1_hierarchy_on_a_hybrid_host() {
        let data = "12:pids:/exp/shim\n1:name=systemd:/exp/shim\n0::/exp/shim\n";
        let got = procs_file_from(data, |p| p.starts_with("/sys/fs/cgroup/pids"));
        assert_eq!(
            got.as_deref(),
            Some(Path::new("/sys/fs/cgroup/pids/exp/shim/cgroup.procs"))
        );
    }

    #[test]
    fn named_and_combined_hierarchies_map_to_their_mount_points() {
        let data = "4:cpu,cpuacct:/a\n";
        let got = procs_file_from(data, |_| true);
        assert_eq!(
            got.as_deref(),
            Some(Path::new("/sys/fs/cgroup/cpu,cpuacct/a/cgroup.procs"))
        );
        let data = "1:name=systemd:/b\n";
        let got = procs_file_from(data, |_| true);
        assert_eq!(
            got.as_deref(),
            Some(Path::new("/sys/fs/cgroup/systemd/b/cgroup.procs"))
        );
    }

    #[test]
    fn uses_the_unified_tree_when_it_is_all_there_is() {
        let data = "0::/system.slice/containerd.service\n";
        let got = procs_file_from(data, |p| !p.starts_with("/sys/fs/cgroup/unified"));
        assert_eq!(
            got.as_deref(),
            Some(Path::new(
                "/sys/fs/cgroup/system.slice/containerd.service/cgroup.procs"
            ))
        );
        assert_eq!(procs_file_from(data, |_| false), None);
    }

    #[test]
    fn a_real_warmup_stops_at_its_deadline_and_leaves_the_process_where_it_was() {
        let before = fs::read_to_string("/proc/self/cgroup").unwrap();
        if let Some(w) = warm_migration(Duration::from_millis(20)) {
            std::thread::sleep(Duration::from_millis(30));
            drop(w);
        }
        assert_eq!(fs::read_to_string("/proc/self/cgroup").unwrap(), before);
    }
}
