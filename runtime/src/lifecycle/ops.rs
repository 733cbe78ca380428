//! The smaller verbs: pause, resume, update (resources), and the processes of a container.

use super::state::Status;
use super::{LifecycleError, Runtime};
use oci_spec::runtime::LinuxResources;

pub fn pause(rt: &Runtime, id: &str) -> Result<(), LifecycleError> {
    let state = rt.states.load(id)?;
    // As runc: a created container may be paused too (it stays created once resumed).
    if !matches!(rt.status(&state), Status::Running | Status::Created) {
        return Err(LifecycleError::NotRunningId { id: id.into() });
    }
    rt.cgroup(&state)?.freeze().map_err(|e| LifecycleError::Cgroup(e.to_string()))
}

pub fn resume(rt: &Runtime, id: &str) -> Result<(), LifecycleError> {
    let state = rt.states.load(id)?;
    if rt.status(&state) != Status::Paused {
        return Err(LifecycleError::NotPaused { id: id.into() });
    }
    rt.cgroup(&state)?.thaw().map_err(|e| LifecycleError::Cgroup(e.to_string()))
}

pub fn update(rt: &Runtime, id: &str, resources: &LinuxResources) -> Result<(), LifecycleError> {
    let state = rt.states.load(id)?;
    if rt.status(&state) == Status::Stopped {
        return Err(LifecycleError::NotRunningId { id: id.into() });
    }
    rt.cgroup(&state)?.apply(resources).map_err(|e| LifecycleError::Cgroup(e.to_string()))
}

pub fn pids(rt: &Runtime, id: &str) -> Result<Vec<i32>, LifecycleError> {
    let state = rt.states.load(id)?;
    let mut pids = rt.cgroup(&state)?.pids().map_err(|e| LifecycleError::Cgroup(e.to_string()))?;
    pids.sort();
    Ok(pids)
}
