//! Tests against this host's real cgroup v1 hierarchy (and, for the device program, the hybrid
//! host's cgroup2 mount). They need root and skip themselves otherwise. Every cgroup lives under
//! the absolute `/strata-test/<unique>` in each hierarchy, never under the test's own cgroup, and a
//! guard removes it even when the test fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;
use rustix::process::Signal;

use super::*;

const MOUNT_ROOT: &str = "/sys/fs/cgroup";
const TEST_PARENT: &str = "strata-test";

/// The tests share `/strata-test`: one creating in it while another removes it would race.
static SERIAL: Mutex<()> = Mutex::new(());

fn usable() -> bool {
    let ok = rustix::process::geteuid().is_root()
        && detect_version(Path::new(MOUNT_ROOT)).ok() == Some(Version::V1)
        && Path::new(MOUNT_ROOT).join("memory").is_dir();
    if !ok {
        eprintln!("skipped: needs root and a cgroup v1 host");
    }
    ok
}

fn unique(name: &str) -> String {
    format!("/{TEST_PARENT}/{name}-{}", std::process::id())
}

/// Kills what is left inside, then removes the cgroup and `/strata-test` in every hierarchy.
struct Guard {
    cgroup: Cgroup,
    children: Vec<Child>,
    extra_dirs: Vec<PathBuf>,
}

impl Guard {
    fn new(cgroup: Cgroup) -> Guard {
        Guard { cgroup, children: Vec::new(), extra_dirs: Vec::new() }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.cgroup.thaw();
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.cgroup.kill_all(Signal::KILL);
        let _ = self.cgroup.delete();
        for dir in self.cgroup.dirs().iter().chain(&self.extra_dirs) {
            let _ = std::fs::remove_dir(dir);
            if let Some(parent) = dir.parent().filter(|p| p.ends_with(TEST_PARENT)) {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

fn resources(json: &str) -> LinuxResources {
    serde_json::from_str(json).unwrap()
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap().trim().to_string()
}

fn dir_of(cgroup: &Cgroup, controller: &str) -> PathBuf {
    Path::new(MOUNT_ROOT).join(controller).join(cgroup.path().trim_start_matches('/'))
}

/// A shell that waits for a line on stdin, then becomes `sleep 30`: what it allocates after
/// the line is charged to the cgroup it was moved into.
fn spawn_waiting_sleep() -> Child {
    Command::new("sh")
        .args(["-c", "read _; exec sleep 30"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

fn release(child: &mut Child) {
    writeln!(child.stdin.as_mut().unwrap(), "go").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let comm = format!("/proc/{}/comm", child.id());
    while std::fs::read_to_string(&comm).unwrap_or_default().trim() != "sleep" {
        assert!(Instant::now() < deadline, "child never exec'd sleep");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn v1_create_apply_add_freeze_stats_delete() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !usable() {
        return;
    }
    let cgroup = Cgroup::new(Path::new(MOUNT_ROOT), &unique("life")).unwrap();
    assert_eq!(cgroup.version(), Version::V1);
    let mut guard = Guard::new(cgroup);
    let cgroup = &guard.cgroup;
    cgroup.create().unwrap();
    for dir in cgroup.dirs() {
        assert!(dir.is_dir(), "{} missing", dir.display());
        assert!(!dir.starts_with("/sys/fs/cgroup/memory/process_api"));
    }

    cgroup
        .apply(&resources(
            r#"{
                "memory": {"limit": 67108864, "swap": 134217728},
                "pids": {"limit": 20},
                "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
                "devices": [
                    {"allow": false, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
                ]
            }"#,
        ))
        .unwrap();
    let memory = dir_of(cgroup, "memory");
    assert_eq!(read(&memory, "memory.limit_in_bytes"), "67108864");
    if memory.join("memory.memsw.limit_in_bytes").exists() {
        assert_eq!(read(&memory, "memory.memsw.limit_in_bytes"), "134217728");
    }
    assert_eq!(read(&dir_of(cgroup, "pids"), "pids.max"), "20");
    assert_eq!(read(&dir_of(cgroup, "cpu"), "cpu.cfs_quota_us"), "50000");
    assert_eq!(read(&dir_of(cgroup, "cpu"), "cpu.cfs_period_us"), "100000");
    assert_eq!(read(&dir_of(cgroup, "cpu"), "cpu.shares"), "512");
    assert_eq!(read(&dir_of(cgroup, "cpuset"), "cpuset.cpus"), "0");
    assert_eq!(read(&dir_of(cgroup, "cpuset"), "cpuset.mems"), "0");
    assert_eq!(read(&dir_of(cgroup, "devices"), "devices.list"), "c 1:3 rwm");
    // The parent we created got its cpuset from the root, or no task could join below it.
    let cpuset_parent = dir_of(cgroup, "cpuset").parent().unwrap().to_path_buf();
    assert_eq!(read(&cpuset_parent, "cpuset.cpus"), read(Path::new("/sys/fs/cgroup/cpuset"), "cpuset.cpus"));

    // Raising the limit above the current memsw must reorder the writes.
    cgroup.apply(&resources(r#"{"memory": {"limit": 268435456, "swap": 536870912}}"#)).unwrap();
    assert_eq!(read(&memory, "memory.limit_in_bytes"), "268435456");

    let mut child = spawn_waiting_sleep();
    let pid = child.id() as i32;
    cgroup.add_process(pid).unwrap();
    release(&mut child);
    guard.children.push(child);
    let cgroup = &guard.cgroup;
    assert_eq!(cgroup.pids().unwrap(), vec![pid]);

    cgroup.freeze().unwrap();
    assert!(cgroup.is_frozen().unwrap());
    assert_eq!(read(&dir_of(cgroup, "freezer"), "freezer.state"), "FROZEN");
    cgroup.thaw().unwrap();
    assert!(!cgroup.is_frozen().unwrap());
    assert_eq!(read(&dir_of(cgroup, "freezer"), "freezer.state"), "THAWED");

    let stats = cgroup.stats().unwrap();
    assert!(stats.memory.usage > 0, "{stats:?}");
    assert_eq!(stats.memory.limit, Some(268435456));
    assert_eq!(stats.pids, PidsStats { current: 1, limit: Some(20) });
    assert!(stats.memory.stat.contains_key("total_inactive_file"), "memory.stat: {stats:?}");
    assert!(!stats.cpu.per_cpu_ns.is_empty(), "cpuacct.usage_percpu: {stats:?}");
    assert!(!cgroup.oom_killed().unwrap());
    serde_json::to_string(&stats).unwrap();

    // Still inside: removing must say so, not pretend.
    let err = cgroup.delete().unwrap_err();
    assert!(matches!(err, CgroupError::Busy { .. }), "{err}");

    cgroup.kill_all(Signal::KILL).unwrap();
    let status = guard.children[0].wait().unwrap();
    assert!(!status.success());
    let cgroup = &guard.cgroup;
    assert!(cgroup.pids().unwrap().is_empty());
    // Now empty: the leaf and the parent this value created both go.
    cgroup.delete().unwrap();
    for dir in cgroup.dirs() {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

#[test]
fn v1_delete_removes_every_directory_it_created() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !usable() {
        return;
    }
    let path = format!("{}/nested/leaf", unique("tree"));
    let guard = Guard::new(Cgroup::new(Path::new(MOUNT_ROOT), &path).unwrap());
    let parent_existed = Path::new(MOUNT_ROOT).join("memory").join(TEST_PARENT).exists();
    guard.cgroup.create().unwrap();
    guard.cgroup.create().unwrap(); // again: already there is fine
    guard.cgroup.delete().unwrap();
    guard.cgroup.delete().unwrap(); // again: already gone is fine
    for dir in guard.cgroup.dirs() {
        let created_top = dir.parent().unwrap().parent().unwrap();
        assert!(!created_top.exists(), "{} left behind", created_top.display());
        if !parent_existed {
            assert!(!created_top.parent().unwrap().exists());
        }
    }
}

#[test]
fn v1_kernel_refusals_name_the_file_and_value() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !usable() {
        return;
    }
    let guard = Guard::new(Cgroup::new(Path::new(MOUNT_ROOT), &unique("refuse")).unwrap());
    guard.cgroup.create().unwrap();
    let err = guard.cgroup.apply(&resources(r#"{"cpu": {"cpus": "4096"}}"#)).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("cgroup: writing \"4096\" to /sys/fs/cgroup/cpuset/"), "{text}");
    assert!(text.contains("cpuset.cpus: "), "{text}");
    assert!(!text.contains("os error"), "{text}");
    let err = guard.cgroup.apply(&resources(r#"{"memory": {"swappiness": 200}}"#)).unwrap_err();
    assert!(matches!(err, CgroupError::InvalidValue { .. }), "{err}");
    let err = guard.cgroup.apply(&resources(r#"{"unified": {"memory.high": "1"}}"#)).unwrap_err();
    assert!(err.to_string().contains("needs cgroup v2"), "{err}");
}

/// The v2 device program, on the hybrid host's cgroup2 mount: a process in the cgroup may use
/// /dev/null and read /dev/zero, and nothing else.
#[test]
fn v2_device_program_enforces_rules_on_the_unified_mount() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let unified = Path::new(MOUNT_ROOT).join("unified");
    if !usable() || detect_version(&unified).ok() != Some(Version::V2) {
        return;
    }
    let cgroup = Cgroup::new(&unified, &unique("dev")).unwrap();
    let leaf = cgroup.dirs()[0].clone();
    let mut guard = Guard::new(cgroup);
    // mkdir by hand: `create` would enable controllers in the host's unified root.
    std::fs::create_dir_all(&leaf).unwrap();
    guard.extra_dirs.push(leaf.clone());
    let rules = r#"{"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}
    ]}"#;
    guard.cgroup.apply(&resources(rules)).unwrap();
    // Applying again (an update) replaces the program rather than stacking a second one.
    guard.cgroup.apply(&resources(rules)).unwrap();

    let mut child = Command::new("sh")
        .args([
            "-c",
            "read _; \
             (exec 3>/dev/null) 2>/dev/null && echo null-ok; \
             (exec 3</dev/zero) 2>/dev/null && echo zero-read-ok; \
             (exec 3>/dev/zero) 2>/dev/null || echo zero-write-denied; \
             (exec 3</dev/full) 2>/dev/null || echo full-denied",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    guard.cgroup.add_process(child.id() as i32).unwrap();
    writeln!(child.stdin.take().unwrap(), "go").unwrap();
    let out = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["null-ok", "zero-read-ok", "zero-write-denied", "full-denied"]);
    guard.cgroup.delete().unwrap();
    assert!(!leaf.exists());
}

/// The v2 core files (freeze, events, kill, procs) on the hybrid host's cgroup2 mount, which has
/// them without any controller.
#[test]
fn v2_freeze_and_kill_on_the_unified_mount() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let unified = Path::new(MOUNT_ROOT).join("unified");
    if !usable() || detect_version(&unified).ok() != Some(Version::V2) {
        return;
    }
    let cgroup = Cgroup::new(&unified, &unique("freeze")).unwrap();
    let leaf = cgroup.dirs()[0].clone();
    let mut guard = Guard::new(cgroup);
    // mkdir by hand: `create` would enable controllers in the host's unified root.
    std::fs::create_dir_all(&leaf).unwrap();
    guard.extra_dirs.push(leaf.clone());
    if !leaf.join("cgroup.freeze").exists() {
        eprintln!("skipped: no cgroup.freeze on this kernel");
        return;
    }
    let mut child = spawn_waiting_sleep();
    let pid = child.id() as i32;
    guard.cgroup.add_process(pid).unwrap();
    release(&mut child);
    guard.children.push(child);
    let cgroup = &guard.cgroup;
    assert_eq!(cgroup.pids().unwrap(), vec![pid]);

    cgroup.freeze().unwrap();
    assert!(cgroup.is_frozen().unwrap());
    assert!(read(&leaf, "cgroup.events").contains("frozen 1"));
    cgroup.thaw().unwrap();
    assert!(!cgroup.is_frozen().unwrap());

    // While frozen, kill_all must still get the signal through (it thaws afterwards).
    cgroup.freeze().unwrap();
    cgroup.kill_all(Signal::KILL).unwrap();
    if !leaf.join("cgroup.kill").exists() {
        cgroup.thaw().unwrap();
    }
    let status = guard.children[0].wait().unwrap();
    assert!(!status.success());
    let cgroup = &guard.cgroup;
    assert!(cgroup.pids().unwrap().is_empty());
    cgroup.delete().unwrap();
    assert!(!leaf.exists());
}
