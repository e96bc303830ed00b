//! Running one hook: exec inside the container, a probe on a thread in its network namespace,
//! or a sleep in the shim. A run ends on its own (a result for the state machine) or is
//! cancelled (its process SIGKILLed, a probe abandoned): then no result is reported.

use std::{
    fs::OpenOptions,
    io::Write,
    os::{fd::OwnedFd, unix::fs::OpenOptionsExt},
    path::PathBuf,
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant, SystemTime},
};

use lifecycle_hooks::{
    Handler, HookFailure, HookKind, HookOutput, LinePrefixer, OutputBuffer, Signal,
    DEFAULT_OUTPUT_CAP,
};
use lifecycle_runtime::{Container, Stdio};
use tokio::{io::AsyncReadExt, sync::oneshot};

use super::probe_thread;
use crate::{io::IoConfig, process::ExitInfo, task::Shim};

/// How long the output readers get after the hook process exited, to drain what it wrote
/// before exiting. A daemon the hook left behind may hold the pipe open forever: not waited for.
const DRAIN: Duration = Duration::from_millis(100);
/// A probe or sleep without any deadline (no timeout, no RPC deadline) still ends.
const NO_DEADLINE: Duration = Duration::from_secs(3600);
/// How long a hook SIGKILLed while its container's init is ending waits for the init's exit.
const INIT_EXIT_GRACE: Duration = Duration::from_secs(2);

/// The init (an unreaped child of the shim, so its pid is not reused) is exiting, a zombie or
/// gone: `PF_EXITING` in its flags, or state `Z`/`X`.
fn init_is_ending(pid: i32) -> bool {
    const PF_EXITING: u64 = 0x4;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // Fields after the command name: state (3), ppid, pgrp, session, tty_nr, tpgid, flags (9).
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return true;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first().copied().unwrap_or("X");
    let flags: u64 = fields.get(6).and_then(|f| f.parse().ok()).unwrap_or(0);
    state == "Z" || state == "X" || flags & PF_EXITING != 0
}

pub(super) struct RunContext<'a> {
    pub container: &'a Arc<Container>,
    pub init_pid: i32,
    pub shim: &'a Weak<Shim>,
    pub io_config: &'a IoConfig,
    pub output: HookOutput,
}

/// What a run came to.
pub(super) struct Run {
    /// `None`: cancelled (the reason is in `cancelled`).
    pub result: Option<Result<(), HookFailure>>,
    pub cancelled: Option<String>,
    pub summary: String,
    pub output: Vec<u8>,
    pub exit_code: Option<i32>,
}

pub(super) async fn run(
    ctx: &RunContext<'_>,
    hook: HookKind,
    handler: &Handler,
    deadline: Option<Instant>,
    cancel: oneshot::Receiver<String>,
) -> Run {
    let deadline = deadline.unwrap_or_else(|| Instant::now() + NO_DEADLINE);
    match handler {
        Handler::Exec { command } => run_exec(ctx, hook, handler, command, cancel).await,
        Handler::Sleep { duration } => {
            let mut run = Run {
                result: None,
                cancelled: None,
                summary: handler.summary(),
                output: Vec::new(),
                exit_code: None,
            };
            tokio::select! {
                _ = tokio::time::sleep(*duration) => run.result = Some(Ok(())),
                c = cancel => run.cancelled = Some(c.unwrap_or_else(|_| "shim".into())),
            }
            run
        }
        Handler::HttpGet(_) | Handler::TcpSocket(_) => {
            let rx = probe_thread::spawn(ctx.init_pid, handler.clone(), deadline);
            let mut run = Run {
                result: None,
                cancelled: None,
                summary: handler.summary(),
                output: Vec::new(),
                exit_code: None,
            };
            tokio::select! {
                r = rx => match r {
                    Ok(Ok(probe)) => {
                        run.summary = probe.summary;
                        run.output = probe.output;
                        run.result = Some(probe.result);
                    }
                    Ok(Err(e)) => run.result = Some(Err(HookFailure::Spawn(Box::new(e)))),
                    Err(_) => {
                        run.result = Some(Err(HookFailure::Spawn("the probe thread ended without a result".into())));
                    }
                },
                // The thread ends by the deadline on its own; nothing waits for it.
                c = cancel => run.cancelled = Some(c.unwrap_or_else(|_| "shim".into())),
            }
            run
        }
    }
}

/// The hook's process: the container's process spec with the hook's argv, no terminal.
fn hook_process(container: &Container, command: &[String]) -> oci_spec::runtime::Process {
    let mut p = container.spec().process().clone().unwrap_or_default();
    p.set_args(Some(command.to_vec()));
    p.set_terminal(Some(false));
    p.set_console_size(None);
    p
}

/// A writer into the container's own stdout or stderr stream (`hook-output: container`), for
/// the FIFO and file forms. Never blocks: a full FIFO drops the copy (the log has it).
fn container_stream(uri: &str, terminal: bool) -> Option<std::fs::File> {
    if uri.is_empty() || terminal {
        return None;
    }
    let path = match uri.split_once("://") {
        None => PathBuf::from(uri),
        Some(("fifo", rest)) | Some(("file", rest)) => PathBuf::from(rest),
        Some(_) => return None,
    };
    let mut o = OpenOptions::new();
    o.write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC);
    if uri.starts_with("file://") {
        o.append(true);
    }
    o.open(path).ok()
}

async fn read_pipe(
    fd: OwnedFd,
    buf: Arc<Mutex<OutputBuffer>>,
    mut copy: Option<(std::fs::File, LinePrefixer)>,
) {
    let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    let mut chunk = vec![0u8; 4096];
    loop {
        match rx.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                buf.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(&chunk[..n]);
                if let Some((file, prefixer)) = copy.as_mut() {
                    let _ = file.write_all(&prefixer.prefix(&chunk[..n]));
                }
            }
        }
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

async fn run_exec(
    ctx: &RunContext<'_>,
    hook: HookKind,
    handler: &Handler,
    command: &[String],
    cancel: oneshot::Receiver<String>,
) -> Run {
    let mut run = Run {
        result: None,
        cancelled: None,
        summary: handler.summary(),
        output: Vec::new(),
        exit_code: None,
    };
    let Some(shim) = ctx.shim.upgrade() else {
        run.result = Some(Err(HookFailure::Spawn("the shim is shutting down".into())));
        return run;
    };
    let pipes = pipe().and_then(|o| pipe().map(|e| (o, e)));
    let ((out_r, out_w), (err_r, err_w)) = match pipes {
        Ok(p) => p,
        Err(e) => {
            run.result = Some(Err(HookFailure::Spawn(Box::new(e))));
            return run;
        }
    };
    let process = hook_process(ctx.container, command);
    let container = ctx.container.clone();
    let since = SystemTime::now();
    let spawned = tokio::task::spawn_blocking(move || {
        container.exec(
            &process,
            Stdio {
                stdin: None,
                stdout: Some(out_w),
                stderr: Some(err_w),
            },
        )
    })
    .await;
    let mut cancel = cancel;
    let pid = match spawned {
        Ok(Ok(s)) => s.pid,
        Ok(Err(e)) => {
            // The container ended under the exec: report that (the init's exit cancels this
            // run), not the exec's failure to join it.
            if init_is_ending(ctx.init_pid) {
                if let Ok(c) = tokio::time::timeout(INIT_EXIT_GRACE, &mut cancel).await {
                    run.cancelled = Some(c.unwrap_or_else(|_| "shim".into()));
                    return run;
                }
            }
            run.result = Some(Err(HookFailure::Spawn(Box::new(e))));
            return run;
        }
        Err(e) => {
            run.result = Some(Err(HookFailure::Spawn(Box::new(e))));
            return run;
        }
    };
    let (exit_tx, exit_rx) = oneshot::channel::<ExitInfo>();
    shim.watch_hook(pid, since, exit_tx);
    drop(shim);

    let buf = Arc::new(Mutex::new(OutputBuffer::new(DEFAULT_OUTPUT_CAP)));
    let copy = |uri: &str| {
        (ctx.output == HookOutput::Container)
            .then(|| container_stream(uri, ctx.io_config.terminal))
            .flatten()
            .map(|f| (f, LinePrefixer::new(hook)))
    };
    let readers = [
        tokio::spawn(read_pipe(out_r, buf.clone(), copy(&ctx.io_config.stdout))),
        tokio::spawn(read_pipe(err_r, buf.clone(), copy(&ctx.io_config.stderr))),
    ];

    tokio::select! {
        exit = exit_rx => {
            let (status, signal) = exit.map(|e| (e.status as i32, e.signal)).unwrap_or((-1, None));
            // When the init of a pid namespace exits, the kernel SIGKILLs every other process
            // in it and reports their exits before the init's own: a hook's 137 then means
            // "the container exited". Wait for the init's exit to reach the state machine,
            // which cancels this run (`container exited (N) before postStart completed`).
            let mut cancelled = None;
            if signal == Some(Signal::KILL.as_raw()) && init_is_ending(ctx.init_pid) {
                if let Ok(c) = tokio::time::timeout(INIT_EXIT_GRACE, &mut cancel).await {
                    cancelled = Some(c.unwrap_or_else(|_| "shim".into()));
                }
            }
            if cancelled.is_some() {
                run.cancelled = cancelled;
            } else {
                run.exit_code = Some(status);
                run.result = Some(match signal.and_then(|s| Signal::from_raw(s as u32)) {
                    Some(sig) => Err(HookFailure::Signaled(sig)),
                    None if status == 0 => Ok(()),
                    None => Err(HookFailure::Exited(status)),
                });
            }
        }
        c = &mut cancel => {
            run.cancelled = Some(c.unwrap_or_else(|_| "shim".into()));
            // The pid stays ours until reaped, and only the reaper reaps it.
            // SAFETY: kill with integers.
            unsafe { libc::kill(pid, Signal::KILL.as_raw()) };
        }
    }
    // What the process wrote before exiting is in the pipes: drain it briefly, but never
    // wait for EOF (a daemon child may hold the pipe; its reader ends when that closes).
    let mut readers = readers;
    let drain = async {
        for r in readers.iter_mut() {
            let _ = r.await;
        }
    };
    let _ = tokio::time::timeout(DRAIN, drain).await;
    run.output = buf.lock().unwrap_or_else(|e| e.into_inner()).contents();
    run
}
