//! Containers as people use them (docker's model) on top of the runc-level lifecycle: named
//! records made from images, a monitor process per run that owns the container's stdio, logs
//! and exit status, and a status that is derived from the live system every time it is asked
//! for, so it stays true after any crash.
//!
//! ```text
//! ROOT/containers/<id>/
//!     container.json      the record (`record`), replaced atomically
//!     lock                serialises changes to this container
//!     config.json         the bundle's OCI spec, made from the image at each start
//!     rootfs/upper        the container's own writes (kept until `rm`)
//!     rootfs/work, merged the overlay, mounted only while a run is alive
//!     <id>-json.log       stdout/stderr in docker's json-file format (`logs`)
//!     hostname hosts resolv.conf   bind-mounted over the image's
//!     monitor.log         the monitor's own diagnostics
//! ROOT/containers/names.lock   held while a name is checked and claimed
//! ROOT/run/<id>/       the lifecycle's state while a run is alive (`lifecycle::state`)
//! /sys/fs/cgroup/*/strata/<id>   the run's cgroup, removed when the run ends
//! ```
//! Two roots share nothing: IDs are random, so even their cgroups never collide.

pub mod attach;
pub mod commit;
pub mod copy;
pub mod exec;
pub mod health;
pub mod logs;
pub mod monitor;
pub mod names;
pub mod ops;
pub mod record;
pub mod relay;
pub mod rootfs;
pub mod status;
pub mod volumes;
pub mod waiters;

use crate::fsutil::{write_atomic, write_atomic_unsynced};
use crate::image::classify::Kind;
use crate::image::manifest::RunConfig;
use crate::lifecycle::{LifecycleError, Runtime};
use crate::lock::Lock;
use crate::root::Root;
use crate::snapshot::rootfs::{Driver, RootfsError};
use crate::spec::from_image::{self, FromImageError};
use crate::spec::run_options::RunOptions;
use record::ContainerRecord;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    #[error("multiple containers match the prefix {input:?}: {candidates}")]
    Ambiguous { input: String, candidates: String },
    #[error(
        "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". \
         You have to remove (or rename) that container to be able to reuse that name."
    )]
    NameInUse { name: String, id: String },
    #[error("{0}")]
    InvalidName(String),
    #[error("Renaming a container with the same name as its current name")]
    SameName,
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("Container {0} is already paused")]
    AlreadyPaused(String),
    #[error("Container {0} is not paused")]
    NotPaused(String),
    #[error("cannot remove container {0}: container is running: stop the container before removing or force remove")]
    RemoveRunning(String),
    #[error(
        "cannot remove container {0}: container is restarting: stop the container before removing or force remove"
    )]
    RemoveRestarting(String),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error("the record of container {id} is corrupt (a forced removal deletes what is left of it)")]
    Corrupt { id: String, source: serde_json::Error },
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error(transparent)]
    Spec(#[from] FromImageError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Volume(#[from] crate::volumes::VolumeError),
    /// A start that failed, with docker's exit code for it (125, 126 or 127).
    #[error("{message}")]
    Start { code: i32, message: String },
    #[error("{0}")]
    Monitor(String),
    /// An image's `VOLUME` no container may have (`/`, in /proc).
    #[error("{0}")]
    ImageVolume(String),
    /// A `cp` that failed, in docker's words (which name the container).
    #[error("{0}")]
    Copy(String),
    /// A `diff`, `export` or `commit` that failed (the message names the container).
    #[error("{0}")]
    Commit(String),
    #[error(transparent)]
    NewImage(#[from] crate::image::commit::CommitError),
}

pub fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ContainerError {
    let context = context.into();
    move |source| ContainerError::Io { context, source }
}

/// Where one container's files are.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
}

impl Paths {
    pub fn record(&self) -> PathBuf {
        self.dir.join("container.json")
    }
    pub fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub fn rootfs_dir(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    pub fn upper(&self) -> PathBuf {
        self.rootfs_dir().join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.rootfs_dir().join("work")
    }
    pub fn merged(&self) -> PathBuf {
        self.rootfs_dir().join("merged")
    }
    /// Present when the rootfs is a flattened copy (vfs driver or no overlayfs): `merged`
    /// is then the container's own filesystem and is kept between runs.
    pub fn copied_marker(&self) -> PathBuf {
        self.rootfs_dir().join("copied")
    }
    pub fn log(&self) -> PathBuf {
        let id = self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.dir.join(format!("{id}-json.log"))
    }
    pub fn monitor_log(&self) -> PathBuf {
        self.dir.join("monitor.log")
    }
    /// FIFOs of `wait`s for an `--rm` container's exit code (see `waiters`).
    pub fn waiters(&self) -> PathBuf {
        self.dir.join("waiters")
    }
    /// The health check's state (see `health`), written by the run's checker.
    pub fn health(&self) -> PathBuf {
        self.dir.join("health.json")
    }
    pub fn etc_file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// What `create` needs to make a container.
#[derive(Debug, Clone)]
pub struct NewContainer {
    pub name: Option<String>,
    pub image: String,
    pub image_id: String,
    pub image_config: RunConfig,
    pub layers: Vec<PathBuf>,
    pub options: RunOptions,
    pub kind: Kind,
    pub kind_reason: String,
    pub auto_remove: bool,
}

/// The containers of one strata root.
#[derive(Debug, Clone)]
pub struct Containers {
    root: Root,
    runtime: Runtime,
    driver: Driver,
}

impl Containers {
    pub fn open(root: &Root, driver: Driver) -> Result<Containers, ContainerError> {
        // 0700, also when an older strata made it 0755: containers' specs and logs hold their
        // environment and output (passwords among them), for no other host user to read.
        let dir = root.containers();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err(format!("creating {}", dir.display())))?;
        let meta = fs::metadata(&dir).map_err(io_err(format!("reading {}", dir.display())))?;
        if meta.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                .map_err(io_err(format!("restricting {}", dir.display())))?;
        }
        let runtime = Runtime::new(&root.path().join("run"))?;
        Ok(Containers { root: root.clone(), runtime, driver })
    }

    pub fn root(&self) -> &Root {
        &self.root
    }
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }
    pub fn driver(&self) -> Driver {
        self.driver
    }

    pub fn paths(&self, id: &str) -> Paths {
        Paths { dir: self.root.containers().join(id) }
    }

    /// Serialise changes to one container. Fails with NoSuchContainer once it is removed.
    pub fn lock(&self, id: &str) -> Result<Lock, ContainerError> {
        let paths = self.paths(id);
        let lock = Lock::exclusive(&paths.lock()).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ContainerError::NoSuchContainer(id.into()),
            _ => ContainerError::Io { context: format!("locking container {id}"), source: e },
        })?;
        // Removed while we waited: the lock file was unlinked with its directory.
        if !paths.record().exists() {
            return Err(ContainerError::NoSuchContainer(id.into()));
        }
        Ok(lock)
    }

    pub fn load(&self, id: &str) -> Result<ContainerRecord, ContainerError> {
        let path = self.paths(id).record();
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ContainerError::NoSuchContainer(id.into()),
            _ => ContainerError::Io { context: format!("reading {}", path.display()), source: e },
        })?;
        serde_json::from_slice(&bytes).map_err(|source| ContainerError::Corrupt { id: id.into(), source })
    }

    /// Replace the record atomically. A kept container's record is fsynced: its name, config
    /// and last exit must survive a power loss. A `--rm` container's is not (three fsyncs per
    /// `run --rm`, 0.25-0.5 ms each on this VM's ext4): it is removed when it exits anyway,
    /// and the worst a crash can leave of it is a record that commands name as corrupt and
    /// `rm -f` removes.
    pub fn save(&self, record: &ContainerRecord) -> Result<(), ContainerError> {
        let bytes = serde_json::to_vec_pretty(record).expect("record serialises");
        let path = self.paths(&record.id).record();
        let written =
            if record.auto_remove { write_atomic_unsynced(&path, &bytes) } else { write_atomic(&path, &bytes) };
        written.map_err(io_err(format!("saving the record of container {}", record.id)))
    }

    /// The `Corrupt` errors of containers whose ID starts with `prefix` and whose record is
    /// there but unparsable (a crash or a full disk at the wrong moment, a hand edit): `list`
    /// leaves them out, `resolve` names them, and `ops::remove_unreadable` removes them.
    fn corrupt(&self, prefix: &str) -> Vec<ContainerError> {
        let Ok(entries) = fs::read_dir(self.root.containers()) else { return Vec::new() };
        entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|id| id.starts_with(prefix))
            .filter_map(|id| match self.load(&id) {
                Err(e @ ContainerError::Corrupt { .. }) => Some(e),
                _ => None,
            })
            .collect()
    }

    /// Every container with a readable record, oldest first.
    pub fn list(&self) -> Vec<ContainerRecord> {
        self.records(true)
    }

    /// `list`, warning about each record that cannot be read (`warn`) or not.
    fn records(&self, warn: bool) -> Vec<ContainerRecord> {
        let Ok(entries) = fs::read_dir(self.root.containers()) else { return Vec::new() };
        let mut records: Vec<ContainerRecord> = entries
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| {
                let id = e.file_name().to_string_lossy().into_owned();
                match self.load(&id) {
                    Ok(r) => Some(r),
                    Err(ContainerError::NoSuchContainer(_)) => None,
                    Err(err) => {
                        if warn {
                            tracing::warn!("skipping container {id}: {err}");
                        }
                        None
                    }
                }
            })
            .collect();
        records.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
        records
    }

    /// Find a container as docker does: full ID, then name, then a unique ID prefix.
    pub fn resolve(&self, input: &str) -> Result<ContainerRecord, ContainerError> {
        // Quietly: a corrupt record that matches is named in the error below.
        let records = self.records(false);
        if let Some(r) = records.iter().find(|r| r.id == input) {
            return Ok(r.clone());
        }
        let name = input.strip_prefix('/').unwrap_or(input);
        if let Some(r) = records.iter().find(|r| r.name == name) {
            return Ok(r.clone());
        }
        if !input.is_empty() && input.bytes().all(|b| b.is_ascii_hexdigit()) {
            let matches: Vec<&ContainerRecord> = records.iter().filter(|r| r.id.starts_with(input)).collect();
            match matches.len() {
                0 => {}
                1 => return Ok(matches[0].clone()),
                _ => {
                    return Err(ContainerError::Ambiguous {
                        input: input.into(),
                        candidates: matches.iter().map(|r| r.short_id()).collect::<Vec<_>>().join(", "),
                    })
                }
            }
        }
        // Not among the readable ones: a corrupt record, by ID or unique ID prefix, is named as
        // such rather than as missing.
        if !input.is_empty() && input.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut corrupt = self.corrupt(input);
            if corrupt.len() == 1 {
                return Err(corrupt.remove(0));
            }
        }
        Err(ContainerError::NoSuchContainer(input.into()))
    }

    /// Make a container: claim its name, write its record. Nothing runs yet; the rootfs is
    /// assembled at start.
    pub fn create(&self, new: NewContainer) -> Result<ContainerRecord, ContainerError> {
        let command = from_image::command(&new.image_config, &new.options)?;
        if new.options.init.is_some() && new.kind == Kind::Wasm {
            return Err(FromImageError::InitInWasm.into());
        }
        let mut new = new;
        let wanted = new.name.as_deref().map(names::validate).transpose().map_err(ContainerError::InvalidName)?;
        let _names =
            Lock::exclusive(&self.root.containers().join("names.lock")).map_err(io_err("locking container names"))?;
        let existing = self.list();
        let name = match wanted {
            Some(name) => {
                if let Some(other) = existing.iter().find(|r| r.name == name) {
                    return Err(ContainerError::NameInUse { name, id: other.id.clone() });
                }
                name
            }
            None => names::generate(&|n| existing.iter().any(|r| r.name == n)),
        };
        // Once the name is ours (a create refused for it makes nothing on the host).
        for volume in new.options.volumes.iter().filter(|v| v.volume.is_none()) {
            // docker creates a missing bind source as a directory.
            if !volume.source.exists() {
                fs::create_dir_all(&volume.source)
                    .map_err(io_err(format!("creating volume source {}", volume.source.display())))?;
            }
        }
        // From here until the record is saved, no volume it names can be removed. A container
        // with none (most) takes no lock: `run` is the hot path.
        let volume_store = crate::volumes::Volumes::open(&self.root);
        let image_volumes: Vec<String> =
            new.image_config.volumes.as_ref().map(|v| v.keys().cloned().collect()).unwrap_or_default();
        let names_volumes = !image_volumes.is_empty() || new.options.volumes.iter().any(|v| v.volume.is_some());
        let _volumes = if names_volumes { Some(volume_store.lock()?) } else { None };
        let made_anonymous = volumes::attach(&volume_store, &mut new.options, &image_volumes)?;
        let id = names::new_id();
        let paths = self.paths(&id);
        let forget_volumes = || {
            for name in &made_anonymous {
                let _ = volume_store.remove(name);
            }
        };
        if let Err(e) = fs::DirBuilder::new().mode(0o700).create(&paths.dir) {
            forget_volumes();
            return Err(io_err(format!("creating {}", paths.dir.display()))(e));
        }
        let record = ContainerRecord {
            id: id.clone(),
            name,
            image: new.image,
            image_id: new.image_id,
            image_config: new.image_config,
            layers: new.layers,
            options: new.options,
            command,
            created: crate::lifecycle::now_rfc3339(),
            kind: new.kind,
            kind_reason: new.kind_reason,
            auto_remove: new.auto_remove,
            ports: Vec::new(),
            monitor: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
            oom_killed: false,
            error: None,
            restart_count: 0,
            manually_stopped: false,
            restarting_by_hand: false,
            restarting: false,
            restarter: None,
            restart_delay_ms: 0,
        };
        let saved = fs::create_dir_all(paths.upper())
            .map_err(io_err(format!("creating {}", paths.upper().display())))
            .and_then(|()| self.save(&record));
        if let Err(e) = saved {
            let _ = crate::fsutil::remove_tree(&paths.dir);
            forget_volumes();
            return Err(e);
        }
        Ok(record)
    }

    /// docker's `rename`: a new name, checked and claimed as `create` claims one. The record
    /// is read again under the container's lock, so no concurrent update is lost.
    pub fn rename(&self, input: &str, new_name: &str) -> Result<ContainerRecord, ContainerError> {
        let name = names::validate(new_name).map_err(ContainerError::InvalidName)?;
        let _names =
            Lock::exclusive(&self.root.containers().join("names.lock")).map_err(io_err("locking container names"))?;
        let found = self.resolve(input)?;
        if found.name == name {
            return Err(ContainerError::SameName);
        }
        if let Some(other) = self.list().into_iter().find(|r| r.name == name) {
            return Err(ContainerError::NameInUse { name, id: other.id });
        }
        let _lock = self.lock(&found.id)?;
        let mut record = self.load(&found.id)?;
        record.name = name;
        self.save(&record)?;
        Ok(record)
    }

    /// Remove the directories of creates that were killed before their record was written
    /// (they hold nothing else: no mount, cgroup or process exists before the record).
    /// Returns how many were removed.
    pub fn remove_leftovers(&self) -> Result<usize, ContainerError> {
        // `create` holds the names lock from mkdir until the record is saved.
        let _names =
            Lock::exclusive(&self.root.containers().join("names.lock")).map_err(io_err("locking container names"))?;
        let Ok(entries) = fs::read_dir(self.root.containers()) else { return Ok(0) };
        let mut removed = 0;
        for dir in entries.flatten().map(|e| e.path()) {
            if dir.is_dir() && !dir.join("container.json").exists() {
                crate::fsutil::remove_tree(&dir).map_err(io_err(format!("removing {}", dir.display())))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
