//! The channel between the runtime and a container's init while it is being set up: a
//! socketpair carrying one-byte messages (plus an error text), so each side blocks on the
//! other instead of polling, and an init that dies closes its end and unblocks the runtime.

use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// Init -> runtime: mounts are done, run the createRuntime/prestart hooks now.
pub const HOOKS: u8 = b'H';
/// Runtime -> init: go on.
pub const CONTINUE: u8 = b'C';
/// Init -> runtime: set up, waiting for `start`.
pub const READY: u8 = b'R';
/// Init -> runtime: failed; a length-prefixed message follows.
pub const ERROR: u8 = b'E';

pub struct Channel {
    stream: UnixStream,
}

pub fn pair() -> io::Result<(Channel, Channel)> {
    let (a, b) = socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    Ok((Channel::from_fd(a), Channel::from_fd(b)))
}

impl Channel {
    fn from_fd(fd: OwnedFd) -> Channel {
        // SAFETY: the fd is a freshly created, owned unix stream socket.
        Channel { stream: unsafe { UnixStream::from_raw_fd(fd.into_raw_fd()) } }
    }

    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.stream)
    }

    pub fn send(&mut self, message: u8) -> io::Result<()> {
        self.stream.write_all(&[message])
    }

    pub fn send_error(&mut self, text: &str) -> io::Result<()> {
        let bytes = text.as_bytes();
        let len = (bytes.len().min(u16::MAX as usize) as u16).to_be_bytes();
        let mut msg = vec![ERROR, len[0], len[1]];
        msg.extend_from_slice(&bytes[..bytes.len().min(u16::MAX as usize)]);
        self.stream.write_all(&msg)
    }

    /// The next message; `Err(text)` if the other side reported an error or hung up.
    pub fn recv(&mut self) -> Result<u8, String> {
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(0) => Err("container init exited during setup".into()),
            Ok(_) if b[0] == ERROR => {
                let mut len = [0u8; 2];
                self.stream.read_exact(&mut len).map_err(|e| e.to_string())?;
                let mut text = vec![0u8; u16::from_be_bytes(len) as usize];
                self.stream.read_exact(&mut text).map_err(|e| e.to_string())?;
                Err(String::from_utf8_lossy(&text).into_owned())
            }
            Ok(_) => Ok(b[0]),
            Err(e) => Err(format!("reading from container init: {e}")),
        }
    }

    /// Expect exactly `want`.
    pub fn expect(&mut self, want: u8) -> Result<(), String> {
        match self.recv()? {
            got if got == want => Ok(()),
            got => Err(format!("container init sent {:?}, expected {:?}", got as char, want as char)),
        }
    }
}
