//! A container's persisted state (`STATE_ROOT/<id>/state.json`, written atomically) and how
//! its status is derived from the live system, so `state`/`list` tell the truth even after
//! a crash: a dead or recycled pid means stopped; a living init that still holds the exec
//! fifo means created; a frozen cgroup means paused.

use crate::fsutil::write_atomic_unsynced;
use crate::lock::Lock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("container \"{0}\" does not exist")]
    NotFound(String),
    #[error("container \"{0}\" already exists")]
    Exists(String),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error("state of container \"{id}\" is corrupt: {source}")]
    Corrupt { id: String, source: serde_json::Error },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// 0 while creating.
    pub pid: i32,
    /// The init's start time (clock ticks since boot, /proc/PID/stat field 22): tells a
    /// recycled pid from ours.
    pub pid_start: u64,
    pub created: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub cgroup_path: String,
    #[serde(default)]
    pub owner: String,
    /// Set by `start`.
    #[serde(default)]
    pub started: bool,
}

/// Start time of a process, or None if it does not exist.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // Field 3 is the state; starttime is field 22 overall, index 19 after the comm.
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

impl ContainerState {
    /// Whether our init (not a recycled pid) is still alive.
    pub fn init_alive(&self) -> bool {
        self.pid > 0 && process_start_time(self.pid) == Some(self.pid_start)
    }

    pub fn oci_state(&self, status: Status) -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.0.2",
            "id": self.id,
            "status": status,
            "pid": if matches!(status, Status::Stopped) { 0 } else { self.pid },
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": self.owner,
            "annotations": self.annotations,
        })
    }
}

/// The directory of all containers' states (`--root`, default /run/strata).
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: &Path) -> Result<StateDir, StateError> {
        use std::os::unix::fs::DirBuilderExt;
        // 0700, as runc makes its root: the states name bundles, pids and configs. (An init
        // running as another user reaches its exec fifo through a directory fd, not by path.)
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|source| StateError::Io { context: format!("creating {}", root.display()), source })?;
        Ok(StateDir { root: root.to_path_buf() })
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    pub fn exec_fifo(&self, id: &str) -> PathBuf {
        self.dir(id).join("exec.fifo")
    }

    /// Serialise commands on one container. The lock file lives in the container's directory,
    /// so it goes with it: a container that does not exist has nothing to lock.
    pub fn lock(&self, id: &str) -> Result<Lock, StateError> {
        if crate::spec::validate_id(id).is_err() {
            return Err(StateError::NotFound(id.into()));
        }
        let dir = self.dir(id);
        if !dir.is_dir() {
            return Err(StateError::NotFound(id.into()));
        }
        Lock::exclusive(&dir.join(".lock")).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => StateError::NotFound(id.into()),
            _ => StateError::Io { context: format!("locking {id}"), source },
        })
    }

    /// Make the container's directory; fails if it exists. Mode 0711 whatever the umask (as
    /// runc's): the init, by then the container's user, reaches the exec fifo in it by name.
    pub fn create_dir(&self, id: &str) -> Result<PathBuf, StateError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.dir(id);
        match fs::create_dir(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o711))
                    .map_err(|source| StateError::Io { context: format!("creating {}", dir.display()), source })?;
                Ok(dir)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(StateError::Exists(id.into())),
            Err(source) => Err(StateError::Io { context: format!("creating {}", dir.display()), source }),
        }
    }

    pub fn save(&self, state: &ContainerState) -> Result<(), StateError> {
        let bytes = serde_json::to_vec_pretty(state).expect("state serialises");
        write_atomic_unsynced(&self.dir(&state.id).join("state.json"), &bytes)
            .map_err(|source| StateError::Io { context: format!("saving state of {}", state.id), source })
    }

    pub fn load(&self, id: &str) -> Result<ContainerState, StateError> {
        if crate::spec::validate_id(id).is_err() {
            return Err(StateError::NotFound(id.into()));
        }
        let path = self.dir(id).join("state.json");
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StateError::NotFound(id.into()),
            _ => StateError::Io { context: format!("reading {}", path.display()), source: e },
        })?;
        serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt { id: id.into(), source })
    }

    /// IDs of every container with a directory (complete or not).
    pub fn ids(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(&self.root) else { return Vec::new() };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        ids.sort();
        ids
    }

    pub fn remove(&self, id: &str) -> Result<(), StateError> {
        crate::fsutil::remove_tree(&self.dir(id))
            .map_err(|source| StateError::Io { context: format!("removing state of {id}"), source })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_identifies_our_process() {
        let me = std::process::id() as i32;
        let t = process_start_time(me).unwrap();
        let s = ContainerState {
            id: "x".into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            pid: me,
            pid_start: t,
            created: String::new(),
            annotations: Default::default(),
            cgroup_path: String::new(),
            owner: String::new(),
            started: false,
        };
        assert!(s.init_alive());
        assert!(!ContainerState { pid_start: t + 1, ..s.clone() }.init_alive());
        assert!(!ContainerState { pid: 0, ..s }.init_alive());
    }
}
