//! The Kubernetes path: containerd's CRI plugin drives a runtime handler the way kubelet does
//! (RunPodSandbox, CreateContainer, StartContainer, ExecSync, StopContainer, RemoveContainer,
//! StopPodSandbox, RemovePodSandbox), with host-network pods and busybox images built offline.
//!
//! The plain flows run against containerd's runc shim (`runc`, the reference) and our shim
//! (`lc`); the lifecycle hook tests (below the plain flows) run with `lc` only.

use std::time::{Duration, Instant};

use lifecycle_testsupport::cri::{
    self, api, bundle_spec, container_config, container_log, spec_annotations, status_spec,
    use_pod_network, wait_for, Cri, CNI_SUBNET, HANDLER_LC, HANDLER_RUNC,
};

/// A shell entrypoint that reports the signals it gets in its log and exits 0 on TERM or QUIT.
/// PID 1 of a pid namespace ignores signals it has no handler for, so the traps are what
/// make it stop; `sleep 1` in the loop bounds how late a trap runs.
const REPORTER: &str = "trap 'echo got TERM; exit 0' TERM; trap 'echo got QUIT; exit 0' QUIT; \
                        echo ready; while :; do sleep 1; done";
/// An entrypoint with no handlers: as PID 1 it ignores the stop signal, only SIGKILL stops it.
const STUBBORN: &str = "echo ready; while :; do sleep 1; done";

fn app_image(cri: &Cri) -> String {
    cri.import_image("app", &["/bin/sh", "-c"], &[STUBBORN], None)
}

fn state(cri: &Cri, id: &str) -> api::ContainerStatus {
    cri.client
        .container_status(id)
        .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}"))
        .status
        .expect("ContainerStatus has a status")
}

fn wait_log(pod: &api::PodSandboxConfig, c: &api::ContainerConfig, needle: &str) -> String {
    wait_for(
        Duration::from_secs(10),
        &format!(
            "{needle:?} in the log of {}",
            c.metadata.as_ref().unwrap().name
        ),
        || {
            let log = container_log(pod, c);
            log.contains(needle).then_some(log)
        },
    )
}

/// The CRI log lines about stopping and killing container `id`.
fn stop_log_lines(cri: &Cri, id: &str) -> Vec<String> {
    cri.containerd
        .log()
        .lines()
        .filter(|l| l.contains(id) && (l.contains("Stop container") || l.contains("Kill")))
        .map(str::to_owned)
        .collect()
}

/// Records every `runc` command the runc shim runs (a wrapper first on containerd's PATH), so
/// a test sees what containerd asked the shim for; returns the record file.
fn record_runc_calls(cri: &Cri) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let runc = lifecycle_testsupport::require_bin("runc");
    let record = cri.dir.path().join("runc-calls");
    let wrapper = cri.containerd.dir.path().join("bin/runc");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\nexec {} \"$@\"\n",
            record.display(),
            runc.display()
        ),
    )
    .expect("write runc wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    record
}

/// The `runc kill` commands recorded for container `id`, as `[--all] SIGNAL`.
fn runc_kills(record: &std::path::Path, id: &str) -> Vec<String> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let kill = l.split(" kill ").nth(1)?;
            kill.contains(id).then(|| {
                kill.replace(id, "")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        })
        .collect()
}

/// The whole kubelet flow for one pod with one container, checking what containerd hands the
/// runtime (annotations in config.json) on the way.
fn pod_lifecycle(handler: &str) {
    let cri = Cri::start();
    let runc_record = (handler == HANDLER_RUNC).then(|| record_runc_calls(&cri));
    let version = cri.client.version().expect("Version");
    assert_eq!(version.runtime_name, "containerd");
    let image = app_image(&cri);

    let pod = cri.pod_config(
        "web-pod",
        &[
            ("lifecycle.shim/pre-stop", r#"{"sleep":{"seconds":0}}"#),
            ("post-start.lifecycle.shim/web", "none"),
            ("example.com/not-passed", "x"),
        ],
    );
    let pod_id = cri
        .client
        .run_pod_sandbox(&pod, handler)
        .unwrap_or_else(|e| panic!("RunPodSandbox ({handler}): {e}\n{}", cri.containerd.log()));
    let sandbox = spec_annotations(&bundle_spec(&cri.containerd, &pod_id));
    eprintln!("sandbox annotations ({handler}): {sandbox:#?}");
    assert_eq!(sandbox["io.kubernetes.cri.container-type"], "sandbox");
    assert_eq!(sandbox["io.kubernetes.cri.sandbox-id"], pod_id);
    assert_eq!(sandbox["io.kubernetes.cri.sandbox-name"], "web-pod");
    assert_eq!(
        sandbox["lifecycle.shim/pre-stop"],
        r#"{"sleep":{"seconds":0}}"#
    );
    assert_eq!(sandbox["post-start.lifecycle.shim/web"], "none");
    assert!(!sandbox.contains_key("example.com/not-passed"));
    let sandbox_status = cri.client.pod_sandbox_status(&pod_id).expect("status");
    assert_eq!(
        sandbox_status.status.expect("sandbox status").state,
        api::PodSandboxState::SandboxReady as i32
    );

    let web = container_config(
        &pod,
        "web",
        &image,
        &["/bin/sh", "-c"],
        &[REPORTER],
        &[
            ("io.kubernetes.pod.terminationGracePeriod", "30"),
            (
                "io.kubernetes.container.preStopHandler",
                r#"{"exec":{"command":["/bin/false"]}}"#,
            ),
            ("io.kubernetes.cri.container-name", "spoofed"),
            ("lifecycle.shim/post-start", r#"{"exec":{"command":["x"]}}"#),
        ],
    );
    let id = cri
        .client
        .create_container(&pod_id, &web, &pod)
        .unwrap_or_else(|e| panic!("CreateContainer ({handler}): {e}\n{}", cri.containerd.log()));
    let info = cri
        .client
        .container_status(&id)
        .expect("ContainerStatus")
        .info;
    let app = spec_annotations(&status_spec(&info));
    eprintln!("app container annotations ({handler}): {app:#?}");
    assert_eq!(app["io.kubernetes.cri.container-type"], "container");
    assert_eq!(
        app["io.kubernetes.cri.container-name"], "web",
        "CRI's own keys win"
    );
    assert_eq!(app["io.kubernetes.cri.sandbox-id"], pod_id);
    assert_eq!(app["io.kubernetes.cri.image-name"], image);
    assert_eq!(app["lifecycle.shim/pre-stop"], r#"{"sleep":{"seconds":0}}"#);
    assert_eq!(app["post-start.lifecycle.shim/web"], "none");
    assert_eq!(app["io.kubernetes.pod.terminationGracePeriod"], "30");
    assert!(app.contains_key("io.kubernetes.container.preStopHandler"));
    assert!(
        !app.contains_key("lifecycle.shim/post-start"),
        "container annotations only pass `io.kubernetes.*`"
    );
    assert!(!app.contains_key("example.com/not-passed"));
    assert_eq!(
        state(&cri, &id).state,
        api::ContainerState::ContainerCreated as i32
    );

    cri.client
        .start_container(&id)
        .unwrap_or_else(|e| panic!("StartContainer ({handler}): {e}\n{}", cri.containerd.log()));
    let status = state(&cri, &id);
    assert_eq!(status.state, api::ContainerState::ContainerRunning as i32);
    assert_eq!(
        spec_annotations(&bundle_spec(&cri.containerd, &id)),
        app,
        "the runtime gets what CRI shows"
    );
    wait_log(&pod, &web, "ready");

    let out = cri
        .client
        .exec_sync(
            &id,
            &["/bin/sh", "-c", "echo hello; echo oops >&2; exit 3"],
            Duration::from_secs(10),
        )
        .expect("ExecSync");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    assert_eq!(out.exit_code, 3);
    let listed = cri
        .client
        .list_containers(Some(api::ContainerFilter {
            pod_sandbox_id: pod_id.clone(),
            ..Default::default()
        }))
        .expect("ListContainers");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);

    let t = Instant::now();
    cri.client.stop_container(&id, 10).expect("StopContainer");
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "a TERM trap stops it at once, took {took:?}"
    );
    let log = wait_log(&pod, &web, "got TERM");
    assert!(!log.contains("got QUIT"), "log: {log}");
    let status = state(&cri, &id);
    assert_eq!(status.state, api::ContainerState::ContainerExited as i32);
    assert_eq!(status.exit_code, 0);
    assert_eq!(status.reason, "Completed");
    eprintln!(
        "StopContainer ({handler}) in the containerd log:\n{}",
        stop_log_lines(&cri, &id).join("\n")
    );
    if let Some(record) = &runc_record {
        // The stop signal; once exited, CRI's exit handling kills all again (Delete follows).
        assert_eq!(runc_kills(record, &id), ["15", "--all 9"]);
    }

    cri.client.remove_container(&id).expect("RemoveContainer");
    let e = cri.client.container_status(&id).expect_err("removed");
    assert_eq!(e.code(), cri::Code::NotFound, "{e}");
    cri.client
        .stop_pod_sandbox(&pod_id)
        .expect("StopPodSandbox");
    cri.client
        .remove_pod_sandbox(&pod_id)
        .expect("RemovePodSandbox");
    assert!(cri.client.list_containers(None).expect("list").is_empty());
    assert!(cri.client.list_pod_sandbox().expect("list").is_empty());
    cri.containerd.assert_clean();
}

/// StopContainer sends the image's STOPSIGNAL (here SIGQUIT), not SIGTERM.
fn image_stop_signal(handler: &str) {
    let cri = Cri::start();
    let runc_record = (handler == HANDLER_RUNC).then(|| record_runc_calls(&cri));
    let image = cri.import_image("quitter", &["/bin/sh", "-c"], &[REPORTER], Some("SIGQUIT"));
    let pod = cri.pod_config("quit-pod", &[]);
    let pod_id = cri
        .client
        .run_pod_sandbox(&pod, handler)
        .expect("RunPodSandbox");
    let c = container_config(&pod, "quitter", &image, &[], &[], &[]);
    let id = cri
        .client
        .create_container(&pod_id, &c, &pod)
        .expect("CreateContainer");
    cri.client.start_container(&id).expect("StartContainer");
    wait_log(&pod, &c, "ready");

    let t = Instant::now();
    cri.client.stop_container(&id, 10).expect("StopContainer");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    let log = wait_log(&pod, &c, "got QUIT");
    assert!(!log.contains("got TERM"), "log: {log}");
    let status = state(&cri, &id);
    assert_eq!(status.exit_code, 0);
    let lines = stop_log_lines(&cri, &id);
    eprintln!(
        "StopContainer ({handler}) in the containerd log:\n{}",
        lines.join("\n")
    );
    assert!(
        lines.iter().any(|l| l.contains("with signal quit")),
        "containerd names the stop signal: {lines:#?}"
    );
    if let Some(record) = &runc_record {
        assert_eq!(
            runc_kills(record, &id),
            ["3", "--all 9"],
            "SIGQUIT is signal 3"
        );
    }

    cri.client.remove_container(&id).expect("RemoveContainer");
    cri.client
        .stop_pod_sandbox(&pod_id)
        .expect("StopPodSandbox");
    cri.client
        .remove_pod_sandbox(&pod_id)
        .expect("RemovePodSandbox");
    cri.containerd.assert_clean();
}

/// A container that ignores the stop signal is SIGKILLed by containerd after the timeout; a
/// container still running at StopPodSandbox is SIGKILLed at once, without a stop signal.
fn stop_timeout_and_pod_stop(handler: &str) {
    let cri = Cri::start();
    let runc_record = (handler == HANDLER_RUNC).then(|| record_runc_calls(&cri));
    let image = app_image(&cri);
    let pod = cri.pod_config("kill-pod", &[]);
    let pod_id = cri
        .client
        .run_pod_sandbox(&pod, handler)
        .expect("RunPodSandbox");
    let stubborn = container_config(&pod, "stubborn", &image, &[], &[], &[]);
    let reporter = container_config(
        &pod,
        "reporter",
        &image,
        &["/bin/sh", "-c"],
        &[REPORTER],
        &[],
    );
    let stubborn_id = cri
        .client
        .create_container(&pod_id, &stubborn, &pod)
        .expect("CreateContainer");
    let reporter_id = cri
        .client
        .create_container(&pod_id, &reporter, &pod)
        .expect("CreateContainer");
    for id in [&stubborn_id, &reporter_id] {
        cri.client.start_container(id).expect("StartContainer");
    }
    wait_log(&pod, &stubborn, "ready");
    wait_log(&pod, &reporter, "ready");
    let shims = cri.containerd.any_shim_pids();
    assert_eq!(shims.len(), 1, "one shim serves the pod: {shims:?}");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", shims[0])).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(
        cmdline.contains(&format!("-id {pod_id}")),
        "the shim is started for the sandbox: {cmdline}"
    );

    let t = Instant::now();
    cri.client
        .stop_container(&stubborn_id, 2)
        .expect("StopContainer");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "SIGKILL comes after the 2 s timeout, took {took:?}"
    );
    let status = state(&cri, &stubborn_id);
    assert_eq!(status.state, api::ContainerState::ContainerExited as i32);
    assert_eq!(status.exit_code, 137);
    eprintln!(
        "StopContainer with timeout ({handler}) in the containerd log:\n{}",
        stop_log_lines(&cri, &stubborn_id).join("\n")
    );
    if let Some(record) = &runc_record {
        // containerd's own SIGKILL at the timeout is not `all`; the exit handling's is.
        assert_eq!(runc_kills(record, &stubborn_id), ["15", "9", "--all 9"]);
    }

    let t = Instant::now();
    cri.client
        .stop_pod_sandbox(&pod_id)
        .expect("StopPodSandbox");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    let status = state(&cri, &reporter_id);
    assert_eq!(status.state, api::ContainerState::ContainerExited as i32);
    assert_eq!(status.exit_code, 137, "SIGKILL, no stop signal first");
    assert!(!container_log(&pod, &reporter).contains("got TERM"));
    eprintln!(
        "StopPodSandbox ({handler}) in the containerd log:\n{}",
        stop_log_lines(&cri, &reporter_id).join("\n")
    );
    if let Some(record) = &runc_record {
        assert_eq!(
            runc_kills(record, &reporter_id),
            ["9", "--all 9"],
            "no stop signal"
        );
        assert_eq!(runc_kills(record, &pod_id), ["9", "--all 9"], "the sandbox");
    }

    for id in [&stubborn_id, &reporter_id] {
        cri.client.remove_container(id).expect("RemoveContainer");
    }
    cri.client
        .remove_pod_sandbox(&pod_id)
        .expect("RemovePodSandbox");
    cri.containerd.assert_clean();
}

/// containerd restarts under a running pod: CRI finds the pod and its container again and
/// can still exec into, stop and remove them.
fn restart_under_running_pod(handler: &str) {
    let mut cri = Cri::start();
    let image = app_image(&cri);
    let pod = cri.pod_config("restart-pod", &[]);
    let pod_id = cri
        .client
        .run_pod_sandbox(&pod, handler)
        .expect("RunPodSandbox");
    let c = container_config(&pod, "app", &image, &["/bin/sh", "-c"], &[REPORTER], &[]);
    let id = cri
        .client
        .create_container(&pod_id, &c, &pod)
        .expect("CreateContainer");
    cri.client.start_container(&id).expect("StartContainer");
    wait_log(&pod, &c, "ready");
    let shims = cri.containerd.any_shim_pids();

    cri.restart();
    assert_eq!(
        cri.containerd.any_shim_pids(),
        shims,
        "the same shim after the restart"
    );
    let status = state(&cri, &id);
    assert_eq!(
        status.state,
        api::ContainerState::ContainerRunning as i32,
        "{status:?}"
    );
    let sandbox = cri
        .client
        .pod_sandbox_status(&pod_id)
        .expect("PodSandboxStatus");
    assert_eq!(
        sandbox.status.expect("sandbox status").state,
        api::PodSandboxState::SandboxReady as i32
    );
    let out = cri
        .client
        .exec_sync(&id, &["/bin/echo", "still here"], Duration::from_secs(10))
        .expect("ExecSync after the restart");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "still here\n");

    cri.client.stop_container(&id, 10).expect("StopContainer");
    wait_log(&pod, &c, "got TERM");
    assert_eq!(state(&cri, &id).exit_code, 0);
    cri.client.remove_container(&id).expect("RemoveContainer");
    cri.client
        .stop_pod_sandbox(&pod_id)
        .expect("StopPodSandbox");
    cri.client
        .remove_pod_sandbox(&pod_id)
        .expect("RemovePodSandbox");
    cri.containerd.assert_clean();
}

#[test]
fn runc_restart_under_running_pod() {
    restart_under_running_pod(HANDLER_RUNC);
}

#[test]
fn lc_restart_under_running_pod() {
    restart_under_running_pod(HANDLER_LC);
}

/// A pod with its own network from CNI (bridge + host-local, inside containerd's private
/// network namespace): the sandbox gets an address, the app container shares the sandbox's
/// network namespace and reaches the bridge, and RemovePodSandbox releases the address.
fn pod_network(handler: &str) {
    let cri = Cri::start_with(cri::Options {
        cni: true,
        ..Default::default()
    });
    let image = app_image(&cri);
    let mut pod = cri.pod_config("net-pod", &[]);
    use_pod_network(&mut pod);
    let pod_id = cri
        .client
        .run_pod_sandbox(&pod, handler)
        .unwrap_or_else(|e| panic!("RunPodSandbox ({handler}): {e}\n{}", cri.containerd.log()));
    let status = cri
        .client
        .pod_sandbox_status(&pod_id)
        .expect("PodSandboxStatus");
    let ip = status
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default();
    assert!(
        ip.starts_with("10.88.77."),
        "pod IP {ip:?} from {CNI_SUBNET}"
    );
    let c = container_config(&pod, "app", &image, &[], &[], &[]);
    let id = cri
        .client
        .create_container(&pod_id, &c, &pod)
        .expect("CreateContainer");
    cri.client.start_container(&id).expect("StartContainer");
    wait_log(&pod, &c, "ready");
    let run = |cmd: &str| {
        let out = cri
            .client
            .exec_sync(&id, &["/bin/sh", "-c", cmd], Duration::from_secs(10))
            .expect("ExecSync");
        assert_eq!(
            out.exit_code,
            0,
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(run("ip -4 addr show eth0").contains(&format!("inet {ip}/24")));
    assert_eq!(run("hostname").trim(), "net-pod");
    run("ping -c 1 -W 5 10.88.77.1");

    cri.client.stop_container(&id, 0).expect("StopContainer");
    cri.client.remove_container(&id).expect("RemoveContainer");
    cri.client
        .stop_pod_sandbox(&pod_id)
        .expect("StopPodSandbox");
    cri.client
        .remove_pod_sandbox(&pod_id)
        .expect("RemovePodSandbox");
    let ipam = cri.dir.path().join("cni-ipam/lc-pods");
    let leased: Vec<_> = std::fs::read_dir(&ipam)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !leased
            .iter()
            .any(|n| n.to_string_lossy().starts_with("10.")),
        "address still leased: {leased:?}"
    );
    cri.containerd.assert_clean();
}

#[test]
fn runc_pod_network() {
    pod_network(HANDLER_RUNC);
}

#[test]
fn runc_pod_lifecycle() {
    pod_lifecycle(HANDLER_RUNC);
}

#[test]
fn runc_image_stop_signal() {
    image_stop_signal(HANDLER_RUNC);
}

#[test]
fn runc_stop_timeout_and_pod_stop() {
    stop_timeout_and_pod_stop(HANDLER_RUNC);
}

#[test]
fn lc_pod_lifecycle() {
    pod_lifecycle(HANDLER_LC);
}

#[test]
fn lc_image_stop_signal() {
    image_stop_signal(HANDLER_LC);
}

#[test]
fn lc_stop_timeout_and_pod_stop() {
    stop_timeout_and_pod_stop(HANDLER_LC);
}

#[test]
fn lc_pod_network() {
    pod_network(HANDLER_LC);
}

// Lifecycle hooks through CRI (our shim only: containerd's runc shim has none). Hooks come from
// pod annotations (containerd passes `*lifecycle.shim/*`); kubelet's own container annotations
// (`io.kubernetes.*`) come as CreateContainer annotations.

/// Records the stop signal it gets into `/shared/$NAME` and exits 0 on TERM or QUIT.
/// `sleep & wait` lets a trap run at once instead of after the sleep.
const RECORDER: &str = "trap 'echo TERM >> /shared/$NAME; exit 0' TERM; \
                        trap 'echo QUIT >> /shared/$NAME; exit 0' QUIT; \
                        echo ready; while :; do sleep 1 & wait $!; done";
/// Records TERM into `/shared/$NAME` and carries on: only SIGKILL stops it.
const IGNORER: &str = "trap 'echo TERM >> /shared/$NAME' TERM; \
                       echo ready; while :; do sleep 1 & wait $!; done";

fn exec_handler(script: &str) -> String {
    serde_json::json!({"exec": {"command": ["/bin/sh", "-c", script]}}).to_string()
}

/// A host directory mounted at `/shared` in a test's containers, where entrypoints and hooks
/// record what happened, in order; the test reads it from the host.
struct Shared(std::path::PathBuf);

impl Shared {
    fn new(cri: &Cri) -> Self {
        let dir = cri.dir.path().join("shared");
        std::fs::create_dir_all(&dir).expect("mkdir shared");
        Shared(dir)
    }

    /// Container `name` running `script` with `/bin/sh -c` (the image's own entrypoint and
    /// cmd when empty), `/shared` mounted and `NAME` set.
    fn container(
        &self,
        pod: &api::PodSandboxConfig,
        name: &str,
        image: &str,
        script: &str,
        annotations: &[(&str, &str)],
    ) -> api::ContainerConfig {
        let (command, args): (&[&str], &[&str]) = if script.is_empty() {
            (&[], &[])
        } else {
            (&["/bin/sh", "-c"], std::slice::from_ref(&script))
        };
        let mut c = container_config(pod, name, image, command, args, annotations);
        c.mounts.push(api::Mount {
            container_path: "/shared".to_owned(),
            host_path: self.0.display().to_string(),
            ..Default::default()
        });
        c.envs.push(api::KeyValue {
            key: "NAME".to_owned(),
            value: name.to_owned(),
        });
        c
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.0.join(file)).unwrap_or_default()
    }
}

fn create(
    cri: &Cri,
    pod_id: &str,
    c: &api::ContainerConfig,
    pod: &api::PodSandboxConfig,
) -> String {
    cri.client
        .create_container(pod_id, c, pod)
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", cri.containerd.log()))
}

/// StartContainer, which must succeed; returns how long it took.
fn start(cri: &Cri, id: &str) -> Duration {
    let t = Instant::now();
    cri.client
        .start_container(id)
        .unwrap_or_else(|e| panic!("StartContainer: {e}\n{}", cri.containerd.log()));
    t.elapsed()
}

/// StopContainer(timeout), which must succeed; returns how long it took.
fn stop(cri: &Cri, id: &str, timeout: i64) -> Duration {
    let t = Instant::now();
    cri.client
        .stop_container(id, timeout)
        .unwrap_or_else(|e| panic!("StopContainer: {e}\n{}", cri.containerd.log()));
    t.elapsed()
}

/// Whether containerd sent its own SIGKILL to `id` (`Kill container "<id>"`: StopContainer
/// logs it only when its timeout ran out, StopPodSandbox whenever the container still runs).
fn containerd_killed(cri: &Cri, id: &str) -> bool {
    cri.containerd
        .log()
        .lines()
        .any(|l| l.contains(&format!(r#"Kill container \"{id}\""#)))
}

fn exec_out(cri: &Cri, id: &str, script: &str) -> String {
    let out = cri
        .client
        .exec_sync(id, &["/bin/sh", "-c", script], Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("ExecSync {script}: {e}"));
    assert_eq!(
        out.exit_code,
        0,
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes the pod's containers and the pod, and asserts nothing is left.
fn remove_all(cri: &Cri, pod_id: &str, ids: &[&str]) {
    for id in ids {
        cri.client.remove_container(id).expect("RemoveContainer");
    }
    cri.client.stop_pod_sandbox(pod_id).expect("StopPodSandbox");
    cri.client
        .remove_pod_sandbox(pod_id)
        .expect("RemovePodSandbox");
    assert!(cri.client.list_containers(None).expect("list").is_empty());
    assert!(cri.client.list_pod_sandbox().expect("list").is_empty());
    cri.containerd.assert_clean();
}

/// A two-container pod with different hooks per container: `web` has its own postStart and
/// preStop (per-container keys), `sidecar` takes the plain postStart and opts out of the plain
/// preStop with `none`. postStart has run when StartContainer returns; preStop runs before
/// the stop signal; the grace period is the pod annotation's (3 s), not kubelet's (30 s), and
/// the shim's SIGKILL at 3 s comes before containerd's at StopContainer's 10 s; kubelet's
/// `io.kubernetes.container.preStopHandler` is never run.
#[test]
fn lc_pod_hooks_per_container() {
    let cri = Cri::start();
    let shared = Shared::new(&cri);
    let image = app_image(&cri);
    let plain_post_start = exec_handler("sleep 1; echo \"plain $NAME\" > /post-start");
    let web_post_start = exec_handler("sleep 1; echo 'web own' > /post-start");
    let plain_pre_stop = exec_handler("echo 'plain pre-stop' >> /shared/$NAME");
    let web_pre_stop = exec_handler("sleep 1; echo 'web pre-stop' >> /shared/web");
    let pod = cri.pod_config(
        "hooks-pod",
        &[
            ("lifecycle.shim/post-start", &plain_post_start),
            ("post-start.lifecycle.shim/web", &web_post_start),
            ("lifecycle.shim/pre-stop", &plain_pre_stop),
            ("pre-stop.lifecycle.shim/web", &web_pre_stop),
            ("pre-stop.lifecycle.shim/sidecar", "none"),
            ("lifecycle.shim/termination-grace-period-seconds", "3"),
        ],
    );
    let pod_id = cri
        .client
        .run_pod_sandbox(&pod, HANDLER_LC)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", cri.containerd.log()));
    // What kubelet writes for a pod with terminationGracePeriodSeconds 30 and a preStop in its
    // `lifecycle` field: the shim must not run that handler.
    let kubelet_pre_stop = exec_handler("echo kubelet >> /shared/kubelet-ran");
    let kubelet = [
        ("io.kubernetes.pod.terminationGracePeriod", "30"),
        (
            "io.kubernetes.container.preStopHandler",
            kubelet_pre_stop.as_str(),
        ),
    ];
    let web = shared.container(&pod, "web", &image, RECORDER, &kubelet);
    let sidecar = shared.container(&pod, "sidecar", &image, IGNORER, &kubelet);
    let web_id = create(&cri, &pod_id, &web, &pod);
    let sidecar_id = create(&cri, &pod_id, &sidecar, &pod);

    for (id, name, expect) in [
        (&web_id, "web", "web own\n"),
        (&sidecar_id, "sidecar", "plain sidecar\n"),
    ] {
        let took = start(&cri, id);
        // Read at once through the container: the hook wrote it after its 1 s sleep.
        assert_eq!(
            exec_out(&cri, id, "cat /post-start"),
            expect,
            "{name}'s postStart had run when StartContainer returned"
        );
        assert!(
            took >= Duration::from_secs(1),
            "StartContainer of {name} waited for the 1 s postStart, took {took:?}"
        );
        assert_eq!(
            state(&cri, id).state,
            api::ContainerState::ContainerRunning as i32
        );
    }
    wait_log(&pod, &web, "ready");
    wait_log(&pod, &sidecar, "ready");

    let took = stop(&cri, &web_id, 10);
    assert_eq!(
        shared.read("web"),
        "web pre-stop\nTERM\n",
        "web's own preStop, then SIGTERM"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "preStop (1 s), then the trap exits: took {took:?}"
    );
    let status = state(&cri, &web_id);
    assert_eq!(status.state, api::ContainerState::ContainerExited as i32);
    assert_eq!((status.exit_code, status.reason.as_str()), (0, "Completed"));
    assert!(!containerd_killed(&cri, &web_id));

    let took = stop(&cri, &sidecar_id, 10);
    assert_eq!(
        shared.read("sidecar"),
        "TERM\n",
        "`none` opts the sidecar out of the plain preStop; SIGTERM at once"
    );
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(6),
        "the shim's SIGKILL at the pod annotation's 3 s, not kubelet's 30 s nor containerd's \
         10 s: took {took:?}"
    );
    let status = state(&cri, &sidecar_id);
    assert_eq!(status.state, api::ContainerState::ContainerExited as i32);
    assert_eq!(status.exit_code, 137, "SIGKILL: {status:?}");
    assert!(
        !containerd_killed(&cri, &sidecar_id),
        "the shim killed it, not containerd:\n{}",
        stop_log_lines(&cri, &sidecar_id).join("\n")
    );
    eprintln!(
        "StopContainer of the sidecar in the containerd log:\n{}",
        stop_log_lines(&cri, &sidecar_id).join("\n")
    );
    assert_eq!(
        shared.read("kubelet-ran"),
        "",
        "kubelet's preStopHandler is never run by the shim"
    );

    remove_all(&cri, &pod_id, &[&web_id, &sidecar_id]);
}

/// With no grace key in the pod, a pre-stop's grace period is kubelet's
/// `io.kubernetes.pod.terminationGracePeriod`; whichever SIGKILL comes first wins, the shim's
/// at that grace or containerd's at StopContainer's timeout; that annotation alone (the
/// pre-stop opted out) starts no timer.
#[test]
fn lc_grace_from_kubelet_and_containerd_timeout() {
    let cri = Cri::start();
    let shared = Shared::new(&cri);
    let image = app_image(&cri);
    let pre_stop = exec_handler("echo pre-stop >> /shared/$NAME");
    let pod = cri.pod_config(
        "grace-pod",
        &[
            ("lifecycle.shim/pre-stop", &pre_stop),
            ("pre-stop.lifecycle.shim/no-hook", "none"),
        ],
    );
    let pod_id = cri
        .client
        .run_pod_sandbox(&pod, HANDLER_LC)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", cri.containerd.log()));
    // (name, kubelet's grace, StopContainer timeout, who kills, when, what the container saw)
    let cases = [
        ("short", "3", 10, "shim", 3, "pre-stop\nTERM\n"),
        ("long", "30", 2, "containerd", 2, "pre-stop\nTERM\n"),
        ("no-hook", "1", 4, "containerd", 4, "TERM\n"),
    ];
    let ids: Vec<String> = cases
        .iter()
        .map(|(name, grace, ..)| {
            let c = shared.container(
                &pod,
                name,
                &image,
                IGNORER,
                &[("io.kubernetes.pod.terminationGracePeriod", grace)],
            );
            let id = create(&cri, &pod_id, &c, &pod);
            start(&cri, &id);
            wait_log(&pod, &c, "ready");
            id
        })
        .collect();

    // Stopped together, as kubelet stops a pod's containers.
    let took: Vec<Duration> = std::thread::scope(|s| {
        let stops: Vec<_> = cases
            .iter()
            .zip(&ids)
            .map(|((_, _, timeout, ..), id)| s.spawn(|| stop(&cri, id, *timeout)))
            .collect();
        stops.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((name, grace, timeout, killer, secs, seen), (id, took)) in
        cases.iter().zip(ids.iter().zip(took))
    {
        eprintln!(
            "{name}: grace {grace}, timeout {timeout}: StopContainer took {took:?}\n{}",
            stop_log_lines(&cri, id).join("\n")
        );
        assert_eq!(&shared.read(name), seen, "{name}");
        let at = Duration::from_secs(*secs);
        assert!(
            took >= at - Duration::from_millis(100) && took < at + Duration::from_secs(2),
            "{name}: SIGKILL by {killer} at {secs} s, took {took:?}"
        );
        assert_eq!(
            containerd_killed(&cri, id),
            *killer == "containerd",
            "{name}: SIGKILL by {killer}"
        );
        let status = state(&cri, id);
        assert_eq!(status.exit_code, 137, "{name}: {status:?}");
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    remove_all(&cri, &pod_id, &refs);
}

/// A failing postStart fails StartContainer with the hook's message, and ContainerStatus shows
/// it: EXITED, reason `StartError`, exit code 128 (containerd's values for a failed start).
#[test]
fn lc_failed_post_start_in_container_status() {
    let cri = Cri::start();
    let image = app_image(&cri);
    let pod = cri.pod_config(
        "fail-pod",
        &[(
            "lifecycle.shim/post-start",
            &exec_handler("echo boom >&2; exit 3"),
        )],
    );
    let pod_id = cri
        .client
        .run_pod_sandbox(&pod, HANDLER_LC)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", cri.containerd.log()));
    let c = container_config(&pod, "app", &image, &[], &[], &[]);
    let id = create(&cri, &pod_id, &c, &pod);
    let err = cri
        .client
        .start_container(&id)
        .expect_err("StartContainer fails with the postStart");
    eprintln!("StartContainer: {:?}: {}", err.code(), err.message());
    let hook_msg =
        "postStart hook failed: exec [/bin/sh -c echo boom >&2; exit 3] exited with code 3: boom";
    assert!(err.message().contains(hook_msg), "{err}");
    let status = state(&cri, &id);
    eprintln!(
        "ContainerStatus: state {:?}, reason {:?}, exit code {}, message {:?}",
        status.state(),
        status.reason,
        status.exit_code,
        status.message
    );
    assert_eq!(status.state, api::ContainerState::ContainerExited as i32);
    assert_eq!(status.reason, "StartError");
    assert_eq!(status.exit_code, 128);
    assert!(status.message.contains(hook_msg), "{status:?}");
    remove_all(&cri, &pod_id, &[&id]);
}

/// The image's STOPSIGNAL (SIGQUIT) is what StopContainer asks for, and what the shim forwards
/// after the preStop.
#[test]
fn lc_image_stop_signal_after_pre_stop() {
    let cri = Cri::start();
    let shared = Shared::new(&cri);
    let image = cri.import_image("quitter", &["/bin/sh", "-c"], &[RECORDER], Some("SIGQUIT"));
    let pod = cri.pod_config(
        "quit-pod",
        &[(
            "lifecycle.shim/pre-stop",
            &exec_handler("echo pre-stop >> /shared/$NAME"),
        )],
    );
    let pod_id = cri
        .client
        .run_pod_sandbox(&pod, HANDLER_LC)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", cri.containerd.log()));
    // The image's own entrypoint and cmd.
    let c = shared.container(&pod, "quitter", &image, "", &[]);
    let id = create(&cri, &pod_id, &c, &pod);
    start(&cri, &id);
    wait_log(&pod, &c, "ready");
    let took = stop(&cri, &id, 10);
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(shared.read("quitter"), "pre-stop\nQUIT\n");
    let lines = stop_log_lines(&cri, &id);
    assert!(
        lines.iter().any(|l| l.contains("with signal quit")),
        "containerd asked for SIGQUIT: {lines:#?}"
    );
    assert_eq!(state(&cri, &id).exit_code, 0);
    remove_all(&cri, &pod_id, &[&id]);
}

/// A bad hook annotation fails RunPodSandbox at once (the sandbox's copy is validated), with
/// the key named, and leaves nothing behind.
#[test]
fn lc_bad_annotation_fails_run_pod_sandbox() {
    let cri = Cri::start();
    for (key, value, what) in [
        (
            "lifecycle.shim/pre-stop",
            r#"{"sleep":{"seconds":-1}}"#,
            "sleep.seconds -1 is negative",
        ),
        (
            "post-start.lifecycle.shim/web",
            r#"{"exec":{"command":[]}}"#,
            "exec.command is empty",
        ),
        (
            "lifecycle.shim/termination-grace-period-seconds",
            "soon",
            "is not an integer >= 0",
        ),
        ("lifecycle.shim/post-strat", "none", "unknown setting"),
    ] {
        let pod = cri.pod_config("bad-pod", &[(key, value)]);
        let t = Instant::now();
        let err = cri
            .client
            .run_pod_sandbox(&pod, HANDLER_LC)
            .expect_err("RunPodSandbox fails");
        eprintln!("{key}={value}: {:?}: {}", err.code(), err.message());
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(
            err.message().contains(key) && err.message().contains(what),
            "{key}: {err}"
        );
        assert!(cri.client.list_pod_sandbox().expect("list").is_empty());
        cri.containerd.assert_clean();
    }
}

/// How containerd goes down in [`restart_during_post_start`].
#[derive(Debug, PartialEq)]
enum Restart {
    /// SIGKILL, as a crash or an OOM kill: nothing in containerd runs on the way down.
    Crash,
    /// SIGTERM, as `systemctl restart containerd`: containerd 1.6 cancels the CRI calls in
    /// flight, and the failed StartContainer's cleanup runs (Kill SIGKILL `all`, then Delete).
    Graceful,
}

/// containerd restarted while a postStart runs (StartContainer blocked in it, on its own
/// connection), then the pod removed.
fn restart_during_post_start(how: Restart, order: &str) {
    let mut cri = Cri::start();
    let shared = Shared::new(&cri);
    let image = app_image(&cri);
    let pod = cri.pod_config(
        "restart-hook-pod",
        &[
            (
                "lifecycle.shim/post-start",
                &exec_handler(
                    "echo started >> /shared/hook-runs; sleep 3; echo done >> /shared/hook-runs",
                ),
            ),
            ("lifecycle.shim/post-start-order", order),
        ],
    );
    let pod_id = cri
        .client
        .run_pod_sandbox(&pod, HANDLER_LC)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", cri.containerd.log()));
    let c = shared.container(&pod, "app", &image, RECORDER, &[]);
    let id = create(&cri, &pod_id, &c, &pod);

    let address = cri.containerd.address.clone();
    let starting = {
        let id = id.clone();
        std::thread::spawn(move || cri::Client::new(&address).start_container(&id))
    };
    wait_for(Duration::from_secs(10), "the postStart to begin", || {
        (shared.read("hook-runs") == "started\n").then_some(())
    });
    match how {
        Restart::Crash => cri.crash_and_restart(),
        Restart::Graceful => cri.restart(),
    }
    assert_eq!(
        shared.read("hook-runs"),
        "started\n",
        "the restart happened while the hook ran"
    );
    let res = starting.join().expect("StartContainer thread");
    eprintln!("{how:?} ({order}): StartContainer across the restart: {res:?}");
    res.expect_err("the StartContainer call was cut by the restart");

    // The hook's 3 s are over; a re-run would have written `started` again by now.
    std::thread::sleep(Duration::from_secs(3));
    let runs = shared.read("hook-runs");
    let status = state(&cri, &id);
    eprintln!(
        "{how:?} ({order}): hook runs {runs:?}; ContainerStatus: state {:?}, reason {:?}, \
         exit code {}, message {:?}",
        status.state(),
        status.reason,
        status.exit_code,
        status.message
    );
    if order == "before-entrypoint" {
        // The task was still CREATED: CRI's recovery deleted it (Kill SIGKILL `all`, which
        // cancelled the hook, then Delete) and keeps the container as CREATED.
        assert_eq!(runs, "started\n", "the hook was cancelled, never re-run");
        assert_eq!(
            status.state,
            api::ContainerState::ContainerCreated as i32,
            "{status:?}"
        );
        assert!(
            !container_log(&pod, &c).contains("ready"),
            "the entrypoint never ran"
        );
    } else if how == Restart::Crash {
        assert_eq!(runs, "started\ndone\n", "the hook completed exactly once");
        assert_eq!(
            status.state,
            api::ContainerState::ContainerRunning as i32,
            "{status:?}\n{}",
            cri.containerd.log()
        );
        // The shim held TaskStart until the hook succeeded, then delivered it to the new
        // daemon (whose log starts at the restart).
        wait_for(
            Duration::from_secs(5),
            "TaskStart at the new containerd",
            || {
                cri.containerd
                    .log()
                    .lines()
                    .any(|l| l.contains("event forwarded") && l.contains("topic=/tasks/start"))
                    .then_some(())
            },
        );
        assert_eq!(exec_out(&cri, &id, "echo alive"), "alive\n");
        stop(&cri, &id, 10);
        assert_eq!(shared.read("app"), "TERM\n");
        assert_eq!(state(&cri, &id).exit_code, 0);
    } else {
        // Cancelled by the cleanup's SIGKILL, or not: never run twice.
        assert!(runs == "started\n" || runs == "started\ndone\n", "{runs:?}");
        stop(&cri, &id, 2);
    }
    remove_all(&cri, &pod_id, &[&id]);
}

/// containerd crashes while a postStart runs: after the restart the container is RUNNING
/// (CRI finds the task RUNNING, not CREATED, so it keeps it) and the hook completed once.
#[test]
fn lc_containerd_crash_during_post_start() {
    restart_during_post_start(Restart::Crash, "concurrent");
}

/// containerd crashes while a `before-entrypoint` postStart runs: the task is still CREATED,
/// so CRI's recovery deletes it; the container stays CREATED in CRI and its entrypoint never
/// ran (kubelet would create a new one).
#[test]
fn lc_containerd_crash_during_before_entrypoint_post_start() {
    restart_during_post_start(Restart::Crash, "before-entrypoint");
}

/// containerd stopped gracefully while a postStart runs: CRI's cleanup of the cut
/// StartContainer kills the container (see docs/kubernetes.md); the hook never runs twice and
/// the pod is removed without leftovers.
#[test]
fn lc_containerd_graceful_restart_during_post_start() {
    restart_during_post_start(Restart::Graceful, "concurrent");
}

/// An HTTP server for [`lc_probe_hooks_on_the_pod_network`]: busybox httpd on 8080 whose CGI
/// `/cgi-bin/hook` appends `http <query> from <client address>` to `/shared/client` (httpd
/// listens on IPv6 too, so an IPv4 client shows as `[::ffff:10.88.77.x]`).
const HTTP_SERVER: &str = r#"mkdir -p /www/cgi-bin
cat > /www/cgi-bin/hook <<'EOF'
#!/bin/sh
echo "http $QUERY_STRING from $REMOTE_ADDR" >> /shared/client
printf 'Content-Type: text/plain\r\n\r\nok\n'
EOF
chmod +x /www/cgi-bin/hook
httpd -p 8080 -h /www
trap 'exit 0' TERM
echo ready
while :; do sleep 1 & wait $!; done"#;

/// httpGet hooks under CRI with a pod network from CNI: made from the pod's network namespace
/// to the pod's own address (the default host), a port named in kubelet's
/// `io.kubernetes.container.ports`; the postStart request is done when StartContainer returns,
/// the preStop request comes before the stop signal, and a 404 fails StartContainer.
#[test]
fn lc_probe_hooks_on_the_pod_network() {
    let cri = Cri::start_with(cri::Options {
        cni: true,
        ..Default::default()
    });
    let shared = Shared::new(&cri);
    let image = app_image(&cri);
    let get = |path: &str, port: serde_json::Value| {
        serde_json::json!({"httpGet": {"path": path, "port": port}}).to_string()
    };
    let mut pod = cri.pod_config(
        "probe-pod",
        &[
            (
                "post-start.lifecycle.shim/client",
                &get("/cgi-bin/hook?post-start", "web".into()),
            ),
            (
                "pre-stop.lifecycle.shim/client",
                &get("/cgi-bin/hook?pre-stop", 8080.into()),
            ),
            (
                "post-start.lifecycle.shim/broken",
                &get("/missing", 8080.into()),
            ),
        ],
    );
    use_pod_network(&mut pod);
    let pod_id = cri
        .client
        .run_pod_sandbox(&pod, HANDLER_LC)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", cri.containerd.log()));
    let ip = cri
        .client
        .pod_sandbox_status(&pod_id)
        .expect("PodSandboxStatus")
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default();
    assert!(ip.starts_with("10.88.77."), "pod IP {ip:?}");

    let server = shared.container(&pod, "server", &image, HTTP_SERVER, &[]);
    let server_id = create(&cri, &pod_id, &server, &pod);
    start(&cri, &server_id);
    wait_log(&pod, &server, "ready");

    let ports = r#"[{"name":"web","containerPort":8080,"protocol":"TCP"}]"#;
    let client = shared.container(
        &pod,
        "client",
        &image,
        RECORDER,
        &[("io.kubernetes.container.ports", ports)],
    );
    let client_id = create(&cri, &pod_id, &client, &pod);
    start(&cri, &client_id);
    assert_eq!(
        shared.read("client"),
        format!("http post-start from [::ffff:{ip}]\n"),
        "the postStart request was made, from the pod's address, when StartContainer returned"
    );
    wait_log(&pod, &client, "ready");
    stop(&cri, &client_id, 10);
    assert_eq!(
        shared.read("client"),
        format!("http post-start from [::ffff:{ip}]\nhttp pre-stop from [::ffff:{ip}]\nTERM\n"),
        "the preStop request, then SIGTERM"
    );

    let broken = shared.container(&pod, "broken", &image, RECORDER, &[]);
    let broken_id = create(&cri, &pod_id, &broken, &pod);
    let err = cri
        .client
        .start_container(&broken_id)
        .expect_err("a 404 fails the postStart");
    eprintln!("StartContainer: {}", err.message());
    // The handler names the default host `<container address>` (the address probed was
    // the pod's, as the requests above show).
    assert!(
        err.message()
            .contains("postStart hook failed: httpGet http://")
            && err
                .message()
                .contains(":8080/missing returned HTTP status 404: <HTML>"),
        "{err}"
    );
    let status = state(&cri, &broken_id);
    assert_eq!(
        (status.reason.as_str(), status.exit_code),
        ("StartError", 128)
    );

    stop(&cri, &server_id, 10);
    remove_all(&cri, &pod_id, &[&client_id, &broken_id, &server_id]);
}
