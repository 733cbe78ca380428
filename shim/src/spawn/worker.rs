//! The worker: a single-threaded process (a zygote's fork, or a re-exec of the shim) whose
//! fds 0/1/2 are the container's stdio. It does one job through strata's library, answers on
//! the reply socket, waits to be released, and exits without running any destructor.
//!
//! Must never: start a thread (it forks the container), or exit before the shim released it.

use super::job::{read_message, write_message, Job, Reply};
use crate::rootfs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use strata::lifecycle::{self, create::CreateOptions, exec::ExecOptions, Runtime};

/// Do `job`, answer, wait for the release, exit. Never returns.
pub fn serve(job: Job, reply: UnixStream, console: Option<OwnedFd>) -> ! {
    let answer = match run(job, console) {
        Ok(pid) => Reply::Pid(pid),
        Err(e) => Reply::Error(e),
    };
    if write_message(&reply, &answer).is_ok() {
        // Until the shim has registered the child's pid, its exit must stay ours to report:
        // the child is reparented to the shim only when we exit.
        let mut byte = [0u8; 1];
        let _ = (&reply).read(&mut byte);
    }
    // SAFETY: leave without running destructors (the container's child must not be touched).
    unsafe { libc::_exit(0) }
}

/// Read the job from the reply socket first (the re-exec'd worker's way in).
pub fn serve_from_socket(reply: UnixStream, console: Option<OwnedFd>) -> ! {
    match read_message::<Job>(&reply) {
        Ok(job) => serve(job, reply, console),
        Err(e) => {
            let _ = write_message(&reply, &Reply::Error(format!("spawn worker: reading the job: {e}")));
            // SAFETY: as above.
            unsafe { libc::_exit(1) }
        }
    }
}

fn run(job: Job, console: Option<OwnedFd>) -> Result<i32, String> {
    let console_stream = console.map(Arc::new);
    match job {
        Job::Create { id, bundle, state_root, rootfs: mounts } => {
            let target = bundle.join("rootfs");
            rootfs::mount_all(&mounts, &target)?;
            let result = Runtime::new(&state_root).map_err(|e| e.to_string()).and_then(|rt| {
                let opts = CreateOptions { bundle: bundle.clone(), console_stream, ..Default::default() };
                lifecycle::create::create(&rt, &id, &opts).map_err(|e| e.to_string())
            });
            match result {
                Ok(created) => Ok(created.state.pid),
                Err(e) => {
                    if !mounts.is_empty() {
                        let _ = rootfs::unmount_all(&target);
                    }
                    Err(e)
                }
            }
        }
        Job::Exec { id, state_root, process } => {
            let process = strata::spec::parse_process(process).map_err(|e| format!("exec: the process spec: {e}"))?;
            let rt = Runtime::new(&state_root).map_err(|e| e.to_string())?;
            let opts = ExecOptions { console_stream, ..Default::default() };
            lifecycle::exec::exec(&rt, &id, process, &opts).map_err(|e| e.to_string())
        }
    }
}
