//! Typed messages between the caller and its helper (and the container init, which inherits the
//! helper's end): serde_json frames with a u32 length prefix over a stream socketpair, with an
//! optional file descriptor (SCM_RIGHTS) attached to a frame. The two ends are typed by
//! direction, so a caller can only send [`ToHelper`] and only receive [`FromHelper`].

use std::{
    io,
    marker::PhantomData,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{error::SetupError, helper::HelperRequest};

/// Caller to helper/init.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToHelper {
    /// What to do (create a container or exec into one).
    Request(Box<HelperRequest>),
    /// Release the entrypoint.
    Start,
    /// The caller ran the hooks the init asked for (or failed: then the channel closes).
    HooksDone,
}

/// Helper/init to caller.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromHelper {
    /// The container init (or exec process) exists; pid in the caller's pid namespace.
    Pid(i32),
    /// The pty master is attached to this frame.
    Console,
    /// The init reached a point where the caller must run OCI hooks in the runtime namespace
    /// (prestart, createRuntime), then answer [`ToHelper::HooksDone`].
    RunHooks,
    /// The container is fully set up and held before the entrypoint.
    Ready,
    /// Setup failed; the process exits after sending this.
    Failed(SetupError),
}

/// Max frame size: a spec with a large seccomp profile is a few hundred KiB.
const MAX_FRAME: usize = 16 << 20;

/// One typed end of the socketpair.
pub(crate) struct Channel<Out, In> {
    fd: OwnedFd,
    _dir: PhantomData<fn(Out) -> In>,
}

/// The caller's end.
pub(crate) type CallerEnd = Channel<ToHelper, FromHelper>;
/// The helper's (and init's) end.
pub(crate) type HelperEnd = Channel<FromHelper, ToHelper>;

/// A connected pair, both ends close-on-exec (the helper's end is made inheritable only in the
/// spawned helper, between fork and exec).
pub(crate) fn pair() -> io::Result<(CallerEnd, HelperEnd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair returned two fresh fds we now own.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((
        Channel {
            fd: a,
            _dir: PhantomData,
        },
        Channel {
            fd: b,
            _dir: PhantomData,
        },
    ))
}

impl<Out: Serialize, In: DeserializeOwned> Channel<Out, In> {
    /// Wraps an inherited fd (the helper's end after exec).
    ///
    /// # Safety
    /// `fd` must be an open socket owned by nobody else.
    pub unsafe fn from_raw(fd: RawFd) -> Self {
        Channel {
            fd: OwnedFd::from_raw_fd(fd),
            _dir: PhantomData,
        }
    }

    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn send(&self, msg: &Out) -> io::Result<()> {
        self.send_with_fd(msg, None)
    }

    pub fn send_with_fd(&self, msg: &Out, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
        let mut frame = Vec::with_capacity(4 + body.len());
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(&body);
        let mut off = 0;
        let mut pending_fd = fd.map(|f| f.as_raw_fd());
        while off < frame.len() {
            let n = send_chunk(self.fd.as_raw_fd(), &frame[off..], pending_fd.take())?;
            off += n;
        }
        Ok(())
    }

    /// The next message, with an attached fd if the frame carried one. `Ok(None)` on EOF
    /// before a frame starts (the peer exec'd or exited).
    pub fn recv(&self) -> io::Result<Option<(In, Option<OwnedFd>)>> {
        let mut header = [0u8; 4];
        let mut got = 0;
        let mut fd = None;
        while got < 4 {
            let (n, f) = recv_chunk(self.fd.as_raw_fd(), &mut header[got..])?;
            if f.is_some() {
                fd = f;
            }
            if n == 0 {
                if got == 0 {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "truncated frame header",
                ));
            }
            got += n;
        }
        let len = u32::from_le_bytes(header) as usize;
        if len > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("frame of {len} bytes is too large"),
            ));
        }
        let mut body = vec![0u8; len];
        let mut got = 0;
        while got < len {
            let (n, f) = recv_chunk(self.fd.as_raw_fd(), &mut body[got..])?;
            if f.is_some() {
                fd = f;
            }
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "truncated frame",
                ));
            }
            got += n;
        }
        let msg = serde_json::from_slice(&body)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(Some((msg, fd)))
    }
}

fn send_chunk(sock: RawFd, data: &[u8], fd: Option<RawFd>) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut _,
        iov_len: data.len(),
    };
    // Room for one fd, aligned for cmsghdr.
    let mut cbuf = [0u64; 4];
    // SAFETY: msghdr is plain data.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_SPACE/CMSG_FIRSTHDR/CMSG_DATA on a buffer big enough for one int.
        unsafe {
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
    }
    loop {
        // SAFETY: msg points to live buffers.
        let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn recv_chunk(sock: RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = [0u64; 8];
    // SAFETY: msghdr is plain data.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
    let n = loop {
        // SAFETY: msg points to live buffers.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    let mut fd = None;
    // SAFETY: walking the control buffer the kernel filled.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<RawFd>();
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..count {
                    let raw = std::ptr::read_unaligned(data.add(i));
                    let owned = OwnedFd::from_raw_fd(raw);
                    if fd.is_none() {
                        fd = Some(owned);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n, fd))
}
