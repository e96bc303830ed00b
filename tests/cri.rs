//! The Kubernetes path: containerd's CRI plugin drives a runtime handler the way kubelet does
//! (RunPodSandbox, CreateContainer, StartContainer, ExecSync, StopContainer, RemoveContainer,
//! StopPodSandbox, RemovePodSandbox), with host-network pods and busybox images built offline.
//!
//! Each flow runs against containerd's runc shim (`runc`, the reference) and our shim (`lc`).

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
