//! The live state of a container, derived on every call from what is true now: the
//! lifecycle state (is the init alive, frozen, still waiting to start), whether the run's
//! monitor is alive, and the record's exit. Nothing here trusts a stored "running".
//!
//! A run whose monitor died without recording an end is finalised by whoever looks first
//! (exit 255 and an error saying why, its cgroup, state and mount removed), so `ps`, `rm`
//! and `wait` converge after any crash. A container whose monitor died while its init runs
//! on is shown running, which it is.

use super::record::{ContainerRecord, ProcessRef};
use super::{rootfs, ContainerError, Containers};
use crate::lifecycle::state::Status;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Created,
    Running,
    Paused,
    Exited,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Created => "created",
            State::Running => "running",
            State::Paused => "paused",
            State::Exited => "exited",
        })
    }
}

pub const MONITOR_DIED: &str = "the container's monitor died; its exit status is unknown";
/// What docker reports when the exit status was lost.
pub const UNKNOWN_EXIT: i32 = 255;

/// A container as it is now.
#[derive(Debug, Clone)]
pub struct Observed {
    pub record: ContainerRecord,
    pub state: State,
    /// The container's init while it is alive.
    pub init: Option<ProcessRef>,
}

impl Observed {
    pub fn is_running(&self) -> bool {
        matches!(self.state, State::Running | State::Paused)
    }
}

/// The container's state now; `None` if it disappeared (an `--rm` container finalised).
pub fn observe(c: &Containers, record: ContainerRecord) -> Result<Option<Observed>, ContainerError> {
    observe_inner(c, record, true)
}

fn observe_inner(c: &Containers, record: ContainerRecord, may_wait: bool) -> Result<Option<Observed>, ContainerError> {
    let id = record.id.clone();
    let lifecycle = c.runtime().states.load(&id).ok();
    let live = lifecycle.as_ref().map(|s| c.runtime().status(s));
    let init = lifecycle.as_ref().map(|s| ProcessRef { pid: s.pid, start_time: s.pid_start });
    let made = |record, state, init| Ok(Some(Observed { record, state, init }));
    match live {
        Some(Status::Running) => return made(record, State::Running, init),
        Some(Status::Paused) => return made(record, State::Paused, init),
        _ => {}
    }
    let monitor = record.monitor.filter(|m| m.alive());
    if let Some(monitor) = monitor {
        if record.exit_code.is_some() {
            // The run has ended and its monitor is cleaning up.
            return made(record, State::Exited, None);
        }
        if live == Some(Status::Stopped) && may_wait {
            // The init is gone and its monitor is about to record how: wait for that rather
            // than report a state without its exit code. An `--rm` container's monitor
            // removes it as it records the end: gone is an answer (`wait` takes the code from
            // its waiter), not an error.
            let Some(record) = recorded_end(c, &record, monitor)? else { return Ok(None) };
            return observe_inner(c, record, false);
        }
        let state = if live == Some(Status::Stopped) { State::Exited } else { State::Created };
        return made(record, state, None);
    }
    if record.exit_code.is_some() {
        // Ended; a monitor killed after recording the exit may have left the run's resources.
        if c.runtime().states.dir(&id).exists() || rootfs::maybe_mounted(&c.paths(&id)) {
            return finalize(c, &id, MONITOR_DIED);
        }
        return made(record, State::Exited, None);
    }
    if record.monitor.is_none() {
        return made(record, State::Created, None);
    }
    // Started once, no monitor now and no exit recorded: the monitor died. Whatever is left
    // of the run (an init waiting to start, a cgroup, a mount) goes.
    finalize(c, &id, MONITOR_DIED)
}

/// The record once `monitor` has recorded the end of the run `looked` saw, or has exited, or
/// after 5 s; None if the container is gone. A monitor that restarts the container by its
/// policy lives on after recording (and may have started the next run since): its exit alone
/// is not what to wait for. Nothing signals the record's write, so between waits on the
/// monitor's pidfd the record is read again.
fn recorded_end(
    c: &Containers,
    looked: &ContainerRecord,
    monitor: ProcessRef,
) -> Result<Option<ContainerRecord>, ContainerError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let pidfd = monitor.pidfd();
    loop {
        let record = match c.load(&looked.id) {
            Err(ContainerError::NoSuchContainer(_)) => return Ok(None),
            record => record?,
        };
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let moved_on =
            record.exit_code.is_some() || record.monitor != Some(monitor) || record.started_at != looked.started_at;
        if moved_on || left.is_zero() {
            return Ok(Some(record));
        }
        let Some(fd) = &pidfd else { return Ok(Some(record)) };
        if wait_readable(fd, Some(left.min(Duration::from_millis(20)))) {
            // The monitor exited: what it recorded is final.
            return match c.load(&looked.id) {
                Err(ContainerError::NoSuchContainer(_)) => Ok(None),
                record => record.map(Some),
            };
        }
    }
}

/// Record the end of a run whose monitor is gone and release what it held. Runs under the
/// container's lock and re-checks, since a new monitor may have taken over meanwhile.
fn finalize(c: &Containers, id: &str, reason: &str) -> Result<Option<Observed>, ContainerError> {
    let lock = match c.lock(id) {
        Ok(l) => l,
        Err(ContainerError::NoSuchContainer(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut record = c.load(id)?;
    if record.monitor.is_some_and(|m| m.alive()) {
        drop(lock);
        return observe_inner(c, record, false);
    }
    let alive = c.runtime().states.load(id).ok().filter(|s| s.init_alive() && c.runtime().status(s) != Status::Created);
    if let Some(state) = alive {
        // An orphaned but running container: it is running.
        let init = Some(ProcessRef { pid: state.pid, start_time: state.pid_start });
        return Ok(Some(Observed { record, state: State::Running, init }));
    }
    release_run(c, &record.id)?;
    if record.exit_code.is_none() {
        record.exit_code = Some(UNKNOWN_EXIT);
        record.error = Some(reason.to_string());
        record.finished_at = Some(crate::lifecycle::now_rfc3339());
    }
    c.save(&record)?;
    if record.removed_at_end() {
        super::ops::remove_files(c, id)?;
        // As its monitor would have: docker's --rm takes the anonymous volumes too.
        super::volumes::remove_anonymous(c, &record)?;
        return Ok(None);
    }
    Ok(Some(Observed { record, state: State::Exited, init: None }))
}

/// Release what a run holds: its processes, cgroup and lifecycle state, and its rootfs
/// mount (the upper dir stays). Idempotent; the caller holds the container's lock.
pub fn release_run(c: &Containers, id: &str) -> Result<(), ContainerError> {
    let rt = c.runtime();
    // Only when there is a state: the lifecycle would otherwise leave a lock file behind.
    if rt.states.dir(id).exists() {
        match crate::lifecycle::delete::delete(rt, id, true) {
            Ok(()) => {}
            Err(crate::lifecycle::LifecycleError::State(crate::lifecycle::state::StateError::NotFound(_))) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // A create killed between making the cgroup and saving its state leaves the cgroup
    // without a state that names it; ours is always /strata/<id>.
    if let Ok(cgroup) = crate::sandbox::cgroups::Cgroup::new(&rt.cgroup_root, &format!("/strata/{id}")) {
        if cgroup.dirs().iter().any(|d| d.exists()) {
            let _ = cgroup.kill_all(rustix::process::Signal::KILL);
            for pid in cgroup.pids().unwrap_or_default() {
                crate::lifecycle::wait_for_exit(pid, Some(Duration::from_secs(10)));
            }
            cgroup.delete().map_err(|e| ContainerError::Monitor(format!("removing cgroup: {e}")))?;
        }
    }
    rootfs::unmount(&c.paths(id))
}

/// Wait until `fd` (a pidfd, a pipe) is readable; false on timeout.
pub fn wait_readable(fd: &impl std::os::fd::AsFd, timeout: Option<Duration>) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    loop {
        let remaining = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        let ts = remaining.map(|d| Timespec { tv_sec: d.as_secs() as i64, tv_nsec: d.subsec_nanos() as i64 });
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match poll(&mut fds, ts.as_ref()) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return true,
        }
    }
}
