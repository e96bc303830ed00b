//! The process table: each container's init and exec processes, their lifecycle phase, their
//! exit, and the one place exits from the reaper are matched to processes.
//!
//! Event order is decided here. Every event about a process is published while its state lock
//! is held, and an exit that arrives while the process is still being created or started is
//! held back until the TaskCreate / TaskStart (ExecStarted) event is out, so containerd never
//! sees an exit before the start it belongs to.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use containerd_shim_protos::{events::task::TaskExit, types::task::Status};
use tokio::sync::{oneshot, watch};

use crate::{
    events::{timestamp, Event, EventSink},
    io::{IoConfig, IoHandles},
};

/// How long an exit nobody claimed yet is kept for a process still being registered.
const EARLY_EXIT_TTL: Duration = Duration::from_secs(10);
const EARLY_EXIT_MAX: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    pub pid: i32,
    pub status: u32,
    /// The signal that killed it, if one did (`status` is then 128 + it).
    pub signal: Option<i32>,
    pub at: SystemTime,
}

/// Where a process is in its life, apart from exiting (which can happen in any phase).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Being created: TaskCreate (init) not yet published.
    Creating,
    /// Created and held before its entrypoint (init), or registered by Exec but not spawned.
    Created,
    /// Start in progress: TaskStart / TaskExecStarted not yet published.
    Starting,
    Started,
}

#[derive(Debug)]
pub struct ProcState {
    pub phase: Phase,
    pub pid: i32,
    pub paused: bool,
    pub exit: Option<ExitInfo>,
    /// The init's entrypoint was released while Start is still in progress (a concurrent
    /// postStart runs): State says RUNNING although TaskStart is not out yet.
    pub released: bool,
    /// An exit seen during Creating/Starting, published once that phase ends.
    held_exit: bool,
}

impl ProcState {
    pub fn status(&self) -> Status {
        match (self.exit, self.paused, self.phase) {
            (Some(_), _, _) => Status::STOPPED,
            (None, true, _) => Status::PAUSED,
            (None, false, Phase::Started) => Status::RUNNING,
            (None, false, Phase::Starting) if self.released => Status::RUNNING,
            (None, false, _) => Status::CREATED,
        }
    }

    pub fn status_name(&self) -> &'static str {
        match self.status() {
            Status::STOPPED => "stopped",
            Status::PAUSED => "paused",
            Status::RUNNING => "running",
            Status::CREATED => "created",
            _ => "unknown",
        }
    }
}

pub struct Proc {
    pub container_id: String,
    /// Empty for the init process.
    pub exec_id: String,
    pub io_config: IoConfig,
    /// The exec's process spec (None for the init).
    pub spec: Option<oci_spec::runtime::Process>,
    state: Mutex<ProcState>,
    exited: watch::Sender<Option<ExitInfo>>,
    pub io: Mutex<IoHandles>,
}

impl Proc {
    pub fn new(
        container_id: &str,
        exec_id: &str,
        io_config: IoConfig,
        spec: Option<oci_spec::runtime::Process>,
        phase: Phase,
    ) -> Arc<Proc> {
        Arc::new(Proc {
            container_id: container_id.to_owned(),
            exec_id: exec_id.to_owned(),
            io_config,
            spec,
            state: Mutex::new(ProcState {
                phase,
                pid: 0,
                paused: false,
                exit: None,
                released: false,
                held_exit: false,
            }),
            exited: watch::channel(None).0,
            io: Mutex::new(IoHandles::default()),
        })
    }

    pub fn state(&self) -> MutexGuard<'_, ProcState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn io(&self) -> MutexGuard<'_, IoHandles> {
        self.io.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The id containerd uses for this process in events: the exec id, or the container id.
    pub fn event_id(&self) -> &str {
        if self.exec_id.is_empty() {
            &self.container_id
        } else {
            &self.exec_id
        }
    }

    fn exit_event(&self, exit: &ExitInfo) -> Event {
        let mut e = TaskExit::new();
        e.container_id = self.container_id.clone();
        e.id = self.event_id().to_owned();
        e.pid = exit.pid as u32;
        e.exit_status = exit.status;
        e.exited_at = Some(timestamp(exit.at)).into();
        Event::Exit(e)
    }

    /// Records the exit, wakes waiters, and publishes TaskExit now or, during Creating or
    /// Starting, once that phase ends. Returns false if an exit was already recorded.
    pub fn set_exited(&self, exit: ExitInfo, events: &dyn EventSink) -> bool {
        let mut st = self.state();
        if st.exit.is_some() {
            return false;
        }
        st.exit = Some(exit);
        st.paused = false;
        let _ = self.exited.send_replace(Some(exit));
        if matches!(st.phase, Phase::Creating | Phase::Starting) {
            st.held_exit = true;
        } else {
            events.publish(self.exit_event(&exit));
        }
        true
    }

    /// Ends Creating or Starting: publishes `event` (if any) and then a held exit.
    pub fn finish_phase(&self, phase: Phase, event: Option<Event>, events: &dyn EventSink) {
        let mut st = self.state();
        st.phase = phase;
        if let Some(e) = event {
            events.publish(e);
        }
        if st.held_exit {
            st.held_exit = false;
            if let Some(exit) = st.exit {
                events.publish(self.exit_event(&exit));
            }
        }
    }

    /// Publishes an exit held during Creating/Starting now, e.g. when the task is deleted
    /// while its start is still in progress (TaskExit must precede TaskDelete).
    pub fn release_held_exit(&self, events: &dyn EventSink) {
        let mut st = self.state();
        if st.held_exit {
            st.held_exit = false;
            if let Some(exit) = st.exit {
                events.publish(self.exit_event(&exit));
            }
        }
    }

    /// Waits for the exit.
    pub async fn wait(&self) -> ExitInfo {
        let mut rx = self.exited.subscribe();
        loop {
            if let Some(exit) = *rx.borrow_and_update() {
                return exit;
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as `self`; unreachable in practice.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Matches reaped pids to processes. An exit can arrive before the process is registered
/// (it died during Create or exec's spawn); those are kept briefly as early exits.
#[derive(Default)]
pub struct ExitTable {
    by_pid: HashMap<i32, Arc<Proc>>,
    early: VecDeque<ExitInfo>,
    /// Children that are not container processes (binary:// loggers): exits to drop.
    ignored: Vec<i32>,
    /// Hook processes: their exits go to the hook runner, never into events.
    hooks: HashMap<i32, oneshot::Sender<ExitInfo>>,
}

impl ExitTable {
    /// Registers `proc` under `pid`. If its exit already came (after `since`, so it cannot be
    /// an older process with a reused pid), returns it: the caller then calls `set_exited`.
    pub fn register(&mut self, pid: i32, proc: Arc<Proc>, since: SystemTime) -> Option<ExitInfo> {
        if let Some(i) = self
            .early
            .iter()
            .position(|e| e.pid == pid && e.at >= since)
        {
            return self.early.remove(i);
        }
        self.by_pid.insert(pid, proc);
        None
    }

    /// Registers a hook process: its exit is sent to `tx` (now, if it already came after
    /// `since`), and it never becomes an event.
    pub fn watch_hook(&mut self, pid: i32, since: SystemTime, tx: oneshot::Sender<ExitInfo>) {
        if let Some(i) = self
            .early
            .iter()
            .position(|e| e.pid == pid && e.at >= since)
        {
            if let Some(exit) = self.early.remove(i) {
                let _ = tx.send(exit);
            }
            return;
        }
        self.hooks.insert(pid, tx);
    }

    pub fn ignore(&mut self, pid: i32) {
        self.ignored.push(pid);
    }

    pub fn forget(&mut self, pid: i32) {
        self.by_pid.remove(&pid);
    }

    /// The process an exit belongs to, or None (kept as an early exit, or ignored).
    pub fn claim(&mut self, exit: ExitInfo) -> Option<Arc<Proc>> {
        if let Some(p) = self.by_pid.remove(&exit.pid) {
            return Some(p);
        }
        if let Some(tx) = self.hooks.remove(&exit.pid) {
            let _ = tx.send(exit);
            return None;
        }
        if let Some(i) = self.ignored.iter().position(|p| *p == exit.pid) {
            self.ignored.swap_remove(i);
            return None;
        }
        let now = SystemTime::now();
        self.early.retain(|e| {
            now.duration_since(e.at)
                .map(|d| d < EARLY_EXIT_TTL)
                .unwrap_or(true)
        });
        if self.early.len() >= EARLY_EXIT_MAX {
            self.early.pop_front();
        }
        self.early.push_back(exit);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::RecordingSink;

    fn topics(sink: &RecordingSink) -> Vec<&'static str> {
        sink.0.lock().unwrap().iter().map(|e| e.topic()).collect()
    }

    fn exit(pid: i32, status: u32) -> ExitInfo {
        ExitInfo {
            pid,
            status,
            signal: None,
            at: SystemTime::now(),
        }
    }

    #[test]
    fn exit_during_start_is_published_after_start() {
        let sink = RecordingSink::default();
        let p = Proc::new("c", "", IoConfig::default(), None, Phase::Created);
        p.state().phase = Phase::Starting;
        assert!(p.set_exited(exit(10, 0), &sink));
        assert!(topics(&sink).is_empty(), "exit held while starting");
        p.finish_phase(
            Phase::Started,
            Some(Event::Start(Default::default())),
            &sink,
        );
        assert_eq!(topics(&sink), vec!["/tasks/start", "/tasks/exit"]);
        assert_eq!(p.state().status(), Status::STOPPED);
    }

    #[test]
    fn exit_after_start_is_published_at_once_and_only_once() {
        let sink = RecordingSink::default();
        let p = Proc::new("c", "e1", IoConfig::default(), None, Phase::Started);
        assert!(p.set_exited(exit(11, 137), &sink));
        assert!(!p.set_exited(exit(11, 137), &sink));
        assert_eq!(topics(&sink), vec!["/tasks/exit"]);
        let first = sink.0.lock().unwrap()[0].clone();
        match first {
            Event::Exit(e) => {
                assert_eq!(
                    (e.container_id.as_str(), e.id.as_str(), e.pid, e.exit_status),
                    ("c", "e1", 11, 137)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn early_exit_is_claimed_at_registration() {
        let mut t = ExitTable::default();
        let since = SystemTime::now();
        let p = Proc::new("c", "", IoConfig::default(), None, Phase::Creating);
        assert!(t.claim(exit(42, 1)).is_none());
        assert_eq!(t.register(42, p.clone(), since).map(|e| e.status), Some(1));
        // An exit from before the spawn began is another process with the same pid.
        let old = ExitInfo {
            pid: 43,
            status: 0,
            signal: None,
            at: since - Duration::from_secs(1),
        };
        assert!(t.claim(old).is_none());
        assert!(t.register(43, p.clone(), since).is_none());
        assert!(t.claim(exit(43, 0)).is_some());
        t.ignore(44);
        assert!(t.claim(exit(44, 0)).is_none());
        assert!(
            t.register(44, p, since).is_none(),
            "ignored exits are not kept"
        );
    }

    #[tokio::test]
    async fn wait_returns_the_exit() {
        let sink = RecordingSink::default();
        let p = Proc::new("c", "", IoConfig::default(), None, Phase::Started);
        let p2 = p.clone();
        let waiter = tokio::spawn(async move { p2.wait().await });
        tokio::task::yield_now().await;
        p.set_exited(exit(5, 3), &sink);
        assert_eq!(waiter.await.unwrap().status, 3);
        assert_eq!(p.wait().await.status, 3);
    }
}
