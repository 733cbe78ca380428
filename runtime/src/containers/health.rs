//! Health checks as docker runs them: the image's `HEALTHCHECK`, with `--health-*` over it,
//! run in the container every interval by a checker process the monitor forks once the
//! container started. Its state (`starting`, `healthy`, `unhealthy`, the failing streak and
//! the last five probes) is `health.json` in the container's dir, written atomically by the
//! checker alone and read by `inspect` (State.Health) and `ps` ("Up 2 minutes (healthy)").
//!
//! docker's rules: the first probe comes an interval after the start (StartInterval while the
//! container is starting and within StartPeriod); exit code 0 is healthy, anything else a
//! failure; failures during the start period count only once a probe passed; Retries failures
//! in a row make it unhealthy; a probe past Timeout is killed and fails with exit code -1; a
//! probe that cannot be started fails with -1 and the reason. The output kept is the first
//! 4096 bytes of stdout and stderr together. When the run ends the checker goes and the
//! status turns `unhealthy`, as docker's does when its monitor stops. A paused container is
//! not probed.

use super::exec::{self, ExecRequest};
use super::record::ContainerRecord;
use super::status::{Observed, State};
use super::{Containers, Paths};
use crate::clock::now_rfc3339;
use crate::image::manifest::HealthConfig;
use crate::lifecycle::state::Status;
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_RETRIES: u32 = 3;
/// What docker keeps of a probe's output, and how many probes.
const MAX_OUTPUT: usize = 4096;
const MAX_LOG: usize = 5;

pub const STARTING: &str = "starting";
pub const HEALTHY: &str = "healthy";
pub const UNHEALTHY: &str = "unhealthy";

/// State.Health of docker's inspect.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    pub status: String,
    pub failing_streak: u32,
    pub log: Vec<Probe>,
}

/// One probe, as docker logs it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Probe {
    pub start: String,
    pub end: String,
    pub exit_code: i64,
    pub output: String,
}

/// The check a container has: `run`'s fields over the image's, each unset (empty, zero) one
/// the image's (docker's merge at create). None: neither has one.
pub fn merged(image: Option<&HealthConfig>, run: Option<&HealthConfig>) -> Option<HealthConfig> {
    let (Some(image), Some(run)) = (image, run) else { return run.or(image).cloned() };
    let pick = |ours: i64, theirs: i64| if ours != 0 { ours } else { theirs };
    Some(HealthConfig {
        test: if run.test.is_empty() { image.test.clone() } else { run.test.clone() },
        interval: pick(run.interval, image.interval),
        timeout: pick(run.timeout, image.timeout),
        start_period: pick(run.start_period, image.start_period),
        start_interval: pick(run.start_interval, image.start_interval),
        retries: pick(run.retries, image.retries),
    })
}

/// The probe's command line (CMD-SHELL through /bin/sh -c); None for NONE or no test.
pub fn command(config: &HealthConfig) -> Option<Vec<String>> {
    match config.test.split_first() {
        Some((kind, args)) if kind == "CMD" && !args.is_empty() => Some(args.to_vec()),
        // docker appends every argument after the shell's.
        Some((kind, args)) if kind == "CMD-SHELL" && !args.is_empty() => {
            Some(["/bin/sh", "-c"].iter().map(|s| s.to_string()).chain(args.iter().cloned()).collect())
        }
        _ => None,
    }
}

/// The container's health state (None: it has no check, or never ran with one).
pub fn read(paths: &Paths) -> Option<Health> {
    let bytes = std::fs::read(paths.health()).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The health of an observed container, if it has a check that ran: as its checker wrote it,
/// but `unhealthy` once it is not running (a checker killed with its monitor wrote nothing
/// more), as docker's is once its monitor stops.
pub fn of(c: &Containers, o: &Observed) -> Option<Health> {
    o.record.config().healthcheck.as_ref().and_then(command)?;
    let mut health = read(&c.paths(&o.record.id))?;
    if !matches!(o.state, State::Running) {
        health.status = UNHEALTHY.into();
    }
    Some(health)
}

fn write(paths: &Paths, health: &Health) {
    let bytes = serde_json::to_vec(health).expect("health serialises");
    // Unsynced: a crash loses at most the last probe, which the next run starts over anyway.
    if let Err(e) = crate::fsutil::write_atomic_unsynced(&paths.health(), &bytes) {
        tracing::error!("writing the health state: {e}");
    }
}

/// A configured duration: 0 (or less) is the default; anything else at least docker's
/// minimum of 1 ms (an image may say 1 ns, which would have the checker spin).
fn nanos(n: i64, default: Duration) -> Duration {
    if n > 0 {
        Duration::from_nanos(n as u64).max(Duration::from_millis(1))
    } else {
        default
    }
}

/// The checker of one run; dropping it ends it and marks the container unhealthy.
pub struct Checker {
    pid: i32,
    paths: Paths,
}

impl Checker {
    /// Fork the checker of `record`'s run, if it has a check. Call from the single-threaded
    /// monitor once the container started; the child never returns.
    pub fn spawn(c: &Containers, record: &ContainerRecord) -> Option<Checker> {
        let config = record.config().healthcheck?;
        let command = command(&config)?;
        let paths = c.paths(&record.id);
        // A new run starts over, keeping the last run's probes (as docker does).
        let log = read(&paths).map(|h| h.log).unwrap_or_default();
        let health = Health { status: STARTING.into(), failing_streak: 0, log };
        write(&paths, &health);
        let started = Instant::now();
        let monitor = std::process::id() as i32;
        // SAFETY: the monitor is single-threaded; the child ends in `_exit`, never returning
        // into the caller (whose fds it closes and never uses), a panic included.
        match unsafe { libc::fork() } {
            -1 => {
                tracing::error!("forking the health checker: {}", std::io::Error::last_os_error());
                None
            }
            0 => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    check_until_killed(c, record, &config, command, started, monitor, health)
                }));
                // SAFETY: leave the forked child without the monitor's destructors.
                unsafe { libc::_exit(1) }
            }
            pid => Some(Checker { pid, paths }),
        }
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        // SAFETY: our own child, not yet reaped.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        crate::lifecycle::reap(self.pid);
        if let Some(mut health) = read(&self.paths) {
            health.status = UNHEALTHY.into();
            write(&self.paths, &health);
        }
    }
}

fn check_until_killed(
    c: &Containers,
    record: &ContainerRecord,
    config: &HealthConfig,
    command: Vec<String>,
    started: Instant,
    monitor: i32,
    mut health: Health,
) -> ! {
    // SAFETY: in the forked child: gone with the monitor (and gone now if it already is);
    // nothing of the monitor's kept open (the container's output pipes, an attached CLI's
    // ends). Our stderr (the monitor's log) is kept aside for while a probe has fd 2.
    let log_fd = unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != monitor {
            libc::_exit(0);
        }
        libc::prctl(libc::PR_SET_NAME, c"strata-health".as_ptr(), 0, 0, 0);
        crate::sandbox::init::close_fds_from(3, &[]);
        libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3)
    };
    let interval = nanos(config.interval, DEFAULT_INTERVAL);
    let timeout = nanos(config.timeout, DEFAULT_TIMEOUT);
    let start_period = nanos(config.start_period, Duration::ZERO);
    let start_interval = nanos(config.start_interval, DEFAULT_START_INTERVAL);
    let retries = if config.retries > 0 { u32::try_from(config.retries).unwrap_or(u32::MAX) } else { DEFAULT_RETRIES };
    let paths = c.paths(&record.id);
    let mut was_paused = false;
    loop {
        let within_start = started.elapsed() < start_period;
        let wait = if within_start && health.status == STARTING { start_interval } else { interval };
        if wait >= crate::working_set::IDLE {
            let _ = crate::working_set::trim_code();
        }
        std::thread::sleep(wait);
        // Read without side effects (`observe` may record a dead monitor's run: not ours).
        let live = c.runtime().states.load(&record.id).ok().map(|s| c.runtime().status(&s));
        match live {
            Some(Status::Running) => was_paused = false,
            Some(Status::Paused) => {
                // docker stops checking a paused container and calls it unhealthy.
                if !was_paused {
                    was_paused = true;
                    health.status = UNHEALTHY.into();
                    write(&paths, &health);
                }
                continue;
            }
            // SAFETY: the run is over; leave without running the monitor's destructors.
            _ => unsafe { libc::_exit(0) },
        }
        let probe_start = Instant::now();
        let probe = probe(c, record, &command, timeout, log_fd);
        if probe.exit_code == 0 {
            health.failing_streak = 0;
            health.status = HEALTHY.into();
        } else if !(health.status == STARTING && probe_start.duration_since(started) < start_period) {
            health.failing_streak += 1;
            if health.failing_streak >= retries {
                health.status = UNHEALTHY.into();
            }
        }
        health.log.push(probe);
        if health.log.len() > MAX_LOG {
            health.log.remove(0);
        }
        write(&paths, &health);
    }
}

/// Run the check once in the container.
fn probe(c: &Containers, record: &ContainerRecord, command: &[String], timeout: Duration, log_fd: i32) -> Probe {
    let start = now_rfc3339();
    let (exit_code, output) = match run_probe(c, record, command, timeout, log_fd) {
        Ok(done) => done,
        Err(reason) => (-1, reason),
    };
    Probe { start, end: now_rfc3339(), exit_code, output }
}

fn run_probe(
    c: &Containers,
    record: &ContainerRecord,
    command: &[String],
    timeout: Duration,
    log_fd: i32,
) -> Result<(i64, String), String> {
    let request = ExecRequest { command: command.to_vec(), ..Default::default() };
    let process = exec::process(c, record, &request).map_err(|e| e.to_string())?;
    let (read_end, write_end) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| format!("creating a pipe: {e}"))?;
    // The probe inherits fds 1 and 2: the pipe while it starts; after, stdout is the monitor's
    // (/dev/null) again and stderr the monitor's log.
    let onto_stdio = |out: i32, err: i32| {
        // SAFETY: dup2 onto this process's own stdout and stderr, which nothing else uses.
        unsafe {
            libc::dup2(out, 1);
            libc::dup2(err, 2);
        }
    };
    // SAFETY: fd 0 is /dev/null in a monitor (and so in its checker).
    let null = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3) };
    onto_stdio(write_end.as_raw_fd(), write_end.as_raw_fd());
    let started = exec::exec(c, record, process, None);
    onto_stdio(null, log_fd);
    // SAFETY: our own dup, used no more.
    unsafe { libc::close(null) };
    drop(write_end);
    let pid = started.map_err(|e| e.to_string())?;
    let pidfd = rustix::process::Pid::from_raw(pid)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
    let deadline = Instant::now() + timeout;
    let mut output = Vec::new();
    let finished = match &pidfd {
        Some(fd) => collect(&read_end, fd, deadline, &mut output),
        // No way to wait for it with a deadline: it does not get to run unwatched.
        None => false,
    };
    if !finished {
        // SAFETY: our child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        crate::lifecycle::reap(pid);
        return Err(format!("Health check exceeded timeout ({})", crate::clock::format_go_duration(timeout)));
    }
    let code = crate::lifecycle::reap(pid).unwrap_or(-1);
    let mut text = String::from_utf8_lossy(&output[..output.len().min(MAX_OUTPUT)]).into_owned();
    if output.len() > MAX_OUTPUT {
        // docker's mark of output it cut.
        text.push_str("...");
    }
    Ok((code as i64, text))
}

/// Read the probe's output (keeping the first MAX_OUTPUT bytes, and whether there was more)
/// until it exited and the pipe is drained, or `deadline`: whether it exited in time. A child
/// the probe left behind that holds the pipe does not hold us: once the probe exited, only
/// what is there is read, and at most DRAIN_AFTER_EXIT of it.
fn collect(pipe: &OwnedFd, pidfd: &OwnedFd, deadline: Instant, output: &mut Vec<u8>) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    const DRAIN_AFTER_EXIT: usize = 64 * 1024;
    let mut buf = [0u8; 4096];
    let (mut exited, mut pipe_open, mut after_exit) = (false, true, 0usize);
    loop {
        if exited && (!pipe_open || after_exit >= DRAIN_AFTER_EXIT) {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return exited;
        }
        // After the exit, only what is already in the pipe.
        let wait = if exited { Duration::ZERO } else { left };
        let timeout = Timespec { tv_sec: wait.as_secs() as i64, tv_nsec: wait.subsec_nanos() as i64 };
        let mut fds = vec![PollFd::new(pidfd, PollFlags::IN)];
        if pipe_open {
            fds.push(PollFd::new(pipe, PollFlags::IN));
        }
        match poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return exited,
        }
        let (gone, readable) = (!fds[0].revents().is_empty(), fds.get(1).is_some_and(|f| !f.revents().is_empty()));
        drop(fds);
        exited |= gone;
        if !pipe_open {
            continue;
        }
        if !readable {
            // Nothing there: after the exit, the end of it.
            pipe_open = !exited;
            continue;
        }
        match rustix::io::read(pipe.as_fd(), &mut buf) {
            Ok(0) => pipe_open = false,
            Ok(n) => {
                // One byte past the limit tells the caller there was more.
                let room = (MAX_OUTPUT + 1).saturating_sub(output.len());
                output.extend_from_slice(&buf[..n.min(room)]);
                if exited {
                    after_exit += n;
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => pipe_open = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_flags_override_the_images_check_field_by_field() {
        let image =
            HealthConfig { test: vec!["CMD".into(), "/check".into()], interval: 5, retries: 7, ..Default::default() };
        let run = HealthConfig { interval: 9, timeout: 3, ..Default::default() };
        let m = merged(Some(&image), Some(&run)).unwrap();
        assert_eq!(m.test, image.test);
        assert_eq!((m.interval, m.timeout, m.retries), (9, 3, 7));
        assert_eq!(merged(None, None), None);
        assert_eq!(merged(Some(&image), None), Some(image.clone()));
        let none = HealthConfig { test: vec!["NONE".into()], ..Default::default() };
        assert_eq!(command(&merged(Some(&image), Some(&none)).unwrap()), None);
    }

    #[test]
    fn commands_as_docker_runs_them() {
        let test = |t: &[&str]| HealthConfig { test: t.iter().map(|s| s.to_string()).collect(), ..Default::default() };
        assert_eq!(command(&test(&["CMD", "true", "x"])), Some(vec!["true".into(), "x".into()]));
        assert_eq!(
            command(&test(&["CMD-SHELL", "exit 1"])),
            Some(vec!["/bin/sh".into(), "-c".into(), "exit 1".into()])
        );
        assert_eq!(command(&test(&["NONE"])), None);
        assert_eq!(command(&test(&["CMD"])), None);
        assert_eq!(command(&test(&[])), None);
    }
}
