//! A container and its operations, one file per operation.

use std::{
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    sync::Mutex,
};

use oci_spec::runtime::Spec;

pub use oom::{OomEvent, OomWatcher};

use crate::{cgroups::Cgroup, channel::CallerEnd, error::Error, state};

mod create;
mod delete;
mod exec;
mod kill;
mod oom;
mod start;

/// Where the container's processes' stdio go. `None` is /dev/null.
#[derive(Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// What [`Container::create`] needs.
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub stdio: Stdio,
    /// Where the runtime keeps its state file (created if missing, removed by delete).
    pub state_dir: PathBuf,
    /// Who may release the held entrypoint.
    pub hold: Hold,
}

/// How a created container's init is held before its entrypoint, and so who can start it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Hold {
    /// Over the channel owned by the creating process: only the [`Container`] that
    /// [`Container::create`] returned can start it (the shim's in-process path). Dropping it
    /// makes the held init exit.
    #[default]
    Caller,
    /// On a FIFO in the state directory (`exec.fifo`, runc's pattern): the init blocks opening
    /// it for writing until [`Container::start`] opens it for reading, from any process that
    /// [`Container::load`]s the state. The creating process may exit. The status is `Created`
    /// while the FIFO exists.
    ExecFifo,
}

/// A created container, held before its entrypoint.
pub struct Created {
    pub container: Container,
    /// The pty master when `process.terminal` is true.
    pub console: Option<OwnedFd>,
}

/// A process started by [`Container::exec`]: a child of the caller.
pub struct Spawned {
    pub pid: i32,
    pub console: Option<OwnedFd>,
}

/// The container's status as the runtime can observe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Set up and held before the entrypoint.
    Created,
    Running,
    Paused,
    /// The init is gone.
    Stopped,
}

/// One container. Operations take `&self`; the type is `Send + Sync`.
pub struct Container {
    id: String,
    bundle: PathBuf,
    state_dir: PathBuf,
    spec: Spec,
    init_pid: i32,
    init_start_time: u64,
    cgroup: Cgroup,
    /// The channel to the held init (until start). None for a loaded container.
    held: Mutex<Option<CallerEnd>>,
    /// Created with [`Hold::ExecFifo`]: held while `<state_dir>/exec.fifo` exists.
    exec_fifo: bool,
}

impl Container {
    /// The container whose state is in `state_dir` (written by create, possibly in another
    /// process). Every operation works on it; [`Container::start`] only if it was created
    /// with [`Hold::ExecFifo`].
    pub fn load(state_dir: &Path) -> Result<Container, Error> {
        let st = state::State::read(state_dir)?;
        Ok(Container {
            id: st.id,
            bundle: st.bundle,
            state_dir: state_dir.to_owned(),
            spec: st.spec,
            init_pid: st.init_pid,
            init_start_time: st.init_start_time,
            cgroup: st.cgroup,
            held: Mutex::new(None),
            exec_fifo: st.exec_fifo,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The init's pid in the caller's pid namespace (0 if create never got that far).
    pub fn init_pid(&self) -> i32 {
        self.init_pid
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    pub fn bundle(&self) -> &Path {
        &self.bundle
    }

    /// Whether the init still runs (not exited, and its pid not reused by another process).
    pub fn init_alive(&self) -> bool {
        self.init_pid > 0 && state::start_time(self.init_pid) == Some(self.init_start_time)
    }

    pub fn status(&self) -> Status {
        if !self.init_alive() {
            return Status::Stopped;
        }
        if self.held.lock().map(|h| h.is_some()).unwrap_or(false) {
            return Status::Created;
        }
        if self.exec_fifo && self.exec_fifo_path().exists() {
            return Status::Created;
        }
        if self.is_frozen() {
            return Status::Paused;
        }
        Status::Running
    }

    /// Where a [`Hold::ExecFifo`] container's init waits for start.
    pub(crate) fn exec_fifo_path(&self) -> PathBuf {
        self.state_dir.join(state::EXEC_FIFO)
    }

    fn is_frozen(&self) -> bool {
        match &self.cgroup {
            Cgroup::V1(c) => c
                .controller_dir("freezer")
                .and_then(|d| std::fs::read_to_string(d.join("freezer.state")).ok())
                .is_some_and(|s| s.trim() == "FROZEN"),
            Cgroup::V2(c) => std::fs::read_to_string(c.dir().join("cgroup.freeze"))
                .is_ok_and(|s| s.trim() == "1"),
        }
    }

    fn hook_state(&self, status: &str) -> Vec<u8> {
        let empty = Default::default();
        let st = crate::hooks::HookState {
            oci_version: self.spec.version(),
            id: &self.id,
            status,
            pid: self.init_pid,
            bundle: &self.bundle,
            annotations: self.spec.annotations().as_ref().unwrap_or(&empty),
        };
        serde_json::to_vec(&st).unwrap_or_default()
    }
}

/// The shim shares containers across threads.
#[allow(dead_code)]
const fn assert_send_sync<T: Send + Sync>() {}
const _: () = assert_send_sync::<Container>();
const _: () = assert_send_sync::<OomWatcher>();
