//! The small versioned state file a later process (the shim's `delete` after a shim crash)
//! uses to clean up.

use std::{
    fs,
    path::{Path, PathBuf},
};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::{cgroups::Cgroup, error::Error};

/// Bump when the format changes incompatibly; `load` refuses other versions by name.
pub(crate) const STATE_VERSION: u32 = 1;
pub(crate) const STATE_FILE: &str = "state.json";
/// The FIFO a [`crate::Hold::ExecFifo`] init blocks on until start.
pub(crate) const EXEC_FIFO: &str = "exec.fifo";

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct State {
    pub version: u32,
    pub id: String,
    pub bundle: PathBuf,
    /// 0 until the init exists.
    pub init_pid: i32,
    /// Field 22 of /proc/<pid>/stat, to tell our init from a process that reused its pid.
    pub init_start_time: u64,
    pub cgroup: Cgroup,
    pub spec: Spec,
    /// Held on `exec.fifo` rather than on the creating process's channel. (Absent in state
    /// written before it existed: those were always held by the channel.)
    #[serde(default)]
    pub exec_fifo: bool,
}

impl State {
    pub fn write(&self, dir: &Path) -> Result<(), Error> {
        let tmp = dir.join(".state.json.tmp");
        let data = serde_json::to_vec(self)
            .map_err(|e| Error::io("serialize state", std::io::Error::other(e)))?;
        fs::write(&tmp, data).map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
        fs::rename(&tmp, dir.join(STATE_FILE))
            .map_err(|e| Error::io(format!("rename state into {}", dir.display()), e))
    }

    pub fn read(dir: &Path) -> Result<State, Error> {
        let path = dir.join(STATE_FILE);
        let data = fs::read(&path).map_err(|e| Error::NoState {
            dir: dir.to_owned(),
            source: e,
        })?;
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version = serde_json::from_slice(&data).map_err(|e| Error::NoState {
            dir: dir.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        if v.version != STATE_VERSION {
            return Err(Error::StateVersion {
                path,
                found: v.version,
                expected: STATE_VERSION,
            });
        }
        serde_json::from_slice(&data).map_err(|e| Error::NoState {
            dir: dir.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })
    }
}

/// Start time of `pid` (clock ticks since boot), or None if it does not exist or is a zombie.
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    start_time_from_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Start time from the text of a /proc/<pid>/stat file (None for a zombie).
pub(crate) fn start_time_from_stat(stat: &str) -> Option<u64> {
    // The command may contain spaces and parentheses: fields start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // state is field 3; starttime is field 22.
    fields.nth(18)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_odd_command_names() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10";
        assert_eq!(start_time_from_stat(stat), Some(123456));
        let zombie = "42 (x) Z 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10";
        assert_eq!(start_time_from_stat(zombie), None);
        assert_eq!(start_time_from_stat("42 (x)"), None);
        assert!(start_time(std::process::id() as i32).is_some());
    }
}
