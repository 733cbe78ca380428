//! `kill`: signal the init, or with `all` every process of the container's cgroup.

use super::state::Status;
use super::{LifecycleError, Runtime};

/// Parse a signal as runc does: a number, `KILL`, or `SIGKILL`. 0 sends nothing: kill(2)'s
/// check that the process is there.
pub fn parse_signal(s: &str) -> Result<i32, LifecycleError> {
    if let Ok(n) = s.parse::<i32>() {
        if (0..=64).contains(&n) {
            return Ok(n);
        }
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => return Err(LifecycleError::Signal(format!("invalid signal {s:?}"))),
    };
    Ok(n)
}

pub fn kill(rt: &Runtime, id: &str, signal: i32, all: bool) -> Result<(), LifecycleError> {
    let state = rt.states.load(id)?;
    // With `all`, a stopped container's cgroup may still hold processes (its init shared a
    // pid namespace, so they did not die with it): runc signals them too.
    let status = rt.status(&state);
    match status {
        Status::Creating => return Err(LifecycleError::NotRunning),
        Status::Stopped if !all => return Err(LifecycleError::NotRunning),
        _ => {}
    }
    if all {
        let cgroup = rt.cgroup(&state)?;
        for pid in cgroup.pids().map_err(|e| LifecycleError::Cgroup(e.to_string()))? {
            // SAFETY: signalling processes of the container's own cgroup.
            unsafe { libc::kill(pid, signal) };
        }
    } else {
        // SAFETY: kill(2) on the init's pid, which init_alive() just checked is ours.
        if unsafe { libc::kill(state.pid, signal) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ESRCH) {
                return Err(LifecycleError::Signal("no such process".into()));
            }
            return Err(LifecycleError::Signal(format!("kill {}: {e}", state.pid)));
        }
    }
    // A frozen process dies of SIGKILL only once thawed (on v1 at least): as runc, a paused
    // container is thawed for SIGKILL, and only for it.
    if status == Status::Paused && signal == libc::SIGKILL {
        rt.cgroup(&state)?.thaw().map_err(|e| LifecycleError::Cgroup(e.to_string()))?;
    }
    Ok(())
}

/// SIGKILL every process left in the container's cgroup and wait, up to `limit`, until none is
/// (a killed process stays listed until it has exited): for a container whose init shared a
/// pid namespace, so its other processes did not die with it. Its exit is reported only after
/// this, as runc's shim does. Returns whether the cgroup is empty.
pub fn kill_all_and_wait(rt: &Runtime, id: &str, limit: std::time::Duration) -> Result<bool, LifecycleError> {
    let state = rt.states.load(id)?;
    let cgroup = rt.cgroup(&state)?;
    let deadline = std::time::Instant::now() + limit;
    loop {
        let pids = cgroup.pids().map_err(|e| LifecycleError::Cgroup(e.to_string()))?;
        if pids.is_empty() {
            return Ok(true);
        }
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        for pid in pids {
            // SAFETY: signalling processes of the container's own cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // A cgroup v1 has no event for "empty": look again shortly.
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
