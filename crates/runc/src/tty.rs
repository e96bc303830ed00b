//! Terminals and signals: the pty master sent over `--console-socket` (SCM_RIGHTS, as runc's
//! `utils.SendFd`), the foreground terminal (`run`/`exec` with a terminal and no console
//! socket: the pty is relayed to this process's own stdio, raw mode when stdin is a tty), and
//! signal forwarding to a foreground container process.

use std::{
    fs::File,
    io::{Read, Write},
    os::{
        fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::net::UnixStream,
    },
    thread::JoinHandle,
};

use crate::Fail;

/// Connects to the console socket first thing, as runc does, so a bad path fails before
/// anything is created. std's socket is close-on-exec: no container process inherits it.
pub fn connect(path: &str) -> Result<UnixStream, Fail> {
    UnixStream::connect(path).map_err(|e| Fail::new(format!("dial unix {path}: connect: {e}")))
}

/// Checks `--console-socket` against the process's terminal setting as runc does (a detached
/// terminal needs one; a process without a terminal must not get one) and connects to it.
pub fn console_socket(
    terminal: bool,
    detach: bool,
    path: Option<&str>,
) -> Result<Option<UnixStream>, Fail> {
    let path = path.filter(|s| !s.is_empty());
    if terminal && detach && path.is_none() {
        return Err(Fail::new(
            "cannot allocate tty if runc will detach without setting console socket",
        ));
    }
    if !terminal && path.is_some() {
        return Err(Fail::new(
            "cannot use console socket if runc will not detach or allocate tty",
        ));
    }
    path.map(connect).transpose()
}

/// Sends the pty master with one SCM_RIGHTS message whose data is the master's name
/// (`/dev/ptmx`, what runc sends).
pub fn send_master(sock: &UnixStream, master: BorrowedFd<'_>) -> Result<(), Fail> {
    let name = b"/dev/ptmx";
    let mut iov = libc::iovec {
        iov_base: name.as_ptr() as *mut _,
        iov_len: name.len(),
    };
    let mut cbuf = [0u64; 4];
    // SAFETY: msghdr is plain data; CMSG_* on a buffer big enough for one fd.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<i32>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>(), master.as_raw_fd());
        if libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) < 0 {
            return Err(Fail::new(format!(
                "send the console to the console socket: {}",
                std::io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

/// Our stdin/stdout/stderr, duplicated (close-on-exec) for the container's process.
pub fn own_stdio() -> lifecycle_runtime::Stdio {
    let dup = |fd: i32| {
        // SAFETY: fcntl on a possibly closed fd; the result is checked.
        let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        // SAFETY: a fresh fd.
        (n >= 0).then(|| unsafe { OwnedFd::from_raw_fd(n) })
    };
    lifecycle_runtime::Stdio {
        stdin: dup(0),
        stdout: dup(1),
        stderr: dup(2),
    }
}

fn winsize_of(fd: i32) -> Option<libc::winsize> {
    // SAFETY: ioctl into a winsize we own.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    (unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0).then_some(ws)
}

/// The pty master relayed to our own stdio while a foreground process runs.
pub struct Relay {
    master: OwnedFd,
    restore: Option<libc::termios>,
    out: Option<JoinHandle<()>>,
}

impl Relay {
    pub fn start(master: OwnedFd) -> Result<Relay, Fail> {
        let mut restore = None;
        // SAFETY: isatty/tcgetattr/tcsetattr on fd 0 with a termios we own.
        unsafe {
            if libc::isatty(0) == 1 {
                let mut t: libc::termios = std::mem::zeroed();
                if libc::tcgetattr(0, &mut t) == 0 {
                    restore = Some(t);
                    let mut raw = t;
                    libc::cfmakeraw(&mut raw);
                    libc::tcsetattr(0, libc::TCSANOW, &raw);
                }
            }
        }
        if let Some(ws) = winsize_of(0) {
            // SAFETY: ioctl with a valid winsize.
            unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        }
        let dup = |what: &str| {
            master
                .try_clone()
                .map(File::from)
                .map_err(|e| Fail::new(format!("dup the pty master ({what}): {e}")))
        };
        let mut to_pty = dup("input")?;
        let mut from_pty = dup("output")?;
        // Input: never joined (a read on our stdin may block forever); dies with us.
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let _ = std::io::copy(&mut stdin, &mut to_pty);
        });
        let out = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut stdout = std::io::stdout();
            // EIO once every slave fd is closed (the process is gone).
            while let Ok(n) = from_pty.read(&mut buf) {
                if n == 0 || stdout.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = stdout.flush();
            }
        });
        Ok(Relay {
            master,
            restore,
            out: Some(out),
        })
    }

    /// A handle for [`forward_signals`] to resize the terminal on SIGWINCH.
    pub fn resizer(&self) -> Option<OwnedFd> {
        self.master.try_clone().ok()
    }

    /// After the process exited: let its last output through (bounded), restore the terminal.
    pub fn finish(mut self) {
        if let Some(out) = self.out.take() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while !out.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        if let Some(t) = self.restore.take() {
            // SAFETY: restores the termios read at start.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        }
    }
}

/// Signals a foreground `run`/`exec` forwards to its process (runc forwards everything but
/// SIGCHLD, SIGWINCH, which resizes the terminal, and SIGURG; SIGPIPE is not forwarded
/// either: it is about our own stdout).
fn forwarded() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in 1..32 {
            if !matches!(
                sig,
                libc::SIGKILL | libc::SIGSTOP | libc::SIGCHLD | libc::SIGURG | libc::SIGPIPE
            ) {
                libc::sigaddset(&mut set, sig);
            }
        }
        set
    }
}

/// Blocks the forwarded signals in this thread, before any thread or child exists (threads
/// inherit the mask; std resets it in spawned children).
pub fn block_signals() {
    let set = forwarded();
    // SAFETY: pthread_sigmask with a valid set.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Forwards every blocked signal to `pid` from a thread; SIGWINCH resizes the relay instead.
pub fn forward_signals(pid: i32, pty_master: Option<OwnedFd>) {
    std::thread::spawn(move || {
        let set = forwarded();
        loop {
            let mut sig = 0;
            // SAFETY: sigwait with a valid set and out pointer.
            if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                continue;
            }
            if sig == libc::SIGWINCH {
                if let (Some(m), Some(ws)) = (&pty_master, winsize_of(0)) {
                    // SAFETY: ioctl with a valid winsize.
                    unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                }
                continue;
            }
            // SAFETY: kill with integers; the pid is our unreaped child.
            unsafe { libc::kill(pid, sig) };
        }
    });
}
