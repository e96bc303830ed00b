//! The service boundary: every error a Task RPC can return, and the one function that gives
//! each its ttrpc code. Nothing becomes NotFound unless it is a missing task or process.

use ttrpc::{Code, Error as TtrpcError};

use crate::{io::IoError, mount::MountError, stats::StatsError};

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("task {0} not found")]
    TaskNotFound(String),
    #[error("process {exec_id} of task {id} not found")]
    ProcessNotFound { id: String, exec_id: String },
    #[error("process {0} already finished")]
    ProcessExited(String),
    #[error("task {0} already exists")]
    TaskExists(String),
    #[error("exec {exec_id} of task {id} already exists")]
    ExecExists { id: String, exec_id: String },
    #[error("process {id} is {state}: cannot {op}")]
    WrongState {
        id: String,
        state: &'static str,
        op: &'static str,
    },
    #[error("{what}: {detail}")]
    InvalidArgument { what: &'static str, detail: String },
    #[error("{0} is not implemented by this shim")]
    Unimplemented(&'static str),
    #[error("{op}: {source}")]
    Runtime {
        op: &'static str,
        #[source]
        source: lifecycle_runtime::Error,
    },
    #[error("{op}: {source}")]
    Sys {
        op: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Stats(#[from] StatsError),
    /// A bad `lifecycle.shim/*` annotation at Create (the message names the key).
    #[error("invalid lifecycle hook annotation: {0}")]
    HookConfig(#[from] lifecycle_hooks::ConfigError),
    /// postStart failed: the message is the contract's `postStart hook failed: ...`, as is.
    #[error("{0}")]
    PostStart(lifecycle_hooks::HookError),
    #[error("process {id}: {source}")]
    HookState {
        id: String,
        #[source]
        source: lifecycle_hooks::StateError,
    },
    #[error("{op}: the worker running it failed: {source}")]
    Join {
        op: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl TaskError {
    pub fn runtime(op: &'static str) -> impl FnOnce(lifecycle_runtime::Error) -> TaskError {
        move |source| TaskError::Runtime { op, source }
    }

    pub fn code(&self) -> Code {
        use lifecycle_runtime::Error as R;
        match self {
            TaskError::TaskNotFound(_)
            | TaskError::ProcessNotFound { .. }
            | TaskError::ProcessExited(_) => Code::NOT_FOUND,
            TaskError::TaskExists(_) | TaskError::ExecExists { .. } => Code::ALREADY_EXISTS,
            TaskError::WrongState { .. } => Code::FAILED_PRECONDITION,
            TaskError::InvalidArgument { .. } => Code::INVALID_ARGUMENT,
            TaskError::Unimplemented(_) => Code::UNIMPLEMENTED,
            TaskError::Runtime { source, .. } => match source {
                R::Spec { .. } | R::Unsupported { .. } | R::InvalidSpec(_) => {
                    Code::INVALID_ARGUMENT
                }
                R::State { .. } => Code::FAILED_PRECONDITION,
                R::NotRunning { .. } => Code::NOT_FOUND,
                _ => Code::UNKNOWN,
            },
            TaskError::Sys {
                source: nix::Error::ESRCH,
                ..
            } => Code::NOT_FOUND,
            TaskError::Sys { .. } => Code::UNKNOWN,
            TaskError::Io(e) => e.code(),
            TaskError::Mount(_) => Code::UNKNOWN,
            TaskError::Stats(StatsError::NoCgroup) => Code::FAILED_PRECONDITION,
            TaskError::Stats(StatsError::Systemd(_)) => Code::UNIMPLEMENTED,
            TaskError::Stats(_) => Code::UNKNOWN,
            TaskError::HookConfig(_) => Code::INVALID_ARGUMENT,
            TaskError::PostStart(_) => Code::UNKNOWN,
            TaskError::HookState { source, .. } => match source {
                lifecycle_hooks::StateError::ProcessFinished => Code::NOT_FOUND,
                lifecycle_hooks::StateError::AlreadyStarted
                | lifecycle_hooks::StateError::AlreadyExited => Code::FAILED_PRECONDITION,
            },
            TaskError::Join { .. } => Code::INTERNAL,
        }
    }
}

/// The one conversion at the service boundary; logs the error once, here.
pub fn to_ttrpc(rpc: &str, err: TaskError) -> TtrpcError {
    let code = err.code();
    let mut msg = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    if code == Code::NOT_FOUND {
        log::debug!("{rpc}: {msg}");
    } else {
        log::warn!("{rpc}: {msg}");
    }
    TtrpcError::RpcStatus(ttrpc::get_status(code, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(TaskError::TaskNotFound("a".into()).code(), Code::NOT_FOUND);
        assert_eq!(TaskError::ProcessExited("a".into()).code(), Code::NOT_FOUND);
        assert_eq!(
            TaskError::TaskExists("a".into()).code(),
            Code::ALREADY_EXISTS
        );
        assert_eq!(
            TaskError::WrongState {
                id: "a".into(),
                state: "running",
                op: "delete"
            }
            .code(),
            Code::FAILED_PRECONDITION
        );
        assert_eq!(
            TaskError::Unimplemented("Checkpoint").code(),
            Code::UNIMPLEMENTED
        );
        assert_eq!(
            TaskError::Runtime {
                op: "create",
                source: lifecycle_runtime::Error::InvalidSpec("x".into())
            }
            .code(),
            Code::INVALID_ARGUMENT
        );
        assert_eq!(
            TaskError::Runtime {
                op: "create",
                source: lifecycle_runtime::Error::Protocol("x".into())
            }
            .code(),
            Code::UNKNOWN
        );
        assert_eq!(
            TaskError::Sys {
                op: "kill",
                source: nix::Error::EPERM
            }
            .code(),
            Code::UNKNOWN
        );
    }

    #[test]
    fn message_carries_the_cause_chain() {
        let err = TaskError::Runtime {
            op: "create",
            source: lifecycle_runtime::Error::Io {
                what: "open x".into(),
                source: std::io::Error::from_raw_os_error(libc::ENOENT),
            },
        };
        match to_ttrpc("Create", err) {
            TtrpcError::RpcStatus(s) => {
                assert_eq!(s.code(), Code::UNKNOWN);
                assert!(s.message.contains("create: open x"), "{}", s.message);
                assert!(s.message.contains("No such file"), "{}", s.message);
            }
            other => panic!("{other:?}"),
        }
    }
}
