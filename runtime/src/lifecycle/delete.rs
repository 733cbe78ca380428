//! `delete`: remove a stopped (or, forced, a running) container: kill what is left of it,
//! wait on pidfds until it is gone, remove its cgroup, run poststop hooks, drop its state.

use super::state::Status;
use super::{wait_for_exit, LifecycleError, Runtime};
use crate::sandbox::hooks;
use std::time::Duration;

pub fn delete(rt: &Runtime, id: &str, force: bool) -> Result<(), LifecycleError> {
    let _lock = rt.states.lock(id)?;
    let state = match rt.states.load(id) {
        Ok(s) => s,
        // A directory without a state file is a create killed halfway: clean it up.
        Err(super::state::StateError::NotFound(_)) if rt.states.dir(id).is_dir() && force => {
            rt.states.remove(id)?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let status = rt.status(&state);
    match status {
        Status::Stopped | Status::Created | Status::Creating => {}
        Status::Running | Status::Paused if force => {}
        _ => return Err(LifecycleError::NotStopped { id: id.into(), status }),
    }
    let cgroup = rt.cgroup(&state).ok();
    if status == Status::Paused {
        if let Some(cg) = &cgroup {
            let _ = cg.thaw();
        }
    }
    if state.init_alive() {
        // SAFETY: SIGKILL to the container's own init.
        unsafe { libc::kill(state.pid, libc::SIGKILL) };
        wait_for_exit(state.pid, Some(Duration::from_secs(10)));
    }
    if let Some(cg) = &cgroup {
        if let Ok(pids) = cg.pids() {
            for pid in &pids {
                // SAFETY: processes of the container's own cgroup.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
            for pid in pids {
                wait_for_exit(pid, Some(Duration::from_secs(10)));
            }
        }
        cg.delete().map_err(|e| LifecycleError::Cgroup(e.to_string()))?;
    }
    if let Some(spec) = rt.saved_spec(id) {
        let hooks = spec.hooks().clone().unwrap_or_default();
        let json = state.oci_state(Status::Stopped).to_string();
        if let Err(e) = hooks::run_all("poststop", hooks.poststop().as_ref(), &json) {
            tracing::warn!("{e}");
            eprintln!("warning: {e}");
        }
    }
    rt.states.remove(id)?;
    Ok(())
}
