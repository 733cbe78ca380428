//! Spawning a container's monitor and the hidden `strata container-monitor` entry point. See
//! `strata::containers::monitor` for what the monitor does and why.
//!
//! The monitor is a fork of the CLI when the CLI has a single thread (it usually has: only a
//! pull starts threads), else a re-exec of this binary as `strata container-monitor ID`. The
//! fork skips loading and starting the binary a second time (~2 ms of CPU, ~3 ms before the
//! container starts); both give the monitor the same fds, session and log.

use super::args::MonitorArgs;
use super::images::Ctx;
use anyhow::{bail, Context, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use strata::containers::attach::MonitorEnds;
use strata::containers::monitor::{self, Session};
use strata::containers::Containers;
use strata::snapshot::rootfs::Driver;

/// Start the monitor of container `id`, handing it `ends` (none for a detached start).
pub fn spawn(ctx: &Ctx, id: &str, ends: MonitorEnds, log_level: &str) -> Result<()> {
    let containers = Containers::open(&ctx.root, ctx.driver)?;
    let paths = containers.paths(id);
    let exe = std::fs::read_link("/proc/self/exe").context("finding the strata binary")?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(paths.monitor_log())
        .with_context(|| format!("opening {}", paths.monitor_log().display()))?;
    if single_threaded() {
        return fork(ctx, id, ends, log);
    }
    let mut cmd = Command::new(exe);
    cmd.arg("--root").arg(ctx.root.path());
    cmd.arg("--storage-driver").arg(match ctx.driver {
        Driver::Overlay => "overlay",
        Driver::Vfs => "vfs",
    });
    cmd.arg("--log-level").arg(log_level);
    cmd.arg("container-monitor").arg(id);
    let fds = [
        ("--status-fd", Some(&ends.status)),
        ("--stdout-fd", ends.stdout.as_ref()),
        ("--stderr-fd", ends.stderr.as_ref()),
        ("--stdin-fd", ends.stdin.as_ref()),
        ("--control-fd", ends.control.as_ref()),
    ];
    for (flag, fd) in fds {
        if let Some(fd) = fd {
            // Inherited by the monitor: the one child we spawn, right now.
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).context("passing a pipe to the monitor")?;
            cmd.arg(flag).arg(fd.as_raw_fd().to_string());
        }
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::from(log));
    // Its own session from the first instruction: a Ctrl-C meant for us never reaches it.
    // SAFETY: setsid is async-signal-safe, and the closure touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        })
    };
    cmd.env_remove("RUST_BACKTRACE");
    cmd.spawn().context("starting the container's monitor")?;
    // Our copies of the monitor's ends close here, so EOFs reach the right side.
    drop(ends);
    Ok(())
}

/// Whether this process runs one thread, so that a fork of it may go on running Rust code
/// (no lock in the allocator or elsewhere can be held by a thread the child lacks).
fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.split_whitespace().eq(["Threads:", "1"])))
}

/// The monitor as a fork of this (single-threaded) CLI.
fn fork(ctx: &Ctx, id: &str, ends: MonitorEnds, log: std::fs::File) -> Result<()> {
    // SAFETY: the caller checked that we have one thread; the child runs the monitor and
    // leaves through _exit only.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()).context("starting the container's monitor"),
        0 => {
            let code = forked_monitor(ctx, id, ends, log);
            // SAFETY: _exit, not exit: the CLI's buffered output and exit handlers are not ours.
            unsafe { libc::_exit(code) }
        }
        _ => Ok(()), // our copies of the monitor's ends close here, as after a spawn
    }
}

/// The forked child: the process a re-exec would have made, then the monitor's life.
fn forked_monitor(ctx: &Ctx, id: &str, ends: MonitorEnds, log: std::fs::File) -> i32 {
    let _ = rustix::process::setsid();
    // SAFETY: a constant, NUL-terminated name; `ps -e` and top show the monitor as such.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"strata-monitor".as_ptr(), 0, 0, 0) };
    let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") else {
        return 1;
    };
    // SAFETY: dup2 onto stdio; `null` and `log` stay open until the fds above 2 are closed.
    unsafe {
        libc::dup2(null.as_raw_fd(), 0);
        libc::dup2(null.as_raw_fd(), 1);
        libc::dup2(log.as_raw_fd(), 2);
    }
    // Nothing else of the CLI's: its ends of the pipes (or it would never see an EOF), the
    // container's lock file (its flock would be held as long as we run), any other file.
    let session = Session::from(ends);
    let keep: Vec<i32> = [&session.status, &session.stdout, &session.stderr, &session.stdin, &session.control]
        .into_iter()
        .flatten()
        .map(|f| f.as_raw_fd())
        .collect();
    // The closes below take these two; their owners must not close the numbers again.
    std::mem::forget(null);
    std::mem::forget(log);
    strata::sandbox::init::close_fds_from(3, &keep);
    match Containers::open(&ctx.root, ctx.driver) {
        Ok(containers) => monitor::run(&containers, id, session),
        Err(e) => {
            eprintln!("Error: {}", strata::report::one_line(&e));
            1
        }
    }
}

/// Take ownership of an fd number our parent passed us, checking it is open.
fn inherited(fd: Option<i32>) -> Result<Option<OwnedFd>> {
    let Some(n) = fd else { return Ok(None) };
    if n < 3 {
        bail!("invalid inherited fd {n}");
    }
    // SAFETY: checking whether the number is an open fd; it is not used otherwise.
    if unsafe { libc::fcntl(n, libc::F_GETFD) } == -1 {
        bail!("inherited fd {n} is not open");
    }
    // SAFETY: the spawning CLI gave us this fd for our exclusive use.
    let fd = unsafe { OwnedFd::from_raw_fd(n) };
    // Ours only: never inherited further (by the container's init, past its exec).
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
    Ok(Some(fd))
}

/// `strata container-monitor ID`: the monitor's process.
pub fn run(ctx: &Ctx, args: MonitorArgs) -> Result<i32> {
    let session = Session {
        status: inherited(args.status_fd)?,
        stdout: inherited(args.stdout_fd)?,
        stderr: inherited(args.stderr_fd)?,
        stdin: inherited(args.stdin_fd)?,
        control: inherited(args.control_fd)?,
    };
    let containers = Containers::open(&ctx.root, ctx.driver)?;
    Ok(monitor::run(&containers, &args.id, session))
}
