//! A process's stdio as containerd hands it over: FIFO paths (ctr, CRI), `file://` URIs, a
//! logging binary (`binary://`, nerdctl's `run -d`), or nothing. Without a terminal the FIFOs themselves become the process's fds 0/1/2 — no copy
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
    /// Who a logging binary is told it logs for: the container's (or the exec's) id, and
    /// containerd's namespace.
    pub id: String,
    pub namespace: String,
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

/// Where a process's stdout and stderr go: two destinations, or one logging binary for both.
fn open_outputs(io: &Io) -> Result<(OwnedFd, OwnedFd), String> {
    if io.stdout.starts_with("binary://") || io.stderr.starts_with("binary://") {
        if io.stdout != io.stderr && !io.stderr.is_empty() {
            return Err(format!(
                "a logging binary takes stdout and stderr both: got {:?} and {:?}",
                io.stdout, io.stderr
            ));
        }
        return start_logging_binary(&io.stdout, &io.id, &io.namespace);
    }
    Ok((open_output(&io.stdout)?, open_output(&io.stderr)?))
}

/// How long a logging binary may take to say it is ready.
const LOGGER_READY: std::time::Duration = std::time::Duration::from_secs(10);

/// containerd's logging binary, as its runc shim starts one: `binary:///path?key=value` runs
/// `/path key value` with only `CONTAINER_ID` and `CONTAINER_NAMESPACE` in its environment,
/// the read ends of the process's stdout and stderr pipes as fds 3 and 4, and the write end of
/// a ready pipe as fd 5, which it closes (or writes to) once it is ready; the process is
/// spawned only then. It ends when the process's output does; the reaper collects it.
fn start_logging_binary(uri: &str, id: &str, namespace: &str) -> Result<(OwnedFd, OwnedFd), String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let url = url::Url::parse(uri).map_err(|e| format!("logging binary URI {uri:?}: {e}"))?;
    let path = url.path().to_string();
    if path.is_empty() || !Path::new(&path).is_absolute() {
        return Err(format!("logging binary URI {uri:?}: no absolute path"));
    }
    let mut args: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    args.sort();
    let pipe = || rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| format!("pipe: {e}"));
    let ((out_r, out_w), (err_r, err_w), (ready_r, ready_w)) = (pipe()?, pipe()?, pipe()?);
    let mut cmd = std::process::Command::new(&path);
    for (k, v) in &args {
        cmd.arg(k);
        if !v.is_empty() {
            cmd.arg(v);
        }
    }
    cmd.env_clear().env("CONTAINER_ID", id).env("CONTAINER_NAMESPACE", namespace);
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let fds = [out_r.as_raw_fd(), err_r.as_raw_fd(), ready_w.as_raw_fd()];
    // SAFETY: between fork and exec only fcntl and dup2 (async-signal-safe). Each fd is first
    // copied above 5 so that none is overwritten before it is moved to 3, 4 or 5 (dup2
    // clears close-on-exec on its copy).
    unsafe {
        cmd.pre_exec(move || {
            let mut high = [0; 3];
            for (h, fd) in high.iter_mut().zip(fds) {
                *h = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
                if *h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (target, h) in (3..).zip(high) {
                if libc::dup2(h, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| format!("starting logging binary {path}: {e}"))?;
    drop((out_r, err_r, ready_w));
    // Ready when it writes a byte or closes its end (or dies).
    let timeout = rustix::event::Timespec::try_from(LOGGER_READY).map_err(|e| e.to_string())?;
    let mut poll = [rustix::event::PollFd::new(&ready_r, rustix::event::PollFlags::IN)];
    match rustix::event::poll(&mut poll, Some(&timeout)) {
        Ok(0) => Err(format!("logging binary {path} was not ready within {}s", LOGGER_READY.as_secs())),
        Ok(_) => Ok((out_w, err_w)),
        Err(e) => Err(format!("waiting for logging binary {path}: {e}")),
    }
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
    let (stdout, stderr) = open_outputs(io)?;
    Ok(Opened { stdio: Stdio { stdin, stdout, stderr }, stdin_holder })
}

/// Relay a terminal: stdin FIFO -> master, master -> stdout FIFO, until the process's side
/// of the pty is gone. The stdout FIFO's write end closes then, which is the client's EOF.
/// The receiver fires when the output is through: the exit is reported only after that, or a
/// client that stops reading at the exit would lose the last lines.
pub fn relay_terminal(master: &OwnedFd, io: &Io) -> Result<tokio::sync::oneshot::Receiver<()>, String> {
    let (out, _stderr) = open_outputs(io)?;
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
        let e = open_output("syslog:///dev/log").unwrap_err();
        assert!(e.contains("not supported"), "{e}");
    }

    /// A logging binary gets the output on fds 3 and 4, containerd's environment and the
    /// URI's query as arguments, and the process is spawned only once it is ready.
    #[test]
    fn a_logging_binary_gets_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let logger = dir.path().join("logger");
        let out = dir.path().join("out");
        std::fs::write(
            &logger,
            format!(
                "#!/bin/sh\necho \"$CONTAINER_NAMESPACE/$CONTAINER_ID $* ${{HOME-unset}}\" > {out}.env\nexec 5>&-\n\
                 cat <&3 > {out}.1 & cat <&4 > {out}.2; wait; mv {out}.1 {out}",
                out = out.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&logger, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let uri = format!("binary://{}?tag=web&verbose", logger.display());
        let io =
            Io { stdout: uri.clone(), stderr: uri, id: "c1".into(), namespace: "k8s.io".into(), ..Default::default() };
        let opened = open(&io).unwrap();
        rustix::io::write(&opened.stdio.stdout, b"to stdout\n").unwrap();
        rustix::io::write(&opened.stdio.stderr, b"to stderr\n").unwrap();
        drop(opened);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !out.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "to stdout\n");
        assert_eq!(std::fs::read_to_string(dir.path().join("out.2")).unwrap(), "to stderr\n");
        assert_eq!(std::fs::read_to_string(dir.path().join("out.env")).unwrap(), "k8s.io/c1 tag web verbose unset\n");
        let Err(e) = open(&Io { stdout: "binary:///nonexistent/logger".into(), ..Default::default() }) else {
            panic!("a missing logging binary was started")
        };
        assert!(e.contains("starting logging binary /nonexistent/logger"), "{e}");
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
