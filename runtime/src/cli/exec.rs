//! `exec [-i] [-t] [-d] [-e] [-u] [-w] CONTAINER CMD...`: run a process in a running
//! container. This process starts it (as its child, through `lifecycle::exec`, before any
//! thread exists) and waits for it, forwarding signals; its stdio is ours, or with `-t` a pty
//! we relay. Exits with the process's exit code (126/127 when it can't be run).

use super::args::ExecArgs;
use super::images::Ctx;
use super::run::{forward_signals, forward_to};
use super::Failure;
use anyhow::{anyhow, Context, Result};
use std::os::fd::AsFd;
use strata::containers::exec::{self, ExecRequest};
use strata::containers::monitor::start_failure_code;
use strata::containers::{ContainerError, Containers};
use strata::spec::run_options::resolve_env_arg;

pub fn exec(ctx: &Ctx, args: ExecArgs) -> Result<i32> {
    super::run::input_is_a_terminal(args.tty && args.interactive && !args.detach)?;
    let containers = Containers::open(&ctx.root, ctx.driver)?;
    let fail = |e: ContainerError| -> anyhow::Error {
        let code = match &e {
            // docker's code for exec into a container that is not running.
            ContainerError::NotRunning(_) | ContainerError::NoSuchContainer(_) => 1,
            // docker's for a user the container does not have: its process cannot run.
            ContainerError::Spec(strata::spec::from_image::FromImageError::User(_)) => 126,
            e => start_failure_code(e),
        };
        Failure { code, message: e.to_string() }.into()
    };
    let record = containers.resolve(args.container()).map_err(fail)?;
    let lookup = |k: &str| std::env::var(k).ok();
    let mut env = Vec::new();
    for arg in &args.env {
        env.extend(resolve_env_arg(arg, &lookup).map_err(|e| Failure { code: 125, message: e.to_string() })?);
    }
    let request = ExecRequest {
        command: args.command().to_vec(),
        env,
        user: args.user.clone(),
        workdir: args.workdir.clone(),
        tty: args.tty,
    };
    let process = exec::process(&containers, &record, &request).map_err(fail)?;
    if !args.interactive || args.detach {
        // Without -i the process gets no input (it inherits our fds 0, 1 and 2).
        let null = std::fs::File::open("/dev/null").context("opening /dev/null")?;
        // SAFETY: dup2 onto fd 0, which this process no longer reads.
        if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 0) } < 0 {
            return Err(std::io::Error::last_os_error()).context("redirecting stdin");
        }
    }
    // With -t the process sends its pty's master over this socket pair.
    let (ours, theirs) = match args.tty {
        true => {
            let (a, b) = std::os::unix::net::UnixStream::pair().context("creating the console socket")?;
            (Some(a), Some(std::sync::Arc::new(std::os::fd::OwnedFd::from(b))))
        }
        false => (None, None),
    };
    let pid = exec::exec(&containers, &record, process, theirs).map_err(fail)?;
    let master = match &ours {
        Some(sock) => Some(strata::sandbox::console::recv_master(sock.as_fd()).map_err(|e| anyhow!(e))?),
        None => None,
    };
    if args.detach {
        return Ok(0);
    }
    forward_to(pid);
    forward_signals();
    let pidfd = rustix::process::Pid::from_raw(pid)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok())
        .context("watching the exec'd process")?;
    if let Some(master) = &master {
        strata::sandbox::console::relay(master, &pidfd);
    }
    Ok(strata::lifecycle::reap(pid).unwrap_or(255))
}
