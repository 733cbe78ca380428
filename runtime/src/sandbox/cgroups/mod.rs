//! One container's cgroup: the OCI spec's `linux.cgroupsPath` and `linux.resources`, on cgroup v1
//! (legacy and hybrid hosts: one hierarchy per controller) and cgroup v2 (the unified hierarchy).
//!
//! Owns: resolving the container's cgroup path, creating its directories, writing the resource
//! limits (also for `update`), moving processes in, freezing and thawing, stats and OOM status,
//! signalling everything inside, and removing the directories again.
//!
//! Must never:
//! - write outside the container's own cgroup directories. The two exceptions are what makes the
//!   leaf usable at all: v1 `cpuset.cpus`/`cpuset.mems` of an ancestor that is still empty (copied
//!   from its parent, as runc does), and v2 `cgroup.subtree_control` of the ancestors, which only
//!   ever gains controllers;
//! - resolve a path relative to the caller's own cgroup: paths always start at the hierarchy root
//!   (a relative `cgroupsPath` is placed under `/strata`; systemd's `slice:prefix:name` where
//!   systemd would put that unit), and `..` is refused;
//! - remove a directory other than the leaf unless this value created it (a pod's parent cgroup
//!   belongs to whoever made it).
//!
//! Plain file writes rather than a crate: cgroups-rs 0.5 always pulls zbus (D-Bus) and hard-codes
//! `/sys/fs/cgroup` for v2; youki's libcgroups 0.7 (oci-spec 0.10, right hybrid detection, but 99
//! crates and ~90 s to build here) maps shares→weight with runc's new curve, fails when swap
//! accounting is off, sleeps in its retry loops and removes only the leaf. v2 device rules are a
//! small eBPF program assembled in `devices.rs`.

mod devices;
mod file;
mod v1;
mod v2;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod real_v1_tests;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use oci_spec::runtime::LinuxResources;
use rustix::process::Signal;
use serde::Serialize;

pub use devices::default_allowed_devices;
pub(crate) use v1::UNIFIED_HIERARCHY;

/// Where relative `cgroupsPath`s are placed (and where a container without one goes: `/strata/<id>`).
pub const DEFAULT_PARENT: &str = "strata";

/// How long freeze/thaw wait for the kernel to report the new state.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

/// The cgroup hierarchy in use under the mount root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Version {
    /// One hierarchy per controller (`/sys/fs/cgroup/memory`, ...), legacy or hybrid hosts.
    V1,
    /// The unified hierarchy (`/sys/fs/cgroup` is a cgroup2 mount).
    V2,
}

/// A cgroup error: one line naming the file or controller and the value involved.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup: invalid cgroups path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("cgroup: no cgroup hierarchy found under {}", .0.display())]
    NoHierarchy(PathBuf),
    #[error("cgroup: creating {}: {}", dir.display(), OsText(err))]
    Create { dir: PathBuf, err: io::Error },
    #[error("cgroup: writing {value:?} to {}: {}", file.display(), OsText(err))]
    Write { file: PathBuf, value: String, err: io::Error },
    #[error("cgroup: reading {}: {}", file.display(), OsText(err))]
    Read { file: PathBuf, err: io::Error },
    #[error("cgroup: unexpected content {content:?} in {}", file.display())]
    Parse { file: PathBuf, content: String },
    #[error("cgroup: removing {}: it still has processes or child cgroups", dir.display())]
    Busy { dir: PathBuf },
    #[error("cgroup: removing {}: {}", dir.display(), OsText(err))]
    Remove { dir: PathBuf, err: io::Error },
    #[error("cgroup: {needed_for} needs the {controller} controller, which is not mounted")]
    MissingController { controller: &'static str, needed_for: &'static str },
    #[error("cgroup: invalid {field}: {reason}")]
    InvalidValue { field: &'static str, reason: String },
    #[error("cgroup: {0}")]
    Unsupported(String),
    #[error("cgroup: {} did not report {state} within {:?}", file.display(), FREEZE_TIMEOUT)]
    FreezeTimeout { file: PathBuf, state: &'static str },
    #[error("cgroup: sending signal {signal} to pid {pid}: {}", OsText(err))]
    Signal { pid: i32, signal: i32, err: io::Error },
}

// The io::Errors are named `err`, not `source`: thiserror would make them the error's source and a
// chain (`{:#}`) would print the errno twice. The one-line message is the whole story.
impl CgroupError {
    /// The errno behind a failed write, read, create or remove, if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Self::Create { err, .. }
            | Self::Remove { err, .. }
            | Self::Signal { err, .. }
            | Self::Write { err, .. }
            | Self::Read { err, .. } => err.raw_os_error(),
            _ => None,
        }
    }
}

/// Prints an io::Error as the kernel's words ("Invalid argument"), without "(os error 22)".
struct OsText<'a>(&'a io::Error);

impl fmt::Display for OsText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_string();
        match text.rsplit_once(" (os error ") {
            Some((words, _)) => f.write_str(words),
            None => f.write_str(&text),
        }
    }
}

/// Resource usage of a container's cgroup. Sections whose controller is absent stay zero.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub memory: MemoryStats,
    pub cpu: CpuStats,
    pub pids: PidsStats,
    pub io: IoStats,
    /// Processes killed by the OOM killer inside this cgroup.
    pub oom_kill_count: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryStats {
    /// Bytes in use (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub usage: u64,
    /// The limit in bytes; `None` when unlimited.
    pub limit: Option<u64>,
    /// Peak usage (v1 `memory.max_usage_in_bytes`, v2 `memory.peak` where the kernel has it).
    pub max_usage: Option<u64>,
    /// Times the limit was hit (v1 `memory.failcnt`, v2 `memory.events` `max`).
    pub failcnt: u64,
    /// Swap in use, where swap accounting is on.
    pub swap_usage: Option<u64>,
    /// `memory.stat` as the kernel keys it (v1: `cache`, `total_inactive_file`, ...; v2:
    /// `anon`, `inactive_file`, ...), for those that pass it on: the shim's metrics.
    pub stat: BTreeMap<String, u64>,
}

impl MemoryStats {
    /// The memory a container holds as docker's `stats` and kubelet count it: usage less the
    /// inactive file cache, which the kernel drops first, so a container that wrote a large
    /// file does not read as holding it.
    pub fn working_set(&self) -> u64 {
        let inactive_file = self.stat.get("total_inactive_file").or_else(|| self.stat.get("inactive_file"));
        self.usage.saturating_sub(inactive_file.copied().unwrap_or(0))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuStats {
    pub usage_ns: u64,
    pub user_ns: u64,
    pub system_ns: u64,
    /// CFS enforcement periods elapsed, periods throttled, and time throttled.
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
    /// CPU time on each CPU (v1 `cpuacct.usage_percpu`; v2 has no such file).
    pub per_cpu_ns: Vec<u64>,
}

/// Bytes read from and written to block devices, over all devices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IoStats {
    pub read_bytes: u64,
    pub write_bytes: u64,
}

impl IoStats {
    /// v1 `blkio.throttle.io_service_bytes_recursive`: `MAJ:MIN Read N` lines (and a `Total`).
    pub fn from_v1(text: &str) -> IoStats {
        let mut io = IoStats::default();
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let [_device, op, n] = fields[..] {
                let n: u64 = n.parse().unwrap_or(0);
                match op {
                    "Read" => io.read_bytes += n,
                    "Write" => io.write_bytes += n,
                    _ => {}
                }
            }
        }
        io
    }

    /// v2 `io.stat`: `MAJ:MIN rbytes=N wbytes=N ...` lines.
    pub fn from_v2(text: &str) -> IoStats {
        let mut io = IoStats::default();
        for (key, value) in text.split_whitespace().filter_map(|kv| kv.split_once('=')) {
            let n: u64 = value.parse().unwrap_or(0);
            match key {
                "rbytes" => io.read_bytes += n,
                "wbytes" => io.write_bytes += n,
                _ => {}
            }
        }
        io
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PidsStats {
    pub current: u64,
    /// `None` when unlimited.
    pub limit: Option<u64>,
}

/// One container's cgroup, in every hierarchy that matters on this host.
pub struct Cgroup {
    path: String,
    backend: Backend,
    /// Directories `create` made (all hierarchies, parents before children): `delete` removes
    /// these and the leaf, nothing else.
    created: Mutex<Vec<PathBuf>>,
}

/// See [`Cgroup::fast_entry`].
pub struct FastEntry {
    /// The cgroup's directory in a cgroup2 hierarchy (v2's, or a hybrid host's unified one),
    /// for `clone3(CLONE_INTO_CGROUP)`.
    pub clone_into: Option<std::os::fd::OwnedFd>,
    /// v1: the `tasks` files the child writes `0` to (empty: it does not move itself).
    pub self_attach: Vec<PathBuf>,
    /// v1 hierarchies the child does not join itself (it may not write them: user namespace).
    v1_left_to_runtime: bool,
}

impl FastEntry {
    /// Whether the runtime must still move the child (`add_process`): some hierarchy is neither
    /// one the child moved itself into nor the one it was cloned into (`cloned_in`: what the
    /// clone reported; old kernels fall back to a plain clone).
    pub fn runtime_must_move(&self, cloned_in: bool) -> bool {
        self.v1_left_to_runtime || (self.clone_into.is_some() && !cloned_in)
    }
}

/// In the child [`Cgroup::fast_entry`] prepared for (single-threaded, still on the host's
/// paths and user namespace): move itself into the cgroup through its `self_attach` files.
pub fn attach_self(tasks_files: &[PathBuf]) -> Result<(), String> {
    for tasks in tasks_files {
        std::fs::write(tasks, "0").map_err(|e| format!("joining the cgroup ({}): {e}", tasks.display()))?;
    }
    Ok(())
}

enum Backend {
    V1(v1::V1),
    V2(v2::V2),
}

impl fmt::Debug for Cgroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cgroup").field("version", &self.version()).field("path", &self.path).finish()
    }
}

/// Tells v1 from v2 under `mount_root`: a cgroup2 mount has `cgroup.controllers` at its root; the
/// tmpfs of a v1 or hybrid host does not (hybrid keeps cgroup2 at `unified/`, without the controllers
/// we need, so such a host counts as v1).
pub fn detect_version(mount_root: &Path) -> Result<Version, CgroupError> {
    if mount_root.join("cgroup.controllers").exists() {
        return Ok(Version::V2);
    }
    if v1::CONTROLLERS.iter().any(|c| mount_root.join(c).is_dir()) {
        return Ok(Version::V1);
    }
    // Co-mounted controllers without the usual symlinks ("cpu,cpuacct").
    if let Ok(entries) = std::fs::read_dir(mount_root) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.split(',').any(|c| v1::CONTROLLERS.contains(&c)) {
                return Ok(Version::V1);
            }
        }
    }
    Err(CgroupError::NoHierarchy(mount_root.to_path_buf()))
}

/// What `pids.max` gets for `linux.resources.pids.limit`: runc's reading, where 0 leaves the
/// value as it is (an update carries every field) and a negative limit is none.
fn pids_max(limit: i64) -> Option<String> {
    match limit {
        0 => None,
        l if l < 0 => Some("max".to_string()),
        l => Some(l.to_string()),
    }
}

/// A `cgroupsPath` as the absolute path it names below each hierarchy's root (see
/// [`resolve_path`]): what the container's state records.
pub fn absolute_path(path: &str) -> Result<String, CgroupError> {
    Ok(format!("/{}", resolve_path(path)?.join("/")))
}

/// Normalises a `cgroupsPath` into its components below the hierarchy root. systemd's form,
/// `slice:prefix:name` (what containerd's CRI passes when kubelet's cgroup driver is systemd,
/// and podman's with systemd as its cgroup manager), names the cgroup systemd would make for
/// it, `/<the slice's path>/<prefix>-<name>.scope`; strata makes that directory itself.
fn resolve_path(path: &str) -> Result<Vec<String>, CgroupError> {
    let invalid = |reason| CgroupError::InvalidPath { path: path.to_string(), reason };
    if !path.starts_with('/') && path.matches(':').count() == 2 {
        let systemd = systemd_path(path).map_err(invalid)?;
        return resolve_path(&systemd);
    }
    let mut components = Vec::new();
    if !path.starts_with('/') {
        components.push(DEFAULT_PARENT.to_string());
    }
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(invalid("must not contain \"..\"")),
            c if c.contains('\0') => return Err(invalid("must not contain NUL")),
            c => components.push(c.to_string()),
        }
    }
    if path.trim_matches('/').is_empty() || components.is_empty() {
        return Err(invalid("names the root cgroup"));
    }
    Ok(components)
}

/// `slice:prefix:name` as the cgroupfs path of systemd's unit: the slice expanded into its
/// parents (`a-b.slice` is `/a.slice/a-b.slice`; empty is `system.slice`, `-.slice` the root),
/// then `prefix-name.scope` (a name that is itself a `.slice` is used as it is). runc's rules.
fn systemd_path(path: &str) -> Result<String, &'static str> {
    const SUFFIX: &str = ".slice";
    let mut parts = path.splitn(3, ':');
    let (slice, prefix, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let slice = if slice.is_empty() { "system.slice" } else { slice };
    if name.is_empty() || name.contains('/') || prefix.contains('/') {
        return Err("systemd's form slice:prefix:name needs a name, and no '/'");
    }
    let Some(stem) = slice.strip_suffix(SUFFIX).filter(|s| !s.is_empty() && !s.contains('/')) else {
        return Err("systemd's form slice:prefix:name needs a slice named NAME.slice");
    };
    let mut expanded = String::new();
    if stem != "-" {
        let mut unit_prefix = String::new();
        for component in stem.split('-') {
            if component.is_empty() {
                return Err("a slice name has no empty '-'-separated parts");
            }
            expanded.push_str(&format!("/{unit_prefix}{component}{SUFFIX}"));
            unit_prefix.push_str(component);
            unit_prefix.push('-');
        }
    }
    let unit = match (name.ends_with(SUFFIX), prefix.is_empty()) {
        (true, _) => name.to_string(),
        (false, true) => format!("{name}.scope"),
        (false, false) => format!("{prefix}-{name}.scope"),
    };
    Ok(format!("{expanded}/{unit}"))
}

/// What is mounted under a mount root: the unified hierarchy, or v1's controller hierarchies.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    V1(Vec<v1::Mount>),
    V2,
}

/// The layout under `mount_root`, found once per process and reused while the mount root looks
/// the same. A container's run looks its cgroup up several times (create, undo, state, stats,
/// release), and on a v1 host each look is a directory scan with a readlink and a stat per
/// linked controller (~14 system calls). The layout depends only on the root's entries (names,
/// link targets), and adding or removing one changes the root's stamp: its size on tmpfs (where
/// v1 hierarchies live), its link count for a directory, its times (kept by the kernel at a
/// clock tick's resolution, so a link made within the same tick as the root's last change
/// would be seen by the next process only).
fn layout(mount_root: &Path) -> Result<Layout, CgroupError> {
    type Seen = Vec<(PathBuf, Stamp, Layout)>;
    static SEEN: Mutex<Seen> = Mutex::new(Vec::new());
    let stamp = Stamp::of(mount_root);
    let seen = |list: &Seen| list.iter().find(|(root, s, _)| root == mount_root && Some(s) == stamp.as_ref()).cloned();
    if let Some((_, _, layout)) = seen(&SEEN.lock().unwrap_or_else(|e| e.into_inner())) {
        return Ok(layout);
    }
    #[cfg(test)]
    SCANNED.lock().unwrap().push(mount_root.to_path_buf());
    let layout = match detect_version(mount_root)? {
        Version::V1 => Layout::V1(v1::discover(mount_root)?),
        Version::V2 => Layout::V2,
    };
    if let Some(stamp) = stamp {
        let mut list = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|(root, _, _)| root != mount_root);
        list.push((mount_root.to_path_buf(), stamp, layout.clone()));
    }
    Ok(layout)
}

/// The mount roots `layout` scanned, in order.
#[cfg(test)]
static SCANNED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// What changes when an entry appears under or leaves a mount root.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    nlink: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(dir: &Path) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(dir).ok()?;
        Some(Stamp {
            dev: md.dev(),
            ino: md.ino(),
            nlink: md.nlink(),
            size: md.size(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        })
    }
}

impl Cgroup {
    /// Detects the hierarchy under `mount_root` (normally "/sys/fs/cgroup") and resolves `path`
    /// ("/strata/<id>"; a relative path is placed under "/strata"; ".." is refused).
    /// Touches nothing: `create` makes the directories.
    pub fn new(mount_root: &Path, path: &str) -> Result<Cgroup, CgroupError> {
        let components = resolve_path(path)?;
        let backend = match layout(mount_root)? {
            Layout::V1(mounts) => Backend::V1(v1::V1::new(&mounts, &components)),
            Layout::V2 => Backend::V2(v2::V2::new(mount_root, &components)),
        };
        Ok(Cgroup { path: format!("/{}", components.join("/")), backend, created: Mutex::new(Vec::new()) })
    }

    pub fn version(&self) -> Version {
        match self.backend {
            Backend::V1(_) => Version::V1,
            Backend::V2(_) => Version::V2,
        }
    }

    /// The cgroup path below the hierarchy root, normalised ("/strata/<id>").
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The container's directory in every hierarchy (one for v2).
    pub fn dirs(&self) -> Vec<PathBuf> {
        match &self.backend {
            Backend::V1(v1) => v1.hierarchies().iter().map(|h| h.dir.clone()).collect(),
            Backend::V2(v2) => vec![v2.dir().to_path_buf()],
        }
    }

    /// `mkdir -p` in every hierarchy. v1: initialises empty cpusets from their parent; v2: enables
    /// the available controllers in each ancestor's `cgroup.subtree_control`.
    pub fn create(&self) -> Result<(), CgroupError> {
        let mut created = self.created.lock().unwrap_or_else(|e| e.into_inner());
        match &self.backend {
            Backend::V1(v1) => v1.create(&mut created),
            Backend::V2(v2) => v2.create(&mut created),
        }
    }

    /// Writes `linux.resources`; also what `update` calls with the new values.
    pub fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        match &self.backend {
            Backend::V1(v1) => v1.apply(resources),
            Backend::V2(v2) => v2.apply(resources),
        }
    }

    /// Moves `pid` (a whole process) into the cgroup, in every hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        match &self.backend {
            Backend::V1(v1) => v1.add_process(pid),
            Backend::V2(v2) => v2.add_process(pid),
        }
    }

    /// How a process about to be cloned enters this cgroup without the RCU grace period a
    /// `cgroup.procs` write waits for (5–12 ms per container on an idle 2-core VM): v2 clones
    /// it straight in (`clone3(CLONE_INTO_CGROUP)` on `clone_into`); on v1 the single-threaded
    /// child moves *itself* by writing `0` to each `tasks` file (one thread: no global
    /// threadgroup lock, ~0.2 ms) — unless `child_may_self_attach` is false (a child in a user
    /// namespace may not write host cgroup files).
    /// On a hybrid host both: cloned into the unified hierarchy, moving itself in the others.
    pub fn fast_entry(&self, child_may_self_attach: bool) -> Result<FastEntry, CgroupError> {
        let open = |dir: &Path| {
            std::fs::File::open(dir)
                .map(std::os::fd::OwnedFd::from)
                .map_err(|err| CgroupError::Read { file: dir.to_path_buf(), err })
        };
        Ok(match &self.backend {
            Backend::V1(v1) => {
                let tasks = v1.tasks_files();
                FastEntry {
                    clone_into: v1.unified_dir().map(open).transpose()?,
                    v1_left_to_runtime: !child_may_self_attach && !tasks.is_empty(),
                    self_attach: if child_may_self_attach { tasks } else { Vec::new() },
                }
            }
            Backend::V2(v2) => {
                FastEntry { clone_into: Some(open(v2.dir())?), self_attach: Vec::new(), v1_left_to_runtime: false }
            }
        })
    }

    /// The processes in the cgroup and its descendants (`cgroup.procs`).
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        match &self.backend {
            Backend::V1(v1) => v1.pids(),
            Backend::V2(v2) => v2.pids(),
        }
    }

    /// Freezes every process and returns once the kernel reports the cgroup frozen.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        match &self.backend {
            Backend::V1(v1) => v1.set_frozen(true),
            Backend::V2(v2) => v2.set_frozen(true),
        }
    }

    pub fn thaw(&self) -> Result<(), CgroupError> {
        match &self.backend {
            Backend::V1(v1) => v1.set_frozen(false),
            Backend::V2(v2) => v2.set_frozen(false),
        }
    }

    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        match &self.backend {
            Backend::V1(v1) => v1.is_frozen(),
            Backend::V2(v2) => v2.is_frozen(),
        }
    }

    pub fn stats(&self) -> Result<Stats, CgroupError> {
        match &self.backend {
            Backend::V1(v1) => v1.stats(),
            Backend::V2(v2) => v2.stats(),
        }
    }

    /// Whether the OOM killer has killed a process in this cgroup.
    pub fn oom_killed(&self) -> Result<bool, CgroupError> {
        match &self.backend {
            Backend::V1(v1) => v1.oom_killed(),
            Backend::V2(v2) => v2.oom_killed(),
        }
    }

    /// Sends `signal` to every process in the cgroup. v2 SIGKILL uses `cgroup.kill` where the kernel
    /// has it; otherwise the cgroup is frozen while the pids are read and signalled, so a process
    /// forking meanwhile cannot escape, then thawed (unless it was frozen before).
    pub fn kill_all(&self, signal: Signal) -> Result<(), CgroupError> {
        if let Backend::V2(v2) = &self.backend {
            if signal == Signal::KILL && v2.kill_via_cgroup_kill()? {
                return Ok(());
            }
        }
        let was_frozen = self.is_frozen().unwrap_or(false);
        let froze = !was_frozen && self.freeze().map_err(|e| tracing::warn!("{e}; signalling unfrozen")).is_ok();
        let result = self.signal_each(signal);
        if froze {
            self.thaw()?;
        }
        result
    }

    fn signal_each(&self, signal: Signal) -> Result<(), CgroupError> {
        for pid in self.pids()? {
            let Some(target) = rustix::process::Pid::from_raw(pid) else { continue };
            match rustix::process::kill_process(target, signal) {
                Ok(()) | Err(rustix::io::Errno::SRCH) => {}
                Err(e) => {
                    return Err(CgroupError::Signal { pid, signal: signal.as_raw(), err: e.into() });
                }
            }
        }
        Ok(())
    }

    /// Removes the leaf in every hierarchy and the directories `create` made, leaf first. Missing
    /// directories are fine; a leaf that still holds processes is `CgroupError::Busy`. An ancestor
    /// that other cgroups still use is left in place.
    pub fn delete(&self) -> Result<(), CgroupError> {
        let mut created = self.created.lock().unwrap_or_else(|e| e.into_inner());
        let mut first_error = None;
        for leaf in self.dirs() {
            if let Err(e) = remove_dir(&leaf) {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            // Keep the list: a later delete, once the processes are gone, removes them all.
            return Err(e);
        }
        // Deepest first, so a parent is empty by the time its turn comes. One that other cgroups
        // still use stays (and is forgotten: it is theirs now too).
        created.sort_by_key(|dir| std::cmp::Reverse(dir.components().count()));
        for dir in std::mem::take(&mut *created) {
            match remove_dir(&dir) {
                Ok(()) | Err(CgroupError::Busy { .. }) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                    created.push(dir);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The pids in `dir`'s `cgroup.procs` and in every cgroup below it.
fn pids_recursive(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let mut pids = file::read_pids(&dir.join("cgroup.procs"))?;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => return Err(CgroupError::Read { file: dir.to_path_buf(), err }),
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            pids.extend(pids_recursive(&entry.path())?);
        }
    }
    Ok(pids)
}

/// Checks a hugepage size ("2MB", "1GB") before it becomes part of a file name.
fn hugepage_size(page_size: &str) -> Result<&str, CgroupError> {
    if page_size.is_empty() || !page_size.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(CgroupError::InvalidValue {
            field: "hugepageLimits.pageSize",
            reason: format!("{page_size:?} is not a page size like \"2MB\""),
        });
    }
    Ok(page_size)
}

fn unsupported_hugepage(page_size: &str) -> CgroupError {
    CgroupError::Unsupported(format!("hugepage size {page_size} is not supported by this kernel"))
}

/// `rdma.max` lines ("mlx4_0 hca_handle=2 hca_object=2000"), one per device, in device order.
fn rdma_lines(rdma: &std::collections::HashMap<String, oci_spec::runtime::LinuxRdma>) -> Vec<String> {
    let mut devices: Vec<_> = rdma.iter().collect();
    devices.sort_by(|a, b| a.0.cmp(b.0));
    devices
        .into_iter()
        .filter_map(|(device, limits)| {
            let mut line = device.clone();
            if let Some(handles) = limits.hca_handles() {
                line.push_str(&format!(" hca_handle={handles}"));
            }
            if let Some(objects) = limits.hca_objects() {
                line.push_str(&format!(" hca_object={objects}"));
            }
            (line.len() > device.len()).then_some(line)
        })
        .collect()
}

/// `rmdir`, tolerating a directory that is already gone.
fn remove_dir(dir: &Path) -> Result<(), CgroupError> {
    match file::rmdir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Err(CgroupError::Busy { dir: dir.to_path_buf() }),
        Err(err) => Err(CgroupError::Remove { dir: dir.to_path_buf(), err }),
    }
}

/// `mkdir` one level; `Ok(true)` if this call made it.
fn make_dir(dir: &Path) -> Result<bool, CgroupError> {
    match file::mkdir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(err) => Err(CgroupError::Create { dir: dir.to_path_buf(), err }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn io_bytes_are_summed_over_devices() {
        let v1 = "8:0 Read 4096\n8:0 Write 512\n8:0 Sync 0\n8:16 Read 1000\n8:16 Write 24\nTotal 5632\n";
        assert_eq!(IoStats::from_v1(v1), IoStats { read_bytes: 5096, write_bytes: 536 });
        let v2 = "8:0 rbytes=4096 wbytes=512 rios=1 wios=1 dbytes=0 dios=0\n8:16 rbytes=1000 wbytes=24\n";
        assert_eq!(IoStats::from_v2(v2), IoStats { read_bytes: 5096, write_bytes: 536 });
        assert_eq!(IoStats::from_v1(""), IoStats::default());
    }

    #[test]
    fn the_working_set_leaves_out_inactive_file_cache() {
        let mut memory = MemoryStats { usage: 10 << 20, ..Default::default() };
        assert_eq!(memory.working_set(), 10 << 20, "nothing to take off");
        memory.stat = file::keyed_values("cache 9437184\ninactive_file 1\ntotal_inactive_file 8388608\n");
        assert_eq!(memory.working_set(), 2 << 20, "v1: the hierarchy's total");
        memory.stat = file::keyed_values("anon 1048576\ninactive_file 4194304\n");
        assert_eq!(memory.working_set(), 6 << 20, "v2");
        memory.stat = file::keyed_values("inactive_file 20971520");
        assert_eq!(memory.working_set(), 0, "never below nothing");
    }

    #[test]
    fn paths_resolve_from_the_hierarchy_root() {
        assert_eq!(resolve_path("/strata/abc").unwrap(), ["strata", "abc"]);
        assert_eq!(resolve_path("abc").unwrap(), ["strata", "abc"]);
        assert_eq!(resolve_path("pod/abc/").unwrap(), ["strata", "pod", "abc"]);
        assert_eq!(resolve_path("//a/./b").unwrap(), ["a", "b"]);
        // systemd's form, as CRI passes it under kubelet's systemd driver.
        let pod = "kubepods-besteffort-pod12.slice:cri-containerd:abc";
        let want = ["kubepods.slice", "kubepods-besteffort.slice", "kubepods-besteffort-pod12.slice"];
        assert_eq!(resolve_path(pod).unwrap(), [&want[..], &["cri-containerd-abc.scope"]].concat());
        assert_eq!(resolve_path("machine.slice:libpod:x").unwrap(), ["machine.slice", "libpod-x.scope"]);
        assert_eq!(resolve_path(":p:x").unwrap(), ["system.slice", "p-x.scope"]);
        assert_eq!(resolve_path("-.slice::x").unwrap(), ["x.scope"]);
        assert_eq!(resolve_path("a.slice::b.slice").unwrap(), ["a.slice", "b.slice"]);
        for bad in [
            "",
            "/",
            "//",
            "/a/../b",
            "..",
            "a/..",
            "a:b:",
            "noslice:p:x",
            "a--b.slice:p:x",
            ".slice:p:x",
            "a.slice:p:../x",
        ] {
            let err = resolve_path(bad).unwrap_err();
            assert!(matches!(err, CgroupError::InvalidPath { .. }), "{bad:?} gave {err}");
        }
    }

    #[test]
    fn errors_are_one_line_with_the_kernels_words() {
        let err = CgroupError::Write {
            file: PathBuf::from("/sys/fs/cgroup/memory/strata/x/memory.limit_in_bytes"),
            value: "abc".into(),
            err: io::Error::from_raw_os_error(libc::EINVAL),
        };
        assert_eq!(
            err.to_string(),
            "cgroup: writing \"abc\" to /sys/fs/cgroup/memory/strata/x/memory.limit_in_bytes: Invalid argument"
        );
    }

    #[test]
    fn a_mount_roots_layout_is_found_once_and_again_when_a_hierarchy_appears() {
        let root = tempfile::tempdir().unwrap();
        let scans = || SCANNED.lock().unwrap().iter().filter(|r| r.as_path() == root.path()).count();
        let controllers = || match layout(root.path()).unwrap() {
            Layout::V1(mounts) => mounts.into_iter().flat_map(|m| m.controllers).collect::<Vec<_>>(),
            Layout::V2 => panic!("a v1 root"),
        };
        std::fs::create_dir(root.path().join("memory")).unwrap();
        assert_eq!(controllers(), ["memory"]);
        // A container's cgroup made inside a hierarchy leaves the root as it was.
        std::fs::create_dir(root.path().join("memory/strata")).unwrap();
        assert_eq!(controllers(), ["memory"]);
        assert_eq!(scans(), 1, "the unchanged root was scanned again");

        std::fs::create_dir(root.path().join("pids")).unwrap();
        assert_eq!(controllers(), ["memory", "pids"], "a hierarchy mounted since is seen");
        assert_eq!(scans(), 2);
        let cgroup = Cgroup::new(root.path(), "/strata/x").unwrap();
        assert_eq!(cgroup.dirs(), [root.path().join("memory/strata/x"), root.path().join("pids/strata/x")]);
    }

    #[test]
    fn detects_v2_by_cgroup_controllers_and_v1_by_controller_dirs() {
        let v2 = tempfile::tempdir().unwrap();
        std::fs::write(v2.path().join("cgroup.controllers"), "cpu memory\n").unwrap();
        assert_eq!(detect_version(v2.path()).unwrap(), Version::V2);

        let hybrid = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(hybrid.path().join("memory")).unwrap();
        std::fs::create_dir_all(hybrid.path().join("unified")).unwrap();
        std::fs::write(hybrid.path().join("unified/cgroup.controllers"), "hugetlb\n").unwrap();
        assert_eq!(detect_version(hybrid.path()).unwrap(), Version::V1);

        let comounted = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(comounted.path().join("cpu,cpuacct")).unwrap();
        assert_eq!(detect_version(comounted.path()).unwrap(), Version::V1);

        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(detect_version(empty.path()), Err(CgroupError::NoHierarchy(_))));
    }
}
