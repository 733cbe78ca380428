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
        // Frozen first: a created container may be paused too, as runc reports it.
        if self.cgroup(state).ok().and_then(|c| c.is_frozen().ok()).unwrap_or(false) {
            return Status::Paused;
        }
        if self.states.exec_fifo(&state.id).exists() {
            return Status::Created;
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
    // (A bound of more than ~68 years is none.)
    let ts = timeout
        .filter(|d| d.as_secs() < i32::MAX as u64)
        .map(|d| rustix::event::Timespec { tv_sec: d.as_secs() as i64, tv_nsec: d.subsec_nanos() as i64 });
    loop {
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return true,
        }
    }
}

pub use crate::clock::now_rfc3339;

/// Reap our child `pid` and report its end as a shell does: the exit code, or 128+N when
/// killed by signal N; None if it cannot be waited for (not our child).
pub fn reap(pid: i32) -> Option<i32> {
    wait_status(pid, 0)
}

/// [`reap`] if our child `pid` has ended; None while it runs (or if it is not our child).
pub fn try_reap(pid: i32) -> Option<i32> {
    wait_status(pid, libc::WNOHANG)
}

fn wait_status(pid: i32, flags: i32) -> Option<i32> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on a pid we name; it fails harmlessly if it is not our child.
        let rc = unsafe { libc::waitpid(pid, &mut status, flags) };
        if rc == pid {
            break;
        }
        if rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return None;
    }
    if libc::WIFEXITED(status) {
        Some(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Some(128 + libc::WTERMSIG(status))
    } else {
        None
    }
}
