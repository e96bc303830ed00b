//! The termination sequence of the init process: stop request, preStop bounded by the grace
//! period, stop signal, SIGKILL at the deadline.
//!
//! ```text
//!  Idle --stop request--> PreStop --hook done / grace over--> Signalled --deadline--> Killed
//!    |                      |  (grace 0 or no pre-stop) ^          |                    |
//!    +----------------------+---------------------------+          |                    |
//!  any state --SIGKILL Kill--> Killed          any state --init exited--> Exited <------+
//! ```

use std::time::{Duration, Instant};

use crate::{
    config::{ContainerKind, HookConfig},
    handler::Handler,
    lifecycle::{later, Action, Cancel, KillRequest, StateError},
    output::{CancelReason, HookKind},
    signal::Signal,
};

/// kubelet's floor: the stop signal always gets at least this long before SIGKILL.
pub(crate) const MIN_SIGNAL_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KillClass {
    /// SIGKILL: cancels everything, kills at once.
    Force,
    /// Starts (or repeats) the termination sequence.
    StopRequest,
    /// Delivered as is.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    PreStop {
        signal: Signal,
        all: bool,
        deadline: Instant,
    },
    Signalled {
        deadline: Instant,
    },
    Killed,
    Exited,
}

#[derive(Debug, Clone)]
pub(crate) struct Termination {
    pre_stop: Option<Handler>,
    grace: Duration,
    timer: bool,
    stop_signal: Signal,
    cri: bool,
    state: State,
}

impl Termination {
    pub(crate) fn new(cfg: &HookConfig) -> Self {
        Termination {
            pre_stop: cfg.pre_stop.clone(),
            grace: cfg.grace_period,
            timer: cfg.grace_timer,
            stop_signal: cfg.stop_signal,
            cri: cfg.kind == ContainerKind::CriContainer,
            state: State::Idle,
        }
    }

    pub(crate) fn classify(&self, req: &KillRequest) -> KillClass {
        if req.signal == Signal::KILL {
            KillClass::Force
        } else if self.cri {
            // containerd's CRI sends the image's STOPSIGNAL, which may be anything; a Kill
            // with `all` is never its stop request.
            if req.all {
                KillClass::Other
            } else {
                KillClass::StopRequest
            }
        } else if req.signal == self.stop_signal {
            KillClass::StopRequest
        } else {
            KillClass::Other
        }
    }

    pub(crate) fn exited(&self) -> bool {
        self.state == State::Exited
    }

    /// Kill of the init process. Returns at once; the sequence continues through
    /// [`Termination::on_timer`] and [`Termination::on_hook_finished`].
    pub(crate) fn kill(
        &mut self,
        now: Instant,
        req: KillRequest,
    ) -> Result<Vec<Action>, StateError> {
        if self.state == State::Exited {
            return Err(StateError::ProcessFinished);
        }
        let deliver = Action::Signal {
            signal: req.signal,
            all: req.all,
        };
        match self.classify(&req) {
            KillClass::Force => {
                let mut actions = Vec::new();
                if matches!(self.state, State::PreStop { .. }) {
                    actions.push(Action::CancelHook {
                        hook: HookKind::PreStop,
                        cause: Cancel::By(CancelReason::Kill(req.signal)),
                    });
                }
                actions.push(deliver);
                self.state = State::Killed;
                Ok(actions)
            }
            KillClass::StopRequest if self.timer => match self.state {
                State::Idle => Ok(self.begin(now, req)),
                // The sequence is already running: nothing changes, and the Kill succeeds.
                _ => Ok(Vec::new()),
            },
            KillClass::StopRequest => Ok(vec![deliver]),
            KillClass::Other => {
                if self.pre_stop.is_some() {
                    log::warn!(
                        "Kill with {} is not the stop request ({}): delivered without preStop",
                        req.signal,
                        self.stop_signal
                    );
                }
                Ok(vec![deliver])
            }
        }
    }

    fn begin(&mut self, now: Instant, req: KillRequest) -> Vec<Action> {
        let deadline = later(now, self.grace);
        let mut actions = Vec::new();
        if req.paused {
            // A frozen container can neither run a hook nor act on the stop signal.
            actions.push(Action::Resume);
        }
        match &self.pre_stop {
            Some(handler) if !self.grace.is_zero() => {
                actions.push(Action::RunHook {
                    hook: HookKind::PreStop,
                    handler: handler.clone(),
                });
                self.state = State::PreStop {
                    signal: req.signal,
                    all: req.all,
                    deadline,
                };
            }
            _ => actions.extend(self.send_signal(now, req.signal, req.all, deadline)),
        }
        actions
    }

    fn send_signal(
        &mut self,
        now: Instant,
        signal: Signal,
        all: bool,
        deadline: Instant,
    ) -> Vec<Action> {
        let deadline = deadline.max(later(now, MIN_SIGNAL_GRACE));
        self.state = State::Signalled { deadline };
        vec![Action::Signal { signal, all }]
    }

    pub(crate) fn on_hook_finished(&mut self, now: Instant) -> Vec<Action> {
        match self.state {
            State::PreStop {
                signal,
                all,
                deadline,
            } => self.send_signal(now, signal, all, deadline),
            _ => Vec::new(),
        }
    }

    pub(crate) fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        match self.state {
            State::PreStop {
                signal,
                all,
                deadline,
            } if now >= deadline => {
                let mut actions = vec![Action::CancelHook {
                    hook: HookKind::PreStop,
                    cause: Cancel::Timeout(self.grace),
                }];
                actions.extend(self.send_signal(now, signal, all, deadline));
                actions
            }
            State::Signalled { deadline } if now >= deadline => {
                self.state = State::Killed;
                vec![Action::Signal {
                    signal: Signal::KILL,
                    all: true,
                }]
            }
            _ => Vec::new(),
        }
    }

    pub(crate) fn on_init_exited(&mut self, status: i32) -> Vec<Action> {
        let prev = std::mem::replace(&mut self.state, State::Exited);
        match prev {
            State::PreStop { .. } => {
                vec![Action::CancelHook {
                    hook: HookKind::PreStop,
                    cause: Cancel::ContainerExited(status),
                }]
            }
            _ => Vec::new(),
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::PreStop { deadline, .. } | State::Signalled { deadline } => Some(deadline),
            _ => None,
        }
    }
}
