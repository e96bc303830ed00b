//! OCI runtime hooks. prestart, createRuntime, poststart and poststop run in the caller (the
//! runtime namespace); createContainer and startContainer run inside the container init, which
//! forks and waits for them itself (it is single-threaded and not the caller's reaper).

use std::{
    ffi::CString,
    io::{Read, Write},
    os::unix::ffi::OsStrExt,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use oci_spec::runtime::Hook;
use serde::Serialize;

use crate::{error::Error, reaper};

/// The OCI state document hooks get on stdin.
#[derive(Serialize)]
pub(crate) struct HookState<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    pub id: &'a str,
    pub status: &'a str,
    pub pid: i32,
    pub bundle: &'a Path,
    pub annotations: &'a std::collections::HashMap<String, String>,
}

const STDERR_TAIL: usize = 4096;

/// Runs `hooks` in order from the caller, each with its timeout; the first failure stops.
pub(crate) fn run_in_caller(kind: &'static str, hooks: &[Hook], state: &[u8]) -> Result<(), Error> {
    for (index, h) in hooks.iter().enumerate() {
        run_one(kind, index, h, state)?;
    }
    Ok(())
}

fn run_one(kind: &'static str, index: usize, h: &Hook, state: &[u8]) -> Result<(), Error> {
    let fail = |reason: String| Error::Hook {
        kind,
        index,
        path: h.path().clone(),
        reason,
    };
    let mut cmd = Command::new(h.path());
    if let Some(args) = h.args() {
        if let Some((first, rest)) = args.split_first() {
            use std::os::unix::process::CommandExt;
            cmd.arg0(first).args(rest);
        }
    }
    cmd.env_clear();
    for e in h.env().iter().flatten() {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    reaper::start();
    let sub = reaper::subscribe();
    let mut child = cmd.spawn().map_err(|e| fail(format!("spawn: {e}")))?;
    reaper::notify();
    let pid = child.id() as i32;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin must not fail the write (EPIPE is fine).
        let _ = stdin.write_all(state);
    }
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut tail = Vec::new();
        if let Some(mut s) = stderr {
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
        }
        String::from_utf8_lossy(&tail).trim().to_owned()
    });
    let timeout = h
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64));
    // The Child handle is never waited on: the reaper reaps it.
    let exit = match sub.wait_for(pid, timeout) {
        Some(e) => e,
        None => {
            // SAFETY: kill with integers; the pid is our unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            sub.wait_for(pid, Some(Duration::from_secs(5)));
            return Err(fail(format!(
                "timed out after {}s",
                timeout.unwrap_or_default().as_secs()
            )));
        }
    };
    drop(child);
    let stderr = reader.join().unwrap_or_default();
    if exit.status != 0 {
        return Err(fail(format!(
            "exit status {}{}",
            exit.status,
            if stderr.is_empty() {
                String::new()
            } else {
                format!(": {stderr}")
            }
        )));
    }
    Ok(())
}

/// Runs `hooks` from inside the single-threaded container init (fork, exec, waitpid).
pub(crate) fn run_in_init(kind: &'static str, hooks: &[Hook], state: &[u8]) -> Result<(), String> {
    for (index, h) in hooks.iter().enumerate() {
        run_forked(h, state).map_err(|reason| {
            format!(
                "{kind} hook {index} ({}) failed: {reason}",
                h.path().display()
            )
        })?;
    }
    Ok(())
}

fn run_forked(h: &Hook, state: &[u8]) -> Result<(), String> {
    let to_c = |b: &[u8]| CString::new(b).unwrap_or_default();
    let path = to_c(h.path().as_os_str().as_bytes());
    let args: Vec<CString> = match h.args() {
        Some(a) if !a.is_empty() => a.iter().map(|s| to_c(s.as_bytes())).collect(),
        _ => vec![path.clone()],
    };
    let env: Vec<CString> = h
        .env()
        .iter()
        .flatten()
        .map(|s| to_c(s.as_bytes()))
        .collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    let mut fds = [0; 2];
    // SAFETY: valid array for pipe2.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: the init is single-threaded; the child only calls async-signal-safe functions.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: in the child: dup2/execve/_exit only.
        unsafe {
            libc::dup2(fds[0], 0);
            crate::process::reset_signals();
            libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
    }
    // SAFETY: closing our copy of the read end; writing the state to the write end.
    unsafe {
        libc::close(fds[0]);
        let mut off = 0;
        while off < state.len() {
            let n = libc::write(fds[1], state[off..].as_ptr().cast(), state.len() - off);
            if n <= 0 {
                break;
            }
            off += n as usize;
        }
        libc::close(fds[1]);
    }
    let deadline = h
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                return Ok(());
            }
            if libc::WIFEXITED(status) {
                return Err(format!("exit status {}", libc::WEXITSTATUS(status)));
            }
            return Err(format!("killed by signal {}", libc::WTERMSIG(status)));
        }
        if r < 0 {
            return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            // SAFETY: kill and reap our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Err("timed out".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
