//! cgroup v1: one hierarchy per controller (co-mounted ones share a directory). The container gets
//! the same path in each; every write goes to the file of the controller that owns it. Like runc,
//! the container also joins the hierarchies that hold no controller of ours but say where a
//! process belongs: systemd's named one (`name=systemd`) and, on a hybrid host, the cgroup2
//! mount at `unified/` (systemd tracks units there). Left in the caller's, a container would
//! share its caller's fate (a session's scope stopped, its processes killed).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxNetwork, LinuxResources};

use super::{devices, file, make_dir, CgroupError, CpuStats, IoStats, MemoryStats, PidsStats, Stats, FREEZE_TIMEOUT};

/// The controllers whose hierarchies a container joins (and systemd's named hierarchy, and a
/// hybrid host's `unified` one: see [`discover`]).
pub(crate) const CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
    "rdma",
    "misc",
];

/// v1 reports "unlimited" as the page counter's maximum (and a little below, page-aligned).
const UNLIMITED_FLOOR: u64 = 1 << 62;

#[derive(Debug)]
pub(crate) struct Hierarchy {
    /// Controllers mounted here ("cpu", "cpuacct" for a co-mount; "name=systemd"; none for
    /// the unified one).
    pub controllers: Vec<String>,
    /// The hierarchy's mount point.
    pub mount: PathBuf,
    /// The container's directory in it.
    pub dir: PathBuf,
    pub kind: Kind,
}

impl Hierarchy {
    /// Whether the container may lack its directory here: strata before 2026-12-01 joined
    /// controller hierarchies only, and an `exec` into such a container joins what it has.
    fn may_be_missing(&self) -> bool {
        self.kind != Kind::Controllers && !self.dir.is_dir()
    }
}

/// What a hierarchy is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// One or more controllers (cpu, memory, ...).
    Controllers,
    /// systemd's named hierarchy (`name=systemd`): membership only.
    Systemd,
    /// A hybrid host's cgroup2 hierarchy: membership only (controllers there are not ours to
    /// use), joined through `cgroup.procs` or a clone into it; it has no `tasks` file.
    Unified,
}

#[derive(Debug)]
pub(crate) struct V1 {
    hierarchies: Vec<Hierarchy>,
}

/// A hierarchy mounted under the mount root, before any container is placed in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// Controllers mounted here ("cpu", "cpuacct" for a co-mount; see [`Hierarchy`]).
    pub controllers: Vec<String>,
    /// Where the container's path starts: the name under the mount root that read_dir met first.
    pub mount: PathBuf,
    pub kind: Kind,
}

/// systemd's named hierarchy, as systemd (and runc) mount it under the mount root.
const SYSTEMD_HIERARCHY: &str = "systemd";
/// A hybrid host's cgroup2 mount under the mount root.
pub(crate) const UNIFIED_HIERARCHY: &str = "unified";

/// Finds the controller hierarchies under `mount_root`: directories named after controllers,
/// or comma-joined co-mounts; symlinks (`cpu -> cpu,cpuacct`) collapse into their target.
/// Also systemd's named hierarchy and the unified one where mounted (a hierarchy's own files
/// tell them from a plain directory of that name).
pub(crate) fn discover(mount_root: &Path) -> Result<Vec<Mount>, CgroupError> {
    let entries =
        std::fs::read_dir(mount_root).map_err(|err| CgroupError::Read { file: mount_root.to_path_buf(), err })?;
    let mut by_target: HashMap<PathBuf, Mount> = HashMap::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let controllers: Vec<String> =
            name.split(',').filter(|c| CONTROLLERS.contains(c)).map(str::to_string).collect();
        if controllers.is_empty() {
            continue;
        }
        // A hierarchy is a directory; a link names one too ("cpu" -> "cpu,cpuacct", as
        // systemd makes them). Only the link is read (no realpath, a readlink per path
        // component).
        let target = match entry.file_type() {
            Ok(t) if t.is_dir() => entry.path(),
            Ok(t) if t.is_symlink() => match std::fs::read_link(entry.path()) {
                Ok(link) if mount_root.join(&link).is_dir() => mount_root.join(link),
                _ => continue,
            },
            _ => continue,
        };
        let found = by_target.entry(target).or_insert_with(|| Mount {
            controllers: Vec::new(),
            mount: entry.path(),
            kind: Kind::Controllers,
        });
        for c in controllers {
            if !found.controllers.contains(&c) {
                found.controllers.push(c);
            }
        }
    }
    if by_target.is_empty() {
        return Err(CgroupError::NoHierarchy(mount_root.to_path_buf()));
    }
    let mut mounts: Vec<Mount> = by_target.into_values().collect();
    let systemd = mount_root.join(SYSTEMD_HIERARCHY);
    if systemd.join("tasks").is_file() {
        mounts.push(Mount { controllers: vec!["name=systemd".to_string()], mount: systemd, kind: Kind::Systemd });
    }
    let unified = mount_root.join(UNIFIED_HIERARCHY);
    if unified.join("cgroup.controllers").is_file() {
        mounts.push(Mount { controllers: Vec::new(), mount: unified, kind: Kind::Unified });
    }
    mounts.sort_by(|a, b| a.mount.cmp(&b.mount));
    Ok(mounts)
}

impl V1 {
    /// The container at `components` below the root of each of `mounts` ([`discover`]).
    pub fn new(mounts: &[Mount], components: &[String]) -> V1 {
        let hierarchies = mounts
            .iter()
            .map(|m| Hierarchy {
                controllers: m.controllers.clone(),
                mount: m.mount.clone(),
                dir: components.iter().fold(m.mount.clone(), |dir, c| dir.join(c)),
                kind: m.kind,
            })
            .collect();
        V1 { hierarchies }
    }

    pub fn hierarchies(&self) -> &[Hierarchy] {
        &self.hierarchies
    }

    /// The container's directory in `controller`'s hierarchy, if that controller is mounted.
    fn dir(&self, controller: &str) -> Option<&Path> {
        self.hierarchies.iter().find(|h| h.controllers.iter().any(|c| c == controller)).map(|h| h.dir.as_path())
    }

    fn require(&self, controller: &'static str, needed_for: &'static str) -> Result<&Path, CgroupError> {
        self.dir(controller).ok_or(CgroupError::MissingController { controller, needed_for })
    }

    pub fn create(&self, created: &mut Vec<PathBuf>) -> Result<(), CgroupError> {
        for h in &self.hierarchies {
            let is_cpuset = h.controllers.iter().any(|c| c == "cpuset");
            let mut dir = h.mount.clone();
            for component in h.dir.strip_prefix(&h.mount).unwrap_or(&h.dir).components() {
                dir.push(component);
                if make_dir(&dir)? {
                    created.push(dir.clone());
                }
                // A task cannot join a cpuset whose cpus or mems are empty, and a new directory
                // starts empty; so does an ancestor nobody initialised. Copy from the parent, top down.
                if is_cpuset {
                    init_cpuset(&dir)?;
                }
            }
        }
        Ok(())
    }

    pub fn apply(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        if let Some(memory) = r.memory() {
            apply_memory(self.require("memory", "linux.resources.memory")?, memory)?;
        }
        if let Some(cpu) = r.cpu() {
            self.apply_cpu(cpu)?;
        }
        if let Some(value) = r.pids().and_then(|p| super::pids_max(p.limit())) {
            let dir = self.require("pids", "linux.resources.pids")?;
            file::write(&dir.join("pids.max"), &value)?;
        }
        if let Some(rules) = r.devices() {
            if !rules.is_empty() {
                let dir = self.require("devices", "linux.resources.devices")?;
                for rule in rules {
                    for (name, line) in devices::v1_writes(rule)? {
                        file::write(&dir.join(name), &line)?;
                    }
                }
            }
        }
        if let Some(blkio) = r.block_io() {
            match self.dir("blkio") {
                Some(dir) => apply_blkio(dir, blkio)?,
                None => tracing::warn!("cgroup: no blkio controller; ignoring linux.resources.blockIO"),
            }
        }
        if let Some(limits) = r.hugepage_limits() {
            if !limits.is_empty() {
                let dir = self.require("hugetlb", "linux.resources.hugepageLimits")?;
                for limit in limits {
                    let size = super::hugepage_size(limit.page_size())?;
                    let value = limit.limit().to_string();
                    let base = dir.join(format!("hugetlb.{size}.limit_in_bytes"));
                    if !base.exists() {
                        return Err(super::unsupported_hugepage(limit.page_size()));
                    }
                    let rsvd = dir.join(format!("hugetlb.{size}.rsvd.limit_in_bytes"));
                    if rsvd.exists() {
                        file::write(&rsvd, &value)?;
                    }
                    file::write(&base, &value)?;
                }
            }
        }
        if let Some(network) = r.network() {
            self.apply_network(network)?;
        }
        if let Some(rdma) = r.rdma() {
            if !rdma.is_empty() {
                let dir = self.require("rdma", "linux.resources.rdma")?;
                for line in super::rdma_lines(rdma) {
                    file::write(&dir.join("rdma.max"), &line)?;
                }
            }
        }
        if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(CgroupError::Unsupported(
                "linux.resources.unified needs cgroup v2; this host uses cgroup v1".to_string(),
            ));
        }
        Ok(())
    }

    fn apply_cpu(&self, cpu: &LinuxCpu) -> Result<(), CgroupError> {
        let wants_cpu = cpu.shares().is_some_and(|s| s != 0)
            || cpu.quota().is_some_and(|q| q != 0)
            || cpu.period().is_some_and(|p| p != 0)
            || cpu.burst().is_some()
            || cpu.idle().is_some()
            || cpu.realtime_runtime().is_some_and(|r| r != 0)
            || cpu.realtime_period().is_some_and(|p| p != 0);
        if wants_cpu {
            apply_cpu(self.require("cpu", "linux.resources.cpu")?, cpu)?;
        }
        let cpus = cpu.cpus().as_deref().filter(|s| !s.is_empty());
        let mems = cpu.mems().as_deref().filter(|s| !s.is_empty());
        if cpus.is_some() || mems.is_some() {
            let dir = self.require("cpuset", "linux.resources.cpu.cpus/mems")?;
            if let Some(cpus) = cpus {
                file::write(&dir.join("cpuset.cpus"), cpus)?;
            }
            if let Some(mems) = mems {
                file::write(&dir.join("cpuset.mems"), mems)?;
            }
        }
        Ok(())
    }

    fn apply_network(&self, network: &LinuxNetwork) -> Result<(), CgroupError> {
        if let Some(class_id) = network.class_id() {
            match self.dir("net_cls") {
                Some(dir) => file::write(&dir.join("net_cls.classid"), &class_id.to_string())?,
                None => tracing::warn!("cgroup: no net_cls controller; ignoring linux.resources.network.classID"),
            }
        }
        if let Some(priorities) = network.priorities() {
            if !priorities.is_empty() {
                match self.dir("net_prio") {
                    Some(dir) => {
                        for p in priorities {
                            file::write(&dir.join("net_prio.ifpriomap"), &format!("{} {}", p.name(), p.priority()))?;
                        }
                    }
                    None => {
                        tracing::warn!("cgroup: no net_prio controller; ignoring linux.resources.network.priorities")
                    }
                }
            }
        }
        Ok(())
    }

    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        for h in self.hierarchies.iter().filter(|h| !h.may_be_missing()) {
            file::write(&h.dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Each v1 hierarchy's `tasks` file (see [`super::Cgroup::fast_entry`]).
    pub fn tasks_files(&self) -> Vec<PathBuf> {
        let joined = self.hierarchies.iter().filter(|h| h.kind != Kind::Unified && !h.may_be_missing());
        joined.map(|h| h.dir.join("tasks")).collect()
    }

    /// The container's directory in a hybrid host's unified hierarchy, if there is one.
    pub fn unified_dir(&self) -> Option<&Path> {
        self.hierarchies.iter().find(|h| h.kind == Kind::Unified && !h.may_be_missing()).map(|h| h.dir.as_path())
    }

    /// Every process is in every hierarchy; read the one most likely to be complete.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let dir = ["pids", "freezer", "memory", "cpu"]
            .iter()
            .find_map(|c| self.dir(c))
            .unwrap_or(self.hierarchies[0].dir.as_path());
        super::pids_recursive(dir)
    }

    /// Writes `freezer.state` and re-reads it until the kernel reports the state: freezing is
    /// asynchronous in v1 (FREEZING first), and the file offers no notification to wait on.
    pub fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        let dir = self.require("freezer", if frozen { "freeze" } else { "thaw" })?;
        let state_file = dir.join("freezer.state");
        let state = if frozen { "FROZEN" } else { "THAWED" };
        let deadline = Instant::now() + FREEZE_TIMEOUT;
        for attempt in 0u32.. {
            file::write(&state_file, state)?;
            if file::read(&state_file)? == state {
                return Ok(());
            }
            if Instant::now() > deadline {
                if frozen {
                    // Don't leave the container half frozen.
                    let _ = file::write(&state_file, "THAWED");
                }
                return Err(CgroupError::FreezeTimeout { file: state_file, state });
            }
            if attempt % 32 == 31 {
                std::thread::sleep(std::time::Duration::from_micros(200));
            } else {
                std::thread::yield_now();
            }
        }
        unreachable!("the freeze loop returns")
    }

    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        match self.dir("freezer") {
            Some(dir) => Ok(file::read(&dir.join("freezer.state"))? == "FROZEN"),
            None => Ok(false),
        }
    }

    pub fn stats(&self) -> Result<Stats, CgroupError> {
        let mut stats = Stats::default();
        if let Some(dir) = self.dir("memory") {
            let usage = file::read_u64(&dir.join("memory.usage_in_bytes"))?;
            let memsw_usage = file::read_u64_optional(&dir.join("memory.memsw.usage_in_bytes"))?;
            stats.memory = MemoryStats {
                usage,
                limit: Some(file::read_u64(&dir.join("memory.limit_in_bytes"))?).filter(|&l| l < UNLIMITED_FLOOR),
                max_usage: file::read_u64_optional(&dir.join("memory.max_usage_in_bytes"))?,
                failcnt: file::read_u64_optional(&dir.join("memory.failcnt"))?.unwrap_or(0),
                swap_usage: memsw_usage.map(|total| total.saturating_sub(usage)),
                stat: file::read_optional(&dir.join("memory.stat"))?
                    .map(|t| file::keyed_values(&t))
                    .unwrap_or_default(),
            };
            if let Some(oom) = file::read_optional(&dir.join("memory.oom_control"))? {
                stats.oom_kill_count = file::keyed_value(&oom, "oom_kill").unwrap_or(0);
            }
        }
        if let Some(dir) = self.dir("cpuacct") {
            stats.cpu.usage_ns = file::read_u64(&dir.join("cpuacct.usage"))?;
            if let Some(per_cpu) = file::read_optional(&dir.join("cpuacct.usage_percpu"))? {
                stats.cpu.per_cpu_ns = file::u64_list(&per_cpu);
            }
            let user = file::read_u64_optional(&dir.join("cpuacct.usage_user"))?;
            let system = file::read_u64_optional(&dir.join("cpuacct.usage_sys"))?;
            if let (Some(user), Some(system)) = (user, system) {
                (stats.cpu.user_ns, stats.cpu.system_ns) = (user, system);
            } else if let Some(stat) = file::read_optional(&dir.join("cpuacct.stat"))? {
                // USER_HZ ticks; the kernel's USER_HZ is 100 on every architecture we run on.
                let tick_ns = 1_000_000_000 / 100;
                stats.cpu.user_ns = file::keyed_value(&stat, "user").unwrap_or(0) * tick_ns;
                stats.cpu.system_ns = file::keyed_value(&stat, "system").unwrap_or(0) * tick_ns;
            }
        }
        if let Some(dir) = self.dir("cpu") {
            if let Some(stat) = file::read_optional(&dir.join("cpu.stat"))? {
                stats.cpu = CpuStats {
                    periods: file::keyed_value(&stat, "nr_periods").unwrap_or(0),
                    throttled_periods: file::keyed_value(&stat, "nr_throttled").unwrap_or(0),
                    throttled_ns: file::keyed_value(&stat, "throttled_time").unwrap_or(0),
                    ..stats.cpu
                };
            }
        }
        if let Some(dir) = self.dir("pids") {
            stats.pids = PidsStats {
                current: file::read_u64(&dir.join("pids.current"))?,
                limit: file::read_u64_optional(&dir.join("pids.max"))?,
            };
        }
        if let Some(dir) = self.dir("blkio") {
            if let Some(text) = file::read_optional(&dir.join("blkio.throttle.io_service_bytes_recursive"))? {
                stats.io = IoStats::from_v1(&text);
            }
        }
        Ok(stats)
    }

    /// `oom_kill` in `memory.oom_control` (Linux 4.13+); before that only `memory.failcnt` hints.
    pub fn oom_killed(&self) -> Result<bool, CgroupError> {
        let Some(dir) = self.dir("memory") else { return Ok(false) };
        let oom_control = file::read(&dir.join("memory.oom_control"))?;
        match file::keyed_value(&oom_control, "oom_kill") {
            Some(count) => Ok(count > 0),
            None => Ok(file::read_u64(&dir.join("memory.failcnt"))? > 0),
        }
    }
}

/// Fills an empty `cpuset.cpus`/`cpuset.mems` from the parent directory.
fn init_cpuset(dir: &Path) -> Result<(), CgroupError> {
    let Some(parent) = dir.parent() else { return Ok(()) };
    for name in ["cpuset.cpus", "cpuset.mems"] {
        if !file::read(&dir.join(name))?.trim().is_empty() {
            continue;
        }
        let from_parent = file::read(&parent.join(name))?;
        if from_parent.trim().is_empty() {
            return Err(CgroupError::InvalidValue {
                field: "cpuset",
                reason: format!("{} is empty, so {} cannot be initialised", parent.join(name).display(), dir.display()),
            });
        }
        file::write(&dir.join(name), &from_parent)?;
    }
    Ok(())
}

fn apply_memory(dir: &Path, m: &LinuxMemory) -> Result<(), CgroupError> {
    let limit_file = dir.join("memory.limit_in_bytes");
    let memsw_file = dir.join("memory.memsw.limit_in_bytes");
    // v1's `swap` is memory+swap. 0 means unset, as in runc.
    let mut swap = m.swap().filter(|&s| s != 0);
    if swap.is_some() && !memsw_file.exists() {
        tracing::warn!("cgroup: swap accounting is off (no memory.memsw.limit_in_bytes); ignoring memory.swap");
        swap = None;
    }
    // The kernel keeps limit <= memsw at every step: raise memsw before the limit, lower it after.
    // A limit of 0 is unset, as in runc (an update passes every field).
    match (m.limit().filter(|&l| l != 0), swap) {
        (Some(limit), Some(swap)) => {
            let current_memsw = file::read_u64(&memsw_file)?;
            if unlimited_as_max(swap) >= current_memsw {
                file::write(&memsw_file, &swap.to_string())?;
                file::write(&limit_file, &limit.to_string())?;
            } else {
                file::write(&limit_file, &limit.to_string())?;
                file::write(&memsw_file, &swap.to_string())?;
            }
        }
        (Some(limit), None) => {
            // Unlimited memory with swap unset means unlimited memory+swap too.
            if limit == -1 && memsw_file.exists() {
                file::write(&memsw_file, "-1")?;
            }
            file::write(&limit_file, &limit.to_string())?;
        }
        (None, Some(swap)) => file::write(&memsw_file, &swap.to_string())?,
        (None, None) => {}
    }
    if let Some(reservation) = m.reservation().filter(|&r| r != 0) {
        file::write(&dir.join("memory.soft_limit_in_bytes"), &reservation.to_string())?;
    }
    if let Some(swappiness) = m.swappiness() {
        if swappiness > 100 {
            return Err(CgroupError::InvalidValue {
                field: "memory.swappiness",
                reason: format!("{swappiness} is outside 0-100"),
            });
        }
        file::write(&dir.join("memory.swappiness"), &swappiness.to_string())?;
    }
    if let Some(disable) = m.disable_oom_killer() {
        file::write(&dir.join("memory.oom_control"), if disable { "1" } else { "0" })?;
    }
    if m.kernel().is_some() || m.kernel_tcp().is_some() {
        tracing::debug!("cgroup: memory.kernel and memory.kernelTCP are deprecated by the kernel; ignored");
    }
    Ok(())
}

fn unlimited_as_max(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

fn apply_cpu(dir: &Path, cpu: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(shares) = cpu.shares().filter(|&s| s != 0) {
        file::write(&dir.join("cpu.shares"), &shares.to_string())?;
    }
    let quota = cpu.quota().filter(|&q| q != 0);
    let mut period_pending = None;
    if let Some(period) = cpu.period().filter(|&p| p != 0) {
        // A shorter period can be refused (EINVAL) while the old quota is still in place; then
        // write the new quota first and the period after it, as runc does.
        match file::write(&dir.join("cpu.cfs_period_us"), &period.to_string()) {
            Err(e) if quota.is_some() && e.raw_os_error() == Some(libc::EINVAL) => period_pending = Some(period),
            other => other?,
        }
    }
    if let Some(quota) = quota {
        file::write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
        if let Some(period) = period_pending {
            file::write(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
        }
    }
    write_if_supported(dir, "cpu.cfs_burst_us", cpu.burst(), "cpu.burst")?;
    write_if_supported(dir, "cpu.idle", cpu.idle(), "cpu.idle")?;
    // The runtime can only be raised once the period allows it: period first.
    if let Some(period) = cpu.realtime_period().filter(|&p| p != 0) {
        file::write(&dir.join("cpu.rt_period_us"), &period.to_string())?;
    }
    if let Some(runtime) = cpu.realtime_runtime().filter(|&r| r != 0) {
        file::write(&dir.join("cpu.rt_runtime_us"), &runtime.to_string())?;
    }
    Ok(())
}

/// Writes an optional setting whose file only newer kernels have; without the file, warns.
fn write_if_supported<T: ToString>(dir: &Path, name: &str, value: Option<T>, field: &str) -> Result<(), CgroupError> {
    let Some(value) = value else { return Ok(()) };
    let path = dir.join(name);
    if path.exists() {
        file::write(&path, &value.to_string())
    } else {
        tracing::warn!("cgroup: this kernel has no {name}; ignoring linux.resources.{field}");
        Ok(())
    }
}

fn apply_blkio(dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    // CFQ's blkio.weight is gone from current kernels; BFQ offers blkio.bfq.weight.
    let weight_file = ["blkio.weight", "blkio.bfq.weight"].iter().map(|n| dir.join(n)).find(|p| p.exists());
    if let Some(weight) = b.weight() {
        match &weight_file {
            Some(path) => file::write(path, &weight.to_string())?,
            None => tracing::warn!("cgroup: no blkio weight file; ignoring linux.resources.blockIO.weight"),
        }
    }
    write_if_supported(dir, "blkio.leaf_weight", b.leaf_weight(), "blockIO.leafWeight")?;
    if let Some(devices) = b.weight_device() {
        let device_file =
            ["blkio.weight_device", "blkio.bfq.weight_device"].iter().map(|n| dir.join(n)).find(|p| p.exists());
        for d in devices {
            if let Some(weight) = d.weight() {
                match &device_file {
                    Some(path) => file::write(path, &format!("{}:{} {weight}", d.major(), d.minor()))?,
                    None => tracing::warn!("cgroup: no blkio weight_device file; ignoring blockIO.weightDevice"),
                }
            }
            if let Some(leaf) = d.leaf_weight() {
                let line = format!("{}:{} {leaf}", d.major(), d.minor());
                write_if_supported(dir, "blkio.leaf_weight_device", Some(line), "blockIO.weightDevice.leafWeight")?;
            }
        }
    }
    let throttles = [
        ("blkio.throttle.read_bps_device", b.throttle_read_bps_device()),
        ("blkio.throttle.write_bps_device", b.throttle_write_bps_device()),
        ("blkio.throttle.read_iops_device", b.throttle_read_iops_device()),
        ("blkio.throttle.write_iops_device", b.throttle_write_iops_device()),
    ];
    for (name, devices) in throttles {
        for d in devices.iter().flatten() {
            let line = format!("{}:{} {}", d.major(), d.minor(), d.rate());
            write_if_supported(dir, name, Some(line), "blockIO throttling")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::fake::{get, put, FakeRoot};
    use super::super::file::recorder;
    use super::super::{Cgroup, CgroupError, Version};
    use super::*;

    fn resources(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    fn created(root: &FakeRoot, path: &str) -> Cgroup {
        let cgroup = Cgroup::new(root.path(), path).unwrap();
        assert_eq!(cgroup.version(), Version::V1, "a hybrid root is v1");
        cgroup.create().unwrap();
        cgroup
    }

    #[test]
    fn hierarchies_collapse_co_mounts_and_include_systemds_and_the_unified_one() {
        let root = FakeRoot::v1();
        let v1 = V1::new(&discover(root.path()).unwrap(), &["strata".into(), "x".into()]);
        let mut controllers: Vec<(Kind, Vec<&str>)> =
            v1.hierarchies().iter().map(|h| (h.kind, h.controllers.iter().map(String::as_str).collect())).collect();
        controllers.iter_mut().for_each(|(_, c)| c.sort());
        controllers.sort_by(|a, b| a.1.cmp(&b.1));
        let expected: Vec<(Kind, Vec<&str>)> = vec![
            (Kind::Unified, vec![]),
            (Kind::Controllers, vec!["blkio"]),
            (Kind::Controllers, vec!["cpu", "cpuacct"]),
            (Kind::Controllers, vec!["cpuset"]),
            (Kind::Controllers, vec!["devices"]),
            (Kind::Controllers, vec!["freezer"]),
            (Kind::Controllers, vec!["hugetlb"]),
            (Kind::Controllers, vec!["memory"]),
            (Kind::Systemd, vec!["name=systemd"]),
            (Kind::Controllers, vec!["pids"]),
        ];
        assert_eq!(controllers, expected);
        assert!(v1.dir("cpu").unwrap().ends_with("strata/x"));
        assert_eq!(v1.dir("cpu"), v1.dir("cpuacct"));
        assert!(v1.dir("rdma").is_none());
        // Only systemd's mount counts as its hierarchy, and only a cgroup2 mount as the unified one.
        let plain = FakeRoot::v1();
        std::fs::remove_file(plain.path().join("systemd/tasks")).unwrap();
        std::fs::remove_file(plain.path().join("unified/cgroup.controllers")).unwrap();
        let mounts = discover(plain.path()).unwrap();
        assert!(mounts.iter().all(|m| m.kind == Kind::Controllers), "{mounts:?}");
    }

    #[test]
    fn a_hybrid_child_is_cloned_into_the_unified_hierarchy_and_moves_itself_into_the_others() {
        let root = FakeRoot::v1();
        let cgroup = created(&root, "/strata/x");
        assert!(root.path().join("unified/strata/x").is_dir());
        assert!(root.path().join("systemd/strata/x").is_dir());
        let entry = cgroup.fast_entry(true).unwrap();
        assert!(entry.clone_into.is_some());
        let mut tasks: Vec<_> =
            entry.self_attach.iter().map(|t| t.strip_prefix(root.path()).unwrap().display().to_string()).collect();
        tasks.sort();
        assert_eq!(tasks.len(), 9, "{tasks:?}");
        assert!(tasks.contains(&"systemd/strata/x/tasks".to_string()), "{tasks:?}");
        assert!(!tasks.iter().any(|t| t.starts_with("unified")), "{tasks:?}");
        assert!(!entry.runtime_must_move(true));
        // An old kernel without clone3 into a cgroup: the runtime moves it (unified included).
        assert!(entry.runtime_must_move(false));
        // A child in a user namespace cannot write host cgroup files: the runtime moves it.
        let entry = cgroup.fast_entry(false).unwrap();
        assert!(entry.self_attach.is_empty());
        assert!(entry.runtime_must_move(true));
        cgroup.add_process(42).unwrap();
        for h in ["unified", "systemd", "memory", "cpu,cpuacct"] {
            assert_eq!(get(&root.path().join(h).join("strata/x"), "cgroup.procs"), "42", "{h}");
        }
        cgroup.delete().unwrap();
        for h in ["unified", "systemd", "memory"] {
            assert!(!root.path().join(h).join("strata").exists(), "{h}");
        }
    }

    #[test]
    fn a_container_made_before_strata_joined_systemds_hierarchy_is_still_joined_where_it_is() {
        let root = FakeRoot::v1();
        let cgroup = created(&root, "/strata/old");
        for h in ["unified", "systemd"] {
            std::fs::remove_dir_all(root.path().join(h).join("strata")).unwrap();
        }
        let entry = cgroup.fast_entry(true).unwrap();
        assert!(entry.clone_into.is_none());
        assert_eq!(entry.self_attach.len(), 8);
        assert!(!entry.runtime_must_move(false));
        cgroup.add_process(7).unwrap();
        cgroup.delete().unwrap();
    }

    #[test]
    fn create_initialises_cpusets_top_down_and_delete_removes_them() {
        let root = FakeRoot::v1();
        let cgroup = created(&root, "/strata/pod/abc");
        let cpuset = root.path().join("cpuset");
        for dir in [cpuset.join("strata"), cpuset.join("strata/pod"), cpuset.join("strata/pod/abc")] {
            assert_eq!(get(&dir, "cpuset.cpus"), "0-1", "{}", dir.display());
            assert_eq!(get(&dir, "cpuset.mems"), "0", "{}", dir.display());
        }
        // An existing parent with its own narrower cpuset is left as it is; children copy it.
        put(&cpuset.join("strata"), "cpuset.cpus", "1");
        let other = created(&root, "/strata/other");
        assert_eq!(get(&cpuset.join("strata/other"), "cpuset.cpus"), "1");
        other.delete().unwrap();

        assert_eq!(cgroup.dirs().len(), 10);
        cgroup.delete().unwrap();
        for h in ["cpuset", "memory", "cpu,cpuacct", "pids", "systemd", "unified"] {
            assert!(!root.path().join(h).join("strata").exists(), "{h}");
        }
    }

    #[test]
    fn cpuset_init_fails_clearly_when_the_parent_is_empty() {
        let root = FakeRoot::v1();
        put(&root.path().join("cpuset"), "cpuset.mems", "");
        let cgroup = Cgroup::new(root.path(), "ctr").unwrap();
        let err = cgroup.create().unwrap_err();
        assert!(err.to_string().contains("cpuset.mems is empty"), "{err}");
        cgroup.delete().unwrap();
        assert!(!root.path().join("cpuset/strata").exists());
    }

    #[test]
    fn full_resources_land_in_the_right_files_in_order() {
        let root = FakeRoot::v1();
        let cgroup = created(&root, "ctr");
        recorder::take();
        cgroup
            .apply(&resources(
                r#"{
                "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728,
                           "swappiness": 10, "disableOOMKiller": true, "kernelTCP": 1000},
                "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 1000,
                        "realtimePeriod": 1000000, "realtimeRuntime": 950000, "cpus": "0-1", "mems": "0"},
                "pids": {"limit": 20},
                "devices": [
                    {"allow": false, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 136, "access": "rw"},
                    {"allow": false, "type": "c", "major": 1, "minor": 9, "access": "w"}
                ],
                "blockIO": {"weight": 500,
                            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
                "hugepageLimits": [{"pageSize": "2MB", "limit": 209715200}]
            }"#,
            ))
            .unwrap();
        // The co-mounted cpu hierarchy is reached through whichever name read_dir met first.
        let writes: Vec<(String, String)> = recorder::take()
            .into_iter()
            .map(|(f, v)| {
                let rel = f.strip_prefix(root.path()).unwrap();
                let hierarchy = rel.iter().next().unwrap().to_string_lossy();
                let hierarchy =
                    if hierarchy.starts_with("cpu,") || hierarchy == "cpuacct" { "cpu".into() } else { hierarchy };
                (format!("{hierarchy}/{}", f.file_name().unwrap().to_string_lossy()), v)
            })
            .collect();
        let expected = [
            ("memory/memory.limit_in_bytes", "67108864"),
            ("memory/memory.memsw.limit_in_bytes", "134217728"),
            ("memory/memory.soft_limit_in_bytes", "33554432"),
            ("memory/memory.swappiness", "10"),
            ("memory/memory.oom_control", "1"),
            ("cpu/cpu.shares", "512"),
            ("cpu/cpu.cfs_period_us", "100000"),
            ("cpu/cpu.cfs_quota_us", "50000"),
            ("cpu/cpu.cfs_burst_us", "1000"),
            ("cpu/cpu.rt_period_us", "1000000"),
            ("cpu/cpu.rt_runtime_us", "950000"),
            ("cpuset/cpuset.cpus", "0-1"),
            ("cpuset/cpuset.mems", "0"),
            ("pids/pids.max", "20"),
            ("devices/devices.deny", "a"),
            ("devices/devices.allow", "c 1:3 rwm"),
            ("devices/devices.allow", "c 136:* rw"),
            ("devices/devices.deny", "c 1:9 w"),
            ("blkio/blkio.bfq.weight", "500"),
            ("blkio/blkio.throttle.read_bps_device", "8:0 1048576"),
            ("hugetlb/hugetlb.2MB.limit_in_bytes", "209715200"),
        ];
        let expected: Vec<(String, String)> = expected.iter().map(|(f, v)| (f.to_string(), v.to_string())).collect();
        assert_eq!(writes, expected);
    }

    #[test]
    fn memory_writes_keep_limit_below_memsw() {
        let root = FakeRoot::v1();
        let cgroup = created(&root, "ctr");
        let memory = root.path().join("memory/strata/ctr");
        let order = |json: &str| {
            recorder::take();
            cgroup.apply(&resources(json)).unwrap();
            recorder::take()
                .into_iter()
                .map(|(f, v)| format!("{}={v}", f.file_name().unwrap().to_string_lossy()))
                .collect::<Vec<_>>()
        };
        // Lowering from unlimited: the limit first.
        assert_eq!(
            order(r#"{"memory": {"limit": 100, "swap": 200}}"#),
            ["memory.limit_in_bytes=100", "memory.memsw.limit_in_bytes=200"]
        );
        // Raising above the current memsw: memsw first.
        assert_eq!(
            order(r#"{"memory": {"limit": 300, "swap": 400}}"#),
            ["memory.memsw.limit_in_bytes=400", "memory.limit_in_bytes=300"]
        );
        // Unlimited memory with swap unset: memsw goes unlimited first.
        assert_eq!(
            order(r#"{"memory": {"limit": -1}}"#),
            ["memory.memsw.limit_in_bytes=-1", "memory.limit_in_bytes=-1"]
        );
        // Swap accounting off: swap is skipped, the limit still applies.
        std::fs::remove_file(memory.join("memory.memsw.limit_in_bytes")).unwrap();
        assert_eq!(order(r#"{"memory": {"limit": 100, "swap": 200}}"#), ["memory.limit_in_bytes=100"]);
        // pids 0 and -1 mean no limit.
        assert_eq!(order(r#"{"pids": {"limit": -1}}"#), ["pids.max=max"]);
    }

    #[test]
    fn cpu_period_is_retried_after_the_quota() {
        // A real kernel refuses the period here; the fake has no such rule, so check only that a
        // quota without a period and a period without a quota write what they should.
        let root = FakeRoot::v1();
        let cgroup = created(&root, "ctr");
        recorder::take();
        cgroup.apply(&resources(r#"{"cpu": {"quota": 20000}}"#)).unwrap();
        let names: Vec<_> = recorder::take().into_iter().map(|(f, v)| (f.file_name().unwrap().to_owned(), v)).collect();
        assert_eq!(names, [("cpu.cfs_quota_us".into(), "20000".to_string())]);
    }

    #[test]
    fn unsupported_sections_say_why() {
        let root = FakeRoot::v1();
        let cgroup = created(&root, "ctr");
        let err = cgroup.apply(&resources(r#"{"unified": {"memory.high": "1"}}"#)).unwrap_err();
        assert!(matches!(err, CgroupError::Unsupported(_)), "{err}");
        let err = cgroup.apply(&resources(r#"{"rdma": {"mlx5_0": {"hcaHandles": 1}}}"#)).unwrap_err();
        assert_eq!(err.to_string(), "cgroup: linux.resources.rdma needs the rdma controller, which is not mounted");
        let err = cgroup.apply(&resources(r#"{"hugepageLimits": [{"pageSize": "1GB", "limit": 1}]}"#)).unwrap_err();
        assert!(err.to_string().contains("1GB"), "{err}");
        let err = cgroup.apply(&resources(r#"{"memory": {"swappiness": 101}}"#)).unwrap_err();
        assert!(matches!(err, CgroupError::InvalidValue { .. }), "{err}");
    }

    #[test]
    fn freeze_stats_and_oom_read_v1_files() {
        let root = FakeRoot::v1();
        let cgroup = created(&root, "ctr");
        cgroup.freeze().unwrap();
        assert!(cgroup.is_frozen().unwrap());
        cgroup.thaw().unwrap();
        assert!(!cgroup.is_frozen().unwrap());

        let memory = root.path().join("memory/strata/ctr");
        put(&memory, "memory.usage_in_bytes", "8192\n");
        put(&memory, "memory.memsw.usage_in_bytes", "12288\n");
        put(&memory, "memory.limit_in_bytes", "67108864\n");
        put(&memory, "memory.failcnt", "4\n");
        put(&memory, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n");
        put(&root.path().join("pids/strata/ctr"), "pids.current", "2\n");
        let stats = cgroup.stats().unwrap();
        assert_eq!(stats.memory.usage, 8192);
        assert_eq!(stats.memory.swap_usage, Some(4096));
        assert_eq!(stats.memory.limit, Some(67108864));
        assert_eq!(stats.memory.failcnt, 4);
        assert_eq!(stats.oom_kill_count, 1);
        assert_eq!(stats.pids.current, 2);
        assert_eq!(stats.pids.limit, None);
        assert!(cgroup.oom_killed().unwrap());
        // A kernel without the oom_kill line: the failure count is the only hint.
        put(&memory, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n");
        assert!(cgroup.oom_killed().unwrap());
        put(&memory, "memory.failcnt", "0\n");
        assert!(!cgroup.oom_killed().unwrap());
        put(&memory, "memory.limit_in_bytes", "9223372036854771712\n");
        assert_eq!(cgroup.stats().unwrap().memory.limit, None);
    }
}
