//! `logs [-f] [--tail N] [--timestamps] [--since T] [--until T]`: print a container's
//! json-file log, each line to the stream it came from. `-f` follows with inotify on the log file and ends when the
//! run's monitor exits (it writes the last line before it does): no polling.

use super::args::LogsArgs;
use super::images::Ctx;
use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::fs::inotify;
use std::io::Write;
use strata::containers::logs::{self, Entry, Follower, Stream};
use strata::containers::status::observe;
use strata::containers::Containers;

/// docker's `--since`/`--until`: an RFC 3339 time, Unix seconds (with a fraction), or a Go
/// duration before now (`10m`, `1h30m`, `1.5s`).
pub(crate) fn time_bound(flag: &str, s: &str) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(secs) = s.parse::<f64>() {
        if secs < 0.0 {
            bail!("invalid {flag} {s:?}: a time before 1970");
        }
        if let Some(t) = DateTime::from_timestamp(secs.trunc() as i64, (secs.fract() * 1e9) as u32) {
            return Ok(t);
        }
    }
    let ago = strata::clock::parse_go_duration(s)
        .map(chrono::Duration::nanoseconds)
        .with_context(|| format!("invalid {flag} {s:?}: a time (RFC 3339), Unix seconds, or a duration (10m)"))?;
    Ok(Utc::now() - ago)
}

/// Whether `entry` falls within `since`..`until`.
fn within(entry: &Entry, since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> bool {
    let Ok(time) = DateTime::parse_from_rfc3339(&entry.time) else { return true };
    since.is_none_or(|s| time >= s) && until.is_none_or(|u| time < u)
}

/// Prints `entry` to the stream it came from if it falls within `since`..`until`.
fn print_within(
    entry: &Entry,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    timestamps: bool,
) -> Result<()> {
    if !within(entry, since, until) {
        return Ok(());
    }
    let written = match entry.stream {
        Stream::Stdout => write_entry(&mut std::io::stdout().lock(), entry, timestamps),
        Stream::Stderr => write_entry(&mut std::io::stderr().lock(), entry, timestamps),
    };
    // A reader that went away (`logs | head`) ends the command quietly.
    if written.is_err() {
        std::process::exit(0);
    }
    Ok(())
}

fn write_entry(sink: &mut impl Write, e: &Entry, timestamps: bool) -> std::io::Result<()> {
    if timestamps {
        write!(sink, "{} {}", e.time, e.log)?;
    } else {
        sink.write_all(e.log.as_bytes())?;
    }
    sink.flush()
}

pub fn logs(ctx: &Ctx, args: LogsArgs) -> Result<i32> {
    let tail: Option<usize> = match args.tail.as_str() {
        "all" | "-1" => None,
        n => Some(n.parse().with_context(|| format!("invalid --tail {n:?}: expected a number or \"all\""))?),
    };
    let since = args.since.as_deref().map(|s| time_bound("--since", s)).transpose()?;
    let until = args.until.as_deref().map(|s| time_bound("--until", s)).transpose()?;
    let containers = Containers::open(&ctx.root, ctx.driver)?;
    let record = containers.resolve(&args.container)?;
    if record.options.log.none {
        // docker's words.
        bail!("configured logging driver does not support reading");
    }
    let path = containers.paths(&record.id).log();
    // The monitor of a run that has not written anything yet may not have made the file.
    if args.follow && !path.exists() {
        std::os::unix::fs::OpenOptionsExt::mode(std::fs::OpenOptions::new().create(true).append(true), 0o600)
            .open(&path)?;
    }
    // Every file at once (rotated ones oldest first, then the current one), so that a
    // rotation meanwhile neither repeats nor skips one.
    let mut older = match logs::open_all(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut follower = older.pop().expect("the current file is opened");
    if !args.follow {
        // What the log holds now, as docker: a container writing faster than this prints
        // must not keep `logs` (or `--tail`) going for ever.
        follower.stop_at_current_end()?;
    }
    // Of the rotated files: all of them, or as many of their last entries as the current
    // file does not give `--tail`.
    let mut before: Vec<Follower> = Vec::new();
    match tail {
        Some(n) => {
            let mut wanted = n - follower.seek_to_last(n)?;
            for mut f in older.into_iter().rev() {
                if wanted == 0 {
                    break;
                }
                wanted -= f.seek_to_last(wanted)?;
                before.insert(0, f);
            }
        }
        None => before = older,
    }
    for mut f in before {
        f.read_file_each(|entry| print_within(&entry, since, until, args.timestamps).map_err(std::io::Error::other))?;
    }
    follower
        .read_new_each(|entry| print_within(&entry, since, until, args.timestamps).map_err(std::io::Error::other))?;
    if !args.follow {
        return Ok(0);
    }
    let Some(obs) = observe(&containers, record)? else { return Ok(0) };
    let Some(monitor) = obs.record.monitor.and_then(|m| m.pidfd()) else { return Ok(0) };
    let watch = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
    // The directory: a rotation puts a new file under the log's name.
    let dir = path.parent().expect("a log is in its container's directory");
    inotify::add_watch(
        &watch,
        dir,
        inotify::WatchFlags::MODIFY | inotify::WatchFlags::CREATE | inotify::WatchFlags::MOVED_TO,
    )?;
    // Lines written between the first read and the watch.
    for entry in follower.read_new()? {
        print_within(&entry, since, until, args.timestamps)?;
    }
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
        for entry in follower.read_new()? {
            print_within(&entry, since, until, args.timestamps)?;
        }
        if ended {
            return Ok(0);
        }
    }
}
