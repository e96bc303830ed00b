//! runc-compatible logging. Errors (and, with `--debug`, debug lines) go to `--log` (default
//! stderr) in logrus's `text` format (`time="..." level=error msg="..."`) or, with
//! `--log-format json`, as JSON lines `{"level":"error","msg":"...","time":"..."}`:
//! containerd-shim-runc-v2 passes `--log <bundle>/log.json --log-format json` and reports the
//! last error line of that file. When `--log` is a file, the bare message is also printed on
//! stderr, as runc does.

use std::{
    fs::File,
    io::Write,
    sync::{Mutex, OnceLock},
    time::{SystemTime, UNIX_EPOCH},
};

struct Logger {
    file: Option<Mutex<File>>,
    json: bool,
    debug: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sets up logging from the global flags. The log file is opened close-on-exec (std's
/// default), so no container process ever holds it.
pub fn init(path: Option<&str>, format: &str, debug: bool) -> Result<(), String> {
    let json = match format {
        "text" | "" => false,
        "json" => true,
        other => return Err(format!("invalid log-format: {other}")),
    };
    let file = match path {
        None | Some("") | Some("/dev/stderr") => None,
        Some(p) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("failed to open log file {p}: {e}"))?,
        )),
    };
    let _ = LOGGER.set(Logger { file, json, debug });
    Ok(())
}

fn line(level: &str, msg: &str, json: bool) -> String {
    let time = rfc3339(SystemTime::now(), false);
    if json {
        serde_json::json!({"level": level, "msg": msg, "time": time}).to_string() + "\n"
    } else {
        format!("time={time:?} level={level} msg={msg:?}\n")
    }
}

fn write(level: &str, msg: &str) {
    let Some(l) = LOGGER.get() else {
        let _ = std::io::stderr().write_all(line(level, msg, false).as_bytes());
        return;
    };
    match &l.file {
        Some(f) => {
            if let Ok(mut f) = f.lock() {
                let _ = f.write_all(line(level, msg, l.json).as_bytes());
            }
        }
        None => {
            let _ = std::io::stderr().write_all(line(level, msg, l.json).as_bytes());
        }
    }
}

/// Logs a fatal error: to the log, and as a bare line on stderr when the log is a file.
pub fn error(msg: &str) {
    write("error", msg);
    if LOGGER.get().is_some_and(|l| l.file.is_some()) {
        let _ = writeln!(std::io::stderr(), "{msg}");
    }
}

pub fn debug(msg: &str) {
    if LOGGER.get().is_some_and(|l| l.debug) {
        write("debug", msg);
    }
}

/// RFC 3339 in UTC, as Go formats it: seconds only (`time.RFC3339`), or with the nanoseconds
/// and their trailing zeros trimmed (`time.RFC3339Nano`, runc's `created`).
pub fn rfc3339(t: SystemTime, nanos: bool) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, day) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if nanos && d.subsec_nanos() != 0 {
        let frac = format!("{:09}", d.subsec_nanos());
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn formats_like_go() {
        let t = UNIX_EPOCH + Duration::new(1_795_214_653, 717_045_400);
        assert_eq!(rfc3339(t, false), "2026-11-20T22:44:13Z");
        assert_eq!(rfc3339(t, true), "2026-11-20T22:44:13.7170454Z");
        assert_eq!(rfc3339(UNIX_EPOCH, true), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400), false),
            "2000-02-29T00:00:00Z"
        );
        let l = line("error", "say \"x\"", false);
        assert!(l.ends_with(" level=error msg=\"say \\\"x\\\"\"\n"), "{l}");
        let j: serde_json::Value = serde_json::from_str(&line("error", "boom", true)).unwrap();
        assert_eq!(j["level"], "error");
        assert_eq!(j["msg"], "boom");
    }
}
