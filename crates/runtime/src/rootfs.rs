//! Root filesystem setup inside the container init's private mount namespace: propagation,
//! the rootfs bind, spec mounts in order, /dev, pivot_root, masked and read-only paths.
//! Everything here runs in the single-threaded init, before the entrypoint is released.

use std::{
    collections::VecDeque,
    ffi::{CString, OsString},
    fs,
    os::unix::{
        ffi::OsStrExt,
        fs::{symlink, DirBuilderExt, FileTypeExt, MetadataExt},
    },
    path::{Component, Path, PathBuf},
};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount};
use serde::{Deserialize, Serialize};

use crate::error::SetupError;

type R = Result<(), SetupError>;

/// A cgroup hierarchy to show at the spec's `cgroup` mount: `name` under the mount point,
/// bound from the container's cgroup directory on the host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CgroupMount {
    /// Directory name under the mount (e.g. "memory"); empty for cgroup v2 (mounted at the
    /// destination itself).
    pub name: String,
    pub host_dir: PathBuf,
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

/// mount(2) that names the target on error.
pub(crate) fn mount(
    step: &str,
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> R {
    let src_c = src.map(cstr);
    let target_c = cstr(target);
    let fstype_c = fstype.map(|s| CString::new(s).unwrap_or_default());
    let data_c = data
        .filter(|d| !d.is_empty())
        .map(|s| CString::new(s).unwrap_or_default());
    // SAFETY: all pointers are valid C strings or null.
    let rc = unsafe {
        libc::mount(
            src_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            target_c.as_ptr(),
            fstype_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            flags,
            data_c
                .as_ref()
                .map_or(std::ptr::null(), |c| c.as_ptr().cast()),
        )
    };
    if rc != 0 {
        return Err(SetupError::sys(
            step,
            format!(
                "mount {} on {} (type {}, flags {flags:#x}, data {:?})",
                src.map_or("none".into(), |s| s.display().to_string()),
                target.display(),
                fstype.unwrap_or("none"),
                data.unwrap_or("")
            ),
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// Parsed mount options: flags to set, propagation flags to apply afterwards, data for the
/// filesystem.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct MountOptions {
    pub flags: libc::c_ulong,
    pub propagation: Vec<libc::c_ulong>,
    pub data: Vec<String>,
    pub bind: bool,
}

const FLAG_OPTIONS: &[(&str, bool, libc::c_ulong)] = &[
    // (name, clears the flag, flag)
    ("ro", false, libc::MS_RDONLY),
    ("rw", true, libc::MS_RDONLY),
    ("suid", true, libc::MS_NOSUID),
    ("nosuid", false, libc::MS_NOSUID),
    ("dev", true, libc::MS_NODEV),
    ("nodev", false, libc::MS_NODEV),
    ("exec", true, libc::MS_NOEXEC),
    ("noexec", false, libc::MS_NOEXEC),
    ("sync", false, libc::MS_SYNCHRONOUS),
    ("async", true, libc::MS_SYNCHRONOUS),
    ("dirsync", false, libc::MS_DIRSYNC),
    ("mand", false, libc::MS_MANDLOCK),
    ("nomand", true, libc::MS_MANDLOCK),
    ("atime", true, libc::MS_NOATIME),
    ("noatime", false, libc::MS_NOATIME),
    ("diratime", true, libc::MS_NODIRATIME),
    ("nodiratime", false, libc::MS_NODIRATIME),
    ("relatime", false, libc::MS_RELATIME),
    ("norelatime", true, libc::MS_RELATIME),
    ("strictatime", false, libc::MS_STRICTATIME),
    ("nostrictatime", true, libc::MS_STRICTATIME),
    ("lazytime", false, libc::MS_LAZYTIME),
    ("nolazytime", true, libc::MS_LAZYTIME),
    ("silent", false, libc::MS_SILENT),
    ("loud", true, libc::MS_SILENT),
    ("remount", false, libc::MS_REMOUNT),
    ("defaults", false, 0),
];

const PROPAGATION_OPTIONS: &[(&str, libc::c_ulong)] = &[
    ("private", libc::MS_PRIVATE),
    ("rprivate", libc::MS_PRIVATE | libc::MS_REC),
    ("shared", libc::MS_SHARED),
    ("rshared", libc::MS_SHARED | libc::MS_REC),
    ("slave", libc::MS_SLAVE),
    ("rslave", libc::MS_SLAVE | libc::MS_REC),
    ("unbindable", libc::MS_UNBINDABLE),
    ("runbindable", libc::MS_UNBINDABLE | libc::MS_REC),
];

/// Options this runtime recognises but does not implement: failing by name beats ignoring.
const UNSUPPORTED_OPTIONS: &[&str] = &[
    "idmap",
    "ridmap",
    "tmpcopyup",
    "rro",
    "rrw",
    "rnosuid",
    "rsuid",
    "rnodev",
    "rdev",
    "rnoexec",
    "rexec",
    "rnoatime",
    "ratime",
    "rrelatime",
    "rnorelatime",
    "rstrictatime",
    "rnostrictatime",
    "rnodiratime",
    "rdiratime",
    "rnosymfollow",
    "rsymfollow",
    "nosymfollow",
    "symfollow",
    "copy-symlink",
    "src-nofollow",
    "dest-nofollow",
];

/// Every named mount option this runtime applies (filesystem data options such as `mode=`
/// pass through to the filesystem and are not listed), sorted.
pub(crate) fn known_options() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = FLAG_OPTIONS
        .iter()
        .map(|(n, _, _)| *n)
        .chain(PROPAGATION_OPTIONS.iter().map(|(n, _)| *n))
        .chain(["bind", "rbind"])
        .collect();
    v.sort_unstable();
    v
}

pub(crate) fn parse_options(opts: &[String]) -> Result<MountOptions, String> {
    let mut out = MountOptions::default();
    for o in opts {
        if let Some((_, clear, flag)) = FLAG_OPTIONS.iter().find(|(n, _, _)| *n == o) {
            if *clear {
                out.flags &= !flag;
            } else {
                out.flags |= flag;
            }
        } else if let Some((_, flag)) = PROPAGATION_OPTIONS.iter().find(|(n, _)| *n == o) {
            out.propagation.push(*flag);
        } else if o == "bind" {
            out.bind = true;
            out.flags |= libc::MS_BIND;
        } else if o == "rbind" {
            out.bind = true;
            out.flags |= libc::MS_BIND | libc::MS_REC;
        } else if UNSUPPORTED_OPTIONS.contains(&o.as_str()) {
            return Err(format!("mount option {o:?} is not supported"));
        } else {
            out.data.push(o.clone());
        }
    }
    Ok(out)
}

pub(crate) fn propagation_flags(name: &str) -> Option<libc::c_ulong> {
    PROPAGATION_OPTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
}

/// Resolves `unsafe_path` inside `root`, following symlinks as if `root` were `/`, so a
/// symlink in the rootfs can never point a mount outside it.
pub(crate) fn secure_join(root: &Path, unsafe_path: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    let mut queue: VecDeque<OsString> = unsafe_path.components().filter_map(component).collect();
    let mut links = 0;
    while let Some(c) = queue.pop_front() {
        if c == ".." {
            out.pop();
            continue;
        }
        let candidate = root.join(&out).join(&c);
        match fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 255 {
                    return Err(format!(
                        "too many symlinks resolving {}",
                        unsafe_path.display()
                    ));
                }
                let target = fs::read_link(&candidate)
                    .map_err(|e| format!("readlink {}: {e}", candidate.display()))?;
                if target.is_absolute() {
                    out.clear();
                }
                for (i, t) in target.components().filter_map(component).enumerate() {
                    queue.insert(i, t);
                }
            }
            _ => out.push(c),
        }
    }
    Ok(root.join(out))
}

fn component(c: Component<'_>) -> Option<OsString> {
    match c {
        Component::Normal(s) => Some(s.to_owned()),
        Component::ParentDir => Some("..".into()),
        _ => None,
    }
}

fn mkdir_all(step: &str, p: &Path) -> R {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(p)
        .map_err(|e| SetupError::io(step, format!("mkdir {}", p.display()), &e))
}

/// Creates an empty file at `p` (and its parents) to bind a file onto.
fn touch(step: &str, p: &Path) -> R {
    if let Some(parent) = p.parent() {
        mkdir_all(step, parent)?;
    }
    if p.exists() {
        return Ok(());
    }
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(p)
        .map(|_| ())
        .map_err(|e| SetupError::io(step, format!("create {}", p.display()), &e))
}

/// Flags of an existing mount that a bind remount must keep (the kernel refuses to clear
/// locked flags in a user namespace).
fn existing_flags(p: &Path) -> libc::c_ulong {
    // SAFETY: statvfs fills a plain struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let c = cstr(p);
    // SAFETY: valid C string and struct pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    let mut flags = 0;
    for (st_flag, ms_flag) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
        (libc::ST_RDONLY, libc::MS_RDONLY),
    ] {
        if st.f_flag & st_flag != 0 {
            flags |= ms_flag;
        }
    }
    flags
}

/// Mounts one spec mount under `rootfs` (before pivot_root).
pub(crate) fn mount_one(
    index: usize,
    m: &Mount,
    rootfs: &Path,
    bundle: &Path,
    cgroups: &[CgroupMount],
    mount_label: Option<&str>,
) -> R {
    let step = "mounts";
    let dest_name = m.destination().display().to_string();
    let ctx = |msg: String| SetupError::new(step, format!("mounts[{index}] ({dest_name}): {msg}"));
    let opts = parse_options(m.options().as_deref().unwrap_or(&[])).map_err(ctx)?;
    let dest = secure_join(rootfs, m.destination()).map_err(ctx)?;
    let typ = m
        .typ()
        .as_deref()
        .unwrap_or(if opts.bind { "bind" } else { "" });
    let is_bind = opts.bind || typ == "bind";
    if typ.is_empty() {
        return Err(ctx("no type and no bind/rbind option".into()));
    }
    if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
        return Err(SetupError::new(
            step,
            format!("mounts[{index}].uidMappings (idmapped mounts) is not supported"),
        ));
    }
    let mut data = opts.data.clone();
    if !matches!(typ, "proc" | "sysfs" | "bind" | "cgroup" | "cgroup2") {
        data.extend(crate::lsm::mount_label_option(mount_label));
    }
    let data = data.join(",");
    if is_bind {
        let src = m
            .source()
            .as_deref()
            .ok_or_else(|| ctx("bind mount without a source".into()))?;
        let src = if src.is_absolute() {
            src.to_path_buf()
        } else {
            bundle.join(src)
        };
        let meta =
            fs::metadata(&src).map_err(|e| ctx(format!("bind source {}: {e}", src.display())))?;
        if meta.is_dir() {
            mkdir_all(step, &dest)?;
        } else {
            touch(step, &dest)?;
        }
        let bind_flags = libc::MS_BIND | (opts.flags & libc::MS_REC);
        mount(step, Some(&src), &dest, None, bind_flags, None)?;
        // A bind ignores every other flag: remount to apply ro/nosuid/..., keeping the flags
        // the kernel locked on the source.
        let extra = opts.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
        if extra != 0 {
            let keep = existing_flags(&dest) & !libc::MS_RDONLY;
            mount(
                step,
                None,
                &dest,
                None,
                libc::MS_BIND | libc::MS_REMOUNT | extra | keep,
                None,
            )?;
        }
    } else if typ == "cgroup" || typ == "cgroup2" {
        mount_cgroups(step, &dest, &opts, cgroups)?;
    } else {
        mkdir_all(step, &dest)?;
        let src = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
        mount(
            step,
            Some(&src),
            &dest,
            Some(typ),
            opts.flags & !libc::MS_REMOUNT,
            Some(&data),
        )?;
    }
    for p in &opts.propagation {
        mount(step, None, &dest, None, *p, None)?;
    }
    Ok(())
}

/// The spec's cgroup mount: a tmpfs with one bind of the container's own cgroup directory per
/// v1 hierarchy (or one bind for v2), so the container sees only its own cgroup.
fn mount_cgroups(step: &str, dest: &Path, opts: &MountOptions, cgroups: &[CgroupMount]) -> R {
    mkdir_all(step, dest)?;
    let ro = opts.flags & libc::MS_RDONLY;
    let base = opts.flags & (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC);
    if cgroups.len() == 1 && cgroups[0].name.is_empty() {
        mount(
            step,
            Some(&cgroups[0].host_dir),
            dest,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )?;
        return mount(
            step,
            None,
            dest,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | base | ro,
            None,
        );
    }
    mount(
        step,
        Some(Path::new("tmpfs")),
        dest,
        Some("tmpfs"),
        base,
        Some("mode=755"),
    )?;
    for cg in cgroups {
        let sub = dest.join(&cg.name);
        mkdir_all(step, &sub)?;
        mount(step, Some(&cg.host_dir), &sub, None, libc::MS_BIND, None)?;
        mount(
            step,
            None,
            &sub,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | base | ro,
            None,
        )?;
        // Comounted controllers (cpu,cpuacct) are also reachable by each name, as on the host.
        if cg.name.contains(',') {
            for part in cg.name.split(',') {
                let _ = symlink(&cg.name, dest.join(part));
            }
        }
    }
    if ro != 0 {
        mount(
            step,
            None,
            dest,
            None,
            libc::MS_REMOUNT | base | ro,
            Some("mode=755"),
        )?;
    }
    Ok(())
}

/// Default device nodes every container gets, as runc creates them.
const DEFAULT_DEVICES: &[(&str, u32, u32)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// Creates /dev nodes (defaults, then spec devices) and the usual /dev symlinks. In a user
/// namespace mknod is not allowed: the host node is bind-mounted instead, as runc does.
pub(crate) fn setup_dev(rootfs: &Path, devices: &[LinuxDevice], in_userns: bool) -> R {
    let step = "devices";
    for (path, major, minor) in DEFAULT_DEVICES {
        if devices.iter().any(|d| d.path() == Path::new(path)) {
            continue;
        }
        make_device(
            step,
            rootfs,
            Path::new(path),
            libc::S_IFCHR,
            *major,
            *minor,
            0o666,
            None,
            None,
            in_userns,
        )?;
    }
    for (i, d) in devices.iter().enumerate() {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
            LinuxDeviceType::B => libc::S_IFBLK,
            LinuxDeviceType::P => libc::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(SetupError::new(
                    step,
                    format!(
                        "linux.devices[{i}] ({}): type \"a\" is not a device node type",
                        d.path().display()
                    ),
                ))
            }
        };
        if !d.path().starts_with("/dev") {
            return Err(SetupError::new(
                step,
                format!(
                    "linux.devices[{i}].path {} is not under /dev",
                    d.path().display()
                ),
            ));
        }
        let mode = d.file_mode().unwrap_or(0o666);
        make_device(
            step,
            rootfs,
            d.path(),
            kind,
            d.major() as u32,
            d.minor() as u32,
            mode,
            d.uid(),
            d.gid(),
            in_userns,
        )?;
    }
    let dev = rootfs.join("dev");
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let p = dev.join(link);
        if let Err(e) = symlink(target, &p) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(SetupError::io(step, format!("symlink {}", p.display()), &e));
            }
        }
    }
    if Path::new("/proc/kcore").exists() {
        let _ = symlink("/proc/kcore", dev.join("core"));
    }
    // /dev/ptmx must be the container's devpts instance, not a host node.
    if dev.join("pts/ptmx").exists() {
        let ptmx = dev.join("ptmx");
        let _ = fs::remove_file(&ptmx);
        symlink("pts/ptmx", &ptmx).map_err(|e| SetupError::io(step, "symlink /dev/ptmx", &e))?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn make_device(
    step: &str,
    rootfs: &Path,
    path: &Path,
    kind: libc::mode_t,
    major: u32,
    minor: u32,
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
    in_userns: bool,
) -> R {
    let dest = secure_join(rootfs, path).map_err(|e| SetupError::new(step, e))?;
    if let Some(parent) = dest.parent() {
        mkdir_all(step, parent)?;
    }
    if in_userns {
        touch(step, &dest)?;
        return mount(step, Some(path), &dest, None, libc::MS_BIND, None);
    }
    if let Ok(m) = fs::symlink_metadata(&dest) {
        let ft = m.file_type();
        if (ft.is_char_device() || ft.is_block_device()) && m.rdev() == libc::makedev(major, minor)
        {
            return Ok(());
        }
        let _ = fs::remove_file(&dest);
    }
    let c = cstr(&dest);
    // SAFETY: valid C string; mknod has no memory preconditions.
    if unsafe {
        libc::mknod(
            c.as_ptr(),
            kind | (mode & 0o7777),
            libc::makedev(major, minor),
        )
    } != 0
    {
        return Err(SetupError::sys(
            step,
            format!("mknod {}", path.display()),
            nix::errno::Errno::last(),
        ));
    }
    // mknod is subject to the umask: set the exact mode.
    // SAFETY: as above.
    unsafe { libc::chmod(c.as_ptr(), mode & 0o7777) };
    if uid.is_some() || gid.is_some() {
        // SAFETY: as above; -1 keeps an id unchanged.
        unsafe { libc::chown(c.as_ptr(), uid.unwrap_or(u32::MAX), gid.unwrap_or(u32::MAX)) };
    }
    Ok(())
}

/// pivot_root into `rootfs` and detach the old root, without a temporary directory: pivot
/// onto itself, then unmount the old root that is stacked on `/` (runc's approach).
pub(crate) fn pivot_root(rootfs: &Path) -> R {
    let step = "pivot_root";
    std::env::set_current_dir(rootfs)
        .map_err(|e| SetupError::io(step, format!("chdir {}", rootfs.display()), &e))?;
    // SAFETY: pivot_root with two valid C strings.
    if unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) } != 0 {
        return Err(SetupError::sys(
            step,
            format!("pivot_root {}", rootfs.display()),
            nix::errno::Errno::last(),
        ));
    }
    // The old root must not propagate its unmount to the host.
    mount(
        step,
        None,
        Path::new("."),
        None,
        libc::MS_SLAVE | libc::MS_REC,
        None,
    )?;
    // SAFETY: umount2 with a valid C string.
    if unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(SetupError::sys(
            step,
            "detach the old root",
            nix::errno::Errno::last(),
        ));
    }
    std::env::set_current_dir("/").map_err(|e| SetupError::io(step, "chdir /", &e))
}

/// Masks each path: /dev/null over files, an empty read-only tmpfs over directories.
pub(crate) fn mask_paths(paths: &[String]) -> R {
    let step = "maskedPaths";
    for p in paths {
        let path = Path::new(p);
        let Ok(meta) = fs::metadata(path) else {
            continue;
        };
        if meta.is_dir() {
            mount(
                step,
                Some(Path::new("tmpfs")),
                path,
                Some("tmpfs"),
                libc::MS_RDONLY,
                None,
            )?;
        } else {
            mount(
                step,
                Some(Path::new("/dev/null")),
                path,
                None,
                libc::MS_BIND,
                None,
            )?;
        }
    }
    Ok(())
}

/// Makes each path a read-only bind of itself.
pub(crate) fn readonly_paths(paths: &[String]) -> R {
    let step = "readonlyPaths";
    for p in paths {
        let path = Path::new(p);
        if fs::symlink_metadata(path).is_err() {
            continue;
        }
        mount(
            step,
            Some(path),
            path,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )?;
        let keep = existing_flags(path);
        mount(
            step,
            None,
            path,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | keep,
            None,
        )?;
    }
    Ok(())
}

/// Remounts / read-only (root.readonly).
pub(crate) fn readonly_root() -> R {
    let keep = existing_flags(Path::new("/"));
    mount(
        "root.readonly",
        None,
        Path::new("/"),
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | keep,
        None,
    )
}

/// The mount point containing `p` (longest prefix in mountinfo).
pub(crate) fn mountpoint_of(p: &Path) -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|m| p.starts_with(m))
        .max_by_key(|m| m.as_os_str().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let o = parse_options(&[
            "nosuid".into(),
            "rbind".into(),
            "ro".into(),
            "rslave".into(),
            "mode=755".into(),
        ])
        .unwrap();
        assert_eq!(
            o.flags,
            libc::MS_NOSUID | libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY
        );
        assert_eq!(o.propagation, vec![libc::MS_SLAVE | libc::MS_REC]);
        assert_eq!(o.data, vec!["mode=755".to_string()]);
        assert!(o.bind);
        let o = parse_options(&["ro".into(), "rw".into()]).unwrap();
        assert_eq!(o.flags, 0);
        let err = parse_options(&["idmap".into()]).unwrap_err();
        assert!(err.contains("idmap"), "{err}");
    }

    #[test]
    fn secure_join_stays_in_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        symlink("/etc", root.join("a/abs")).unwrap();
        symlink("../../../..", root.join("a/b/up")).unwrap();
        assert_eq!(
            secure_join(root, Path::new("/a/abs/passwd")).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            secure_join(root, Path::new("/a/b/up/x")).unwrap(),
            root.join("x")
        );
        assert_eq!(
            secure_join(root, Path::new("/../../x")).unwrap(),
            root.join("x")
        );
    }
}
