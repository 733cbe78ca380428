//! A worker by re-executing the shim's own binary in a hidden mode (`WORKER_ARG`): a fresh,
//! single-threaded process per job. Its fd 3 is the reply socket, fd 4 the console socket
//! when the container has a terminal.

use super::{SpawnError, Stdio};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// argv[1] of a re-exec'd worker.
pub const WORKER_ARG: &str = "__strata-spawn-worker";
pub const REPLY_FD: i32 = 3;
pub const CONSOLE_FD: i32 = 4;

/// An fd numbered 10 or above, so the dup2s into 3 and 4 in the child never overwrite a
/// source that happens to sit there.
fn high(fd: &impl AsRawFd) -> Result<OwnedFd, SpawnError> {
    // SAFETY: F_DUPFD_CLOEXEC on a valid fd returns a new fd we own.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if new < 0 {
        return Err(SpawnError::Worker(std::io::Error::last_os_error()));
    }
    // SAFETY: `new` is a fresh fd owned by nobody else.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(new) })
}

/// Start a worker; the caller writes the job on its end of `reply`.
pub fn spawn(stdio: Stdio, reply: UnixStream, console: Option<OwnedFd>) -> Result<(), SpawnError> {
    let reply_fd = high(&reply)?;
    let console_fd = console.as_ref().map(high).transpose()?;
    let (r, c) = (reply_fd.as_raw_fd(), console_fd.as_ref().map(|f| f.as_raw_fd()));
    let mut cmd = Command::new(std::env::current_exe().map_err(SpawnError::Worker)?);
    cmd.arg(WORKER_ARG);
    if console.is_some() {
        cmd.arg("console");
    }
    cmd.stdin(stdio.stdin).stdout(stdio.stdout).stderr(stdio.stderr);
    // SAFETY: only async-signal-safe calls (dup2) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(r, REPLY_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(c) = c {
                if libc::dup2(c, CONSOLE_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    // The worker is reaped by the shim's reaper like any other child; nobody waits on it.
    let _child = cmd.spawn().map_err(SpawnError::Worker)?;
    Ok(())
}

/// In the re-exec'd worker: take fds 3 and 4 and serve. Never returns.
pub fn worker_main(with_console: bool) -> ! {
    use std::os::fd::FromRawFd;
    // SAFETY: the shim put the reply socket at fd 3 (and the console at fd 4) for us.
    let reply = unsafe { UnixStream::from_raw_fd(REPLY_FD) };
    let console = with_console.then(|| unsafe { OwnedFd::from_raw_fd(CONSOLE_FD) });
    for fd in [Some(REPLY_FD), with_console.then_some(CONSOLE_FD)].into_iter().flatten() {
        // SAFETY: keep them away from anything the worker executes.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    super::worker::serve_from_socket(reply, console)
}
