//! What the shim remembers of each container and of each process in it (the init, and execs
//! by id): pid, stdio, terminal, exit. The truth about cgroups and namespaces stays in strata's
//! state files (`<bundle>/.strata`), read through `lifecycle`.

use crate::reaper::{Exit, ExitSender, ExitWatch};
use crate::stdio::Io;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use strata::lifecycle::Runtime;

/// The state of one process, behind its lock.
#[derive(Default)]
pub struct ProcState {
    /// 0 until the process exists (an exec before its Start).
    pub pid: i32,
    /// Where the exit watcher publishes the exit (taken once, when it does).
    pub exit_tx: Option<ExitSender>,
    /// Fires when a terminal's output has been relayed to the end.
    pub output_done: Option<tokio::sync::oneshot::Receiver<()>>,
    /// The init has been started (an exec is started when it has a pid).
    pub started: bool,
    /// Keeps the stdin FIFO from reading EOF before the client's end is open.
    pub stdin_holder: Option<OwnedFd>,
    /// The pty master of a process with a terminal.
    pub master: Option<OwnedFd>,
}

pub struct Process {
    /// Empty for the init.
    pub exec_id: String,
    pub io: Io,
    /// An exec's OCI process spec (JSON), until it is started.
    pub spec: Option<serde_json::Value>,
    /// The exit, once it happened and its output is delivered. Exists from the start: Wait
    /// may come before Start.
    pub exit: ExitWatch,
    state: Mutex<ProcState>,
}

impl Process {
    pub fn new(exec_id: &str, io: Io, spec: Option<serde_json::Value>) -> Process {
        let (tx, rx) = tokio::sync::watch::channel(None);
        let state = ProcState { exit_tx: Some(tx), ..Default::default() };
        Process { exec_id: exec_id.to_string(), io, spec, exit: rx, state: Mutex::new(state) }
    }

    pub fn lock(&self) -> MutexGuard<'_, ProcState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn exited(&self) -> Option<Exit> {
        *self.exit.borrow()
    }

    pub fn pid(&self) -> i32 {
        self.lock().pid
    }
}

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub rt: Runtime,
    /// Whether the shim mounted the rootfs (and must unmount it).
    pub mounted_rootfs: bool,
    pub init: Arc<Process>,
    pub execs: Mutex<HashMap<String, Arc<Process>>>,
    /// Held while a process is started and its start event published, and by the exit
    /// watcher before it publishes: containerd must see /tasks/start before /tasks/exit.
    pub start_lock: tokio::sync::Mutex<()>,
}

impl Container {
    pub fn process(&self, exec_id: &str) -> Option<Arc<Process>> {
        if exec_id.is_empty() {
            return Some(self.init.clone());
        }
        self.execs.lock().unwrap_or_else(|e| e.into_inner()).get(exec_id).cloned()
    }
}

/// Where strata keeps a container's state: inside its bundle, which containerd removes after
/// delete, so a crashed shim leaves nothing elsewhere.
pub fn state_root(bundle: &std::path::Path) -> PathBuf {
    bundle.join(".strata")
}
