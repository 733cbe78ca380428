//! The monitor of one container run (what conmon is to podman): a fork of the CLI (or a
//! re-exec of it as `strata container-monitor ID`; see the CLI's `monitor`), started by
//! `run`/`start`, in its own session and process group, stdio on /dev/null and
//! `monitor.log`, single-threaded so it may clone the container's init. In order, it
//!
//! 1. registers itself in the record, so anyone can tell whether the run's monitor is alive;
//! 2. assembles the rootfs, writes /etc/hostname, hosts and resolv.conf, and makes the spec
//!    from the image (now, so `--user NAME` is looked up in the container's own passwd);
//! 3. creates the container with pipes as its stdout/stderr, and starts it;
//! 4. copies the output into the json log and, while a CLI is attached, to that CLI;
//! 5. waits on the init's pidfd, reaps it, records the exit atomically, releases the cgroup,
//!    lifecycle state and mount, and for `--rm` removes the container;
//! 6. tells the attached CLI the exit code, and exits — unless the container's `--restart`
//!    policy starts it again: then it lets go of the record (no monitor: the container shows
//!    as exited, and `wait` returns), waits out docker's back-off, and begins again at 1 with
//!    no CLI attached, if by then nobody has stopped, killed, removed or started it.
//!
//! Why the output goes through the monitor and not straight to the CLI: the container must
//! keep running and logging when the CLI is killed, so the process reading its output has to
//! outlive the CLI. An attached CLI gets a copy over pipes it hands the monitor at spawn
//! (see `attach`): no attach socket to secure, no window in which early output is missed, and
//! a killed CLI only breaks a pipe, after which the monitor logs on alone. Input is simpler:
//! the CLI's pipe is the container's stdin itself.

use super::attach::{self, Message, MonitorEnds};
use super::record::{ContainerRecord, ProcessRef};
use super::relay::{self, Attached, Output};
use super::status::release_run;
use super::{io_err, rootfs, ContainerError, Containers, Paths};
use crate::lifecycle::create::{create, CreateOptions};
use crate::lifecycle::state::Status;
use crate::lifecycle::{now_rfc3339, start::start, LifecycleError};
use crate::spec::from_image::{self, Target};
use crate::spec::run_options::{NetworkMode, RunOptions};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

/// docker's default RLIMIT_NOFILE; lowered to what the host allows (see ENVIRONMENT.md).
const DOCKER_NOFILE: u64 = 1_048_576;

/// The monitor's pipes to its CLI (all absent for a start nobody watches).
pub struct Session {
    pub status: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub stdin: Option<OwnedFd>,
    pub control: Option<OwnedFd>,
}

impl From<MonitorEnds> for Session {
    fn from(e: MonitorEnds) -> Session {
        Session { status: Some(e.status), stdout: e.stdout, stderr: e.stderr, stdin: e.stdin, control: e.control }
    }
}

impl Session {
    fn send(&self, message: &Message) {
        if let Some(fd) = &self.status {
            attach::send(fd, message);
        }
    }
}

/// A started run: what the monitor watches.
struct Running {
    pid: i32,
    pidfd: OwnedFd,
    output: Output,
    /// With a pty: the CLI's input, which the monitor writes to it.
    input: Option<OwnedFd>,
    /// `-i` without a CLI attached: the write end that keeps the container's stdin open.
    _stdin_holder: Option<OwnedFd>,
}

/// The monitor's whole life. Returns its process exit code.
pub fn run(c: &Containers, id: &str, session: Session) -> i32 {
    // Out of the CLI's session and process group (the CLI already did this at spawn; this is
    // for anyone starting a monitor otherwise): its terminal's signals are not ours.
    let _ = rustix::process::setsid();
    let (mut status, mut restart) = run_once(c, id, session, None);
    while let Some((delay, restarts)) = restart {
        if !back_off(c, id, delay) {
            break;
        }
        let detached = Session { status: None, stdout: None, stderr: None, stdin: None, control: None };
        (status, restart) = run_once(c, id, detached, Some(restarts));
    }
    status
}

/// When the run that just ended starts again by the container's restart policy (decided as
/// its end is recorded, under the same lock, so nobody sees the end without the decision):
/// the record then shows it restarting and without a monitor, and this returns the back-off
/// and the restart count the next run must still find (anything else means someone acted).
fn plan_restart(record: &mut ContainerRecord, code: i32) -> Option<(std::time::Duration, u32)> {
    if record.manually_stopped || !record.options.restart.restarts(code, record.restart_count) {
        return None;
    }
    let ran = match (record.started_at.as_deref(), record.finished_at.as_deref()) {
        (Some(start), Some(end)) => {
            crate::clock::parse_rfc3339(end).zip(crate::clock::parse_rfc3339(start)).map_or(0, |(e, s)| e - s)
        }
        _ => 0,
    };
    record.restart_delay_ms = match record.restart_delay_ms {
        _ if ran >= 10 => 100,
        0 => 100,
        ms => (ms * 2).min(60_000),
    };
    record.restarting = true;
    record.restarter = ProcessRef::current();
    record.monitor = None;
    Some((std::time::Duration::from_millis(record.restart_delay_ms), record.restart_count))
}

/// Waits `delay`, checking the record as it goes; false once the restart is off (the
/// container stopped, killed or removed by hand, or started by someone else).
fn back_off(c: &Containers, id: &str, delay: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + delay;
    loop {
        match c.load(id) {
            Ok(r) if r.restarting && !r.manually_stopped && r.monitor.is_none() => {}
            _ => return false,
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(std::time::Duration::from_millis(50)));
    }
}

/// A restart's back-off and the restart count it expects to find.
type Restart = Option<(std::time::Duration, u32)>;

/// One run, from registering to the recorded end; the monitor's exit status and, if the
/// container's restart policy starts it again, when. `restart`: the restart count a restart
/// expects to find (None for a start by hand).
fn run_once(c: &Containers, id: &str, mut session: Session, restart: Option<u32>) -> (i32, Restart) {
    let (record, lock) = match register(c, id, restart) {
        Ok(r) => r,
        Err(e) => {
            // Not ours to record: another monitor runs, or the container is gone.
            session.send(&Message::Failed { code: 125, message: e.to_string() });
            return (1, None);
        }
    };
    let paths = c.paths(id);
    // The container's lock is held until it runs (or failed to start): a `stop` or `rm -f`
    // meanwhile waits for that, then finds a container to stop.
    let started = start_run(c, &record, &paths, session.stdin.take());
    drop(lock);
    let running = match started {
        Ok(r) => r,
        Err(e) => {
            let code = start_failure_code(&e);
            let message = e.to_string();
            tracing::error!("starting container {id}: {message}");
            let _ = finish(c, id, code, Some(message.clone()), false);
            session.send(&Message::Failed { code, message });
            return (1, None);
        }
    };
    // Its HEALTHCHECK, if it has one, from now until the run ends (dropped: marked unhealthy);
    // `starting` before `run -d` returns, for an inspect right after it.
    let checker = super::health::Checker::spawn(c, &record);
    session.send(&Message::Started { pid: running.pid });
    let mut attached = Attached {
        stdout: session.stdout.take(),
        stderr: session.stderr.take(),
        input: running.input,
        control: session.control.take(),
    };
    let pid = running.pid;
    let log = (!record.options.log.none).then(|| (paths.log(), record.options.log.clone()));
    let code = relay::copy_until_exit(log, running.output, &running.pidfd, &mut attached, || {
        crate::lifecycle::reap(pid).unwrap_or(super::status::UNKNOWN_EXIT)
    });
    drop(checker);
    let oom = oom_killed(c, id);
    let restart = finish(c, id, code, None, oom).unwrap_or_else(|e| {
        tracing::error!("recording the end of container {id}: {e}");
        None
    });
    // Output first, then the code: the CLI prints everything before it exits.
    drop(attached);
    session.send(&Message::Exited { code });
    (0, restart)
}

/// Claim the run in the record, under the container's lock (returned: held through the start).
/// A restart (`restart`: the count it expects) goes ahead only if nothing happened since its
/// run ended.
fn register(
    c: &Containers,
    id: &str,
    restart: Option<u32>,
) -> Result<(ContainerRecord, crate::lock::Lock), ContainerError> {
    let lock = c.lock(id)?;
    let mut record = c.load(id)?;
    match restart {
        Some(expected) => {
            let untouched = record.restarting && !record.manually_stopped && record.monitor.is_none();
            if !untouched || record.restart_count != expected {
                return Err(ContainerError::Monitor(format!("container {id}: restart called off")));
            }
            record.restart_count += 1;
        }
        None => {
            record.manually_stopped = false;
            record.restarting_by_hand = false;
            record.restart_count = 0;
            record.restart_delay_ms = 0;
        }
    }
    record.restarting = false;
    record.restarter = None;
    let me = ProcessRef::current().ok_or_else(|| ContainerError::Monitor("cannot read our own start time".into()))?;
    // A monitor that recorded an exit has finished (`finish` holds this lock until the run is
    // released), even if it has not exited yet: an attached `start` may follow at once.
    if record.exit_code.is_none() && record.monitor.is_some_and(|m| m != me && m.alive()) {
        return Err(ContainerError::Monitor(format!("container {id} is already running")));
    }
    if let Ok(state) = c.runtime().states.load(id) {
        if matches!(c.runtime().status(&state), Status::Running | Status::Paused) {
            return Err(ContainerError::Monitor(format!("container {id} is already running")));
        }
    }
    // Whatever an earlier, crashed run left (state, cgroup, mount) goes before this one.
    release_run(c, &record.id)?;
    record.monitor = Some(me);
    record.started_at = Some(now_rfc3339());
    record.finished_at = None;
    record.exit_code = None;
    record.error = None;
    record.oom_killed = false;
    c.save(&record)?;
    Ok((record, lock))
}

fn start_run(
    c: &Containers,
    record: &ContainerRecord,
    paths: &Paths,
    attached_stdin: Option<OwnedFd>,
) -> Result<Running, ContainerError> {
    let merged = rootfs::mount(paths, &record.layers, c.driver(), record.auto_remove)?;
    super::volumes::populate(&crate::volumes::Volumes::open(c.root()), &record.options.volumes, &merged)?;
    let host = rustix::system::uname();
    let host_hostname = host.nodename().to_string_lossy().into_owned();
    let hostname = from_image::hostname(&record.options, &record.id, &host_hostname);
    let etc_files = write_etc_files(paths, &hostname, &record.options)?;
    let target = Target {
        id: &record.id,
        rootfs: &merged,
        root_path: PathBuf::from("rootfs/merged"),
        kind: record.kind,
        kind_reason: &record.kind_reason,
        nofile: nofile_limit(),
        host_hostname: &host_hostname,
        etc_files,
    };
    let spec = from_image::from_image(&record.image_config, &record.options, &target)?;
    make_workdir(&merged, spec.process().as_ref().map(|p| p.cwd().clone()).unwrap_or_default())?;
    // Plain writes, no fsync: this file and the /etc ones are made anew at every start and
    // read only by it.
    let bytes = serde_json::to_vec_pretty(&spec).expect("spec serialises");
    // 0600: it holds the container's environment.
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(paths.config())
        .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes))
        .map_err(io_err("writing config.json"))?;

    let mut opts =
        CreateOptions { bundle: paths.dir.clone(), wasm_cache: Some(c.root().wasm_cache()), ..Default::default() };
    let (created, output, input, stdin_holder) = if record.options.tty {
        // The container opens its pty and sends us the master over this socket (runc's
        // console socket, already connected).
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(io_err("creating the console socket"))?;
        opts.console_stream = Some(std::sync::Arc::new(theirs.into()));
        let null = open_dev_null()?;
        let created = with_stdio([&null, &null, &null], || create(c.runtime(), &record.id, &opts))?;
        opts.console_stream = None;
        let master = match crate::sandbox::console::recv_master(std::os::fd::AsFd::as_fd(&ours)) {
            Ok(m) => m,
            Err(e) => {
                let _ = crate::lifecycle::delete::delete(c.runtime(), &record.id, true);
                crate::lifecycle::reap(created.state.pid);
                return Err(ContainerError::Monitor(e));
            }
        };
        (created, Output::Terminal { master }, attached_stdin, None)
    } else {
        let pipe = || {
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| ContainerError::Io { context: "creating a pipe".into(), source: e.into() })
        };
        let (stdout_r, stdout_w) = pipe()?;
        let (stderr_r, stderr_w) = pipe()?;
        // An attached CLI's input pipe is the container's stdin itself.
        let (stdin_src, stdin_holder) = match attached_stdin {
            Some(fd) => (fd, None),
            None if record.options.interactive => {
                let (r, w) = pipe()?;
                (r, Some(w))
            }
            None => (open_dev_null()?, None),
        };
        let created = with_stdio([&stdin_src, &stdout_w, &stderr_w], || create(c.runtime(), &record.id, &opts))?;
        (created, Output::Pipes { stdout: stdout_r, stderr: stderr_r }, None, stdin_holder)
    };
    let pid = created.state.pid;
    let pidfd = rustix::process::Pid::from_raw(pid)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok())
        .ok_or_else(|| ContainerError::Monitor(format!("cannot watch the container's init {pid}")))?;
    if let Err(e) = start(c.runtime(), &record.id) {
        // The init may still be waiting to start: kill it (on its pidfd) before reaping it.
        let _ = crate::lifecycle::delete::delete(c.runtime(), &record.id, true);
        crate::lifecycle::reap(pid);
        return Err(e.into());
    }
    Ok(Running { pid, pidfd, output, input, _stdin_holder: stdin_holder })
}

/// Run `f` (the lifecycle's create, which clones the init from this process) with `fds` as
/// fds 0, 1 and 2, which the init inherits, and SIGPIPE at its default (Rust ignores it, and
/// an ignored signal would stay ignored in the container).
fn with_stdio<T>(fds: [&OwnedFd; 3], f: impl FnOnce() -> Result<T, LifecycleError>) -> Result<T, ContainerError> {
    let saved: Vec<OwnedFd> = (0..3)
        .map(|n| {
            // SAFETY: fds 0-2 are open in the monitor (/dev/null or its log).
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(n) };
            rustix::io::fcntl_dupfd_cloexec(fd, 3)
                .map_err(|e| ContainerError::Io { context: "saving stdio".into(), source: e.into() })
        })
        .collect::<Result<_, _>>()?;
    let dup_onto = |src: &OwnedFd, n: i32| {
        // SAFETY: dup2 onto the standard fds, which we restore below.
        unsafe { libc::dup2(src.as_raw_fd(), n) }
    };
    for (n, fd) in fds.iter().enumerate() {
        dup_onto(fd, n as i32);
    }
    // SAFETY: changing a signal disposition; no handler is involved.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let result = f();
    // SAFETY: as above.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    for (n, fd) in saved.iter().enumerate() {
        dup_onto(fd, n as i32);
    }
    Ok(result?)
}

fn open_dev_null() -> Result<OwnedFd, ContainerError> {
    rustix::fs::open("/dev/null", rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())
        .map_err(|e| ContainerError::Io { context: "opening /dev/null".into(), source: e.into() })
}

fn oom_killed(c: &Containers, id: &str) -> bool {
    let Ok(state) = c.runtime().states.load(id) else { return false };
    c.runtime().cgroup(&state).ok().and_then(|cg| cg.oom_killed().ok()).unwrap_or(false)
}

/// Record how the run ended and release what it held; `--rm` removes the container. A run
/// that started and ended may be restarted by the container's policy: when, is returned.
fn finish(c: &Containers, id: &str, code: i32, error: Option<String>, oom: bool) -> Result<Restart, ContainerError> {
    let _lock = c.lock(id)?;
    let mut record = c.load(id)?;
    record.exit_code = Some(code);
    let started = error.is_none();
    record.error = error;
    record.oom_killed = oom;
    record.finished_at = Some(now_rfc3339());
    let restart = if started { plan_restart(&mut record, code) } else { None };
    if let Err(e) = c.save(&record) {
        // A container about to be removed need not be recorded first: on a full disk, its
        // removal is what frees space.
        if !record.removed_at_end() {
            return Err(e);
        }
        tracing::warn!("recording the end of container {id}: {e}; removing it all the same");
    }
    release_run(c, &record.id)?;
    if record.removed_at_end() {
        super::waiters::notify(c, id, code);
        super::ops::remove_files(c, id)?;
        // docker's --rm takes the container's anonymous volumes too.
        super::volumes::remove_anonymous(c, &record)?;
    }
    Ok(restart)
}

/// docker's exit code for a container that could not be started: 127 when the program is
/// not there, 126 when it can't be executed, 125 for anything else (strata failed).
pub fn start_failure_code(e: &ContainerError) -> i32 {
    let ContainerError::Lifecycle(LifecycleError::Setup(message)) = e else { return 125 };
    // The process's working directory is not there: docker's code for a process that
    // cannot start.
    if message.contains("chdir to cwd") {
        return 126;
    }
    if !message.contains("exec: \"") {
        return 125;
    }
    if message.contains("executable file not found") || message.contains("no such file or directory") {
        127
    } else if message.contains("permission denied") {
        126
    } else {
        125
    }
}

/// RLIMIT_NOFILE for containers: docker's value, or this host's hard limit if lower.
fn nofile_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    DOCKER_NOFILE.min(limit.rlim_max)
}

/// The files docker bind-mounts over the image's: (destination, source).
fn write_etc_files(paths: &Paths, hostname: &str, opts: &RunOptions) -> Result<Vec<(String, PathBuf)>, ContainerError> {
    let mut hosts = match opts.network {
        NetworkMode::Host => std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
        NetworkMode::None => "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_string(),
    };
    // --add-host lines after the base, as docker writes them.
    for (host, ip) in &opts.add_hosts {
        if !hosts.is_empty() && !hosts.ends_with('\n') {
            hosts.push('\n');
        }
        hosts.push_str(&format!("{ip}\t{host}\n"));
    }
    let resolv = match opts.dns.is_empty() {
        true => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        // --dns replaces the host's servers and keeps its search and options lines, as docker.
        false => {
            let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let kept = host.lines().filter(|l| l.starts_with("search") || l.starts_with("options"));
            let servers = opts.dns.iter().map(|ip| format!("nameserver {ip}"));
            servers.chain(kept.map(str::to_string)).map(|l| l + "\n").collect()
        }
    };
    let files = [("hostname", format!("{hostname}\n")), ("hosts", hosts), ("resolv.conf", resolv)];
    let mut out = Vec::new();
    for (name, content) in files {
        let path = paths.etc_file(name);
        std::fs::write(&path, content.as_bytes()).map_err(io_err(format!("writing {}", path.display())))?;
        out.push((format!("/etc/{name}"), path));
    }
    Ok(out)
}

/// docker creates a missing working directory.
fn make_workdir(rootfs: &std::path::Path, cwd: PathBuf) -> Result<(), ContainerError> {
    if cwd.as_os_str().is_empty() || cwd == std::path::Path::new("/") {
        return Ok(());
    }
    let root = rustix::fs::open(
        rootfs,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| ContainerError::Io { context: format!("opening {}", rootfs.display()), source: e.into() })?;
    crate::sandbox::mounts::open_in_root(&root, &cwd, false)
        .map(drop)
        .map_err(|e| ContainerError::Monitor(format!("creating the working directory: {e}")))
}
