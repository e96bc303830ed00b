//! The task's root filesystem: the `rootfs` mounts containerd sends in Create (overlay from the
//! snapshotter, or a bind mount) go onto `<bundle>/rootfs`, and come off at Delete or in the
//! `delete` action. Plain mount(2) calls: no namespace is changed, so this is safe in the
//! multi-threaded server.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use containerd_shim_protos::types::mount::Mount;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("creating mount point {path}: {source}")]
    MountPoint { path: PathBuf, source: io::Error },
    #[error("mounting {kind} {source_path} on {target}: {source}")]
    Mount {
        kind: String,
        source_path: String,
        target: PathBuf,
        source: nix::Error,
    },
    #[error("unmounting {target}: {source}")]
    Unmount { target: PathBuf, source: nix::Error },
}

/// Flags by option name: (set, clear). As containerd's parseMountOptions, minus the options
/// that are only data.
const FLAG_OPTIONS: &[(&str, MsFlags, MsFlags)] = &[
    ("async", MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
    ("atime", MsFlags::empty(), MsFlags::MS_NOATIME),
    ("bind", MsFlags::MS_BIND, MsFlags::empty()),
    ("defaults", MsFlags::empty(), MsFlags::empty()),
    ("dev", MsFlags::empty(), MsFlags::MS_NODEV),
    ("diratime", MsFlags::empty(), MsFlags::MS_NODIRATIME),
    ("dirsync", MsFlags::MS_DIRSYNC, MsFlags::empty()),
    ("exec", MsFlags::empty(), MsFlags::MS_NOEXEC),
    ("mand", MsFlags::MS_MANDLOCK, MsFlags::empty()),
    ("noatime", MsFlags::MS_NOATIME, MsFlags::empty()),
    ("nodev", MsFlags::MS_NODEV, MsFlags::empty()),
    ("nodiratime", MsFlags::MS_NODIRATIME, MsFlags::empty()),
    ("noexec", MsFlags::MS_NOEXEC, MsFlags::empty()),
    ("nomand", MsFlags::empty(), MsFlags::MS_MANDLOCK),
    ("norelatime", MsFlags::empty(), MsFlags::MS_RELATIME),
    ("nostrictatime", MsFlags::empty(), MsFlags::MS_STRICTATIME),
    ("nosuid", MsFlags::MS_NOSUID, MsFlags::empty()),
    (
        "rbind",
        MsFlags::MS_BIND.union(MsFlags::MS_REC),
        MsFlags::empty(),
    ),
    ("relatime", MsFlags::MS_RELATIME, MsFlags::empty()),
    ("remount", MsFlags::MS_REMOUNT, MsFlags::empty()),
    ("ro", MsFlags::MS_RDONLY, MsFlags::empty()),
    ("rw", MsFlags::empty(), MsFlags::MS_RDONLY),
    ("strictatime", MsFlags::MS_STRICTATIME, MsFlags::empty()),
    ("suid", MsFlags::empty(), MsFlags::MS_NOSUID),
    ("sync", MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
];

const PROPAGATION: &[(&str, MsFlags)] = &[
    ("private", MsFlags::MS_PRIVATE),
    ("rprivate", MsFlags::MS_PRIVATE.union(MsFlags::MS_REC)),
    ("shared", MsFlags::MS_SHARED),
    ("rshared", MsFlags::MS_SHARED.union(MsFlags::MS_REC)),
    ("slave", MsFlags::MS_SLAVE),
    ("rslave", MsFlags::MS_SLAVE.union(MsFlags::MS_REC)),
    ("unbindable", MsFlags::MS_UNBINDABLE),
    ("runbindable", MsFlags::MS_UNBINDABLE.union(MsFlags::MS_REC)),
];

/// (flags, propagation flags, data) for a list of mount options.
pub fn parse_options(options: &[String]) -> (MsFlags, MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data = Vec::new();
    for opt in options {
        if let Some((_, set, clear)) = FLAG_OPTIONS.iter().find(|(n, _, _)| n == opt) {
            flags.remove(*clear);
            flags.insert(*set);
        } else if let Some((_, p)) = PROPAGATION.iter().find(|(n, _)| n == opt) {
            propagation.insert(*p);
        } else {
            data.push(opt.as_str());
        }
    }
    (flags, propagation, data.join(","))
}

fn mount_one(m: &Mount, target: &Path) -> Result<(), MountError> {
    let (flags, propagation, data) = parse_options(&m.options);
    let err = |source| MountError::Mount {
        kind: m.type_.clone(),
        source_path: m.source.clone(),
        target: target.to_owned(),
        source,
    };
    let data = (!data.is_empty()).then_some(data.as_str());
    mount(
        Some(m.source.as_str()),
        target,
        Some(m.type_.as_str()),
        flags,
        data,
    )
    .map_err(err)?;
    // A read-only bind mount only becomes read-only on a remount.
    if flags.contains(MsFlags::MS_BIND) && flags.contains(MsFlags::MS_RDONLY) {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            flags | MsFlags::MS_REMOUNT,
            None::<&str>,
        )
        .map_err(err)?;
    }
    if !propagation.is_empty() {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            propagation,
            None::<&str>,
        )
        .map_err(err)?;
    }
    Ok(())
}

/// Mounts `mounts` in order onto `target` (created if missing). On failure, what was mounted
/// is unmounted again. Returns whether anything was mounted.
pub fn mount_rootfs(mounts: &[Mount], target: &Path) -> Result<bool, MountError> {
    if mounts.is_empty() {
        return Ok(false);
    }
    fs::create_dir_all(target).map_err(|source| MountError::MountPoint {
        path: target.to_owned(),
        source,
    })?;
    for m in mounts {
        if let Err(e) = mount_one(m, target) {
            let _ = unmount_all(target);
            return Err(e);
        }
    }
    Ok(true)
}

/// Unmounts everything stacked on `target`; nothing mounted (or no such path) is fine.
pub fn unmount_all(target: &Path) -> Result<(), MountError> {
    loop {
        match umount2(target, MntFlags::empty()) {
            Ok(()) => continue,
            Err(nix::Error::EINVAL | nix::Error::ENOENT) => return Ok(()),
            Err(nix::Error::EBUSY) => {
                umount2(target, MntFlags::MNT_DETACH).map_err(|source| MountError::Unmount {
                    target: target.to_owned(),
                    source,
                })?;
            }
            Err(source) => {
                return Err(MountError::Unmount {
                    target: target.to_owned(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(o: &[&str]) -> Vec<String> {
        o.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn overlay_options_are_data() {
        let (flags, prop, data) = parse_options(&opts(&[
            "index=off",
            "workdir=/w",
            "upperdir=/u",
            "lowerdir=/l1:/l2",
        ]));
        assert!(flags.is_empty());
        assert!(prop.is_empty());
        assert_eq!(data, "index=off,workdir=/w,upperdir=/u,lowerdir=/l1:/l2");
    }

    #[test]
    fn bind_options_are_flags() {
        let (flags, prop, data) = parse_options(&opts(&["rbind", "ro", "rprivate"]));
        assert_eq!(
            flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY
        );
        assert_eq!(prop, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(data, "");
        let (flags, _, _) = parse_options(&opts(&["ro", "rw"]));
        assert!(flags.is_empty());
    }
}
