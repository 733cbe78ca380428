//! The daemon's three lives (containerd's runtime v2 protocol):
//! - `start` (only when the daemon is run by hand: the front door does it): `front_door::start`;
//! - serve (no action): the task service on the socket until Shutdown;
//! - `delete`: after the shim is gone, clean up what it would have (the container's
//!   processes, cgroup, strata state, rootfs mounts).

use crate::front_door::{self, socket_path, StartArgs};
use crate::process::state_root;
use crate::reaper::Reaper;
use crate::service::Service;
use crate::spawn::Spawner;
use crate::{events::Events, group};
use async_trait::async_trait;
use containerd_shim::asynchronous::{ExitSignal, Shim};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{api::DeleteResponse, Config, Error, Flags, StartOpts};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use strata::lifecycle::{self, Runtime};

/// How containers are spawned, chosen in `main` before the runtime started.
pub static SPAWNER: OnceLock<Arc<Spawner>> = OnceLock::new();

pub struct StrataShim {
    exit: Arc<ExitSignal>,
    namespace: String,
    id: String,
    socket: String,
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
        // The front door does this; the daemon only when run by hand.
        let bundle = std::env::current_dir().map_err(|e| Error::Other(format!("getcwd: {e}")))?;
        let daemon = std::env::current_exe().map_err(|e| Error::Other(format!("this binary's path: {e}")))?;
        let started = tokio::task::spawn_blocking(move || {
            let args =
                StartArgs { id: &opts.id, namespace: &opts.namespace, containerd: &opts.address, debug: opts.debug };
            front_door::start(&bundle, &args, &daemon)
        })
        .await
        .map_err(|e| Error::Other(e.to_string()))?;
        started.map_err(|e| {
            // containerd shows our stderr; containerd-shim would print the error's Debug form.
            eprintln!("containerd-shim-strata-v1: {e}");
            std::process::exit(1)
        })
    }

    async fn delete_shim(&mut self) -> Result<DeleteResponse, Error> {
        let bundle = std::env::current_dir().map_err(|e| Error::Other(format!("getcwd: {e}")))?;
        let id = self.id.clone();
        let pid = tokio::task::spawn_blocking(move || cleanup(&bundle, &id))
            .await
            .map_err(|e| Error::Other(e.to_string()))?;
        Ok(front_door::killed(pid))
    }

    async fn wait(&mut self) {
        // The socket was unlinked when the shim decided to exit (`Service::exit_if_idle`).
        self.exit.wait().await;
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
        let socket = PathBuf::from(socket_path(&self.socket));
        // Started in its first container's bundle (whose grouping `start` checked): the
        // group's linger is that container's. Unreadable: no linger, and not solo (the zygote
        // stays, in case other containers come).
        let grouping = std::env::current_dir()
            .ok()
            .and_then(|bundle| group::of_bundle(&bundle, &self.id).ok())
            .unwrap_or(group::Grouping { key: self.id.clone(), linger: std::time::Duration::ZERO, solo: false });
        let events = Events::new(publisher, &self.namespace);
        Service::new(spawner, reaper, events, self.exit.clone(), socket, &grouping)
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
    front_door::release_bundle(bundle);
    pid
}
