//! The task logic in process, with the real runtime and an event recorder in place of
//! containerd: the exact order of events, exit statuses and error codes. Needs root (it creates
//! containers). harness = false: this binary is re-executed as the runtime's helper, so `main`
//! must hand over to the runtime first.

mod common;

use std::{sync::Arc, time::Duration};

use containerd_shim_lifecycle_v1::{
    errors::TaskError,
    events::{Event, RecordingSink},
    task::Shim,
};
use containerd_shim_protos::{
    api::{CreateTaskRequest, ExecProcessRequest},
    protobuf::well_known_types::any::Any,
    types::task::Status,
};
use lifecycle_testsupport::{require_root, unique, Bundle};
use ttrpc::Code;

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

    /// (topic, process id, exit status) of every event so far.
    fn events(&self) -> Vec<(&'static str, String, u32)> {
        self.sink
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|e| match e {
                Event::Create(c) => ("create", c.container_id.clone(), 0),
                Event::Start(s) => ("start", s.container_id.clone(), 0),
                Event::Exit(x) => ("exit", x.id.clone(), x.exit_status),
                Event::Delete(d) => ("delete", d.container_id.clone(), d.exit_status),
                Event::ExecAdded(a) => ("exec-added", a.exec_id.clone(), 0),
                Event::ExecStarted(s) => ("exec-started", s.exec_id.clone(), 0),
                Event::Paused(p) => ("paused", p.container_id.clone(), 0),
                Event::Resumed(r) => ("resumed", r.container_id.clone(), 0),
                Event::Oom(o) => ("oom", o.container_id.clone(), 0),
            })
            .collect()
    }
}

fn bundle(args: &[&str], id: &str) -> Bundle {
    Bundle::new(args, &format!("/lc-shim-test/{id}"))
}

fn create_req(id: &str, bundle: &Bundle) -> CreateTaskRequest {
    let mut req = CreateTaskRequest::new();
    req.id = id.to_owned();
    req.bundle = bundle.path().display().to_string();
    req
}

fn exec_req(id: &str, exec_id: &str, args: &[&str]) -> ExecProcessRequest {
    let spec = serde_json::json!({
        "args": args, "cwd": "/", "user": {"uid": 0, "gid": 0},
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "terminal": false
    });
    let mut any = Any::new();
    any.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process".into();
    any.value = serde_json::to_vec(&spec).unwrap();
    let mut req = ExecProcessRequest::new();
    req.id = id.to_owned();
    req.exec_id = exec_id.to_owned();
    req.spec = Some(any).into();
    req
}

fn s(x: &str) -> String {
    x.to_owned()
}

async fn run_wait_delete_in_order(env: &Env) {
    let id = unique("order");
    let b = bundle(&["/bin/sh", "-c", "exit 3"], &id);
    let pid = env.shim.create(&create_req(&id, &b)).await.expect("create");
    assert!(pid > 0);
    assert_eq!(
        env.shim.state(&id, "").unwrap().status.enum_value(),
        Ok(Status::CREATED)
    );
    env.shim.start(&id, "").await.expect("start");
    let exit = tokio::time::timeout(Duration::from_secs(10), env.shim.wait(&id, ""))
        .await
        .expect("wait timed out")
        .unwrap();
    assert_eq!(exit.status, 3);
    let state = env.shim.state(&id, "").unwrap();
    assert_eq!(
        (state.status.enum_value(), state.exit_status),
        (Ok(Status::STOPPED), 3)
    );
    let err = env
        .shim
        .kill(&id, "", 9, false)
        .await
        .expect_err("kill after exit");
    assert_eq!(err.code(), Code::NOT_FOUND, "{err}");
    let err = env.shim.start(&id, "").await.expect_err("start after exit");
    assert_eq!(err.code(), Code::FAILED_PRECONDITION, "{err}");
    env.shim.delete(&id, "").await.expect("delete");
    assert_eq!(env.shim.state(&id, "").unwrap_err().code(), Code::NOT_FOUND);
    assert_eq!(
        env.events(),
        vec![
            ("create", id.clone(), 0),
            ("start", id.clone(), 0),
            ("exit", id.clone(), 3),
            ("delete", id.clone(), 3)
        ]
    );
}

async fn exec_events_and_errors(env: &Env) {
    let id = unique("exec");
    let b = bundle(&["/bin/sleep", "1000"], &id);
    env.shim.create(&create_req(&id, &b)).await.expect("create");
    env.shim.start(&id, "").await.expect("start");
    // An exec that exits at once: its exit still comes after exec-started.
    env.shim
        .exec(&exec_req(&id, "e1", &["/bin/sh", "-c", "exit 7"]))
        .expect("exec");
    let err = env
        .shim
        .exec(&exec_req(&id, "e1", &["/bin/true"]))
        .expect_err("duplicate exec id");
    assert_eq!(err.code(), Code::ALREADY_EXISTS, "{err}");
    env.shim.start(&id, "e1").await.expect("start exec");
    let exit = tokio::time::timeout(Duration::from_secs(10), env.shim.wait(&id, "e1"))
        .await
        .expect("exec wait")
        .unwrap();
    assert_eq!(exit.status, 7);
    env.shim.delete(&id, "e1").await.expect("delete exec");
    assert_eq!(
        env.shim.state(&id, "e1").unwrap_err().code(),
        Code::NOT_FOUND
    );
    let err = env
        .shim
        .delete(&id, "")
        .await
        .expect_err("delete of a running init");
    assert_eq!(err.code(), Code::FAILED_PRECONDITION, "{err}");
    env.shim.pause(&id).await.expect("pause");
    assert_eq!(
        env.shim.state(&id, "").unwrap().status.enum_value(),
        Ok(Status::PAUSED)
    );
    assert_eq!(
        env.shim.pause(&id).await.unwrap_err().code(),
        Code::FAILED_PRECONDITION
    );
    env.shim.resume(&id).await.expect("resume");
    env.shim.kill(&id, "", 9, true).await.expect("kill");
    let exit = tokio::time::timeout(Duration::from_secs(10), env.shim.wait(&id, ""))
        .await
        .expect("wait")
        .unwrap();
    assert_eq!(exit.status, 137);
    env.shim.delete(&id, "").await.expect("delete");
    assert_eq!(
        env.events(),
        vec![
            ("create", id.clone(), 0),
            ("start", id.clone(), 0),
            ("exec-added", s("e1"), 0),
            ("exec-started", s("e1"), 0),
            ("exit", s("e1"), 7),
            ("paused", id.clone(), 0),
            ("resumed", id.clone(), 0),
            ("exit", id.clone(), 137),
            ("delete", id.clone(), 137),
        ]
    );
}

async fn delete_of_a_created_task_reports_its_exit_first(env: &Env) {
    let id = unique("created");
    let b = bundle(&["/bin/true"], &id);
    env.shim.create(&create_req(&id, &b)).await.expect("create");
    env.shim.delete(&id, "").await.expect("delete");
    assert_eq!(
        env.events(),
        vec![
            ("create", id.clone(), 0),
            ("exit", id.clone(), 137),
            ("delete", id.clone(), 137)
        ]
    );
    let err = env.shim.create(&create_req(&id, &b)).await.map(|_| ());
    // The id is free again once deleted.
    err.expect("create again");
    env.shim.delete(&id, "").await.expect("delete again");
}

async fn bad_requests_have_the_right_codes(env: &Env) {
    assert_eq!(
        env.shim.start("nope", "").await.unwrap_err().code(),
        Code::NOT_FOUND
    );
    let id = unique("bad");
    let b = bundle(&["/bin/sleep", "1000"], &id);
    env.shim.create(&create_req(&id, &b)).await.expect("create");
    assert_eq!(
        env.shim
            .create(&create_req(&id, &b))
            .await
            .unwrap_err()
            .code(),
        Code::ALREADY_EXISTS
    );
    assert_eq!(
        env.shim.kill(&id, "", 0, false).await.unwrap_err().code(),
        Code::INVALID_ARGUMENT
    );
    assert_eq!(
        env.shim
            .kill(&id, "nope", 9, false)
            .await
            .unwrap_err()
            .code(),
        Code::NOT_FOUND
    );
    assert_eq!(
        env.shim.resize_pty(&id, "", 80, 24).unwrap_err().code(),
        Code::FAILED_PRECONDITION
    );
    let mut bad = exec_req(&id, "x", &["/bin/true"]);
    bad.spec.as_mut().unwrap().value = b"{not json".to_vec();
    assert_eq!(
        env.shim.exec(&bad).unwrap_err().code(),
        Code::INVALID_ARGUMENT
    );
    env.shim.delete(&id, "").await.expect("delete");
}

/// Every request naming an unknown task or exec, and every request in the wrong state,
/// answers the code docs/shim.md gives (and nothing panics).
async fn unknown_ids_and_wrong_states_answer_their_codes(env: &Env) {
    let nf = Code::NOT_FOUND;
    let code = |r: Result<(), TaskError>| r.map(|_| ()).unwrap_err().code();
    assert_eq!(code(env.shim.state("nope", "").map(|_| ())), nf);
    assert_eq!(code(env.shim.kill("nope", "", 9, false).await), nf);
    assert_eq!(code(env.shim.delete("nope", "").await.map(|_| ())), nf);
    assert_eq!(code(env.shim.wait("nope", "").await.map(|_| ())), nf);
    assert_eq!(code(env.shim.pause("nope").await), nf);
    assert_eq!(code(env.shim.resume("nope").await), nf);
    assert_eq!(
        code(env.shim.exec(&exec_req("nope", "x", &["/bin/true"]))),
        nf
    );
    assert_eq!(code(env.shim.close_io("nope", "")), nf);
    assert_eq!(code(env.shim.pids("nope").await.map(|_| ())), nf);
    assert_eq!(code(env.shim.resize_pty("nope", "", 80, 24)), nf);

    let id = unique("codes");
    let b = bundle(&["/bin/sleep", "1000"], &id);
    env.shim.create(&create_req(&id, &b)).await.expect("create");
    assert_eq!(code(env.shim.state(&id, "nope").map(|_| ())), nf);
    assert_eq!(code(env.shim.start(&id, "nope").await.map(|_| ())), nf);
    assert_eq!(code(env.shim.delete(&id, "nope").await.map(|_| ())), nf);
    assert_eq!(code(env.shim.kill(&id, "nope", 9, false).await), nf);
    env.shim.start(&id, "").await.expect("start");
    let fp = Code::FAILED_PRECONDITION;
    assert_eq!(code(env.shim.start(&id, "").await.map(|_| ())), fp);
    assert_eq!(code(env.shim.delete(&id, "").await.map(|_| ())), fp);
    env.shim.pause(&id).await.expect("pause");
    assert_eq!(code(env.shim.pause(&id).await), fp);
    env.shim.resume(&id).await.expect("resume");
    env.shim
        .exec(&exec_req(&id, "x", &["/bin/sleep", "1000"]))
        .expect("exec");
    assert_eq!(
        code(env.shim.exec(&exec_req(&id, "x", &["/bin/true"]))),
        Code::ALREADY_EXISTS
    );
    env.shim.start(&id, "x").await.expect("start exec");
    assert_eq!(code(env.shim.start(&id, "x").await.map(|_| ())), fp);
    env.shim.kill(&id, "", 9, true).await.expect("kill");
    tokio::time::timeout(Duration::from_secs(10), env.shim.wait(&id, ""))
        .await
        .expect("wait")
        .unwrap();
    assert_eq!(code(env.shim.kill(&id, "", 9, false).await), nf);
    assert_eq!(code(env.shim.start(&id, "").await.map(|_| ())), fp);
    tokio::time::timeout(Duration::from_secs(10), env.shim.wait(&id, "x"))
        .await
        .expect("wait exec")
        .unwrap();
    env.shim.delete(&id, "x").await.expect("delete exec");
    env.shim.delete(&id, "").await.expect("delete");
    assert_eq!(code(env.shim.delete(&id, "").await.map(|_| ())), nf);
    assert_eq!(code(env.shim.state(&id, "").map(|_| ())), nf);
}

async fn update_changes_the_cgroup(env: &Env) {
    let id = unique("upd");
    let b = bundle(&["/bin/sleep", "1000"], &id);
    env.shim.create(&create_req(&id, &b)).await.expect("create");
    env.shim.start(&id, "").await.expect("start");
    let mut any = Any::new();
    any.type_url = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into();
    any.value = br#"{"memory":{"limit":67108864},"pids":{"limit":50}}"#.to_vec();
    env.shim.update(&id, Some(&any)).await.expect("update");
    let v1 = format!("/sys/fs/cgroup/memory/lc-shim-test/{id}/memory.limit_in_bytes");
    let v2 = format!("/sys/fs/cgroup/lc-shim-test/{id}/memory.max");
    let limit = std::fs::read_to_string(&v1)
        .or_else(|_| std::fs::read_to_string(&v2))
        .expect("memory limit file");
    assert_eq!(limit.trim(), "67108864");
    assert_eq!(
        env.shim.update(&id, None).await.unwrap_err().code(),
        Code::INVALID_ARGUMENT
    );
    env.shim.kill(&id, "", 9, true).await.expect("kill");
    tokio::time::timeout(Duration::from_secs(10), env.shim.wait(&id, ""))
        .await
        .expect("wait")
        .unwrap();
    env.shim.delete(&id, "").await.expect("delete");
}

fn main() {
    lifecycle_runtime::run_helper_if_requested();
    require_root();
    common::run_tests!(
        run_wait_delete_in_order,
        exec_events_and_errors,
        delete_of_a_created_task_reports_its_exit_first,
        bad_requests_have_the_right_codes,
        unknown_ids_and_wrong_states_answer_their_codes,
        update_changes_the_cgroup,
    );
    // The runtime removes each container's cgroup, not the parent the tests named.
    for dir in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = std::fs::remove_dir(dir.path().join("lc-shim-test"));
    }
}
