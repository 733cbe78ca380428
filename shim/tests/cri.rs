//! Kubernetes' path: containerd 1.6 with its CRI plugin and a runtime handler `strata`
//! (`runtime_type = "io.containerd.strata.v1"`), driven over the CRI gRPC API as kubelet does.
//! One pod: the sandbox (pause) container, a wasm container and a native container side by
//! side, all served by one shim process; both write to their CRI log files and report their
//! exit codes; a third container's stats are read as kubelet reads them; then the pod is
//! stopped and removed and nothing is left.

mod support;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use std::time::Duration;
use support::*;
use tonic::transport::{Endpoint, Uri};

const CGROUP_PARENT: &str = "strata-cri-test";
/// A pod parent as kubelet's systemd cgroup driver names it (one part: no parent slices).
const SYSTEMD_SLICE: &str = "stratacritest.slice";

fn cri_config(dir: &std::path::Path) -> String {
    let cni = dir.join("cni");
    std::fs::create_dir_all(cni.join("bin")).unwrap();
    std::fs::create_dir_all(cni.join("conf")).unwrap();
    format!(
        r#"[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{bin}"
    conf_dir = "{conf}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "strata"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.strata]
    runtime_type = "io.containerd.strata.v1"
"#,
        bin = cni.join("bin").display(),
        conf = cni.join("conf").display(),
    )
}

async fn client(socket: std::path::PathBuf) -> RuntimeServiceClient<tonic::transport::Channel> {
    let channel = Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(socket).await?)) }
        }))
        .await
        .expect("connecting to containerd's CRI");
    RuntimeServiceClient::new(channel)
}

fn container(name: &str, image: &str, command: &[&str], log: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata { name: name.into(), attempt: 0 }),
        image: Some(ImageSpec { image: image.into(), ..Default::default() }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: log.into(),
        ..Default::default()
    }
}

type Cri = RuntimeServiceClient<tonic::transport::Channel>;

async fn run_pod(cri: &mut Cri, c: &Containerd, pod: &PodSandboxConfig) -> String {
    let sandbox = cri
        .run_pod_sandbox(RunPodSandboxRequest { config: Some(pod.clone()), runtime_handler: "strata".into() })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", c.log_tail()))
        .into_inner()
        .pod_sandbox_id;
    c.ids.lock().unwrap().push(sandbox.clone());
    sandbox
}

async fn create(
    cri: &mut Cri,
    c: &Containerd,
    sandbox: &str,
    pod: &PodSandboxConfig,
    config: ContainerConfig,
) -> String {
    cri.create_container(CreateContainerRequest {
        pod_sandbox_id: sandbox.to_string(),
        config: Some(config),
        sandbox_config: Some(pod.clone()),
    })
    .await
    .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", c.log_tail()))
    .into_inner()
    .container_id
}

async fn start(cri: &mut Cri, c: &Containerd, id: &str) {
    cri.start_container(StartContainerRequest { container_id: id.to_string() })
        .await
        .unwrap_or_else(|e| panic!("StartContainer: {e}\n{}", c.log_tail()));
}

async fn stop_and_remove_pod(cri: &mut Cri, c: &Containerd, sandbox: &str) {
    cri.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: sandbox.to_string() })
        .await
        .unwrap_or_else(|e| panic!("StopPodSandbox: {e}\n{}", c.log_tail()));
    cri.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: sandbox.to_string() })
        .await
        .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}\n{}", c.log_tail()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_with_a_wasm_and_a_native_container() {
    // The config needs the temp dir's path: start once to get one, with CRI in it.
    let scratch = tempfile::tempdir().unwrap();
    let c = Containerd::start_with("k8s.io", &cri_config(scratch.path()));
    c.cgroup_parents.lock().unwrap().push(CGROUP_PARENT.into());
    c.import_images();
    let mut cri = client(c.address()).await;

    let logs = c.dir.path().join("pod-logs");
    let pod = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "strata-pod".into(),
            uid: "strata-pod-uid".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        log_directory: logs.display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("/{CGROUP_PARENT}"),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption { network: NamespaceMode::Node as i32, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let sandbox = run_pod(&mut cri, &c, &pod).await;

    let mut ids = Vec::new();
    for config in [
        container("wasm", WASM, &["/hello.wasm", "from", "cri", "exit", "0"], "wasm.log"),
        container("native", BUSYBOX, &["sh", "-c", "echo native from cri; exit 3"], "native.log"),
    ] {
        ids.push(create(&mut cri, &c, &sandbox, &pod, config).await);
    }
    // Sandbox, wasm and native container: one shim process serves the pod.
    let serving: Vec<i32> = c.shim_pids().into_iter().filter(|p| c.shim_of_pid_is_serving(*p)).collect();
    assert_eq!(serving.len(), 1, "one shim for the pod, got {serving:?}");

    for id in &ids {
        start(&mut cri, &c, id).await;
    }
    let mut exits = Vec::new();
    for id in &ids {
        let mut status = None;
        for _ in 0..500 {
            let s = cri
                .container_status(ContainerStatusRequest { container_id: id.clone(), verbose: false })
                .await
                .unwrap()
                .into_inner()
                .status
                .unwrap();
            if s.state == ContainerState::ContainerExited as i32 {
                status = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let s = status.unwrap_or_else(|| panic!("container {id} did not exit\n{}", c.log_tail()));
        exits.push(s.exit_code);
    }
    let wasm_log = std::fs::read_to_string(logs.join("wasm.log")).unwrap();
    assert_eq!(exits, [0, 3], "wasm exits 0, native 3; wasm's log:\n{wasm_log}");

    // Stats as kubelet reads them: the working set leaves out the file cache a container
    // wrote (usage less inactive file pages, from the shim's memory.stat).
    let writer = container(
        "writer",
        BUSYBOX,
        &["sh", "-c", "dd if=/dev/zero of=/big bs=1M count=32 2>/dev/null && touch /written && exec sleep 1000"],
        "writer.log",
    );
    let writer = create(&mut cri, &c, &sandbox, &pod, writer).await;
    start(&mut cri, &c, &writer).await;
    let until_written = ["sh", "-c", "until [ -f /written ]; do sleep 0.01; done"].map(String::from).to_vec();
    let waited = cri
        .exec_sync(ExecSyncRequest { container_id: writer.clone(), cmd: until_written, timeout: 30 })
        .await
        .unwrap_or_else(|e| panic!("ExecSync: {e}\n{}", c.log_tail()))
        .into_inner();
    assert_eq!(waited.exit_code, 0, "{waited:?}");
    let stats = cri
        .container_stats(ContainerStatsRequest { container_id: writer.clone() })
        .await
        .unwrap_or_else(|e| panic!("ContainerStats: {e}\n{}", c.log_tail()))
        .into_inner()
        .stats
        .unwrap();
    let memory = stats.memory.unwrap();
    let working_set = memory.working_set_bytes.unwrap().value;
    assert!(working_set > 0 && working_set < 16 << 20, "not the 32 MiB of file cache: {memory:?}");
    assert!(memory.page_faults.unwrap().value > 0, "{memory:?}");
    assert!(stats.cpu.unwrap().usage_core_nano_seconds.unwrap().value > 0);

    assert!(wasm_log.contains(" stdout F hello from a wasm container"), "{wasm_log}");
    assert!(wasm_log.contains("argv[1]=from"), "{wasm_log}");
    let native_log = std::fs::read_to_string(logs.join("native.log")).unwrap();
    assert!(native_log.contains(" stdout F native from cri"), "{native_log}");

    stop_and_remove_pod(&mut cri, &c, &sandbox).await;
    let left = cri.list_containers(ListContainersRequest { filter: None }).await.unwrap().into_inner().containers;
    assert!(left.is_empty(), "{left:?}");

    // kubelet's systemd cgroup driver: the pod's parent is a slice, and containerd passes
    // `slice:cri-containerd:ID`; the container lands where systemd would put its scope.
    c.cgroup_parents.lock().unwrap().push(SYSTEMD_SLICE.into());
    let mut pod = pod;
    pod.metadata.as_mut().unwrap().uid = "strata-pod-uid-2".into();
    pod.linux.as_mut().unwrap().cgroup_parent = SYSTEMD_SLICE.into();
    let sandbox = run_pod(&mut cri, &c, &pod).await;
    let config = container("cgroup", BUSYBOX, &["sh", "-c", "grep memory /proc/self/cgroup"], "cgroup.log");
    let id = create(&mut cri, &c, &sandbox, &pod, config).await;
    start(&mut cri, &c, &id).await;
    let want = format!("/{SYSTEMD_SLICE}/cri-containerd-{id}.scope");
    let log = logs.join("cgroup.log");
    let mut said = String::new();
    for _ in 0..500 {
        said = std::fs::read_to_string(&log).unwrap_or_default();
        if said.contains("memory") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(said.contains(&format!(":memory:{want}")), "want {want} in:\n{said}");
    stop_and_remove_pod(&mut cri, &c, &sandbox).await;
    c.assert_no_leftovers();
}
