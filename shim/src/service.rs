//! The ttrpc Task service: converts requests to [`Shim`] calls and errors to ttrpc statuses
//! (in `errors::to_ttrpc`, the one place). Served under two names: `containerd.task.v2.Task`
//! (containerd 1.6/1.7, and 2.0-2.2 when the shim answered `start` with a bare address) and
//! `containerd.task.v3.Task` (2.x); the messages are the same.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use containerd_shim_protos::{
    api::{
        CheckpointTaskRequest, CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest,
        CreateTaskResponse, DeleteRequest, DeleteResponse, ExecProcessRequest, KillRequest,
        PauseRequest, PidsRequest, PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest,
        StartRequest, StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse,
        UpdateTaskRequest, WaitRequest, WaitResponse,
    },
    protobuf::well_known_types::empty::Empty,
    shim_async::{create_task, Task},
};
use ttrpc::r#async::{Service, TtrpcContext};

use crate::{
    errors::{to_ttrpc, TaskError},
    events::timestamp,
    stats,
    task::Shim,
};

pub const TASK_V3: &str = "containerd.task.v3.Task";
pub const TASK_V2: &str = "containerd.task.v2.Task";

#[derive(Clone)]
pub struct TaskService {
    pub shim: Arc<Shim>,
}

/// The Task service under both names, ready for `Server::register_service`.
pub fn services(shim: Arc<Shim>) -> HashMap<String, Service> {
    let svc = TaskService { shim };
    let mut all = create_task(Arc::new(svc.clone()));
    let v2 = create_task(Arc::new(svc))
        .remove(TASK_V3)
        .expect("the generated Task service is registered as containerd.task.v3.Task");
    all.insert(TASK_V2.to_owned(), v2);
    all
}

fn done<T>(rpc: &str, r: Result<T, TaskError>) -> ttrpc::Result<T> {
    r.map_err(|e| to_ttrpc(rpc, e))
}

#[async_trait]
impl Task for TaskService {
    async fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> ttrpc::Result<StateResponse> {
        done("State", self.shim.state(&req.id, &req.exec_id))
    }

    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        log::info!("Create {} (bundle {})", req.id, req.bundle);
        let t = std::time::Instant::now();
        let pid = done("Create", self.shim.create(&req).await)?;
        log::debug!("Create {} took {:?}", req.id, t.elapsed());
        let mut r = CreateTaskResponse::new();
        r.pid = pid;
        Ok(r)
    }

    async fn start(&self, ctx: &TtrpcContext, req: StartRequest) -> ttrpc::Result<StartResponse> {
        let t = std::time::Instant::now();
        // When the caller gives up: caps postStart (its timeout is this less 1 s).
        let deadline = u64::try_from(ctx.timeout_nano)
            .ok()
            .filter(|n| *n > 0)
            .and_then(|n| t.checked_add(std::time::Duration::from_nanos(n)));
        let pid = done(
            "Start",
            self.shim
                .start_with_deadline(&req.id, &req.exec_id, deadline)
                .await,
        )?;
        log::debug!("Start {} {} took {:?}", req.id, req.exec_id, t.elapsed());
        let mut r = StartResponse::new();
        r.pid = pid;
        Ok(r)
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: DeleteRequest,
    ) -> ttrpc::Result<DeleteResponse> {
        let t = std::time::Instant::now();
        let exit = done("Delete", self.shim.delete(&req.id, &req.exec_id).await)?;
        log::debug!("Delete {} {} took {:?}", req.id, req.exec_id, t.elapsed());
        let mut r = DeleteResponse::new();
        r.pid = exit.pid.max(0) as u32;
        r.exit_status = exit.status;
        r.exited_at = Some(timestamp(exit.at)).into();
        Ok(r)
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> ttrpc::Result<PidsResponse> {
        let processes = done("Pids", self.shim.pids(&req.id).await)?;
        let mut r = PidsResponse::new();
        r.processes = processes;
        Ok(r)
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> ttrpc::Result<Empty> {
        done("Pause", self.shim.pause(&req.id).await).map(|()| Empty::new())
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> ttrpc::Result<Empty> {
        done("Resume", self.shim.resume(&req.id).await).map(|()| Empty::new())
    }

    async fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        _req: CheckpointTaskRequest,
    ) -> ttrpc::Result<Empty> {
        done("Checkpoint", Err(TaskError::Unimplemented("Checkpoint")))
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> ttrpc::Result<Empty> {
        done(
            "Kill",
            self.shim
                .kill(&req.id, &req.exec_id, req.signal, req.all)
                .await,
        )
        .map(|()| Empty::new())
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> ttrpc::Result<Empty> {
        done("Exec", self.shim.exec(&req)).map(|()| Empty::new())
    }

    async fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> ttrpc::Result<Empty> {
        done(
            "ResizePty",
            self.shim
                .resize_pty(&req.id, &req.exec_id, req.width, req.height),
        )
        .map(|()| Empty::new())
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> ttrpc::Result<Empty> {
        done("CloseIO", self.shim.close_io(&req.id, &req.exec_id)).map(|()| Empty::new())
    }

    async fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> ttrpc::Result<Empty> {
        done(
            "Update",
            self.shim.update(&req.id, req.resources.as_ref()).await,
        )
        .map(|()| Empty::new())
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        let exit = done("Wait", self.shim.wait(&req.id, &req.exec_id).await)?;
        let mut r = WaitResponse::new();
        r.exit_status = exit.status;
        r.exited_at = Some(timestamp(exit.at)).into();
        Ok(r)
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> ttrpc::Result<StatsResponse> {
        let path = done("Stats", self.shim.cgroups_path(&req.id))?;
        let any = done(
            "Stats",
            stats::metrics(path.as_deref()).map_err(TaskError::from),
        )?;
        let mut r = StatsResponse::new();
        r.stats = Some(any).into();
        Ok(r)
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: ConnectRequest,
    ) -> ttrpc::Result<ConnectResponse> {
        let mut r = ConnectResponse::new();
        r.shim_pid = std::process::id();
        // containerd connects to a grouped shim with any of its task ids; an unknown id is
        // not an error here (the shim itself is what is connected to).
        r.task_pid = self.shim.init_pid(&req.id).unwrap_or(0);
        r.version = env!("CARGO_PKG_VERSION").to_owned();
        Ok(r)
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> ttrpc::Result<Empty> {
        // Only once the last task is gone (a grouped shim serves a whole pod).
        if self.shim.task_count() == 0 {
            self.shim.shutdown.notify_one();
        }
        Ok(Empty::new())
    }
}

#[cfg(test)]
mod tests {
    use containerd_shim_protos::{
        protobuf::Message,
        shim_async::{Client, TaskClient},
    };
    use ttrpc::{Code, Request};

    use super::*;
    use crate::events::RecordingSink;

    async fn call(
        client: &Client,
        service: &str,
        method: &str,
        payload: Vec<u8>,
    ) -> ttrpc::Result<Vec<u8>> {
        let mut req = Request::new();
        req.service = service.to_owned();
        req.method = method.to_owned();
        req.timeout_nano = 5_000_000_000;
        req.payload = payload;
        let resp = client.request(req).await?;
        if let Some(status) = resp.status.as_ref() {
            if status.code() != Code::OK {
                return Err(ttrpc::Error::RpcStatus(status.clone()));
            }
        }
        Ok(resp.payload)
    }

    #[tokio::test]
    async fn task_service_answers_under_v2_and_v3() {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("unix://{}/s.sock", dir.path().display());
        let shim = Arc::new(Shim::new("ns".into(), Arc::new(RecordingSink::default())));
        let mut server = ttrpc::r#async::Server::new()
            .bind(&addr)
            .unwrap()
            .register_service(services(shim));
        server.start().await.unwrap();
        let client = Client::connect(&addr).await.unwrap();

        for name in [TASK_V2, TASK_V3] {
            let mut req = ConnectRequest::new();
            req.id = "c1".into();
            let out = call(&client, name, "Connect", req.write_to_bytes().unwrap())
                .await
                .unwrap();
            let resp = ConnectResponse::parse_from_bytes(&out).unwrap();
            assert_eq!(resp.shim_pid, std::process::id(), "{name}");

            let mut req = StateRequest::new();
            req.id = "missing".into();
            match call(&client, name, "State", req.write_to_bytes().unwrap()).await {
                Err(ttrpc::Error::RpcStatus(s)) => {
                    assert_eq!(s.code(), Code::NOT_FOUND, "{name}: {s:?}")
                }
                other => panic!("{name}: State of a missing task answered {other:?}"),
            }
            let req = CheckpointTaskRequest::new();
            match call(&client, name, "Checkpoint", req.write_to_bytes().unwrap()).await {
                Err(ttrpc::Error::RpcStatus(s)) => {
                    assert_eq!(s.code(), Code::UNIMPLEMENTED, "{name}")
                }
                other => panic!("{name}: Checkpoint answered {other:?}"),
            }
        }

        // The generated (v3) client too.
        let tc = TaskClient::new(client);
        let resp = tc
            .connect(
                ttrpc::context::with_timeout(5_000_000_000),
                &ConnectRequest::new(),
            )
            .await
            .unwrap();
        assert_eq!(resp.shim_pid, std::process::id());
        server.shutdown().await.unwrap();
    }
}
