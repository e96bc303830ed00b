//! The lifecycle hooks' costs (ours only): the Start latency a trivial exec postStart adds,
//! and how late the container dies after its grace deadline.

use std::{
    fs,
    io::{BufRead, BufReader},
    process::Stdio,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use lifecycle_testsupport::containerd::Containerd;

use crate::{
    measure::remove_all,
    phases::{parse_debug_duration, rfc3339_nanos},
    RUNTIMES,
};

const POST_START: &str = r#"lifecycle.shim/post-start={"exec":{"command":["/bin/true"]}}"#;
/// The grace period of the deadline measurement. At least 2 s more than the time preStop
/// and the stop signal take, so the deadline is Kill + grace (with less than 2 s left at the
/// signal, the shim would move it to 2 s after the signal, as kubelet).
pub const GRACE_SECONDS: u64 = 3;

/// Samples, milliseconds.
#[derive(Debug, Default)]
pub struct HookResults {
    /// The shim's Start RPC (its debug log: `Start <id>  took ...`): without, with the hook.
    pub start: [Vec<f64>; 2],
    /// `ctr run -d` end to end: without, with the hook.
    pub run_d: [Vec<f64>; 2],
    /// Container exit (TaskExit `exited_at`) minus the deadline (Kill + grace).
    pub grace_late: Vec<f64>,
}

/// `runs` interleaved `ctr run -d` of a sleeping container with and without a `/bin/true`
/// postStart, on a debug-level daemon (the shim logs each Start's duration at debug).
pub fn post_start(
    daemon: &Containerd,
    rootfs: &str,
    runs: usize,
    results: &mut HookResults,
    failures: &mut Vec<String>,
) {
    let mut ids: [Vec<String>; 2] = Default::default();
    for i in 0..runs {
        for hook in crate::measure::order(i) {
            let id = format!("poststart-{hook}-{i}");
            let mut args = vec!["run", "-d", "--runtime", RUNTIMES[0].runtime];
            if hook == 1 {
                args.extend(["--annotation", POST_START]);
            }
            args.extend(["--rootfs", rootfs, &id, "/bin/sleep", "1000000"]);
            let t = Instant::now();
            let out = daemon.ctr_command(&args).output().expect("run ctr");
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if out.status.success() {
                results.run_d[hook].push(ms);
                ids[hook].push(id.clone());
            } else {
                failures.push(format!(
                    "{id}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            remove_all(daemon, &[id], failures);
        }
    }
    let log = daemon.log();
    for (hook, ids) in ids.iter().enumerate() {
        for id in ids {
            let needle = format!("msg=\"Start {id}  took ");
            let took = log.lines().find_map(|l| {
                let rest = &l[l.find(&needle)? + needle.len()..];
                parse_debug_duration(&rest[..rest.find('"')?])
            });
            match took {
                Some(ms) => results.start[hook].push(ms),
                None => failures.push(format!("{id}: no `Start {id} took` line in the log")),
            }
        }
    }
}

/// `runs` containers whose entrypoint ignores SIGTERM (a sleep as pid 1, which has no
/// handler), with `termination-grace-period-seconds` and a `sleep 0` preStop: Kill (SIGTERM),
/// then the time from the deadline to the exit.
///
/// The Kill's arrival is the preStop record's `started_unix_ms` (the hook starts as the Kill
/// arrives, millisecond resolution); the exit is the TaskExit event's `exited_at` (when the
/// shim's reaper collected it), read with `ctr events`.
pub fn grace(
    daemon: &Containerd,
    rootfs: &str,
    runs: usize,
    results: &mut HookResults,
    failures: &mut Vec<String>,
) {
    let mut events = daemon
        .ctr_command(&["events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ctr events");
    let (tx, rx) = mpsc::channel::<(String, i64)>();
    let stdout = events.stdout.take().expect("piped");
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(exit) = parse_exit(&line) {
                if tx.send(exit).is_err() {
                    break;
                }
            }
        }
    });
    // ctr events subscribes asynchronously: let it connect before the first exit.
    thread::sleep(Duration::from_millis(300));
    let grace = format!("lifecycle.shim/termination-grace-period-seconds={GRACE_SECONDS}");
    let pre_stop = r#"lifecycle.shim/pre-stop={"sleep":{"seconds":0}}"#;
    let records = format!(
        "/proc/{}/root/run/containerd/lifecycle-shim/records/{}",
        daemon.pid(),
        daemon.namespace
    );
    for i in 0..runs {
        let id = format!("grace-{i}");
        let out = daemon
            .ctr_command(&[
                "run",
                "-d",
                "--runtime",
                RUNTIMES[0].runtime,
                "--annotation",
                &grace,
                "--annotation",
                pre_stop,
                "--rootfs",
                rootfs,
                &id,
                "/bin/sleep",
                "1000000",
            ])
            .output()
            .expect("run ctr");
        if !out.status.success() {
            failures.push(format!(
                "{id}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            continue;
        }
        let out = daemon.ctr_raw(&["task", "kill", &id]);
        if !out.status.success() {
            failures.push(format!(
                "{id}: kill: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let wait_until = Instant::now() + Duration::from_secs(GRACE_SECONDS + 10);
        let mut exited = None;
        while let Some(left) = wait_until.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok((cid, at)) if cid == id => {
                    exited = Some(at);
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let started = prestop_started_ms(&records, &id);
        match (exited, started) {
            (Some(at), Some(ms)) => results
                .grace_late
                .push(at as f64 / 1e6 - (ms as f64 + GRACE_SECONDS as f64 * 1e3)),
            (None, _) => failures.push(format!("{id}: no TaskExit within the grace period + 10 s")),
            (_, None) => failures.push(format!("{id}: no preStop record in {records}")),
        }
        remove_all(daemon, &[id], failures);
    }
    let _ = events.kill();
    let _ = events.wait();
}

/// `... /tasks/exit {"container_id":"x",...,"exited_at":"2026-...Z"}` from `ctr events`.
fn parse_exit(line: &str) -> Option<(String, i64)> {
    let json = &line[line.find(" /tasks/exit ")? + " /tasks/exit ".len()..];
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let id = v.get("container_id")?.as_str()?.to_owned();
    let at = rfc3339_nanos(v.get("exited_at")?.as_str()?)?;
    Some((id, at))
}

fn prestop_started_ms(dir: &str, id: &str) -> Option<i64> {
    let infix = format!("-{id}-preStop-");
    fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        if !e.file_name().to_string_lossy().contains(&infix) {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&fs::read(e.path()).ok()?).ok()?;
        (v.get("container_id")?.as_str()? == id)
            .then(|| v.get("started_unix_ms")?.as_i64())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_exit_lines_of_ctr_events() {
        let line = r#"2026-11-21 20:40:59.024942882 +0000 UTC x /tasks/exit {"container_id":"g1","id":"g1","pid":19280,"exit_status":137,"exited_at":"2026-11-21T20:40:59.024805198Z"}"#;
        assert_eq!(
            parse_exit(line),
            Some(("g1".into(), 1_795_293_659_024_805_198))
        );
        assert_eq!(parse_exit("2026-11-21 x /tasks/start {}"), None);
    }
}
