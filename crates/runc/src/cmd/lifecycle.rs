//! create, run, start, delete, kill, pause, resume.

use std::path::PathBuf;

use lifecycle_runtime::{reaper, Container, CreateOptions, Hold, Status};

use super::{attach_console, bundle_terminal, parse_signal, wait_foreground};
use crate::{
    args::{self, flag, opt, Flag},
    one_id,
    store::{self, status_str},
    tty, Fail, Global, Res,
};

const CREATE_FLAGS: &[Flag] = &[
    opt(&["bundle", "b"]),
    opt(&["console-socket"]),
    opt(&["pid-file"]),
    flag(&["no-pivot"]),
    flag(&["no-new-keyring"]),
    opt(&["preserve-fds"]),
];

const RUN_FLAGS: &[Flag] = &[
    opt(&["bundle", "b"]),
    opt(&["console-socket"]),
    opt(&["pid-file"]),
    flag(&["no-pivot"]),
    flag(&["no-new-keyring"]),
    opt(&["preserve-fds"]),
    flag(&["detach", "d"]),
    flag(&["keep"]),
    flag(&["no-subreaper"]),
];

/// What create and run share: parsed, checked, the console socket connected.
struct New {
    id: String,
    bundle: PathBuf,
    pid_file: Option<String>,
    sock: Option<std::os::unix::net::UnixStream>,
}

fn prepare(
    command: &str,
    argv: &[String],
    flags: &[Flag],
    detach: bool,
) -> Result<(New, args::Parsed), Fail> {
    let p = args::parse(argv, flags, true).map_err(Fail::new)?;
    let id = one_id(command, &p.args)?.to_owned();
    store::validate_id(&id)?;
    if p.is("no-pivot") {
        return Err(Fail::new(
            "--no-pivot is not supported: lifecycle-runc always uses pivot_root",
        ));
    }
    if p.get("preserve-fds").is_some_and(|n| n != "0") {
        return Err(Fail::new("--preserve-fds is not supported"));
    }
    let bundle = std::path::absolute(p.get("bundle").unwrap_or("."))
        .map_err(|e| Fail::new(format!("bundle: {e}")))?;
    let terminal = bundle_terminal(&bundle)?;
    let detach = detach || p.is("detach");
    let sock = tty::console_socket(terminal, detach, p.get("console-socket"))?;
    Ok((
        New {
            id,
            bundle,
            pid_file: p.get("pid-file").map(str::to_owned),
            sock,
        },
        p,
    ))
}

fn create_container(g: &Global, n: &New, hold: Hold) -> Result<lifecycle_runtime::Created, Fail> {
    let dir = g.root.claim(&n.id)?;
    Container::create(CreateOptions {
        id: n.id.clone(),
        bundle: n.bundle.clone(),
        stdio: tty::own_stdio(),
        state_dir: dir.clone(),
        hold,
    })
    .map_err(|e| {
        // The library removes what it made; the directory claimed above may remain.
        let _ = std::fs::remove_dir_all(&dir);
        Fail::from(e)
    })
}

/// `create`: the container is set up and held on its exec.fifo; this process exits and
/// `start` (from any process) releases it.
pub fn create(g: &Global, argv: &[String]) -> Res {
    let (n, _) = prepare("create", argv, CREATE_FLAGS, true)?;
    let created = create_container(g, &n, Hold::ExecFifo)?;
    let c = created.container;
    let done = (|| {
        attach_console(created.console, n.sock.as_ref())?;
        if let Some(p) = &n.pid_file {
            store::write_pid_file(p, c.init_pid())?;
        }
        Ok(())
    })();
    if let Err(e) = done {
        let _ = c.delete();
        return Err(e);
    }
    Ok(())
}

/// `run`: create and start in this process; in the foreground it waits for the container,
/// forwarding signals, deletes it and exits with its status.
pub fn run(g: &Global, argv: &[String]) -> Res {
    let (n, p) = prepare("run", argv, RUN_FLAGS, false)?;
    let detach = p.is("detach");
    if !detach {
        tty::block_signals();
    }
    let sub = reaper::subscribe();
    let created = create_container(g, &n, Hold::Caller)?;
    let c = created.container;
    let relay = match (|| {
        let relay = attach_console(created.console, n.sock.as_ref())?;
        if let Some(p) = &n.pid_file {
            store::write_pid_file(p, c.init_pid())?;
        }
        c.start()?;
        Ok::<_, Fail>(relay)
    })() {
        Ok(r) => r,
        Err(e) => {
            let _ = c.delete();
            return Err(e);
        }
    };
    if detach {
        return Ok(());
    }
    let status = wait_foreground(c.init_pid(), relay, &sub);
    if !p.is("keep") {
        c.delete()?;
    }
    std::process::exit(status);
}

pub fn start(g: &Global, argv: &[String]) -> Res {
    let p = args::parse(argv, &[], true).map_err(Fail::new)?;
    let id = one_id("start", &p.args)?;
    let c = g.root.load(id)?;
    match c.status() {
        Status::Created => c.start().map_err(Fail::from),
        Status::Running => Err(Fail::new("cannot start an already running container")),
        Status::Stopped => Err(Fail::new("cannot start a container that has stopped")),
        s => Err(Fail::new(format!(
            "cannot start a container in the {} state",
            status_str(s)
        ))),
    }
}

pub fn delete(g: &Global, argv: &[String]) -> Res {
    let p = args::parse(argv, &[flag(&["force", "f"])], true).map_err(Fail::new)?;
    let id = one_id("delete", &p.args)?;
    let force = p.is("force");
    let c = match g.root.load(id) {
        Ok(c) => c,
        Err(e) => {
            // A directory without state (a create that died before the library wrote it).
            let dir = g.root.dir(id);
            if store::validate_id(id).is_ok() && dir.is_dir() && !dir.join("state.json").exists() {
                let _ = std::fs::remove_dir_all(&dir);
                return Ok(());
            }
            return if force { Ok(()) } else { Err(e) };
        }
    };
    match c.status() {
        Status::Created | Status::Stopped => {}
        s if force => log_debug_status(id, s),
        s => {
            return Err(Fail::new(format!(
                "cannot delete container {id} that is not stopped: {}",
                status_str(s)
            )))
        }
    }
    // The library kills whatever is left in the cgroup (thawing it first).
    c.delete().map_err(Fail::from)
}

fn log_debug_status(id: &str, s: Status) {
    crate::log::debug(&format!(
        "delete --force {id}: killing a {} container",
        status_str(s)
    ));
}

pub fn kill(g: &Global, argv: &[String]) -> Res {
    let p = args::parse(argv, &[flag(&["all", "a"])], true).map_err(Fail::new)?;
    let (id, sig) =
        match p.args.as_slice() {
            [id] => (id, "SIGTERM"),
            [id, sig] => (id, sig.as_str()),
            _ => return Err(Fail::new(
                "lifecycle-runc: \"kill\" requires a minimum of 1 and a maximum of 2 argument(s)",
            )),
        };
    let c = g.root.load(id)?;
    let sig = parse_signal(sig)?;
    let all = p.is("all");
    if !all && c.status() == Status::Stopped {
        return Err(Fail::new("container not running"));
    }
    c.kill(sig, all).map_err(|e| match e {
        lifecycle_runtime::Error::NotRunning { .. } => Fail::new("container not running"),
        e => Fail::from(e),
    })
}

/// `pause` (`freeze`) and `resume`.
pub fn pause(g: &Global, argv: &[String], freeze: bool) -> Res {
    let command = if freeze { "pause" } else { "resume" };
    let p = args::parse(argv, &[], true).map_err(Fail::new)?;
    let id = one_id(command, &p.args)?;
    let c = g.root.load(id)?;
    let s = c.status();
    if freeze {
        if s != Status::Running {
            return Err(Fail::new("container not running"));
        }
        c.pause().map_err(Fail::from)
    } else {
        if s != Status::Paused {
            return Err(Fail::new("container not paused"));
        }
        c.resume().map_err(Fail::from)
    }
}
