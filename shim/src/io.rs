//! A process's stdio as containerd describes it: FIFO paths (`ctr`, CRI), `binary://` logger
//! URIs, `file://` URIs, nothing (null IO), and a pty for `terminal`.
//!
//! stdout/stderr FIFOs are handed to the container directly (no copy in the shim); the shim
//! keeps a read end of each open, so the container never gets EPIPE while containerd restarts
//! (its writes wait in the pipe until containerd reopens the FIFO). stdin goes through a pipe
//! the shim owns, so CloseIO can close it. A pty is copied both ways by two small threads.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::{fs::OpenOptionsExt, process::CommandExt},
    },
    path::{Path, PathBuf},
    process::{Command, Stdio as ProcStdio},
    sync::{Arc, Mutex},
    thread,
};

use lifecycle_runtime::Stdio;
use ttrpc::Code;

#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("opening {what} {path}: {source}")]
    Open {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("unsupported stdio URI scheme {0:?} (expected a FIFO path, binary:// or file://)")]
    Scheme(String),
    #[error("starting logger {path}: {source}")]
    Logger { path: PathBuf, source: io::Error },
    #[error("creating a pipe: {0}")]
    Pipe(#[source] nix::Error),
    #[error("resizing the console: {0}")]
    Resize(#[source] nix::Error),
    #[error("the process has no console")]
    NoConsole,
}

impl IoError {
    pub fn code(&self) -> Code {
        match self {
            IoError::Scheme(_) => Code::INVALID_ARGUMENT,
            IoError::NoConsole => Code::FAILED_PRECONDITION,
            _ => Code::UNKNOWN,
        }
    }
}

/// The stdio fields of a Create or Exec request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoConfig {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// What the shim keeps of a process's IO for its lifetime.
#[derive(Default)]
pub struct IoHandles {
    /// Read ends of stdout/stderr FIFOs, never read: they keep the FIFOs from breaking.
    _keep: Vec<OwnedFd>,
    stdin: Option<Arc<Mutex<Option<File>>>>,
    /// Dropped with the handles: wakes the stdin copier, which then ends.
    _stdin_cancel: Option<OwnedFd>,
    console: Option<File>,
}

impl Drop for IoHandles {
    /// At Delete: the stdin copier must not outlive the process (with `ctr run -d` nobody
    /// ever opens the FIFO for writing, and containerd removes it). Closing the pipe's write
    /// end here and the copier's cancel pipe (a field) ends it and what it holds.
    fn drop(&mut self) {
        self.close_stdin();
    }
}

impl IoHandles {
    /// CloseIO: the process sees EOF on stdin once what was written is read.
    pub fn close_stdin(&mut self) {
        if let Some(w) = self.stdin.take() {
            w.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
    }

    pub fn resize(&self, width: u32, height: u32) -> Result<(), IoError> {
        let console = self.console.as_ref().ok_or(IoError::NoConsole)?;
        let ws = libc::winsize {
            ws_row: height.min(u16::MAX as u32) as u16,
            ws_col: width.min(u16::MAX as u32) as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
        let rc = unsafe { libc::ioctl(console.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if rc < 0 {
            return Err(IoError::Resize(nix::Error::last()));
        }
        Ok(())
    }
}

/// Identity of the process, for `binary://` loggers.
pub struct LoggerEnv<'a> {
    pub id: &'a str,
    pub namespace: &'a str,
}

enum Target {
    Null,
    Fifo(PathBuf),
    Binary { path: PathBuf, args: Vec<String> },
    File(PathBuf),
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_target(uri: &str) -> Result<Target, IoError> {
    if uri.is_empty() {
        return Ok(Target::Null);
    }
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Ok(Target::Fifo(PathBuf::from(uri)));
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    // `scheme://host/path`: containerd writes an empty host.
    let path = PathBuf::from(percent_decode(path));
    match scheme {
        "fifo" => Ok(Target::Fifo(path)),
        "file" => Ok(Target::File(path)),
        "binary" => {
            let mut args = Vec::new();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                args.push(percent_decode(k));
                if !v.is_empty() {
                    args.push(percent_decode(v));
                }
            }
            Ok(Target::Binary { path, args })
        }
        other => Err(IoError::Scheme(other.to_owned())),
    }
}

fn open_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> IoError + 'a {
    move |source| IoError::Open {
        what,
        path: path.to_owned(),
        source,
    }
}

/// How long the shim waits for containerd's reader of an output FIFO before it opens the FIFO
/// without one (containerd opens its ends asynchronously, usually within a millisecond).
const READER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens a FIFO for the container to write, and a read end the shim keeps (never read).
///
/// containerd's reader is waited for first, as the Go shims' blocking open does: a process
/// that writes and exits before that reader exists leaves its output in the pipe, and the
/// output is lost when the shim's kept end closes at Delete with no reader ever opened (seen
/// with `ctr task exec` of a quick `echo` under load: ctr cancels a FIFO open still pending
/// when the exec is deleted). After `READER_WAIT` without a reader, it goes on without one.
fn open_fifo_writer(path: &Path, keep: &mut Vec<OwnedFd>) -> Result<OwnedFd, IoError> {
    let deadline = std::time::Instant::now() + READER_WAIT;
    // Non-blocking write open: ENXIO while there is no reader. The end it gives is the one
    // the container gets (closing it could end a reader's copy at once: no writer left).
    let early = loop {
        match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
        {
            Ok(w) => break Some(w),
            Err(e)
                if e.raw_os_error() == Some(libc::ENXIO)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => break None,
            Err(e) => return Err(open_err("FIFO", path)(e)),
        }
    };
    let reader = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(open_err("FIFO", path))?;
    let writer = match early {
        Some(w) => {
            // The container writes blocking, as to any pipe.
            // SAFETY: fcntl on a descriptor this function owns.
            if unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETFL, libc::O_WRONLY) } < 0 {
                return Err(open_err("FIFO", path)(io::Error::last_os_error()));
            }
            w
        }
        None => OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(open_err("FIFO", path))?,
    };
    keep.push(reader.into());
    Ok(writer.into())
}

fn pipe() -> Result<(OwnedFd, OwnedFd), IoError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(IoError::Pipe)
}

/// Starts a `binary://` logger as containerd's shims do: the process's stdout and stderr pipes
/// as fds 3 and 4, a readiness pipe as fd 5 that it closes (or writes to) when ready.
/// Returns the write ends for the container and the logger's pid (reaped by the one reaper).
fn start_logger(
    path: &Path,
    args: &[String],
    env: &LoggerEnv<'_>,
) -> Result<(OwnedFd, OwnedFd, u32), IoError> {
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    let fds = [out_r.as_raw_fd(), err_r.as_raw_fd(), ready_w.as_raw_fd()];
    let mut cmd = Command::new(path);
    cmd.args(args)
        .env_clear()
        .env("CONTAINER_ID", env.id)
        .env("CONTAINER_NAMESPACE", env.namespace)
        .stdin(ProcStdio::null())
        .stdout(ProcStdio::null())
        .stderr(ProcStdio::null());
    // SAFETY: only dup2 (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for (i, fd) in fds.iter().enumerate() {
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|source| IoError::Logger {
        path: path.to_owned(),
        source,
    })?;
    lifecycle_runtime::reaper::notify();
    let pid = child.id();
    drop(child); // reaped by the reaper, never waited for here
    drop((out_r, err_r, ready_w));
    let mut ready = File::from(ready_r);
    let mut b = [0u8; 1];
    let _ = ready.read(&mut b);
    Ok((out_w, err_w, pid))
}

/// Opens the process's IO. `Stdio` goes to the runtime; the handles stay with the shim;
/// `loggers` are pids of `binary://` loggers started for it.
pub fn open(
    config: &IoConfig,
    env: &LoggerEnv<'_>,
) -> Result<(Stdio, IoHandles, Vec<u32>), IoError> {
    let mut stdio = Stdio {
        stdin: None,
        stdout: None,
        stderr: None,
    };
    let mut handles = IoHandles::default();
    let mut loggers = Vec::new();
    if config.terminal {
        // The console is wired up in `attach_console` once the runtime returns the master.
        return Ok((stdio, handles, loggers));
    }
    let mut keep = Vec::new();
    if !config.stdin.is_empty() {
        let (r, w) = pipe()?;
        stdio.stdin = Some(r);
        let writer = Arc::new(Mutex::new(Some(File::from(w))));
        handles._stdin_cancel = copy_stdin(
            PathBuf::from(&config.stdin),
            StdinTarget::Pipe(writer.clone()),
        );
        handles.stdin = Some(writer);
    }
    match parse_target(&config.stdout)? {
        Target::Null => {}
        Target::Fifo(p) => stdio.stdout = Some(open_fifo_writer(&p, &mut keep)?),
        Target::File(p) => {
            if let Some(dir) = p.parent() {
                fs::create_dir_all(dir).map_err(open_err("log file directory", dir))?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&p)
                .map_err(open_err("log file", &p))?;
            let f2 = f.try_clone().map_err(open_err("log file", &p))?;
            stdio.stdout = Some(f.into());
            if config.stderr.is_empty() || config.stderr == config.stdout {
                stdio.stderr = Some(f2.into());
            }
        }
        Target::Binary { path, args } => {
            let (out, err, pid) = start_logger(&path, &args, env)?;
            loggers.push(pid);
            stdio.stdout = Some(out);
            stdio.stderr = Some(err);
        }
    }
    if stdio.stderr.is_none() {
        match parse_target(&config.stderr)? {
            Target::Null => {}
            Target::Fifo(p) => stdio.stderr = Some(open_fifo_writer(&p, &mut keep)?),
            Target::File(p) => {
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(&p)
                    .map_err(open_err("log file", &p))?;
                stdio.stderr = Some(f.into());
            }
            Target::Binary { .. } => {} // one logger takes both streams
        }
    }
    handles._keep = keep;
    Ok((stdio, handles, loggers))
}

enum StdinTarget {
    Pipe(Arc<Mutex<Option<File>>>),
    Console(File),
}

/// Copies the stdin FIFO into the process, on its own thread. The FIFO is opened here without
/// blocking (containerd's side may open it later, or never: `ctr run -d`); the thread polls it
/// and a cancel pipe, whose write end (returned) the process's handles keep: dropping it ends
/// the thread even when no writer ever came. EOF on the FIFO closes the process's stdin.
fn copy_stdin(path: PathBuf, target: StdinTarget) -> Option<OwnedFd> {
    let mut target = target;
    let mut fifo = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) => {
            log::warn!("opening stdin {}: {e}", path.display());
            return None;
        }
    };
    let (cancel_r, cancel_w) = match pipe() {
        Ok(p) => p,
        Err(e) => {
            log::error!("starting the stdin copier: {e}");
            return None;
        }
    };
    let spawned = thread::Builder::new()
        .name("stdin".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                let mut fds = [
                    libc::pollfd {
                        fd: fifo.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                    libc::pollfd {
                        fd: cancel_r.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                ];
                // A FIFO opened before any writer does not report POLLHUP until a writer
                // came and went: poll waits for data, that EOF, or the cancel.
                // SAFETY: two valid pollfd structs.
                let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
                if rc < 0 {
                    if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    break;
                }
                if fds[1].revents != 0 {
                    break;
                }
                let n = match fifo.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) =>
                    {
                        continue
                    }
                    Err(_) => break,
                };
                let ok = match &mut target {
                    StdinTarget::Pipe(w) => {
                        match w.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                            Some(w) => w.write_all(&buf[..n]).is_ok(),
                            None => false,
                        }
                    }
                    StdinTarget::Console(c) => c.write_all(&buf[..n]).is_ok(),
                };
                if !ok {
                    break;
                }
            }
            if let StdinTarget::Pipe(w) = &target {
                w.lock().unwrap_or_else(|e| e.into_inner()).take();
            }
        });
    match spawned {
        Ok(_) => Some(cancel_w),
        Err(e) => {
            log::error!("starting the stdin copier: {e}");
            None
        }
    }
}

/// Wires a pty master to the process's FIFOs: master to stdout, stdin to master.
pub fn attach_console(
    config: &IoConfig,
    master: OwnedFd,
    handles: &mut IoHandles,
) -> Result<(), IoError> {
    let master = File::from(master);
    let mut keep = Vec::new();
    if let Target::Fifo(p) = parse_target(&config.stdout)? {
        let out = File::from(open_fifo_writer(&p, &mut keep)?);
        let mut reader = master
            .try_clone()
            .map_err(open_err("console", Path::new("ptmx")))?;
        let spawned = thread::Builder::new()
            .name("console".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut out = out;
                let mut buf = [0u8; 8192];
                // EIO once the last slave fd is closed: the process and its children are gone.
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 || out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        if let Err(e) = spawned {
            log::error!("starting the console copier: {e}");
        }
    }
    if !config.stdin.is_empty() {
        let w = master
            .try_clone()
            .map_err(open_err("console", Path::new("ptmx")))?;
        handles._stdin_cancel = copy_stdin(PathBuf::from(&config.stdin), StdinTarget::Console(w));
    }
    handles._keep.extend(keep);
    handles.console = Some(master);
    Ok(())
}

#[cfg(test)]
fn file_from_fd(fd: OwnedFd) -> File {
    File::from(fd)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn uri_parsing() {
        assert!(matches!(parse_target("").unwrap(), Target::Null));
        assert!(
            matches!(parse_target("/run/x/stdout").unwrap(), Target::Fifo(p) if p == Path::new("/run/x/stdout"))
        );
        assert!(
            matches!(parse_target("file:///var/log/c%201.log").unwrap(), Target::File(p) if p == Path::new("/var/log/c 1.log"))
        );
        match parse_target("binary:///usr/bin/logger?id=abc&flag").unwrap() {
            Target::Binary { path, args } => {
                assert_eq!(path, Path::new("/usr/bin/logger"));
                assert_eq!(args, vec!["id", "abc", "flag"]);
            }
            _ => panic!("not binary"),
        }
        assert!(matches!(parse_target("tcp://x:1"), Err(IoError::Scheme(s)) if s == "tcp"));
    }

    #[test]
    fn fifo_stdout_is_direct_and_kept_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let config = IoConfig {
            stdout: path.display().to_string(),
            ..Default::default()
        };
        let (stdio, handles, loggers) = open(
            &config,
            &LoggerEnv {
                id: "c",
                namespace: "n",
            },
        )
        .unwrap();
        assert!(loggers.is_empty());
        assert!(stdio.stdin.is_none() && stdio.stderr.is_none());
        let mut w = file_from_fd(stdio.stdout.unwrap());
        // containerd's reader comes and goes; the kept read end means no EPIPE meanwhile.
        w.write_all(b"hello").unwrap();
        let mut r = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        drop(handles);
        let mut buf = [0u8; 5];
        r.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
    }

    #[test]
    fn file_uri_takes_both_streams() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/c.log");
        let config = IoConfig {
            stdout: format!("file://{}", path.display()),
            ..Default::default()
        };
        let (stdio, _h, _) = open(
            &config,
            &LoggerEnv {
                id: "c",
                namespace: "n",
            },
        )
        .unwrap();
        file_from_fd(stdio.stdout.unwrap())
            .write_all(b"out ")
            .unwrap();
        file_from_fd(stdio.stderr.unwrap())
            .write_all(b"err")
            .unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "out err");
    }
}
