//! The runtime's error type. Messages name what was wrong and where it came from; causes are
//! kept as `#[source]` chains.

use std::path::PathBuf;

/// Every error the runtime returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// config.json does not parse as an OCI spec; `field` is where (e.g.
    /// `process.capabilities.bounding[0]`).
    #[error("{}: {field}", .bundle.join("config.json").display())]
    Spec {
        bundle: PathBuf,
        field: String,
        #[source]
        source: serde_json::Error,
    },
    /// A spec field that the runtime does not implement (never silently ignored).
    #[error("{field} is not supported")]
    Unsupported { field: String },
    /// A spec value that is wrong: the message names the field, what was expected and found.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// A system call or file operation in the calling process failed.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A cgroup operation failed.
    #[error("cgroup {path}: {what}")]
    Cgroup {
        path: PathBuf,
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The helper or the container init failed during setup; `step` names the setup step.
    #[error("container setup failed at step {step}: {message}")]
    Setup {
        step: String,
        message: String,
        #[source]
        source: Option<std::io::Error>,
    },
    /// The helper went away without saying why (killed, crashed, or the protocol broke).
    #[error("helper protocol: {0}")]
    Protocol(String),
    /// An OCI runtime hook failed or timed out.
    #[error("{kind} hook {index} ({path}) failed: {reason}")]
    Hook {
        kind: &'static str,
        index: usize,
        path: PathBuf,
        reason: String,
    },
    /// The operation needs a state the container is not in (e.g. start twice).
    #[error("container {id}: {what}")]
    State { id: String, what: String },
    /// The container (or its init) is gone.
    #[error("container {id}: process {pid} is not running")]
    NotRunning { id: String, pid: i32 },
    /// The state directory holds no (readable) container state.
    #[error("no container state in {dir}")]
    NoState {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The state file was written by an incompatible version.
    #[error("state {path} has format version {found}, this runtime reads {expected}")]
    StateVersion {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn unsupported(field: impl Into<String>) -> Self {
        Error::Unsupported {
            field: field.into(),
        }
    }
}

/// Error inside a helper or the container init, before it is sent to the caller: a step name,
/// a message and the errno if a system call failed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct SetupError {
    pub step: String,
    pub message: String,
    pub errno: Option<i32>,
}

impl SetupError {
    pub fn new(step: &str, message: impl Into<String>) -> Self {
        SetupError {
            step: step.to_owned(),
            message: message.into(),
            errno: None,
        }
    }

    pub fn sys(step: &str, what: impl Into<String>, errno: nix::errno::Errno) -> Self {
        SetupError {
            step: step.to_owned(),
            message: format!("{}: {}", what.into(), errno.desc()),
            errno: Some(errno as i32),
        }
    }

    pub fn io(step: &str, what: impl Into<String>, err: &std::io::Error) -> Self {
        SetupError {
            step: step.to_owned(),
            message: format!("{}: {err}", what.into()),
            errno: err.raw_os_error(),
        }
    }
}

impl From<SetupError> for Error {
    fn from(e: SetupError) -> Self {
        Error::Setup {
            step: e.step,
            message: e.message,
            source: e.errno.map(std::io::Error::from_raw_os_error),
        }
    }
}
