//! `start`: release the init blocked on the exec fifo, then run the poststart hooks.
//! Waits on the fifo and the init's pidfd together, so a dead init is an error, not a hang.

use super::state::Status;
use super::{LifecycleError, Runtime};
use crate::sandbox::hooks;
use rustix::event::{poll, PollFd, PollFlags};
use rustix::fs::{Mode, OFlags};

pub fn start(rt: &Runtime, id: &str) -> Result<(), LifecycleError> {
    let _lock = rt.states.lock(id)?;
    let mut state = rt.states.load(id)?;
    match rt.status(&state) {
        Status::Created => {}
        Status::Stopped => return Err(LifecycleError::StartStopped),
        Status::Creating => return Err(LifecycleError::Setup(format!("container {id} is still being created"))),
        Status::Running => return Err(LifecycleError::StartRunning),
        // runc's words.
        Status::Paused => return Err(LifecycleError::Setup("cannot start a container in the paused state".into())),
    }
    // The pidfd first: once the fifo is open the init runs, and a quick program may exit and
    // be reaped (by a subreaper such as containerd's shim) before we could open it.
    let pid = rustix::process::Pid::from_raw(state.pid).ok_or(LifecycleError::StartStopped)?;
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .map_err(|_| LifecycleError::StartStopped)?;
    let fifo_path = rt.states.exec_fifo(id);
    // Opening for read without O_NONBLOCK would hang forever if the init died meanwhile.
    let fifo = rustix::fs::open(&fifo_path, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| LifecycleError::Setup(format!("opening exec fifo: {e}")))?;
    loop {
        let mut fds = [PollFd::new(&fifo, PollFlags::IN), PollFd::new(&pidfd, PollFlags::IN)];
        match poll(&mut fds, None) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(LifecycleError::Setup(format!("waiting for the container's init: {e}"))),
            Ok(_) => {}
        }
        if fds[0].revents().contains(PollFlags::IN) {
            let mut b = [0u8; 1];
            match rustix::io::read(&fifo, &mut b) {
                Ok(1) => break,
                Ok(_) | Err(rustix::io::Errno::AGAIN) => continue,
                Err(e) => return Err(LifecycleError::Setup(format!("reading exec fifo: {e}"))),
            }
        }
        if fds[1].revents().contains(PollFlags::IN) {
            return Err(LifecycleError::Setup("container init exited before start".into()));
        }
    }
    let _ = std::fs::remove_file(&fifo_path);
    state.started = true;
    rt.states.save(&state)?;
    if let Some(spec) = rt.saved_spec(id) {
        let hooks = spec.hooks().clone().unwrap_or_default();
        let json = state.oci_state(Status::Running).to_string();
        // poststart failures are reported but the container keeps running, as runc does.
        if let Err(e) = hooks::run_all("poststart", hooks.poststart().as_ref(), &json) {
            tracing::warn!("{e}");
            eprintln!("warning: {e}");
        }
    }
    Ok(())
}
