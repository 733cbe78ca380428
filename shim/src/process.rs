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
    /// An exec's pidfd, opened while its worker still held it: a signal sent through it
    /// reaches this process or none, never a later one that got its pid after the reaper
    /// collected it (its exit is published only once its output is relayed).
    pub pidfd: Option<OwnedFd>,
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
    /// True once the exit's event is published: a Delete that follows a Wait must not publish
    /// /tasks/delete ahead of /tasks/exit.
    pub exit_published: tokio::sync::watch::Sender<bool>,
    state: Mutex<ProcState>,
}

impl Process {
    pub fn new(exec_id: &str, io: Io, spec: Option<serde_json::Value>) -> Process {
        let (tx, rx) = tokio::sync::watch::channel(None);
        let state = ProcState { exit_tx: Some(tx), ..Default::default() };
        let exit_published = tokio::sync::watch::Sender::new(false);
        Process { exec_id: exec_id.to_string(), io, spec, exit: rx, exit_published, state: Mutex::new(state) }
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
    /// Whether the container has a pid namespace of its own. If not (it joined a pod's, or
    /// the host's), its other processes do not die with its init: the shim kills them, as
    /// runc's does, before it reports the exit.
    pub own_pid_namespace: bool,
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

/// Whether the bundle's config gives the container a new pid namespace (a `pid` namespace
/// with no path). A config that cannot be read counts as yes: nothing extra is killed.
pub fn own_pid_namespace(bundle: &std::path::Path) -> bool {
    let Ok(bytes) = std::fs::read(bundle.join("config.json")) else { return true };
    let Ok(config) = serde_json::from_slice::<serde_json::Value>(&bytes) else { return true };
    let Some(namespaces) = config.pointer("/linux/namespaces").and_then(|n| n.as_array()) else { return false };
    namespaces.iter().any(|ns| ns["type"] == "pid" && ns["path"].as_str().unwrap_or("").is_empty())
}

/// Where strata keeps a container's state: inside its bundle, which containerd removes after
/// delete, so a crashed shim leaves nothing elsewhere.
pub fn state_root(bundle: &std::path::Path) -> PathBuf {
    bundle.join(".strata")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_namespace_of_its_own_is_one_without_a_path() {
        let t = tempfile::tempdir().unwrap();
        let with = |namespaces: serde_json::Value| {
            std::fs::write(
                t.path().join("config.json"),
                serde_json::json!({"linux": {"namespaces": namespaces}}).to_string(),
            )
            .unwrap();
            own_pid_namespace(t.path())
        };
        assert!(with(serde_json::json!([{"type": "mount"}, {"type": "pid"}])));
        assert!(with(serde_json::json!([{"type": "pid", "path": ""}])));
        assert!(!with(serde_json::json!([{"type": "pid", "path": "/proc/42/ns/pid"}])));
        assert!(!with(serde_json::json!([{"type": "mount"}])), "the host's pid namespace");
        std::fs::remove_file(t.path().join("config.json")).unwrap();
        assert!(own_pid_namespace(t.path()), "unreadable: kill nothing extra");
    }
}
