//! The container's terminal (`process.terminal`), as runc does it: the container's process
//! opens a pseudo-terminal in the container's own devpts, makes the slave its controlling
//! terminal and stdio, and sends the master over a unix socket (SCM_RIGHTS) to whoever holds
//! the terminal: the caller's `--console-socket`, or `strata-oci` itself, which then relays
//! between its own stdio and the master ([`relay`]).
//!
//! The container side ([`attach_pty`]) runs in the init (or an exec'd process) after
//! pivot_root and before the user is switched; it must never allocate a pty on the host's
//! devpts when the container has its own.

use rustix::fs::{Mode, OFlags};
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage,
    SendFlags,
};
use rustix::pty::OpenptFlags;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Connect to a `--console-socket` (done by the runtime, before the container starts, so a
/// bad path fails `create` cleanly).
pub fn connect(path: &Path) -> Result<OwnedFd, String> {
    let stream =
        UnixStream::connect(path).map_err(|e| format!("connecting to console socket {}: {e}", path.display()))?;
    Ok(stream.into())
}

/// In the container: open a pty, send its master over `socket`, and make the slave the
/// controlling terminal and fds 0, 1 and 2, owned by the process's user.
pub fn attach_pty(socket: BorrowedFd<'_>, process: &oci_spec::runtime::Process) -> Result<(), String> {
    let (uid, gid) = (process.user().uid(), process.user().gid());
    let master = rustix::fs::open("/dev/ptmx", OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| format!("opening /dev/ptmx: {e}"))?;
    rustix::pty::unlockpt(&master).map_err(|e| format!("unlockpt: {e}"))?;
    let slave = rustix::pty::ioctl_tiocgptpeer(&master, OpenptFlags::RDWR | OpenptFlags::NOCTTY)
        .map_err(|e| format!("opening the pty's slave: {e}"))?;
    rustix::fs::fchown(&slave, Some(rustix::fs::Uid::from_raw(uid)), Some(rustix::fs::Gid::from_raw(gid)))
        .map_err(|e| format!("chown of the pty's slave: {e}"))?;
    // `process.consoleSize`, as runc sets it before the program starts.
    if let Some(size) = process.console_size() {
        let cells = |n: u64| u16::try_from(n).unwrap_or(u16::MAX);
        let size = rustix::termios::Winsize {
            ws_row: cells(size.height()),
            ws_col: cells(size.width()),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&slave, size).map_err(|e| format!("setting the console size: {e}"))?;
    }
    send_fd(socket, &master, b"/dev/ptmx")?;
    drop(master);
    // SAFETY: plain ioctl/dup2 on fds we own; setsid was called by the init before.
    unsafe {
        if libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) != 0 {
            return Err(format!("setting the controlling terminal: {}", std::io::Error::last_os_error()));
        }
        for target in 0..3 {
            if libc::dup2(slave.as_raw_fd(), target) < 0 {
                return Err(format!("dup2 of the pty to fd {target}: {}", std::io::Error::last_os_error()));
            }
        }
    }
    Ok(())
}

fn send_fd(socket: BorrowedFd<'_>, fd: &OwnedFd, name: &[u8]) -> Result<(), String> {
    let fds = [fd.as_fd()];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    sendmsg(socket, &[IoSlice::new(name)], &mut control, SendFlags::empty())
        .map_err(|e| format!("sending the pty master over the console socket: {e}"))?;
    Ok(())
}

/// Receive a pty master sent by [`attach_pty`].
pub fn recv_master(socket: BorrowedFd<'_>) -> Result<OwnedFd, String> {
    let mut name = [0u8; 4096];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    recvmsg(socket, &mut [IoSliceMut::new(&mut name)], &mut control, RecvFlags::CMSG_CLOEXEC)
        .map_err(|e| format!("receiving the pty master: {e}"))?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = message {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err("the container closed its console socket without sending a terminal".into())
}

/// Relay between our stdio and the container's terminal until the container's process
/// (`pidfd`) exits, with our terminal (if stdin is one) in raw mode meanwhile. Output still
/// buffered in the pty when the process exits is drained before returning.
pub fn relay(master: &OwnedFd, pidfd: &OwnedFd) {
    use rustix::event::{poll, PollFd, PollFlags};
    let stdin = std::io::stdin();
    let stdin = stdin.as_fd();
    let stdout = std::io::stdout();
    let stdout = stdout.as_fd();
    let _raw = RawMode::enter(stdin);
    copy_window_size(stdin, master);
    let mut stdin_open = true;
    let mut buf = [0u8; 8192];
    loop {
        let mut fds = vec![PollFd::new(master, PollFlags::IN), PollFd::new(pidfd, PollFlags::IN)];
        if stdin_open {
            fds.push(PollFd::new(&stdin, PollFlags::IN));
        }
        match poll(&mut fds, None) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
            Ok(_) => {}
        }
        let (master_ready, exited) = (fds[0].revents(), fds[1].revents());
        let stdin_ready = fds.get(2).map(|f| f.revents()).unwrap_or(PollFlags::empty());
        if master_ready.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
            match rustix::io::read(master, &mut buf) {
                Ok(n) if n > 0 => write_all(stdout, &buf[..n]),
                // EIO: the last holder of the slave is gone.
                _ => return,
            }
        }
        if stdin_ready.intersects(PollFlags::IN | PollFlags::HUP) {
            match rustix::io::read(stdin, &mut buf) {
                Ok(n) if n > 0 => write_all(master.as_fd(), &buf[..n]),
                _ => stdin_open = false,
            }
        }
        if exited.contains(PollFlags::IN) {
            drain(master, stdout, &mut buf);
            return;
        }
    }
}

fn drain(master: &OwnedFd, out: BorrowedFd<'_>, buf: &mut [u8]) {
    let _ =
        rustix::fs::fcntl_setfl(master, rustix::fs::fcntl_getfl(master).unwrap_or(OFlags::empty()) | OFlags::NONBLOCK);
    while let Ok(n) = rustix::io::read(master, &mut *buf) {
        if n == 0 {
            break;
        }
        write_all(out, &buf[..n]);
    }
}

fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        }
    }
}

fn copy_window_size(from: BorrowedFd<'_>, to: &OwnedFd) {
    if let Ok(size) = rustix::termios::tcgetwinsize(from) {
        let _ = rustix::termios::tcsetwinsize(to, size);
    }
}

/// Our terminal in raw mode for as long as this lives (keys go to the container as typed).
pub struct RawMode<'a> {
    fd: BorrowedFd<'a>,
    saved: rustix::termios::Termios,
}

impl<'a> RawMode<'a> {
    pub fn enter(fd: BorrowedFd<'a>) -> Option<RawMode<'a>> {
        let saved = rustix::termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(fd, rustix::termios::OptionalActions::Now, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode<'_> {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(self.fd, rustix::termios::OptionalActions::Now, &self.saved);
    }
}
