//! One file per group of commands.

pub mod exec;
pub mod info;
pub mod lifecycle;
pub mod update;

use std::os::{fd::OwnedFd, unix::net::UnixStream};

use lifecycle_runtime::reaper::Subscription;

use crate::{tty, Fail};

/// Where a new process's pty master goes: over the console socket, or (foreground only) to
/// a relay to our own stdio.
pub fn attach_console(
    console: Option<OwnedFd>,
    sock: Option<&UnixStream>,
) -> Result<Option<tty::Relay>, Fail> {
    let Some(master) = console else {
        return Ok(None);
    };
    match sock {
        Some(s) => tty::send_master(s, std::os::fd::AsFd::as_fd(&master)).map(|()| None),
        None => tty::Relay::start(master).map(Some),
    }
}

/// Waits for a foreground process, forwarding signals to it; its exit status (128+signal
/// when killed), as runc exits with.
pub fn wait_foreground(pid: i32, relay: Option<tty::Relay>, sub: &Subscription) -> i32 {
    tty::forward_signals(pid, relay.as_ref().and_then(|r| r.resizer()));
    let status = sub.wait_for(pid, None).map(|e| e.status).unwrap_or(255);
    if let Some(r) = relay {
        r.finish();
    }
    status
}

/// Reads a spec value from `<bundle>/config.json` before create (terminal), without the
/// library's full checks (it repeats them with field paths).
pub fn bundle_terminal(bundle: &std::path::Path) -> Result<bool, Fail> {
    let path = bundle.join("config.json");
    let data =
        std::fs::read(&path).map_err(|e| Fail::new(format!("open {}: {e}", path.display())))?;
    let v: serde_json::Value =
        serde_json::from_slice(&data).map_err(|e| Fail::new(format!("{}: {e}", path.display())))?;
    Ok(v["process"]["terminal"].as_bool().unwrap_or(false))
}

/// A signal by number, or by name with or without `SIG` (any case), as `runc kill`.
pub fn parse_signal(s: &str) -> Result<i32, Fail> {
    if let Ok(n) = s.parse::<i32>() {
        if (0..=64).contains(&n) {
            return Ok(n);
        }
        return Err(Fail::new(format!("invalid signal number {n}")));
    }
    lifecycle_runtime::Signal::parse(s)
        .map(lifecycle_runtime::Signal::as_raw)
        .ok_or_else(|| Fail::new(format!("unknown signal {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_as_runc() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("SIGKILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert_eq!(parse_signal("RTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
        assert!(parse_signal("FOO")
            .unwrap_err()
            .msg
            .contains("unknown signal"));
        assert_eq!(parse_signal("0").unwrap(), 0);
        assert!(parse_signal("65").is_err());
    }
}
