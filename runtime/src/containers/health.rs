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
use super::status::{observe, State};
use super::{Containers, Paths};
use crate::clock::now_rfc3339;
use crate::image::manifest::HealthConfig;
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
        Some((kind, [line])) if kind == "CMD-SHELL" => Some(vec!["/bin/sh".into(), "-c".into(), line.clone()]),
        _ => None,
    }
}

/// The container's health state (None: it has no check, or never ran with one).
pub fn read(paths: &Paths) -> Option<Health> {
    let bytes = std::fs::read(state_file(paths)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The container's health status word (`starting`, `healthy`, `unhealthy`), if it has a check
/// that ran.
pub fn status_of(c: &Containers, record: &ContainerRecord) -> Option<String> {
    record.config().healthcheck.as_ref().and_then(command)?;
    read(&c.paths(&record.id)).map(|h| h.status)
}

fn write(paths: &Paths, health: &Health) {
    let bytes = serde_json::to_vec(health).expect("health serialises");
    // Unsynced: a crash loses at most the last probe, which the next run starts over anyway.
    if let Err(e) = crate::fsutil::write_atomic_unsynced(&state_file(paths), &bytes) {
        tracing::error!("writing the health state: {e}");
    }
}

fn state_file(paths: &Paths) -> std::path::PathBuf {
    paths.dir.join("health.json")
}

fn nanos(n: i64, default: Duration) -> Duration {
    if n > 0 {
        Duration::from_nanos(n as u64)
    } else {
        default
    }
}

/// The checker of one run; `stop` (or dropping it) ends it and marks the container unhealthy.
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
        write(&paths, &Health { status: STARTING.into(), ..Default::default() });
        let started = Instant::now();
        // SAFETY: the monitor is single-threaded; the child ends in `_exit`, never returning
        // into the caller (whose fds it closes and never uses).
        match unsafe { libc::fork() } {
            -1 => {
                tracing::error!("forking the health checker: {}", std::io::Error::last_os_error());
                None
            }
            0 => check_until_killed(c, record, &config, command, started),
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
) -> ! {
    // SAFETY: in the forked child: gone with the monitor; nothing of the monitor's kept open
    // (the container's output pipes, an attached CLI's ends); stdout on /dev/null.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        libc::prctl(libc::PR_SET_NAME, c"strata-health".as_ptr(), 0, 0, 0);
    }
    crate::sandbox::init::close_fds_from(3, &[]);
    let interval = nanos(config.interval, DEFAULT_INTERVAL);
    let timeout = nanos(config.timeout, DEFAULT_TIMEOUT);
    let start_period = nanos(config.start_period, Duration::ZERO);
    let start_interval = nanos(config.start_interval, DEFAULT_START_INTERVAL);
    let retries = if config.retries > 0 { config.retries as u32 } else { DEFAULT_RETRIES };
    let paths = c.paths(&record.id);
    let mut health = Health { status: STARTING.into(), ..Default::default() };
    loop {
        let within_start = started.elapsed() < start_period;
        let wait = if within_start && health.status == STARTING { start_interval } else { interval };
        if wait >= crate::working_set::IDLE {
            let _ = crate::working_set::trim_code();
        }
        std::thread::sleep(wait);
        match observe(c, record.clone()) {
            Ok(Some(o)) if o.state == State::Running => {}
            Ok(Some(o)) if o.state == State::Paused => continue,
            // SAFETY: the run is over; leave without running the monitor's destructors.
            _ => unsafe { libc::_exit(0) },
        }
        let probe_start = Instant::now();
        let probe = probe(c, record, &command, timeout);
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
fn probe(c: &Containers, record: &ContainerRecord, command: &[String], timeout: Duration) -> Probe {
    let start = now_rfc3339();
    let (exit_code, output) = match run_probe(c, record, command, timeout) {
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
) -> Result<(i64, String), String> {
    let request = ExecRequest { command: command.to_vec(), ..Default::default() };
    let process = exec::process(c, record, &request).map_err(|e| e.to_string())?;
    let (read_end, write_end) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| format!("creating a pipe: {e}"))?;
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null").map_err(|e| e.to_string())?;
    // The probe inherits fds 1 and 2: the pipe while it starts, /dev/null again after.
    let onto_stdio = |fd: &OwnedFd| {
        // SAFETY: dup2 onto this process's own stdout and stderr, which nothing else uses.
        unsafe {
            libc::dup2(fd.as_raw_fd(), 1);
            libc::dup2(fd.as_raw_fd(), 2);
        }
    };
    onto_stdio(&write_end);
    let started = exec::exec(c, record, process, None);
    onto_stdio(&OwnedFd::from(null));
    drop(write_end);
    let pid = started.map_err(|e| e.to_string())?;
    let pidfd = rustix::process::Pid::from_raw(pid)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
    let deadline = Instant::now() + timeout;
    let mut output = Vec::new();
    let finished = collect(&read_end, pidfd.as_ref(), deadline, &mut output);
    if !finished {
        // SAFETY: our child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        crate::lifecycle::reap(pid);
        return Err(format!("Health check exceeded timeout ({})", crate::clock::format_go_duration(timeout)));
    }
    let code = crate::lifecycle::reap(pid).unwrap_or(-1);
    Ok((code as i64, String::from_utf8_lossy(&output).into_owned()))
}

/// Read the probe's output (keeping the first MAX_OUTPUT bytes) until it exited and the pipe
/// is drained, or `deadline`: whether it exited in time. A child the probe left behind that
/// holds the pipe does not hold us: once the probe exited, only what is there is read.
fn collect(pipe: &OwnedFd, pidfd: Option<&OwnedFd>, deadline: Instant, output: &mut Vec<u8>) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut buf = [0u8; 4096];
    let mut exited = pidfd.is_none();
    let mut pipe_open = true;
    loop {
        if exited && !pipe_open {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return exited;
        }
        let mut fds = Vec::with_capacity(2);
        if pipe_open {
            fds.push(PollFd::new(pipe, PollFlags::IN));
        }
        if let (Some(fd), false) = (pidfd, exited) {
            fds.push(PollFd::new(fd, PollFlags::IN));
        }
        let timeout = Timespec { tv_sec: left.as_secs() as i64, tv_nsec: left.subsec_nanos() as i64 };
        // After the exit, only what is already in the pipe.
        let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
        match poll(&mut fds, Some(if exited { &zero } else { &timeout })) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return exited,
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        let mut i = 0;
        if pipe_open {
            if ready[0] {
                match rustix::io::read(pipe.as_fd(), &mut buf) {
                    Ok(0) => pipe_open = false,
                    Ok(n) => {
                        let room = MAX_OUTPUT.saturating_sub(output.len());
                        output.extend_from_slice(&buf[..n.min(room)]);
                    }
                    Err(rustix::io::Errno::INTR) => {}
                    Err(_) => pipe_open = false,
                }
            } else if exited {
                pipe_open = false;
            }
            i = 1;
        }
        if !exited && ready.get(i).copied().unwrap_or(false) {
            exited = true;
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
