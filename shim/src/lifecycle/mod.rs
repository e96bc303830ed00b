//! Lifecycle hooks in the shim: one [`Hooks`] per container with a hook or a grace timer drives
//! `lifecycle_hooks::InitLifecycle` (the postStart and termination state machines) and performs
//! its actions.
//!
//! - Every call into the state machine happens under one lock, and the actions it returns are
//!   queued, under that lock, to one actor task per container, so they are performed in the
//!   order they were decided (a timer's SIGKILL never overtakes the stop signal before it).
//! - After every call one timer is re-armed for `next_deadline()`; when it fires the state
//!   machine gets `Event::Timer` (SIGKILL at the grace deadline, postStart timeout).
//! - Hooks run on their own tasks (`runner`), independent of the RPC that started them: a
//!   Start call containerd gives up on does not stop its postStart, and the outcome (TaskStart,
//!   or the container killed and TaskExit) stands.
//! - Start is finished here, not in the RPC future: `ReplyStart(Ok)` publishes TaskStart,
//!   `ReplyStart(Err)` (which the state machine emits only after the init exited) ends the
//!   phase without it, which publishes the held TaskExit.

mod probe_thread;
mod records;
mod runner;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::{Instant, SystemTime},
};

use containerd_shim_protos::events::task::{TaskResumed, TaskStart};
use lifecycle_hooks::{
    Action, Event as HookEvent, HookConfig, HookError, HookFailure, HookKind, InitLifecycle,
    KillRequest as HookKill, Signal as HookSignal,
};
use lifecycle_runtime::Container;
use tokio::{
    sync::{mpsc, oneshot, Notify},
    task::JoinHandle,
};

use runner::RunContext;

use crate::{
    errors::TaskError,
    events::{Event, EventSink},
    io::IoConfig,
    process::{Phase, Proc},
    task::Shim,
};

type Reply = oneshot::Sender<Result<(), TaskError>>;

/// A batch of actions to perform in order, and who waits for the outcome of its signals.
struct Batch {
    actions: Vec<Action>,
    reply: Option<Reply>,
}

/// The hooks of one container's init process.
pub struct Hooks {
    id: String,
    cfg: HookConfig,
    life: Mutex<InitLifecycle>,
    container: Arc<Container>,
    init: Arc<Proc>,
    events: Arc<dyn EventSink>,
    shim: Weak<Shim>,
    io_config: IoConfig,
    namespace: String,
    queue: mpsc::UnboundedSender<Batch>,
    start_reply: Mutex<Option<Reply>>,
    /// Running hooks: sending on (or dropping) the sender cancels the run.
    running: Mutex<HashMap<HookKind, oneshot::Sender<String>>>,
    /// The captured output of each hook's last run, for the Start error's tail.
    outputs: Mutex<HashMap<HookKind, Vec<u8>>>,
    /// Hooks whose run has not stored its output yet, and a wake-up when one does.
    in_flight: Mutex<Vec<HookKind>>,
    settled: Notify,
    timer: Mutex<Option<(Instant, JoinHandle<()>)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hooks {
    /// At Create; `None` when the container has nothing for the shim to do (no postStart, no
    /// preStop, no grace key, or a sandbox): then Start and Kill are plain, like runc.
    pub fn new(
        shim: &Arc<Shim>,
        cfg: HookConfig,
        container: Arc<Container>,
        init: Arc<Proc>,
        events: Arc<dyn EventSink>,
        io_config: IoConfig,
    ) -> Option<Arc<Hooks>> {
        if cfg.post_start.is_none() && !cfg.grace_timer {
            return None;
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<Batch>();
        let hooks = Arc::new(Hooks {
            id: init.container_id.clone(),
            life: Mutex::new(InitLifecycle::new(&cfg)),
            cfg,
            container,
            init,
            events,
            shim: Arc::downgrade(shim),
            io_config,
            namespace: shim.namespace.clone(),
            queue: tx,
            start_reply: Mutex::new(None),
            running: Mutex::new(HashMap::new()),
            outputs: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(Vec::new()),
            settled: Notify::new(),
            timer: Mutex::new(None),
        });
        // The actor holds a weak reference: it ends when the task (and its Hooks) is deleted.
        let weak = Arc::downgrade(&hooks);
        tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                let Some(h) = weak.upgrade() else { break };
                let result = h.perform(batch.actions).await;
                if let Some(reply) = batch.reply {
                    let _ = reply.send(result);
                }
            }
        });
        Some(hooks)
    }

    /// Queues `actions` (call with the lifecycle lock held, so batches keep their order) and
    /// re-arms the timer.
    fn dispatch(
        self: &Arc<Self>,
        life: &InitLifecycle,
        actions: Vec<Action>,
        reply: Option<Reply>,
    ) {
        self.rearm(life.next_deadline());
        if actions.is_empty() {
            if let Some(r) = reply {
                let _ = r.send(Ok(()));
            }
            return;
        }
        if let Err(mpsc::error::SendError(batch)) = self.queue.send(Batch { actions, reply }) {
            if let Some(r) = batch.reply {
                let _ = r.send(Ok(()));
            }
        }
    }

    fn rearm(self: &Arc<Self>, deadline: Option<Instant>) {
        let mut timer = lock(&self.timer);
        if timer.as_ref().map(|(d, _)| *d) == deadline {
            return;
        }
        if let Some((_, handle)) = timer.take() {
            handle.abort();
        }
        if let Some(d) = deadline {
            let weak = Arc::downgrade(self);
            let handle = tokio::spawn(async move {
                tokio::time::sleep_until(d.into()).await;
                if let Some(h) = weak.upgrade() {
                    lock(&h.timer).take();
                    h.event(HookEvent::Timer);
                }
            });
            *timer = Some((d, handle));
        }
    }

    fn event(self: &Arc<Self>, ev: HookEvent) {
        let mut life = lock(&self.life);
        let actions = life.on_event(Instant::now(), ev);
        self.dispatch(&life, actions, None);
    }

    /// Start of the init (the process is already in `Phase::Starting`). The returned receiver
    /// answers when postStart succeeded (TaskStart published) or failed (container stopped,
    /// TaskExit published); the work goes on if the caller stops waiting.
    pub fn start(
        self: &Arc<Self>,
        rpc_deadline: Option<Instant>,
    ) -> Result<oneshot::Receiver<Result<(), TaskError>>, TaskError> {
        let (tx, rx) = oneshot::channel();
        let mut life = lock(&self.life);
        let actions =
            life.start(Instant::now(), rpc_deadline)
                .map_err(|source| TaskError::HookState {
                    id: self.id.clone(),
                    source,
                })?;
        *lock(&self.start_reply) = Some(tx);
        self.dispatch(&life, actions, None);
        Ok(rx)
    }

    /// Kill of the init. Answers once the signals decided now are sent; a termination
    /// sequence (preStop, grace timer) goes on in the background.
    pub async fn kill(self: &Arc<Self>, signal: i32, all: bool) -> Result<(), TaskError> {
        let sig =
            HookSignal::from_raw(signal as u32).ok_or_else(|| TaskError::InvalidArgument {
                what: "signal",
                detail: format!("{signal} is not 1-64"),
            })?;
        let paused = self.init.state().paused;
        let (tx, rx) = oneshot::channel();
        {
            let mut life = lock(&self.life);
            let actions = life
                .kill(
                    Instant::now(),
                    HookKill {
                        signal: sig,
                        all,
                        paused,
                    },
                )
                .map_err(|source| match source {
                    lifecycle_hooks::StateError::ProcessFinished => {
                        TaskError::ProcessExited(self.id.clone())
                    }
                    source => TaskError::HookState {
                        id: self.id.clone(),
                        source,
                    },
                })?;
            let pass_through = matches!(
                actions[..],
                [Action::Signal { signal: s, all: a }] if s == sig && a == all
            );
            if pass_through && sig != HookSignal::KILL && self.cfg.pre_stop.is_some() {
                log::warn!(
                    "container {}: {sig} is not the stop request: delivered as is, no preStop",
                    self.id
                );
            }
            self.dispatch(&life, actions, Some(tx));
        }
        rx.await.unwrap_or(Ok(()))
    }

    /// A hook runs or a timer of the postStart or termination sequence is armed, and the init
    /// has not exited: a SIGTERM to the shim waits for this to end.
    pub fn busy(&self) -> bool {
        let life = lock(&self.life);
        !life.exited() && (life.next_deadline().is_some() || !lock(&self.running).is_empty())
    }

    /// Delete of the init while it has not exited. True when a running postStart was
    /// cancelled and the container is being killed (Delete then waits for the exit).
    pub async fn delete(self: &Arc<Self>) -> bool {
        let (tx, rx) = oneshot::channel();
        {
            let mut life = lock(&self.life);
            let actions = life.delete(Instant::now());
            if actions.is_empty() {
                return false;
            }
            self.dispatch(&life, actions, Some(tx));
        }
        let _ = rx.await;
        true
    }

    /// The init was reaped: State is STOPPED and its TaskExit published (or held until the
    /// Start phase ends).
    pub fn init_exited(self: &Arc<Self>, status: u32) {
        self.event(HookEvent::InitExited {
            status: status as i32,
        });
    }

    async fn perform(self: &Arc<Self>, actions: Vec<Action>) -> Result<(), TaskError> {
        let mut first_err = None;
        for action in actions {
            match action {
                Action::ReleaseEntrypoint => {
                    let container = self.container.clone();
                    let r = tokio::task::spawn_blocking(move || container.start()).await;
                    match r {
                        Ok(Ok(())) => self.init.state().released = true,
                        Ok(Err(source)) => {
                            self.release_failed(TaskError::Runtime {
                                op: "start",
                                source,
                            });
                            return Ok(());
                        }
                        Err(source) => {
                            self.release_failed(TaskError::Join {
                                op: "start",
                                source,
                            });
                            return Ok(());
                        }
                    }
                }
                Action::RunHook { hook, handler } => self.run_hook(hook, handler),
                Action::CancelHook { hook, cause } => {
                    if let Some(cancel) = lock(&self.running).remove(&hook) {
                        // The same words a failure would use ("container exited (0)",
                        // "cancelled by Kill with SIGKILL"): they reach logs and records.
                        let _ = cancel.send(HookFailure::from(cause).to_string());
                    }
                }
                Action::Resume => {
                    let container = self.container.clone();
                    match tokio::task::spawn_blocking(move || container.resume()).await {
                        Ok(Ok(())) => {
                            self.init.state().paused = false;
                            let mut e = TaskResumed::new();
                            e.container_id = self.id.clone();
                            self.events.publish(Event::Resumed(e));
                        }
                        Ok(Err(e)) => log::warn!("container {}: resume: {e}", self.id),
                        Err(e) => log::warn!("container {}: resume: {e}", self.id),
                    }
                }
                Action::Signal { signal, all } => {
                    if let Err(e) = self.signal(signal, all).await {
                        first_err.get_or_insert(e);
                    }
                }
                Action::ReplyStart(result) => self.reply_start(result).await,
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    async fn signal(&self, signal: HookSignal, all: bool) -> Result<(), TaskError> {
        let container = self.container.clone();
        let raw = signal.as_raw();
        match tokio::task::spawn_blocking(move || container.kill(raw, all)).await {
            Ok(Ok(())) => Ok(()),
            // Gone already: its exit is on its way, not an error for the sequence.
            Ok(Err(lifecycle_runtime::Error::NotRunning { .. })) => Ok(()),
            Ok(Err(source)) => Err(TaskError::Runtime { op: "kill", source }),
            Err(source) => Err(TaskError::Join { op: "kill", source }),
        }
    }

    /// The entrypoint could not be released: Start fails with the runtime's error, and a
    /// postStart already running (before-entrypoint never gets here) is cancelled.
    fn release_failed(self: &Arc<Self>, err: TaskError) {
        if let Some(cancel) = lock(&self.running).remove(&HookKind::PostStart) {
            let _ = cancel.send("start failed".into());
        }
        self.init
            .finish_phase(Phase::Created, None, self.events.as_ref());
        if let Some(tx) = lock(&self.start_reply).take() {
            let _ = tx.send(Err(err));
        }
    }

    async fn reply_start(&self, result: Result<(), HookError>) {
        let reply = lock(&self.start_reply).take();
        match result {
            Ok(()) => {
                let mut ev = TaskStart::new();
                ev.container_id = self.id.clone();
                ev.pid = self.init.state().pid.max(0) as u32;
                self.init.finish_phase(
                    Phase::Started,
                    Some(Event::Start(ev)),
                    self.events.as_ref(),
                );
                if let Some(tx) = reply {
                    let _ = tx.send(Ok(()));
                }
            }
            Err(err) => {
                // A cancelled run may still be storing its output: give it a moment.
                let settle = async {
                    loop {
                        let notified = self.settled.notified();
                        if !lock(&self.in_flight).contains(&HookKind::PostStart) {
                            break;
                        }
                        notified.await;
                    }
                };
                let _ = tokio::time::timeout(std::time::Duration::from_millis(500), settle).await;
                let output = lock(&self.outputs)
                    .get(&HookKind::PostStart)
                    .cloned()
                    .unwrap_or_default();
                let err = err.with_output(&output);
                log::warn!("container {}: {err}", self.id);
                self.init
                    .finish_phase(Phase::Created, None, self.events.as_ref());
                if let Some(tx) = reply {
                    let _ = tx.send(Err(TaskError::PostStart(err)));
                }
            }
        }
    }

    fn run_hook(self: &Arc<Self>, hook: HookKind, handler: lifecycle_hooks::Handler) {
        let (cancel_tx, cancel_rx) = oneshot::channel();
        lock(&self.running).insert(hook, cancel_tx);
        lock(&self.in_flight).push(hook);
        let deadline = lock(&self.life).next_deadline();
        let this = self.clone();
        tokio::spawn(async move {
            let started = SystemTime::now();
            let ctx = RunContext {
                container: &this.container,
                init_pid: this.init.state().pid,
                shim: &this.shim,
                io_config: &this.io_config,
                output: this.cfg.hook_output,
            };
            let run = runner::run(&ctx, hook, &handler, deadline, cancel_rx).await;
            let record = records::finish(
                &this.namespace,
                &this.id,
                this.cfg.container_name.as_deref(),
                hook,
                started,
                &run,
            );
            // Files off the async worker; nothing waits for it.
            tokio::task::spawn_blocking(record);
            lock(&this.outputs).insert(hook, run.output);
            lock(&this.in_flight).retain(|h| *h != hook);
            this.settled.notify_waiters();
            if let Some(result) = run.result {
                lock(&this.running).remove(&hook);
                this.event(HookEvent::HookFinished { hook, result });
            }
        });
    }
}

/// Where the shim writes hook records: outside the bundle, which containerd deletes.
pub fn default_records_root() -> PathBuf {
    PathBuf::from("/run/containerd/lifecycle-shim/records")
}
