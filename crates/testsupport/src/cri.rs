//! containerd's CRI plugin for tests, driven the way kubelet drives it.
//!
//! There is no kubelet or crictl on the test machines: [`Cri`] starts a private [`Containerd`]
//! with the CRI plugin enabled (config from [`plugin_config`]), imports a pause image built
//! offline into the `k8s.io` namespace, and talks CRI v1 gRPC to it with a blocking [`Client`]
//! over the daemon's unix socket. Pods are host-network (no CNI needed) unless a test asks for
//! a CNI network ([`Options::cni`], [`use_pod_network`]), and live in the cgroup parent
//! `/<containerd namespace>`, so [`Containerd::assert_clean`] sees their cgroups.
//!
//! Runtime handlers: [`HANDLER_LC`] is our shim, [`HANDLER_RUNC`] containerd's runc shim as the
//! reference. Both pass the same annotations through, so a test can compare what reaches each.
//!
//! ```no_run
//! use lifecycle_testsupport::cri::{container_config, Cri, HANDLER_LC};
//!
//! let cri = Cri::start();
//! let image = cri.import_image("app", &["/bin/sleep"], &["3600"], None);
//! let pod = cri.pod_config("web", &[("lifecycle.shim/pre-stop", r#"{"sleep":{"seconds":1}}"#)]);
//! let pod_id = cri.client.run_pod_sandbox(&pod, HANDLER_LC).unwrap();
//! let web = container_config(&pod, "web", &image, &[], &[], &[]);
//! let id = cri.client.create_container(&pod_id, &web, &pod).unwrap();
//! cri.client.start_container(&id).unwrap();
//! cri.client.stop_container(&id, 10).unwrap();
//! cri.client.remove_container(&id).unwrap();
//! cri.client.stop_pod_sandbox(&pod_id).unwrap();
//! cri.client.remove_pod_sandbox(&pod_id).unwrap();
//! cri.containerd.assert_clean();
//! ```
//!
//! A call that must run while the daemon restarts (e.g. a StartContainer blocked on a
//! postStart) uses its own [`Client::new`]`(&cri.containerd.address)` on another thread, since
//! [`Cri::restart`] needs `&mut`.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use hyper_util::rt::TokioIo;
pub use k8s_cri::v1 as api;
use k8s_cri::v1::{
    image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient,
    ContainerConfig, ContainerMetadata, ContainerStatusResponse, ExecSyncResponse, ImageSpec,
    LinuxContainerConfig, LinuxContainerSecurityContext, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, PodSandboxStatusResponse,
};
use tonic::{
    transport::{Channel, Endpoint, Uri},
    IntoRequest,
};
pub use tonic::{Code, Status};

use crate::containerd::{self, Containerd};

/// The containerd namespace CRI keeps its containers and images in.
pub const K8S_NAMESPACE: &str = "k8s.io";
/// The sandbox ("pause") image the config names; [`Cri::start_with`] imports it.
pub const PAUSE_IMAGE: &str = "registry.local/pause:1";
/// The runtime handler (RuntimeClass `handler`) for our shim.
pub const HANDLER_LC: &str = "lc";
/// The runtime handler for containerd's runc shim, the reference.
pub const HANDLER_RUNC: &str = "runc";
/// Pod annotations passed through to the OCI spec (`path.Match` patterns: `*` does not cross
/// `/`, so the leading `*` is what lets `post-start.lifecycle.shim/web` through).
pub const POD_ANNOTATIONS: &str = "*lifecycle.shim/*";
/// Container annotations passed through (kubelet writes `io.kubernetes.pod.terminationGracePeriod`
/// and `io.kubernetes.container.preStopHandler` there).
pub const CONTAINER_ANNOTATIONS: &str = "io.kubernetes.*";
/// kubelet's default runtime request timeout, used as the deadline of every call (StopContainer
/// and ExecSync get their own timeout on top, as kubelet does).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The `[plugins."io.containerd.grpc.v1.cri"]` section for containerd 1.6 (config version 2):
/// the keys this machine needs (see TESTBED.md) and the runtime handlers `lc` and `runc`.
/// `cni_conf_dir` must be private: the CRI plugin creates it and watches it.
pub fn plugin_config(cni_conf_dir: &Path) -> String {
    let cri = r#"plugins."io.containerd.grpc.v1.cri""#;
    format!(
        r#"
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # The sandbox's oom_score_adj of -998 needs CAP_SYS_RESOURCE, which test machines lack.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[{cri}.containerd]
  default_runtime_name = "{HANDLER_RUNC}"
[{cri}.containerd.runtimes.{HANDLER_LC}]
  runtime_type = "{runtime}"
  pod_annotations = ["{POD_ANNOTATIONS}"]
  container_annotations = ["{CONTAINER_ANNOTATIONS}"]
[{cri}.containerd.runtimes.{HANDLER_RUNC}]
  runtime_type = "io.containerd.runc.v2"
  pod_annotations = ["{POD_ANNOTATIONS}"]
  container_annotations = ["{CONTAINER_ANNOTATIONS}"]
[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{conf}"
"#,
        runtime = containerd::RUNTIME,
        conf = cni_conf_dir.display(),
    )
}

/// Result of a CRI call: the gRPC status on failure, so tests can assert on codes and messages.
pub type Result<T> = std::result::Result<T, Status>;

/// A blocking CRI v1 client (runtime and image services) over a unix socket. Calls may be made
/// from several threads at once (e.g. StartContainer blocked on a postStart while another
/// thread restarts containerd).
pub struct Client {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    // Last: the clients' connection tasks run on it.
    rt: tokio::runtime::Runtime,
}

impl Client {
    /// A client for the CRI socket at `socket`. The connection is made on the first call and
    /// remade after containerd restarts.
    pub fn new(socket: &Path) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime for the CRI client");
        let socket = socket.to_path_buf();
        let channel = {
            let _guard = rt.enter();
            // The URI is required by tonic but unused: every connection goes to the socket.
            Endpoint::from_static("http://localhost")
                .connect_timeout(Duration::from_secs(5))
                .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                    let socket = socket.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(socket).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream))
                    }
                }))
        };
        Client {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            rt,
        }
    }

    /// The async runtime client, for tests that need concurrency beyond blocking calls.
    pub fn runtime_service(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }

    /// Runs `f` on the client's runtime with the runtime service client.
    fn runtime_call<T, F>(&self, f: impl FnOnce(RuntimeServiceClient<Channel>) -> F) -> Result<T>
    where
        F: std::future::Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    {
        self.rt
            .block_on(f(self.runtime.clone()))
            .map(tonic::Response::into_inner)
    }

    pub fn version(&self) -> Result<api::VersionResponse> {
        self.runtime_call(|mut c| async move {
            c.version(request(api::VersionRequest::default(), REQUEST_TIMEOUT))
                .await
        })
    }

    /// RunPodSandbox with `handler` (a RuntimeClass handler); returns the sandbox id.
    pub fn run_pod_sandbox(&self, config: &PodSandboxConfig, handler: &str) -> Result<String> {
        let req = api::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.to_owned(),
        };
        self.runtime_call(
            |mut c| async move { c.run_pod_sandbox(request(req, REQUEST_TIMEOUT)).await },
        )
        .map(|r| r.pod_sandbox_id)
    }

    pub fn stop_pod_sandbox(&self, pod_id: &str) -> Result<()> {
        let req = api::StopPodSandboxRequest {
            pod_sandbox_id: pod_id.to_owned(),
        };
        self.runtime_call(
            |mut c| async move { c.stop_pod_sandbox(request(req, REQUEST_TIMEOUT)).await },
        )
        .map(drop)
    }

    pub fn remove_pod_sandbox(&self, pod_id: &str) -> Result<()> {
        let req = api::RemovePodSandboxRequest {
            pod_sandbox_id: pod_id.to_owned(),
        };
        self.runtime_call(|mut c| async move {
            c.remove_pod_sandbox(request(req, REQUEST_TIMEOUT)).await
        })
        .map(drop)
    }

    /// PodSandboxStatus, verbose: `info["info"]` is containerd's JSON with the `runtimeSpec`.
    pub fn pod_sandbox_status(&self, pod_id: &str) -> Result<PodSandboxStatusResponse> {
        let req = api::PodSandboxStatusRequest {
            pod_sandbox_id: pod_id.to_owned(),
            verbose: true,
        };
        self.runtime_call(|mut c| async move {
            c.pod_sandbox_status(request(req, REQUEST_TIMEOUT)).await
        })
    }

    pub fn list_pod_sandbox(&self) -> Result<Vec<api::PodSandbox>> {
        let req = api::ListPodSandboxRequest { filter: None };
        self.runtime_call(
            |mut c| async move { c.list_pod_sandbox(request(req, REQUEST_TIMEOUT)).await },
        )
        .map(|r| r.items)
    }

    /// CreateContainer in the sandbox `pod_id` (created from `pod`); returns the container id.
    pub fn create_container(
        &self,
        pod_id: &str,
        config: &ContainerConfig,
        pod: &PodSandboxConfig,
    ) -> Result<String> {
        let req = api::CreateContainerRequest {
            pod_sandbox_id: pod_id.to_owned(),
            config: Some(config.clone()),
            sandbox_config: Some(pod.clone()),
        };
        self.runtime_call(
            |mut c| async move { c.create_container(request(req, REQUEST_TIMEOUT)).await },
        )
        .map(|r| r.container_id)
    }

    pub fn start_container(&self, id: &str) -> Result<()> {
        let req = api::StartContainerRequest {
            container_id: id.to_owned(),
        };
        self.runtime_call(
            |mut c| async move { c.start_container(request(req, REQUEST_TIMEOUT)).await },
        )
        .map(drop)
    }

    /// StopContainer with kubelet's `timeout` (seconds of grace before containerd's SIGKILL).
    pub fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let req = api::StopContainerRequest {
            container_id: id.to_owned(),
            timeout,
        };
        let deadline = REQUEST_TIMEOUT + Duration::from_secs(timeout.max(0) as u64);
        self.runtime_call(|mut c| async move { c.stop_container(request(req, deadline)).await })
            .map(drop)
    }

    pub fn remove_container(&self, id: &str) -> Result<()> {
        let req = api::RemoveContainerRequest {
            container_id: id.to_owned(),
        };
        self.runtime_call(
            |mut c| async move { c.remove_container(request(req, REQUEST_TIMEOUT)).await },
        )
        .map(drop)
    }

    /// ContainerStatus, verbose: `info["info"]` is containerd's JSON with the `runtimeSpec`.
    pub fn container_status(&self, id: &str) -> Result<ContainerStatusResponse> {
        let req = api::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: true,
        };
        self.runtime_call(
            |mut c| async move { c.container_status(request(req, REQUEST_TIMEOUT)).await },
        )
    }

    /// The containers matching `filter` (all when `None`).
    pub fn list_containers(
        &self,
        filter: Option<api::ContainerFilter>,
    ) -> Result<Vec<api::Container>> {
        let req = api::ListContainersRequest { filter };
        self.runtime_call(
            |mut c| async move { c.list_containers(request(req, REQUEST_TIMEOUT)).await },
        )
        .map(|r| r.containers)
    }

    /// ExecSync of `cmd` in container `id`, with CRI's `timeout` (zero: none).
    pub fn exec_sync(&self, id: &str, cmd: &[&str], timeout: Duration) -> Result<ExecSyncResponse> {
        let req = api::ExecSyncRequest {
            container_id: id.to_owned(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: timeout.as_secs() as i64,
        };
        self.runtime_call(|mut c| async move {
            c.exec_sync(request(req, REQUEST_TIMEOUT + timeout)).await
        })
    }

    /// ImageStatus: `None` when CRI does not know the image.
    pub fn image_status(&self, image: &str) -> Result<Option<api::Image>> {
        let req = api::ImageStatusRequest {
            image: Some(ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            verbose: false,
        };
        let mut c = self.images.clone();
        self.rt
            .block_on(async move { c.image_status(request(req, REQUEST_TIMEOUT)).await })
            .map(|r| r.into_inner().image)
    }
}

fn request<T>(msg: T, timeout: Duration) -> tonic::Request<T> {
    let mut req = msg.into_request();
    req.set_timeout(timeout);
    req
}

/// Options for [`Cri::start_with`].
#[derive(Default)]
pub struct Options {
    /// Passed to [`containerd::Options::shim`]; default [`containerd::shim_binary`].
    pub shim: Option<PathBuf>,
    /// containerd's log level; default `debug`.
    pub log_level: Option<&'static str>,
    /// Give pods that ask for it (see [`use_pod_network`]) their own network, from the Debian
    /// CNI plugins (bridge [`CNI_BRIDGE`] with host-local IPAM on [`CNI_SUBNET`]). containerd
    /// then runs in its own network namespace ([`containerd::Options::private_network`]).
    pub cni: bool,
}

/// The bridge CNI creates in containerd's private network namespace with [`Options::cni`].
pub const CNI_BRIDGE: &str = "lc0";
/// The pod subnet with [`Options::cni`]; the bridge has its first address.
pub const CNI_SUBNET: &str = "10.88.77.0/24";

/// A CNI network config list (bridge + host-local) for [`Options::cni`], keeping IPAM state in
/// `ipam_dir`.
pub fn cni_config(ipam_dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "lc-pods",
        "plugins": [{
            "type": "bridge",
            "bridge": CNI_BRIDGE,
            "isGateway": true,
            // No iptables rules: nothing leaves the private network namespace anyway.
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": CNI_SUBNET}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": ipam_dir.display().to_string(),
            }
        }]
    })
    .to_string()
}

/// A private containerd with the CRI plugin, its pause image imported, and a client.
pub struct Cri {
    /// Dropped first: its runtime must go before the daemon does.
    pub client: Client,
    pub containerd: Containerd,
    /// Pod logs, image tarballs and the CNI config directory (kept until the daemon is gone).
    pub dir: tempfile::TempDir,
}

impl Cri {
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    /// Starts containerd with [`plugin_config`], waits for the CRI service, and imports
    /// [`PAUSE_IMAGE`] (busybox sleeping forever).
    pub fn start_with(opts: Options) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("lc-cri-")
            .tempdir()
            .expect("tempdir");
        let cni_conf = dir.path().join("cni-conf");
        fs::create_dir_all(&cni_conf).expect("mkdir cni-conf");
        if opts.cni {
            for plugin in ["bridge", "host-local", "loopback"] {
                crate::require_bin(&format!("/usr/lib/cni/{plugin}"));
            }
            crate::require_bin("ip");
            let conf = cni_config(&dir.path().join("cni-ipam"));
            fs::write(cni_conf.join("10-lc.conflist"), conf).expect("write CNI config");
        }
        let containerd = Containerd::start_with(containerd::Options {
            cri: true,
            extra_config: plugin_config(&cni_conf),
            shim: opts.shim,
            log_level: opts.log_level,
            private_network: opts.cni,
            without_lifecycle_shim: false,
        });
        let client = Client::new(&containerd.address);
        let cri = Cri {
            client,
            containerd,
            dir,
        };
        cri.wait_ready();
        cri.import_image("pause", &["/bin/sleep", "2147483647"], &[], None);
        cri
    }

    /// Restarts containerd (running shims and containers are untouched) and waits until CRI
    /// answers again; the client reconnects by itself.
    pub fn restart(&mut self) {
        self.containerd.restart();
        self.wait_ready();
    }

    /// Kills containerd with SIGKILL, as a crash or an OOM kill would (no shutdown: a CRI call
    /// in flight gets no cleanup), then starts it again as [`Cri::restart`] does. A graceful
    /// stop is different: containerd 1.6 fails the CRI calls in flight, and their cleanup runs
    /// (see docs/kubernetes.md).
    pub fn crash_and_restart(&mut self) {
        let pid = self.containerd.pid();
        // SAFETY: plain signal delivery to the daemon this Cri started (not reaped yet, so the
        // pid cannot have been reused).
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_for(Duration::from_secs(10), "containerd to die", || {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The state follows the command name in parentheses; a zombie is dead.
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest.as_bytes()[0]);
            matches!(state, None | Some(b'Z')).then_some(())
        });
        self.restart();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.client.version() {
                Ok(_) => return,
                Err(e) if Instant::now() >= deadline => panic!(
                    "CRI Version still fails after 20 s: {e}; containerd log:\n{}",
                    self.containerd.log()
                ),
                Err(_) => thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Builds a busybox image `registry.local/<name>:1` (see [`containerd::busybox_image`]),
    /// imports it into `k8s.io` and waits until CRI lists it; returns its reference.
    pub fn import_image(
        &self,
        name: &str,
        entrypoint: &[&str],
        cmd: &[&str],
        stop_signal: Option<&str>,
    ) -> String {
        let tar = containerd::busybox_image(self.dir.path(), name, entrypoint, cmd, stop_signal);
        import_tarball(&self.containerd, &tar);
        let reference = format!("registry.local/{name}:1");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.client.image_status(&reference) {
                Ok(Some(_)) => break,
                other => assert!(
                    Instant::now() < deadline,
                    "CRI does not see {reference} after import: {other:?}"
                ),
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = fs::remove_file(&tar);
        reference
    }

    /// The cgroup parent of every pod: `/<containerd namespace>`, which
    /// [`Containerd::leftovers`] checks.
    pub fn cgroup_parent(&self) -> String {
        format!("/{}", self.containerd.namespace)
    }

    /// A host-network pod (network NODE, pid and ipc POD, no hostname, as kubelet sends for
    /// `hostNetwork: true`) named `name` in Kubernetes namespace `default`, with a unique uid,
    /// a private log directory and `annotations`.
    pub fn pod_config(&self, name: &str, annotations: &[(&str, &str)]) -> PodSandboxConfig {
        let uid = crate::unique("uid");
        let log_dir = self
            .dir
            .path()
            .join("pods")
            .join(format!("default_{name}_{uid}"));
        fs::create_dir_all(&log_dir).expect("mkdir pod log dir");
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.to_owned(),
                uid,
                namespace: "default".to_owned(),
                attempt: 0,
            }),
            log_directory: log_dir.display().to_string(),
            labels: HashMap::from([("io.kubernetes.pod.name".to_owned(), name.to_owned())]),
            annotations: to_map(annotations),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(host_network_namespaces(NamespaceMode::Pod)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

impl Drop for Cri {
    fn drop(&mut self) {
        // A test that failed half-way leaves pods: remove them through CRI while containerd
        // still runs, so their containers go too (killing a runc shim does not kill them).
        let pods = self.client.runtime_call(|mut c| async move {
            c.list_pod_sandbox(request(
                api::ListPodSandboxRequest { filter: None },
                DROP_TIMEOUT,
            ))
            .await
        });
        for pod in pods.map(|r| r.items).unwrap_or_default() {
            let id = pod.id;
            let _ = self.client.runtime_call(|mut c| {
                let id = id.clone();
                async move {
                    let req = api::StopPodSandboxRequest { pod_sandbox_id: id };
                    c.stop_pod_sandbox(request(req, DROP_TIMEOUT)).await
                }
            });
            let _ = self.client.runtime_call(|mut c| async move {
                let req = api::RemovePodSandboxRequest { pod_sandbox_id: id };
                c.remove_pod_sandbox(request(req, DROP_TIMEOUT)).await
            });
        }
    }
}

/// How long each cleanup call of a dropped [`Cri`] may take.
const DROP_TIMEOUT: Duration = Duration::from_secs(15);

/// Makes `pod` get its own network namespace from CNI (network POD, hostname = pod name, as
/// kubelet sends for a pod without `hostNetwork`); needs [`Options::cni`].
pub fn use_pod_network(pod: &mut PodSandboxConfig) {
    pod.hostname = pod
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let ns = pod
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
        .namespace_options
        .get_or_insert_with(Default::default);
    ns.network = NamespaceMode::Pod as i32;
}

/// A container `name` of `pod` running `image` with `command` (the image's entrypoint when
/// empty) and `args` (its cmd when both are empty), `annotations`, and kubelet's log path
/// `<name>/0.log` under the pod's log directory (see [`container_log`]).
pub fn container_config(
    pod: &PodSandboxConfig,
    name: &str,
    image: &str,
    command: &[&str],
    args: &[&str],
    annotations: &[(&str, &str)],
) -> ContainerConfig {
    let log_path = format!("{name}/0.log");
    fs::create_dir_all(Path::new(&pod.log_directory).join(name)).expect("mkdir container log dir");
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_owned(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.to_owned(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        args: args.iter().map(|s| s.to_string()).collect(),
        labels: HashMap::from([("io.kubernetes.container.name".to_owned(), name.to_owned())]),
        annotations: to_map(annotations),
        log_path,
        linux: Some(LinuxContainerConfig {
            resources: None,
            security_context: Some(LinuxContainerSecurityContext {
                // kubelet: the pod's network, a pid namespace per container unless the pod
                // shares one, the pod's ipc.
                namespace_options: Some(NamespaceOption {
                    network: pod_network_mode(pod),
                    ..host_network_namespaces(NamespaceMode::Container)
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// The messages of container `config`'s CRI log file (`<time> <stream> <tag> <message>` per
/// line), with the prefix stripped: what `kubectl logs` shows.
pub fn container_log(pod: &PodSandboxConfig, config: &ContainerConfig) -> String {
    let path = Path::new(&pod.log_directory).join(&config.log_path);
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut out = String::new();
    for line in text.lines() {
        let msg = line.splitn(4, ' ').nth(3).unwrap_or("");
        out.push_str(msg);
        out.push('\n');
    }
    out
}

/// The OCI spec containerd gave the runtime for `id`: the bundle's config.json, read while the
/// task exists (both shims run from containerd's bundle directory).
pub fn bundle_spec(containerd: &Containerd, id: &str) -> serde_json::Value {
    let path = containerd
        .dir
        .path()
        .join("state/io.containerd.runtime.v2.task")
        .join(K8S_NAMESPACE)
        .join(id)
        .join("config.json");
    let text = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&text).expect("config.json is JSON")
}

/// The OCI spec CRI keeps for a container or sandbox: `runtimeSpec` in the `info` map of a
/// verbose [`Client::container_status`] or [`Client::pod_sandbox_status`] (available before
/// StartContainer, when the task and its bundle do not exist yet).
pub fn status_spec(info: &HashMap<String, String>) -> serde_json::Value {
    let text = info.get("info").expect("verbose status has info[\"info\"]");
    let info: serde_json::Value = serde_json::from_str(text).expect("info is JSON");
    info["runtimeSpec"].clone()
}

/// The annotations of an OCI spec, as a sorted map.
pub fn spec_annotations(spec: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    spec["annotations"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Imports a docker-archive tarball into containerd's `k8s.io` namespace (where CRI looks).
pub fn import_tarball(containerd: &Containerd, tar: &Path) {
    let tar = tar.display().to_string();
    // ctr's global `-n` is given again after the daemon's own namespace: the last one wins.
    let out = containerd.ctr(&["-n", K8S_NAMESPACE, "images", "import", &tar]);
    assert!(
        out.contains("registry.local/"),
        "ctr images import {tar} imported nothing: {out}"
    );
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The pod's network mode (NODE or POD); a container follows its pod.
fn pod_network_mode(pod: &PodSandboxConfig) -> i32 {
    pod.linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .map_or(NamespaceMode::Node as i32, |n| n.network)
}

fn host_network_namespaces(pid: NamespaceMode) -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: pid as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

fn to_map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
