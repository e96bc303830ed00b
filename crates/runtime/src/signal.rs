//! Signal names and numbers, as users write them: `lifecycle.shim/stop-signal` (hooks crate),
//! `lifecycle-runc kill`.

use std::fmt;

/// A signal number in 1..=64, as the Linux kernel numbers them on this architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(i32);

/// First real-time signal as seen by programs linked against glibc (the kernel's 32 and 33 are
/// reserved by glibc). moby/containerd use the same number for `RTMIN+n` names.
const RTMIN: i32 = 34;
const RTMAX: i32 = 64;

/// Names accepted after an optional `SIG` prefix, matched case-insensitively.
/// Numbers come from libc so that they are right on every architecture we build for.
const NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

impl Signal {
    pub const KILL: Signal = Signal(libc::SIGKILL);
    pub const TERM: Signal = Signal(libc::SIGTERM);

    /// A signal from a number received over the wire (Kill's `signal` is a u32).
    /// `None` outside 1..=64, so a bad number from a client never panics.
    pub fn from_raw(n: u32) -> Option<Signal> {
        (1..=RTMAX as u32).contains(&n).then_some(Signal(n as i32))
    }

    pub fn as_raw(self) -> i32 {
        self.0
    }

    /// Parses `SIGTERM`, `term`, `15`, `SIGRTMIN+3`, `RTMAX-1`. `None` when unknown.
    pub fn parse(s: &str) -> Option<Signal> {
        let s = s.trim();
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s.parse::<u32>().ok().and_then(Signal::from_raw);
        }
        let upper = s.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Some(&(_, n)) = NAMES.iter().find(|(k, _)| *k == name) {
            return Some(Signal(n));
        }
        let rt = |rest: &str, base: i32, sign: i32| -> Option<Signal> {
            if rest.is_empty() {
                return Some(Signal(base));
            }
            let off: i32 = rest.parse().ok()?;
            let n = base + sign * off;
            (RTMIN..=RTMAX).contains(&n).then_some(Signal(n))
        };
        if let Some(rest) = name.strip_prefix("RTMIN") {
            return match rest.strip_prefix('+') {
                Some(off) => rt(off, RTMIN, 1),
                None if rest.is_empty() => rt("", RTMIN, 1),
                None => None,
            };
        }
        if let Some(rest) = name.strip_prefix("RTMAX") {
            return match rest.strip_prefix('-') {
                Some(off) => rt(off, RTMAX, -1),
                None if rest.is_empty() => rt("", RTMAX, -1),
                None => None,
            };
        }
        None
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The first name in the table wins (SIGABRT over SIGIOT, SIGCHLD over SIGCLD).
        match NAMES.iter().find(|(_, n)| *n == self.0) {
            Some((name, _)) => write!(f, "SIG{name}"),
            None if self.0 >= RTMIN => write!(f, "SIGRTMIN+{}", self.0 - RTMIN),
            None => write!(f, "signal {}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_prefixes() {
        assert_eq!(Signal::parse("SIGTERM"), Some(Signal::TERM));
        assert_eq!(Signal::parse("term"), Some(Signal::TERM));
        assert_eq!(Signal::parse("SigQuit"), Some(Signal(libc::SIGQUIT)));
        assert_eq!(Signal::parse("15"), Some(Signal::TERM));
        assert_eq!(Signal::parse("64"), Some(Signal(64)));
        assert_eq!(Signal::parse("SIGRTMIN+3"), Some(Signal(37)));
        assert_eq!(Signal::parse("RTMAX-1"), Some(Signal(63)));
        assert_eq!(Signal::parse("RTMIN"), Some(Signal(34)));
        for bad in [
            "0", "65", "SIGFOO", "", "-1", "RTMIN+31", "RTMINX", "SIG", "1.5",
        ] {
            assert_eq!(Signal::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn display_uses_canonical_name() {
        assert_eq!(Signal::TERM.to_string(), "SIGTERM");
        assert_eq!(Signal(libc::SIGABRT).to_string(), "SIGABRT");
        assert_eq!(Signal(36).to_string(), "SIGRTMIN+2");
        assert_eq!(Signal::from_raw(0), None);
        assert_eq!(Signal::from_raw(65), None);
    }
}
