//! The zygote: a single-threaded process forked from the shim's `main` before the tokio
//! runtime (and any thread) exists. It waits for jobs on a SEQPACKET socket (the job's JSON
//! plus the worker's fds by SCM_RIGHTS) and forks one worker per job, so the shim never forks
//! itself and pays no exec per container.
//!
//! Must never: start a thread, or hold anything of the shim's it does not need (its stdout
//! would keep containerd's `start` pipe open).

use super::job::Job;
use super::Stdio;
use rustix::net::{
    recvmsg, sendmsg, socketpair, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// Jobs are small; this bounds one message (a process spec with a large environment fits).
const MAX_JOB: usize = 1 << 20;

/// The shim's handle on its zygote.
pub struct Client {
    socket: OwnedFd,
}

impl Client {
    /// Send a job with the worker's fds: stdin, stdout, stderr, reply[, console].
    pub fn submit(&self, job: &Job, stdio: &Stdio, reply: &UnixStream, console: Option<&OwnedFd>) -> io::Result<()> {
        let body = serde_json::to_vec(job).map_err(io::Error::other)?;
        let mut fds: Vec<BorrowedFd<'_>> =
            vec![stdio.stdin.as_fd(), stdio.stdout.as_fd(), stdio.stderr.as_fd(), reply.as_fd()];
        fds.extend(console.map(|c| c.as_fd()));
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(5))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        sendmsg(&self.socket, &[IoSlice::new(&body)], &mut control, SendFlags::NOSIGNAL)?;
        Ok(())
    }
}

/// Fork the zygote. Call from `main` while the process is still single-threaded.
pub fn start() -> io::Result<Client> {
    let (ours, theirs) = socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
    let parent = std::process::id() as i32;
    // SAFETY: the process is single-threaded here (no runtime, no thread yet); the child
    // never returns into the caller.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(ours);
            serve(theirs, parent)
        }
        _ => Ok(Client { socket: ours }),
    }
}

fn serve(socket: OwnedFd, parent: i32) -> ! {
    // SAFETY: plain syscalls with constant arguments, in our single-threaded self.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != parent {
            libc::_exit(0);
        }
        // Workers are reaped by the kernel; their children are reparented to the shim.
        libc::signal(libc::SIGCHLD, libc::SIG_IGN);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            libc::close(null);
        }
    }
    let mut body = vec![0u8; MAX_JOB];
    let mut trimmed = false;
    loop {
        // Idle after a job (or since it started): give back the code pages it touched.
        if !trimmed && !readable_within(&socket, strata::working_set::IDLE) {
            let _ = strata::working_set::trim_code();
            trimmed = true;
        }
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(5))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let n = match recvmsg(&socket, &mut [IoSliceMut::new(&mut body)], &mut control, RecvFlags::CMSG_CLOEXEC) {
            Ok(r) if r.bytes == 0 => break,
            Ok(r) => r.bytes,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        };
        let mut fds: Vec<OwnedFd> = Vec::new();
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = message {
                fds.extend(received);
            }
        }
        let Ok(job) = serde_json::from_slice::<Job>(&body[..n]) else { continue };
        if fds.len() < 4 {
            continue;
        }
        trimmed = false;
        // SAFETY: fork of this single-threaded process; the child ends in worker::serve.
        match unsafe { libc::fork() } {
            0 => {
                drop(socket);
                worker(job, fds)
            }
            _ => drop(fds),
        }
    }
    // SAFETY: the shim is gone; leave.
    unsafe { libc::_exit(0) }
}

/// Whether `socket` has a message (or is closed) within `limit`.
fn readable_within(socket: &OwnedFd, limit: std::time::Duration) -> bool {
    let mut pfd = libc::pollfd { fd: socket.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, limit.as_millis() as i32) != 0 }
}

fn worker(job: Job, mut fds: Vec<OwnedFd>) -> ! {
    // SAFETY: restore what the zygote changed, and put the container's stdio at 0/1/2. The
    // sources are received fds (CLOEXEC, numbered above 2 since 0-2 are taken).
    unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0);
        for (target, fd) in fds.iter().take(3).enumerate() {
            libc::dup2(fd.as_raw_fd(), target as i32);
        }
    }
    let console = if fds.len() > 4 { fds.pop() } else { None };
    let reply = UnixStream::from(fds.pop().expect("checked: four fds"));
    drop(fds);
    super::worker::serve(job, reply, console)
}
