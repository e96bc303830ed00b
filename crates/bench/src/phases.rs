//! Where the time of `ctr run --rm /bin/true` goes, for both runtimes, from the timestamps in
//! containerd's debug log (a daemon at debug level, in its own pass: debug logging is not what
//! the headline figures are measured with). Runs are sequential, so every log line between a
//! run's start and its end belongs to it.

use std::{process::Command, time::SystemTime};

use lifecycle_testsupport::containerd::Containerd;

use crate::{measure::order, RUNTIMES};

/// The phases, in order, each ending at a marker (the first begins when the bench spawns ctr).
pub const PHASES: [(&str, Marker); 8] = [
    ("ctr start, container record", Marker::ContainerCreate),
    ("shim start (bundle, `start`, server up)", Marker::ShimUp),
    (
        "Create (connect, mounts, container create)",
        Marker::TaskCreate,
    ),
    ("Start", Marker::TaskStart),
    ("/bin/true runs, exit reaped", Marker::TaskExit),
    ("Delete", Marker::TaskDelete),
    (
        "shim shutdown, container record removed",
        Marker::ContainerDelete,
    ),
    ("ctr exit", Marker::End),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    /// containerd published /containers/create.
    ContainerCreate,
    /// The shim logged that it serves: ours `serving tasks`, runc-v2 `starting signal loop`.
    ShimUp,
    /// containerd received the shim's event (`event forwarded`).
    TaskCreate,
    TaskStart,
    TaskExit,
    TaskDelete,
    /// containerd published /containers/delete.
    ContainerDelete,
    /// ctr exited (the bench's clock).
    End,
}

impl Marker {
    /// Whether `line` (one containerd log line) is this marker.
    fn matches(self, line: &str) -> bool {
        let event = |verb: &str, topic: &str| {
            line.contains(&format!("msg=\"event {verb}\"")) && line.contains(topic)
        };
        match self {
            Marker::ContainerCreate => event("published", "topic=/containers/create "),
            // Shim lines are copied into containerd's log with the shim's own timestamp. The
            // runc-v2 line also appears escaped inside containerd's "cleanup warnings" (its
            // `delete` run), which `msg="` without a backslash excludes.
            Marker::ShimUp => {
                line.contains("msg=\"serving tasks for namespace")
                    || line.contains("msg=\"starting signal loop\"")
            }
            Marker::TaskCreate => event("forwarded", "topic=/tasks/create "),
            Marker::TaskStart => event("forwarded", "topic=/tasks/start "),
            Marker::TaskExit => event("forwarded", "topic=/tasks/exit "),
            Marker::TaskDelete => event("forwarded", "topic=/tasks/delete "),
            Marker::ContainerDelete => event("published", "topic=/containers/delete "),
            Marker::End => false,
        }
    }
}

/// One run: its window on the wall clock, in nanoseconds since the epoch.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub begin: i64,
    pub end: i64,
}

/// Per runtime, one row of phase durations (ms) per run whose every marker was found.
#[derive(Debug, Default)]
pub struct PhaseResults {
    pub runs: [Vec<[f64; PHASES.len()]>; 2],
    /// Runs for which a marker was missing from the log.
    pub incomplete: [usize; 2],
}

pub fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// `time="2026-11-21T20:40:02.329847603Z"` at the start of a logrus line, as nanoseconds
/// since the epoch.
pub fn line_time(line: &str) -> Option<i64> {
    let rest = line.strip_prefix("time=\"")?;
    rfc3339_nanos(&rest[..rest.find('"')?])
}

/// `2026-11-21T20:40:02.329847603Z` (UTC only) as nanoseconds since the epoch.
pub fn rfc3339_nanos(stamp: &str) -> Option<i64> {
    let stamp = stamp.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.split('-').map(|v| v.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|v| v.parse::<i64>());
    let (h, min, s) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let digits: String = frac.chars().take(9).collect();
    let nanos = digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32);
    let secs = days_from_civil(y, m, day) * 86_400 + h * 3600 + min * 60 + s;
    Some(secs * 1_000_000_000 + nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The phase durations (ms) of one run, or None when a marker is missing.
pub fn phases_of(log: &str, w: Window) -> Option<[f64; PHASES.len()]> {
    let mut marks = [None::<i64>; PHASES.len()];
    for line in log.lines() {
        let Some(t) = line_time(line) else { continue };
        if t < w.begin || t > w.end {
            continue;
        }
        for (i, (_, marker)) in PHASES.iter().enumerate() {
            if marks[i].is_none() && marker.matches(line) {
                marks[i] = Some(t);
            }
        }
    }
    marks[PHASES.len() - 1] = Some(w.end);
    let mut out = [0.0; PHASES.len()];
    let mut prev = w.begin;
    for (i, m) in marks.iter().enumerate() {
        let t = (*m)?;
        // A marker logged before the previous one (events race with RPC replies) counts as
        // an empty phase rather than a negative one.
        out[i] = (t - prev).max(0) as f64 / 1e6;
        prev = prev.max(t);
    }
    Some(out)
}

/// `runs` interleaved `ctr run --rm /bin/true` of each runtime on a debug-level daemon.
pub fn measure(
    daemon: &Containerd,
    rootfs: &str,
    runs: usize,
    failures: &mut Vec<String>,
) -> PhaseResults {
    let mut windows: [Vec<Window>; 2] = Default::default();
    for i in 0..runs {
        for r in order(i) {
            let id = format!("phase-{}-{i}", RUNTIMES[r].label);
            let mut cmd: Command = daemon.ctr_command(&[
                "run",
                "--rm",
                "--runtime",
                RUNTIMES[r].runtime,
                "--rootfs",
                rootfs,
                &id,
                "/bin/true",
            ]);
            let begin = unix_nanos(SystemTime::now());
            let out = cmd.output().expect("run ctr");
            let end = unix_nanos(SystemTime::now());
            if out.status.success() {
                windows[r].push(Window { begin, end });
            } else {
                failures.push(format!(
                    "{id}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
    }
    let log = daemon.log();
    let mut results = PhaseResults::default();
    for (r, windows) in windows.iter().enumerate() {
        for w in windows {
            match phases_of(&log, *w) {
                Some(p) => results.runs[r].push(p),
                None => results.incomplete[r] += 1,
            }
        }
    }
    results
}

/// `1.234ms`, `567.8µs`, `1.2s`, `800ns` (Rust's Debug of a Duration), in milliseconds.
pub fn parse_debug_duration(s: &str) -> Option<f64> {
    let split = s.find(|ch: char| ch.is_alphabetic() || ch == 'µ')?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    Some(match unit {
        "s" => n * 1e3,
        "ms" => n,
        "µs" | "us" => n / 1e3,
        "ns" => n / 1e6,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_timestamps_parse_to_unix_nanos() {
        let line = r#"time="2026-11-21T20:40:02.329847603Z" level=info msg="x""#;
        // date -d 2026-11-21T20:40:02Z +%s
        assert_eq!(line_time(line), Some(1_795_293_602_329_847_603));
        let short = r#"time="1970-01-02T00:00:00.5Z" level=info"#;
        assert_eq!(line_time(short), Some(86_400_500_000_000));
        assert_eq!(line_time("garbage"), None);
    }

    #[test]
    fn debug_durations_parse_to_ms() {
        let us = parse_debug_duration("918.743µs").unwrap();
        assert!((us - 0.918743).abs() < 1e-9, "{us}");
        assert_eq!(parse_debug_duration("20.5ms"), Some(20.5));
        assert_eq!(parse_debug_duration("1.5s"), Some(1500.0));
        assert_eq!(parse_debug_duration("12"), None);
    }

    #[test]
    fn phases_come_from_markers_inside_the_window() {
        let t = |ms: u32| format!("time=\"2026-11-21T20:40:02.{ms:03}000000Z\"");
        let log = [
            format!(
                "{} level=debug msg=\"event published\" ns=x topic=/containers/create type=x",
                t(10)
            ),
            format!(
                "{} level=info msg=\"serving tasks for namespace x (shim pid 1)\"",
                t(30)
            ),
            format!(
                "{} level=debug msg=\"event forwarded\" ns=x topic=/tasks/create type=x",
                t(45)
            ),
            format!(
                "{} level=debug msg=\"event forwarded\" ns=x topic=/tasks/start type=x",
                t(47)
            ),
            format!(
                "{} level=debug msg=\"event forwarded\" ns=x topic=/tasks/exit type=x",
                t(50)
            ),
            format!(
                "{} level=debug msg=\"event forwarded\" ns=x topic=/tasks/delete type=x",
                t(52)
            ),
            format!(
                "{} level=debug msg=\"event published\" ns=x topic=/containers/delete type=x",
                t(60)
            ),
        ]
        .join("\n");
        let begin = line_time(&t(0)).unwrap();
        let end = line_time(&t(70)).unwrap();
        let p = phases_of(&log, Window { begin, end }).unwrap();
        let want = [10.0, 20.0, 15.0, 2.0, 3.0, 2.0, 8.0, 10.0];
        for (got, want) in p.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{p:?}");
        }
        // Outside the window nothing matches.
        assert!(phases_of(
            &log,
            Window {
                begin: end,
                end: end + 1
            }
        )
        .is_none());
    }
}
