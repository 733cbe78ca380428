//! The monitor's copy loop for one run: the container's output (two pipes, or its pty) into
//! the json log and, while a CLI is attached, to that CLI; with a pty, the CLI's input and
//! window size into the pty. Runs until the init has exited (its pidfd) and the output is
//! drained. One poll over every source; input waits in a buffer rather than blocking the
//! output (a container that does not read its terminal must not stall its own output).

use super::attach::decode_window_size;
use super::logs::{LogWriter, Stream};
use crate::spec::run_options::LogConfig;
use crate::working_set;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

/// After the init exits, how long output may still trickle in from processes that held the
/// pipes (the pid namespace is being torn down; they die with it). At most: with the host's
/// pid namespace (`--pid host`) a process left behind may write on for ever, and the run
/// would never end.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// The longest the drain goes on while an attached CLI that is slow but reading holds the
/// container's output back: it gets everything a container that has ended still had to say.
const MAX_DRAIN_FOR_A_SLOW_CLI: Duration = Duration::from_secs(30);

/// Where the container's output comes from.
pub enum Output {
    Pipes {
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// The pty master: everything the container writes, as one stream (docker logs it as
    /// stdout).
    Terminal {
        master: OwnedFd,
    },
}

/// The attached CLI's pipes, as far as it is still there.
pub struct Attached {
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// With a pty: the CLI's input for it.
    pub input: Option<OwnedFd>,
    /// With a pty: window sizes.
    pub control: Option<OwnedFd>,
}

/// Output waiting for an attached CLI that does not keep up. A full backlog stops the reading
/// of the container's output (it waits, as with docker) but never the monitor itself: exits,
/// stops and input are still handled. Once the init has exited, a CLI that takes nothing for
/// [`DRAIN_AFTER_EXIT`] loses the rest of its copy (the log keeps everything); one that reads,
/// however slowly, gets it all.
const CLI_BACKLOG: usize = 1 << 20;

impl Attached {
    fn slot(&mut self, stream: Stream) -> &mut Option<OwnedFd> {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }

    /// Our ends of the CLI's output pipes never block the monitor.
    fn make_nonblocking(&self) {
        for fd in [&self.stdout, &self.stderr].into_iter().flatten() {
            let _ = rustix::fs::fcntl_setfl(fd, rustix::fs::OFlags::NONBLOCK);
        }
    }

    /// Copy `data` to the CLI: as much as its pipe takes now, the rest into `backlog`.
    fn forward(&mut self, stream: Stream, data: &[u8], backlog: &mut Vec<u8>) {
        if !backlog.is_empty() {
            backlog.extend_from_slice(data);
            return;
        }
        self.send(stream, data, backlog);
    }

    /// Write `data` (what `backlog` held, or new output) as far as the pipe takes it, keeping
    /// the rest in `backlog`. A CLI that is gone is dropped: copying stops, logging goes on.
    fn send(&mut self, stream: Stream, data: &[u8], backlog: &mut Vec<u8>) {
        let slot = self.slot(stream);
        let Some(fd) = slot else { return backlog.clear() };
        let mut written = 0;
        while written < data.len() {
            match rustix::io::write(&*fd, &data[written..]) {
                Ok(n) => written += n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => break,
                Err(_) => {
                    *slot = None;
                    return backlog.clear();
                }
            }
        }
        let rest = data[written..].to_vec();
        backlog.clear();
        backlog.extend_from_slice(&rest);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Out(Stream, usize),
    CliWritable(Stream),
    Exit,
    Input,
    PtyWritable,
    Control,
}

/// Copy until the run is over; `reap` is called once the init's pidfd says it exited and
/// returns its exit code, which this returns.
/// `log`: the json log's path and configuration (None: `--log-driver none`).
pub fn copy_until_exit(
    log: Option<(PathBuf, LogConfig)>,
    output: Output,
    pidfd: &OwnedFd,
    attached: &mut Attached,
    reap: impl FnOnce() -> i32,
) -> i32 {
    let mut log = log.and_then(|(path, config)| {
        LogWriter::open(&path, &config).map_err(|e| tracing::error!("opening the log {}: {e}", path.display())).ok()
    });
    let (mut outputs, master): (Vec<(Option<OwnedFd>, Stream)>, Option<OwnedFd>) = match output {
        Output::Pipes { stdout, stderr } => {
            (vec![(Some(stdout), Stream::Stdout), (Some(stderr), Stream::Stderr)], None)
        }
        Output::Terminal { master } => {
            // Non-blocking: input is written only as far as the pty takes it.
            let _ = rustix::fs::fcntl_setfl(&master, rustix::fs::OFlags::NONBLOCK);
            let copy = master.try_clone().ok();
            (vec![(copy, Stream::Stdout)], Some(master))
        }
    };
    let mut reap = Some(reap);
    let mut exit: Option<i32> = None;
    let mut drain_until: Option<std::time::Instant> = None;
    let mut exited_at = std::time::Instant::now();
    // When the attached CLI last took output (after the exit, a CLI that stops is let go).
    let mut cli_took = std::time::Instant::now();
    let mut pending: Vec<u8> = Vec::new();
    attached.make_nonblocking();
    // Per stream (stdout, stderr): output the attached CLI has not taken yet.
    let mut backlog: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut buf = vec![0u8; 64 * 1024];
    // A container running this long leaves its monitor a loop of copying: the code that set
    // it up goes from the monitor's resident set (see `working_set`).
    let mut trim_at = Some(std::time::Instant::now() + working_set::IDLE);
    loop {
        if exit.is_none() && trim_at.is_some_and(|at| at <= std::time::Instant::now()) {
            trim_at = None;
            if let Err(e) = working_set::trim_code() {
                tracing::debug!("trimming the working set: {e}");
            }
        }
        if exit.is_some() {
            let now = std::time::Instant::now();
            // The drain is over: what processes left behind still write is not waited for.
            if drain_until.is_some_and(|at| at <= now) {
                for (fd, _) in outputs.iter_mut() {
                    *fd = None;
                }
            }
            // The init is gone: a CLI that takes nothing no longer holds anything back.
            if cli_took + DRAIN_AFTER_EXIT <= now {
                for stream in [Stream::Stdout, Stream::Stderr] {
                    if !backlog[stream as usize].is_empty() {
                        *attached.slot(stream) = None;
                        backlog[stream as usize].clear();
                    }
                }
            }
            if outputs.iter().all(|(fd, _)| fd.is_none()) && backlog.iter().all(Vec::is_empty) {
                break;
            }
        }
        let mut fds: Vec<PollFd> = Vec::with_capacity(8);
        let mut roles: Vec<Role> = Vec::with_capacity(8);
        let backed_up = backlog.iter().any(|b| b.len() >= CLI_BACKLOG);
        for (i, (fd, stream)) in outputs.iter().enumerate() {
            if let Some(fd) = fd.as_ref().filter(|_| !backed_up) {
                fds.push(PollFd::new(fd, PollFlags::IN));
                roles.push(Role::Out(*stream, i));
            }
        }
        for stream in [Stream::Stdout, Stream::Stderr] {
            let fd = match stream {
                Stream::Stdout => &attached.stdout,
                Stream::Stderr => &attached.stderr,
            };
            if let Some(fd) = fd.as_ref().filter(|_| !backlog[stream as usize].is_empty()) {
                fds.push(PollFd::new(fd, PollFlags::OUT));
                roles.push(Role::CliWritable(stream));
            }
        }
        if exit.is_none() {
            fds.push(PollFd::new(pidfd, PollFlags::IN));
            roles.push(Role::Exit);
        }
        if let Some(master) = &master {
            if !pending.is_empty() {
                fds.push(PollFd::new(master, PollFlags::OUT));
                roles.push(Role::PtyWritable);
            } else if let Some(input) = &attached.input {
                fds.push(PollFd::new(input, PollFlags::IN));
                roles.push(Role::Input);
            }
            if let Some(control) = &attached.control {
                fds.push(PollFd::new(control, PollFlags::IN));
                roles.push(Role::Control);
            }
        }
        // Once the init is gone: until the drain's end or the CLI's last chance, whichever
        // comes first; before, until the trim.
        let after_exit = drain_until.filter(|_| outputs.iter().any(|(fd, _)| fd.is_some())).into_iter().chain(
            exit.is_some().then_some(cli_took + DRAIN_AFTER_EXIT).filter(|_| backlog.iter().any(|b| !b.is_empty())),
        );
        let deadline = if exit.is_some() { after_exit.min() } else { trim_at };
        let timeout = deadline.map(|at| {
            let left = at.saturating_duration_since(std::time::Instant::now());
            Timespec { tv_sec: left.as_secs() as i64, tv_nsec: left.subsec_nanos() as i64 }
        });
        match poll(&mut fds, timeout.as_ref()) {
            // A deadline: the checks at the top act on it.
            Ok(0) => continue,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                tracing::error!("poll: {e}");
                break;
            }
        }
        let ready: Vec<Role> =
            fds.iter().zip(&roles).filter(|(fd, _)| !fd.revents().is_empty()).map(|(_, r)| *r).collect();
        drop(fds);
        for role in ready {
            match role {
                Role::Exit => {
                    exit = reap.take().map(|f| f());
                    exited_at = std::time::Instant::now();
                    cli_took = exited_at;
                    drain_until = Some(exited_at + DRAIN_AFTER_EXIT);
                }
                Role::Out(stream, i) => {
                    let Some(fd) = &outputs[i].0 else { continue };
                    match rustix::io::read(fd, &mut buf) {
                        Ok(n) if n > 0 => {
                            if let Some(l) = &mut log {
                                if let Err(e) = l.write(stream, &buf[..n]) {
                                    tracing::error!("writing the log: {e}");
                                }
                            }
                            attached.forward(stream, &buf[..n], &mut backlog[stream as usize]);
                        }
                        Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
                        // EOF, or EIO from a pty whose last slave holder is gone.
                        _ => outputs[i].0 = None,
                    }
                }
                Role::CliWritable(stream) => {
                    let queued = std::mem::take(&mut backlog[stream as usize]);
                    let was_full = queued.len() >= CLI_BACKLOG;
                    attached.send(stream, &queued, &mut backlog[stream as usize]);
                    if backlog[stream as usize].len() < queued.len() {
                        cli_took = std::time::Instant::now();
                        // A slow CLI held the output back: the drain waits for it, so far.
                        if was_full && exit.is_some() {
                            let longest = exited_at + MAX_DRAIN_FOR_A_SLOW_CLI;
                            drain_until = drain_until.map(|at| at.max(cli_took + DRAIN_AFTER_EXIT).min(longest));
                        }
                    }
                }
                Role::Input => {
                    let Some(input) = &attached.input else { continue };
                    match rustix::io::read(input, &mut buf) {
                        Ok(n) if n > 0 => pending.extend_from_slice(&buf[..n]),
                        Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
                        _ => attached.input = None,
                    }
                }
                Role::PtyWritable => {
                    let Some(master) = &master else { continue };
                    match rustix::io::write(master, &pending) {
                        Ok(n) => {
                            pending.drain(..n);
                        }
                        Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
                        Err(_) => pending.clear(),
                    }
                }
                Role::Control => {
                    let Some(control) = &attached.control else { continue };
                    let mut record = [0u8; 4];
                    match rustix::io::read(control, &mut record) {
                        Ok(4) => {
                            let (rows, cols) = decode_window_size(record);
                            if let Some(master) = &master {
                                let size =
                                    rustix::termios::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
                                let _ = rustix::termios::tcsetwinsize(master, size);
                            }
                        }
                        Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
                        // Short records are not written (4 bytes are atomic on a pipe); EOF.
                        _ => attached.control = None,
                    }
                }
            }
        }
    }
    if let Some(l) = &mut log {
        let _ = l.flush();
    }
    match (exit, reap) {
        (Some(code), _) => code,
        (None, Some(f)) => f(),
        (None, None) => super::status::UNKNOWN_EXIT,
    }
}
