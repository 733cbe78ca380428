//! How a foreground `strata run` / `start -a` and a container's monitor talk. The CLI
//! spawns the monitor with these pipe ends inherited:
//!
//! * status (monitor -> CLI): lines `started PID`, `failed CODE MESSAGE`, `exited CODE`;
//! * stdout, stderr (monitor -> CLI): a copy of the container's output as it is logged;
//! * stdin (CLI -> container): the read end becomes the container's fd 0 itself, so
//!   the CLI's end closing (it exited, or its input ended) is EOF for the container.
//!
//! * control (CLI -> monitor, with `-t`): the CLI terminal's size, 4 bytes a record (rows,
//!   columns, big-endian u16), applied to the container's pty; the first one is written before
//!   the monitor is spawned.
//!
//! With `-t` the container's stdio is a pty the monitor holds, so the CLI's input goes to the
//! monitor, which writes it to the pty, and stderr is not separate (as with docker).
//! A detached start uses only the status pipe. The CLI side (`pump`) copies output to its
//! own stdout/stderr and its input to the container, without blocking on either: input
//! the container does not read yet waits in a buffer while output keeps flowing.

use rustix::event::{poll, PollFd, PollFlags};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The container runs; its init has this pid (for signal forwarding).
    Started { pid: i32 },
    /// It could not be started; `code` is docker's exit code for why (125, 126, 127).
    Failed { code: i32, message: String },
    /// The run ended with this exit code (128+N for signal N).
    Exited { code: i32 },
}

impl Message {
    pub fn encode(&self) -> String {
        match self {
            Message::Started { pid } => format!("started {pid}\n"),
            // One line: the message must not carry newlines.
            Message::Failed { code, message } => format!("failed {code} {}\n", message.replace('\n', " ")),
            Message::Exited { code } => format!("exited {code}\n"),
        }
    }

    pub fn parse(line: &str) -> Option<Message> {
        let (word, rest) = line.split_once(' ')?;
        match word {
            "started" => Some(Message::Started { pid: rest.trim().parse().ok()? }),
            "exited" => Some(Message::Exited { code: rest.trim().parse().ok()? }),
            "failed" => {
                let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
                Some(Message::Failed { code: code.parse().ok()?, message: message.to_string() })
            }
            _ => None,
        }
    }
}

/// Send a message; a CLI that went away is not an error for the monitor.
pub fn send(fd: &impl AsFd, message: &Message) {
    let _ = write_all(fd.as_fd(), message.encode().as_bytes());
}

fn write_all(fd: BorrowedFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The CLI's ends of the monitor's pipes.
pub struct ClientEnds {
    pub status: OwnedFd,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub stdin: Option<OwnedFd>,
    pub control: Option<OwnedFd>,
}

/// The monitor's ends, passed to it at spawn.
pub struct MonitorEnds {
    pub status: OwnedFd,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub stdin: Option<OwnedFd>,
    pub control: Option<OwnedFd>,
}

/// A window size record on the control pipe.
pub fn encode_window_size(rows: u16, cols: u16) -> [u8; 4] {
    let (r, c) = (rows.to_be_bytes(), cols.to_be_bytes());
    [r[0], r[1], c[0], c[1]]
}

pub fn decode_window_size(record: [u8; 4]) -> (u16, u16) {
    (u16::from_be_bytes([record[0], record[1]]), u16::from_be_bytes([record[2], record[3]]))
}

/// Make the pipes for one monitor: output copies when `output`, an input pipe when `input`,
/// a control pipe when `control` (a terminal).
pub fn pipes(output: bool, input: bool, control: bool) -> io::Result<(ClientEnds, MonitorEnds)> {
    let pipe = || rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(io::Error::from);
    let (status_r, status_w) = pipe()?;
    let (out, err) = if output {
        let (o_r, o_w) = pipe()?;
        let (e_r, e_w) = pipe()?;
        ((Some(o_r), Some(o_w)), (Some(e_r), Some(e_w)))
    } else {
        ((None, None), (None, None))
    };
    let (in_r, in_w) = if input {
        let (r, w) = pipe()?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    let (control_r, control_w) = if control {
        let (r, w) = pipe()?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    Ok((
        ClientEnds { status: status_r, stdout: out.0, stderr: err.0, stdin: in_w, control: control_w },
        MonitorEnds { status: status_w, stdout: out.1, stderr: err.1, stdin: in_r, control: control_r },
    ))
}

/// How a run went, from the CLI's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Started {
        pid: i32,
    },
    Failed {
        code: i32,
        message: String,
    },
    Exited {
        code: i32,
    },
    /// The monitor went away without saying how the run ended.
    MonitorLost,
}

/// Reads status lines.
struct StatusReader {
    fd: OwnedFd,
    buf: Vec<u8>,
    closed: bool,
}

impl StatusReader {
    /// Read what is there (the fd is readable); returns complete messages.
    fn read(&mut self) -> Vec<Message> {
        let mut chunk = [0u8; 512];
        match rustix::io::read(&self.fd, &mut chunk) {
            Ok(0) => self.closed = true,
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
            Err(_) => self.closed = true,
        }
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=nl).collect();
            if let Some(m) = Message::parse(String::from_utf8_lossy(&line[..nl]).trim_end()) {
                out.push(m);
            }
        }
        out
    }
}

/// Detached: wait until the monitor says the container started (or why it did not).
pub fn wait_started(status: OwnedFd) -> Outcome {
    let mut reader = StatusReader { fd: status, buf: Vec::new(), closed: false };
    while !reader.closed {
        crate::containers::status::wait_readable(&reader.fd, None);
        if let Some(m) = reader.read().into_iter().next() {
            return match m {
                Message::Started { pid } => Outcome::Started { pid },
                Message::Failed { code, message } => Outcome::Failed { code, message },
                Message::Exited { code } => Outcome::Exited { code },
            };
        }
    }
    Outcome::MonitorLost
}

/// Attached: copy the container's output to `out`/`err` and `input` to its stdin until the
/// monitor reports the end and closes its pipes. `on_started` gets the init's pid.
pub fn pump(
    ends: ClientEnds,
    input: Option<BorrowedFd>,
    out: &mut dyn Write,
    err: &mut dyn Write,
    on_started: &mut dyn FnMut(i32),
) -> Outcome {
    let mut status = StatusReader { fd: ends.status, buf: Vec::new(), closed: false };
    let mut outputs: [(Option<OwnedFd>, &mut dyn Write); 2] = [(ends.stdout, out), (ends.stderr, err)];
    let mut stdin = ends.stdin;
    if let Some(fd) = &stdin {
        // Input waits in `pending` rather than blocking the output copy.
        let _ = rustix::fs::fcntl_setfl(fd, rustix::fs::OFlags::NONBLOCK);
    }
    let mut input = input.filter(|_| stdin.is_some());
    let mut pending: Vec<u8> = Vec::new();
    let mut outcome = Outcome::MonitorLost;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if status.closed && outputs.iter().all(|(fd, _)| fd.is_none()) {
            break;
        }
        let mut fds: Vec<PollFd> = Vec::with_capacity(5);
        let mut roles: Vec<u8> = Vec::with_capacity(5);
        if !status.closed {
            fds.push(PollFd::new(&status.fd, PollFlags::IN));
            roles.push(b's');
        }
        for (i, (fd, _)) in outputs.iter().enumerate() {
            if let Some(fd) = fd {
                fds.push(PollFd::new(fd, PollFlags::IN));
                roles.push(if i == 0 { b'o' } else { b'e' });
            }
        }
        match (&stdin, pending.is_empty()) {
            (Some(fd), false) => {
                fds.push(PollFd::new(fd, PollFlags::OUT));
                roles.push(b'w');
            }
            (Some(_), true) => {
                if let Some(fd) = &input {
                    fds.push(PollFd::from_borrowed_fd(*fd, PollFlags::IN));
                    roles.push(b'i');
                }
            }
            _ => {}
        }
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
        let ready: Vec<u8> =
            fds.iter().zip(&roles).filter(|(fd, _)| !fd.revents().is_empty()).map(|(_, role)| *role).collect();
        drop(fds);
        for role in ready {
            match role {
                b's' => {
                    for m in status.read() {
                        match m {
                            Message::Started { pid } => {
                                on_started(pid);
                                outcome = Outcome::Started { pid };
                            }
                            Message::Failed { code, message } => outcome = Outcome::Failed { code, message },
                            Message::Exited { code } => outcome = Outcome::Exited { code },
                        }
                    }
                }
                b'o' | b'e' => {
                    let slot = if role == b'o' { 0 } else { 1 };
                    let (fd, sink) = &mut outputs[slot];
                    let Some(src) = fd.as_ref() else { continue };
                    match rustix::io::read(src, &mut buf) {
                        Ok(0) => *fd = None,
                        Ok(n) => {
                            // A closed stdout of our own only loses the copy, not the run.
                            let _ = sink.write_all(&buf[..n]).and_then(|()| sink.flush());
                        }
                        Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
                        Err(_) => *fd = None,
                    }
                }
                b'i' => {
                    let Some(src) = input else { continue };
                    match rustix::io::read(src, &mut buf) {
                        Ok(n) if n > 0 => pending.extend_from_slice(&buf[..n]),
                        Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
                        Ok(_) | Err(_) => {
                            // End of our input: the container's stdin ends too.
                            input = None;
                            stdin = None;
                        }
                    }
                }
                b'w' => {
                    let Some(dst) = &stdin else { continue };
                    match rustix::io::write(dst, &pending) {
                        Ok(n) => {
                            pending.drain(..n);
                        }
                        Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
                        Err(_) => {
                            // The container closed its stdin.
                            pending.clear();
                            stdin = None;
                            input = None;
                        }
                    }
                    if pending.is_empty() && input.is_none() {
                        stdin = None;
                    }
                }
                _ => {}
            }
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        for m in [
            Message::Started { pid: 42 },
            Message::Exited { code: 137 },
            Message::Failed { code: 127, message: "exec: \"x\": executable file not found in $PATH".into() },
        ] {
            let line = m.encode();
            assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
            assert_eq!(Message::parse(line.trim_end()), Some(m));
        }
        assert_eq!(
            Message::parse("failed 125 two\nlines"),
            Some(Message::Failed { code: 125, message: "two\nlines".into() })
        );
        assert_eq!(Message::parse("bogus 1"), None);
        assert_eq!(decode_window_size(encode_window_size(48, 160)), (48, 160));
    }

    #[test]
    fn pump_copies_output_and_input_until_the_exit() {
        let (client, monitor) = pipes(true, true, false).unwrap();
        let (in_r, in_w) = rustix::pipe::pipe().unwrap();
        // A fake monitor: echo the container's stdin to its stdout, then report the exit.
        let fake = std::thread::spawn(move || {
            send(&monitor.status, &Message::Started { pid: 7 });
            let mut got = Vec::new();
            let mut b = [0u8; 100];
            let stdin = monitor.stdin.unwrap();
            loop {
                match rustix::io::read(&stdin, &mut b) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&b[..n]),
                    Err(_) => break,
                }
            }
            write_all(monitor.stdout.as_ref().unwrap().as_fd(), &got).unwrap();
            write_all(monitor.stderr.as_ref().unwrap().as_fd(), b"err\n").unwrap();
            drop(monitor.stdout);
            drop(monitor.stderr);
            send(&monitor.status, &Message::Exited { code: 3 });
        });
        write_all(in_w.as_fd(), b"ping\n").unwrap();
        drop(in_w);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut started = 0;
        let outcome = pump(client, Some(in_r.as_fd()), &mut out, &mut err, &mut |pid| started = pid);
        fake.join().unwrap();
        assert_eq!(outcome, Outcome::Exited { code: 3 });
        assert_eq!(started, 7);
        assert_eq!(out, b"ping\n");
        assert_eq!(err, b"err\n");
    }

    #[test]
    fn a_vanished_monitor_is_reported() {
        let (client, monitor) = pipes(false, false, false).unwrap();
        drop(monitor);
        assert_eq!(wait_started(client.status), Outcome::MonitorLost);
    }
}
