//! The verbs that act on existing containers without starting them: kill, stop, wait, rm,
//! prune. Every wait is on a pidfd (the init's or the monitor's), never a sleep loop.

use super::record::{ContainerRecord, ProcessRef};
use super::status::{observe, release_run, wait_readable, Observed, State, UNKNOWN_EXIT};
use super::{io_err, ContainerError, Containers};
use crate::lifecycle::{kill, LifecycleError};
use std::time::Duration;

/// How long a killed init or a finishing monitor may take before we stop waiting.
const KILL_GRACE: Duration = Duration::from_secs(30);

fn observed(c: &Containers, record: &ContainerRecord) -> Result<Observed, ContainerError> {
    observe(c, record.clone())?.ok_or_else(|| ContainerError::NoSuchContainer(record.id.clone()))
}

/// `obs`, or, if its monitor is starting it (Created, monitor alive), what it is once the
/// start is over: the monitor holds the container's lock until then. None: it is gone.
fn after_start(c: &Containers, obs: Observed) -> Result<Option<Observed>, ContainerError> {
    if obs.state != State::Created || !obs.record.monitor.is_some_and(|m| m.alive()) {
        return Ok(Some(obs));
    }
    match c.lock(&obs.record.id) {
        Ok(lock) => drop(lock),
        Err(ContainerError::NoSuchContainer(_)) => return Ok(None),
        Err(e) => return Err(e),
    }
    match c.load(&obs.record.id) {
        Ok(now) => observe(c, now),
        Err(ContainerError::NoSuchContainer(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Turns the container's restart policy off until it is next started by hand (docker's
/// "manually stopped"): a stop, kill or rm is not a failure to recover from.
fn stopped_by_hand(c: &Containers, record: &ContainerRecord) -> Result<(), ContainerError> {
    if record.options.restart == crate::spec::run_options::RestartPolicy::No {
        return Ok(());
    }
    let _lock = match c.lock(&record.id) {
        Ok(l) => l,
        Err(ContainerError::NoSuchContainer(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut now = c.load(&record.id)?;
    now.manually_stopped = true;
    now.restarting = false;
    now.restarter = None;
    c.save(&now)
}

/// What [`signal_by_hand`] did.
enum Signalled {
    Sent,
    /// The run looked at had ended (or another start's run has taken its place): nothing sent.
    RunEnded,
}

/// Send `signal` to the init of the run looked at (`init`), as stopped by hand, in one step
/// under the container's lock (which a start holds until its run is up): a `start` racing
/// this either started first, and its run then ends stopped by hand instead of being restarted
/// by its policy, or starts after and is not signalled. `for_restart`: the stop of a
/// `restart`, after which an `--rm` container stays (any other stop or kill clears that).
fn signal_by_hand(
    c: &Containers,
    record: &ContainerRecord,
    signal: i32,
    init: Option<ProcessRef>,
    for_restart: bool,
) -> Result<Signalled, ContainerError> {
    let _lock = c.lock(&record.id)?;
    let mut now = c.load(&record.id)?;
    let policy = now.options.restart != crate::spec::run_options::RestartPolicy::No;
    let restarting_by_hand = for_restart && now.auto_remove;
    if policy || now.restarting_by_hand != restarting_by_hand {
        if policy {
            now.manually_stopped = true;
            now.restarting = false;
            now.restarter = None;
        }
        now.restarting_by_hand = restarting_by_hand;
        c.save(&now)?;
    }
    let current = c.runtime().states.load(&record.id).ok().map(|s| ProcessRef { pid: s.pid, start_time: s.pid_start });
    if current != init {
        return Ok(Signalled::RunEnded);
    }
    match kill::kill(c.runtime(), &record.id, signal, false) {
        Ok(()) => Ok(Signalled::Sent),
        Err(LifecycleError::NotRunning) => Ok(Signalled::RunEnded),
        Err(e) => Err(e.into()),
    }
}

/// Send `signal` to the container's init.
pub fn kill(c: &Containers, record: &ContainerRecord, signal: i32) -> Result<(), ContainerError> {
    let obs = observed(c, record)?;
    if !obs.is_running() {
        return Err(ContainerError::NotRunning(record.id.clone()));
    }
    match signal_by_hand(c, record, signal, obs.init, false)? {
        Signalled::Sent => Ok(()),
        Signalled::RunEnded => Err(ContainerError::NotRunning(record.id.clone())),
    }
}

/// docker's pause: freeze every process of a running container (its cgroup's freezer).
pub fn pause(c: &Containers, record: &ContainerRecord) -> Result<(), ContainerError> {
    let obs = observed(c, record)?;
    match obs.state {
        State::Paused => return Err(ContainerError::AlreadyPaused(record.id.clone())),
        State::Running => {}
        State::Created | State::Exited => return Err(ContainerError::NotRunning(record.id.clone())),
    }
    match crate::lifecycle::ops::pause(c.runtime(), &record.id) {
        Err(LifecycleError::NotRunningId { .. }) => Err(ContainerError::NotRunning(record.id.clone())),
        other => Ok(other?),
    }
}

/// docker's unpause: thaw a paused container.
pub fn unpause(c: &Containers, record: &ContainerRecord) -> Result<(), ContainerError> {
    let obs = observed(c, record)?;
    if obs.state != State::Paused {
        return Err(ContainerError::NotPaused(record.id.clone()));
    }
    match crate::lifecycle::ops::resume(c.runtime(), &record.id) {
        Err(LifecycleError::NotPaused { .. }) => Err(ContainerError::NotPaused(record.id.clone())),
        other => Ok(other?),
    }
}

/// docker's update: `change` edits the container's record under its lock (its limits,
/// its restart policy); if the container runs, its new limits are written to its cgroup
/// before the record is saved, so a limit the kernel refuses changes nothing. Later starts
/// build their spec from the record.
pub fn update<E: From<ContainerError>>(
    c: &Containers,
    record: &ContainerRecord,
    change: impl FnOnce(&mut ContainerRecord) -> Result<(), E>,
) -> Result<(), E> {
    let _lock = c.lock(&record.id)?;
    let mut now = c.load(&record.id)?;
    let before = now.options.clone();
    change(&mut now)?;
    let rt = c.runtime();
    let live = rt.states.load(&record.id).ok().filter(|s| rt.status(s) != crate::lifecycle::state::Status::Stopped);
    let limits = |o: &crate::spec::run_options::RunOptions| crate::spec::from_image::update_resources(o);
    if live.is_some() && limits(&now.options) != limits(&before) {
        match crate::lifecycle::ops::update(rt, &record.id, &limits(&now.options)) {
            // It ended meanwhile: the record is all there is to change.
            Err(LifecycleError::NotRunningId { .. }) => {}
            Err(e) => {
                // What was written before the refusal goes back (as far as the kernel lets it).
                let _ = crate::lifecycle::ops::update(rt, &record.id, &limits(&before));
                return Err(ContainerError::from(e).into());
            }
            Ok(()) => {}
        }
    }
    c.save(&now)?;
    Ok(())
}

/// `--stop-signal`, else the image's stop signal, else SIGTERM.
pub fn stop_signal(record: &ContainerRecord) -> i32 {
    record
        .options
        .stop_signal
        .as_deref()
        .or(record.image_config.stop_signal.as_deref())
        .and_then(|s| kill::parse_signal(s).ok())
        .filter(|s| *s != 0)
        .unwrap_or(libc::SIGTERM)
}

/// docker's stop timeout: `-t` if given, else the container's `--stop-timeout`, else 10 s;
/// a negative one (None) waits for as long as the container takes.
pub fn stop_timeout(record: &ContainerRecord, given: Option<i64>) -> Option<Duration> {
    let seconds = given.or(record.options.stop_timeout).unwrap_or(10);
    u64::try_from(seconds).ok().map(Duration::from_secs)
}

/// docker's stop: the stop signal, then SIGKILL after `timeout` (None: never); returns once
/// the run's end is recorded. A container that is not running is left as it is.
pub fn stop(c: &Containers, record: &ContainerRecord, timeout: Option<Duration>) -> Result<(), ContainerError> {
    stop_run(c, record, timeout, false)
}

/// `restart`'s stop: as [`stop`], but an `--rm` container stays, to be started again.
pub fn stop_to_restart(
    c: &Containers,
    record: &ContainerRecord,
    timeout: Option<Duration>,
) -> Result<(), ContainerError> {
    stop_run(c, record, timeout, true)
}

fn stop_run(
    c: &Containers,
    record: &ContainerRecord,
    timeout: Option<Duration>,
    for_restart: bool,
) -> Result<(), ContainerError> {
    // A container waiting to be restarted is stopped too: it stays exited.
    stopped_by_hand(c, record)?;
    let Some(obs) = after_start(c, observed(c, record)?)? else { return Ok(()) };
    if !obs.is_running() {
        return Ok(());
    }
    let init = obs.init.and_then(|i| i.pidfd());
    if obs.state == State::Paused {
        // A frozen process can't act on the signal.
        crate::lifecycle::ops::resume(c.runtime(), &record.id)?;
    }
    let gone = |fd: &Option<std::os::fd::OwnedFd>, t| fd.as_ref().is_none_or(|fd| wait_readable(fd, t));
    match signal_by_hand(c, record, stop_signal(record), obs.init, for_restart) {
        Ok(Signalled::Sent) => {
            if !gone(&init, timeout) {
                // The init we signalled, by its pidfd: never a later run's.
                match &init {
                    Some(fd) => drop(rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL)),
                    None => drop(kill::kill(c.runtime(), &record.id, libc::SIGKILL, false)),
                }
                gone(&init, Some(KILL_GRACE));
            }
        }
        // Ended meanwhile, or the signal failed: what follows waits for the end either way.
        Ok(Signalled::RunEnded) | Err(ContainerError::Lifecycle(_)) => {}
        // Removed meanwhile (an `--rm` container's run ended): stopped, as asked.
        Err(ContainerError::NoSuchContainer(_)) if record.auto_remove => return Ok(()),
        Err(e) => return Err(e),
    }
    // The monitor of the run stopped (not of one started since) records its end.
    if let Some(fd) = obs.record.monitor.and_then(|m| m.pidfd()) {
        wait_readable(&fd, Some(KILL_GRACE));
    }
    // Settles a run whose monitor was already gone.
    match c.load(&record.id) {
        Ok(now) => observe(c, now).map(drop),
        // An `--rm` container's monitor removed it: stopped, as asked.
        Err(ContainerError::NoSuchContainer(_)) if record.auto_remove => Ok(()),
        Err(e) => Err(e),
    }
}

/// Wait until the run's monitor (if alive) has exited, having recorded the end.
fn wait_for_monitor(c: &Containers, id: &str) -> bool {
    let Ok(record) = c.load(id) else { return true };
    match record.monitor.and_then(|m| m.pidfd()) {
        Some(fd) => wait_readable(&fd, Some(KILL_GRACE)),
        None => true,
    }
}

/// docker's wait: block until the container is not running, then its exit code.
pub fn wait(c: &Containers, record: &ContainerRecord) -> Result<i32, ContainerError> {
    // Each round either waits on a pidfd or finds the state changed; a process that is alive
    // yet can't be watched must not make this spin.
    let mut unwatchable = 0;
    // An `--rm` container is removed as it ends: its monitor hands the code to waiters.
    let waiter = if record.auto_remove { Some(super::waiters::Waiter::register(c, &record.id)?) } else { None };
    // Removed as it ended (`--rm`): the record goes first, the rest of its files after, so
    // done means its monitor (the remover) has exited too.
    let mut last_monitor = record.monitor.and_then(|m| m.pidfd());
    let removed = |monitor: Option<std::os::fd::OwnedFd>| {
        if let Some(fd) = monitor {
            wait_readable(&fd, Some(KILL_GRACE));
        }
        waiter.as_ref().and_then(|w| w.code()).ok_or(ContainerError::NoSuchContainer(record.id.clone()))
    };
    loop {
        let now = match c.load(&record.id) {
            Err(ContainerError::NoSuchContainer(_)) => return removed(last_monitor),
            other => other?,
        };
        let obs = match observe(c, now)? {
            Some(obs) => obs,
            None => return removed(last_monitor),
        };
        let monitor = obs.record.monitor.and_then(|m| m.pidfd());
        if obs.record.monitor.is_some() {
            last_monitor = obs.record.monitor.and_then(|m| m.pidfd());
        }
        match (obs.state, monitor) {
            (State::Exited, monitor) => {
                // Its monitor may still be releasing the run: done means done with that too.
                if let Some(fd) = monitor {
                    wait_readable(&fd, Some(KILL_GRACE));
                }
                return Ok(obs.record.exit_code.unwrap_or(UNKNOWN_EXIT));
            }
            // Starting, or running with its monitor: the monitor exits after recording the end.
            (_, Some(fd)) => {
                wait_readable(&fd, None);
            }
            (State::Created, None) => return Ok(obs.record.exit_code.unwrap_or(0)),
            // Running on after its monitor died: wait for the init itself.
            (State::Running | State::Paused, None) => match obs.init.and_then(|i| i.pidfd()) {
                Some(fd) => {
                    wait_readable(&fd, None);
                }
                None if unwatchable < 3 => unwatchable += 1,
                None => {
                    return Err(ContainerError::Monitor(format!("cannot watch the init of container {}", record.id)))
                }
            },
        }
    }
}

/// docker's rm: a running container only with `force` (killed first); then its run's
/// leftovers, writable layer, logs and record go.
pub fn remove(c: &Containers, record: &ContainerRecord, force: bool) -> Result<(), ContainerError> {
    let Some(obs) = observe(c, record.clone())? else { return Ok(()) };
    if obs.record.is_restarting() && !force {
        return Err(ContainerError::RemoveRestarting(record.id.clone()));
    }
    if force || !obs.is_running() {
        stopped_by_hand(c, record)?;
    }
    let Some(obs) = (if force { after_start(c, obs)? } else { Some(obs) }) else { return Ok(()) };
    let monitor_alive = obs.record.monitor.is_some_and(|m| m.alive());
    if obs.state == State::Exited && monitor_alive {
        // Ended; its monitor is releasing the run. Not running: no force needed.
        wait_for_monitor(c, &record.id);
    } else if obs.is_running() || monitor_alive {
        if !force {
            return Err(ContainerError::RemoveRunning(record.id.clone()));
        }
        if obs.is_running() {
            let init = obs.init.and_then(|i| i.pidfd());
            let _ = kill::kill(c.runtime(), &record.id, libc::SIGKILL, false);
            if let Some(fd) = &init {
                wait_readable(fd, Some(KILL_GRACE));
            }
        }
        if !wait_for_monitor(c, &record.id) {
            // A monitor that does not finish is killed; `release_run` cleans up after it.
            if let Some(fd) = obs.record.monitor.and_then(|m| m.pidfd()) {
                let _ = rustix::process::pidfd_send_signal(&fd, rustix::process::Signal::KILL);
                wait_readable(&fd, Some(KILL_GRACE));
            }
        }
    }
    let _lock = match c.lock(&record.id) {
        Ok(l) => l,
        // Gone meanwhile (an --rm container's monitor removed it).
        Err(ContainerError::NoSuchContainer(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let current = c.load(&record.id)?;
    if current.monitor.is_some_and(|m| m.alive()) {
        return Err(ContainerError::RemoveRunning(record.id.clone()));
    }
    release_run(c, &current.id)?;
    remove_files(c, &record.id)
}

/// Force-remove a container whose record is corrupt (`Containers::resolve` names it): without the
/// record there is no monitor to ask, so its run is ended from what the system shows (the
/// lifecycle state kills a live init; the cgroup `/strata/<id>` and the rootfs mount go), then
/// its directory. A monitor still running finds the container gone and exits.
pub fn remove_unreadable(c: &Containers, id: &str) -> Result<(), ContainerError> {
    let _lock = c.lock(id)?;
    release_run(c, id)?;
    remove_files(c, id)
}

/// Remove a container's directory; the caller holds its lock and has released its run.
pub fn remove_files(c: &Containers, id: &str) -> Result<(), ContainerError> {
    let paths = c.paths(id);
    // Never delete through a mount: unmount first (a no-op when nothing is mounted).
    super::rootfs::unmount(&paths)?;
    // Out of `containers/` in one rename first, so that no one sees a container half removed
    // (a record gone but its directory still there); the files go after. A leftover of a
    // removal cut short is removed with ROOT/tmp's other leftovers (image prune).
    let doomed = crate::fsutil::unique_name(&c.root().tmp(), &format!("removed-{id}-"));
    let dir = if std::fs::rename(&paths.dir, &doomed).is_ok() { doomed } else { paths.dir.clone() };
    crate::fsutil::remove_tree(&dir).map_err(io_err(format!("removing {}", dir.display())))
}

/// What `container prune` removed.
#[derive(Debug, Default)]
pub struct Pruned {
    pub ids: Vec<String>,
    pub bytes: u64,
}

/// Remove every container that is not running (created and exited ones) and that `select`
/// takes, and leftovers of killed creates.
pub fn prune(c: &Containers, select: impl Fn(&ContainerRecord) -> bool) -> Result<Pruned, ContainerError> {
    let mut pruned = Pruned::default();
    for record in c.list().into_iter().filter(|r| select(r)) {
        let Some(obs) = observe(c, record)? else { continue };
        if obs.state != State::Exited && obs.state != State::Created {
            continue;
        }
        // A container between the runs its restart policy makes is, for docker, running.
        if obs.record.monitor.is_some_and(|m| m.alive()) || obs.record.is_restarting() {
            continue;
        }
        let size = crate::fsutil::tree_size(&c.paths(&obs.record.id).dir);
        match remove(c, &obs.record, false) {
            Ok(()) => {
                pruned.ids.push(obs.record.id.clone());
                pruned.bytes += size;
            }
            Err(ContainerError::RemoveRunning(_)) => {}
            Err(e) => return Err(e),
        }
    }
    c.remove_leftovers()?;
    Ok(pruned)
}
