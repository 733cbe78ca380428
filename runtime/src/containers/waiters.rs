//! How `wait` learns the exit code of an `--rm` container, whose monitor removes its record
//! as it ends: each waiter puts a FIFO in the container's `waiters/` directory and holds its
//! read end; the monitor, before it removes the container, writes the exit code into every
//! FIFO that has a reader. The code then waits in the pipe for the waiter to read, after the
//! directory is gone. Nothing is written when nobody waits (no cost to `run --rm`).

use super::{ContainerError, Containers};
use rustix::fs::{Mode, OFlags};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// One waiting `wait`: its FIFO (removed when dropped) and the FIFO's read end.
pub struct Waiter {
    fifo: PathBuf,
    read_end: OwnedFd,
}

impl Waiter {
    /// Register for container `id`'s exit code. NoSuchContainer once it is removed.
    pub fn register(c: &Containers, id: &str) -> Result<Waiter, ContainerError> {
        let dir = c.paths(id).waiters();
        let gone = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => ContainerError::NoSuchContainer(id.into()),
            _ => ContainerError::Io { context: format!("waiting for container {id}"), source: e },
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(gone(e)),
        }
        let fifo = dir.join(format!("{}-{}", std::process::id(), hex(super::names::random_bytes::<4>())));
        rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, Mode::from_raw_mode(0o600), 0)
            .map_err(|e| gone(e.into()))?;
        let read_end = rustix::fs::open(&fifo, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| gone(e.into()));
        match read_end {
            Ok(read_end) => Ok(Waiter { fifo, read_end }),
            Err(e) => {
                let _ = std::fs::remove_file(&fifo);
                Err(e)
            }
        }
    }

    /// The exit code the monitor left, if it left one (call once the monitor is gone).
    pub fn code(&self) -> Option<i32> {
        let mut buf = [0u8; 16];
        let n = rustix::io::read(&self.read_end, &mut buf).ok()?;
        std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.fifo);
    }
}

/// The monitor's side: tell every waiter of container `id` its exit `code`.
pub fn notify(c: &Containers, id: &str, code: i32) {
    let Ok(entries) = std::fs::read_dir(c.paths(id).waiters()) else { return };
    for entry in entries.flatten() {
        // ENXIO: its waiter is gone (no reader); a FIFO only, never blocking.
        let flags = OFlags::WRONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if let Ok(fd) = rustix::fs::open(entry.path(), flags, Mode::empty()) {
            let _ = rustix::io::write(&fd, format!("{code}\n").as_bytes());
        }
    }
}

fn hex(bytes: [u8; 4]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
