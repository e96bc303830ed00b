//! AppArmor and SELinux, applied as runc applies them: the process label is set "on exec"
//! through /proc/self/attr, just before the entrypoint's execve. Neither LSM exists on this
//! project's CI host, so these paths are unverified there (see docs/runtime.md).

use std::path::Path;

use oci_spec::runtime::Process;

use crate::error::SetupError;

pub(crate) fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.starts_with('Y'))
}

pub(crate) fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// Sets the AppArmor profile and SELinux label the next execve switches to.
pub(crate) fn set_exec_labels(p: &Process) -> Result<(), SetupError> {
    if let Some(profile) = p.apparmor_profile().as_deref().filter(|s| !s.is_empty()) {
        let attr = if Path::new("/proc/self/attr/apparmor/exec").exists() {
            "/proc/self/attr/apparmor/exec"
        } else {
            "/proc/self/attr/exec"
        };
        std::fs::write(attr, format!("exec {profile}")).map_err(|e| {
            SetupError::io(
                "apparmor",
                format!("process.apparmorProfile {profile:?}: write {attr}"),
                &e,
            )
        })?;
    }
    if let Some(label) = p.selinux_label().as_deref().filter(|s| !s.is_empty()) {
        std::fs::write("/proc/self/attr/exec", label).map_err(|e| {
            SetupError::io(
                "selinux",
                format!("process.selinuxLabel {label:?}: write /proc/self/attr/exec"),
                &e,
            )
        })?;
    }
    Ok(())
}

/// The mount option carrying linux.mountLabel (SELinux only).
pub(crate) fn mount_label_option(label: Option<&str>) -> Option<String> {
    label
        .filter(|l| !l.is_empty() && selinux_enabled())
        .map(|l| format!("context=\"{l}\""))
}
