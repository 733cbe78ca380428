//! Spawning a container's monitor (a re-exec of this binary as `strata container-monitor`)
//! and the hidden subcommand's entry point. See `strata::containers::monitor` for what the
//! monitor does and why.

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
