//! Lifecycle hooks: the annotation contract of `DESIGN.md` ("Where hooks come from" and
//! "Semantics") as a library the shim drives.
//!
//! - [`HookConfig::from_annotations`] validates every hook annotation at Create.
//! - [`InitLifecycle`] holds the postStart and termination state machines of a container's
//!   init process; the shim feeds it RPCs, exits, hook results and timer ticks (with an
//!   injected `now`) and performs the [`Action`]s it returns, in order.
//! - [`run_probe`] runs httpGet and tcpSocket handlers (blocking, on a thread that joined the
//!   container's network namespace); `sleep` is a plain duration for the shim to wait; exec
//!   belongs to the runtime crate (entering the container).
//! - [`OutputBuffer`], [`tail_for_message`], [`LinePrefixer`], [`HookError`]: hook output and
//!   failure messages.
//! - [`RecordStore`]: one JSON record per hook run, bounded.
//!
//! How the shim drives one container (no sleeping: time is passed in):
//!
//! ```
//! use std::{collections::HashMap, time::{Duration, Instant}};
//! use lifecycle_hooks::*;
//!
//! let annotations: HashMap<String, String> = [
//!     ("lifecycle.shim/post-start".to_string(), r#"{"exec":{"command":["/bin/true"]}}"#.to_string()),
//!     ("lifecycle.shim/pre-stop".to_string(), r#"{"sleep":{"seconds":5}}"#.to_string()),
//! ]
//! .into();
//! // Create: a bad annotation fails here, before anything exists.
//! let cfg = HookConfig::from_annotations(&annotations).unwrap();
//! let mut life = InitLifecycle::new(&cfg);
//!
//! // Start (deadline from the ttrpc timeout): release the entrypoint, run the hook.
//! let t0 = Instant::now();
//! let actions = life.start(t0, Some(t0 + Duration::from_secs(120))).unwrap();
//! assert!(matches!(actions[..], [Action::ReleaseEntrypoint, Action::RunHook { hook: HookKind::PostStart, .. }]));
//! assert_eq!(life.next_deadline(), Some(t0 + Duration::from_secs(119)));
//!
//! // The hook exited 0: now answer Start and publish /tasks/start.
//! let actions = life.on_event(t0, Event::HookFinished { hook: HookKind::PostStart, result: Ok(()) });
//! assert!(matches!(actions[..], [Action::ReplyStart(Ok(()))]));
//!
//! // Kill with SIGTERM: answered at once; preStop runs; the grace timer is armed.
//! let kill = KillRequest { signal: Signal::TERM, all: false, paused: false };
//! let actions = life.kill(t0, kill).unwrap();
//! assert!(matches!(actions[..], [Action::RunHook { hook: HookKind::PreStop, .. }]));
//! let actions = life.on_event(t0, Event::HookFinished { hook: HookKind::PreStop, result: Ok(()) });
//! assert!(matches!(actions[..], [Action::Signal { signal: Signal::TERM, all: false }]));
//!
//! // The process ignores SIGTERM: at the deadline (30 s by default), SIGKILL to all.
//! let deadline = life.next_deadline().unwrap();
//! let actions = life.on_event(deadline, Event::Timer);
//! assert!(matches!(actions[..], [Action::Signal { signal: Signal::KILL, all: true }]));
//! life.on_event(deadline, Event::InitExited { status: 137 });
//! assert_eq!(life.kill(deadline, kill).unwrap_err(), StateError::ProcessFinished);
//! ```

mod config;
mod dns;
mod handler;
mod lifecycle;
mod output;
mod poststart;
mod probe;
mod record;
mod signal;
mod termination;
mod tls;

pub use config::{ConfigError, ContainerKind, HookConfig, HookOutput, PostStartOrder};
pub use handler::{Handler, HandlerError, HttpGet, Scheme, TcpSocket};
pub use lifecycle::{Action, Cancel, Event, InitLifecycle, KillRequest, StateError};
pub use output::{
    tail_for_message, CancelReason, HookError, HookFailure, HookKind, LinePrefixer, OutputBuffer,
    DEFAULT_OUTPUT_CAP, MESSAGE_TAIL_MAX,
};
pub use probe::{connect_direct, run_probe, Connector, ProbeError, ProbeRun, ResolverFiles};
pub use record::{
    format_rfc3339, HookRecord, RecordError, RecordLimits, RecordOutcome, RecordStore,
};
pub use signal::Signal;
