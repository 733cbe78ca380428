//! A fake cgroupfs for unit tests: a temp directory laid out like /sys/fs/cgroup, plus hooks that
//! play the kernel's part for this test's thread: `mkdir` fills a new cgroup with its controllers'
//! files (v2: only those the parent's `cgroup.subtree_control` enables), `rmdir` drops them, and
//! writing `cgroup.freeze` updates `cgroup.events`.

use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};

use super::Version;

const UNLIMITED: &str = "9223372036854771712";

thread_local! {
    static KERNEL: RefCell<Option<(PathBuf, Version)>> = const { RefCell::new(None) };
}

pub(crate) struct FakeRoot {
    dir: tempfile::TempDir,
}

impl FakeRoot {
    /// A v2 root offering `controllers`, none enabled for children yet.
    pub fn v2(controllers: &[&str]) -> FakeRoot {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        put(root, "cgroup.controllers", &controllers.join(" "));
        put(root, "cgroup.subtree_control", "");
        put(root, "cgroup.procs", "");
        put(root, "cpuset.cpus.effective", "0-1");
        put(root, "cpuset.mems.effective", "0");
        KERNEL.with(|k| *k.borrow_mut() = Some((root.to_path_buf(), Version::V2)));
        FakeRoot { dir }
    }

    /// A v1 (hybrid-like) root: one directory per controller, cpu and cpuacct co-mounted behind
    /// symlinks as many distributions do, systemd's named hierarchy, and a cgroup2 `unified`
    /// mount with only hugetlb.
    pub fn v1() -> FakeRoot {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for h in ["cpu,cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "hugetlb"] {
            let mount = root.join(h);
            fs::create_dir(&mount).unwrap();
            populate_v1(h, &mount);
        }
        std::os::unix::fs::symlink("cpu,cpuacct", root.join("cpu")).unwrap();
        std::os::unix::fs::symlink("cpu,cpuacct", root.join("cpuacct")).unwrap();
        put(&root.join("cpuset"), "cpuset.cpus", "0-1");
        put(&root.join("cpuset"), "cpuset.mems", "0");
        fs::create_dir(root.join("unified")).unwrap();
        put(&root.join("unified"), "cgroup.controllers", "hugetlb");
        fs::create_dir(root.join("systemd")).unwrap();
        populate_v1("name=systemd", &root.join("systemd"));
        KERNEL.with(|k| *k.borrow_mut() = Some((root.to_path_buf(), Version::V1)));
        FakeRoot { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for FakeRoot {
    fn drop(&mut self) {
        KERNEL.with(|k| *k.borrow_mut() = None);
    }
}

pub(crate) fn put(dir: &Path, name: &str, content: &str) {
    fs::write(dir.join(name), content).unwrap();
}

pub(crate) fn get(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
}

fn kernel_for(path: &Path) -> Option<(PathBuf, Version)> {
    KERNEL.with(|k| k.borrow().clone()).filter(|(root, _)| path.starts_with(root))
}

pub(crate) fn on_mkdir(dir: &Path) {
    let Some((root, version)) = kernel_for(dir) else { return };
    match version {
        Version::V2 => populate_v2(dir),
        Version::V1 => {
            let rel = dir.strip_prefix(&root).unwrap();
            let mount = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
            let mount = fs::read_link(root.join(&mount)).map_or(mount, |t| t.to_string_lossy().into_owned());
            if mount == "unified" {
                // A hybrid host's cgroup2 mount: no controller of its own enabled below the root.
                put(dir, "cgroup.controllers", "");
                put(dir, "cgroup.procs", "");
                put(dir, "cgroup.threads", "");
            } else {
                populate_v1(&mount, dir);
            }
        }
    }
}

pub(crate) fn before_rmdir(dir: &Path) {
    if kernel_for(dir).is_none() {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else { return };
    let entries: Vec<_> = entries.flatten().collect();
    if entries.iter().any(|e| e.file_type().unwrap().is_dir()) {
        return;
    }
    for entry in entries {
        fs::remove_file(entry.path()).unwrap();
    }
}

/// What the kernel would keep after `value` is written: `cgroup.subtree_control` takes "+name" and
/// "-name" edits, every other file holds the last value.
pub(crate) fn stored_value(file: &Path, value: &str) -> String {
    if kernel_for(file).is_none() || file.file_name().is_none_or(|n| n != "cgroup.subtree_control") {
        return value.to_string();
    }
    let mut enabled: Vec<String> =
        fs::read_to_string(file).unwrap_or_default().split_whitespace().map(str::to_string).collect();
    for edit in value.split_whitespace() {
        let (on, name) = edit.split_at(1);
        enabled.retain(|c| c != name);
        if on == "+" {
            enabled.push(name.to_string());
        }
    }
    enabled.join(" ")
}

pub(crate) fn after_write(file: &Path, value: &str) {
    if kernel_for(file).is_none() || file.file_name().is_none_or(|n| n != "cgroup.freeze") {
        return;
    }
    put(file.parent().unwrap(), "cgroup.events", &format!("populated 0\nfrozen {}\n", value.trim()));
}

fn populate_v2(dir: &Path) {
    let parent = dir.parent().unwrap();
    let enabled = fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
    put(dir, "cgroup.controllers", enabled.trim());
    for (name, content) in [
        ("cgroup.subtree_control", ""),
        ("cgroup.procs", ""),
        ("cgroup.freeze", "0"),
        ("cgroup.events", "populated 0\nfrozen 0\n"),
        ("cgroup.kill", ""),
        ("cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"),
    ] {
        put(dir, name, content);
    }
    for controller in enabled.split_whitespace() {
        let files: &[(&str, &str)] = match controller {
            "memory" => &[
                ("memory.max", "max"),
                ("memory.low", "0"),
                ("memory.high", "max"),
                ("memory.swap.max", "max"),
                ("memory.current", "0"),
                ("memory.swap.current", "0"),
                ("memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"),
            ],
            "cpu" => &[("cpu.weight", "100"), ("cpu.max", "max 100000"), ("cpu.max.burst", "0"), ("cpu.idle", "0")],
            "cpuset" => &[("cpuset.cpus", ""), ("cpuset.mems", "")],
            "io" => &[("io.weight", "default 100"), ("io.max", "")],
            "pids" => &[("pids.max", "max"), ("pids.current", "0")],
            "hugetlb" => &[("hugetlb.2MB.max", "max"), ("hugetlb.2MB.rsvd.max", "max")],
            "rdma" => &[("rdma.max", "")],
            _ => &[],
        };
        for (name, content) in files {
            put(dir, name, content);
        }
    }
}

fn populate_v1(hierarchy: &str, dir: &Path) {
    put(dir, "cgroup.procs", "");
    put(dir, "tasks", "");
    for controller in hierarchy.split(',') {
        let files: &[(&str, &str)] = match controller {
            "memory" => &[
                ("memory.limit_in_bytes", UNLIMITED),
                ("memory.memsw.limit_in_bytes", UNLIMITED),
                ("memory.soft_limit_in_bytes", UNLIMITED),
                ("memory.swappiness", "60"),
                ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"),
                ("memory.usage_in_bytes", "0"),
                ("memory.max_usage_in_bytes", "0"),
                ("memory.memsw.usage_in_bytes", "0"),
                ("memory.failcnt", "0"),
            ],
            "cpu" => &[
                ("cpu.shares", "1024"),
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_quota_us", "-1"),
                ("cpu.cfs_burst_us", "0"),
                ("cpu.idle", "0"),
                ("cpu.rt_period_us", "1000000"),
                ("cpu.rt_runtime_us", "0"),
                ("cpu.stat", "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n"),
            ],
            "cpuacct" => &[("cpuacct.usage", "0"), ("cpuacct.usage_user", "0"), ("cpuacct.usage_sys", "0")],
            "cpuset" => &[("cpuset.cpus", ""), ("cpuset.mems", "")],
            "devices" => &[("devices.allow", ""), ("devices.deny", ""), ("devices.list", "a *:* rwm")],
            "freezer" => &[("freezer.state", "THAWED")],
            "blkio" => &[
                ("blkio.bfq.weight", "100"),
                ("blkio.throttle.read_bps_device", ""),
                ("blkio.throttle.write_bps_device", ""),
                ("blkio.throttle.read_iops_device", ""),
                ("blkio.throttle.write_iops_device", ""),
            ],
            "pids" => &[("pids.max", "max"), ("pids.current", "0")],
            "hugetlb" => &[("hugetlb.2MB.limit_in_bytes", UNLIMITED)],
            _ => &[],
        };
        for (name, content) in files {
            put(dir, name, content);
        }
    }
}
