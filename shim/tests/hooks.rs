//! Lifecycle hooks in process: the real runtime, the shim's task logic and an event recorder
//! in place of containerd, so the exact event order, states and error codes of every hook path
//! are asserted. Needs root. harness = false: this binary is re-executed as the runtime's
//! helper, so `main` hands over to the runtime first.
//!
//! Event order on a failed postStart: TaskCreate, TaskExit (the init's status, 137 after the
//! kill), and no TaskStart; then TaskDelete. containerd's runc shim gives the same for a Start
//! whose runc `start` failed after the init existed (its exit is published, no TaskStart).

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use containerd_shim_lifecycle_v1::{
    events::{Event, RecordingSink},
    task::Shim,
};
use containerd_shim_protos::{
    api::{CreateTaskRequest, ExecProcessRequest},
    protobuf::well_known_types::any::Any,
    types::task::Status,
};
use lifecycle_testsupport::{cgroup_dirs_left, require_root, unique, Bundle};
use ttrpc::Code;

const PS: &str = "lifecycle.shim/post-start";
const PRE: &str = "lifecycle.shim/pre-stop";
const GRACE: &str = "lifecycle.shim/termination-grace-period-seconds";
const ORDER: &str = "lifecycle.shim/post-start-order";
const FOREVER: &[&str] = &["/bin/sh", "-c", "sleep 1000 & wait"];
const WAIT: Duration = Duration::from_secs(20);

struct Env {
    shim: Arc<Shim>,
    sink: Arc<RecordingSink>,
}

impl Env {
    fn new() -> Env {
        let sink = Arc::new(RecordingSink::default());
        let shim = Arc::new(Shim::new("test".into(), sink.clone()));
        Env { shim, sink }
    }

    fn events(&self) -> Vec<(&'static str, u32)> {
        self.sink
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|e| match e {
                Event::Create(_) => ("create", 0),
                Event::Start(_) => ("start", 0),
                Event::Exit(x) => ("exit", x.exit_status),
                Event::Delete(d) => ("delete", d.exit_status),
                Event::ExecAdded(_) => ("exec-added", 0),
                Event::ExecStarted(_) => ("exec-started", 0),
                Event::Paused(_) => ("paused", 0),
                Event::Resumed(_) => ("resumed", 0),
                Event::Oom(_) => ("oom", 0),
            })
            .collect()
    }

    fn status(&self, id: &str) -> Status {
        self.shim
            .state(id, "")
            .unwrap()
            .status
            .enum_value()
            .unwrap()
    }

    async fn create(&self, id: &str, args: &[&str], annotations: &[(&str, String)]) -> Bundle {
        let mut b = Bundle::new(args, &format!("/lc-hooks-test/{id}"));
        b.spec["root"]["readonly"] = false.into();
        let map: serde_json::Map<String, serde_json::Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone().into()))
            .collect();
        b.spec["annotations"] = map.into();
        b.write_spec();
        let mut req = CreateTaskRequest::new();
        req.id = id.to_owned();
        req.bundle = b.path().display().to_string();
        self.shim.create(&req).await.expect("create");
        b
    }

    async fn wait_exit(&self, id: &str) -> u32 {
        tokio::time::timeout(WAIT, self.shim.wait(id, ""))
            .await
            .expect("wait timed out")
            .unwrap()
            .status
    }

    async fn delete(&self, id: &str) {
        self.shim.delete(id, "").await.expect("delete");
    }
}

fn exec(script: &str) -> String {
    serde_json::json!({"exec": {"command": ["/bin/sh", "-c", script]}}).to_string()
}

fn read(b: &Bundle, file: &str) -> String {
    std::fs::read_to_string(b.rootfs().join(file)).unwrap_or_default()
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn failed_post_start_stops_the_container_without_task_start(env: &Env) {
    let id = unique("psfail");
    let _b = env
        .create(&id, FOREVER, &[(PS, exec("echo oops >&2; exit 3"))])
        .await;
    let err = env.shim.start(&id, "").await.expect_err("start must fail");
    assert_eq!(err.code(), Code::UNKNOWN, "{err}");
    assert_eq!(
        err.to_string(),
        "postStart hook failed: exec [/bin/sh -c echo oops >&2; exit 3] exited with code 3: oops"
    );
    // Start answered after the init's exit: STOPPED with its status, TaskExit out.
    let state = env.shim.state(&id, "").unwrap();
    assert_eq!(
        (state.status.enum_value(), state.exit_status),
        (Ok(Status::STOPPED), 137)
    );
    let err = env.shim.start(&id, "").await.expect_err("second start");
    assert_eq!(err.code(), Code::FAILED_PRECONDITION, "{err}");
    let err = env.shim.kill(&id, "", 15, false).await.expect_err("kill");
    assert_eq!(err.code(), Code::NOT_FOUND, "{err}");
    env.delete(&id).await;
    assert_eq!(
        env.events(),
        vec![("create", 0), ("exit", 137), ("delete", 137)]
    );
    // One JSON record of the run, outside the (deleted) bundle.
    let dir =
        std::path::PathBuf::from(std::env::var_os("LIFECYCLE_SHIM_RECORDS").unwrap()).join("test");
    let records = || -> Vec<serde_json::Value> {
        std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(&id))
            .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
            .collect()
    };
    // Written off the async worker, a moment after the run.
    until("the hook record", || !records().is_empty()).await;
    let records = records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["hook"], "postStart");
    assert_eq!(records[0]["outcome"], "failed");
    assert_eq!(records[0]["exit_code"], 3);
    assert_eq!(records[0]["output_tail"], "oops");
}

/// A missing binary, and an entrypoint that exits before the hook is done.
async fn post_start_spawn_failure_and_early_exit(env: &Env) {
    let id = unique("psmiss");
    let _b = env
        .create(
            &id,
            FOREVER,
            &[(PS, r#"{"exec":{"command":["/no/such/binary"]}}"#.into())],
        )
        .await;
    let err = env.shim.start(&id, "").await.expect_err("start fails");
    assert!(
        err.to_string()
            .starts_with("postStart hook failed: exec [/no/such/binary] could not be started: "),
        "{err}"
    );
    assert_eq!(env.status(&id), Status::STOPPED);
    env.delete(&id).await;

    env.sink.0.lock().unwrap().clear();
    let id = unique("psearly");
    let _b = env
        .create(
            &id,
            &["/bin/sh", "-c", "exit 5"],
            &[(PS, exec("sleep 100"))],
        )
        .await;
    let err = env.shim.start(&id, "").await.expect_err("start fails");
    assert_eq!(
        err.to_string(),
        "postStart hook failed: container exited (5) before postStart completed: exec [/bin/sh -c sleep 100]"
    );
    env.delete(&id).await;
    assert_eq!(
        env.events(),
        vec![("create", 0), ("exit", 5), ("delete", 5)]
    );
}

/// The hook runs on its own: a Start call whose caller went away still ends in TaskStart.
async fn dropped_start_call_does_not_stop_post_start(env: &Env) {
    let id = unique("psdrop");
    let b = env
        .create(&id, FOREVER, &[(PS, exec("sleep 1; echo done > /tmp/ps"))])
        .await;
    let shim = env.shim.clone();
    let id2 = id.clone();
    let start = tokio::spawn(async move { shim.start(&id2, "").await });
    until("hook running", || env.status(&id) == Status::RUNNING).await;
    start.abort();
    until("TaskStart", || env.events().iter().any(|e| e.0 == "start")).await;
    assert_eq!(read(&b, "tmp/ps"), "done\n");
    env.shim.kill(&id, "", 9, false).await.expect("kill");
    env.wait_exit(&id).await;
    env.delete(&id).await;
    assert_eq!(
        env.events(),
        vec![("create", 0), ("start", 0), ("exit", 137), ("delete", 137)]
    );
}

/// The Start call's deadline less 1 s caps the hook.
async fn start_deadline_caps_post_start(env: &Env) {
    let id = unique("psdl");
    let _b = env.create(&id, FOREVER, &[(PS, exec("sleep 100"))]).await;
    let t = Instant::now();
    let err = env
        .shim
        .start_with_deadline(&id, "", Some(t + Duration::from_secs(2)))
        .await
        .expect_err("timeout");
    assert!(
        t.elapsed() < Duration::from_millis(1900),
        "{:?}",
        t.elapsed()
    );
    assert!(
        err.to_string().starts_with(
            "postStart hook failed: timeout: exec [/bin/sh -c sleep 100] did not complete within"
        ),
        "{err}"
    );
    assert_eq!(env.status(&id), Status::STOPPED);
    env.delete(&id).await;
}

async fn concurrent_post_start_running_state_second_start_and_exec(env: &Env) {
    let id = unique("pscon");
    let b = env
        .create(&id, FOREVER, &[(PS, exec("sleep 1; echo done > /tmp/ps"))])
        .await;
    let shim = env.shim.clone();
    let id2 = id.clone();
    let start = tokio::spawn(async move { shim.start(&id2, "").await });
    until("entrypoint released", || env.status(&id) == Status::RUNNING).await;
    assert!(
        env.events().iter().all(|e| e.0 != "start"),
        "no TaskStart yet"
    );
    let err = env.shim.start(&id, "").await.expect_err("second start");
    assert_eq!(err.code(), Code::FAILED_PRECONDITION, "{err}");
    // Exec is allowed while postStart runs.
    let spec = serde_json::json!({
        "args": ["/bin/true"], "cwd": "/", "user": {"uid": 0, "gid": 0},
        "env": ["PATH=/bin"], "terminal": false
    });
    let mut any = Any::new();
    any.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process".into();
    any.value = serde_json::to_vec(&spec).unwrap();
    let mut req = ExecProcessRequest::new();
    req.id = id.clone();
    req.exec_id = "e1".into();
    req.spec = Some(any).into();
    env.shim.exec(&req).expect("exec");
    env.shim.start(&id, "e1").await.expect("start exec");
    start.await.unwrap().expect("start");
    assert_eq!(read(&b, "tmp/ps"), "done\n");
    env.shim.kill(&id, "", 9, true).await.expect("kill");
    assert_eq!(env.wait_exit(&id).await, 137);
    env.shim.delete(&id, "e1").await.expect("delete exec");
    env.delete(&id).await;
    let topics: Vec<&str> = env.events().iter().map(|e| e.0).collect();
    assert_eq!(topics[0], "create");
    let start_at = topics.iter().position(|t| *t == "start").unwrap();
    let init_exit = topics.iter().rposition(|t| *t == "exit").unwrap();
    assert!(start_at < init_exit, "{topics:?}");
    assert_eq!(topics.last(), Some(&"delete"));
}

async fn before_entrypoint_holds_the_entrypoint_in_created(env: &Env) {
    let id = unique("psbe");
    let b = env
        .create(
            &id,
            &[
                "/bin/sh",
                "-c",
                "cat /tmp/mark > /tmp/seen 2>&1 || echo missing > /tmp/seen; sleep 1000 & wait",
            ],
            &[
                (PS, exec("sleep 1; echo hook > /tmp/mark")),
                (ORDER, "before-entrypoint".into()),
            ],
        )
        .await;
    let shim = env.shim.clone();
    let id2 = id.clone();
    let start = tokio::spawn(async move { shim.start(&id2, "").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(env.status(&id), Status::CREATED);
    start.await.unwrap().expect("start");
    until("entrypoint", || !read(&b, "tmp/seen").is_empty()).await;
    assert_eq!(read(&b, "tmp/seen"), "hook\n");
    env.shim.kill(&id, "", 9, false).await.expect("kill");
    env.wait_exit(&id).await;
    env.delete(&id).await;
    assert_eq!(
        env.events(),
        vec![("create", 0), ("start", 0), ("exit", 137), ("delete", 137)]
    );
}

/// SIGKILL, Kill with `all`, and Delete while postStart runs: the hook is cancelled, the
/// container killed, Start fails.
async fn kill_and_delete_cancel_a_running_post_start(env: &Env) {
    for how in ["sigkill", "all", "delete"] {
        env.sink.0.lock().unwrap().clear();
        let id = unique("pscancel");
        let _b = env.create(&id, FOREVER, &[(PS, exec("sleep 100"))]).await;
        let shim = env.shim.clone();
        let id2 = id.clone();
        let start = tokio::spawn(async move { shim.start(&id2, "").await });
        until("hook running", || env.status(&id) == Status::RUNNING).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = Instant::now();
        match how {
            "sigkill" => env.shim.kill(&id, "", 9, false).await.expect("kill"),
            "all" => env.shim.kill(&id, "", 15, true).await.expect("kill all"),
            _ => {
                env.delete(&id).await;
            }
        }
        let err = tokio::time::timeout(WAIT, start)
            .await
            .expect("start answered")
            .unwrap()
            .expect_err("start fails");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{how}: {:?}",
            t.elapsed()
        );
        let msg = err.to_string();
        assert!(msg.starts_with("postStart hook failed: "), "{how}: {msg}");
        assert!(msg.contains("cancelled by"), "{how}: {msg}");
        if how != "delete" {
            assert_eq!(env.wait_exit(&id).await, 137);
            env.delete(&id).await;
        }
        assert_eq!(
            env.events(),
            vec![("create", 0), ("exit", 137), ("delete", 137)],
            "{how}"
        );
    }
}

/// A stop request while postStart runs: the hook is cancelled, Start fails, and the
/// termination sequence stops the container (here by SIGKILL at the 1 s grace deadline).
async fn stop_request_during_post_start_runs_termination(env: &Env) {
    let id = unique("psstop");
    let _b = env
        .create(
            &id,
            FOREVER,
            &[(PS, exec("sleep 100")), (GRACE, "1".into())],
        )
        .await;
    let shim = env.shim.clone();
    let id2 = id.clone();
    let start = tokio::spawn(async move { shim.start(&id2, "").await });
    until("hook running", || env.status(&id) == Status::RUNNING).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    env.shim.kill(&id, "", 15, false).await.expect("kill");
    assert!(t.elapsed() < Duration::from_millis(500));
    assert_eq!(env.wait_exit(&id).await, 137);
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
    let err = start.await.unwrap().expect_err("start fails");
    assert!(err.to_string().contains("stop request"), "{err}");
    env.delete(&id).await;
    assert_eq!(
        env.events(),
        vec![("create", 0), ("exit", 137), ("delete", 137)]
    );
}

/// preStop, then the stop signal; Kill returns at once; a repeated stop request changes
/// nothing; events are the plain ones.
async fn pre_stop_then_stop_signal(env: &Env) {
    let id = unique("pre");
    let b = env
        .create(
            &id,
            &[
                "/bin/sh",
                "-c",
                "trap 'echo term >> /tmp/log; exit 0' TERM; sleep 1000 & wait",
            ],
            &[(PRE, exec("echo prestop >> /tmp/log; sleep 1"))],
        )
        .await;
    env.shim.start(&id, "").await.expect("start");
    let t = Instant::now();
    env.shim.kill(&id, "", 15, false).await.expect("kill");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    env.shim
        .kill(&id, "", 15, false)
        .await
        .expect("repeated stop request");
    assert_eq!(env.status(&id), Status::RUNNING);
    assert_eq!(env.wait_exit(&id).await, 0);
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert_eq!(read(&b, "tmp/log"), "prestop\nterm\n");
    let err = env.shim.kill(&id, "", 15, false).await.expect_err("exited");
    assert_eq!(err.code(), Code::NOT_FOUND);
    env.delete(&id).await;
    assert_eq!(
        env.events(),
        vec![("create", 0), ("start", 0), ("exit", 0), ("delete", 0)]
    );
}

/// No hook, grace 1 s, an init that ignores SIGTERM: less than 2 s remain at the signal, so
/// the deadline is 2 s after it (as kubelet); SIGKILL then. Prints how late the exit came.
async fn sigkill_at_the_grace_deadline(env: &Env) {
    let mut lates = Vec::new();
    for _ in 0..3 {
        let id = unique("grace");
        let _b = env
            .create(
                &id,
                &["/bin/sh", "-c", "trap '' TERM; sleep 1000 & wait"],
                &[(GRACE, "1".into())],
            )
            .await;
        env.shim.start(&id, "").await.expect("start");
        let t = SystemTime::now();
        env.shim.kill(&id, "", 15, false).await.expect("kill");
        let exit = tokio::time::timeout(WAIT, env.shim.wait(&id, ""))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(exit.status, 137);
        // Measured from before the Kill call: the signal goes a little later.
        let late = exit
            .at
            .duration_since(t + Duration::from_secs(2))
            .expect("not before the deadline");
        lates.push(late);
        env.delete(&id).await;
    }
    lates.sort();
    println!("grace deadline to exit: {lates:?}");
    assert!(
        lates[lates.len() / 2] < Duration::from_millis(50),
        "{lates:?}"
    );
    assert!(
        lates[lates.len() - 1] < Duration::from_millis(150),
        "{lates:?}"
    );
}

/// The init exits on its own while preStop runs: the hook is abandoned, the exit reported.
async fn exit_during_pre_stop_abandons_the_hook(env: &Env) {
    let id = unique("preexit");
    let _b = env
        .create(
            &id,
            &[
                "/bin/sh",
                "-c",
                "trap 'sleep 0.5; exit 4' USR1; sleep 1000 & wait",
            ],
            &[(PRE, exec("kill -USR1 1; sleep 100"))],
        )
        .await;
    env.shim.start(&id, "").await.expect("start");
    let t = Instant::now();
    env.shim.kill(&id, "", 15, false).await.expect("kill");
    assert_eq!(env.wait_exit(&id).await, 4);
    assert!(t.elapsed() < Duration::from_secs(5));
    env.delete(&id).await;
    assert_eq!(
        env.events(),
        vec![("create", 0), ("start", 0), ("exit", 4), ("delete", 4)]
    );
}

/// Under CRI the stop request is the first non-SIGKILL Kill with all=false, and its signal
/// (here SIGQUIT, an image's STOPSIGNAL) is the one forwarded after preStop. Other signals
/// before it pass through.
async fn cri_stop_request_forwards_its_signal(env: &Env) {
    let id = unique("cri");
    let b = env
        .create(
            &id,
            &[
                "/bin/sh",
                "-c",
                "trap 'echo quit >> /tmp/log; exit 0' QUIT; sleep 1000 & wait",
            ],
            &[
                ("io.kubernetes.cri.container-type", "container".into()),
                ("io.kubernetes.cri.container-name", "web".into()),
                (PRE, exec("echo prestop >> /tmp/log")),
            ],
        )
        .await;
    env.shim.start(&id, "").await.expect("start");
    env.shim.kill(&id, "", 3, false).await.expect("kill");
    assert_eq!(env.wait_exit(&id).await, 0);
    assert_eq!(read(&b, "tmp/log"), "prestop\nquit\n");
    env.delete(&id).await;
}

/// A paused container is resumed before preStop runs in it.
async fn paused_container_is_resumed_first(env: &Env) {
    let id = unique("paused");
    let b = env
        .create(
            &id,
            &["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
            &[(PRE, exec("echo prestop > /tmp/pre"))],
        )
        .await;
    env.shim.start(&id, "").await.expect("start");
    env.shim.pause(&id).await.expect("pause");
    env.shim.kill(&id, "", 15, false).await.expect("kill");
    assert_eq!(env.wait_exit(&id).await, 0);
    assert_eq!(read(&b, "tmp/pre"), "prestop\n");
    env.delete(&id).await;
    assert_eq!(
        env.events(),
        vec![
            ("create", 0),
            ("start", 0),
            ("paused", 0),
            ("resumed", 0),
            ("exit", 0),
            ("delete", 0)
        ]
    );
}

/// A bad annotation fails Create with InvalidArgument naming the key; nothing is left.
async fn malformed_annotation_fails_create(env: &Env) {
    let id = unique("bad");
    let cgroup = format!("/lc-hooks-test/{id}");
    let mut b = Bundle::new(FOREVER, &cgroup);
    b.spec["annotations"] = serde_json::json!({PS: r#"{"exec":{"command":[]}}"#});
    b.write_spec();
    let mut req = CreateTaskRequest::new();
    req.id = id.clone();
    req.bundle = b.path().display().to_string();
    let err = env.shim.create(&req).await.expect_err("create fails");
    assert_eq!(err.code(), Code::INVALID_ARGUMENT, "{err}");
    assert!(
        err.to_string()
            .contains("lifecycle.shim/post-start: exec.command is empty"),
        "{err}"
    );
    assert_eq!(env.shim.task_count(), 0);
    assert!(cgroup_dirs_left(&cgroup).is_empty());
    assert!(!b.path().join(".lifecycle").exists());
    assert!(env.events().is_empty());
}

/// A sandbox's annotations are validated, but it runs no hook.
async fn sandbox_runs_no_hooks(env: &Env) {
    let id = unique("sandbox");
    let b = env
        .create(
            &id,
            FOREVER,
            &[
                ("io.kubernetes.cri.container-type", "sandbox".into()),
                (PS, exec("echo ran > /tmp/ps")),
            ],
        )
        .await;
    env.shim.start(&id, "").await.expect("start");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(read(&b, "tmp/ps"), "");
    env.shim.kill(&id, "", 9, false).await.expect("kill");
    env.wait_exit(&id).await;
    env.delete(&id).await;
}

fn main() {
    lifecycle_runtime::run_helper_if_requested();
    require_root();
    // Before any thread exists.
    std::env::set_var(
        "LIFECYCLE_SHIM_RECORDS",
        std::env::temp_dir().join(format!("lc-hooks-records-{}", std::process::id())),
    );
    common::run_tests!(
        failed_post_start_stops_the_container_without_task_start,
        post_start_spawn_failure_and_early_exit,
        dropped_start_call_does_not_stop_post_start,
        start_deadline_caps_post_start,
        concurrent_post_start_running_state_second_start_and_exec,
        before_entrypoint_holds_the_entrypoint_in_created,
        kill_and_delete_cancel_a_running_post_start,
        stop_request_during_post_start_runs_termination,
        pre_stop_then_stop_signal,
        sigkill_at_the_grace_deadline,
        exit_during_pre_stop_abandons_the_hook,
        cri_stop_request_forwards_its_signal,
        paused_container_is_resumed_first,
        malformed_annotation_fails_create,
        sandbox_runs_no_hooks,
    );
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("lc-hooks-records-{}", std::process::id())),
    );
    for dir in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = std::fs::remove_dir(dir.path().join("lc-hooks-test"));
    }
}
