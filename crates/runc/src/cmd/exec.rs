//! exec: a new process in a running (or created) container. Failures exit 255, as runc.

use lifecycle_runtime::{reaper, Status};
use oci_spec::runtime::Process;
use serde_json::{json, Value};

use super::{attach_console, wait_foreground};
use crate::{
    args::{self, flag, opt, Flag},
    store, tty, Fail, Global, Res,
};

const FLAGS: &[Flag] = &[
    opt(&["console-socket"]),
    opt(&["cwd"]),
    opt(&["env", "e"]),
    flag(&["tty", "t"]),
    opt(&["user", "u"]),
    opt(&["additional-gids", "g"]),
    opt(&["process", "p"]),
    flag(&["detach", "d"]),
    opt(&["pid-file"]),
    opt(&["process-label"]),
    opt(&["apparmor"]),
    flag(&["no-new-privs"]),
    opt(&["cap", "c"]),
    opt(&["preserve-fds"]),
    opt(&["cgroup"]),
    flag(&["ignore-paused"]),
];

pub fn exec(g: &Global, argv: &[String]) -> Res {
    exec_inner(g, argv).map_err(|f| f.context("exec failed").code(255))
}

fn exec_inner(g: &Global, argv: &[String]) -> Res {
    let p = args::parse(argv, FLAGS, false).map_err(Fail::new)?;
    let Some((id, cmd)) = p.args.split_first() else {
        return Err(Fail::new(
            "lifecycle-runc: \"exec\" requires a minimum of 1 argument(s)",
        ));
    };
    for (f, what) in [("cgroup", "--cgroup"), ("ignore-paused", "--ignore-paused")] {
        if p.get(f).is_some_and(|v| v != "false") {
            return Err(Fail::new(format!("{what} is not supported")));
        }
    }
    if p.get("preserve-fds").is_some_and(|n| n != "0") {
        return Err(Fail::new("--preserve-fds is not supported"));
    }
    let c = g.root.load(id)?;
    match c.status() {
        Status::Stopped => return Err(Fail::new("cannot exec in a stopped container")),
        Status::Paused => return Err(Fail::new("cannot exec in a paused container")),
        _ => {}
    }
    let process = build_process(&p, cmd, c.spec().process().as_ref())?;
    let terminal = process.terminal().unwrap_or(false);
    let detach = p.is("detach");
    let sock = tty::console_socket(terminal, detach, p.get("console-socket"))?;
    if !detach {
        tty::block_signals();
    }
    let sub = reaper::subscribe();
    let spawned = c.exec(&process, tty::own_stdio())?;
    let relay = attach_console(spawned.console, sock.as_ref())?;
    if let Some(path) = p.get("pid-file") {
        store::write_pid_file(path, spawned.pid)?;
    }
    if detach {
        return Ok(());
    }
    let status = wait_foreground(spawned.pid, relay, &sub);
    std::process::exit(status);
}

/// `--process FILE`, or the container's own process with runc's overrides: args, `--tty`,
/// `--env` appended, `--cwd`, `--user uid[:gid]`, `--additional-gids`, `--cap` added to the
/// bounding, effective and permitted sets, `--no-new-privs`, `--apparmor`, `--process-label`.
fn build_process(
    p: &args::Parsed,
    cmd: &[String],
    base: Option<&Process>,
) -> Result<Process, Fail> {
    let mut v: Value = match p.get("process") {
        Some(path) => {
            let data = std::fs::read(path).map_err(|e| Fail::new(format!("open {path}: {e}")))?;
            serde_json::from_slice(&data).map_err(|e| Fail::new(format!("parse {path}: {e}")))?
        }
        None => {
            if cmd.is_empty() {
                return Err(Fail::new("exec args cannot be empty"));
            }
            let mut v = serde_json::to_value(base.cloned().unwrap_or_default())
                .map_err(|e| Fail::new(format!("container process: {e}")))?;
            v["args"] = json!(cmd);
            v["terminal"] = json!(false);
            v
        }
    };
    if p.get("tty").is_some() {
        v["terminal"] = json!(p.is("tty"));
    }
    let env = p.all("env");
    if !env.is_empty() {
        let mut all: Vec<Value> = v["env"].as_array().cloned().unwrap_or_default();
        all.extend(env.into_iter().map(Value::String));
        v["env"] = Value::Array(all);
    }
    if let Some(cwd) = p.get("cwd") {
        v["cwd"] = json!(cwd);
    }
    if let Some(u) = p.get("user") {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (u, None),
        };
        let num = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| Fail::new(format!("parsing {s} as int for uid/gid failed")))
        };
        v["user"]["uid"] = json!(num(uid)?);
        if let Some(g) = gid {
            v["user"]["gid"] = json!(num(g)?);
        }
    }
    let gids = p.all("additional-gids");
    if !gids.is_empty() {
        let mut all: Vec<Value> = v["user"]["additionalGids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for g in gids {
            all.push(json!(g.parse::<u32>().map_err(|_| Fail::new(format!(
                "invalid additional gid {g:?}"
            )))?));
        }
        v["user"]["additionalGids"] = Value::Array(all);
    }
    for cap in p.all("cap") {
        for set in ["bounding", "effective", "permitted"] {
            let mut list: Vec<Value> = v["capabilities"][set]
                .as_array()
                .cloned()
                .unwrap_or_default();
            list.push(json!(cap));
            v["capabilities"][set] = Value::Array(list);
        }
    }
    if p.is("no-new-privs") {
        v["noNewPrivileges"] = json!(true);
    }
    if let Some(a) = p.get("apparmor") {
        v["apparmorProfile"] = json!(a);
    }
    if let Some(l) = p.get("process-label") {
        v["selinuxLabel"] = json!(l);
    }
    serde_json::from_value(v).map_err(|e| Fail::new(format!("process: {e}")))
}
