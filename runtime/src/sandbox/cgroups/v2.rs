//! cgroup v2: one unified hierarchy. A controller's files appear in a cgroup only once its parent
//! lists the controller in `cgroup.subtree_control`, so `create` enables them on the way down.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};
use rustix::event::{poll, PollFd, PollFlags, Timespec};

use super::{devices, file, make_dir, CgroupError, CpuStats, IoStats, MemoryStats, PidsStats, Stats, FREEZE_TIMEOUT};

/// Controllers enabled for the container's subtree when the parent offers them.
const CONTROLLERS: &[&str] = &["cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"];

#[derive(Debug)]
pub(crate) struct V2 {
    root: PathBuf,
    dir: PathBuf,
}

/// cgroup v1 `cpu.shares` [2, 262144] to v2 `cpu.weight` [1, 10000], linearly, as crun does.
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// blkio weight [10, 1000] to `io.weight` [1, 10000], as runc and crun do.
pub(crate) fn blkio_to_io_weight(weight: u16) -> u64 {
    let weight = u64::from(weight.clamp(10, 1000));
    1 + (weight - 10) * 9999 / 990
}

/// OCI's `swap` is memory+swap (v1's meaning); `memory.swap.max` is swap alone. Mirrors runc's
/// ConvertMemorySwapToCgroupV2Value: `None` leaves the file alone, -1 is "max".
pub(crate) fn swap_max(swap: Option<i64>, limit: Option<i64>) -> Result<Option<i64>, CgroupError> {
    let swap = swap.unwrap_or(0);
    let limit = limit.unwrap_or(0);
    if limit == -1 && swap == 0 {
        return Ok(Some(-1));
    }
    if swap == -1 {
        return Ok(Some(-1));
    }
    if swap == 0 {
        return Ok(None);
    }
    let invalid = |reason: String| CgroupError::InvalidValue { field: "memory.swap", reason };
    if limit == 0 || limit == -1 {
        return Err(invalid(format!("{swap} cannot be set without a memory limit")));
    }
    if swap < limit {
        return Err(invalid(format!("memory+swap {swap} is below the memory limit {limit}")));
    }
    Ok(Some(swap - limit))
}

fn max_or(value: i64) -> String {
    if value < 0 {
        "max".to_string()
    } else {
        value.to_string()
    }
}

/// Refuses `unified` keys that could name anything but a file of this cgroup.
pub(crate) fn check_unified_key(key: &str) -> Result<(), CgroupError> {
    let bad = key.is_empty() || key.contains('/') || key.contains("..") || key.contains('\0') || key.starts_with('.');
    if bad {
        return Err(CgroupError::InvalidValue {
            field: "linux.resources.unified",
            reason: format!("key {key:?} is not a cgroup file name"),
        });
    }
    Ok(())
}

impl V2 {
    pub fn new(root: &Path, components: &[String]) -> V2 {
        let dir = components.iter().fold(root.to_path_buf(), |dir, c| dir.join(c));
        V2 { root: root.to_path_buf(), dir }
    }

    pub fn create(&self, created: &mut Vec<PathBuf>) -> Result<(), CgroupError> {
        let mut dir = self.root.clone();
        for component in self.dir.strip_prefix(&self.root).unwrap_or(&self.dir).components() {
            enable_controllers(&dir);
            dir.push(component);
            if make_dir(&dir)? {
                created.push(dir.clone());
            }
        }
        Ok(())
    }

    pub fn apply(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        let dir = &self.dir;
        if let Some(memory) = r.memory() {
            apply_memory(dir, memory)?;
        }
        if let Some(cpu) = r.cpu() {
            apply_cpu(dir, cpu)?;
        }
        if let Some(value) = r.pids().and_then(|p| super::pids_max(p.limit())) {
            file::write(&dir.join("pids.max"), &value)?;
        }
        if let Some(rules) = r.devices() {
            devices::v2_apply(dir, rules)?;
        }
        if let Some(io) = r.block_io() {
            apply_io(dir, io)?;
        }
        for limit in r.hugepage_limits().iter().flatten() {
            let size = super::hugepage_size(limit.page_size())?;
            let value = max_or(limit.limit());
            let base = dir.join(format!("hugetlb.{size}.max"));
            if !base.exists() {
                return Err(super::unsupported_hugepage(limit.page_size()));
            }
            let rsvd = dir.join(format!("hugetlb.{size}.rsvd.max"));
            if rsvd.exists() {
                file::write(&rsvd, &value)?;
            }
            file::write(&base, &value)?;
        }
        if let Some(rdma) = r.rdma() {
            for line in super::rdma_lines(rdma) {
                file::write(&dir.join("rdma.max"), &line)?;
            }
        }
        if r.network().is_some() {
            tracing::debug!("cgroup: linux.resources.network has no cgroup v2 controller; ignored");
        }
        // Last, so that an explicit unified value wins over the one derived from the typed fields.
        if let Some(unified) = r.unified() {
            let mut keys: Vec<_> = unified.iter().collect();
            keys.sort();
            for (key, _) in &keys {
                check_unified_key(key)?;
            }
            for (key, value) in keys {
                file::write(&dir.join(key), value)?;
            }
        }
        Ok(())
    }

    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        file::write(&self.dir.join("cgroup.procs"), &pid.to_string())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        super::pids_recursive(&self.dir)
    }

    /// Writes `cgroup.freeze`, then waits for `cgroup.events` to say `frozen 1` (or 0): the kernel
    /// notifies changes of that file through poll(POLLPRI).
    pub fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        file::write(&self.dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
        let events_path = self.dir.join("cgroup.events");
        let events = File::open(&events_path).map_err(|err| CgroupError::Read { file: events_path.clone(), err })?;
        let state = if frozen { "frozen 1" } else { "frozen 0" };
        let deadline = Instant::now() + FREEZE_TIMEOUT;
        loop {
            let text = read_at_start(&events).map_err(|err| CgroupError::Read { file: events_path.clone(), err })?;
            if file::keyed_value(&text, "frozen") == Some(u64::from(frozen)) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CgroupError::FreezeTimeout { file: events_path, state });
            }
            let timeout = Timespec::try_from(left).unwrap_or(Timespec { tv_sec: 1, tv_nsec: 0 });
            let mut fds = [PollFd::new(&events, PollFlags::PRI)];
            match poll(&mut fds, Some(&timeout)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(CgroupError::Read { file: events_path, err: e.into() }),
            }
        }
    }

    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        match file::read_optional(&self.dir.join("cgroup.events"))? {
            Some(events) => Ok(file::keyed_value(&events, "frozen") == Some(1)),
            None => Ok(file::read_optional(&self.dir.join("cgroup.freeze"))?.as_deref() == Some("1")),
        }
    }

    /// SIGKILL through `cgroup.kill` (Linux 5.14+); `Ok(false)` when this kernel lacks it.
    pub fn kill_via_cgroup_kill(&self) -> Result<bool, CgroupError> {
        let kill = self.dir.join("cgroup.kill");
        if !kill.exists() {
            return Ok(false);
        }
        file::write(&kill, "1")?;
        Ok(true)
    }

    pub fn stats(&self) -> Result<Stats, CgroupError> {
        let dir = &self.dir;
        let mut stats = Stats::default();
        if let Some(usage) = file::read_u64_optional(&dir.join("memory.current"))? {
            let events = file::read_optional(&dir.join("memory.events"))?.unwrap_or_default();
            stats.memory = MemoryStats {
                usage,
                limit: file::read_u64_optional(&dir.join("memory.max"))?,
                max_usage: file::read_u64_optional(&dir.join("memory.peak"))?,
                failcnt: file::keyed_value(&events, "max").unwrap_or(0),
                swap_usage: file::read_u64_optional(&dir.join("memory.swap.current"))?,
                stat: file::read_optional(&dir.join("memory.stat"))?
                    .map(|t| file::keyed_values(&t))
                    .unwrap_or_default(),
            };
            stats.oom_kill_count = file::keyed_value(&events, "oom_kill").unwrap_or(0);
        }
        // cpu.stat exists even without the cpu controller (usage only).
        if let Some(stat) = file::read_optional(&dir.join("cpu.stat"))? {
            let us = |key| file::keyed_value(&stat, key).unwrap_or(0) * 1000;
            stats.cpu = CpuStats {
                usage_ns: us("usage_usec"),
                user_ns: us("user_usec"),
                system_ns: us("system_usec"),
                periods: file::keyed_value(&stat, "nr_periods").unwrap_or(0),
                throttled_periods: file::keyed_value(&stat, "nr_throttled").unwrap_or(0),
                throttled_ns: us("throttled_usec"),
                per_cpu_ns: Vec::new(),
            };
        }
        if let Some(current) = file::read_u64_optional(&dir.join("pids.current"))? {
            stats.pids = PidsStats { current, limit: file::read_u64_optional(&dir.join("pids.max"))? };
        }
        if let Some(text) = file::read_optional(&dir.join("io.stat"))? {
            stats.io = IoStats::from_v2(&text);
        }
        Ok(stats)
    }

    pub fn oom_killed(&self) -> Result<bool, CgroupError> {
        let events = file::read_optional(&self.dir.join("memory.events"))?.unwrap_or_default();
        Ok(file::keyed_value(&events, "oom_kill").unwrap_or(0) > 0)
    }
}

/// Reads a kernfs file from its start again (its content is regenerated on each read from 0).
fn read_at_start(f: &File) -> io::Result<String> {
    let mut buf = vec![0u8; 4096];
    let n = f.read_at(&mut buf, 0)?;
    buf.truncate(n);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Enables in `parent` every wanted controller it offers and has not enabled yet. Best effort: a
/// parent may refuse (processes in it, a realtime task with `cpu`); then the controller's files are
/// missing below, and `apply` fails naming the file if the spec needs one.
fn enable_controllers(parent: &Path) {
    let read = |name| file::read_optional(&parent.join(name)).ok().flatten().unwrap_or_default();
    let available = read("cgroup.controllers");
    let enabled = read("cgroup.subtree_control");
    for controller in CONTROLLERS {
        let offered = available.split_whitespace().any(|c| c == *controller);
        let on = enabled.split_whitespace().any(|c| c == *controller);
        if offered && !on {
            if let Err(e) = file::write(&parent.join("cgroup.subtree_control"), &format!("+{controller}")) {
                tracing::warn!("{e}");
            }
        }
    }
}

fn apply_memory(dir: &Path, m: &LinuxMemory) -> Result<(), CgroupError> {
    if let Some(swap) = swap_max(m.swap(), m.limit())? {
        let path = dir.join("memory.swap.max");
        if path.exists() {
            file::write(&path, &max_or(swap))?;
        } else if m.swap().is_some_and(|s| s != 0) {
            tracing::warn!("cgroup: swap accounting is off (no memory.swap.max); ignoring memory.swap");
        }
    }
    // 0 means unset, as in runc (an update passes every field; a limit of 0 would kill all).
    if let Some(limit) = m.limit().filter(|&l| l != 0) {
        file::write(&dir.join("memory.max"), &max_or(limit))?;
    }
    if let Some(reservation) = m.reservation().filter(|&r| r != 0) {
        file::write(&dir.join("memory.low"), &max_or(reservation))?;
    }
    if m.swappiness().is_some() {
        tracing::warn!("cgroup: cgroup v2 has no per-cgroup swappiness; ignoring memory.swappiness");
    }
    if m.disable_oom_killer() == Some(true) {
        tracing::warn!("cgroup: cgroup v2 cannot disable the OOM killer; ignoring memory.disableOOMKiller");
    }
    Ok(())
}

fn apply_cpu(dir: &Path, cpu: &LinuxCpu) -> Result<(), CgroupError> {
    if cpu.realtime_runtime().is_some_and(|r| r != 0) || cpu.realtime_period().is_some_and(|p| p != 0) {
        return Err(CgroupError::Unsupported("cpu.realtimeRuntime/realtimePeriod need cgroup v1".to_string()));
    }
    if let Some(shares) = cpu.shares().filter(|&s| s != 0) {
        file::write(&dir.join("cpu.weight"), &shares_to_weight(shares).to_string())?;
    }
    let quota = cpu.quota().filter(|&q| q != 0);
    let period = cpu.period().filter(|&p| p != 0);
    if quota.is_some() || period.is_some() {
        let max_file = dir.join("cpu.max");
        // "$QUOTA $PERIOD"; keep the current quota when only the period changes.
        let quota = match quota {
            Some(q) => max_or(q),
            None => file::read(&max_file)?.split_whitespace().next().unwrap_or("max").to_string(),
        };
        let value = match period {
            Some(p) => format!("{quota} {p}"),
            None => quota,
        };
        file::write(&max_file, &value)?;
    }
    if let Some(burst) = cpu.burst() {
        write_or_warn(&dir.join("cpu.max.burst"), &burst.to_string(), "cpu.burst")?;
    }
    if let Some(idle) = cpu.idle() {
        write_or_warn(&dir.join("cpu.idle"), &idle.to_string(), "cpu.idle")?;
    }
    if let Some(cpus) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
        file::write(&dir.join("cpuset.cpus"), cpus)?;
    }
    if let Some(mems) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
        file::write(&dir.join("cpuset.mems"), mems)?;
    }
    Ok(())
}

fn write_or_warn(path: &Path, value: &str, field: &str) -> Result<(), CgroupError> {
    if path.exists() {
        file::write(path, value)
    } else {
        tracing::warn!("cgroup: this kernel has no {}; ignoring linux.resources.{field}", path.display());
        Ok(())
    }
}

fn apply_io(dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    // BFQ takes the blkio weight as is; io.weight (iocost) wants it converted.
    let bfq = dir.join("io.bfq.weight");
    let weight_file = if bfq.exists() { bfq } else { dir.join("io.weight") };
    let uses_bfq = weight_file.ends_with("io.bfq.weight");
    let convert = |w: u16| if uses_bfq { u64::from(w) } else { blkio_to_io_weight(w) };
    if let Some(weight) = b.weight().filter(|&w| w != 0) {
        write_or_warn(&weight_file, &format!("default {}", convert(weight)), "blockIO.weight")?;
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(weight) = d.weight() {
            let line = format!("{}:{} {}", d.major(), d.minor(), convert(weight));
            write_or_warn(&weight_file, &line, "blockIO.weightDevice")?;
        }
    }
    let throttles = [
        ("rbps", b.throttle_read_bps_device()),
        ("wbps", b.throttle_write_bps_device()),
        ("riops", b.throttle_read_iops_device()),
        ("wiops", b.throttle_write_iops_device()),
    ];
    for (key, devices) in throttles {
        for d in devices.iter().flatten() {
            let line = format!("{}:{} {key}={}", d.major(), d.minor(), d.rate());
            write_or_warn(&dir.join("io.max"), &line, "blockIO throttling")?;
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
        assert_eq!(cgroup.version(), Version::V2);
        cgroup.create().unwrap();
        cgroup
    }

    #[test]
    fn shares_convert_to_weight_as_crun_does() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(u64::MAX), 10_000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(500), 4950);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
    }

    #[test]
    fn swap_is_converted_from_memory_plus_swap() {
        assert_eq!(swap_max(Some(200), Some(100)).unwrap(), Some(100));
        assert_eq!(swap_max(Some(100), Some(100)).unwrap(), Some(0));
        assert_eq!(swap_max(Some(-1), Some(100)).unwrap(), Some(-1));
        assert_eq!(swap_max(None, Some(-1)).unwrap(), Some(-1));
        assert_eq!(swap_max(None, Some(100)).unwrap(), None);
        assert_eq!(swap_max(Some(0), None).unwrap(), None);
        assert!(swap_max(Some(50), Some(100)).is_err());
        assert!(swap_max(Some(50), None).is_err());
    }

    #[test]
    fn create_enables_controllers_down_the_path_and_delete_removes_what_it_made() {
        let root = FakeRoot::v2(&["cpuset", "cpu", "io", "memory", "pids", "hugetlb"]);
        let cgroup = created(&root, "/strata/pod/abc");
        let r = root.path();
        let all = "cpuset cpu io memory hugetlb pids";
        for dir in [r.to_path_buf(), r.join("strata"), r.join("strata/pod")] {
            assert_eq!(get(&dir, "cgroup.subtree_control"), all, "{}", dir.display());
        }
        // Not in the leaf: a cgroup with enabled controllers cannot hold processes.
        assert_eq!(get(&r.join("strata/pod/abc"), "cgroup.subtree_control"), "");
        assert_eq!(get(&r.join("strata/pod/abc"), "cgroup.controllers"), all);

        // Already enabled controllers are not written again.
        put(r, "cgroup.subtree_control", all);
        let again = Cgroup::new(r, "/strata/other").unwrap();
        recorder::take();
        again.create().unwrap();
        assert!(!recorder::take().iter().any(|(f, _)| *f == r.join("cgroup.subtree_control")));
        again.delete().unwrap();

        assert_eq!(cgroup.dirs(), [r.join("strata/pod/abc")]);
        assert!(r.join("strata/pod/abc/memory.max").exists());
        cgroup.delete().unwrap();
        assert!(!r.join("strata").exists(), "created parents are removed too");
        cgroup.delete().unwrap();
    }

    #[test]
    fn delete_keeps_parents_it_did_not_create() {
        let root = FakeRoot::v2(&["memory", "pids"]);
        std::fs::create_dir(root.path().join("kubepods")).unwrap();
        let cgroup = created(&root, "/kubepods/ctr");
        cgroup.delete().unwrap();
        assert!(!root.path().join("kubepods/ctr").exists());
        assert!(root.path().join("kubepods").exists());
    }

    #[test]
    fn full_resources_land_in_the_right_files() {
        let root = FakeRoot::v2(&["cpuset", "cpu", "io", "memory", "pids", "hugetlb", "rdma"]);
        let cgroup = created(&root, "ctr");
        let dir = root.path().join("strata/ctr");
        put(&dir, "io.bfq.weight", "default 100");
        recorder::take();
        cgroup
            .apply(&resources(
                r#"{
                "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728,
                           "swappiness": 10, "disableOOMKiller": true, "kernelTCP": 1000},
                "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 1000, "idle": 1,
                        "cpus": "0-1", "mems": "0"},
                "pids": {"limit": 20},
                "devices": [],
                "blockIO": {"weight": 500,
                            "weightDevice": [{"major": 8, "minor": 0, "weight": 200}],
                            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                            "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}]},
                "hugepageLimits": [{"pageSize": "2MB", "limit": 209715200}],
                "rdma": {"mlx5_0": {"hcaHandles": 3, "hcaObjects": 10000}},
                "unified": {"memory.high": "50000000", "pids.max": "30"}
            }"#,
            ))
            .unwrap();
        let writes: Vec<(String, String)> = recorder::take()
            .into_iter()
            .map(|(f, v)| (f.strip_prefix(&dir).unwrap().display().to_string(), v))
            .collect();
        let expected = [
            ("memory.swap.max", "67108864"),
            ("memory.max", "67108864"),
            ("memory.low", "33554432"),
            ("cpu.weight", "39"),
            ("cpu.max", "50000 100000"),
            ("cpu.max.burst", "1000"),
            ("cpu.idle", "1"),
            ("cpuset.cpus", "0-1"),
            ("cpuset.mems", "0"),
            ("pids.max", "20"),
            ("io.bfq.weight", "default 500"),
            ("io.bfq.weight", "8:0 200"),
            ("io.max", "8:0 rbps=1048576"),
            ("io.max", "8:16 wiops=100"),
            ("hugetlb.2MB.rsvd.max", "209715200"),
            ("hugetlb.2MB.max", "209715200"),
            ("rdma.max", "mlx5_0 hca_handle=3 hca_object=10000"),
            ("memory.high", "50000000"),
            ("pids.max", "30"),
        ];
        let expected: Vec<(String, String)> = expected.iter().map(|(f, v)| (f.to_string(), v.to_string())).collect();
        assert_eq!(writes, expected);
        assert_eq!(get(&dir, "pids.max"), "30");
    }

    #[test]
    fn io_weight_is_converted_without_bfq_and_limits_say_max() {
        let root = FakeRoot::v2(&["cpu", "io", "memory", "pids"]);
        let cgroup = created(&root, "ctr");
        let dir = root.path().join("strata/ctr");
        cgroup
            .apply(&resources(
                r#"{"blockIO": {"weight": 1000}, "pids": {"limit": -1}, "memory": {"limit": -1},
                    "cpu": {"quota": -1, "shares": 2}}"#,
            ))
            .unwrap();
        assert_eq!(get(&dir, "io.weight"), "default 10000");
        assert_eq!(get(&dir, "pids.max"), "max");
        assert_eq!(get(&dir, "memory.max"), "max");
        assert_eq!(get(&dir, "memory.swap.max"), "max");
        assert_eq!(get(&dir, "cpu.max"), "max");
        assert_eq!(get(&dir, "cpu.weight"), "1");
        // 0 is "unchanged", as runc has it (containerd and podman send every field).
        put(&dir, "pids.max", "70");
        put(&dir, "memory.max", "67108864");
        cgroup.apply(&resources(r#"{"pids": {"limit": 0}, "memory": {"limit": 0, "reservation": 0}}"#)).unwrap();
        assert_eq!((get(&dir, "pids.max"), get(&dir, "memory.max")), ("70".into(), "67108864".into()));
        // Only the period: the quota in place stays.
        put(&dir, "cpu.max", "20000 100000");
        cgroup.apply(&resources(r#"{"cpu": {"period": 50000}}"#)).unwrap();
        assert_eq!(get(&dir, "cpu.max"), "20000 50000");
        cgroup.delete().unwrap();
    }

    #[test]
    fn unified_keys_must_name_a_file_of_this_cgroup() {
        for good in ["memory.high", "cpu.weight.nice", "io.latency"] {
            check_unified_key(good).unwrap();
        }
        for bad in ["", "../memory.max", "a/b", "/memory.max", "..", ".hidden", "x\0y"] {
            assert!(check_unified_key(bad).is_err(), "{bad:?}");
        }
        let root = FakeRoot::v2(&["memory"]);
        let cgroup = created(&root, "ctr");
        recorder::take();
        let err = cgroup.apply(&resources(r#"{"unified": {"memory.high": "1", "../escape": "1"}}"#)).unwrap_err();
        assert!(matches!(err, CgroupError::InvalidValue { .. }), "{err}");
        assert!(recorder::take().is_empty(), "nothing written when a key is bad");
        let err = cgroup.apply(&resources(r#"{"unified": {"nosuch.file": "1"}}"#)).unwrap_err();
        assert!(err.to_string().contains("nosuch.file"), "{err}");
    }

    #[test]
    fn missing_controller_files_are_named_and_realtime_is_refused() {
        let root = FakeRoot::v2(&["memory"]);
        let cgroup = created(&root, "ctr");
        let err = cgroup.apply(&resources(r#"{"pids": {"limit": 5}}"#)).unwrap_err();
        assert!(err.to_string().contains("pids.max"), "{err}");
        let err = cgroup.apply(&resources(r#"{"cpu": {"realtimeRuntime": 950000}}"#)).unwrap_err();
        assert!(matches!(err, CgroupError::Unsupported(_)), "{err}");
        let err = cgroup.apply(&resources(r#"{"hugepageLimits": [{"pageSize": "../2MB", "limit": 1}]}"#)).unwrap_err();
        assert!(matches!(err, CgroupError::InvalidValue { .. }), "{err}");
    }

    #[test]
    fn freeze_waits_for_events_and_stats_read_v2_files() {
        let root = FakeRoot::v2(&["cpu", "memory", "pids"]);
        let cgroup = created(&root, "ctr");
        let dir = root.path().join("strata/ctr");
        assert!(!cgroup.is_frozen().unwrap());
        cgroup.freeze().unwrap();
        assert_eq!(get(&dir, "cgroup.freeze"), "1");
        assert!(cgroup.is_frozen().unwrap());
        cgroup.thaw().unwrap();
        assert!(!cgroup.is_frozen().unwrap());

        put(&dir, "memory.current", "4096\n");
        put(&dir, "memory.max", "67108864\n");
        put(&dir, "memory.events", "low 0\nhigh 0\nmax 7\noom 1\noom_kill 2\n");
        put(
            &dir,
            "cpu.stat",
            "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 5\nnr_throttled 2\nthrottled_usec 3\n",
        );
        put(&dir, "pids.current", "3\n");
        put(&dir, "cgroup.procs", "12\n13\n");
        std::fs::create_dir(dir.join("nested")).unwrap();
        put(&dir.join("nested"), "cgroup.procs", "14\n");
        let stats = cgroup.stats().unwrap();
        assert_eq!(stats.memory.usage, 4096);
        assert_eq!(stats.memory.limit, Some(67108864));
        assert_eq!(stats.memory.max_usage, None);
        assert_eq!(stats.memory.failcnt, 7);
        assert_eq!(stats.oom_kill_count, 2);
        assert_eq!(stats.cpu.usage_ns, 10_000);
        assert_eq!(stats.cpu.throttled_ns, 3_000);
        assert_eq!(stats.pids.current, 3);
        assert_eq!(stats.pids.limit, None);
        assert!(cgroup.oom_killed().unwrap());
        assert_eq!(cgroup.pids().unwrap(), [12, 13, 14]);
    }

    #[test]
    fn devices_on_v2_need_no_program_when_there_are_no_rules() {
        let root = FakeRoot::v2(&["memory"]);
        let cgroup = created(&root, "ctr");
        cgroup.apply(&resources(r#"{"devices": []}"#)).unwrap();
        // A fake directory is no cgroup: the failure names the step and the directory.
        let err = cgroup.apply(&resources(r#"{"devices": [{"allow": false, "access": "rwm"}]}"#)).unwrap_err();
        assert!(err.to_string().starts_with("cgroup: device rules on cgroup v2: "), "{err}");
    }
}
