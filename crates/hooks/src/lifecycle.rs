//! [`InitLifecycle`]: the postStart and termination state machines of one container's init
//! process behind one door, driven by the shim's RPCs, exits, hook results and timers.
//!
//! Nothing here sleeps or reads a clock: every call takes `now`, and the shim arms one timer
//! for [`InitLifecycle::next_deadline`] after every call, then calls
//! `on_event(now, Event::Timer)` when it fires. The returned actions are to be performed in
//! order.

use std::time::{Duration, Instant};

use crate::{
    config::HookConfig,
    handler::Handler,
    output::{CancelReason, HookError, HookFailure, HookKind},
    poststart::PostStart,
    signal::Signal,
    termination::{KillClass, Termination},
};

/// What the shim must do, in order.
#[derive(Debug)]
#[cfg_attr(test, derive(PartialEq))]
pub enum Action {
    /// Let the held init exec the entrypoint (runtime "start"); State becomes RUNNING.
    ReleaseEntrypoint,
    /// Start this hook now, on its own task/thread; report with [`Event::HookFinished`].
    RunHook { hook: HookKind, handler: Handler },
    /// Stop the running hook (kill its process, abandon its probe). No report is expected
    /// (a late [`Event::HookFinished`] is ignored). `cause` is for the log and the record.
    CancelHook { hook: HookKind, cause: Cancel },
    /// Resume (thaw) the paused container.
    Resume,
    /// Send `signal` to the init (`all: false`) or to every process of the container
    /// (`all: true`). Processes already gone are not an error.
    Signal { signal: Signal, all: bool },
    /// Answer the pending Start call; publish `/tasks/start` only on `Ok`. On `Err`, fill in
    /// the output tail first ([`HookError::with_output`]).
    ReplyStart(Result<(), HookError>),
}

/// Why a hook was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// Ran out of time (postStart timeout, or the grace period for preStop).
    Timeout(Duration),
    /// The container's init exited while the hook ran.
    ContainerExited(i32),
    By(CancelReason),
}

impl From<Cancel> for HookFailure {
    fn from(c: Cancel) -> Self {
        match c {
            Cancel::Timeout(d) => HookFailure::Timeout(d),
            Cancel::ContainerExited(s) => HookFailure::ContainerExited(s),
            Cancel::By(r) => HookFailure::Cancelled(r),
        }
    }
}

/// Things that happen to the container, reported by the shim.
#[derive(Debug)]
pub enum Event {
    /// A hook started by [`Action::RunHook`] ended on its own.
    HookFinished {
        hook: HookKind,
        result: Result<(), HookFailure>,
    },
    /// The init process was reaped (exit code, or 128+signal). Report it after State is
    /// STOPPED and TaskExit is published.
    InitExited { status: i32 },
    /// The timer for [`InitLifecycle::next_deadline`] fired (early or spurious calls are fine).
    Timer,
}

/// A Kill RPC aimed at the init process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillRequest {
    pub signal: Signal,
    pub all: bool,
    /// The container is paused (frozen) right now.
    pub paused: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Start while started (or while postStart runs): FailedPrecondition.
    #[error("container already started")]
    AlreadyStarted,
    /// Start after the init exited: FailedPrecondition.
    #[error("container has already exited")]
    AlreadyExited,
    /// Kill after the init exited: NotFound.
    #[error("process already finished")]
    ProcessFinished,
}

/// `now + d`, saturating far in the future instead of panicking on huge annotation values.
pub(crate) fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Hook state of one container's init process, from Create to its exit.
#[derive(Debug)]
pub struct InitLifecycle {
    post_start: Option<PostStart>,
    termination: Termination,
    started: bool,
    exited: bool,
}

impl InitLifecycle {
    /// At Create, from the validated config.
    pub fn new(cfg: &HookConfig) -> Self {
        InitLifecycle {
            post_start: cfg
                .post_start
                .clone()
                .map(|h| PostStart::new(h, cfg.post_start_order, cfg.post_start_timeout)),
            termination: Termination::new(cfg),
            started: false,
            exited: false,
        }
    }

    /// The Start RPC. `rpc_deadline`: when its caller gives up (from the ttrpc timeout), if
    /// known. Without a postStart this is `[ReleaseEntrypoint, ReplyStart(Ok)]`.
    pub fn start(
        &mut self,
        now: Instant,
        rpc_deadline: Option<Instant>,
    ) -> Result<Vec<Action>, StateError> {
        if self.exited {
            return Err(StateError::AlreadyExited);
        }
        if self.started {
            return Err(StateError::AlreadyStarted);
        }
        self.started = true;
        Ok(match &mut self.post_start {
            Some(ps) => ps.start(now, rpc_deadline),
            None => vec![Action::ReleaseEntrypoint, Action::ReplyStart(Ok(()))],
        })
    }

    /// The Kill RPC for the init process. The actions are performed and Kill answered at once.
    pub fn kill(&mut self, now: Instant, req: KillRequest) -> Result<Vec<Action>, StateError> {
        if self.exited {
            return Err(StateError::ProcessFinished);
        }
        let plain = vec![Action::Signal {
            signal: req.signal,
            all: req.all,
        }];
        if !self.started {
            // Held in Create: no hook has run, so there is nothing to stop gracefully.
            return Ok(plain);
        }
        let class = self.termination.classify(&req);
        if let Some(ps) = &mut self.post_start {
            if ps.is_running() {
                if class == KillClass::Force || req.all {
                    return Ok(ps.cancel_and_kill(CancelReason::Kill(req.signal)));
                }
                if class == KillClass::StopRequest {
                    let mut actions = ps.cancel_for_stop(req.signal);
                    actions.extend(self.termination.kill(now, req)?);
                    return Ok(actions);
                }
            } else if ps.is_failing() {
                // Already being killed after a failed postStart: no termination sequence.
                return Ok(plain);
            }
        }
        self.termination.kill(now, req)
    }

    /// The Delete RPC for the init process. While postStart runs it cancels the hook and kills
    /// (Delete then completes when the exit arrives, as usual); otherwise it changes nothing.
    pub fn delete(&mut self, _now: Instant) -> Vec<Action> {
        match &mut self.post_start {
            Some(ps) if !self.exited => ps.cancel_and_kill(CancelReason::Delete),
            _ => Vec::new(),
        }
    }

    pub fn on_event(&mut self, now: Instant, ev: Event) -> Vec<Action> {
        match ev {
            Event::HookFinished {
                hook: HookKind::PostStart,
                result,
            } => match &mut self.post_start {
                Some(ps) => ps.on_hook_finished(result),
                None => Vec::new(),
            },
            // A failed preStop is logged and recorded by the shim; the sequence goes on anyway.
            Event::HookFinished {
                hook: HookKind::PreStop,
                ..
            } => self.termination.on_hook_finished(now),
            Event::InitExited { status } => {
                self.exited = true;
                let mut actions = match &mut self.post_start {
                    Some(ps) => ps.on_init_exited(status),
                    None => Vec::new(),
                };
                actions.extend(self.termination.on_init_exited(status));
                actions
            }
            Event::Timer => {
                let mut actions = match &mut self.post_start {
                    Some(ps) => ps.on_timer(now),
                    None => Vec::new(),
                };
                actions.extend(self.termination.on_timer(now));
                actions
            }
        }
    }

    /// When to deliver [`Event::Timer`] next; `None`: no timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        let ps = self.post_start.as_ref().and_then(PostStart::next_deadline);
        match (ps, self.termination.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The init has exited (Kill answers NotFound from now on).
    pub fn exited(&self) -> bool {
        self.exited || self.termination.exited()
    }
}

#[cfg(test)]
impl PartialEq for HookError {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::PostStartOrder;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn config(pairs: &[(&str, &str)]) -> HookConfig {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HookConfig::from_annotations(&m).unwrap()
    }

    const PS: &str = r#"{"exec":{"command":["/hook"]}}"#;
    const PRE: &str = r#"{"exec":{"command":["/pre"]}}"#;

    fn ps_handler() -> Handler {
        Handler::Exec {
            command: vec!["/hook".into()],
        }
    }
    fn pre_handler() -> Handler {
        Handler::Exec {
            command: vec!["/pre".into()],
        }
    }
    fn run_ps() -> Action {
        Action::RunHook {
            hook: HookKind::PostStart,
            handler: ps_handler(),
        }
    }
    fn run_pre() -> Action {
        Action::RunHook {
            hook: HookKind::PreStop,
            handler: pre_handler(),
        }
    }
    fn sig(n: i32, all: bool) -> Action {
        Action::Signal {
            signal: Signal::from_raw(n as u32).unwrap(),
            all,
        }
    }
    fn kill_all() -> Action {
        sig(9, true)
    }
    fn req(n: i32) -> KillRequest {
        KillRequest {
            signal: Signal::from_raw(n as u32).unwrap(),
            all: false,
            paused: false,
        }
    }
    fn fail(failure: HookFailure) -> Action {
        Action::ReplyStart(Err(HookError::new(
            HookKind::PostStart,
            "exec [/hook]".into(),
            failure,
        )))
    }
    fn started(pairs: &[(&str, &str)], t0: Instant) -> InitLifecycle {
        let mut l = InitLifecycle::new(&config(pairs));
        l.start(t0, None).unwrap();
        l
    }

    #[test]
    fn shim_can_move_it_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<InitLifecycle>();
        send_sync::<Action>();
        send_sync::<Event>();
    }

    // ---- postStart ----

    #[test]
    fn no_hooks_is_plain() {
        let t0 = Instant::now();
        let mut l = InitLifecycle::new(&config(&[]));
        assert_eq!(
            l.start(t0, None).unwrap(),
            vec![Action::ReleaseEntrypoint, Action::ReplyStart(Ok(()))]
        );
        assert_eq!(l.start(t0, None).unwrap_err(), StateError::AlreadyStarted);
        assert_eq!(l.kill(t0, req(15)).unwrap(), vec![sig(15, false)]);
        assert_eq!(l.kill(t0, req(15)).unwrap(), vec![sig(15, false)]);
        assert_eq!(l.next_deadline(), None);
        assert!(l.on_event(t0, Event::InitExited { status: 143 }).is_empty());
        assert_eq!(l.kill(t0, req(9)).unwrap_err(), StateError::ProcessFinished);
        assert_eq!(l.start(t0, None).unwrap_err(), StateError::AlreadyExited);
    }

    #[test]
    fn concurrent_releases_then_replies_after_success() {
        let t0 = Instant::now();
        let mut l = InitLifecycle::new(&config(&[("lifecycle.shim/post-start", PS)]));
        assert_eq!(
            l.start(t0, None).unwrap(),
            vec![Action::ReleaseEntrypoint, run_ps()]
        );
        assert_eq!(l.next_deadline(), None);
        assert_eq!(l.start(t0, None).unwrap_err(), StateError::AlreadyStarted);
        let a = l.on_event(
            t0 + S(1),
            Event::HookFinished {
                hook: HookKind::PostStart,
                result: Ok(()),
            },
        );
        assert_eq!(a, vec![Action::ReplyStart(Ok(()))]);
        // Late duplicates and timers change nothing.
        assert!(l.on_event(t0 + S(2), Event::Timer).is_empty());
        assert!(l
            .on_event(
                t0 + S(2),
                Event::HookFinished {
                    hook: HookKind::PostStart,
                    result: Ok(())
                }
            )
            .is_empty());
    }

    #[test]
    fn before_entrypoint_holds_until_success() {
        let t0 = Instant::now();
        let mut l = InitLifecycle::new(&config(&[
            ("lifecycle.shim/post-start", PS),
            ("lifecycle.shim/post-start-order", "before-entrypoint"),
        ]));
        assert_eq!(l.start(t0, None).unwrap(), vec![run_ps()]);
        let a = l.on_event(
            t0,
            Event::HookFinished {
                hook: HookKind::PostStart,
                result: Ok(()),
            },
        );
        assert_eq!(
            a,
            vec![Action::ReleaseEntrypoint, Action::ReplyStart(Ok(()))]
        );
    }

    #[test]
    fn failure_kills_then_replies_after_exit() {
        let t0 = Instant::now();
        let mut l = started(&[("lifecycle.shim/post-start", PS)], t0);
        let a = l.on_event(
            t0,
            Event::HookFinished {
                hook: HookKind::PostStart,
                result: Err(HookFailure::Exited(3)),
            },
        );
        assert_eq!(a, vec![kill_all()]);
        // Kill while being killed: plain delivery, no termination sequence.
        assert_eq!(l.kill(t0, req(15)).unwrap(), vec![sig(15, false)]);
        let a = l.on_event(t0, Event::InitExited { status: 137 });
        assert_eq!(a, vec![fail(HookFailure::Exited(3))]);
        let Action::ReplyStart(Err(e)) = &a[0] else {
            unreachable!()
        };
        assert_eq!(
            e.to_string(),
            "postStart hook failed: exec [/hook] exited with code 3"
        );
        assert_eq!(l.kill(t0, req(9)).unwrap_err(), StateError::ProcessFinished);
    }

    #[test]
    fn timeout_is_min_of_annotation_and_rpc_deadline_less_one_second() {
        let t0 = Instant::now();
        let pairs = [
            ("lifecycle.shim/post-start", PS),
            ("lifecycle.shim/post-start-timeout-seconds", "10"),
        ];
        // Annotation smaller.
        let mut l = InitLifecycle::new(&config(&pairs));
        l.start(t0, Some(t0 + S(120))).unwrap();
        assert_eq!(l.next_deadline(), Some(t0 + S(10)));
        // Start deadline smaller.
        let mut l = InitLifecycle::new(&config(&pairs));
        l.start(t0, Some(t0 + S(5))).unwrap();
        assert_eq!(l.next_deadline(), Some(t0 + S(4)));
        // Only the Start deadline.
        let mut l = InitLifecycle::new(&config(&[("lifecycle.shim/post-start", PS)]));
        l.start(t0, Some(t0 + S(120))).unwrap();
        assert_eq!(l.next_deadline(), Some(t0 + S(119)));
        // A deadline under a second away: time is already up.
        let mut l = InitLifecycle::new(&config(&[("lifecycle.shim/post-start", PS)]));
        l.start(t0, Some(t0 + MS(500))).unwrap();
        assert_eq!(l.next_deadline(), Some(t0));
    }

    #[test]
    fn timeout_cancels_kills_and_reports() {
        let t0 = Instant::now();
        let mut l = started(
            &[
                ("lifecycle.shim/post-start", PS),
                ("lifecycle.shim/post-start-timeout-seconds", "5"),
            ],
            t0,
        );
        assert!(
            l.on_event(t0 + MS(4999), Event::Timer).is_empty(),
            "early timer"
        );
        let a = l.on_event(t0 + S(5), Event::Timer);
        assert_eq!(
            a,
            vec![
                Action::CancelHook {
                    hook: HookKind::PostStart,
                    cause: Cancel::Timeout(S(5))
                },
                kill_all()
            ]
        );
        assert_eq!(l.next_deadline(), None);
        // The hook's late success does not undo the failure.
        assert!(l
            .on_event(
                t0 + S(6),
                Event::HookFinished {
                    hook: HookKind::PostStart,
                    result: Ok(())
                }
            )
            .is_empty());
        let a = l.on_event(t0 + S(6), Event::InitExited { status: 137 });
        let [Action::ReplyStart(Err(e))] = a.as_slice() else {
            panic!("{a:?}")
        };
        assert_eq!(
            e.to_string(),
            "postStart hook failed: timeout: exec [/hook] did not complete within 5s"
        );
    }

    #[test]
    fn entrypoint_exit_first_fails_start() {
        let t0 = Instant::now();
        let mut l = started(&[("lifecycle.shim/post-start", PS)], t0);
        let a = l.on_event(t0, Event::InitExited { status: 2 });
        assert_eq!(
            a,
            vec![
                Action::CancelHook {
                    hook: HookKind::PostStart,
                    cause: Cancel::ContainerExited(2)
                },
                kill_all(),
                fail(HookFailure::ContainerExited(2)),
            ]
        );
        let [.., Action::ReplyStart(Err(e))] = a.as_slice() else {
            unreachable!()
        };
        assert_eq!(
            e.to_string(),
            "postStart hook failed: container exited (2) before postStart completed: exec [/hook]"
        );
    }

    #[test]
    fn sigkill_or_all_or_delete_cancel_postart() {
        let t0 = Instant::now();
        let pairs = [
            ("lifecycle.shim/post-start", PS),
            ("lifecycle.shim/pre-stop", PRE),
        ];
        let cancel = |r| Action::CancelHook {
            hook: HookKind::PostStart,
            cause: Cancel::By(r),
        };

        let mut l = started(&pairs, t0);
        assert_eq!(
            l.kill(t0, req(9)).unwrap(),
            vec![cancel(CancelReason::Kill(Signal::KILL)), kill_all()]
        );
        assert_eq!(l.next_deadline(), None, "no preStop after a SIGKILL");
        assert_eq!(
            l.on_event(t0, Event::InitExited { status: 137 }),
            vec![fail(HookFailure::Cancelled(CancelReason::Kill(
                Signal::KILL
            )))]
        );

        let mut l = started(&pairs, t0);
        let all = KillRequest {
            all: true,
            ..req(15)
        };
        assert_eq!(
            l.kill(t0, all).unwrap(),
            vec![cancel(CancelReason::Kill(Signal::TERM)), kill_all()]
        );

        let mut l = started(&pairs, t0);
        assert_eq!(l.delete(t0), vec![cancel(CancelReason::Delete), kill_all()]);
        assert_eq!(
            l.on_event(t0, Event::InitExited { status: 137 }),
            vec![fail(HookFailure::Cancelled(CancelReason::Delete))]
        );
        assert!(l.delete(t0).is_empty());
    }

    #[test]
    fn stop_request_during_poststart_runs_termination() {
        let t0 = Instant::now();
        let mut l = started(
            &[
                ("lifecycle.shim/post-start", PS),
                ("lifecycle.shim/pre-stop", PRE),
                ("lifecycle.shim/termination-grace-period-seconds", "10"),
            ],
            t0,
        );
        let a = l.kill(t0 + S(1), req(15)).unwrap();
        assert_eq!(
            a,
            vec![
                Action::CancelHook {
                    hook: HookKind::PostStart,
                    cause: Cancel::By(CancelReason::StopRequest(Signal::TERM))
                },
                run_pre(),
            ]
        );
        assert_eq!(l.next_deadline(), Some(t0 + S(11)));
        // A repeated stop request is a no-op; SIGKILL still kills.
        assert!(l.kill(t0 + S(2), req(15)).unwrap().is_empty());
        let a = l.on_event(
            t0 + S(3),
            Event::HookFinished {
                hook: HookKind::PreStop,
                result: Ok(()),
            },
        );
        assert_eq!(a, vec![sig(15, false)]);
        let a = l.on_event(t0 + S(4), Event::InitExited { status: 143 });
        assert_eq!(
            a,
            vec![fail(HookFailure::Cancelled(CancelReason::StopRequest(
                Signal::TERM
            )))]
        );
    }

    #[test]
    fn other_signal_during_poststart_passes_through() {
        let t0 = Instant::now();
        let mut l = started(&[("lifecycle.shim/post-start", PS)], t0);
        assert_eq!(
            l.kill(t0, req(libc::SIGHUP)).unwrap(),
            vec![sig(libc::SIGHUP, false)]
        );
        assert_eq!(
            l.on_event(
                t0,
                Event::HookFinished {
                    hook: HookKind::PostStart,
                    result: Ok(())
                }
            ),
            vec![Action::ReplyStart(Ok(()))]
        );
    }

    #[test]
    fn kill_before_start_is_plain() {
        let t0 = Instant::now();
        let mut l = InitLifecycle::new(&config(&[("lifecycle.shim/pre-stop", PRE)]));
        assert_eq!(l.kill(t0, req(15)).unwrap(), vec![sig(15, false)]);
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn next_deadline_is_the_earliest_of_both_machines() {
        let t0 = Instant::now();
        let mut l = started(
            &[
                ("lifecycle.shim/post-start", PS),
                ("lifecycle.shim/post-start-timeout-seconds", "60"),
                ("lifecycle.shim/post-start-order", "before-entrypoint"),
                ("lifecycle.shim/pre-stop", PRE),
                ("lifecycle.shim/termination-grace-period-seconds", "5"),
            ],
            t0,
        );
        assert_eq!(l.next_deadline(), Some(t0 + S(60)));
        // Stop request while the entrypoint is still held: postStart cancelled, preStop runs,
        // and only the grace deadline is left.
        let a = l.kill(t0 + S(1), req(15)).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[1], run_pre());
        assert_eq!(l.next_deadline(), Some(t0 + S(6)));
        // Grace runs out during preStop: cancel it, signal, 2 s more.
        let a = l.on_event(t0 + S(6), Event::Timer);
        assert_eq!(
            a,
            vec![
                Action::CancelHook {
                    hook: HookKind::PreStop,
                    cause: Cancel::Timeout(S(5))
                },
                sig(15, false)
            ]
        );
        assert_eq!(l.on_event(t0 + S(8), Event::Timer), vec![kill_all()]);
        let a = l.on_event(t0 + S(8), Event::InitExited { status: 137 });
        assert_eq!(
            a,
            vec![fail(HookFailure::Cancelled(CancelReason::StopRequest(
                Signal::TERM
            )))]
        );
    }

    #[test]
    fn held_init_exiting_before_start() {
        let t0 = Instant::now();
        let mut l = InitLifecycle::new(&config(&[("lifecycle.shim/post-start", PS)]));
        assert_eq!(l.kill(t0, req(9)).unwrap(), vec![sig(9, false)]);
        assert!(l.on_event(t0, Event::InitExited { status: 137 }).is_empty());
        assert_eq!(l.start(t0, None).unwrap_err(), StateError::AlreadyExited);
        assert!(l.delete(t0).is_empty());
    }

    // ---- termination ----

    #[test]
    fn prestop_then_signal_then_sigkill_at_deadline() {
        let t0 = Instant::now();
        let mut l = started(
            &[
                ("lifecycle.shim/pre-stop", PRE),
                ("io.kubernetes.pod.terminationGracePeriod", "30"),
            ],
            t0,
        );
        assert_eq!(l.kill(t0, req(15)).unwrap(), vec![run_pre()]);
        assert_eq!(l.next_deadline(), Some(t0 + S(30)));
        assert!(l.on_event(t0 + S(29), Event::Timer).is_empty());
        let a = l.on_event(
            t0 + S(5),
            Event::HookFinished {
                hook: HookKind::PreStop,
                result: Err(HookFailure::Exited(1)),
            },
        );
        assert_eq!(a, vec![sig(15, false)]);
        assert_eq!(
            l.next_deadline(),
            Some(t0 + S(30)),
            "the timer started at the Kill"
        );
        assert!(l.on_event(t0 + S(29), Event::Timer).is_empty());
        assert_eq!(l.on_event(t0 + S(30), Event::Timer), vec![kill_all()]);
        assert_eq!(l.next_deadline(), None);
        assert!(l
            .on_event(t0 + S(31), Event::InitExited { status: 137 })
            .is_empty());
        assert_eq!(
            l.kill(t0 + S(31), req(15)).unwrap_err(),
            StateError::ProcessFinished
        );
    }

    #[test]
    fn prestop_out_of_grace_is_cancelled_and_signal_gets_two_seconds() {
        let t0 = Instant::now();
        let mut l = started(
            &[
                ("lifecycle.shim/pre-stop", PRE),
                ("lifecycle.shim/termination-grace-period-seconds", "5"),
            ],
            t0,
        );
        l.kill(t0, req(15)).unwrap();
        let a = l.on_event(t0 + S(5), Event::Timer);
        assert_eq!(
            a,
            vec![
                Action::CancelHook {
                    hook: HookKind::PreStop,
                    cause: Cancel::Timeout(S(5))
                },
                sig(15, false)
            ]
        );
        assert_eq!(l.next_deadline(), Some(t0 + S(7)));
        assert!(l.on_event(t0 + S(6), Event::Timer).is_empty());
        assert_eq!(l.on_event(t0 + S(7), Event::Timer), vec![kill_all()]);
    }

    #[test]
    fn signal_with_little_grace_left_gets_two_seconds() {
        let t0 = Instant::now();
        let mut l = started(
            &[
                ("lifecycle.shim/pre-stop", PRE),
                ("lifecycle.shim/termination-grace-period-seconds", "5"),
            ],
            t0,
        );
        l.kill(t0, req(15)).unwrap();
        // Hook done with 0.5 s left: deadline moves to signal time + 2 s.
        l.on_event(
            t0 + MS(4500),
            Event::HookFinished {
                hook: HookKind::PreStop,
                result: Ok(()),
            },
        );
        assert_eq!(l.next_deadline(), Some(t0 + MS(6500)));
        // With 3 s left, it stays.
        let mut l = started(
            &[
                ("lifecycle.shim/pre-stop", PRE),
                ("lifecycle.shim/termination-grace-period-seconds", "5"),
            ],
            t0,
        );
        l.kill(t0, req(15)).unwrap();
        l.on_event(
            t0 + S(2),
            Event::HookFinished {
                hook: HookKind::PreStop,
                result: Ok(()),
            },
        );
        assert_eq!(l.next_deadline(), Some(t0 + S(5)));
    }

    #[test]
    fn grace_zero_skips_prestop() {
        let t0 = Instant::now();
        let mut l = started(
            &[
                ("lifecycle.shim/pre-stop", PRE),
                ("lifecycle.shim/termination-grace-period-seconds", "0"),
            ],
            t0,
        );
        assert_eq!(l.kill(t0, req(15)).unwrap(), vec![sig(15, false)]);
        assert_eq!(l.next_deadline(), Some(t0 + S(2)));
        assert_eq!(l.on_event(t0 + S(2), Event::Timer), vec![kill_all()]);
    }

    #[test]
    fn grace_key_alone_times_the_signal() {
        let t0 = Instant::now();
        let mut l = started(
            &[("lifecycle.shim/termination-grace-period-seconds", "10")],
            t0,
        );
        assert_eq!(l.kill(t0, req(15)).unwrap(), vec![sig(15, false)]);
        assert_eq!(l.next_deadline(), Some(t0 + S(10)));
        // Pod grace alone: no timer at all.
        let mut l = started(&[("io.kubernetes.pod.terminationGracePeriod", "10")], t0);
        assert_eq!(l.kill(t0, req(15)).unwrap(), vec![sig(15, false)]);
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn sigkill_during_prestop_cancels_and_kills_at_once() {
        let t0 = Instant::now();
        let mut l = started(&[("lifecycle.shim/pre-stop", PRE)], t0);
        l.kill(t0, req(15)).unwrap();
        let a = l.kill(t0 + S(1), req(9)).unwrap();
        assert_eq!(
            a,
            vec![
                Action::CancelHook {
                    hook: HookKind::PreStop,
                    cause: Cancel::By(CancelReason::Kill(Signal::KILL))
                },
                sig(9, false)
            ]
        );
        assert_eq!(l.next_deadline(), None);
        // A late report of the cancelled hook sends nothing.
        assert!(l
            .on_event(
                t0 + S(2),
                Event::HookFinished {
                    hook: HookKind::PreStop,
                    result: Ok(())
                }
            )
            .is_empty());
        // SIGKILL again before the exit arrives: delivered again, harmless.
        assert_eq!(l.kill(t0 + S(2), req(9)).unwrap(), vec![sig(9, false)]);
    }

    #[test]
    fn repeated_stop_requests_change_nothing() {
        let t0 = Instant::now();
        let mut l = started(&[("lifecycle.shim/pre-stop", PRE)], t0);
        l.kill(t0, req(15)).unwrap();
        assert!(l.kill(t0 + S(1), req(15)).unwrap().is_empty());
        assert_eq!(
            l.next_deadline(),
            Some(t0 + S(30)),
            "the deadline is the first Kill's"
        );
        l.on_event(
            t0 + S(2),
            Event::HookFinished {
                hook: HookKind::PreStop,
                result: Ok(()),
            },
        );
        assert!(l.kill(t0 + S(3), req(15)).unwrap().is_empty());
        l.on_event(t0 + S(30), Event::Timer);
        assert!(l.kill(t0 + S(31), req(15)).unwrap().is_empty());
    }

    #[test]
    fn exit_during_prestop_abandons_hook() {
        let t0 = Instant::now();
        let mut l = started(&[("lifecycle.shim/pre-stop", PRE)], t0);
        l.kill(t0, req(15)).unwrap();
        let a = l.on_event(t0 + S(1), Event::InitExited { status: 0 });
        assert_eq!(
            a,
            vec![Action::CancelHook {
                hook: HookKind::PreStop,
                cause: Cancel::ContainerExited(0)
            }]
        );
        assert_eq!(l.next_deadline(), None);
        assert!(l.exited());
        assert!(l.on_event(t0 + S(30), Event::Timer).is_empty());
        assert_eq!(
            l.kill(t0 + S(2), req(9)).unwrap_err(),
            StateError::ProcessFinished
        );
    }

    #[test]
    fn paused_container_is_resumed_first() {
        let t0 = Instant::now();
        let mut l = started(&[("lifecycle.shim/pre-stop", PRE)], t0);
        let a = l
            .kill(
                t0,
                KillRequest {
                    paused: true,
                    ..req(15)
                },
            )
            .unwrap();
        assert_eq!(a, vec![Action::Resume, run_pre()]);
    }

    #[test]
    fn other_signals_pass_through_during_prestop() {
        let t0 = Instant::now();
        let mut l = started(&[("lifecycle.shim/pre-stop", PRE)], t0);
        assert_eq!(
            l.kill(t0, req(libc::SIGUSR1)).unwrap(),
            vec![sig(libc::SIGUSR1, false)]
        );
        assert_eq!(l.next_deadline(), None, "not a stop request");
        l.kill(t0, req(15)).unwrap();
        assert_eq!(
            l.kill(t0, req(libc::SIGHUP)).unwrap(),
            vec![sig(libc::SIGHUP, false)]
        );
        assert_eq!(l.next_deadline(), Some(t0 + S(30)));
    }

    #[test]
    fn custom_stop_signal_and_all() {
        let t0 = Instant::now();
        let mut l = started(
            &[
                ("lifecycle.shim/pre-stop", PRE),
                ("lifecycle.shim/stop-signal", "SIGQUIT"),
            ],
            t0,
        );
        // SIGTERM is not the stop request here.
        assert_eq!(l.kill(t0, req(15)).unwrap(), vec![sig(15, false)]);
        let quit_all = KillRequest {
            all: true,
            ..req(libc::SIGQUIT)
        };
        assert_eq!(l.kill(t0, quit_all).unwrap(), vec![run_pre()]);
        let a = l.on_event(
            t0 + S(1),
            Event::HookFinished {
                hook: HookKind::PreStop,
                result: Ok(()),
            },
        );
        assert_eq!(
            a,
            vec![sig(libc::SIGQUIT, true)],
            "stop signal to all processes with `all`"
        );
    }

    #[test]
    fn cri_first_non_sigkill_kill_is_the_stop_request() {
        let t0 = Instant::now();
        let mut l = started(
            &[
                ("io.kubernetes.cri.container-type", "container"),
                ("lifecycle.shim/pre-stop", PRE),
            ],
            t0,
        );
        // `all` is not a stop request under CRI.
        let all = KillRequest {
            all: true,
            ..req(libc::SIGQUIT)
        };
        assert_eq!(l.kill(t0, all).unwrap(), vec![sig(libc::SIGQUIT, true)]);
        // nginx's STOPSIGNAL, forwarded as is after preStop.
        assert_eq!(l.kill(t0, req(libc::SIGQUIT)).unwrap(), vec![run_pre()]);
        assert!(
            l.kill(t0, req(15)).unwrap().is_empty(),
            "a second non-SIGKILL Kill is a repeat"
        );
        let a = l.on_event(
            t0 + S(1),
            Event::HookFinished {
                hook: HookKind::PreStop,
                result: Ok(()),
            },
        );
        assert_eq!(a, vec![sig(libc::SIGQUIT, false)]);
    }

    #[test]
    fn sandbox_never_runs_hooks() {
        let t0 = Instant::now();
        let mut l = InitLifecycle::new(&config(&[
            ("io.kubernetes.cri.container-type", "sandbox"),
            ("lifecycle.shim/post-start", PS),
            ("lifecycle.shim/pre-stop", PRE),
        ]));
        assert_eq!(
            l.start(t0, None).unwrap(),
            vec![Action::ReleaseEntrypoint, Action::ReplyStart(Ok(()))]
        );
        assert_eq!(l.kill(t0, req(15)).unwrap(), vec![sig(15, false)]);
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn both_orders_are_covered() {
        // Guard against a new order being added without a test above.
        for o in [PostStartOrder::Concurrent, PostStartOrder::BeforeEntrypoint] {
            let mut p = PostStart::new(ps_handler(), o, None);
            let a = p.start(Instant::now(), None);
            assert_eq!(a.last(), Some(&run_ps()));
        }
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let t0 = Instant::now();
        let mut l = started(
            &[
                ("lifecycle.shim/pre-stop", PRE),
                (
                    "lifecycle.shim/termination-grace-period-seconds",
                    "18446744073709551615",
                ),
            ],
            t0,
        );
        l.kill(t0, req(15)).unwrap();
        assert!(l.next_deadline().unwrap() > t0 + S(3600));
    }
}
