//! The shim's log: `log` records written to the `log` FIFO containerd opens in the bundle
//! (containerd copies it into its own log), in logrus' text format. Writes never block: if
//! containerd is not reading (or is restarting), a line is dropped rather than stalling an RPC.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::Path,
    sync::Mutex,
    time::SystemTime,
};

use log::{LevelFilter, Log, Metadata, Record};

struct FifoLogger {
    out: Mutex<Option<File>>,
    level: LevelFilter,
    ns: String,
}

impl Log for FifoLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let level = match record.level() {
            log::Level::Error => "error",
            log::Level::Warn => "warning",
            log::Level::Info => "info",
            log::Level::Debug => "debug",
            log::Level::Trace => "trace",
        };
        let msg = format!("{}", record.args()).replace('"', "\\\"");
        let line = format!(
            "time=\"{}\" level={level} msg=\"{msg}\" namespace={} pid={} runtime=io.containerd.lifecycle.v1\n",
            // As logrus writes times: `2006-01-02T15:04:05.000000000Z`.
            lifecycle_hooks::format_rfc3339(now, 9),
            self.ns,
            std::process::id()
        );
        if let Some(f) = self.out.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            let _ = f.write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

/// Logs to `<dir>/log` when containerd holds that FIFO open, else nowhere.
pub fn init(dir: &Path, namespace: &str, debug: bool) {
    let out = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(dir.join("log"))
        .ok();
    let level = if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    let logger = FifoLogger {
        out: Mutex::new(out),
        level,
        ns: namespace.to_owned(),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use lifecycle_hooks::format_rfc3339;

    /// The log's timestamps are logrus's: nanoseconds, always nine digits.
    #[test]
    fn rfc3339_times() {
        assert_eq!(
            format_rfc3339(Duration::new(0, 5), 9),
            "1970-01-01T00:00:00.000000005Z"
        );
        assert_eq!(
            format_rfc3339(Duration::new(1_795_290_674, 0), 9),
            "2026-11-21T19:51:14.000000000Z"
        );
        assert_eq!(
            format_rfc3339(Duration::new(951_782_400, 0), 9),
            "2000-02-29T00:00:00.000000000Z"
        );
    }
}
