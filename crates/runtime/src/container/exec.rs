//! exec: a new process inside the container, a child of the caller.

use oci_spec::runtime::Process;

use super::{Container, Spawned, Status, Stdio};
use crate::{
    channel::{FromHelper, ToHelper},
    error::Error,
    exe,
    helper::{ExecConfig, HelperRequest},
    process,
};

impl Container {
    /// Starts `process` in the container's namespaces and cgroup, with its user, capabilities,
    /// no_new_privs, the container's seccomp filter, env, cwd, rlimits and terminal. Works while
    /// the init is held (created) or running. Returns after the process exec'd; the caller
    /// reaps it (subscribe to the reaper before calling).
    pub fn exec(&self, process: &Process, stdio: Stdio) -> Result<Spawned, Error> {
        process::validate(process).map_err(Error::InvalidSpec)?;
        // As in create: the helper joins the container's cgroup (cgroups/warm.rs).
        let _warm = crate::cgroups::warm::warm_migration(super::create::WARMUP_MAX);
        match self.status() {
            Status::Stopped => {
                return Err(Error::NotRunning {
                    id: self.id.clone(),
                    pid: self.init_pid,
                })
            }
            Status::Paused => {
                return Err(Error::State {
                    id: self.id.clone(),
                    what: "cannot exec in a paused container".into(),
                })
            }
            _ => {}
        }
        let cfg = ExecConfig {
            init_pid: self.init_pid,
            init_start_time: self.init_start_time,
            process: process.clone(),
            seccomp: self.spec.linux().as_ref().and_then(|l| l.seccomp().clone()),
            cgroup_procs: self.cgroup.procs_files(),
            setgroups: setgroups_allowed(self.init_pid),
        };
        let helper = exe::spawn_helper(stdio)?;
        let chan = helper.chan;
        chan.send(&ToHelper::Request(Box::new(HelperRequest::Exec(Box::new(
            cfg,
        )))))
        .map_err(|e| Error::io("send the exec request to the helper", e))?;
        let mut pid = 0;
        let mut console = None;
        loop {
            match chan
                .recv()
                .map_err(|e| Error::io("read from the exec helper", e))?
            {
                Some((FromHelper::Pid(p), _)) => pid = p,
                Some((FromHelper::Console, fd)) => console = fd,
                Some((FromHelper::Failed(e), _)) => return Err(e.into()),
                Some((other, _)) => {
                    return Err(Error::Protocol(format!(
                        "unexpected message from the exec helper: {other:?}"
                    )))
                }
                // EOF: the helper exited and the process exec'd.
                None if pid > 0 => return Ok(Spawned { pid, console }),
                None => {
                    return Err(Error::Protocol(format!(
                        "the exec helper (pid {}) exited without reporting",
                        helper.pid
                    )))
                }
            }
        }
    }
}

fn setgroups_allowed(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/setgroups"))
        .map(|s| s.trim() != "deny")
        .unwrap_or(true)
}
