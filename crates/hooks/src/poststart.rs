//! The postStart sequence of the init process.
//!
//! ```text
//!  Created --Start--> Running --hook ok--> Succeeded (Start answered Ok)
//!                        |
//!                        +--hook failed / timeout / SIGKILL / all / Delete / stop request-->
//!                        |      Failing (container being killed) --init exited--> Failed
//!                        +--init exited first--> Failed          (Start answered Err)
//! ```
//! Start is answered only from Succeeded or Failed, so a failed Start always finds the
//! container STOPPED and its TaskExit published.

use std::time::{Duration, Instant};

use crate::{
    config::PostStartOrder,
    handler::Handler,
    lifecycle::{later, Action, Cancel},
    output::{CancelReason, HookError, HookFailure, HookKind},
    signal::Signal,
};

/// The Start call's deadline is cut by this much, so the error reaches the caller in time.
pub(crate) const START_DEADLINE_MARGIN: Duration = Duration::from_secs(1);

#[derive(Debug)]
enum State {
    Created,
    Running {
        deadline: Option<Instant>,
        timeout: Duration,
        released: bool,
    },
    /// Hook over, container being killed; Start is answered when the init exit arrives.
    /// `stopping`: cancelled by the stop request, the termination sequence does the killing.
    Failing {
        err: HookError,
        stopping: bool,
    },
    Succeeded,
    Failed,
}

#[derive(Debug)]
pub(crate) struct PostStart {
    handler: Handler,
    order: PostStartOrder,
    timeout: Option<Duration>,
    state: State,
}

const KILL_ALL: Action = Action::Signal {
    signal: Signal::KILL,
    all: true,
};

impl PostStart {
    pub(crate) fn new(handler: Handler, order: PostStartOrder, timeout: Option<Duration>) -> Self {
        PostStart {
            handler,
            order,
            timeout,
            state: State::Created,
        }
    }

    pub(crate) fn is_running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    /// Killing the container after a failure that was not a stop request.
    pub(crate) fn is_failing(&self) -> bool {
        matches!(
            self.state,
            State::Failing {
                stopping: false,
                ..
            }
        )
    }

    fn error(&self, failure: HookFailure) -> HookError {
        HookError::new(HookKind::PostStart, self.handler.summary(), failure)
    }

    /// The first Start. `rpc_deadline`: when the Start call's caller gives up, if known.
    pub(crate) fn start(&mut self, now: Instant, rpc_deadline: Option<Instant>) -> Vec<Action> {
        debug_assert!(matches!(self.state, State::Created));
        let by_annotation = self.timeout.map(|t| later(now, t));
        let by_rpc =
            rpc_deadline.map(|d| d.checked_sub(START_DEADLINE_MARGIN).unwrap_or(now).max(now));
        let deadline = match (by_annotation, by_rpc) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout = deadline.map_or(Duration::ZERO, |d| d.saturating_duration_since(now));
        let run = Action::RunHook {
            hook: HookKind::PostStart,
            handler: self.handler.clone(),
        };
        match self.order {
            PostStartOrder::Concurrent => {
                self.state = State::Running {
                    deadline,
                    timeout,
                    released: true,
                };
                vec![Action::ReleaseEntrypoint, run]
            }
            PostStartOrder::BeforeEntrypoint => {
                self.state = State::Running {
                    deadline,
                    timeout,
                    released: false,
                };
                vec![run]
            }
        }
    }

    pub(crate) fn on_hook_finished(&mut self, result: Result<(), HookFailure>) -> Vec<Action> {
        let State::Running { released, .. } = self.state else {
            // Late report of a hook already cancelled: the outcome is decided.
            return Vec::new();
        };
        match result {
            Ok(()) => {
                self.state = State::Succeeded;
                if released {
                    vec![Action::ReplyStart(Ok(()))]
                } else {
                    vec![Action::ReleaseEntrypoint, Action::ReplyStart(Ok(()))]
                }
            }
            Err(failure) => {
                self.state = State::Failing {
                    err: self.error(failure),
                    stopping: false,
                };
                vec![KILL_ALL]
            }
        }
    }

    pub(crate) fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        match self.state {
            State::Running {
                deadline: Some(d),
                timeout,
                ..
            } if now >= d => {
                self.state = State::Failing {
                    err: self.error(HookFailure::Timeout(timeout)),
                    stopping: false,
                };
                vec![
                    Action::CancelHook {
                        hook: HookKind::PostStart,
                        cause: Cancel::Timeout(timeout),
                    },
                    KILL_ALL,
                ]
            }
            _ => Vec::new(),
        }
    }

    /// The init exited. The shim has recorded the status and published TaskExit already.
    pub(crate) fn on_init_exited(&mut self, status: i32) -> Vec<Action> {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Running { .. } => vec![
                Action::CancelHook {
                    hook: HookKind::PostStart,
                    cause: Cancel::ContainerExited(status),
                },
                // Processes outside the init's pid namespace (shared pid namespace) may remain.
                KILL_ALL,
                Action::ReplyStart(Err(self.error(HookFailure::ContainerExited(status)))),
            ],
            State::Failing { err, .. } => vec![Action::ReplyStart(Err(err))],
            other => {
                self.state = other;
                Vec::new()
            }
        }
    }

    /// SIGKILL, a Kill with `all`, or Delete while running: cancel and kill.
    pub(crate) fn cancel_and_kill(&mut self, reason: CancelReason) -> Vec<Action> {
        if !self.is_running() {
            return Vec::new();
        }
        self.state = State::Failing {
            err: self.error(HookFailure::Cancelled(reason)),
            stopping: false,
        };
        vec![
            Action::CancelHook {
                hook: HookKind::PostStart,
                cause: Cancel::By(reason),
            },
            KILL_ALL,
        ]
    }

    /// The stop request while running: cancel; the termination sequence does the killing.
    pub(crate) fn cancel_for_stop(&mut self, signal: Signal) -> Vec<Action> {
        if !self.is_running() {
            return Vec::new();
        }
        let reason = CancelReason::StopRequest(signal);
        // `stopping`: later Kills go to the termination sequence, not straight to the init.
        self.state = State::Failing {
            err: self.error(HookFailure::Cancelled(reason)),
            stopping: true,
        };
        vec![Action::CancelHook {
            hook: HookKind::PostStart,
            cause: Cancel::By(reason),
        }]
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Running { deadline, .. } => deadline,
            _ => None,
        }
    }
}
