//! A container's own record (`ROOT/containers/<id>/container.json`, replaced atomically):
//! what it was made from and with which options, and how its last run ended. Its live
//! state (running, paused) is never stored here: `status` derives it from the lifecycle
//! state and the processes themselves, so a crash can't leave a stale "running".

use crate::image::classify::Kind;
use crate::image::manifest::RunConfig;
use crate::spec::run_options::RunOptions;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A process we started and may later need to recognise: the pid plus its start time, so a
/// recycled pid is never mistaken for ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRef {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcessRef {
    /// This process itself.
    pub fn current() -> Option<ProcessRef> {
        let pid = std::process::id() as i32;
        crate::lifecycle::state::process_start_time(pid).map(|start_time| ProcessRef { pid, start_time })
    }

    pub fn of(pid: i32) -> Option<ProcessRef> {
        crate::lifecycle::state::process_start_time(pid).map(|start_time| ProcessRef { pid, start_time })
    }

    pub fn alive(&self) -> bool {
        crate::lifecycle::state::process_start_time(self.pid) == Some(self.start_time)
    }

    /// A pidfd for the process if it is still the one we mean: opened first, then checked,
    /// so the fd can't refer to a recycled pid.
    pub fn pidfd(&self) -> Option<std::os::fd::OwnedFd> {
        let pid = rustix::process::Pid::from_raw(self.pid)?;
        let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
        self.alive().then_some(fd)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    /// The image as the user named it (what `ps` shows).
    pub image: String,
    /// The image ID (config digest); `rmi` refuses images that containers use.
    pub image_id: String,
    /// The image's run config at create time.
    pub image_config: RunConfig,
    /// Snapshot directories of the image's layers, bottom first.
    pub layers: Vec<PathBuf>,
    pub options: RunOptions,
    /// The process's argv (Entrypoint + Cmd after overrides).
    pub command: Vec<String>,
    pub created: String,
    pub kind: Kind,
    pub kind_reason: String,
    /// `--rm`: the monitor removes the container when it exits.
    pub auto_remove: bool,
    /// Published ports: strata has no port forwarding, so always empty.
    #[serde(default)]
    pub ports: Vec<String>,
    /// The monitor of the current or last run.
    #[serde(default)]
    pub monitor: Option<ProcessRef>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    /// Set when a run has ended (128+N for a signal).
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub oom_killed: bool,
    /// Why the last start or run failed, if it did.
    #[serde(default)]
    pub error: Option<String>,
    /// Restarts by its `--restart` policy since it was last started by hand.
    #[serde(default)]
    pub restart_count: u32,
    /// Stopped, killed or removed by hand: its restart policy no longer applies.
    #[serde(default)]
    pub manually_stopped: bool,
    /// Ended, and to be started again by its restart policy once the back-off is over (by
    /// `restarter`: see [`ContainerRecord::is_restarting`]).
    #[serde(default)]
    pub restarting: bool,
    /// The monitor waiting out the back-off.
    #[serde(default)]
    pub restarter: Option<ProcessRef>,
    /// Being stopped by `restart`, to be started again at once: an `--rm` container is not
    /// removed at the end of this run (docker's "manually restarted"). Cleared by the start.
    #[serde(default)]
    pub restarting_by_hand: bool,
    /// The back-off before the next restart, ms (docker's: 100 ms, doubling, at most a
    /// minute; back to 100 ms after a run of 10 s or more).
    #[serde(default)]
    pub restart_delay_ms: u64,
}

impl ContainerRecord {
    /// Whether the end of its current run removes it: `--rm`, unless `restart` is stopping it.
    pub fn removed_at_end(&self) -> bool {
        self.auto_remove && !self.restarting_by_hand
    }

    /// Between two runs its restart policy makes: true only while the monitor that is to
    /// start it again lives (one killed, or a reboot, leaves an exited container).
    pub fn is_restarting(&self) -> bool {
        self.restarting && self.restarter.is_some_and(|m| m.alive())
    }

    /// The container's run config as docker keeps it (`inspect`'s Config, what `commit`
    /// writes): the image's, with what `run` set over it.
    pub fn config(&self) -> crate::image::manifest::RunConfig {
        let image = &self.image_config;
        let opts = &self.options;
        let mut env = image.env.clone().unwrap_or_default();
        for entry in &opts.env {
            crate::spec::from_image::replace_or_append(&mut env, entry);
        }
        let cmd = match (&opts.entrypoint, opts.cmd.is_empty()) {
            (_, false) => Some(opts.cmd.clone()),
            // docker drops the image's Cmd with --entrypoint.
            (Some(_), true) => None,
            (None, true) => image.cmd.clone(),
        };
        let mut labels = image.labels.clone().unwrap_or_default();
        labels.extend(opts.labels.clone());
        let mut volumes = image.volumes.clone().unwrap_or_default();
        for v in opts.volumes.iter().filter(|v| v.anonymous) {
            volumes.entry(v.destination.clone()).or_insert_with(|| serde_json::json!({}));
        }
        crate::image::manifest::RunConfig {
            user: opts.user.clone().or_else(|| image.user.clone()),
            env: Some(env).filter(|e| !e.is_empty()),
            entrypoint: opts.entrypoint.clone().or_else(|| image.entrypoint.clone()),
            cmd,
            working_dir: opts.workdir.clone().or_else(|| image.working_dir.clone()),
            labels: Some(labels).filter(|l| !l.is_empty()),
            stop_signal: opts.stop_signal.clone().or_else(|| image.stop_signal.clone()),
            volumes: Some(volumes).filter(|v| !v.is_empty()),
            healthcheck: super::health::merged(image.healthcheck.as_ref(), opts.healthcheck.as_ref()),
        }
    }

    pub fn short_id(&self) -> &str {
        self.id.get(..12).unwrap_or(&self.id)
    }
}
