//! Hook output (bounded, newest bytes kept), its one-line tail for messages, and hook outcomes.

use std::{collections::VecDeque, error::Error as StdError, fmt, time::Duration};

use crate::{probe::ProbeError, signal::Signal};

/// Default capacity of an [`OutputBuffer`].
pub const DEFAULT_OUTPUT_CAP: usize = 64 * 1024;
/// Longest output tail put into an error message (it reaches Kubernetes events).
pub const MESSAGE_TAIL_MAX: usize = 1024;

/// Keeps the newest `cap` bytes written to it (stdout and stderr of a hook interleaved as read).
#[derive(Debug, Clone)]
pub struct OutputBuffer {
    buf: VecDeque<u8>,
    cap: usize,
    dropped: u64,
}

impl OutputBuffer {
    pub fn new(cap: usize) -> Self {
        OutputBuffer {
            buf: VecDeque::with_capacity(cap.min(4096)),
            cap,
            dropped: 0,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        if data.len() >= self.cap {
            self.dropped += (self.buf.len() + data.len() - self.cap) as u64;
            self.buf.clear();
            self.buf.extend(&data[data.len() - self.cap..]);
            return;
        }
        let over = (self.buf.len() + data.len()).saturating_sub(self.cap);
        self.buf.drain(..over);
        self.dropped += over as u64;
        self.buf.extend(data);
    }

    /// The kept bytes, oldest first.
    pub fn contents(&self) -> Vec<u8> {
        let (a, b) = self.buf.as_slices();
        [a, b].concat()
    }

    /// How many of the oldest bytes were discarded to stay within the cap.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl Default for OutputBuffer {
    fn default() -> Self {
        OutputBuffer::new(DEFAULT_OUTPUT_CAP)
    }
}

/// One line of text from arbitrary bytes: invalid UTF-8 becomes U+FFFD, ANSI escape sequences
/// are dropped, every run of whitespace (newlines and tabs included) becomes one space, other
/// control characters (C0, DEL, C1) are removed, and the ends are trimmed.
pub(crate) fn sanitize_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut pending_space = false;
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters... final byte in 0x40..=0x7e. Other escapes: ESC + one char.
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
            continue;
        }
        if c.is_whitespace() {
            pending_space = true;
            continue;
        }
        if c.is_control() {
            continue;
        }
        if pending_space && !out.is_empty() {
            out.push(' ');
        }
        pending_space = false;
        out.push(c);
    }
    out
}

/// The newest output as one line of at most `max` bytes of valid UTF-8 (see `sanitize_line`).
/// When older text was cut, the line starts with `...` (counted within `max`).
pub fn tail_for_message(bytes: &[u8], max: usize) -> String {
    // Sanitizing only shrinks text, except that each invalid byte may become 3 bytes of U+FFFD:
    // a window of 4*max input bytes (plus a partial character) is always enough.
    let window = max.saturating_mul(4).saturating_add(4);
    let start = bytes.len().saturating_sub(window);
    let mut slice = &bytes[start..];
    if start > 0 {
        // Do not begin inside a UTF-8 sequence: skip continuation bytes.
        while let [b, rest @ ..] = slice {
            if b & 0xc0 != 0x80 {
                break;
            }
            slice = rest;
        }
    }
    let line = sanitize_line(slice);
    if line.len() <= max && start == 0 {
        return line;
    }
    with_ellipsis(&line, max)
}

fn with_ellipsis(line: &str, max: usize) -> String {
    const MARK: &str = "...";
    if max <= MARK.len() {
        return String::new();
    }
    let keep = max - MARK.len();
    let mut cut = line.len().saturating_sub(keep);
    while !line.is_char_boundary(cut) {
        cut += 1;
    }
    let rest = line[cut..].trim_start();
    format!("{MARK}{rest}")
}

/// Prefixes every line of a hook's output stream with `[postStart] ` / `[preStop] `, for
/// `hook-output: container`. Keeps its place across chunks, so a line split over two reads is
/// prefixed once. One per stream (stdout, stderr).
#[derive(Debug, Clone)]
pub struct LinePrefixer {
    prefix: &'static str,
    at_line_start: bool,
}

impl LinePrefixer {
    pub fn new(kind: HookKind) -> Self {
        let prefix = match kind {
            HookKind::PostStart => "[postStart] ",
            HookKind::PreStop => "[preStop] ",
        };
        LinePrefixer {
            prefix,
            at_line_start: true,
        }
    }

    /// The chunk with prefixes inserted at line starts.
    pub fn prefix(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len() + self.prefix.len());
        for line in chunk.split_inclusive(|&b| b == b'\n') {
            if self.at_line_start {
                out.extend_from_slice(self.prefix.as_bytes());
            }
            out.extend_from_slice(line);
            self.at_line_start = line.ends_with(b"\n");
        }
        out
    }
}

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookKind {
    PostStart,
    PreStop,
}

impl HookKind {
    /// Kubernetes' spelling, used in messages and records.
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::PostStart => "postStart",
            HookKind::PreStop => "preStop",
        }
    }
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a hook run did not succeed. Produced by the shim from a real run, or by the state
/// machines (timeout, container exit, cancellation).
#[derive(Debug, thiserror::Error)]
pub enum HookFailure {
    /// exec: the hook process exited with a non-zero code.
    #[error("exited with code {0}")]
    Exited(i32),
    /// exec: the hook process was killed by a signal.
    #[error("was killed by {0}")]
    Signaled(Signal),
    /// exec: the process could not be created or entered the container (missing binary, ...).
    #[error("could not be started: {0}")]
    Spawn(#[source] Box<dyn StdError + Send + Sync>),
    /// httpGet: a response with a status outside 200-399.
    #[error("returned HTTP status {0}")]
    HttpStatus(u16),
    /// httpGet / tcpSocket: resolution, connection or protocol failure.
    #[error("failed: {0}")]
    Probe(#[source] ProbeError),
    /// The hook did not finish in time.
    #[error("did not complete within {}", fmt_duration(*.0))]
    Timeout(Duration),
    /// postStart: the container's init exited while the hook ran (status as waitpid reports it
    /// to the shim: exit code, or 128+signal).
    #[error("container exited ({0})")]
    ContainerExited(i32),
    /// The hook was stopped before it finished.
    #[error("cancelled by {0}")]
    Cancelled(CancelReason),
}

/// What cancelled a running hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// A Kill with SIGKILL, or with `all`.
    Kill(Signal),
    /// The stop request (termination sequence started).
    StopRequest(Signal),
    Delete,
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CancelReason::Kill(s) => write!(f, "Kill with {s}"),
            CancelReason::StopRequest(s) => write!(f, "stop request ({s})"),
            CancelReason::Delete => f.write_str("Delete"),
        }
    }
}

fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

/// A failed hook, as Start reports it and as the shim logs it.
///
/// Display follows the contract: `postStart hook failed: <handler> <what happened>: <tail>`,
/// e.g. `postStart hook failed: exec [/bin/sh -c exit 3] exited with code 3: oops`. Two cases
/// lead with what happened, because the contract fixes those words:
/// `postStart hook failed: timeout: <handler> did not complete within 5s: <tail>` and
/// `postStart hook failed: container exited (N) before postStart completed: <handler>: <tail>`.
/// `: <tail>` is left out when the hook printed nothing.
#[derive(Debug)]
pub struct HookError {
    pub kind: HookKind,
    /// [`crate::Handler::summary`].
    pub handler: String,
    pub failure: HookFailure,
    /// [`tail_for_message`] of the hook's output; the shim fills it in before reporting.
    pub output_tail: String,
}

impl HookError {
    pub fn new(kind: HookKind, handler: String, failure: HookFailure) -> Self {
        HookError {
            kind,
            handler,
            failure,
            output_tail: String::new(),
        }
    }

    /// Sets the tail from the hook's captured output (newest 1 KiB, one line).
    pub fn with_output(mut self, output: &[u8]) -> Self {
        self.output_tail = tail_for_message(output, MESSAGE_TAIL_MAX);
        self
    }
}

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let HookError {
            kind,
            handler,
            failure,
            output_tail,
        } = self;
        match failure {
            HookFailure::Timeout(d) => write!(
                f,
                "{kind} hook failed: timeout: {handler} did not complete within {}",
                fmt_duration(*d)
            )?,
            HookFailure::ContainerExited(code) => write!(
                f,
                "{kind} hook failed: container exited ({code}) before {kind} completed: {handler}"
            )?,
            other => write!(f, "{kind} hook failed: {handler} {other}")?,
        }
        if !output_tail.is_empty() {
            write!(f, ": {output_tail}")?;
        }
        Ok(())
    }
}

impl StdError for HookError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.failure.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_buffer_keeps_newest() {
        let mut b = OutputBuffer::new(8);
        b.push(b"hello");
        assert_eq!(b.contents(), b"hello");
        b.push(b" world");
        assert_eq!(b.contents(), b"lo world");
        assert_eq!(b.dropped(), 3);
        b.push(b"0123456789");
        assert_eq!(b.contents(), b"23456789");
        assert_eq!(b.dropped(), 13);
        b.push(b"");
        assert_eq!(b.contents(), b"23456789");
        let mut z = OutputBuffer::new(0);
        z.push(b"abc");
        assert!(z.contents().is_empty());
    }

    #[test]
    fn tail_is_one_clean_line() {
        assert_eq!(
            tail_for_message(b"  line1\nline2\r\n\tx\x07y\x1b[31mred\x1b[0m \n", 1024),
            "line1 line2 xyred"
        );
        assert_eq!(tail_for_message(b"", 1024), "");
        assert_eq!(tail_for_message(b"ok \xff bad", 1024), "ok \u{fffd} bad");
        assert_eq!(
            tail_for_message("caf\u{e9}\u{9b}x".as_bytes(), 1024),
            "caf\u{e9}x"
        );
    }

    #[test]
    fn tail_keeps_newest_within_max_and_valid_utf8() {
        let long: String = (0..3000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let t = tail_for_message(long.as_bytes(), 1024);
        assert_eq!(t.len(), 1024);
        assert!(t.starts_with("..."));
        assert!(long.ends_with(&t[3..]));

        // Multi-byte characters: never split, never over max.
        let s = "\u{e9}".repeat(2000);
        for max in [10, 11, 1024] {
            let t = tail_for_message(s.as_bytes(), max);
            assert!(t.len() <= max, "{max}: {}", t.len());
            assert!(t.starts_with("...") && t[3..].chars().all(|c| c == '\u{e9}'));
        }
        // Cut inside a character at the window's start.
        let mut v = vec![b'x'; 10];
        v.extend("\u{e9}".repeat(3000).as_bytes());
        let t = tail_for_message(&v, 100);
        assert!(t.len() <= 100 && t.starts_with("..."));
        assert_eq!(tail_for_message(b"abcdef", 3), "");
        assert_eq!(tail_for_message(b"abcdef", 5), "...ef");
    }

    #[test]
    fn line_prefixer_across_chunks() {
        let mut p = LinePrefixer::new(HookKind::PostStart);
        assert_eq!(p.prefix(b"a\nb"), b"[postStart] a\n[postStart] b");
        assert_eq!(p.prefix(b"c\n\nd\n"), b"c\n[postStart] \n[postStart] d\n");
        assert_eq!(p.prefix(b""), b"");
        assert_eq!(
            LinePrefixer::new(HookKind::PreStop).prefix(b"x"),
            b"[preStop] x"
        );
    }

    #[test]
    fn messages() {
        let e = HookError::new(
            HookKind::PostStart,
            "exec [/bin/sh -c exit 3]".into(),
            HookFailure::Exited(3),
        )
        .with_output(b"no such thing\n");
        assert_eq!(
            e.to_string(),
            "postStart hook failed: exec [/bin/sh -c exit 3] exited with code 3: no such thing"
        );
        let e = HookError::new(
            HookKind::PostStart,
            "exec [sleep 9]".into(),
            HookFailure::Timeout(Duration::from_secs(5)),
        );
        assert_eq!(
            e.to_string(),
            "postStart hook failed: timeout: exec [sleep 9] did not complete within 5s"
        );
        let e = HookError::new(
            HookKind::PostStart,
            "exec [sleep 9]".into(),
            HookFailure::ContainerExited(2),
        );
        assert_eq!(e.to_string(), "postStart hook failed: container exited (2) before postStart completed: exec [sleep 9]");
        let e = HookError::new(
            HookKind::PostStart,
            "httpGet http://10.0.0.2:80/".into(),
            HookFailure::HttpStatus(500),
        );
        assert_eq!(
            e.to_string(),
            "postStart hook failed: httpGet http://10.0.0.2:80/ returned HTTP status 500"
        );
        let e = HookError::new(
            HookKind::PostStart,
            "exec [x]".into(),
            HookFailure::Cancelled(CancelReason::Kill(Signal::KILL)),
        );
        assert_eq!(
            e.to_string(),
            "postStart hook failed: exec [x] cancelled by Kill with SIGKILL"
        );
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory");
        let e = HookError::new(
            HookKind::PreStop,
            "exec [/nope]".into(),
            HookFailure::Spawn(Box::new(io)),
        );
        assert_eq!(
            e.to_string(),
            "preStop hook failed: exec [/nope] could not be started: no such file or directory"
        );
        assert!(e.source().is_some());
    }
}
