//! Hook records and the shim log: every run is logged once (handler, outcome, output tail) and
//! recorded as JSON in `<records root>/<namespace>/`, outside the bundle (containerd deletes the
//! bundle with the task), bounded by `RecordLimits::default()`.

use std::{path::PathBuf, time::SystemTime};

use lifecycle_hooks::{
    tail_for_message, HookFailure, HookKind, HookRecord, RecordLimits, RecordOutcome, RecordStore,
    MESSAGE_TAIL_MAX,
};

use super::runner::Run;

/// `LIFECYCLE_SHIM_RECORDS` overrides the root (tests); else /run/containerd/lifecycle-shim/records.
pub fn records_dir(namespace: &str) -> PathBuf {
    let root = std::env::var_os("LIFECYCLE_SHIM_RECORDS")
        .map(PathBuf::from)
        .unwrap_or_else(super::default_records_root);
    root.join(namespace)
}

pub(super) fn finish(
    namespace: &str,
    id: &str,
    container_name: Option<&str>,
    hook: HookKind,
    started: SystemTime,
    run: &Run,
) -> impl FnOnce() + Send + 'static {
    let tail = tail_for_message(&run.output, MESSAGE_TAIL_MAX);
    let (outcome, message) = match (&run.result, &run.cancelled) {
        (Some(Ok(())), _) => (RecordOutcome::Succeeded, None),
        (Some(Err(f)), _) => (RecordOutcome::Failed, Some(describe(f))),
        (None, c) => (
            RecordOutcome::Cancelled,
            Some(format!("cancelled: {}", c.as_deref().unwrap_or("unknown"))),
        ),
    };
    match &message {
        None => log::info!(
            "container {id}: {hook} {} succeeded; output: {tail}",
            run.summary
        ),
        Some(m) => log::warn!("container {id}: {hook} {} {m}; output: {tail}", run.summary),
    }
    let rec = HookRecord {
        container_id: id.to_owned(),
        container_name: container_name.map(str::to_owned),
        hook,
        handler: run.summary.clone(),
        started,
        ended: SystemTime::now(),
        outcome,
        exit_code: run.exit_code,
        message,
        output_tail: tail,
    };
    let dir = records_dir(namespace);
    let id = id.to_owned();
    move || {
        let store = RecordStore::new(dir, RecordLimits::default());
        if let Err(e) = store.write(&rec) {
            log::warn!("container {id}: {hook} record not written: {e}");
        }
    }
}

fn describe(f: &HookFailure) -> String {
    let mut s = f.to_string();
    let mut src = std::error::Error::source(f);
    while let Some(e) = src {
        let t = e.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = e.source();
    }
    s
}
