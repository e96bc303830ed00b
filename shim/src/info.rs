//! `-info`: the RuntimeInfo containerd 2.x asks a runtime handler for, with an OCI `features`
//! document that claims only what the runtime implements.

use std::io::{self, Read};

use containerd_shim_protos::{
    protobuf::{well_known_types::any::Any, Message},
    types::introspection::{RuntimeInfo, RuntimeVersion},
};
use serde_json::json;

use crate::start::RUNC_OPTIONS_URL;

pub const RUNTIME_NAME: &str = "io.containerd.lifecycle.v1";
const FEATURES_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/features/Features";

#[derive(Debug, thiserror::Error)]
pub enum InfoError {
    #[error("reading stdin: {0}")]
    Stdin(#[source] io::Error),
    #[error("stdin is not a runtime options Any: {0}")]
    Options(#[source] containerd_shim_protos::protobuf::Error),
    #[error("encoding: {0}")]
    Encode(#[source] containerd_shim_protos::protobuf::Error),
}

fn all_caps() -> Vec<String> {
    let mut all: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    all.sort();
    all
}

/// The OCI runtime features document (runtime-spec features.md).
pub fn features() -> serde_json::Value {
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.1.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "mand", "noatime",
            "nodev", "nodiratime", "noexec", "nomand", "norelatime", "nostrictatime", "nosuid", "private",
            "rbind", "relatime", "remount", "ro", "rprivate", "rshared", "rslave", "runbindable", "rw",
            "shared", "slave", "strictatime", "suid", "sync", "unbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": all_caps(),
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false },
            "seccomp": { "enabled": true },
            "apparmor": { "enabled": true },
            "selinux": { "enabled": true },
            "intelRdt": { "enabled": false }
        },
        "annotations": {
            "io.containerd.lifecycle.v1.hooks": "lifecycle.shim/post-start, lifecycle.shim/pre-stop"
        }
    })
}

pub fn run() -> Result<Vec<u8>, InfoError> {
    let mut stdin = Vec::new();
    io::stdin()
        .read_to_end(&mut stdin)
        .map_err(InfoError::Stdin)?;
    let mut info = RuntimeInfo::new();
    info.name = RUNTIME_NAME.to_owned();
    let mut version = RuntimeVersion::new();
    version.version = env!("CARGO_PKG_VERSION").to_owned();
    version.revision = option_env!("LIFECYCLE_SHIM_REVISION")
        .unwrap_or_default()
        .to_owned();
    info.version = Some(version).into();
    if !stdin.is_empty() {
        // Echo runc options back, as runc's shim does; others are not ours to interpret.
        let any = Any::parse_from_bytes(&stdin).map_err(InfoError::Options)?;
        if any.type_url.ends_with(RUNC_OPTIONS_URL) {
            info.options = Some(any).into();
        }
    }
    let mut doc = Any::new();
    doc.type_url = FEATURES_URL.to_owned();
    doc.value = serde_json::to_vec(&features()).unwrap_or_default();
    info.features = Some(doc).into();
    info.write_to_bytes().map_err(InfoError::Encode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_document_shape() {
        let f = features();
        assert_eq!(f["ociVersionMin"], "1.0.0");
        assert!(f["linux"]["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "CAP_SYS_ADMIN"));
        assert_eq!(f["linux"]["cgroup"]["systemd"], false);
    }
}
