//! The shim's tasks: what each Task RPC does to the process table and the runtime. The ttrpc
//! adaptor (service.rs) only converts requests and errors.
//!
//! Runtime calls block (they talk to helper processes), so they run on tokio's blocking pool;
//! the state locks are plain mutexes held only for short, non-async sections.
//!
//! Lifecycle hooks (`crate::lifecycle`, see docs/shim.md) take over the init's Start, Kill and
//! (while postStart runs) Delete when its annotations ask for a hook or a grace timer, and hear
//! of its exit in `process_exited`; annotations are parsed first thing in `create`.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime},
};

use containerd_shim_protos::{
    api::{CreateTaskRequest, ExecProcessRequest, StateResponse},
    events::task::{
        TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskIO, TaskPaused, TaskResumed,
        TaskStart,
    },
    protobuf::{well_known_types::any::Any, Message},
    shim::oci::ProcessDetails,
    types::task::ProcessInfo,
};
use lifecycle_runtime::{reaper, Container, CreateOptions};
use tokio::sync::Notify;

use crate::{
    errors::TaskError,
    events::{timestamp, Event, EventSink},
    io::{self, IoConfig, LoggerEnv},
    lifecycle::Hooks,
    mount, oom,
    process::{ExitInfo, ExitTable, Phase, Proc},
};

/// The runtime's state directory inside the bundle (containerd removes the bundle).
pub const STATE_DIR: &str = ".lifecycle";
const SIGKILL: i32 = libc::SIGKILL;
/// How long Delete of a never-started task waits for the killed init to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(10);

pub struct Task {
    pub id: String,
    pub bundle: PathBuf,
    pub container: Arc<Container>,
    pub init: Arc<Proc>,
    execs: Mutex<HashMap<String, Arc<Proc>>>,
    rootfs_mounted: bool,
    /// Lifecycle hooks and the grace timer of the init, if its annotations ask for any.
    hooks: Option<Arc<Hooks>>,
}

impl Task {
    fn execs(&self) -> MutexGuard<'_, HashMap<String, Arc<Proc>>> {
        self.execs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn process(&self, exec_id: &str) -> Result<Arc<Proc>, TaskError> {
        if exec_id.is_empty() {
            return Ok(self.init.clone());
        }
        self.execs()
            .get(exec_id)
            .cloned()
            .ok_or_else(|| TaskError::ProcessNotFound {
                id: self.id.clone(),
                exec_id: exec_id.to_owned(),
            })
    }
}

pub struct Shim {
    pub namespace: String,
    events: Arc<dyn EventSink>,
    tasks: Mutex<HashMap<String, Arc<Task>>>,
    exits: Mutex<ExitTable>,
    pub shutdown: Notify,
    /// The cgroup migration lock warm-up the server started (server.rs), ended by the first
    /// Create, which keeps it warm itself from then on.
    startup_warmup: Mutex<Option<lifecycle_runtime::Warmup>>,
}

async fn blocking<T: Send + 'static>(
    op: &'static str,
    f: impl FnOnce() -> Result<T, TaskError> + Send + 'static,
) -> Result<T, TaskError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|source| TaskError::Join { op, source })?
}

fn any_json_type(any: &Any) -> &str {
    any.type_url.rsplit('/').next().unwrap_or_default()
}

impl Shim {
    pub fn new(namespace: String, events: Arc<dyn EventSink>) -> Shim {
        Shim {
            namespace,
            events,
            tasks: Mutex::new(HashMap::new()),
            exits: Mutex::new(ExitTable::default()),
            shutdown: Notify::new(),
            startup_warmup: Mutex::new(None),
        }
    }

    /// Keeps `warmup` running until the first Create has created its container.
    pub fn hold_startup_warmup(&self, warmup: Option<lifecycle_runtime::Warmup>) {
        *self
            .startup_warmup
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = warmup;
    }

    fn tasks(&self) -> MutexGuard<'_, HashMap<String, Arc<Task>>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn exits(&self) -> MutexGuard<'_, ExitTable> {
        self.exits.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn task(&self, id: &str) -> Result<Arc<Task>, TaskError> {
        self.tasks()
            .get(id)
            .cloned()
            .ok_or_else(|| TaskError::TaskNotFound(id.to_owned()))
    }

    /// Some container's hook sequence (postStart, preStop and grace timer) is in progress.
    pub fn hooks_busy(&self) -> bool {
        self.tasks()
            .values()
            .any(|t| t.hooks.as_ref().is_some_and(|h| h.busy()))
    }

    pub fn task_count(&self) -> usize {
        self.tasks().len()
    }

    /// An exit from the reaper.
    pub fn handle_exit(self: &Arc<Self>, exit: reaper::Exit) {
        let info = ExitInfo {
            pid: exit.pid,
            status: exit.status as u32,
            signal: exit.signal,
            at: exit.at,
        };
        let Some(proc) = self.exits().claim(info) else {
            return;
        };
        self.process_exited(&proc, info);
    }

    fn process_exited(self: &Arc<Self>, proc: &Arc<Proc>, info: ExitInfo) {
        if !proc.set_exited(info, self.events.as_ref()) {
            return;
        }
        if proc.exec_id.is_empty() {
            // After TaskExit (published or held): a running hook is cancelled, a failed Start
            // is answered.
            if let Some(hooks) = self
                .task(&proc.container_id)
                .ok()
                .and_then(|t| t.hooks.clone())
            {
                hooks.init_exited(info.status);
            }
            // Without its own pid namespace the init's exit does not end the container's other
            // processes: kill them, as runc's shim does.
            if let Ok(task) = self.task(&proc.container_id) {
                let own_pidns = task
                    .container
                    .spec()
                    .linux()
                    .as_ref()
                    .and_then(|l| l.namespaces().as_ref())
                    .is_some_and(|ns| {
                        ns.iter().any(|n| {
                            n.typ() == oci_spec::runtime::LinuxNamespaceType::Pid
                                && n.path().is_none()
                        })
                    });
                if !own_pidns {
                    let container = task.container.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = container.kill(SIGKILL, true) {
                            log::debug!(
                                "killing the rest of {} after its init exited: {e}",
                                container.id()
                            );
                        }
                    });
                }
            }
        }
    }

    fn register(self: &Arc<Self>, pid: i32, proc: &Arc<Proc>, since: SystemTime) {
        proc.state().pid = pid;
        let early = self.exits().register(pid, proc.clone(), since);
        if let Some(exit) = early {
            self.process_exited(proc, exit);
        }
    }

    pub async fn create(self: &Arc<Self>, req: &CreateTaskRequest) -> Result<u32, TaskError> {
        let id = req.id.clone();
        if id.is_empty() {
            return Err(TaskError::InvalidArgument {
                what: "task id",
                detail: "empty".into(),
            });
        }
        if !req.checkpoint.is_empty() || !req.parent_checkpoint.is_empty() {
            return Err(TaskError::Unimplemented("restoring from a checkpoint"));
        }
        if self.tasks().contains_key(&id) {
            return Err(TaskError::TaskExists(id));
        }
        let bundle = PathBuf::from(&req.bundle);
        // Hook annotations first: a bad one fails Create before anything is mounted or created.
        let hook_config =
            lifecycle_hooks::HookConfig::from_annotations(&read_annotations(&bundle)?)?;
        let io_config = IoConfig {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let rootfs = req.rootfs.clone();
        let since = SystemTime::now();
        let namespace = self.namespace.clone();
        let (cid, b, cfg) = (id.clone(), bundle.clone(), io_config.clone());
        let created = blocking("create", move || {
            let target = b.join("rootfs");
            let mounted = mount::mount_rootfs(&rootfs, &target)?;
            let undo = |e: TaskError| {
                if mounted {
                    let _ = mount::unmount_all(&target);
                }
                e
            };
            let (stdio, mut handles, loggers) = io::open(
                &cfg,
                &LoggerEnv {
                    id: &cid,
                    namespace: &namespace,
                },
            )
            .map_err(|e| undo(e.into()))?;
            let created = Container::create(CreateOptions {
                id: cid.clone(),
                bundle: b.clone(),
                stdio,
                state_dir: b.join(STATE_DIR),
                hold: lifecycle_runtime::Hold::Caller,
            })
            .map_err(|e| undo(TaskError::runtime("create")(e)))?;
            if let Some(master) = created.console {
                if let Err(e) = io::attach_console(&cfg, master, &mut handles) {
                    let _ = created.container.delete();
                    return Err(undo(e.into()));
                }
            }
            Ok((created.container, handles, loggers, mounted))
        })
        .await;
        // Create's own warm-up has covered the join from here on (or the create failed).
        drop(
            self.startup_warmup
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        let (created, handles, loggers, mounted) = created?;
        let pid = created.init_pid();
        {
            let mut exits = self.exits();
            for l in loggers {
                exits.ignore(l as i32);
            }
        }
        let init = Proc::new(&id, "", io_config.clone(), None, Phase::Creating);
        *init.io() = handles;
        let container = Arc::new(created);
        let hooks = Hooks::new(
            self,
            hook_config,
            container.clone(),
            init.clone(),
            self.events.clone(),
            io_config.clone(),
        );
        let task = Arc::new(Task {
            id: id.clone(),
            bundle: bundle.clone(),
            container,
            init: init.clone(),
            execs: Mutex::new(HashMap::new()),
            rootfs_mounted: mounted,
            hooks,
        });
        let cgroups_path = task
            .container
            .spec()
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone());
        if let Err(e) = oom::watch(
            &id,
            cgroups_path.as_ref().and_then(|p| p.to_str()),
            self.events.clone(),
        ) {
            log::warn!("container {id}: OOM events will not be reported: {e}");
        }
        self.tasks().insert(id.clone(), task);
        self.register(pid, &init, since);

        let mut ev = TaskCreate::new();
        ev.container_id = id;
        ev.bundle = req.bundle.clone();
        ev.rootfs = req.rootfs.clone();
        let mut tio = TaskIO::new();
        tio.stdin = io_config.stdin;
        tio.stdout = io_config.stdout;
        tio.stderr = io_config.stderr;
        tio.terminal = io_config.terminal;
        ev.io = Some(tio).into();
        ev.pid = pid as u32;
        init.finish_phase(
            Phase::Created,
            Some(Event::Create(ev)),
            self.events.as_ref(),
        );
        Ok(pid as u32)
    }

    /// Moves a process from Created to Starting, or says why it cannot start.
    fn begin_start(proc: &Proc) -> Result<(), TaskError> {
        let mut st = proc.state();
        if st.exit.is_some() || st.phase != Phase::Created {
            return Err(TaskError::WrongState {
                id: proc.event_id().to_owned(),
                state: if st.phase == Phase::Starting {
                    "starting"
                } else {
                    st.status_name()
                },
                op: "start",
            });
        }
        st.phase = Phase::Starting;
        Ok(())
    }

    pub async fn start(self: &Arc<Self>, id: &str, exec_id: &str) -> Result<u32, TaskError> {
        self.start_with_deadline(id, exec_id, None).await
    }

    /// Start; `deadline` is when the caller gives up (the ttrpc timeout), which caps postStart.
    pub async fn start_with_deadline(
        self: &Arc<Self>,
        id: &str,
        exec_id: &str,
        deadline: Option<Instant>,
    ) -> Result<u32, TaskError> {
        let task = self.task(id)?;
        let proc = task.process(exec_id)?;
        Self::begin_start(&proc)?;
        if let (true, Some(hooks)) = (exec_id.is_empty(), task.hooks.as_ref()) {
            // The hook machinery finishes the Start phase itself (the RPC may be dropped).
            let outcome = match hooks.start(deadline) {
                Ok(rx) => rx
                    .await
                    .unwrap_or(Err(TaskError::Unimplemented("start without an answer"))),
                Err(e) => {
                    proc.finish_phase(Phase::Created, None, self.events.as_ref());
                    Err(e)
                }
            };
            return outcome.map(|()| proc.state().pid as u32);
        }
        if exec_id.is_empty() {
            let container = task.container.clone();
            if let Err(e) = blocking("start", move || {
                container.start().map_err(TaskError::runtime("start"))
            })
            .await
            {
                proc.finish_phase(Phase::Created, None, self.events.as_ref());
                return Err(e);
            }
            let pid = proc.state().pid;
            let mut ev = TaskStart::new();
            ev.container_id = id.to_owned();
            ev.pid = pid as u32;
            proc.finish_phase(Phase::Started, Some(Event::Start(ev)), self.events.as_ref());
            return Ok(pid as u32);
        }

        let Some(spec) = proc.spec.clone() else {
            return Err(TaskError::InvalidArgument {
                what: "exec",
                detail: "no process spec".into(),
            });
        };
        let since = SystemTime::now();
        let container = task.container.clone();
        let cfg = proc.io_config.clone();
        let namespace = self.namespace.clone();
        let cid = id.to_owned();
        let spawned = blocking("exec", move || {
            let (stdio, mut handles, loggers) = io::open(
                &cfg,
                &LoggerEnv {
                    id: &cid,
                    namespace: &namespace,
                },
            )?;
            let spawned = container
                .exec(&spec, stdio)
                .map_err(TaskError::runtime("exec"))?;
            if let Some(master) = spawned.console {
                io::attach_console(&cfg, master, &mut handles)?;
            }
            Ok((spawned.pid, handles, loggers))
        })
        .await;
        let (pid, handles, loggers) = match spawned {
            Ok(s) => s,
            Err(e) => {
                proc.finish_phase(Phase::Created, None, self.events.as_ref());
                return Err(e);
            }
        };
        {
            let mut exits = self.exits();
            for l in loggers {
                exits.ignore(l as i32);
            }
        }
        *proc.io() = handles;
        self.register(pid, &proc, since);
        let mut ev = TaskExecStarted::new();
        ev.container_id = id.to_owned();
        ev.exec_id = exec_id.to_owned();
        ev.pid = pid as u32;
        proc.finish_phase(
            Phase::Started,
            Some(Event::ExecStarted(ev)),
            self.events.as_ref(),
        );
        Ok(pid as u32)
    }

    pub fn state(&self, id: &str, exec_id: &str) -> Result<StateResponse, TaskError> {
        let task = self.task(id)?;
        let proc = task.process(exec_id)?;
        let st = proc.state();
        let mut r = StateResponse::new();
        r.id = proc.event_id().to_owned();
        r.bundle = task.bundle.display().to_string();
        r.pid = st.pid.max(0) as u32;
        r.status = st.status().into();
        r.stdin = proc.io_config.stdin.clone();
        r.stdout = proc.io_config.stdout.clone();
        r.stderr = proc.io_config.stderr.clone();
        r.terminal = proc.io_config.terminal;
        if let Some(exit) = st.exit {
            r.exit_status = exit.status;
            r.exited_at = Some(timestamp(exit.at)).into();
        }
        r.exec_id = exec_id.to_owned();
        Ok(r)
    }

    pub async fn kill(
        self: &Arc<Self>,
        id: &str,
        exec_id: &str,
        signal: u32,
        all: bool,
    ) -> Result<(), TaskError> {
        let task = self.task(id)?;
        let proc = task.process(exec_id)?;
        let signal = i32::try_from(signal)
            .ok()
            .filter(|s| (1..=64).contains(s))
            .ok_or_else(|| TaskError::InvalidArgument {
                what: "signal",
                detail: format!("{signal} is not 1-64"),
            })?;
        let pid = {
            let st = proc.state();
            if st.exit.is_some() {
                return Err(TaskError::ProcessExited(proc.event_id().to_owned()));
            }
            st.pid
        };
        if let (true, Some(hooks)) = (exec_id.is_empty(), task.hooks.as_ref()) {
            let thaw = signal == SIGKILL && task.init.state().paused;
            hooks.kill(signal, all).await?;
            if thaw {
                let container = task.container.clone();
                blocking("resume", move || {
                    container
                        .resume()
                        .map_err(TaskError::runtime("resume after SIGKILL"))
                })
                .await?;
                task.init.state().paused = false;
            }
            return Ok(());
        }
        if exec_id.is_empty() {
            // A frozen (cgroup v1) process does not die of SIGKILL until thawed: thaw after
            // the signal, as runc does, so the kill takes effect at once.
            let thaw = signal == SIGKILL && task.init.state().paused;
            let container = task.container.clone();
            blocking("kill", move || {
                container
                    .kill(signal, all)
                    .map_err(TaskError::runtime("kill"))?;
                if thaw {
                    container
                        .resume()
                        .map_err(TaskError::runtime("resume after SIGKILL"))?;
                }
                Ok(())
            })
            .await?;
            if thaw {
                task.init.state().paused = false;
            }
            return Ok(());
        }
        if pid <= 0 {
            return Err(TaskError::WrongState {
                id: exec_id.to_owned(),
                state: "created",
                op: "kill",
            });
        }
        // The pid cannot be reused while unreaped, and it is reaped only through our table.
        let sig =
            nix::sys::signal::Signal::try_from(signal).map_err(|_| TaskError::InvalidArgument {
                what: "signal",
                detail: format!("{signal} is unknown"),
            })?;
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig) {
            Ok(()) => Ok(()),
            Err(nix::Error::ESRCH) => Err(TaskError::ProcessExited(exec_id.to_owned())),
            Err(source) => Err(TaskError::Sys { op: "kill", source }),
        }
    }

    pub async fn wait(&self, id: &str, exec_id: &str) -> Result<ExitInfo, TaskError> {
        let proc = self.task(id)?.process(exec_id)?;
        Ok(proc.wait().await)
    }

    pub async fn delete(self: &Arc<Self>, id: &str, exec_id: &str) -> Result<ExitInfo, TaskError> {
        let task = self.task(id)?;
        let proc = task.process(exec_id)?;
        let (status, pid, exit) = {
            let st = proc.state();
            (st.status(), st.pid, st.exit)
        };
        if !exec_id.is_empty() {
            if exit.is_none() && pid > 0 {
                return Err(TaskError::WrongState {
                    id: exec_id.to_owned(),
                    state: "running",
                    op: "delete",
                });
            }
            task.execs().remove(exec_id);
            return Ok(exit.unwrap_or(ExitInfo {
                pid,
                status: 0,
                signal: None,
                at: SystemTime::now(),
            }));
        }
        let cancelled = match (&exit, &task.hooks) {
            (None, Some(hooks)) => hooks.delete().await,
            _ => false,
        };
        let exit = match exit {
            Some(e) => e,
            // A running postStart was cancelled and the container is being killed.
            None if cancelled => match tokio::time::timeout(KILL_WAIT, proc.wait()).await {
                Ok(e) => e,
                Err(_) => {
                    return Err(TaskError::WrongState {
                        id: id.to_owned(),
                        state: "running",
                        op: "delete",
                    })
                }
            },
            None if status == containerd_shim_protos::types::task::Status::CREATED => {
                // Never started: kill the held init and wait for its reaping, so TaskExit still
                // comes before TaskDelete.
                let container = task.container.clone();
                blocking("kill", move || {
                    container
                        .kill(SIGKILL, true)
                        .map_err(TaskError::runtime("kill"))
                })
                .await?;
                match tokio::time::timeout(KILL_WAIT, proc.wait()).await {
                    Ok(e) => e,
                    Err(_) => ExitInfo {
                        pid,
                        status: 128 + SIGKILL as u32,
                        signal: Some(SIGKILL),
                        at: SystemTime::now(),
                    },
                }
            }
            None => {
                return Err(TaskError::WrongState {
                    id: id.to_owned(),
                    state: proc.state().status_name(),
                    op: "delete",
                })
            }
        };
        let container = task.container.clone();
        let rootfs = task.bundle.join("rootfs");
        let mounted = task.rootfs_mounted;
        blocking("delete", move || {
            container.delete().map_err(TaskError::runtime("delete"))?;
            if mounted {
                mount::unmount_all(&rootfs)?;
            }
            Ok(())
        })
        .await?;
        *proc.io() = Default::default();
        for p in task.execs().values() {
            *p.io() = Default::default();
        }
        proc.release_held_exit(self.events.as_ref());
        self.tasks().remove(id);
        self.exits().forget(pid);
        let mut ev = TaskDelete::new();
        ev.container_id = id.to_owned();
        ev.id = id.to_owned();
        ev.pid = exit.pid as u32;
        ev.exit_status = exit.status;
        ev.exited_at = Some(timestamp(exit.at)).into();
        self.events.publish(Event::Delete(ev));
        Ok(exit)
    }

    pub fn exec(&self, req: &ExecProcessRequest) -> Result<(), TaskError> {
        let task = self.task(&req.id)?;
        if req.exec_id.is_empty() {
            return Err(TaskError::InvalidArgument {
                what: "exec id",
                detail: "empty".into(),
            });
        }
        if task.init.state().exit.is_some() {
            return Err(TaskError::WrongState {
                id: req.id.clone(),
                state: "stopped",
                op: "exec in it",
            });
        }
        let any = req.spec.as_ref().ok_or(TaskError::InvalidArgument {
            what: "exec spec",
            detail: "missing".into(),
        })?;
        let spec: oci_spec::runtime::Process =
            serde_json::from_slice(&any.value).map_err(|e| TaskError::InvalidArgument {
                what: "exec spec",
                detail: format!("{} is not a process spec: {e}", any_json_type(any)),
            })?;
        let io_config = IoConfig {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let proc = Proc::new(&req.id, &req.exec_id, io_config, Some(spec), Phase::Created);
        {
            let mut execs = task.execs();
            if execs.contains_key(&req.exec_id) {
                return Err(TaskError::ExecExists {
                    id: req.id.clone(),
                    exec_id: req.exec_id.clone(),
                });
            }
            execs.insert(req.exec_id.clone(), proc);
        }
        let mut ev = TaskExecAdded::new();
        ev.container_id = req.id.clone();
        ev.exec_id = req.exec_id.clone();
        self.events.publish(Event::ExecAdded(ev));
        Ok(())
    }

    pub fn resize_pty(
        &self,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<(), TaskError> {
        let proc = self.task(id)?.process(exec_id)?;
        let io = proc.io();
        io.resize(width, height)?;
        Ok(())
    }

    pub fn close_io(&self, id: &str, exec_id: &str) -> Result<(), TaskError> {
        let proc = self.task(id)?.process(exec_id)?;
        proc.io().close_stdin();
        Ok(())
    }

    pub async fn pids(&self, id: &str) -> Result<Vec<ProcessInfo>, TaskError> {
        let task = self.task(id)?;
        let container = task.container.clone();
        let pids = blocking("pids", move || {
            container.pids().map_err(TaskError::runtime("pids"))
        })
        .await?;
        let execs: HashMap<i32, String> = task
            .execs()
            .values()
            .filter_map(|p| {
                let pid = p.state().pid;
                (pid > 0).then(|| (pid, p.exec_id.clone()))
            })
            .collect();
        let mut out = Vec::with_capacity(pids.len());
        for pid in pids {
            let mut info = ProcessInfo::new();
            info.pid = pid as u32;
            if let Some(exec_id) = execs.get(&pid) {
                let mut d = ProcessDetails::new();
                d.exec_id = exec_id.clone();
                let mut any = Any::new();
                any.type_url = "containerd.runc.v1.ProcessDetails".into();
                any.value = d.write_to_bytes().unwrap_or_default();
                info.info = Some(any).into();
            }
            out.push(info);
        }
        Ok(out)
    }

    pub async fn pause(self: &Arc<Self>, id: &str) -> Result<(), TaskError> {
        self.set_paused(id, true).await
    }

    pub async fn resume(self: &Arc<Self>, id: &str) -> Result<(), TaskError> {
        self.set_paused(id, false).await
    }

    async fn set_paused(self: &Arc<Self>, id: &str, pause: bool) -> Result<(), TaskError> {
        let task = self.task(id)?;
        {
            let st = task.init.state();
            let ok = st.exit.is_none() && st.phase == Phase::Started && st.paused != pause;
            if !ok {
                return Err(TaskError::WrongState {
                    id: id.to_owned(),
                    state: st.status_name(),
                    op: if pause { "pause" } else { "resume" },
                });
            }
        }
        let container = task.container.clone();
        if pause {
            blocking("pause", move || {
                container.pause().map_err(TaskError::runtime("pause"))
            })
            .await?;
        } else {
            blocking("resume", move || {
                container.resume().map_err(TaskError::runtime("resume"))
            })
            .await?;
        }
        let mut st = task.init.state();
        if st.exit.is_none() {
            st.paused = pause;
        }
        let event = if pause {
            let mut e = TaskPaused::new();
            e.container_id = id.to_owned();
            Event::Paused(e)
        } else {
            let mut e = TaskResumed::new();
            e.container_id = id.to_owned();
            Event::Resumed(e)
        };
        self.events.publish(event);
        Ok(())
    }

    pub async fn update(&self, id: &str, resources: Option<&Any>) -> Result<(), TaskError> {
        let task = self.task(id)?;
        let any = resources.ok_or(TaskError::InvalidArgument {
            what: "resources",
            detail: "missing".into(),
        })?;
        let res: oci_spec::runtime::LinuxResources =
            serde_json::from_slice(&any.value).map_err(|e| TaskError::InvalidArgument {
                what: "resources",
                detail: format!("{} is not LinuxResources: {e}", any_json_type(any)),
            })?;
        let container = task.container.clone();
        blocking("update", move || {
            container.update(&res).map_err(TaskError::runtime("update"))
        })
        .await
    }

    /// Registers a hook process with the exit table (its exit goes to `tx`, never to events).
    pub(crate) fn watch_hook(
        &self,
        pid: i32,
        since: SystemTime,
        tx: tokio::sync::oneshot::Sender<ExitInfo>,
    ) {
        self.exits().watch_hook(pid, since, tx);
    }

    pub fn init_pid(&self, id: &str) -> Result<u32, TaskError> {
        Ok(self.task(id)?.init.state().pid.max(0) as u32)
    }

    /// The container's cgroup path from its spec, for Stats.
    pub fn cgroups_path(&self, id: &str) -> Result<Option<String>, TaskError> {
        let task = self.task(id)?;
        let path = task
            .container
            .spec()
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone());
        Ok(path.map(|p| p.display().to_string()))
    }
}

/// The annotations of the bundle's config.json, read before anything is set up (the runtime
/// reads the whole spec later). A missing or unreadable spec is left to the runtime to report.
fn read_annotations(bundle: &std::path::Path) -> Result<HashMap<String, String>, TaskError> {
    #[derive(serde::Deserialize)]
    struct Annotated {
        #[serde(default)]
        annotations: Option<HashMap<String, String>>,
    }
    let Ok(bytes) = std::fs::read(bundle.join("config.json")) else {
        return Ok(HashMap::new());
    };
    match serde_json::from_slice::<Annotated>(&bytes) {
        Ok(a) => Ok(a.annotations.unwrap_or_default()),
        Err(e) => Err(TaskError::InvalidArgument {
            what: "spec annotations",
            detail: e.to_string(),
        }),
    }
}
