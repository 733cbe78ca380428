//! The shim binary's three lives (containerd's runtime v2 protocol):
//! - `start`: find or start the shim process for this container — one per Kubernetes pod
//!   (grouped by the `io.kubernetes.cri.sandbox-id` annotation), else one per container —
//!   print only its address, and write the bundle's `address` file;
//! - serve (no action): the task service on the socket until Shutdown;
//! - `delete`: after the shim is gone, clean up what it would have (the container's
//!   processes, cgroup, strata state, rootfs mounts).

use crate::process::state_root;
use crate::reaper::Reaper;
use crate::service::{timestamp, Service};
use crate::spawn::Spawner;
use crate::{events::Events, rootfs};
use async_trait::async_trait;
use containerd_shim::asynchronous::{spawn, ExitSignal, Shim};
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{api::DeleteResponse, Config, Error, Flags, StartOpts};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;
use strata::lifecycle::{self, Runtime};

/// The annotation CRI puts on every container of a pod (the sandbox's id).
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// How containers are spawned, chosen in `main` before the runtime started.
pub static SPAWNER: OnceLock<Arc<Spawner>> = OnceLock::new();

pub struct StrataShim {
    exit: Arc<ExitSignal>,
    namespace: String,
    id: String,
    socket: String,
}

/// The pod this container belongs to, from the bundle's config.json.
fn grouping(bundle: &Path, id: &str) -> String {
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|spec| spec.get("annotations")?.get(SANDBOX_ID)?.as_str().map(str::to_string))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| id.to_string())
}

fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

fn write_address(address: &str) -> Result<(), Error> {
    // containerd reads it to reconnect, and to remove the socket after the shim is gone.
    strata::fsutil::write_atomic(Path::new("address"), address.as_bytes())
        .map_err(|e| Error::Other(format!("writing the address file: {e}")))
}

#[async_trait]
impl Shim for StrataShim {
    type T = Service;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        StrataShim {
            exit: Arc::new(ExitSignal::default()),
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            socket: args.socket.clone(),
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> Result<String, Error> {
        let bundle = std::env::current_dir().map_err(|e| Error::Other(format!("getcwd: {e}")))?;
        let group = grouping(&bundle, &opts.id);
        let address = containerd_shim::socket_address(&opts.address, &opts.namespace, &group);
        // Another container of the pod already started the pod's shim: join it.
        if std::os::unix::net::UnixStream::connect(socket_path(&address)).is_ok() {
            write_address(&address)?;
            return Ok(address);
        }
        let address = spawn(opts, &group, Vec::new()).await?;
        write_address(&address)?;
        Ok(address)
    }

    async fn delete_shim(&mut self) -> Result<DeleteResponse, Error> {
        let bundle = std::env::current_dir().map_err(|e| Error::Other(format!("getcwd: {e}")))?;
        let id = self.id.clone();
        let pid = tokio::task::spawn_blocking(move || cleanup(&bundle, &id))
            .await
            .map_err(|e| Error::Other(e.to_string()))?;
        Ok(DeleteResponse {
            pid: pid as u32,
            // What runc's shim reports for a task whose shim died: killed.
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: MessageField::some(timestamp(SystemTime::now())),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
        // The library removes the socket named in the cwd's address file, but a pod's shim
        // may outlive the bundle it started in: remove it by name.
        let _ = std::fs::remove_file(socket_path(&self.socket));
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        let spawner = SPAWNER.get_or_init(|| Arc::new(Spawner::Reexec)).clone();
        let reaper = match Reaper::start() {
            Ok(r) => r,
            Err(e) => {
                log::error!("cannot listen for SIGCHLD: {e}");
                std::process::exit(1);
            }
        };
        Service::new(spawner, reaper, Events::new(publisher, &self.namespace), self.exit.clone())
    }
}

/// Kill and forget container `id` of `bundle` (the shim died): returns its init's pid.
fn cleanup(bundle: &Path, id: &str) -> i32 {
    let root: PathBuf = state_root(bundle);
    let mut pid = 0;
    if root.is_dir() {
        if let Ok(rt) = Runtime::new(&root) {
            pid = rt.states.load(id).map(|s| s.pid).unwrap_or(0);
            if let Err(e) = lifecycle::delete::delete(&rt, id, true) {
                log::warn!("deleting {id}: {e}");
            }
        }
        let _ = strata::fsutil::remove_tree(&root);
    }
    if let Err(e) = rootfs::unmount_all(&bundle.join("rootfs")) {
        log::warn!("{e}");
    }
    // A shim killed outright leaves its socket; one still serving a pod's other containers
    // answers on it and keeps it.
    if let Ok(address) = std::fs::read_to_string(bundle.join("address")) {
        let path = socket_path(address.trim());
        if std::os::unix::net::UnixStream::connect(path).is_err() {
            let _ = std::fs::remove_file(path);
        }
    }
    pid
}
