//! Spawning containers from a multi-threaded shim. The shim runs tokio (threads), and strata's
//! `lifecycle::create`/`exec` clone the container's process from the *calling* process, which
//! must be single-threaded. So every create and exec runs in a **worker**: a single-threaded
//! process whose fds 0/1/2 are the container's stdio (containerd's FIFOs, or /dev/null when the
//! container has a terminal), with a reply socket and, for a terminal, the console socket.
//!
//! Two ways to get a worker, one protocol ([`job`]):
//! - [`zygote`] (default): a single-threaded process forked from the shim's `main` before tokio
//!   starts; it forks one worker per job (a fork of a small single-threaded process). A shim
//!   that serves a single container (no pod, no group) lets it go after that container's
//!   create: its execs are re-exec'd.
//! - [`reexec`]: `posix_spawn` of the shim's own binary in a hidden mode, one per job. The
//!   fallback when the zygote is gone, and what `STRATA_SHIM_SPAWN=reexec` selects.
//!
//! The worker's child (the container's init, or an exec'd process) outlives it and is
//! reparented to the shim (a subreaper). A worker exits only after the shim has *released*
//! it (closed the reply socket), which the shim does after registering the child's pid with
//! the reaper: an exit that comes early is never missed.

pub mod job;
pub mod reexec;
pub mod worker;
pub mod zygote;

use job::{Job, Reply};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

/// The container's stdio for a worker: what becomes its fds 0, 1 and 2.
pub struct Stdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// A worker that did its job: the child's pid, and the worker held until [`Pending::release`].
pub struct Pending {
    pub pid: i32,
    reply: UnixStream,
}

impl Pending {
    /// Let the worker exit (its child is then reparented to the shim).
    pub fn release(self) {
        drop(self.reply);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("starting a spawn worker: {0}")]
    Worker(std::io::Error),
    #[error("talking to the spawn worker: {0}")]
    Protocol(String),
    /// The job itself failed (the worker's words, e.g. strata's create error).
    #[error("{0}")]
    Job(String),
}

/// How the shim gets its workers.
pub enum Spawner {
    /// The zygote while the shim has one (see [`Spawner::retire_zygote`]), else re-exec.
    Zygote(Mutex<Option<zygote::Client>>),
    Reexec,
}

impl Spawner {
    pub fn zygote(client: zygote::Client) -> Spawner {
        Spawner::Zygote(Mutex::new(Some(client)))
    }

    /// Let the zygote exit (it does when its socket closes); later jobs are re-exec'd. For a
    /// shim that will create no other container: an idle zygote is ~2 MB RSS per container
    /// kept for execs, which a re-exec'd worker does ~2.5 ms slower.
    pub fn retire_zygote(&self) {
        if let Spawner::Zygote(zygote) = self {
            zygote.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
    }

    /// Run `job` in a worker. Blocking: call from a blocking thread.
    pub fn run(&self, job: &Job, stdio: Stdio, console: Option<OwnedFd>) -> Result<Pending, SpawnError> {
        let (ours, theirs) = UnixStream::pair().map_err(SpawnError::Worker)?;
        match self {
            Spawner::Zygote(zygote) => {
                let sent = zygote
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .map(|client| client.submit(job, &stdio, &theirs, console.as_ref()));
                let submitted = match sent {
                    Some(Ok(())) => true,
                    // The zygote died (it should not): a re-exec'd worker still does the job.
                    Some(Err(e)) => {
                        log::warn!("zygote unavailable ({e}); re-executing instead");
                        false
                    }
                    None => false, // retired
                };
                if !submitted {
                    reexec::spawn(stdio, theirs, console)?;
                    job::write_message(&ours, job).map_err(|e| SpawnError::Protocol(e.to_string()))?;
                }
                // (theirs, if still here, is dropped now: a worker that dies unblocks our read.)
            }
            Spawner::Reexec => {
                reexec::spawn(stdio, theirs, console)?;
                job::write_message(&ours, job).map_err(|e| SpawnError::Protocol(e.to_string()))?;
            }
        }
        let reply = job::read_message::<Reply>(&ours).map_err(|e| SpawnError::Protocol(e.to_string()))?;
        match reply {
            Reply::Pid(pid) => Ok(Pending { pid, reply: ours }),
            Reply::Error(e) => Err(SpawnError::Job(e)),
        }
    }
}
