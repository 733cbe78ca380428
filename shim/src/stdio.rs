//! A process's stdio as containerd hands it over: FIFO paths (ctr, CRI), `file://` URIs, or
//! nothing. Without a terminal the FIFOs themselves become the process's fds 0/1/2 — no copy
//! loop in the shim, no extra wakeups per write. With a terminal the shim holds the pty
//! master and relays between it and the FIFOs on two plain threads (terminals are rare and
//! interactive; blocking reads are the simplest correct thing there).
//!
//! FIFO opening follows what keeps containerd's clients happy:
//! - stdout/stderr are opened read-write: the open never blocks or fails whether or not the
//!   client has its end open yet, and the client's blocking open completes at once;
//! - stdin is opened read-only (non-blocking open, then blocking reads) so the process sees
//!   EOF when the client closes its end. Until the process is started the shim holds a write
//!   end too ([`Opened::stdin_holder`]), so a client that has not opened its end yet cannot
//!   make the process read a spurious EOF.

use crate::spawn::Stdio;
use rustix::fs::{Mode, OFlags};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// What containerd asked for one process.
#[derive(Debug, Clone, Default)]
pub struct Io {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

pub struct Opened {
    pub stdio: Stdio,
    pub stdin_holder: Option<OwnedFd>,
}

fn null() -> Result<OwnedFd, String> {
    rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()).map_err(|e| format!("/dev/null: {e}"))
}

/// Open an output destination: a FIFO (or any path), or a `file://` URI.
fn open_output(uri: &str) -> Result<OwnedFd, String> {
    if uri.is_empty() {
        return null();
    }
    if let Some(path) = uri.strip_prefix("file://") {
        if let Some(dir) = Path::new(path).parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        return rustix::fs::open(
            path,
            OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o640),
        )
        .map_err(|e| format!("opening log file {path}: {e}"));
    }
    if let Some(scheme) = uri.split_once("://").map(|(s, _)| s).filter(|s| *s != "fifo") {
        return Err(format!("stdio URI scheme {scheme:?} is not supported (use a FIFO or file://)"));
    }
    let path = uri.strip_prefix("fifo://").unwrap_or(uri);
    rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()).map_err(|e| format!("opening {path}: {e}"))
}

/// The fds a process without a terminal gets.
pub fn open(io: &Io) -> Result<Opened, String> {
    if io.terminal {
        return Ok(Opened { stdio: Stdio { stdin: null()?, stdout: null()?, stderr: null()? }, stdin_holder: None });
    }
    let (stdin, stdin_holder) = if io.stdin.is_empty() {
        (null()?, None)
    } else {
        let path = io.stdin.as_str();
        let r = rustix::fs::open(path, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| format!("opening {path}: {e}"))?;
        let flags = rustix::fs::fcntl_getfl(&r).map_err(|e| format!("{path}: {e}"))?;
        rustix::fs::fcntl_setfl(&r, flags - OFlags::NONBLOCK).map_err(|e| format!("{path}: {e}"))?;
        // Succeeds at once: a reader (ours) exists.
        let w = rustix::fs::open(path, OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| format!("opening {path}: {e}"))?;
        (r, Some(w))
    };
    Ok(Opened {
        stdio: Stdio { stdin, stdout: open_output(&io.stdout)?, stderr: open_output(&io.stderr)? },
        stdin_holder,
    })
}

/// Relay a terminal: stdin FIFO -> master, master -> stdout FIFO, until the process's side
/// of the pty is gone. The stdout FIFO's write end closes then, which is the client's EOF.
/// The receiver fires when the output is through: the exit is reported only after that, or a
/// client that stops reading at the exit would lose the last lines.
pub fn relay_terminal(master: &OwnedFd, io: &Io) -> Result<tokio::sync::oneshot::Receiver<()>, String> {
    let out = open_output(&io.stdout)?;
    let from_master = File::from(master.try_clone().map_err(|e| format!("dup of the pty: {e}"))?);
    let (done, output_done) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pty-out".into())
        .spawn(move || {
            copy(from_master, File::from(out));
            let _ = done.send(());
        })
        .map_err(|e| format!("starting the terminal relay: {e}"))?;
    if !io.stdin.is_empty() {
        let to_master = File::from(master.try_clone().map_err(|e| format!("dup of the pty: {e}"))?);
        let path = io.stdin.clone();
        std::thread::Builder::new()
            .name("pty-in".into())
            .spawn(move || {
                // Blocks until the client opens its end; ends with the client's EOF.
                if let Ok(input) = File::open(&path) {
                    copy(input, to_master);
                }
            })
            .map_err(|e| format!("starting the terminal relay: {e}"))?;
    }
    Ok(output_done)
}

fn copy(mut from: File, mut to: File) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // EIO on the master: the last holder of the slave is gone.
            Err(_) => return,
        }
    }
}

/// Set the terminal's window size.
pub fn resize(master: &OwnedFd, width: u32, height: u32) -> Result<(), String> {
    let size = rustix::termios::Winsize { ws_row: height as u16, ws_col: width as u16, ws_xpixel: 0, ws_ypixel: 0 };
    rustix::termios::tcsetwinsize(master.as_fd(), size).map_err(|e| format!("resizing the terminal: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("logs/out.log");
        let fd = open_output(&format!("file://{}", log.display())).unwrap();
        rustix::io::write(&fd, b"x").unwrap();
        assert_eq!(std::fs::read(&log).unwrap(), b"x");
        let e = open_output("binary:///usr/bin/logger").unwrap_err();
        assert!(e.contains("not supported"), "{e}");
    }

    #[test]
    fn stdin_fifo_sees_eof_when_the_client_closes() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("in");
        rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        let io = Io { stdin: fifo.display().to_string(), ..Default::default() };
        let opened = open(&io).unwrap();
        let mut client = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        client.write_all(b"hi").unwrap();
        drop(client);
        drop(opened.stdin_holder);
        let mut got = Vec::new();
        File::from(opened.stdio.stdin).read_to_end(&mut got).unwrap();
        assert_eq!(got, b"hi");
    }
}
