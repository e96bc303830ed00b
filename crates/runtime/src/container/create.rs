//! create: spec checks, cgroup, helper, init held before the entrypoint.

use std::{
    fs,
    os::fd::{AsFd, FromRawFd, OwnedFd},
    path::Path,
    sync::Mutex,
};

use oci_spec::runtime::Spec;

use super::{Container, CreateOptions, Created, Hold};
use crate::{
    cgroups::{self, Cgroup},
    channel::{FromHelper, ToHelper},
    error::Error,
    exe,
    helper::{CreateConfig, HelperRequest},
    hooks,
    rootfs::CgroupMount,
    state::{self, State, STATE_VERSION},
    validate,
};

/// Longest a create or exec keeps the cgroup migration lock warm (it stops when they return).
pub(crate) const WARMUP_MAX: std::time::Duration = std::time::Duration::from_secs(1);

impl Container {
    /// Creates the container: the init is a child of the calling process, held before the
    /// entrypoint until [`Container::start`]. On error nothing is left behind.
    pub fn create(opts: CreateOptions) -> Result<Created, Error> {
        // The helper's cgroup join would otherwise wait for an RCU grace period (cgroups/warm.rs).
        let _warm = cgroups::warm::warm_migration(WARMUP_MAX);
        if opts.id.is_empty() || opts.id.contains('/') || opts.id == "." || opts.id == ".." {
            return Err(Error::InvalidSpec(format!(
                "container id {:?} must be a non-empty name without '/'",
                opts.id
            )));
        }
        let bundle = fs::canonicalize(&opts.bundle)
            .map_err(|e| Error::io(format!("bundle {}", opts.bundle.display()), e))?;
        let spec = load_spec(&bundle)?;
        validate::spec(&spec)?;
        let root = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_default();
        let rootfs_in = if root.is_absolute() {
            root.clone()
        } else {
            bundle.join(&root)
        };
        let rootfs = fs::canonicalize(&rootfs_in).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::InvalidSpec(format!("root.path {} does not exist", rootfs_in.display()))
            }
            _ => Error::io(format!("root.path {}", rootfs_in.display()), e),
        })?;
        if !rootfs.is_dir() {
            return Err(Error::InvalidSpec(format!(
                "root.path {} is not a directory",
                rootfs.display()
            )));
        }
        let linux = spec
            .linux()
            .clone()
            .ok_or_else(|| Error::InvalidSpec("linux is required".into()))?;
        let cg_path = cgroups::parse_path(linux.cgroups_path().as_deref(), &opts.id)?;
        let cgroup = Cgroup::for_host(&cg_path)?;
        if !cgroup.pids()?.is_empty() {
            return Err(Error::InvalidSpec(format!(
                "linux.cgroupsPath {cg_path} already has processes"
            )));
        }

        fs::create_dir_all(&opts.state_dir)
            .map_err(|e| Error::io(format!("create state dir {}", opts.state_dir.display()), e))?;
        if opts.state_dir.join(state::STATE_FILE).exists() {
            return Err(Error::State {
                id: opts.id.clone(),
                what: format!("state already exists in {}", opts.state_dir.display()),
            });
        }
        let mut st = State {
            version: STATE_VERSION,
            id: opts.id.clone(),
            bundle: bundle.clone(),
            init_pid: 0,
            init_start_time: 0,
            cgroup: cgroup.clone(),
            spec,
            exec_fifo: opts.hold == Hold::ExecFifo,
        };
        // Written before anything exists, so a crash mid-create can still be cleaned up.
        st.write(&opts.state_dir)?;

        let cleanup = |e: Error| -> Error {
            if let Err(ce) = cgroup.destroy() {
                log::warn!("container {}: cleanup after failed create: {ce}", opts.id);
            }
            let _ = fs::remove_dir_all(&opts.state_dir);
            e
        };
        let result = (|| {
            let mut resources = linux.resources().clone().unwrap_or_default();
            let devices = linux.devices().clone().unwrap_or_default();
            resources.set_devices(Some(cgroups::device_rules(
                linux.resources().as_ref(),
                &devices,
            )));
            cgroup.create(Some(&resources))?;
            let fifo = match opts.hold {
                Hold::Caller => None,
                Hold::ExecFifo => Some(make_exec_fifo(&opts.state_dir)?),
            };
            spawn_init(&opts, &bundle, &rootfs, &cgroup, &st.spec, fifo)
        })();
        let (pid, console, chan) = match result {
            Ok(v) => v,
            Err(e) => return Err(cleanup(e)),
        };
        st.init_pid = pid;
        st.init_start_time = match state::start_time(pid) {
            Some(t) => t,
            None => {
                return Err(cleanup(Error::Setup {
                    step: "ready".into(),
                    message: format!("container init {pid} exited during create"),
                    source: None,
                }))
            }
        };
        if let Err(e) = st.write(&opts.state_dir) {
            return Err(cleanup(e));
        }
        // An exec.fifo init no longer listens on the channel: closing it changes nothing.
        let held = match opts.hold {
            Hold::Caller => Some(chan),
            Hold::ExecFifo => None,
        };
        let container = Container {
            id: opts.id.clone(),
            bundle,
            state_dir: opts.state_dir.clone(),
            spec: st.spec,
            init_pid: pid,
            init_start_time: st.init_start_time,
            cgroup,
            held: Mutex::new(held),
            exec_fifo: st.exec_fifo,
        };
        Ok(Created { container, console })
    }
}

type Spawn = (i32, Option<OwnedFd>, crate::channel::CallerEnd);

/// `<state_dir>/exec.fifo`, writable by anyone (the container's root may be an unprivileged
/// host uid in a user namespace; the state directory's own mode guards the path), and an
/// `O_PATH` handle on it for the init, which reopens it for writing through /proc/self/fd once
/// it is inside the container (runc's pattern).
fn make_exec_fifo(state_dir: &Path) -> Result<OwnedFd, Error> {
    use std::os::unix::{ffi::OsStrExt, fs::PermissionsExt};
    let path = state_dir.join(state::EXEC_FIFO);
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidSpec(format!("state dir {} has a NUL", state_dir.display())))?;
    // SAFETY: mkfifo with a valid C string.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o622) } != 0 {
        return Err(Error::io(
            format!("mkfifo {}", path.display()),
            std::io::Error::last_os_error(),
        ));
    }
    // mkfifo applied the umask.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o622))
        .map_err(|e| Error::io(format!("chmod {}", path.display()), e))?;
    // SAFETY: open with a valid C string; the result is checked.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Error::io(
            format!("open {}", path.display()),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: a fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn spawn_init(
    opts: &CreateOptions,
    bundle: &Path,
    rootfs: &Path,
    cgroup: &Cgroup,
    spec: &Spec,
    exec_fifo: Option<OwnedFd>,
) -> Result<Spawn, Error> {
    let stdio = super::Stdio {
        stdin: opts
            .stdio
            .stdin
            .as_ref()
            .map(|f| f.try_clone())
            .transpose()
            .map_err(|e| Error::io("dup stdin", e))?,
        stdout: opts
            .stdio
            .stdout
            .as_ref()
            .map(|f| f.try_clone())
            .transpose()
            .map_err(|e| Error::io("dup stdout", e))?,
        stderr: opts
            .stdio
            .stderr
            .as_ref()
            .map(|f| f.try_clone())
            .transpose()
            .map_err(|e| Error::io("dup stderr", e))?,
    };
    let hooks = spec.hooks().as_ref();
    #[allow(deprecated)]
    let prestart = hooks.and_then(|h| h.prestart().clone()).unwrap_or_default();
    let create_runtime = hooks
        .and_then(|h| h.create_runtime().clone())
        .unwrap_or_default();
    let cfg = CreateConfig {
        id: opts.id.clone(),
        bundle: bundle.to_owned(),
        rootfs: rootfs.to_owned(),
        spec: spec.clone(),
        cgroup_procs: cgroup.procs_files(),
        cgroup_mounts: cgroup_mounts(cgroup),
        runtime_hooks: !prestart.is_empty() || !create_runtime.is_empty(),
        exec_fifo: exec_fifo.is_some(),
    };
    let helper = exe::spawn_helper(stdio)?;
    let chan = helper.chan;
    // The exec.fifo handle travels with the request (SCM_RIGHTS): the init cannot reach the
    // state directory by path once inside the container.
    chan.send_with_fd(
        &ToHelper::Request(Box::new(HelperRequest::Create(Box::new(cfg)))),
        exec_fifo.as_ref().map(|f| f.as_fd()),
    )
    .map_err(|e| Error::io("send the create request to the helper", e))?;
    drop(exec_fifo);
    let mut pid = 0;
    let mut console = None;
    loop {
        let msg = chan
            .recv()
            .map_err(|e| Error::io("read from the create helper", e))?;
        match msg {
            Some((FromHelper::Pid(p), _)) => pid = p,
            Some((FromHelper::Console, fd)) => {
                console =
                    Some(fd.ok_or_else(|| {
                        Error::Protocol("console message without a pty fd".into())
                    })?);
            }
            Some((FromHelper::RunHooks, _)) => {
                let empty = Default::default();
                let state = serde_json::to_vec(&hooks::HookState {
                    oci_version: spec.version(),
                    id: &opts.id,
                    status: "creating",
                    pid,
                    bundle,
                    annotations: spec.annotations().as_ref().unwrap_or(&empty),
                })
                .unwrap_or_default();
                hooks::run_in_caller("prestart", &prestart, &state)?;
                hooks::run_in_caller("createRuntime", &create_runtime, &state)?;
                chan.send(&ToHelper::HooksDone)
                    .map_err(|e| Error::io("resume the init after hooks", e))?;
            }
            Some((FromHelper::Ready, _)) if pid > 0 => return Ok((pid, console, chan)),
            Some((FromHelper::Failed(e), _)) => return Err(e.into()),
            Some((other, _)) => {
                return Err(Error::Protocol(format!(
                    "unexpected message from the create helper: {other:?}"
                )))
            }
            None => {
                return Err(Error::Protocol(format!(
                    "the create helper (pid {}) exited without reporting",
                    helper.pid
                )))
            }
        }
    }
}

/// What the init binds at the spec's cgroup mount: the container's own cgroup directory per
/// hierarchy.
fn cgroup_mounts(cgroup: &Cgroup) -> Vec<CgroupMount> {
    match cgroup {
        Cgroup::V1(v1) => v1
            .hierarchies
            .iter()
            .filter(|h| !h.controllers.iter().any(|c| c == cgroups::v1::HYBRID_V2))
            .map(|h| CgroupMount {
                name: h
                    .mountpoint
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                host_dir: h.mountpoint.join(v1.path.trim_start_matches('/')),
            })
            .collect(),
        Cgroup::V2(v2) => vec![CgroupMount {
            name: String::new(),
            host_dir: v2.dir(),
        }],
    }
}

/// Parses `<bundle>/config.json`, naming the field a bad value is in (oci-spec's own loader
/// names only the value and a line and column).
fn load_spec(bundle: &Path) -> Result<Spec, Error> {
    let path = bundle.join("config.json");
    let data = fs::read(&path).map_err(|e| Error::io(path.display().to_string(), e))?;
    let de = &mut serde_json::Deserializer::from_slice(&data);
    serde_path_to_error::deserialize(de).map_err(|e| Error::Spec {
        bundle: bundle.to_path_buf(),
        field: e.path().to_string(),
        source: e.into_inner(),
    })
}
