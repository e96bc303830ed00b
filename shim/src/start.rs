//! The `start` action: find or create the shim's socket, spawn the long-lived server on it, and
//! tell containerd where it is. Runs on every container's critical path, so it is plain blocking
//! code: no async runtime, no threads (the server is this process forked, which is only sound
//! in a single-threaded process).

use std::{
    collections::HashMap,
    fs,
    io::{self, ErrorKind, Read},
    os::{
        fd::AsRawFd,
        unix::{
            fs::PermissionsExt,
            net::{UnixListener, UnixStream},
        },
    },
    path::{Path, PathBuf},
};

use containerd_shim_protos::{
    bootstrap_api::{BootstrapParams, BootstrapResult, LogLevel},
    protobuf::{well_known_types::any::Any, Message},
    shim::oci::Options as RuncOptions,
};

use crate::{flags::Flags, sha256};

/// Where containerd (before 2.3's `socket_dir`) expects shim sockets.
pub const DEFAULT_SOCKET_DIR: &str = "/run/containerd/s";
/// Annotations that put several containers into one shim, first match wins (a CRI pod).
const GROUP_ANNOTATIONS: &[&str] = &["io.kubernetes.cri.sandbox-id"];
pub const RUNC_OPTIONS_URL: &str = "containerd.runc.v1.Options";
/// CRI's options for a runtime type that is not runc (`runtimeoptions.v1.Options`).
pub const CRI_RUNTIME_OPTIONS_URL: &str = "runtimeoptions.v1.Options";
/// The fd the server finds its listening socket on (as containerd's Go shims do).
pub const LISTENER_FD: i32 = 3;
/// Env var carrying containerd's ttrpc address to the server (containerd sets it for `start`).
pub const TTRPC_ADDRESS_ENV: &str = "TTRPC_ADDRESS";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("reading stdin: {0}")]
    Stdin(#[source] io::Error),
    #[error("stdin is neither a bootstrap message for {id}/{namespace} nor a runtime options Any: {source}")]
    BadStdin {
        id: String,
        namespace: String,
        source: containerd_shim_protos::protobuf::Error,
    },
    #[error("runtime options {url}: {source}")]
    BadOptions {
        url: String,
        source: containerd_shim_protos::protobuf::Error,
    },
    #[error("reading the bundle's config.json at {path}: {source}")]
    Spec { path: PathBuf, source: io::Error },
    #[error("parsing the bundle's config.json at {path}: {source}")]
    SpecJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("shim socket {path}: {source}")]
    Socket { path: String, source: io::Error },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("spawning the shim server: {0}")]
    Spawn(#[source] io::Error),
    #[error("moving the shim into cgroup {cgroup}: {source}")]
    Cgroup { cgroup: String, source: io::Error },
    #[error("encoding the bootstrap answer: {0}")]
    Encode(#[source] containerd_shim_protos::protobuf::Error),
}

/// Runtime options as containerd hands them over.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeOptions {
    None,
    Runc(RuncOptions),
    /// CRI's `runtimeoptions.v1.Options`: `(type_url, config_path)`.
    Cri {
        type_url: String,
        config_path: String,
    },
    /// An options type this shim does not use; kept only to say so in the log.
    Other(String),
}

/// What containerd wrote on stdin, by containerd version.
#[derive(Debug, Clone, PartialEq)]
pub enum StartInput {
    /// containerd 1.6 to 2.2: runtime options as a protobuf `Any`, or nothing.
    Legacy(RuntimeOptions),
    /// containerd 2.3+: a `BootstrapParams` message; the runtime options ride in its extensions.
    Bootstrap {
        params: Box<BootstrapParams>,
        options: RuntimeOptions,
    },
}

impl StartInput {
    /// Decodes stdin. A legacy options `Any` can also decode as a `BootstrapParams`, so (as
    /// containerd's own shims do) a bootstrap message only counts when it names this shim's id
    /// and namespace.
    pub fn parse(input: &[u8], id: &str, namespace: &str) -> Result<StartInput, StartError> {
        if input.is_empty() {
            return Ok(StartInput::Legacy(RuntimeOptions::None));
        }
        if let Ok(params) = BootstrapParams::parse_from_bytes(input) {
            if params.instance_id == id && params.namespace == namespace {
                let mut options = RuntimeOptions::None;
                for ext in &params.extensions {
                    if let Some(any) = ext.value.as_ref() {
                        options = decode_options(any)?;
                        if !matches!(options, RuntimeOptions::Other(_)) {
                            break;
                        }
                    }
                }
                return Ok(StartInput::Bootstrap {
                    params: Box::new(params),
                    options,
                });
            }
        }
        let any = Any::parse_from_bytes(input).map_err(|source| StartError::BadStdin {
            id: id.to_owned(),
            namespace: namespace.to_owned(),
            source,
        })?;
        Ok(StartInput::Legacy(decode_options(&any)?))
    }

    pub fn options(&self) -> &RuntimeOptions {
        match self {
            StartInput::Legacy(o) => o,
            StartInput::Bootstrap { options, .. } => options,
        }
    }

    fn socket_dir(&self) -> &str {
        match self {
            StartInput::Bootstrap { params, .. } => params
                .socket_dir
                .as_deref()
                .filter(|d| !d.is_empty())
                .unwrap_or(DEFAULT_SOCKET_DIR),
            StartInput::Legacy(_) => DEFAULT_SOCKET_DIR,
        }
    }

    fn ttrpc_address(&self) -> Option<&str> {
        match self {
            StartInput::Bootstrap { params, .. } if !params.containerd_ttrpc_address.is_empty() => {
                Some(&params.containerd_ttrpc_address)
            }
            _ => None,
        }
    }

    fn debug(&self) -> bool {
        match self {
            StartInput::Bootstrap { params, .. } => {
                params.log_level.value() <= LogLevel::LOG_LEVEL_DEBUG as i32
            }
            StartInput::Legacy(_) => false,
        }
    }

    /// The bytes to print on stdout. containerd 1.6 reads a bare address (and 1.7 to 2.2
    /// accept one, speaking task API v2 to it); 2.3 decodes a protobuf `BootstrapResult` first
    /// and, given version 3, speaks task API v3. 2.0-2.2 send nothing that tells them apart
    /// from 1.7 (which rejects a JSON answer with version 3), so they get the bare address.
    pub fn answer(&self, address: &str) -> Result<Vec<u8>, StartError> {
        match self {
            StartInput::Legacy(_) => Ok(address.as_bytes().to_vec()),
            StartInput::Bootstrap { .. } => {
                let mut result = BootstrapResult::new();
                result.version = 3;
                result.address = address.to_owned();
                result.protocol = "ttrpc".to_owned();
                result.write_to_bytes().map_err(StartError::Encode)
            }
        }
    }
}

fn decode_options(any: &Any) -> Result<RuntimeOptions, StartError> {
    let url = any.type_url.rsplit('/').next().unwrap_or_default();
    let bad = |source| StartError::BadOptions {
        url: any.type_url.clone(),
        source,
    };
    match url {
        RUNC_OPTIONS_URL => Ok(RuntimeOptions::Runc(
            RuncOptions::parse_from_bytes(&any.value).map_err(bad)?,
        )),
        CRI_RUNTIME_OPTIONS_URL => {
            // runtimeoptions.v1.Options { string type_url = 1; string config_path = 2; }
            // (not in the generated protos; decoded field by field).
            let mut is = containerd_shim_protos::protobuf::CodedInputStream::from_bytes(&any.value);
            let (mut type_url, mut config_path) = (String::new(), String::new());
            while let Some(tag) = is.read_raw_tag_or_eof().map_err(bad)? {
                match tag {
                    10 => type_url = is.read_string().map_err(bad)?,
                    18 => config_path = is.read_string().map_err(bad)?,
                    _ => is
                        .skip_field(
                            containerd_shim_protos::protobuf::rt::WireType::new(tag & 7)
                                .ok_or_else(|| {
                                    bad(containerd_shim_protos::protobuf::Error::from(
                                        io::Error::from(ErrorKind::InvalidData),
                                    ))
                                })?,
                        )
                        .map_err(bad)?,
                }
            }
            Ok(RuntimeOptions::Cri {
                type_url,
                config_path,
            })
        }
        "" => Ok(RuntimeOptions::None),
        other => Ok(RuntimeOptions::Other(other.to_owned())),
    }
}

/// `unix://<dir>/<sha256(address/namespace/group)>`, containerd's `SocketAddress`.
pub fn socket_address(
    socket_dir: &str,
    containerd_address: &str,
    namespace: &str,
    group: &str,
) -> String {
    let key = format!(
        "{}/{namespace}/{group}",
        containerd_address.trim_end_matches('/')
    );
    format!(
        "unix://{}/{}",
        socket_dir.trim_end_matches('/'),
        sha256::hex(key.as_bytes())
    )
}

/// The id a shim is shared under: the pod's sandbox id when containerd groups a pod.
pub fn grouping_id(bundle: &Path, id: &str) -> Result<String, StartError> {
    #[derive(serde::Deserialize)]
    struct Spec {
        #[serde(default)]
        annotations: HashMap<String, String>,
    }
    let path = bundle.join("config.json");
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(id.to_owned()),
        Err(source) => return Err(StartError::Spec { path, source }),
    };
    let spec: Spec =
        serde_json::from_slice(&data).map_err(|source| StartError::SpecJson { path, source })?;
    Ok(GROUP_ANNOTATIONS
        .iter()
        .find_map(|k| spec.annotations.get(*k).filter(|v| !v.is_empty()).cloned())
        .unwrap_or_else(|| id.to_owned()))
}

fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

/// Binds the socket; `Ok(None)` when a live shim already serves it (a grouped container).
fn bind(address: &str) -> Result<Option<UnixListener>, StartError> {
    let path = socket_path(address);
    let err = |source| StartError::Socket {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = Path::new(path).parent() {
        fs::create_dir_all(dir).map_err(err)?;
    }
    match UnixListener::bind(path) {
        Ok(l) => {
            fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(err)?;
            Ok(Some(l))
        }
        Err(e) if e.kind() == ErrorKind::AddrInUse => {
            if UnixStream::connect(path).is_ok() {
                return Ok(None);
            }
            // A dead shim's socket: take it over.
            fs::remove_file(path).map_err(err)?;
            let l = UnixListener::bind(path).map_err(err)?;
            fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(err)?;
            Ok(Some(l))
        }
        Err(e) => Err(err(e)),
    }
}

fn write_file(path: PathBuf, data: &[u8]) -> Result<(), StartError> {
    // Write then rename, so containerd never reads half a file.
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, data)
        .and_then(|()| fs::rename(&tmp, &path))
        .map_err(|source| StartError::Write { path, source })
}

fn join_shim_cgroup(pid: u32, cgroup: &str) -> Result<(), StartError> {
    let err = |source| StartError::Cgroup {
        cgroup: cgroup.to_owned(),
        source,
    };
    let rel = cgroup.trim_start_matches('/');
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        return fs::write(
            Path::new("/sys/fs/cgroup").join(rel).join("cgroup.procs"),
            pid.to_string(),
        )
        .map_err(err);
    }
    for entry in fs::read_dir("/sys/fs/cgroup").map_err(err)?.flatten() {
        let procs = entry.path().join(rel).join("cgroup.procs");
        if procs.exists() {
            fs::write(&procs, pid.to_string()).map_err(err)?;
        }
    }
    Ok(())
}

/// Makes the shim a slightly likelier OOM victim than containerd (its parent here), as
/// containerd's shims do, so memory pressure takes a shim before the daemon. Best effort: a
/// restricted host may refuse it, which changes nothing else.
fn adjust_oom_score(pid: u32) {
    // SAFETY: getppid has no preconditions.
    let ppid = unsafe { libc::getppid() };
    let parent = fs::read_to_string(format!("/proc/{ppid}/oom_score_adj")).ok();
    if let Some(score) = parent.and_then(|s| s.trim().parse::<i32>().ok()) {
        let _ = fs::write(
            format!("/proc/{pid}/oom_score_adj"),
            (score + 1).min(1000).to_string(),
        );
    }
}

/// In the forked child: detach from containerd (own session; stdio to /dev/null, since
/// containerd reads `start`'s stdout to EOF), keep only the listening socket (as fd 3, where
/// a re-executed server would find it), and serve until the shim exits.
fn become_server(
    flags: &Flags,
    bundle: &Path,
    ttrpc: Option<&str>,
    listener: i32,
    devnull: i32,
) -> ! {
    // SAFETY: plain syscalls on descriptors this process owns, in a single-threaded child.
    let ok = unsafe {
        libc::setsid() >= 0
            && (listener == LISTENER_FD || libc::dup2(listener, LISTENER_FD) >= 0)
            && libc::dup2(devnull, 0) >= 0
            && libc::dup2(devnull, 1) >= 0
            && libc::dup2(devnull, 2) >= 0
    };
    if !ok {
        // SAFETY: exit without running the parent's atexit handlers or flushing its buffers.
        unsafe { libc::_exit(1) };
    }
    // Nothing else of `start` (containerd's stdin pipe, /dev/null) stays open in the server.
    // SAFETY: closes only descriptors above the listener's.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            (LISTENER_FD + 1) as u32,
            u32::MAX,
            0u32,
        )
    };
    if std::env::set_current_dir(bundle).is_err() {
        // SAFETY: as above.
        unsafe { libc::_exit(1) };
    }
    if let Some(address) = ttrpc {
        std::env::set_var(TTRPC_ADDRESS_ENV, address);
    }
    hide_start_argument();
    crate::server::one_malloc_arena();
    let code = match crate::server::serve(flags) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("shim server: {e}");
            1
        }
    };
    std::process::exit(code)
}

/// The server inherited `start`'s command line, which ends in `start`: blank that word in
/// place, so `ps` shows the server as containerd would have started it. Best effort, and only
/// when the bytes at glibc's `program_invocation_name` are the command line the kernel shows.
fn hide_start_argument() {
    let Ok(cmdline) = fs::read("/proc/self/cmdline") else {
        return;
    };
    if !cmdline.ends_with(b"\0start\0") {
        return;
    }
    extern "C" {
        static mut program_invocation_name: *mut libc::c_char;
    }
    // SAFETY: glibc points program_invocation_name at argv[0], the start of the argument
    // area the kernel reports in /proc/self/cmdline; it is compared byte for byte before a
    // single byte is written, and the write stays inside it.
    unsafe {
        let base = program_invocation_name.cast::<u8>();
        if base.is_null() {
            return;
        }
        let area = std::slice::from_raw_parts_mut(base, cmdline.len());
        if area != cmdline.as_slice() {
            return;
        }
        let start = cmdline.len() - "start\0".len();
        area[start..].fill(0);
    }
}

/// The whole `start` action; returns what to print on stdout.
pub fn run(flags: &Flags) -> Result<Vec<u8>, StartError> {
    let mut stdin = Vec::new();
    io::stdin()
        .read_to_end(&mut stdin)
        .map_err(StartError::Stdin)?;
    let input = StartInput::parse(&stdin, &flags.id, &flags.namespace)?;

    // containerd runs `start` in the bundle directory.
    let bundle = flags.bundle.clone().unwrap_or_else(|| PathBuf::from("."));
    let group = grouping_id(&bundle, &flags.id)?;
    let address = socket_address(input.socket_dir(), &flags.address, &flags.namespace, &group);

    let Some(listener) = bind(&address)? else {
        write_file(bundle.join("address"), address.as_bytes())?;
        return input.answer(&address);
    };
    write_file(bundle.join("address"), address.as_bytes())?;
    // Join the configured cgroup before the server exists, so it is born there: nothing can
    // then see it outside (the server warms the cgroup migration lock with writes naming its
    // current cgroup; a move from here afterwards could be undone by one of them).
    if let RuntimeOptions::Runc(opts) = input.options() {
        if !opts.shim_cgroup.is_empty() {
            join_shim_cgroup(std::process::id(), &opts.shim_cgroup)?;
        }
    }

    // The server is this process forked, not a new execution of the binary: `start` is
    // single-threaded (no async runtime, no thread yet), so the child can go on running Rust
    // code, and containerd gets its answer without waiting for an exec and a second
    // start-up of the binary (the server never needs a fresh image: it never unshares or
    // joins namespaces, and its helpers are executed from a sealed copy anyway).
    let server = Flags {
        action: crate::flags::Action::Serve,
        debug: flags.debug || input.debug(),
        bundle: None,
        ..flags.clone()
    };
    let ttrpc = input.ttrpc_address().map(str::to_owned);
    let devnull = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(StartError::Spawn)?;
    let fd = listener.as_raw_fd();
    // SAFETY: fork in a single-threaded process; the child below never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let _ = fs::remove_file(socket_path(&address));
        return Err(StartError::Spawn(io::Error::last_os_error()));
    }
    if pid == 0 {
        become_server(&server, &bundle, ttrpc.as_deref(), fd, devnull.as_raw_fd());
    }
    drop(devnull);
    drop(listener);
    let pid = pid as u32;
    write_file(bundle.join("shim.pid"), pid.to_string().as_bytes())?;
    adjust_oom_score(pid);
    input.answer(&address)
}

#[cfg(test)]
mod tests {
    use containerd_shim_protos::bootstrap_api::Extension;

    use super::*;

    fn any(url: &str, value: Vec<u8>) -> Any {
        let mut a = Any::new();
        a.type_url = url.to_owned();
        a.value = value;
        a
    }

    fn runc_options() -> RuncOptions {
        let mut o = RuncOptions::new();
        o.binary_name = "runc".into();
        o.shim_cgroup = "/pods/shim".into();
        o
    }

    /// runtimeoptions.v1.Options encoded by hand, as CRI sends it.
    fn cri_options(type_url: &str, config_path: &str) -> Vec<u8> {
        let mut v = vec![10, type_url.len() as u8];
        v.extend_from_slice(type_url.as_bytes());
        v.push(18);
        v.push(config_path.len() as u8);
        v.extend_from_slice(config_path.as_bytes());
        v
    }

    const ADDR: &str = "unix:///run/containerd/s/abc";

    #[test]
    fn empty_stdin_is_legacy_and_answers_the_bare_address() {
        let input = StartInput::parse(&[], "c1", "default").unwrap();
        assert_eq!(input, StartInput::Legacy(RuntimeOptions::None));
        assert_eq!(input.answer(ADDR).unwrap(), ADDR.as_bytes());
    }

    #[test]
    fn runc_options_any() {
        let opts = runc_options();
        let bytes = any("containerd.runc.v1.Options", opts.write_to_bytes().unwrap())
            .write_to_bytes()
            .unwrap();
        let input = StartInput::parse(&bytes, "c1", "default").unwrap();
        assert_eq!(input, StartInput::Legacy(RuntimeOptions::Runc(opts)));
        assert_eq!(input.answer(ADDR).unwrap(), ADDR.as_bytes());
        // containerd 2.x writes the type URL with a prefix.
        let bytes = any("types.containerd.io/containerd.runc.v1.Options", vec![])
            .write_to_bytes()
            .unwrap();
        let input = StartInput::parse(&bytes, "c1", "default").unwrap();
        assert_eq!(
            input,
            StartInput::Legacy(RuntimeOptions::Runc(RuncOptions::new()))
        );
    }

    #[test]
    fn cri_runtime_options_any() {
        let bytes = any(
            "runtimeoptions.v1.Options",
            cri_options("lifecycle.Options", "/etc/lc.toml"),
        )
        .write_to_bytes()
        .unwrap();
        let input = StartInput::parse(&bytes, "c1", "k8s.io").unwrap();
        assert_eq!(
            input,
            StartInput::Legacy(RuntimeOptions::Cri {
                type_url: "lifecycle.Options".into(),
                config_path: "/etc/lc.toml".into()
            })
        );
        assert_eq!(input.answer(ADDR).unwrap(), ADDR.as_bytes());
    }

    #[test]
    fn bootstrap_message_answers_a_v3_bootstrap_result() {
        let mut params = BootstrapParams::new();
        params.instance_id = "c1".into();
        params.namespace = "default".into();
        params.containerd_ttrpc_address = "/run/containerd/containerd.sock.ttrpc".into();
        params.socket_dir = Some("/run/x/s".into());
        params.log_level = LogLevel::LOG_LEVEL_DEBUG.into();
        let mut ext = Extension::new();
        ext.value = Some(any(
            "containerd.runc.v1.Options",
            runc_options().write_to_bytes().unwrap(),
        ))
        .into();
        params.extensions.push(ext);
        let bytes = params.write_to_bytes().unwrap();

        let input = StartInput::parse(&bytes, "c1", "default").unwrap();
        assert_eq!(input.options(), &RuntimeOptions::Runc(runc_options()));
        assert_eq!(input.socket_dir(), "/run/x/s");
        assert_eq!(
            input.ttrpc_address(),
            Some("/run/containerd/containerd.sock.ttrpc")
        );
        assert!(input.debug());
        let answer = BootstrapResult::parse_from_bytes(&input.answer(ADDR).unwrap()).unwrap();
        assert_eq!(answer.version, 3);
        assert_eq!(answer.address, ADDR);
        assert_eq!(answer.protocol, "ttrpc");
    }

    #[test]
    fn bootstrap_for_another_id_is_not_taken_as_bootstrap() {
        let mut params = BootstrapParams::new();
        params.instance_id = "other".into();
        params.namespace = "default".into();
        let bytes = params.write_to_bytes().unwrap();
        // It decodes as an Any with type URL "other": an options type this shim ignores.
        let input = StartInput::parse(&bytes, "c1", "default").unwrap();
        assert_eq!(
            input,
            StartInput::Legacy(RuntimeOptions::Other("other".into()))
        );
    }

    #[test]
    fn garbage_stdin_is_an_error() {
        assert!(StartInput::parse(&[0xff, 0xff, 0xff], "c1", "default").is_err());
    }

    #[test]
    fn socket_address_matches_containerd() {
        // sha256("/run/containerd/containerd.sock/default/c1")
        let a = socket_address(
            DEFAULT_SOCKET_DIR,
            "/run/containerd/containerd.sock",
            "default",
            "c1",
        );
        assert_eq!(
            a,
            format!(
                "unix:///run/containerd/s/{}",
                sha256::hex(b"/run/containerd/containerd.sock/default/c1")
            )
        );
        assert_eq!(a.len(), "unix:///run/containerd/s/".len() + 64);
    }

    #[test]
    fn grouping_by_sandbox_id() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(grouping_id(dir.path(), "c1").unwrap(), "c1");
        fs::write(
            dir.path().join("config.json"),
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod1"}}"#,
        )
        .unwrap();
        assert_eq!(grouping_id(dir.path(), "c1").unwrap(), "pod1");
        fs::write(dir.path().join("config.json"), r#"{"ociVersion":"1.0.2"}"#).unwrap();
        assert_eq!(grouping_id(dir.path(), "c1").unwrap(), "c1");
    }

    #[test]
    fn bind_reuses_a_live_socket_and_replaces_a_dead_one() {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("unix://{}/s/sock", dir.path().display());
        let first = bind(&addr).unwrap().expect("fresh socket");
        assert!(bind(&addr).unwrap().is_none(), "live socket is shared");
        drop(first);
        assert!(bind(&addr).unwrap().is_some(), "dead socket is taken over");
    }
}
