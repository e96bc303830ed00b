//! Lifecycle hooks: the annotation contract of `DESIGN.md` ("Where hooks come from" and
//! "Semantics") as a library the shim drives.
//!
//! - [`HookConfig::from_annotations`] validates every hook annotation at Create.
//! - [`InitLifecycle`] holds the postStart and termination state machines of a container's
//!   init process; the shim feeds it RPCs, exits, hook results and timer ticks (with an
//!   injected `now`) and performs the [`Action`]s it returns.
//! - Handlers that need no process in the container: [`http_get`] and [`tcp_check`] (blocking,
//!   for a thread that joined the container's network namespace); `sleep` is a plain duration.
//! - [`OutputBuffer`], [`tail_for_message`], [`HookError`]: hook output and failure messages.
//! - [`RecordStore`]: one JSON record per hook run, bounded.
//!
//! Running an exec hook inside the container belongs to the runtime crate and the shim.

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

pub use config::{ConfigError, ContainerKind, HookConfig, HookOutput, PostStartOrder};
pub use handler::{Handler, HandlerError, HttpGet, Scheme, TcpSocket};
pub use lifecycle::{Action, Cancel, Event, InitLifecycle, KillRequest, StateError};
pub use output::{
    tail_for_message, CancelReason, HookError, HookFailure, HookKind, LinePrefixer, OutputBuffer,
    DEFAULT_OUTPUT_CAP, MESSAGE_TAIL_MAX,
};
pub use probe::{
    connect_direct, default_address, http_get, resolve_host, tcp_check, Connector, HttpResponse,
    ProbeError, ResolverFiles, MAX_REDIRECTS, RESPONSE_LIMIT,
};
pub use record::{HookRecord, RecordError, RecordLimits, RecordOutcome, RecordStore};
pub use signal::Signal;
