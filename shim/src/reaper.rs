//! The shim's one reaper. The shim is a subreaper: containers' inits and exec'd processes are
//! reparented to it when their spawn worker exits, and so are orphans of containers without
//! their own pid namespace. On each SIGCHLD every exited child is collected (waitpid -1,
//! WNOHANG: driven by the signal, never polled) and its status handed to whoever registered
//! the pid; unregistered children (workers, orphans) are just reaped.
//!
//! A pid is registered before its spawn worker is released (see `spawn`), so no exit can
//! arrive for a pid nobody is waiting for yet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// How a process ended: its exit code, or 128 + the signal that killed it (as a shell says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub status: u32,
    pub at: SystemTime,
}

impl Exit {
    pub fn from_wait_status(status: i32) -> Exit {
        let code = if libc::WIFSIGNALED(status) { 128 + libc::WTERMSIG(status) } else { libc::WEXITSTATUS(status) };
        Exit { status: code as u32, at: SystemTime::now() }
    }
}

/// Where a process's exit is published: `None` until it has exited.
pub type ExitWatch = watch::Receiver<Option<Exit>>;
pub type ExitSender = watch::Sender<Option<Exit>>;

#[derive(Default)]
pub struct Reaper {
    waiting: Mutex<HashMap<i32, watch::Sender<Option<Exit>>>>,
}

impl Reaper {
    /// Listen for SIGCHLD from now on. Must run inside the tokio runtime, before any child.
    pub fn start() -> std::io::Result<Arc<Reaper>> {
        let reaper = Arc::new(Reaper::default());
        let mut sigchld = signal(SignalKind::child())?;
        let r = reaper.clone();
        tokio::spawn(async move {
            loop {
                r.reap();
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
        });
        Ok(reaper)
    }

    /// Register `pid` (a process that is, or is about to become, our child): its exit is
    /// sent on `tx`.
    pub fn watch(&self, pid: i32, tx: ExitSender) {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).insert(pid, tx);
    }

    /// Collect every exited child.
    fn reap(&self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid out-pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                // 0: children remain, none exited; -1: ECHILD (none at all) or EINTR (next signal).
                break;
            }
            if let Some(tx) = waiting.remove(&pid) {
                let _ = tx.send(Some(Exit::from_wait_status(status)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_become_128_plus() {
        // Encoded as the kernel does: low 7 bits the signal; exit code in bits 8-15.
        assert_eq!(Exit::from_wait_status(9).status, 137);
        assert_eq!(Exit::from_wait_status(3 << 8).status, 3);
    }

    #[tokio::test]
    // The reaper is what waits for the child here.
    #[allow(clippy::zombie_processes)]
    async fn reports_a_childs_exit() {
        let reaper = Reaper::start().unwrap();
        // The child waits for its stdin to close, so it is registered before it can exit.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read x; exit 7"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, mut rx) = watch::channel(None);
        reaper.watch(child.id() as i32, tx);
        drop(child.stdin.take());
        let exit = rx.wait_for(|e| e.is_some()).await.unwrap().unwrap();
        assert_eq!(exit.status, 7);
    }
}
