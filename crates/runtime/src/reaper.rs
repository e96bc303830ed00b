//! The one reaper of the process. A dedicated thread blocks in `waitid(P_ALL, WEXITED)`, so no
//! signal mask has to be managed in a multi-threaded process, and fans every exit out to the
//! subscribers. Subscribe *before* spawning a process so that a fast exit is never missed.
//!
//! Once the reaper runs, nothing else in the process may wait for children
//! (`std::process::Command::wait`/`output` would race with it and fail with ECHILD).
//!
//! A short-lived command line (`lifecycle-runc`) calls [`set_manual`] instead: no reaper
//! thread, and a process is reaped only when someone waits for it by pid
//! ([`Subscription::wait_for`]). Its container processes are then never reaped behind its
//! parent's back: once it exits they are reparented, still unreaped, to that parent (a shim
//! that is a child subreaper gets their exit status), as with runc.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Condvar, Mutex, Once, OnceLock,
    },
    time::{Duration, SystemTime},
};

/// One reaped child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub pid: i32,
    /// The exit code, or 128 + the signal number when the process was killed by a signal.
    pub status: i32,
    /// The signal that killed the process, if one did (`status` is then 128 + it): tells a
    /// death by SIGKILL from an `exit 137`.
    pub signal: Option<i32>,
    pub at: SystemTime,
}

struct Reaper {
    subscribers: Mutex<Vec<(u64, mpsc::Sender<Exit>)>>,
    /// Generation counter bumped by [`notify`]; the reaper parks on it while it has no child.
    spawned: Mutex<u64>,
    wake: Condvar,
}

static REAPER: OnceLock<Reaper> = OnceLock::new();
static STARTED: Once = Once::new();
static MANUAL: AtomicBool = AtomicBool::new(false);

/// Switches this process to manual reaping, before anything spawns: [`start`] does nothing,
/// and [`Subscription::wait_for`] reaps the one pid it waits for (`waitid(P_PID)`); other
/// subscription calls never see an exit. Children nobody waits for stay unreaped until this
/// process exits. Has no effect once the reaper thread runs.
pub fn set_manual() {
    MANUAL.store(true, Ordering::SeqCst);
}

fn manual() -> bool {
    MANUAL.load(Ordering::SeqCst) && !STARTED.is_completed()
}
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn reaper() -> &'static Reaper {
    REAPER.get_or_init(|| Reaper {
        subscribers: Mutex::new(Vec::new()),
        spawned: Mutex::new(0),
        wake: Condvar::new(),
    })
}

/// Starts the reaper thread (once per process; later calls do nothing) and makes this process
/// a child subreaper, so orphans of its containers are reparented here and reaped.
pub fn start() {
    if MANUAL.load(Ordering::SeqCst) {
        return;
    }
    STARTED.call_once(|| {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        let r = reaper();
        std::thread::Builder::new()
            .name("lifecycle-reaper".into())
            .spawn(move || run(r))
            .expect("spawn the reaper thread");
    });
}

/// Receives every exit reaped after [`subscribe`]. Dropping it unsubscribes.
pub struct Subscription {
    id: u64,
    rx: mpsc::Receiver<Exit>,
}

impl Subscription {
    /// Blocks until the next exit. `None` only if the reaper is gone (it never stops).
    pub fn recv(&self) -> Option<Exit> {
        self.rx.recv().ok()
    }

    /// The next exit, or `None` after `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Exit> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The next exit if one is queued.
    pub fn try_recv(&self) -> Option<Exit> {
        self.rx.try_recv().ok()
    }

    /// Waits for the exit of `pid` (other exits are dropped from this subscription), up to
    /// `timeout` (None = forever).
    pub fn wait_for(&self, pid: i32, timeout: Option<Duration>) -> Option<Exit> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        if manual() {
            return wait_pid(pid, deadline);
        }
        loop {
            let exit = match deadline {
                None => self.recv()?,
                Some(d) => {
                    self.recv_timeout(d.checked_duration_since(std::time::Instant::now())?)?
                }
            };
            if exit.pid == pid {
                return Some(exit);
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut subs) = reaper().subscribers.lock() {
            subs.retain(|(id, _)| *id != self.id);
        }
    }
}

/// Subscribes to exits. Call before spawning the process whose exit you need.
pub fn subscribe() -> Subscription {
    let (tx, rx) = mpsc::channel();
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    reaper()
        .subscribers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((id, tx));
    Subscription { id, rx }
}

/// Tells the reaper that a child was just spawned (wakes it if it parked on ECHILD).
pub fn notify() {
    let r = reaper();
    let mut g = r.spawned.lock().unwrap_or_else(|e| e.into_inner());
    *g = g.wrapping_add(1);
    r.wake.notify_all();
}

/// Manual mode: reaps `pid` alone (blocking without a deadline, else polling).
fn wait_pid(pid: i32, deadline: Option<std::time::Instant>) -> Option<Exit> {
    loop {
        // SAFETY: siginfo_t is plain data; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | if deadline.is_some() { libc::WNOHANG } else { 0 };
        // SAFETY: valid pointer to a siginfo_t.
        let rc = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
        if rc == 0 {
            // SAFETY: waitid succeeded; si_pid is 0 when WNOHANG found nothing yet.
            if unsafe { info.si_pid() } == pid {
                return Some(exit_of(&info));
            }
        } else if nix::errno::Errno::last() != nix::errno::Errno::EINTR {
            return None;
        }
        if let Some(d) = deadline {
            if std::time::Instant::now() >= d {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn exit_of(info: &libc::siginfo_t) -> Exit {
    // SAFETY: called after a successful waitid with WEXITED: si_pid/si_status are valid.
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    let (status, signal) = if info.si_code == libc::CLD_EXITED {
        (status, None)
    } else {
        (128 + status, Some(status))
    };
    Exit {
        pid,
        status,
        signal,
        at: SystemTime::now(),
    }
}

fn run(r: &'static Reaper) {
    loop {
        let generation = *r.spawned.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: siginfo_t is plain data; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to a siginfo_t.
        let rc = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED) };
        if rc == 0 {
            // SAFETY: waitid succeeded with WEXITED, so si_pid is valid.
            if unsafe { info.si_pid() } == 0 {
                continue;
            }
            let exit = exit_of(&info);
            let mut subs = r.subscribers.lock().unwrap_or_else(|e| e.into_inner());
            subs.retain(|(_, tx)| tx.send(exit).is_ok());
            continue;
        }
        match nix::errno::Errno::last() {
            nix::errno::Errno::EINTR => {}
            _ => {
                // ECHILD: nothing to wait for. Park until a spawner notifies, or briefly, since
                // orphans can be reparented to us (subreaper) without anyone notifying.
                let g = r.spawned.lock().unwrap_or_else(|e| e.into_inner());
                if *g == generation {
                    let _ = r.wake.wait_timeout(g, Duration::from_millis(50));
                }
            }
        }
    }
}
