//! The container lifecycle shared by every front door: create -> start -> (running) ->
//! stopped -> deleted, one file per verb, with state persisted by `state`.

pub mod create;
pub mod delete;
pub mod exec;
pub mod kill;
pub mod ops;
pub mod start;
pub mod state;

use crate::sandbox::cgroups::Cgroup;
use state::{ContainerState, StateDir, StateError, Status};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error("{0}")]
    InvalidId(String),
    #[error("{0}")]
    Setup(String),
    #[error("container not running")]
    NotRunning,
    #[error("cannot start a container that has stopped")]
    StartStopped,
    #[error("cannot start an already running container")]
    StartRunning,
    #[error("cannot delete container {id} that is not stopped: {status}")]
    NotStopped { id: String, status: Status },
    #[error("container {id} is not paused")]
    NotPaused { id: String },
    #[error("container {id} is not running")]
    NotRunningId { id: String },
    #[error("cgroup: {0}")]
    Cgroup(String),
    #[error("{0}")]
    Signal(String),
}

/// Where containers' state and cgroups live.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub states: StateDir,
    pub cgroup_root: PathBuf,
}

impl Runtime {
    pub fn new(state_root: &Path) -> Result<Runtime, LifecycleError> {
        Ok(Runtime { states: StateDir::new(state_root)?, cgroup_root: PathBuf::from("/sys/fs/cgroup") })
    }

    pub fn cgroup(&self, state: &ContainerState) -> Result<Cgroup, LifecycleError> {
        Cgroup::new(&self.cgroup_root, &state.cgroup_path).map_err(|e| LifecycleError::Cgroup(e.to_string()))
    }

    /// The live status of a container (see `state`).
    pub fn status(&self, state: &ContainerState) -> Status {
        if state.pid == 0 {
            return Status::Creating;
        }
        if !state.init_alive() {
            return Status::Stopped;
        }
        if self.states.exec_fifo(&state.id).exists() {
            return Status::Created;
        }
        if self.cgroup(state).ok().and_then(|c| c.is_frozen().ok()).unwrap_or(false) {
            return Status::Paused;
        }
        Status::Running
    }

    /// The spec saved at create time (hooks of later verbs come from it).
    pub fn saved_spec(&self, id: &str) -> Option<oci_spec::runtime::Spec> {
        crate::spec::parse(&std::fs::read(self.states.dir(id).join("config.json")).ok()?).ok()
    }
}

/// Wait until a process (not necessarily our child) has exited, on its pidfd.
pub fn wait_for_exit(pid: i32, timeout: Option<std::time::Duration>) -> bool {
    let Some(p) = rustix::process::Pid::from_raw(pid) else { return true };
    let Ok(fd) = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) else { return true };
    let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
    let ts = timeout.map(|d| rustix::event::Timespec { tv_sec: d.as_secs() as i64, tv_nsec: d.subsec_nanos() as i64 });
    loop {
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return true,
        }
    }
}

pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs() as i64;
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z", rem / 3600, rem % 3600 / 60, rem % 60, now.subsec_nanos())
}
