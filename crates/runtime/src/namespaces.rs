//! Namespaces: the one table of join order, and clone flags for new namespaces.

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use crate::error::Error;

/// One namespace kind: its /proc/<pid>/ns name, clone flag, and why it sits where it sits in
/// the join order.
pub(crate) struct NsKind {
    pub typ: LinuxNamespaceType,
    pub proc_name: &'static str,
    pub flag: libc::c_int,
    /// Documentation kept beside the entry (never read by code).
    #[allow(dead_code)]
    pub why: &'static str,
}

/// The order in which a helper joins existing namespaces (`setns`), for create (`path`
/// namespaces) and exec (all of the container's). All namespace fds are opened before the
/// first join, because joining the mount namespace changes what /proc paths resolve to.
pub(crate) const JOIN_ORDER: &[NsKind] = &[
    NsKind {
        typ: LinuxNamespaceType::User,
        proc_name: "user",
        flag: libc::CLONE_NEWUSER,
        why: "first: it grants the capabilities needed to join the namespaces it owns",
    },
    NsKind {
        typ: LinuxNamespaceType::Ipc,
        proc_name: "ipc",
        flag: libc::CLONE_NEWIPC,
        why: "owned by the user namespace, independent of the others",
    },
    NsKind {
        typ: LinuxNamespaceType::Uts,
        proc_name: "uts",
        flag: libc::CLONE_NEWUTS,
        why: "owned by the user namespace, independent of the others",
    },
    NsKind {
        typ: LinuxNamespaceType::Network,
        proc_name: "net",
        flag: libc::CLONE_NEWNET,
        why: "owned by the user namespace, independent of the others",
    },
    NsKind {
        typ: LinuxNamespaceType::Pid,
        proc_name: "pid",
        flag: libc::CLONE_NEWPID,
        why: "affects only children: the process forked after all joins is the one inside",
    },
    NsKind {
        typ: LinuxNamespaceType::Cgroup,
        proc_name: "cgroup",
        flag: libc::CLONE_NEWCGROUP,
        why: "after the helper joined the container's cgroup by host path, before the mount ns hides host paths",
    },
    NsKind {
        typ: LinuxNamespaceType::Time,
        proc_name: "time",
        flag: libc::CLONE_NEWTIME,
        why: "affects only children, like pid",
    },
    NsKind {
        typ: LinuxNamespaceType::Mount,
        proc_name: "mnt",
        flag: libc::CLONE_NEWNS,
        why: "last: it changes the root and cwd, after which host paths are gone",
    },
];

pub(crate) fn kind(typ: LinuxNamespaceType) -> &'static NsKind {
    JOIN_ORDER
        .iter()
        .find(|k| k.typ == typ)
        .unwrap_or(&JOIN_ORDER[0])
}

/// Validates the spec's namespace list: no duplicates, a new mount namespace (rootfs setup
/// needs a private one), no time namespace.
pub(crate) fn validate(list: &[LinuxNamespace]) -> Result<(), Error> {
    let mut seen = Vec::new();
    for ns in list {
        if seen.contains(&ns.typ()) {
            return Err(Error::InvalidSpec(format!(
                "linux.namespaces lists {} twice",
                kind(ns.typ()).proc_name
            )));
        }
        seen.push(ns.typ());
        if ns.typ() == LinuxNamespaceType::Time {
            return Err(Error::unsupported("linux.namespaces[type=time]"));
        }
        if ns.typ() == LinuxNamespaceType::Mount && ns.path().is_some() {
            return Err(Error::unsupported(
                "linux.namespaces[type=mount].path (joining an existing mount namespace)",
            ));
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(Error::InvalidSpec(format!(
                    "linux.namespaces[type={}].path {p:?} must be absolute",
                    kind(ns.typ()).proc_name
                )));
            }
        }
    }
    if !seen.contains(&LinuxNamespaceType::Mount) {
        return Err(Error::InvalidSpec(
            "linux.namespaces must include a new mount namespace (the rootfs is set up in it)"
                .into(),
        ));
    }
    Ok(())
}

/// Clone flags of the namespaces the spec asks to create (no `path`).
pub(crate) fn new_flags(list: &[LinuxNamespace]) -> libc::c_int {
    list.iter()
        .filter(|ns| ns.path().is_none())
        .map(|ns| kind(ns.typ()).flag)
        .fold(0, |a, b| a | b)
}

pub(crate) fn has(list: &[LinuxNamespace], typ: LinuxNamespaceType) -> bool {
    list.iter().any(|ns| ns.typ() == typ)
}
