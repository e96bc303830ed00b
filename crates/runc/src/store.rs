//! The state directory: one directory per container under `--root` (the library's
//! `state.json` and `exec.fifo`, and this binary's `runc.json` with the creation time), the
//! runc-compatible container state document, and container id rules.

use std::{
    fs,
    os::unix::fs::{DirBuilderExt, MetadataExt},
    path::{Path, PathBuf},
    time::SystemTime,
};

use lifecycle_runtime::{Container, Status};
use serde::{Deserialize, Serialize};

use crate::Fail;

/// This binary's own file in a container's state directory.
const META: &str = "runc.json";

#[derive(Serialize, Deserialize)]
struct Meta {
    created: String,
}

/// runc's rule (`^[\w+-\.]+$`, where `+-\.` is the range `+` to `.`, so `,` is allowed too),
/// and never `.` or `..`.
pub fn validate_id(id: &str) -> Result<(), Fail> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b',' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Fail::new(format!("invalid container ID format: {id:?}")))
    }
}

pub struct Root(pub PathBuf);

impl Root {
    pub fn dir(&self, id: &str) -> PathBuf {
        self.0.join(id)
    }

    /// Claims the state directory of a new container: `mkdir` is the atomic "id is free".
    pub fn claim(&self, id: &str) -> Result<PathBuf, Fail> {
        validate_id(id)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.0)
            .map_err(|e| Fail::new(format!("create root {}: {e}", self.0.display())))?;
        let dir = self.dir(id);
        // 0711: the init of a user-namespaced container reaches exec.fifo through it.
        match fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Fail::new("container with given ID already exists"))
            }
            Err(e) => return Err(Fail::new(format!("create {}: {e}", dir.display()))),
        }
        let meta = Meta {
            created: crate::log::rfc3339(SystemTime::now(), true),
        };
        let write = fs::write(
            dir.join(META),
            serde_json::to_vec(&meta).unwrap_or_default(),
        );
        if let Err(e) = write {
            let _ = fs::remove_dir_all(&dir);
            return Err(Fail::new(format!(
                "write {}: {e}",
                dir.join(META).display()
            )));
        }
        Ok(dir)
    }

    /// The container `id`, or runc's "container does not exist".
    pub fn load(&self, id: &str) -> Result<Container, Fail> {
        validate_id(id)?;
        let dir = self.dir(id);
        if !dir.join("state.json").exists() {
            return Err(Fail::not_exist());
        }
        Container::load(&dir).map_err(Fail::from)
    }

    /// Ids of every container under the root, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = fs::read_dir(&self.0)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("state.json").exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        ids
    }
}

pub fn status_str(s: Status) -> &'static str {
    match s {
        Status::Created => "created",
        Status::Running => "running",
        Status::Paused => "paused",
        Status::Stopped => "stopped",
    }
}

/// The container state as `runc state` prints it (the OCI runtime spec's state, plus
/// `rootfs`, `created` and `owner`), in runc's field order.
#[derive(Serialize)]
pub struct StateDoc {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: &'static str,
    pub bundle: String,
    pub rootfs: String,
    pub created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::HashMap<String, String>>,
    pub owner: String,
}

impl StateDoc {
    pub fn of(c: &Container, dir: &Path) -> StateDoc {
        let status = c.status();
        let spec = c.spec();
        let root = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_default();
        let joined = if root.is_absolute() {
            root
        } else {
            c.bundle().join(root)
        };
        // As runc (filepath.Clean): `root.path: "."` reads as the bundle, not `<bundle>/.`.
        let rootfs: std::path::PathBuf = joined.components().collect();
        let created = fs::read(dir.join(META))
            .ok()
            .and_then(|d| serde_json::from_slice::<Meta>(&d).ok())
            .map(|m| m.created)
            .unwrap_or_default();
        StateDoc {
            oci_version: spec.version().clone(),
            id: c.id().to_owned(),
            // runc reports 0 once the init is gone.
            pid: if status == Status::Stopped {
                0
            } else {
                c.init_pid()
            },
            status: status_str(status),
            bundle: c.bundle().display().to_string(),
            rootfs: rootfs.display().to_string(),
            created,
            annotations: spec.annotations().clone().filter(|a| !a.is_empty()),
            owner: String::new(),
        }
    }
}

/// The user name owning `dir` (runc's `list` OWNER column), or the uid as a number.
pub fn owner_of(dir: &Path) -> String {
    let Ok(uid) = fs::metadata(dir).map(|m| m.uid()) else {
        return String::new();
    };
    fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| format!("#{uid}"))
}

/// Writes `pid` to `path` as runc does: no newline, through a temporary file renamed into
/// place, so a reader never sees a partial pid.
pub fn write_pid_file(path: &str, pid: i32) -> Result<(), Fail> {
    let path = std::path::absolute(path).map_err(|e| Fail::new(format!("pid file {path}: {e}")))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}"));
    fs::write(&tmp, pid.to_string())
        .and_then(|()| fs::rename(&tmp, &path))
        .map_err(|e| Fail::new(format!("write pid file {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_as_runc() {
        for ok in ["a", "abc-1.2_3", "a+b", "a,b", "A9"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "a:b", "ä", "a*"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }
}
