//! What a container wrote, as docker's `diff`, `export` and `commit` show it: the changes in
//! its upper dir over its image, its whole root filesystem as a tar, and a new image of its
//! image plus those changes. Volumes and mounts are not part of any (docker's rule); nor are
//! the mountpoints strata made for its own mounts.

use super::record::ContainerRecord;
use super::status::{observe, State};
use super::{ContainerError, Containers};
use crate::image::commit::{self, CommitOptions};
use crate::image::{Image, ImageRef, Store};
use crate::snapshot::changes::{self, Change};
use crate::snapshot::pack;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

/// The destinations the container's last start mounted something on (its spec's mounts).
fn mountpoints(c: &Containers, record: &ContainerRecord) -> BTreeSet<String> {
    let Ok(spec) = oci_spec::runtime::Spec::load(c.paths(&record.id).config()) else { return BTreeSet::new() };
    spec.mounts().iter().flatten().map(|m| m.destination().to_string_lossy().into_owned()).collect()
}

/// The container's upper dir; its changes can't be told apart from its image when its
/// root filesystem is a copy (the vfs driver).
fn upper(c: &Containers, record: &ContainerRecord, what: &str) -> Result<PathBuf, ContainerError> {
    let paths = c.paths(&record.id);
    if paths.copied_marker().exists() {
        return Err(ContainerError::Commit(format!(
            "{what} needs the overlay storage driver: the root filesystem of container {} is a copy (vfs)",
            record.name
        )));
    }
    Ok(paths.upper())
}

/// docker's diff: what the container added, changed and deleted, in path order.
pub fn diff(c: &Containers, record: &ContainerRecord) -> Result<Vec<Change>, ContainerError> {
    let upper = upper(c, record, "diff")?;
    if !upper.exists() {
        // Never started: nothing written.
        return Ok(Vec::new());
    }
    changes::changes(&upper, &record.layers, &mountpoints(c, record))
        .map_err(|e| ContainerError::Commit(format!("reading the changes of container {}: {e}", record.name)))
}

/// docker's export: the container's root filesystem (its image and its changes, no volume
/// or mount) as a tar into `out`.
pub fn export(c: &Containers, record: &ContainerRecord, out: impl Write) -> Result<(), ContainerError> {
    let paths = c.paths(&record.id);
    let layers = match paths.copied_marker().exists() {
        true => vec![paths.merged()],
        false => record.layers.iter().cloned().chain(Some(paths.upper()).filter(|u| u.exists())).collect(),
    };
    pack::merged(&layers, out)
        .map(drop)
        .map_err(|e| ContainerError::Commit(format!("exporting container {}: {e}", record.name)))
}

/// What `commit` is asked for besides the container.
pub struct CommitRequest {
    pub author: Option<String>,
    pub message: Option<String>,
    pub changes: Vec<String>,
    /// Freeze a running container while its changes are read (docker's default).
    pub pause: bool,
}

/// docker's commit: a new image, the container's image plus its changes as one more layer,
/// with the container's run config; recorded as `name` (or untagged).
pub fn commit(
    c: &Containers,
    store: &Store,
    record: &ContainerRecord,
    name: Option<&ImageRef>,
    request: CommitRequest,
) -> Result<Image, ContainerError> {
    let upper = upper(c, record, "commit")?;
    let base = store.resolve(&record.image_id).map_err(|e| {
        ContainerError::Commit(format!("the image of container {} ({}) is not there: {e}", record.name, record.image))
    })?;
    let mountpoints = mountpoints(c, record);
    let opts = CommitOptions {
        run: record.config(),
        changes: request.changes,
        author: request.author,
        message: request.message,
        created_by: record.command.join(" "),
    };
    let max_bytes = crate::snapshot::apply::ApplyLimits::default().max_unpacked_bytes;
    let image = commit::commit(
        store,
        &base,
        |out| {
            // Frozen while read, so the layer is one moment of it.
            let _frozen = match request.pause {
                true => Frozen::new(c, record)?,
                false => None,
            };
            match upper.exists() {
                true => pack::layer(&upper, &mountpoints, max_bytes, out).map(drop),
                // Never started: an empty layer, as docker's.
                false => tar::Builder::new(out).finish().map_err(|e| pack::PackError { path: "/".into(), source: e }),
            }
        },
        name,
        opts,
    )?;
    Ok(image)
}

/// A running container frozen for as long as this lives, and thawed when it goes, whatever
/// happened meanwhile; the signals that would end this process without running that are
/// held off until then (SIGKILL can't be).
struct Frozen<'a> {
    c: &'a Containers,
    id: String,
    /// The signal mask before.
    signals: libc::sigset_t,
}

impl<'a> Frozen<'a> {
    fn new(c: &'a Containers, record: &ContainerRecord) -> Result<Option<Frozen<'a>>, pack::PackError> {
        let running = observe(c, record.clone()).ok().flatten().is_some_and(|o| o.state == State::Running);
        if !running {
            return Ok(None);
        }
        // SAFETY: plain sigset_t manipulation; blocking signals only delays them.
        let signals = unsafe {
            let mut held: libc::sigset_t = std::mem::zeroed();
            let mut before: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut held);
            for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGPIPE] {
                libc::sigaddset(&mut held, signal);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &held, &mut before);
            before
        };
        let frozen = Frozen { c, id: record.id.clone(), signals };
        crate::lifecycle::ops::pause(c.runtime(), &record.id).map_err(|e| pack::PackError {
            path: "/".into(),
            source: std::io::Error::other(format!("pausing: {e}")),
        })?;
        Ok(Some(frozen))
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        // Thawed through its cgroup whatever state the freeze reached (one that timed out
        // half-way included).
        if let Ok(state) = self.c.runtime().states.load(&self.id) {
            if let Ok(cgroup) = self.c.runtime().cgroup(&state) {
                let _ = cgroup.thaw();
            }
        }
        // SAFETY: restores the mask this thread had.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.signals, std::ptr::null_mut()) };
    }
}
