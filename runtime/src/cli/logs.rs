//! `logs [-f] [--tail N] [--timestamps]`: print a container's json-file log, each line to
//! the stream it came from. `-f` follows with inotify on the log file and ends when the
//! run's monitor exits (it writes the last line before it does): no polling.

use super::args::LogsArgs;
use super::images::Ctx;
use anyhow::{bail, Context, Result};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::fs::inotify;
use std::io::Write;
use strata::containers::logs::{Entry, Follower, Stream};
use strata::containers::status::observe;
use strata::containers::Containers;

fn print(entries: &[Entry], timestamps: bool) -> Result<()> {
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    for e in entries {
        let sink: &mut dyn Write = match e.stream {
            Stream::Stdout => &mut out,
            Stream::Stderr => &mut err,
        };
        let written = if timestamps { write!(sink, "{} {}", e.time, e.log) } else { sink.write_all(e.log.as_bytes()) };
        // A reader that went away (`logs | head`) ends the command quietly.
        if written.is_err() {
            std::process::exit(0);
        }
    }
    let _ = out.flush();
    Ok(())
}

pub fn logs(ctx: &Ctx, args: LogsArgs) -> Result<i32> {
    let tail: Option<usize> = match args.tail.as_str() {
        "all" | "-1" => None,
        n => Some(n.parse().with_context(|| format!("invalid --tail {n:?}: expected a number or \"all\""))?),
    };
    let containers = Containers::open(&ctx.root, ctx.driver)?;
    let record = containers.resolve(&args.container)?;
    let path = containers.paths(&record.id).log();
    // The monitor of a run that has not written anything yet may not have made the file.
    if args.follow && !path.exists() {
        std::os::unix::fs::OpenOptionsExt::mode(std::fs::OpenOptions::new().create(true).append(true), 0o600)
            .open(&path)?;
    }
    let mut follower = match Follower::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if let Some(n) = tail {
        follower.seek_to_last(n)?;
    }
    follower
        .read_new_each(|entry| print(std::slice::from_ref(&entry), args.timestamps).map_err(std::io::Error::other))?;
    if !args.follow {
        return Ok(0);
    }
    let Some(obs) = observe(&containers, record)? else { return Ok(0) };
    let Some(monitor) = obs.record.monitor.and_then(|m| m.pidfd()) else { return Ok(0) };
    let watch = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
    inotify::add_watch(&watch, &path, inotify::WatchFlags::MODIFY)?;
    // Lines written between the first read and the watch.
    print(&follower.read_new()?, args.timestamps)?;
    let mut events = [0u8; 4096];
    loop {
        let mut fds = [PollFd::new(&watch, PollFlags::IN), PollFd::new(&monitor, PollFlags::IN)];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => bail!("waiting for log lines: {e}"),
        }
        let (changed, ended) = (!fds[0].revents().is_empty(), !fds[1].revents().is_empty());
        if changed {
            while rustix::io::read(&watch, &mut events).is_ok_and(|n| n > 0) {}
        }
        print(&follower.read_new()?, args.timestamps)?;
        if ended {
            return Ok(0);
        }
    }
}
