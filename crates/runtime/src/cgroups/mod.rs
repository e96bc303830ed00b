//! cgroups v1 and v2 for one container: create the cgroup, apply resources, join, list and
//! signal its processes, freeze, remove. The cgroupfs root is injectable so controller files
//! can be unit-tested against a fake tree in a tempdir.

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};
use serde::{Deserialize, Serialize};

use crate::error::Error;

pub(crate) mod devices_bpf;
pub(crate) mod v1;
pub(crate) mod v2;
pub(crate) mod warm;

/// The container's cgroup on whichever hierarchy the host uses.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "version")]
pub(crate) enum Cgroup {
    V1(v1::V1),
    V2(v2::V2),
}

/// Environment variable that forces cgroup v2 at the given mount point (tests only).
pub const V2_ROOT_ENV: &str = "LIFECYCLE_CGROUP2_ROOT";

/// Devices every container may use, as runc allows them after the spec's own rules:
/// (type, major, minor, access), None = any.
const DEFAULT_ALLOWED: &[(LinuxDeviceType, Option<i64>, Option<i64>, &str)] = &[
    (LinuxDeviceType::C, None, None, "m"),
    (LinuxDeviceType::B, None, None, "m"),
    (LinuxDeviceType::C, Some(1), Some(3), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(8), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(7), "rwm"),
    (LinuxDeviceType::C, Some(5), Some(0), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(5), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(9), "rwm"),
    (LinuxDeviceType::C, Some(5), Some(1), "rwm"),
    (LinuxDeviceType::C, Some(136), None, "rwm"),
    (LinuxDeviceType::C, Some(5), Some(2), "rwm"),
];

/// The device rules a container's cgroup gets: the spec's rules, then (only if the spec
/// restricts anything) runc's default allowed devices and an allow rule per `linux.devices`.
pub(crate) fn device_rules(
    resources: Option<&LinuxResources>,
    devices: &[LinuxDevice],
) -> Vec<LinuxDeviceCgroup> {
    let mut rules = resources
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    if rules.is_empty() {
        return rules;
    }
    let rule = |typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_owned()));
        r
    };
    for (t, ma, mi, a) in DEFAULT_ALLOWED {
        rules.push(rule(*t, *ma, *mi, a));
    }
    for d in devices {
        if matches!(
            d.typ(),
            LinuxDeviceType::B | LinuxDeviceType::C | LinuxDeviceType::U
        ) {
            rules.push(rule(d.typ(), Some(d.major()), Some(d.minor()), "rwm"));
        }
    }
    rules
}

/// Validates `linux.cgroupsPath` and returns the absolute cgroup path.
pub(crate) fn parse_path(cgroups_path: Option<&Path>, id: &str) -> Result<String, Error> {
    let Some(p) = cgroups_path else {
        return Ok(format!("/lifecycle/{id}"));
    };
    let s = p
        .to_str()
        .ok_or_else(|| Error::InvalidSpec(format!("linux.cgroupsPath {p:?} is not UTF-8")))?;
    if s.is_empty() {
        return Ok(format!("/lifecycle/{id}"));
    }
    if !s.starts_with('/') {
        if s.split(':').count() == 3 {
            return Err(Error::unsupported(format!(
                "linux.cgroupsPath {s:?} (systemd slice:prefix:name form; use an absolute cgroupfs path)"
            )));
        }
        // Relative: below the caller's own cgroup, as runc does (the runtime spec leaves the
        // base to the runtime). The resolved path is what the state records.
        let data = fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| Error::io("read /proc/self/cgroup", e))?;
        let base = own_cgroup(&data).ok_or_else(|| {
            Error::InvalidSpec(format!(
                "linux.cgroupsPath {s:?} is relative, and this process's own cgroup is unknown"
            ))
        })?;
        let joined = format!("{}/{s}", base.trim_end_matches('/'));
        return parse_path(Some(Path::new(&joined)), id);
    }
    if s.split('/').any(|c| c == ".." || c == ".") || s == "/" {
        return Err(Error::InvalidSpec(format!(
            "linux.cgroupsPath {s:?} must name a cgroup below the root without . or .."
        )));
    }
    Ok(s.trim_end_matches('/').to_owned())
}

/// The `hierarchy-id:controllers:path` lines of /proc/<pid>/cgroup, split; others skipped.
pub(crate) fn proc_cgroup_lines(data: &str) -> impl Iterator<Item = (&str, &str, &str)> {
    data.lines().filter_map(|line| {
        let mut parts = line.splitn(3, ':');
        Some((parts.next()?, parts.next()?, parts.next()?))
    })
}

/// The caller's own cgroup path, from /proc/self/cgroup: its memory (else pids, else first)
/// v1 hierarchy's, or the unified one's when there is no v1 hierarchy. One path for every
/// hierarchy (runc resolves per hierarchy; they differ only on hosts that place a process in
/// different cgroups per controller).
fn own_cgroup(proc_self_cgroup: &str) -> Option<String> {
    let mut v1 = Vec::new();
    let mut unified = None;
    for (hier, controllers, path) in proc_cgroup_lines(proc_self_cgroup) {
        if hier == "0" {
            unified = Some(path.to_owned());
        } else if !controllers.starts_with("name=") && !controllers.is_empty() {
            v1.push((controllers.to_owned(), path.to_owned()));
        }
    }
    ["memory", "pids"]
        .iter()
        .find_map(|want| {
            v1.iter()
                .find(|(c, _)| c.split(',').any(|x| x == *want))
                .map(|(_, p)| p.clone())
        })
        .or_else(|| v1.first().map(|(_, p)| p.clone()))
        .or(unified)
}

impl Cgroup {
    /// The cgroup at `path` on this host's hierarchy (v2 when /sys/fs/cgroup is cgroup2).
    pub fn for_host(path: &str) -> Result<Cgroup, Error> {
        // Runs the cgroup v2 code on a given cgroup2 mount (e.g. the unified tree of a hybrid
        // host, to test the v2 path where the host itself is v1). Not for production use.
        if let Some(root) = std::env::var_os(V2_ROOT_ENV) {
            return Ok(Cgroup::V2(v2::V2::new(PathBuf::from(root), path)));
        }
        let mounts = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Error::io("read /proc/self/mountinfo", e))?;
        let mut v1 = Vec::new();
        for line in mounts.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let mountpoint = pre.split(' ').nth(4).unwrap_or_default();
            let mut post = post.split(' ');
            let fstype = post.next().unwrap_or_default();
            let superopts = post.nth(1).unwrap_or_default();
            if fstype == "cgroup2" && mountpoint == "/sys/fs/cgroup" {
                return Ok(Cgroup::V2(v2::V2::new(PathBuf::from(mountpoint), path)));
            }
            // Hybrid host: also join the (controller-less) v2 tree, as runc does, so tools
            // that read the v2 hierarchy see the container's processes in its cgroup.
            if fstype == "cgroup2" && mountpoint.starts_with("/sys/fs/cgroup/") {
                v1.push(v1::Hierarchy {
                    mountpoint: PathBuf::from(mountpoint),
                    controllers: vec![v1::HYBRID_V2.to_owned()],
                });
                continue;
            }
            if fstype == "cgroup" && mountpoint.starts_with("/sys/fs/cgroup/") {
                let controllers: Vec<String> = superopts
                    .split(',')
                    .filter(|o| {
                        !matches!(*o, "rw" | "ro")
                            && !o.starts_with("release_agent")
                            && *o != "clone_children"
                            && *o != "noprefix"
                            && *o != "xattr"
                    })
                    .map(str::to_owned)
                    .collect();
                v1.push(v1::Hierarchy {
                    mountpoint: PathBuf::from(mountpoint),
                    controllers,
                });
            }
        }
        if v1
            .iter()
            .all(|h| h.controllers.iter().any(|c| c == v1::HYBRID_V2))
        {
            return Err(Error::Io {
                what: "no cgroup hierarchy is mounted under /sys/fs/cgroup".into(),
                source: io::Error::from(io::ErrorKind::NotFound),
            });
        }
        Ok(Cgroup::V1(v1::V1::new(v1, path)))
    }

    /// Creates the cgroup and applies `resources`.
    pub fn create(&self, resources: Option<&LinuxResources>) -> Result<(), Error> {
        match self {
            Cgroup::V1(c) => c.create(resources),
            Cgroup::V2(c) => c.create(resources),
        }
    }

    pub fn apply(&self, resources: &LinuxResources) -> Result<(), Error> {
        match self {
            Cgroup::V1(c) => c.apply(resources),
            Cgroup::V2(c) => c.apply(resources),
        }
    }

    /// Files a process writes its pid into to join the cgroup (every hierarchy).
    pub fn procs_files(&self) -> Vec<PathBuf> {
        match self {
            Cgroup::V1(c) => c.dirs().map(|d| d.join("cgroup.procs")).collect(),
            Cgroup::V2(c) => vec![c.dir().join("cgroup.procs")],
        }
    }

    /// Pids in the cgroup (empty if it does not exist).
    pub fn pids(&self) -> Result<Vec<i32>, Error> {
        let file = match self {
            Cgroup::V1(c) => c.main_dir().join("cgroup.procs"),
            Cgroup::V2(c) => c.dir().join("cgroup.procs"),
        };
        read_pids(&file)
    }

    pub fn freeze(&self, frozen: bool) -> Result<(), Error> {
        match self {
            Cgroup::V1(c) => c.freeze(frozen),
            Cgroup::V2(c) => c.freeze(frozen),
        }
    }

    /// Sends `signal` to every process in the cgroup.
    pub fn signal_all(&self, signal: i32) -> Result<(), Error> {
        if signal == libc::SIGKILL {
            if let Cgroup::V2(c) = self {
                if c.kill()? {
                    return Ok(());
                }
            }
        }
        // A frozen v1 process does not die until thawed, and a running one may fork while we
        // walk the list: freeze, signal everyone, thaw (as runc does for kill --all).
        let frozen =
            signal == libc::SIGKILL && matches!(self, Cgroup::V1(_)) && self.freeze(true).is_ok();
        let res = self.signal_each(signal);
        if frozen {
            self.freeze(false)?;
        }
        res
    }

    fn signal_each(&self, signal: i32) -> Result<(), Error> {
        for pid in self.pids()? {
            // SAFETY: kill with plain integers.
            if unsafe { libc::kill(pid, signal) } != 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::ESRCH) {
                    return Err(Error::io(format!("kill({pid}, {signal})"), err));
                }
            }
        }
        Ok(())
    }

    /// SIGKILLs everything left, waits until the cgroup is empty and removes it. Never fails
    /// because something is already gone.
    pub fn destroy(&self) -> Result<(), Error> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = self.pids()?;
            if pids.is_empty() {
                break;
            }
            // A frozen process cannot die: thaw first.
            let _ = self.freeze(false);
            self.signal_all(libc::SIGKILL)?;
            if Instant::now() > deadline {
                return Err(Error::Cgroup {
                    path: self.display_path(),
                    what: format!("processes {pids:?} still present after SIGKILL"),
                    source: io::Error::from(io::ErrorKind::TimedOut),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let dirs: Vec<PathBuf> = match self {
            Cgroup::V1(c) => c.dirs().collect(),
            Cgroup::V2(c) => vec![c.dir()],
        };
        for dir in dirs {
            remove_dir_retry(&dir)?;
        }
        Ok(())
    }

    pub fn display_path(&self) -> PathBuf {
        match self {
            Cgroup::V1(c) => c.main_dir(),
            Cgroup::V2(c) => c.dir(),
        }
    }
}

pub(crate) fn read_pids(file: &Path) -> Result<Vec<i32>, Error> {
    match fs::read_to_string(file) {
        Ok(s) => Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::Cgroup {
            path: file.to_owned(),
            what: "read".into(),
            source: e,
        }),
    }
}

fn remove_dir_retry(dir: &Path) -> Result<(), Error> {
    let mut tries = 0;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 200 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => {
                return Err(Error::Cgroup {
                    path: dir.to_owned(),
                    what: "rmdir".into(),
                    source: e,
                })
            }
        }
    }
}

/// Writes `value` to a controller file, naming the file and value on error.
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<(), Error> {
    let path = dir.join(file);
    fs::write(&path, value).map_err(|e| Error::Cgroup {
        path,
        what: format!("write {value:?}"),
        source: e,
    })
}

/// Like [`write`], but a missing file means the host lacks the feature: fail naming the field.
pub(crate) fn write_field(dir: &Path, file: &str, value: &str, field: &str) -> Result<(), Error> {
    let path = dir.join(file);
    if !path.exists() {
        return Err(Error::unsupported(format!(
            "{field} (no {} on this host)",
            path.display()
        )));
    }
    write(dir, file, value)
}

pub(crate) fn read_trim(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| Error::Cgroup {
            path: path.to_owned(),
            what: "read".into(),
            source: e,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cgroup_prefers_memory_then_pids_then_any_v1_then_unified() {
        let hybrid = "12:pids:/p\n7:memory:/m\n1:name=systemd:/s\n0::/u\n";
        assert_eq!(own_cgroup(hybrid).as_deref(), Some("/m"));
        assert_eq!(
            own_cgroup("3:pids:/p\n2:cpu,cpuacct:/c\n").as_deref(),
            Some("/p")
        );
        assert_eq!(
            own_cgroup("2:cpu,cpuacct:/c\n0::/u\n").as_deref(),
            Some("/c")
        );
        assert_eq!(
            own_cgroup("0::/system.slice/x\n").as_deref(),
            Some("/system.slice/x")
        );
        assert_eq!(own_cgroup("garbage"), None);
    }

    #[test]
    fn a_relative_cgroups_path_lands_below_the_callers_own_cgroup() {
        let data = fs::read_to_string("/proc/self/cgroup").unwrap();
        let base = own_cgroup(&data).unwrap();
        let got = parse_path(Some(Path::new("testdir/c1")), "id").unwrap();
        assert_eq!(got, format!("{}/testdir/c1", base.trim_end_matches('/')));
        let err = parse_path(Some(Path::new("../escape")), "id").unwrap_err();
        assert!(err.to_string().contains("without . or .."), "{err}");
        assert_eq!(
            parse_path(Some(Path::new("/abs/c/")), "id").unwrap(),
            "/abs/c"
        );
    }
}
