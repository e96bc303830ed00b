//! Spec checks done in the caller before anything is created: every field the runtime does not
//! implement fails create by name, and obviously wrong values are reported with the field.

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::{error::Error, namespaces, process, rootfs, seccomp};

pub(crate) fn spec(spec: &Spec) -> Result<(), Error> {
    if spec.root().is_none() {
        return Err(Error::InvalidSpec("root is required".into()));
    }
    let p = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::InvalidSpec("process is required".into()))?;
    process::validate(p).map_err(classify)?;
    if spec.solaris().is_some() {
        return Err(Error::unsupported("solaris"));
    }
    if spec.windows().is_some() {
        return Err(Error::unsupported("windows"));
    }
    if spec.vm().is_some() {
        return Err(Error::unsupported("vm"));
    }
    if spec.zos().is_some() {
        return Err(Error::unsupported("zos"));
    }
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::InvalidSpec("linux is required".into()))?;
    if linux.intel_rdt().is_some() {
        return Err(Error::unsupported("linux.intelRdt"));
    }
    if linux.memory_policy().is_some() {
        return Err(Error::unsupported("linux.memoryPolicy"));
    }
    if linux.personality().is_some() {
        return Err(Error::unsupported("linux.personality"));
    }
    if linux.time_offsets().is_some() {
        return Err(Error::unsupported("linux.timeOffsets"));
    }
    if linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(Error::unsupported("linux.netDevices"));
    }
    lsm(spec)?;
    let nss = linux.namespaces().clone().unwrap_or_default();
    namespaces::validate(&nss)?;
    let new_user = nss
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if new_user && !has_maps {
        return Err(Error::InvalidSpec(
            "a new user namespace needs linux.uidMappings and linux.gidMappings".into(),
        ));
    }
    if !new_user && has_maps {
        return Err(Error::InvalidSpec(
            "linux.uidMappings/gidMappings need a new user namespace in linux.namespaces".into(),
        ));
    }
    // The kernel refuses these at the user namespace step with a bare EINVAL on uid_map;
    // say which entry of which field is wrong instead.
    for (field, maps) in [
        ("linux.uidMappings", linux.uid_mappings()),
        ("linux.gidMappings", linux.gid_mappings()),
    ] {
        for (i, m) in maps.iter().flatten().enumerate() {
            if m.size() == 0 {
                return Err(Error::InvalidSpec(format!("{field}[{i}].size is 0")));
            }
            let overflows = |start: u32| u64::from(start) + u64::from(m.size()) > 1 << 32;
            if overflows(m.container_id()) || overflows(m.host_id()) {
                return Err(Error::InvalidSpec(format!(
                    "{field}[{i}]: containerID {} / hostID {} + size {} is beyond the 32-bit id range",
                    m.container_id(),
                    m.host_id(),
                    m.size()
                )));
            }
        }
    }
    if (spec.hostname().as_ref().is_some_and(|h| !h.is_empty())
        || spec.domainname().as_ref().is_some_and(|h| !h.is_empty()))
        && !namespaces::has(&nss, LinuxNamespaceType::Uts)
    {
        return Err(Error::InvalidSpec(
            "hostname/domainname need a UTS namespace in linux.namespaces".into(),
        ));
    }
    for (k, _) in linux.sysctl().iter().flatten() {
        sysctl(k, &nss)?;
    }
    if let Some(s) = linux.seccomp() {
        seccomp::validate(s).map_err(Error::unsupported)?;
    }
    if let Some(prop) = linux
        .rootfs_propagation()
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        if rootfs::propagation_flags(prop).is_none() {
            return Err(Error::InvalidSpec(format!("linux.rootfsPropagation {prop:?} is not one of private, rprivate, shared, rshared, slave, rslave, unbindable, runbindable")));
        }
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
            return Err(Error::unsupported(format!(
                "mounts[{i}].uidMappings/gidMappings (idmapped mounts)"
            )));
        }
        if let Err(e) = rootfs::parse_options(m.options().as_deref().unwrap_or(&[])) {
            return Err(Error::unsupported(format!(
                "mounts[{i}] ({}): {}",
                m.destination().display(),
                e.trim_end_matches(" is not supported")
            )));
        }
        if !m.destination().is_absolute() {
            return Err(Error::InvalidSpec(format!(
                "mounts[{i}].destination {:?} must be absolute",
                m.destination()
            )));
        }
    }
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        if !d.path().starts_with("/dev/") {
            return Err(Error::InvalidSpec(format!(
                "linux.devices[{i}].path {} is not under /dev",
                d.path().display()
            )));
        }
    }
    Ok(())
}

fn classify(msg: String) -> Error {
    match msg.strip_suffix(" is not supported") {
        Some(field) => Error::unsupported(field),
        None => Error::InvalidSpec(msg),
    }
}

/// runc's rule: a sysctl is only allowed when the namespace it belongs to is the container's.
fn sysctl(key: &str, nss: &[oci_spec::runtime::LinuxNamespace]) -> Result<(), Error> {
    let ipc = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let need = if ipc.contains(&key) || key.starts_with("fs.mqueue.") {
        LinuxNamespaceType::Ipc
    } else if key.starts_with("net.") {
        LinuxNamespaceType::Network
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        LinuxNamespaceType::Uts
    } else {
        return Err(Error::InvalidSpec(format!(
            "linux.sysctl {key:?} is not namespaced: it would change the host"
        )));
    };
    if !nss.iter().any(|n| n.typ() == need) {
        return Err(Error::InvalidSpec(format!(
            "linux.sysctl {key:?} needs the container's own {} namespace",
            namespaces::kind(need).proc_name
        )));
    }
    if key.contains('/') || key.contains("..") {
        return Err(Error::InvalidSpec(format!(
            "linux.sysctl {key:?} is not a sysctl name"
        )));
    }
    Ok(())
}

/// AppArmor and SELinux settings need the LSM on the host. runc 1.1 fails create when they are
/// set on a host without it (checked on this project's CI host), and so do we, by name,
/// rather than run the container unconfined.
fn lsm(spec: &Spec) -> Result<(), Error> {
    let p = spec.process().as_ref();
    if p.and_then(|p| p.apparmor_profile().as_deref())
        .is_some_and(|s| !s.is_empty())
        && !crate::lsm::apparmor_enabled()
    {
        return Err(Error::InvalidSpec(
            "process.apparmorProfile is set but AppArmor is not enabled on this host".into(),
        ));
    }
    let selinux = crate::lsm::selinux_enabled();
    if p.and_then(|p| p.selinux_label().as_deref())
        .is_some_and(|s| !s.is_empty())
        && !selinux
    {
        return Err(Error::InvalidSpec(
            "process.selinuxLabel is set but SELinux is not enabled on this host".into(),
        ));
    }
    if spec
        .linux()
        .as_ref()
        .and_then(|l| l.mount_label().as_deref())
        .is_some_and(|s| !s.is_empty())
        && !selinux
    {
        return Err(Error::InvalidSpec(
            "linux.mountLabel is set but SELinux is not enabled on this host".into(),
        ));
    }
    Ok(())
}
