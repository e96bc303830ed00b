//! One JSON file per hook run, in a records directory outside the bundle (containerd deletes
//! the bundle with the task), kept within a file count and a byte budget by dropping the oldest.
//!
//! File names sort chronologically: `<unix-ms, 20 digits>-<container>-<hook>-<pid>-<seq>.json`.
//! Several shims may share a directory: writes are atomic (temporary file, then rename) and
//! pruning tolerates files that another shim removed first.

use std::{
    fs, io,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use crate::output::HookKind;

/// What a hook run came to, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordOutcome {
    Succeeded,
    Failed,
    /// Stopped by a timeout, a Kill, a Delete, or the container exiting.
    Cancelled,
}

/// One hook run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRecord {
    pub container_id: String,
    /// `io.kubernetes.cri.container-name`, if any.
    pub container_name: Option<String>,
    pub hook: HookKind,
    /// [`crate::Handler::summary`].
    pub handler: String,
    pub started: SystemTime,
    pub ended: SystemTime,
    pub outcome: RecordOutcome,
    /// exec only: the hook process's exit code.
    pub exit_code: Option<i32>,
    /// The failure or cancellation message, if not succeeded.
    pub message: Option<String>,
    /// [`crate::tail_for_message`] of the output.
    pub output_tail: String,
}

/// The on-disk form, versioned so a newer shim can read an older one's records.
#[derive(Serialize)]
struct RecordJson<'a> {
    version: u32,
    container_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_name: Option<&'a str>,
    hook: &'static str,
    handler: &'a str,
    started_at: String,
    ended_at: String,
    started_unix_ms: u64,
    ended_unix_ms: u64,
    duration_ms: u64,
    outcome: RecordOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    output_tail: &'a str,
}

/// Bounds of a records directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLimits {
    pub max_files: usize,
    pub max_bytes: u64,
}

impl Default for RecordLimits {
    fn default() -> Self {
        RecordLimits {
            max_files: 1000,
            max_bytes: 4 * 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("create records directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("write hook record {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("list records directory {path}: {source}")]
    List {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("encode hook record: {0}")]
    Encode(#[source] serde_json::Error),
}

/// A records directory.
#[derive(Debug, Clone)]
pub struct RecordStore {
    dir: PathBuf,
    limits: RecordLimits,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `2026-11-21T19:39:34.123Z` (millisecond records).
fn rfc3339(t: SystemTime) -> String {
    format_rfc3339(t.duration_since(UNIX_EPOCH).unwrap_or_default(), 3)
}

/// UTC time since the epoch as RFC 3339 with `fraction_digits` (0-9) digits of the second,
/// without a date library (Howard Hinnant's civil-from-days). The shim's log lines use it too.
pub fn format_rfc3339(since_epoch: Duration, fraction_digits: usize) -> String {
    let secs = since_epoch.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let digits = fraction_digits.min(9);
    let fraction = if digits == 0 {
        String::new()
    } else {
        let nanos = format!("{:09}", since_epoch.subsec_nanos());
        format!(".{}", &nanos[..digits])
    };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{fraction}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Keeps file names portable and free of path separators.
fn file_part(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    out.truncate(80);
    out
}

impl RecordStore {
    pub fn new(dir: impl Into<PathBuf>, limits: RecordLimits) -> Self {
        RecordStore {
            dir: dir.into(),
            limits,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes one record, then prunes the oldest beyond the limits. Returns the file written.
    pub fn write(&self, rec: &HookRecord) -> Result<PathBuf, RecordError> {
        fs::create_dir_all(&self.dir).map_err(|source| RecordError::CreateDir {
            path: self.dir.clone(),
            source,
        })?;
        let started_ms = unix_ms(rec.started);
        let ended_ms = unix_ms(rec.ended);
        let json = RecordJson {
            version: 1,
            container_id: &rec.container_id,
            container_name: rec.container_name.as_deref(),
            hook: rec.hook.as_str(),
            handler: &rec.handler,
            started_at: rfc3339(rec.started),
            ended_at: rfc3339(rec.ended),
            started_unix_ms: started_ms,
            ended_unix_ms: ended_ms,
            duration_ms: ended_ms.saturating_sub(started_ms),
            outcome: rec.outcome,
            exit_code: rec.exit_code,
            message: rec.message.as_deref(),
            output_tail: &rec.output_tail,
        };
        let mut bytes = serde_json::to_vec_pretty(&json).map_err(RecordError::Encode)?;
        bytes.push(b'\n');
        let name = format!(
            "{started_ms:020}-{}-{}-{}-{}.json",
            file_part(&rec.container_id),
            rec.hook.as_str(),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let write = fs::write(&tmp, &bytes).and_then(|()| fs::rename(&tmp, &path));
        if let Err(source) = write {
            let _ = fs::remove_file(&tmp);
            return Err(RecordError::Write { path, source });
        }
        self.prune(&path)?;
        Ok(path)
    }

    /// Drops the oldest records until both limits hold; never the one just written.
    fn prune(&self, keep: &Path) -> Result<(), RecordError> {
        let list_err = |source| RecordError::List {
            path: self.dir.clone(),
            source,
        };
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(list_err)? {
            let entry = entry.map_err(list_err)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            // Gone already (another shim pruned it): just skip it.
            let Ok(meta) = entry.metadata() else { continue };
            files.push((name.to_string(), meta.len()));
        }
        files.sort();
        let mut count = files.len();
        let mut bytes: u64 = files.iter().map(|(_, len)| len).sum();
        for (name, len) in &files {
            if count <= self.limits.max_files && bytes <= self.limits.max_bytes {
                break;
            }
            let path = self.dir.join(name);
            if path == keep {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("cannot prune hook record {}: {e}", path.display()),
            }
            count -= 1;
            bytes -= len;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn rec(id: &str, at_ms: u64, tail: &str) -> HookRecord {
        let t = UNIX_EPOCH + Duration::from_millis(at_ms);
        HookRecord {
            container_id: id.into(),
            container_name: Some("web".into()),
            hook: HookKind::PostStart,
            handler: "exec [/bin/sh -c exit 3]".into(),
            started: t,
            ended: t + Duration::from_millis(1500),
            outcome: RecordOutcome::Failed,
            exit_code: Some(3),
            message: Some(
                "postStart hook failed: exec [/bin/sh -c exit 3] exited with code 3".into(),
            ),
            output_tail: tail.into(),
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_json() {
        let tmp = tempfile::tempdir().unwrap();
        let store = RecordStore::new(tmp.path().join("records/default"), RecordLimits::default());
        let path = store
            .write(&rec("abc/../x", 1_795_376_374_123, "oops"))
            .unwrap();
        assert!(path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("00000001795376374123-abc____x-postStart-"));
        let v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["container_id"], "abc/../x");
        assert_eq!(v["container_name"], "web");
        assert_eq!(v["hook"], "postStart");
        assert_eq!(v["outcome"], "failed");
        assert_eq!(v["exit_code"], 3);
        assert_eq!(v["output_tail"], "oops");
        assert_eq!(v["started_at"], "2026-11-22T19:39:34.123Z");
        assert_eq!(v["ended_at"], "2026-11-22T19:39:35.623Z");
        assert_eq!(v["duration_ms"], 1500);
    }

    #[test]
    fn rfc3339_fraction_digits() {
        let t = Duration::new(951_782_400, 123_456_789);
        assert_eq!(format_rfc3339(t, 9), "2000-02-29T00:00:00.123456789Z");
        assert_eq!(format_rfc3339(t, 0), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(4_107_542_399)),
            "2100-02-28T23:59:59.000Z"
        );
    }

    #[test]
    fn keeps_at_most_n_files_newest_first() {
        let tmp = tempfile::tempdir().unwrap();
        let store = RecordStore::new(
            tmp.path(),
            RecordLimits {
                max_files: 3,
                max_bytes: u64::MAX,
            },
        );
        fs::write(tmp.path().join("unrelated.txt"), "x").unwrap();
        for i in 0..6 {
            store.write(&rec("c", 1000 + i, "")).unwrap();
        }
        let n = names(tmp.path());
        assert_eq!(n.len(), 4, "{n:?}");
        assert!(n[0].starts_with("00000000000000001003-"), "{n:?}");
        assert!(n[2].starts_with("00000000000000001005-"), "{n:?}");
        assert_eq!(n[3], "unrelated.txt");
    }

    #[test]
    fn keeps_within_byte_budget_but_always_the_newest() {
        let tmp = tempfile::tempdir().unwrap();
        let store = RecordStore::new(
            tmp.path(),
            RecordLimits {
                max_files: 100,
                max_bytes: 2000,
            },
        );
        let big = "x".repeat(900);
        for i in 0..5 {
            store.write(&rec("c", 1000 + i, &big)).unwrap();
        }
        let n = names(tmp.path());
        let total: u64 = n
            .iter()
            .map(|f| fs::metadata(tmp.path().join(f)).unwrap().len())
            .sum();
        assert!(total <= 2000, "{total}");
        assert!(n.last().unwrap().starts_with("00000000000000001004-"));
        // A record larger than the whole budget is still kept (alone).
        let store = RecordStore::new(
            tmp.path(),
            RecordLimits {
                max_files: 100,
                max_bytes: 10,
            },
        );
        let p = store.write(&rec("c", 2000, &big)).unwrap();
        assert_eq!(
            names(tmp.path()),
            [p.file_name().unwrap().to_str().unwrap()]
        );
    }

    #[test]
    fn unwritable_directory_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        fs::write(&file, "").unwrap();
        let store = RecordStore::new(file.join("sub"), RecordLimits::default());
        let e = store.write(&rec("c", 1, "")).unwrap_err();
        assert!(e.to_string().starts_with("create records directory"), "{e}");
    }
}
