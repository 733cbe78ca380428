//! `strata-oci`, the runc command line, end to end: real namespaces, cgroups (v1 here) and
//! mounts, driven the way podman and containerd's runc shim drive runc.
//!
//! Runs as root inside a private mount namespace (the test command does `unshare -m`).

mod support;

use serde_json::json;
use std::io::Read;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use support::bundle::{cgroup_leftovers, wait_exit, Bundle, Runtime};

/// Everything a container leaves once deleted: none of its state, cgroup or processes.
fn assert_gone(rt: &Runtime, b: &Bundle, pid: i32) {
    let o = rt.run(&["state", &b.id]);
    assert_ne!(o.code, 0, "state after delete: {o}");
    assert!(o.stderr.contains("does not exist"), "{o}");
    assert!(!rt.state.path().join(&b.id).exists(), "state dir left behind");
    assert!(cgroup_leftovers(&b.cgroup()).is_empty(), "cgroup left: {:?}", cgroup_leftovers(&b.cgroup()));
    if pid > 0 {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists() || zombie(pid), "process {pid} left running");
    }
}

fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z ")).unwrap_or(true)
}

#[test]
fn run_prints_output_and_exits_with_the_containers_code() {
    let rt = Runtime::strata();
    let b = Bundle::busybox(&["sh", "-c", "echo hello from $(hostname); echo to-stderr >&2; exit 3"]);
    let o = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert_eq!(o.code, 3, "{o}");
    assert_eq!(o.stdout, "hello from strata-test\n", "{o}");
    assert_eq!(o.stderr, "to-stderr\n", "{o}");
    assert_gone(&rt, &b, 0);
}

#[test]
fn a_container_sees_only_itself() {
    let rt = Runtime::strata();
    let script = "echo pid=$$; ps -o pid | tail -n +2 | wc -l; ls /sys/class/net; cut -d' ' -f5 /proc/self/mountinfo | tr '\\n' ' '; echo; \
                  cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /";
    let b = Bundle::busybox(&["sh", "-c", script]);
    let o = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert_eq!(o.code, 0, "{o}");
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines[0], "pid=1", "{o}");
    // sh, ps and the pipeline's helpers: a handful, never the host's hundreds.
    let procs: usize = lines[1].trim().parse().unwrap();
    assert!(procs <= 5, "{procs} processes visible: {o}");
    assert_eq!(lines[2], "lo", "a new network namespace has only lo: {o}");
    // Only the container's root and the spec's mounts (and what they nest), nothing of the host's.
    for mountpoint in lines[3].split_whitespace() {
        let ours = mountpoint == "/" || ["/proc", "/dev", "/sys"].iter().any(|m| mountpoint.starts_with(m));
        assert!(ours, "host mount {mountpoint} visible in the container: {o}");
    }
    assert!(lines[4].starts_with("sh -c"), "PID 1 is the container's process: {o}");
    assert!(o.stdout.contains("bin\n") && !o.stdout.contains("boot\n"), "root is the bundle's rootfs: {o}");
}

#[test]
fn a_cgroup_namespace_is_rooted_at_the_containers_cgroup() {
    let rt = Runtime::strata();
    let b = Bundle::busybox(&["sh", "-c", "cat /proc/self/cgroup"]);
    b.edit(|c| c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "cgroup"})));
    let o = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert_eq!(o.code, 0, "{o}");
    // Every hierarchy shows the container's own cgroup as its root.
    for line in o.stdout.lines() {
        assert!(line.ends_with(":/"), "{line} in {o}");
    }
}

#[test]
fn a_container_joins_every_hierarchy_runc_puts_it_in() {
    // Beyond the controllers: systemd's named hierarchy and, on a hybrid host like this one,
    // the unified cgroup2 one, where systemd tracks which unit a process belongs to. A
    // container left in its caller's there goes down with the caller's scope. runc's view of
    // the same bundle, side by side, is the reference (with the hierarchies the container sees
    // mounted: the v1 ones, not the unified one).
    let runc = Runtime::new("runc");
    let strata = Runtime::strata();
    let mut seen = Vec::new();
    for rt in [&runc, &strata] {
        let b = Bundle::busybox(&["sh", "-c", "cat /proc/self/cgroup; ls /sys/fs/cgroup"]);
        let o = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
        assert_eq!(o.code, 0, "{}: {o}", rt.binary.display());
        let mut lines: Vec<String> = o.stdout.lines().map(|l| l.replace(&b.cgroup(), "CONTAINER")).collect();
        lines.sort();
        assert!(
            cgroup_leftovers(&b.cgroup()).is_empty(),
            "{}: {:?}",
            rt.binary.display(),
            cgroup_leftovers(&b.cgroup())
        );
        seen.push(lines);
    }
    assert_eq!(seen[1], seen[0], "strata-oci's hierarchies (left) against runc's");
    let unified = Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists();
    let systemd = Path::new("/sys/fs/cgroup/systemd/tasks").exists();
    assert!(seen[1].iter().any(|l| l.contains(":name=systemd:CONTAINER")) == systemd, "{:?}", seen[1]);
    assert!(seen[1].iter().any(|l| l == "0::CONTAINER") == unified, "{:?}", seen[1]);
    let memberships: Vec<&String> = seen[1].iter().filter(|l| l.contains(':')).collect();
    assert!(memberships.iter().all(|l| l.ends_with(":CONTAINER")), "in every hierarchy: {memberships:?}");
    assert!(seen[1].iter().any(|l| l == "memory"), "{:?}", seen[1]);
    assert!(seen[1].iter().any(|l| l == "systemd") == systemd, "{:?}", seen[1]);

    // exec'd processes join the same ones.
    let b = Bundle::busybox(&["sleep", "1000"]);
    strata.ok_detached(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &b.id]);
    let o = strata.run(&["exec", &b.id, "sh", "-c", "cat /proc/self/cgroup; ls /sys/fs/cgroup"]);
    assert_eq!(o.code, 0, "{o}");
    let mut lines: Vec<String> = o.stdout.lines().map(|l| l.replace(&b.cgroup(), "CONTAINER")).collect();
    lines.sort();
    assert_eq!(lines, seen[1], "exec");
    let o = strata.run(&["delete", "--force", &b.id]);
    assert_eq!(o.code, 0, "{o}");
    assert!(cgroup_leftovers(&b.cgroup()).is_empty(), "{:?}", cgroup_leftovers(&b.cgroup()));
}

#[test]
fn on_a_cgroup_v2_host_the_init_starts_in_its_cgroup() {
    // This machine is hybrid (v1 controllers, the v2 hierarchy at /sys/fs/cgroup/unified): in
    // a mount namespace of its own with that hierarchy at /sys/fs/cgroup, strata-oci sees a
    // v2 host. Only this command's namespace: the other tests keep their v1 view.
    let unified = Path::new("/sys/fs/cgroup/unified");
    let pure_v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    assert!(pure_v2 || unified.join("cgroup.controllers").exists(), "no cgroup v2 hierarchy on this machine");
    let rt = Runtime::strata();
    let b = Bundle::busybox(&["cat", "/proc/self/cgroup"]);
    // The v2 hierarchy of a hybrid host has no controllers to limit with: ask for none.
    b.edit(|c| c["linux"]["resources"] = json!({}));
    let mount = if pure_v2 { "" } else { "mount --bind /sys/fs/cgroup/unified /sys/fs/cgroup &&" };
    let o = rt.run_after(
        &["unshare", "-m", "--propagation", "private"],
        mount,
        &["--debug", "run", "--bundle", b.path().to_str().unwrap(), &b.id],
    );
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.lines().any(|l| l == format!("0::{}", b.cgroup())), "{o}");
    assert!(o.stderr.contains("started in its cgroup (clone3 CLONE_INTO_CGROUP)"), "{o}");
    let v2_root = if pure_v2 { Path::new("/sys/fs/cgroup") } else { unified };
    assert!(!v2_root.join(b.cgroup().trim_start_matches('/')).exists(), "the cgroup is removed");
}

#[test]
fn a_non_root_process_starts_under_a_strict_umask() {
    // The init reaches the exec fifo by name once it is the container's user: the container's
    // state directory must let it through whatever umask the caller (containerd, podman) has.
    // So must its cgroup directories (a process in a user namespace bind-mounts them, as a
    // host uid that is not root): 0755 as the kernel makes them, not what the umask leaves.
    let rt = Runtime::strata();
    let b = Bundle::busybox(&["sh", "-c", "id -u; stat -c %a /sys/fs/cgroup/pids"]);
    b.edit(|c| c["process"]["user"] = json!({"uid": 1000, "gid": 1000}));
    let o = rt.run_after(&[], "umask 077;", &["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "1000\n755\n"), "{o}");
}

#[test]
fn sysctls_apply_though_proc_sys_is_read_only() {
    // runc's default config makes /proc/sys read-only; the container's own sysctls are written
    // before that, and the container cannot change them afterwards.
    let rt = Runtime::strata();
    let b = Bundle::busybox(&[
        "sh",
        "-c",
        "cat /proc/sys/net/ipv4/ip_forward; echo 0 > /proc/sys/net/ipv4/ip_forward || echo refused",
    ]);
    b.edit(|c| c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"}));
    let o = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "1\nrefused\n"), "{o}");
}

/// A sysctl no namespace of the container holds is the host's: refused (runc's rule), and the
/// host's value is untouched. (The values written are the hosts' own, so a regression could
/// not retune this machine either.)
#[test]
fn sysctls_outside_the_containers_namespaces_are_refused() {
    let rt = Runtime::strata();
    let host = |key: &str| std::fs::read_to_string(format!("/proc/sys/{}", key.replace('.', "/"))).unwrap();
    for (key, drop_ns, words) in [
        ("vm.swappiness", None, "is not in a separate kernel namespace"),
        ("net.ipv4.tcp_fin_timeout", Some("network"), "is not allowed in the host's net namespace"),
        ("kernel.shmmni", Some("ipc"), "is not allowed in the host's ipc namespace"),
    ] {
        let b = Bundle::busybox(&["true"]);
        let before = host(key);
        b.edit(|c| {
            c["linux"]["sysctl"] = json!({key: before.trim()});
            if let Some(ns) = drop_ns {
                c["linux"]["namespaces"].as_array_mut().unwrap().retain(|n| n["type"] != ns);
            }
        });
        let o = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
        assert_ne!(o.code, 0, "{key}: {o}");
        assert!(o.stderr.contains(&format!("linux.sysctl[\"{key}\"]")) && o.stderr.contains(words), "{key}: {o}");
        assert_eq!(host(key), before);
        assert_gone(&rt, &b, 0);
    }
}

#[test]
fn create_start_state_kill_delete() {
    let rt = Runtime::strata();
    let b = Bundle::busybox(&["sleep", "1000"]);
    let pid_file = b.path().join("pid");
    rt.ok_detached(&[
        "create",
        "--bundle",
        b.path().to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &b.id,
    ]);
    let state = rt.state(&b.id);
    assert_eq!(state["status"], "created", "{state}");
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert_eq!(state["pid"], json!(pid));
    assert_eq!(state["id"], json!(b.id));
    assert_eq!(state["bundle"], json!(b.path()));
    // The init is in the container's cgroup, not yet running its program.
    let procs = std::fs::read_to_string(b.cgroup_file("pids", "cgroup.procs")).unwrap();
    assert_eq!(procs.trim(), pid.to_string());
    assert!(!std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap().starts_with("sleep"));

    // As runc: a created container pauses (frozen, "paused"), resumes to "created", and
    // cannot be started while paused.
    rt.ok(&["pause", &b.id]);
    assert_eq!(rt.status(&b.id), "paused");
    assert_eq!(std::fs::read_to_string(b.cgroup_file("freezer", "freezer.state")).unwrap().trim(), "FROZEN");
    let o = rt.run(&["start", &b.id]);
    assert!(o.code != 0 && o.stderr.contains("cannot start a container in the paused state"), "{o}");
    rt.ok(&["resume", &b.id]);
    assert_eq!(rt.status(&b.id), "created");
    let o = rt.run(&["delete", &b.id]);
    assert_eq!(o.code, 0, "a created container can be deleted without --force (runc does): {o}");
    assert_gone(&rt, &b, pid);
    // An empty list prints as runc's does (Go's encoding of an empty slice).
    assert_eq!(rt.ok(&["list", "--format", "json"]).trim(), "null");

    rt.ok_detached(&[
        "create",
        "--bundle",
        b.path().to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &b.id,
    ]);
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    rt.ok(&["start", &b.id]);
    assert_eq!(rt.status(&b.id), "running");
    assert_eq!(std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap(), "sleep\x001000\x00");
    let o = rt.run(&["start", &b.id]);
    assert_ne!(o.code, 0, "{o}");
    let o = rt.run(&["delete", &b.id]);
    assert_ne!(o.code, 0, "delete of a running container needs --force: {o}");
    assert!(o.stderr.contains("running"), "{o}");

    let list: serde_json::Value = serde_json::from_str(&rt.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(list[0]["id"], json!(b.id), "{list}");
    assert_eq!(list[0]["status"], "running", "{list}");
    let ps: Vec<i32> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", &b.id])).unwrap();
    assert_eq!(ps, vec![pid]);

    // Signal 0: is it there? (runc's), and nothing is sent.
    rt.ok(&["kill", &b.id, "0"]);
    assert_eq!(rt.status(&b.id), "running");
    rt.ok(&["kill", &b.id, "SIGKILL"]);
    assert!(wait_exit(pid, Duration::from_secs(10)));
    assert_eq!(rt.status(&b.id), "stopped");
    let o = rt.run(&["kill", &b.id, "TERM"]);
    assert_ne!(o.code, 0, "{o}");
    assert!(o.stderr.contains("container not running"), "{o}");
    rt.ok(&["delete", &b.id]);
    assert_gone(&rt, &b, pid);
    // runc's: with --force, deleting what is not there succeeds (cleanup paths rely on it).
    let o = rt.run(&["delete", "--force", &b.id]);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""), "{o}");
}

#[test]
fn unknown_containers_and_signals_are_errors_callers_recognise() {
    let rt = Runtime::strata();
    for args in [vec!["state", "nope"], vec!["start", "nope"], vec!["kill", "nope", "KILL"], vec!["delete", "nope"]] {
        let o = rt.run(&args);
        assert_eq!(o.code, 1, "{args:?}: {o}");
        assert!(o.stderr.contains("does not exist"), "{args:?}: {o}");
    }
    // A flag we do not know: one line naming it (containerd and podman quote our stderr).
    let o = rt.run(&["run", "--bogus", "x"]);
    assert_eq!(o.code, 1, "{o}");
    assert_eq!(o.stderr, "unexpected argument '--bogus' found (see 'strata-oci run --help')\n", "{o}");
    let b = Bundle::busybox(&["sleep", "1000"]);
    rt.ok_detached(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &b.id]);
    let o = rt.run(&["kill", &b.id, "SIGNOPE"]);
    assert_eq!(o.code, 1, "{o}");
    assert!(o.stderr.contains("SIGNOPE"), "{o}");
    rt.ok(&["delete", "--force", &b.id]);
    assert_gone(&rt, &b, 0);
}

#[test]
fn a_spec_without_device_rules_still_denies_what_is_not_allowed() {
    let rt = Runtime::strata();
    let b = Bundle::busybox(&["sleep", "1000"]);
    b.edit(|c| {
        c["linux"]["resources"]["devices"] = json!([]);
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set].as_array_mut().unwrap().push(json!("CAP_MKNOD"));
        }
    });
    rt.ok_detached(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &b.id]);
    let list = b.cgroup_file("devices", "devices.list");
    if list.exists() {
        // As runc: a deny-all under the spec's (no) rules, then the defaults every container needs.
        let allowed = std::fs::read_to_string(&list).unwrap();
        assert!(!allowed.contains("a *:* rwm"), "every device open:\n{allowed}");
        assert!(allowed.lines().any(|l| l == "c 1:3 rwm"), "/dev/null:\n{allowed}");
    }
    // A disk's node made inside (CAP_MKNOD allows that much) cannot be opened.
    let o = rt.run(&["exec", &b.id, "sh", "-c", "mknod /tmp/disk b 8 0 && head -c1 /tmp/disk"]);
    assert_ne!(o.code, 0, "{o}");
    assert!(o.stderr.contains("Operation not permitted"), "{o}");
    rt.ok(&["delete", "--force", &b.id]);
}

#[test]
fn a_device_node_is_allowed_only_what_the_rules_say() {
    // As runc: a node of linux.devices gets no allow rule of its own. Given with a read-only
    // rule, it opens for reading only (strata used to allow it rwm).
    let rt = Runtime::strata();
    let b = Bundle::busybox(&["sh", "-c", "exec 3</dev/myfuse && echo read; exec 4>/dev/myfuse && echo written"]);
    b.edit(|c| {
        c["linux"]["devices"] =
            json!([{"path": "/dev/myfuse", "type": "c", "major": 10, "minor": 229, "fileMode": 384, "uid": 0, "gid": 0}]);
        c["linux"]["resources"]["devices"] = json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "r"}
        ]);
    });
    let o = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert_ne!(o.code, 0, "{o}");
    assert_eq!(o.stdout, "read\n", "{o}");
    assert!(o.stderr.contains("Operation not permitted"), "{o}");
    assert_gone(&rt, &b, 0);
}

#[test]
fn systemd_cgroup_paths_land_where_systemd_puts_the_scope() {
    let rt = Runtime::strata();
    let b = Bundle::busybox(&["sh", "-c", "grep memory /proc/self/cgroup"]);
    let slice = format!("stratatest{}.slice", std::process::id());
    // As podman passes it with systemd as its cgroup manager.
    b.edit(|c| c["linux"]["cgroupsPath"] = json!(format!("{slice}:libpod:{}", b.id)));
    let bundle = b.path().to_str().unwrap();
    let o = rt.run(&["--systemd-cgroup", "run", "--bundle", bundle, &b.id]);
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.trim_end().ends_with(&format!(":memory:/{slice}/libpod-{}.scope", b.id)), "{o}");
    // The container's scope goes with it; the slice stays, as a parent does (systemd's own
    // slices outlive their scopes too).
    assert!(cgroup_leftovers(&format!("/{slice}/libpod-{}.scope", b.id)).is_empty());
    for dir in cgroup_leftovers(&format!("/{slice}")) {
        std::fs::remove_dir(&dir).unwrap();
    }
    // The flag with a path not in that form: runc's error, nothing made.
    b.edit(|c| c["linux"]["cgroupsPath"] = json!(format!("/{slice}/x")));
    let o = rt.run(&["--systemd-cgroup", "run", "--bundle", bundle, &b.id]);
    assert_ne!(o.code, 0, "{o}");
    assert!(o.stderr.contains("expected cgroupsPath to be of format \"slice:prefix:name\""), "{o}");
    assert!(cgroup_leftovers(&format!("/{slice}")).is_empty(), "nothing made");
    // The other commands take the flag too (podman passes it to every one).
    let o = rt.run(&["--systemd-cgroup", "state", &b.id]);
    assert!(o.stderr.contains("does not exist"), "{o}");
}

#[test]
fn exec_runs_in_the_containers_namespaces_and_cgroup() {
    let rt = Runtime::strata();
    let b = Bundle::busybox(&["sleep", "1000"]);
    b.edit(|c| c["hostname"] = json!("exec-host"));
    rt.ok_detached(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &b.id]);
    let o = rt.run(&["exec", &b.id, "sh", "-c", "echo $(hostname) $$; cat /proc/1/cmdline; echo; exit 7"]);
    assert_eq!(o.code, 7, "{o}");
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines[0].split(' ').next(), Some("exec-host"), "{o}");
    assert_ne!(lines[0].split(' ').nth(1), Some("1"), "{o}");
    assert_eq!(lines[1], "sleep\u{0}1000\u{0}", "{o}");

    let o = rt.run(&[
        "exec",
        "--env",
        "GREETING=hi",
        "--user",
        "65534:65534",
        "--cwd",
        "/tmp",
        &b.id,
        "sh",
        "-c",
        "id -u; id -g; pwd; echo $GREETING",
    ]);
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(o.stdout, "65534\n65534\n/tmp\nhi\n", "{o}");

    // A process file, detached, with a pid file; the process is in the container's cgroup.
    let process = json!({"args": ["sleep", "999"], "cwd": "/", "user": {"uid": 0, "gid": 0},
        "env": ["PATH=/bin"]});
    let pf = b.path().join("process.json");
    std::fs::write(&pf, process.to_string()).unwrap();
    let pid_file = b.path().join("exec.pid");
    rt.ok_detached(&[
        "exec",
        "--detach",
        "--process",
        pf.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &b.id,
    ]);
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let procs = std::fs::read_to_string(b.cgroup_file("pids", "cgroup.procs")).unwrap();
    assert!(procs.lines().any(|p| p == pid.to_string()), "exec'd {pid} not in cgroup: {procs}");

    // --cap adds to the process's sets (by name with or without CAP_, in any case).
    let cap_eff = |extra: &[&str]| {
        let args = [&["exec"][..], extra, &[&b.id, "grep", "CapEff", "/proc/self/status"]].concat();
        let out = rt.ok(&args);
        u64::from_str_radix(out.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    const NET_RAW: u64 = 1 << 13;
    assert_eq!(cap_eff(&[]) & NET_RAW, 0);
    assert_eq!(cap_eff(&["--cap", "CAP_NET_RAW"]) & NET_RAW, NET_RAW);
    assert_eq!(cap_eff(&["--cap", "net_raw"]) & NET_RAW, NET_RAW);
    let o = rt.run(&["exec", "--cwd", "relative", &b.id, "true"]);
    assert!(o.code == 255 && o.stderr.contains("Cwd must be an absolute path"), "{o}");
    // runc refuses an environment entry that is not KEY=VALUE (it passed through as "FOO").
    let o = rt.run(&["exec", "--env", "FOO", &b.id, "env"]);
    assert_eq!(o.code, 255, "{o}");
    assert!(o.stdout.is_empty() && o.stderr.contains(r#"invalid environment variable: "FOO""#), "{o}");
    // A failure of the runtime's, not the program's: runc's 255.
    let o = rt.run(&["exec", &b.id, "/no/such/program"]);
    assert_eq!(o.code, 255, "{o}");
    assert!(o.stderr.contains("no such file or directory"), "{o}");
    // (uid_t)-1 is "leave unchanged" to setresuid: refused, not run as root.
    let o = rt.run(&["exec", "--user", "4294967295:0", &b.id, "id", "-u"]);
    assert_eq!(o.code, 255, "{o}");
    assert!(o.stdout.is_empty() && o.stderr.contains("user.uid: 4294967295 is not an id"), "{o}");
    rt.ok(&["delete", "--force", &b.id]);
    assert!(wait_exit(pid, Duration::from_secs(10)), "the exec'd process dies with the container");
    let o = rt.run(&["exec", &b.id, "true"]);
    assert!(o.code == 255 && o.stderr.contains("does not exist"), "{o}");
    assert_gone(&rt, &b, pid);
}

#[test]
fn missing_or_unexecutable_programs_fail_create_with_runcs_words() {
    let rt = Runtime::strata();
    for (args, words) in [
        (vec!["nosuchprogram"], "executable file not found in $PATH"),
        (vec!["/bin/nope"], "no such file or directory"),
        (vec!["/etc/passwd"], "permission denied"),
    ] {
        let b = Bundle::busybox(&args);
        let o = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
        assert_ne!(o.code, 0, "{o}");
        assert!(o.stderr.contains(words), "{args:?}: expected {words:?} in {o}");
        assert_gone(&rt, &b, 0);
    }
}

/// CVE-2024-21626: a cwd of `/proc/self/fd/N` would start the process in a directory the
/// runtime holds open outside the root, and `..` from there walks the host's filesystem. An
/// image sets the cwd (WorkingDir), so this must fail, naming the cwd, for every N.
#[test]
fn a_cwd_through_proc_self_fd_never_reaches_the_host() {
    let rt = Runtime::strata();
    let canary = tempfile::Builder::new().prefix("strata-cwd-canary").tempfile_in("/tmp").unwrap();
    let name = canary.path().file_name().unwrap().to_str().unwrap().to_string();
    let script = format!("cd ../../../../../../../../../..; test -e tmp/{name} && echo ESCAPED || echo inside");
    let mut refused = 0;
    for n in 3..12 {
        let b = Bundle::busybox(&["sh", "-c", &script]);
        b.edit(|c| c["process"]["cwd"] = json!(format!("/proc/self/fd/{n}")));
        let o = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
        assert!(!o.stdout.contains("ESCAPED"), "cwd /proc/self/fd/{n} reached the host: {o}");
        if o.code != 0 {
            assert!(o.stderr.contains("cwd") && o.stderr.contains(&format!("/proc/self/fd/{n}")), "{o}");
            refused += o.stderr.contains("outside the container's root filesystem") as usize;
        }
        assert_gone(&rt, &b, 0);
    }
    // The init holds the exec fifo's directory open while it sets up: that one is caught.
    assert!(refused >= 1, "no cwd was found outside the root");
}

/// A missing cwd is made (runc's behaviour), but only inside the root: a cwd that reaches
/// the host through a `/proc/self/fd` link must not have its missing part made on the host.
#[test]
fn a_missing_cwd_through_proc_self_fd_is_not_made_on_the_host() {
    let rt = Runtime::strata();
    let host_dir = tempfile::Builder::new().prefix("strata-cwd-made").tempdir_in("/tmp").unwrap();
    let made = host_dir.path().join("made");
    for n in 3..12 {
        let b = Bundle::busybox(&["true"]);
        let cwd = format!("/proc/self/fd/{n}/../../../../../../../..{}", made.display());
        b.edit(|c| c["process"]["cwd"] = json!(cwd));
        let o = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
        assert_ne!(o.code, 0, "{o}");
        assert!(o.stderr.contains("cwd") && o.stderr.contains(&cwd), "{o}");
        assert!(!made.exists(), "cwd {cwd} was made on the host");
        assert_gone(&rt, &b, 0);
    }
}

/// An image that ships `/proc -> /` must not get procfs mounted over its whole root (the
/// masked paths would then name nothing and go unprotected): the mount is refused.
#[test]
fn a_mount_over_the_whole_root_through_a_symlink_is_refused() {
    let rt = Runtime::strata();
    let b = Bundle::busybox(&["true"]);
    let proc = b.rootfs().join("proc");
    let _ = std::fs::remove_dir(&proc);
    std::os::unix::fs::symlink("/", &proc).unwrap();
    let o = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert_ne!(o.code, 0, "{o}");
    assert!(o.stderr.contains("mounting /proc: the destination resolves to the container's root"), "{o}");
    assert_gone(&rt, &b, 0);
}

/// A `ro` bind of a host directory stays read-only whatever the image and the directory
/// hold: an image's `data -> /x/y/lnk/..`, with `lnk -> /` in the host directory, once led
/// the read-only remount (which looked the destination up again, through the new mount)
/// onto the container's root, and left the host directory writable.
#[test]
fn a_read_only_bind_stays_read_only_whatever_its_symlinks() {
    let rt = Runtime::strata();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("precious"), "kept\n").unwrap();
    std::os::unix::fs::symlink("/", host.path().join("lnk")).unwrap();
    let script = "echo changed >> /x/y/precious; touch /x/y/new; grep ' /x/y ' /proc/self/mountinfo";
    let b = Bundle::busybox(&["sh", "-c", script]);
    std::fs::create_dir_all(b.rootfs().join("x/y/lnk")).unwrap();
    std::os::unix::fs::symlink("/x/y/lnk/..", b.rootfs().join("data")).unwrap();
    b.edit(|c| {
        c["root"]["readonly"] = json!(false);
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/data", "type": "bind", "source": host.path(), "options": ["rbind", "ro"]}))
    });
    let o = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert_eq!(std::fs::read_to_string(host.path().join("precious")).unwrap(), "kept\n", "{o}");
    assert!(!host.path().join("new").exists(), "{o}");
    let options: Vec<&str> = o.stdout.split_whitespace().nth(5).unwrap_or("").split(',').collect();
    assert!(options.contains(&"ro"), "{o}");
    assert_gone(&rt, &b, 0);
}

/// `rro` makes a bind and the mounts under it read-only (it was accepted and ignored);
/// `ro` alone leaves a submount as it is, as runc does.
#[test]
fn rro_makes_every_mount_under_a_bind_read_only() {
    let rt = Runtime::strata();
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir(src.path().join("sub")).unwrap();
    let script = "touch /r/new /r/sub/new /o/sub/new 2>/dev/null; grep -E ' /(r|o)(/sub)? ' /proc/self/mountinfo";
    let b = Bundle::busybox(&["sh", "-c", script]);
    b.edit(|c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(json!({"destination": "/r", "type": "bind", "source": src.path(), "options": ["rbind", "rro"]}));
        mounts.push(json!({"destination": "/o", "type": "bind", "source": src.path(), "options": ["rbind", "ro"]}));
    });
    // The submount: a tmpfs, in a mount namespace of this run's own.
    let prelude = format!("mount -t tmpfs tmpfs {}/sub &&", src.path().display());
    let o = rt.run_after(
        &["unshare", "-m", "--propagation", "private"],
        &prelude,
        &["run", "--bundle", b.path().to_str().unwrap(), &b.id],
    );
    let mode = |target: &str| {
        let line = o.stdout.lines().find(|l| l.split_whitespace().nth(4) == Some(target));
        line.and_then(|l| l.split_whitespace().nth(5)).map(|opts| opts.split(',').next().unwrap_or("").to_string())
    };
    assert_eq!(mode("/r").as_deref(), Some("ro"), "{o}");
    assert_eq!(mode("/r/sub").as_deref(), Some("ro"), "{o}");
    assert_eq!(mode("/o").as_deref(), Some("ro"), "{o}");
    assert_eq!(mode("/o/sub").as_deref(), Some("rw"), "{o}");
    assert!(!src.path().join("new").exists(), "{o}");
    assert_gone(&rt, &b, 0);
}

/// A `ro` bind keeps its source's nosuid, nodev and noexec: the remount that makes it
/// read-only must not give the container more than the host mount allows.
#[test]
fn a_read_only_bind_keeps_its_sources_restrictions() {
    let rt = Runtime::strata();
    let src = tempfile::tempdir().unwrap();
    let b = Bundle::busybox(&["sh", "-c", "grep ' /rov ' /proc/self/mountinfo"]);
    b.edit(|c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/rov", "type": "bind", "source": src.path(), "options": ["rbind", "ro"]}))
    });
    // The source: a nosuid,nodev,noexec tmpfs, in a mount namespace of this run's own.
    let prelude = format!("mount -t tmpfs -o nosuid,nodev,noexec tmpfs {} &&", src.path().display());
    let o = rt.run_after(
        &["unshare", "-m", "--propagation", "private"],
        &prelude,
        &["run", "--bundle", b.path().to_str().unwrap(), &b.id],
    );
    assert_eq!(o.code, 0, "{o}");
    let options: Vec<&str> = o.stdout.split_whitespace().nth(5).unwrap_or("").split(',').collect();
    for flag in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(options.contains(&flag), "{flag} missing: {o}");
    }
    assert_gone(&rt, &b, 0);
}

#[test]
fn an_invalid_config_is_an_error_naming_the_field() {
    let rt = Runtime::strata();
    let b = Bundle::busybox(&["true"]);
    b.edit(|c| c["process"]["user"]["uid"] = json!("root"));
    let o = rt.run_detached(&["create", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert_eq!(o.code, 1, "{o}");
    assert!(o.stderr.contains("process.user.uid"), "{o}");
    assert_eq!(o.stderr.trim().lines().count(), 1, "{o}");
    b.edit(|c| c["process"]["user"]["uid"] = json!(0)).edit(|c| c["mounts"][0]["destination"] = json!("proc"));
    let o = rt.run_detached(&["create", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert!(o.stderr.contains("mounts[0].destination"), "{o}");
    assert_gone(&rt, &b, 0);
    // No config.json at all: the file and the reason, the reason said once.
    let missing = b.path().join("no-such-bundle");
    let o = rt.run_detached(&["create", "--bundle", missing.to_str().unwrap(), &b.id]);
    assert_eq!(o.code, 1, "{o}");
    let line = format!("cannot read {}: No such file or directory (os error 2)", missing.join("config.json").display());
    assert_eq!(o.stderr.trim(), line, "{o}");
    assert_gone(&rt, &b, 0);
}

#[test]
fn console_socket_receives_the_terminal() {
    let rt = Runtime::strata();
    let b = Bundle::busybox(&["sh", "-c", "tty; stty size; echo done"]);
    b.edit(|c| {
        c["process"]["terminal"] = json!(true);
        c["process"]["consoleSize"] = json!({"height": 30, "width": 100});
    });
    let sock_path = b.path().join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let create = rt
        .command(&[
            "create",
            "--bundle",
            b.path().to_str().unwrap(),
            "--console-socket",
            sock_path.to_str().unwrap(),
            &b.id,
        ])
        .spawn()
        .unwrap();
    let (conn, _) = listener.accept().unwrap();
    let master = strata::sandbox::console::recv_master(std::os::fd::AsFd::as_fd(&conn)).unwrap();
    assert!(create.wait_with_output().unwrap().status.success());
    rt.ok(&["start", &b.id]);
    let mut out = String::new();
    let mut f = std::fs::File::from(master);
    let mut buf = [0u8; 1024];
    // EIO once the container's side of the terminal is closed.
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(out.contains("/dev/pts/0"), "{out:?}");
    assert!(out.contains("30 100"), "process.consoleSize: {out:?}");
    assert!(out.contains("done"), "{out:?}");
    rt.ok(&["delete", "--force", &b.id]);

    // A terminal without a console socket for a detached container: runc's error.
    let o = rt.run_detached(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert!(o.stderr.contains("without setting console socket"), "{o}");
    assert_gone(&rt, &b, 0);
}

#[test]
fn pause_resume_and_update() {
    let rt = Runtime::strata();
    let b = Bundle::busybox(&["sleep", "1000"]);
    rt.ok_detached(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &b.id]);
    rt.ok(&["pause", &b.id]);
    assert_eq!(rt.status(&b.id), "paused");
    assert_eq!(std::fs::read_to_string(b.cgroup_file("freezer", "freezer.state")).unwrap().trim(), "FROZEN");
    let o = rt.run(&["pause", &b.id]);
    assert_ne!(o.code, 0, "{o}");
    rt.ok(&["resume", &b.id]);
    assert_eq!(rt.status(&b.id), "running");
    assert_eq!(std::fs::read_to_string(b.cgroup_file("freezer", "freezer.state")).unwrap().trim(), "THAWED");

    let resources = b.path().join("resources.json");
    std::fs::write(&resources, r#"{"memory": {"limit": 67108864}, "pids": {"limit": 42}}"#).unwrap();
    rt.ok(&["update", "--resources", resources.to_str().unwrap(), &b.id]);
    assert_eq!(std::fs::read_to_string(b.cgroup_file("memory", "memory.limit_in_bytes")).unwrap().trim(), "67108864");
    assert_eq!(std::fs::read_to_string(b.cgroup_file("pids", "pids.max")).unwrap().trim(), "42");
    // As runc: 0 leaves a value as it is (containerd and podman send every field), -1 lifts
    // a limit, and sizes take units.
    let read = |controller: &str, file: &str| std::fs::read_to_string(b.cgroup_file(controller, file)).unwrap();
    std::fs::write(
        &resources,
        r#"{"memory": {"limit": 0, "reservation": 0}, "pids": {"limit": 0}, "cpu": {"shares": 0}}"#,
    )
    .unwrap();
    rt.ok(&["update", "--resources", resources.to_str().unwrap(), &b.id]);
    rt.ok(&["update", "--memory", "0", "--pids-limit", "0", &b.id]);
    assert_eq!((read("memory", "memory.limit_in_bytes").trim(), read("pids", "pids.max").trim()), ("67108864", "42"));
    rt.ok(&["update", "--memory", "100m", "--pids-limit", "-1", "--cpu-share", "512", &b.id]);
    assert_eq!((read("memory", "memory.limit_in_bytes").trim(), read("pids", "pids.max").trim()), ("104857600", "max"));
    assert_eq!(read("cpu", "cpu.shares").trim(), "512");
    rt.ok(&["update", "--memory", "-1", &b.id]);
    assert!(read("memory", "memory.limit_in_bytes").trim().parse::<u64>().unwrap() > 1 << 60, "no limit");
    // SIGKILL ends a paused container (runc thaws it for that signal); SIGTERM waits for resume.
    let pid = rt.state(&b.id)["pid"].as_i64().unwrap() as i32;
    rt.ok(&["pause", &b.id]);
    rt.ok(&["kill", &b.id, "TERM"]);
    assert_eq!(rt.status(&b.id), "paused");
    rt.ok(&["kill", &b.id, "KILL"]);
    assert!(wait_exit(pid, Duration::from_secs(10)), "the paused init dies of SIGKILL");
    assert_eq!(rt.status(&b.id), "stopped");
    assert_eq!(rt.ok(&["ps", "--format", "json", &b.id]).trim(), "null", "no processes, as runc prints it");
    rt.ok(&["delete", &b.id]);
    assert_gone(&rt, &b, 0);
}

#[test]
fn resources_are_enforced() {
    let rt = Runtime::strata();
    // Memory: allocating past the limit gets the container OOM-killed (137).
    let b = Bundle::busybox(&["sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"]);
    b.edit(|c| c["linux"]["resources"]["memory"] = json!({"limit": 33554432, "swap": 33554432}));
    let o = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert_eq!(o.code, 137, "{o}");
    assert!(!o.stdout.contains("survived"), "{o}");
    assert_gone(&rt, &b, 0);

    // pids: a fork bomb is held to the limit.
    let bomb = "(for i in $(seq 1 100); do sleep 1000 & done) 2>/dev/null; echo bombed; exec sleep 1000";
    let b = Bundle::busybox(&["sh", "-c", bomb]);
    b.edit(|c| c["linux"]["resources"]["pids"] = json!({"limit": 20}));
    let mut run = rt
        .command(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &b.id])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(run.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line, "bombed\n");
    assert!(run.wait().unwrap().success());
    let current: usize =
        std::fs::read_to_string(b.cgroup_file("pids", "pids.current")).unwrap().trim().parse().unwrap();
    assert!(current <= 20, "{current} processes under pids.max 20");
    let events = std::fs::read_to_string(b.cgroup_file("pids", "pids.events")).unwrap();
    let refused: u64 = events.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(refused > 0, "the limit was hit: {events}");
    rt.ok(&["delete", "--force", &b.id]);
    assert_gone(&rt, &b, 0);
}

#[test]
fn process_identity_limits_and_readonly_paths() {
    let rt = Runtime::strata();
    let script = "id -u; id -g; id -G; ulimit -n; umask; \
        hostname x 2>/dev/null && echo hostname-changed || echo hostname-denied; \
        touch /newfile 2>/dev/null && echo root-writable || echo root-readonly; \
        cat /proc/kcore 2>/dev/null | head -c1 | wc -c; \
        echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo sys-writable || echo sys-readonly; \
        grep CapEff /proc/self/status";
    let b = Bundle::busybox(&["sh", "-c", script]);
    b.edit(|c| {
        c["process"]["user"] = json!({"uid": 1000, "gid": 1001, "additionalGids": [2000], "umask": 63});
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 321, "soft": 123}]);
        c["root"]["readonly"] = json!(true);
    });
    let o = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert_eq!(o.code, 0, "{o}");
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(&lines[..5], &["1000", "1001", "1001 2000", "123", "0077"], "{o}");
    assert_eq!(lines[5], "hostname-denied", "no CAP_SYS_ADMIN: {o}");
    assert_eq!(lines[6], "root-readonly", "{o}");
    assert_eq!(lines[7].trim(), "0", "/proc/kcore is masked: {o}");
    assert_eq!(lines[8], "sys-readonly", "{o}");
    assert_eq!(
        lines[9].split_whitespace().nth(1),
        Some("0000000000000000"),
        "a non-root user keeps no effective caps: {o}"
    );
    assert_gone(&rt, &b, 0);
}

/// A masked or read-only path that is a symlink: to nothing, skipped (runc's and crun's
/// behaviour; images ship such links); to a file or directory of the container, what it names
/// is masked or made read-only.
#[test]
fn masked_and_readonly_paths_through_symlinks() {
    let rt = Runtime::strata();
    let b = Bundle::busybox(&[
        "sh",
        "-c",
        "cat /secret-link; echo; ls /dir-link | wc -l; touch /ro-link/f 2>/dev/null && echo writable || echo readonly",
    ]);
    let root = b.rootfs();
    std::fs::write(root.join("secret"), "SECRET").unwrap();
    std::fs::create_dir(root.join("dir")).unwrap();
    std::fs::write(root.join("dir/a"), "").unwrap();
    std::fs::create_dir(root.join("ro")).unwrap();
    for (link, target) in
        [("dangling", "/nowhere"), ("secret-link", "/secret"), ("dir-link", "dir"), ("ro-link", "/ro")]
    {
        std::os::unix::fs::symlink(target, root.join(link)).unwrap();
    }
    b.edit(|c| {
        c["linux"]["maskedPaths"] = json!(["/dangling", "/secret-link", "/dir-link"]);
        c["linux"]["readonlyPaths"] = json!(["/dangling", "/ro-link"]);
    });
    let o = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "\n0\nreadonly\n"), "{o}");
    assert_gone(&rt, &b, 0);
}

/// runc's: a working directory the root lacks is made, as root, inside the root.
#[test]
fn a_missing_cwd_is_made() {
    let rt = Runtime::strata();
    let b = Bundle::busybox(&["sh", "-c", "pwd; stat -c %a:%u /work/dir"]);
    b.edit(|c| {
        c["process"]["cwd"] = json!("/work/dir");
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    });
    let o = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "/work/dir\n755:0\n"), "{o}");
    assert!(b.rootfs().join("work/dir").is_dir());
    assert_gone(&rt, &b, 0);
}

/// The missing cwd is made where the kernel's chdir will look for it: after the
/// createContainer hooks (one may mount over its parent, as runc allows) and with `..` taken
/// after a symlink as the kernel takes it (`/link/../x` is `/a/x` when `/link -> /a/b`).
#[test]
fn a_missing_cwd_is_made_after_the_hooks_and_through_symlinks() {
    let rt = Runtime::strata();
    let b = Bundle::busybox(&["sh", "-c", "pwd; grep -c ' /workspace tmpfs' /proc/mounts"]);
    let rootfs = b.rootfs();
    std::fs::create_dir(rootfs.join("workspace")).unwrap();
    let mount = format!("mount -t tmpfs none {}/workspace", rootfs.display());
    b.edit(|c| {
        c["process"]["cwd"] = json!("/workspace/proj");
        c["hooks"] = json!({"createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", mount]}]});
    });
    let o = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "/workspace/proj\n1\n"), "{o}");
    assert!(!rootfs.join("workspace/proj").exists(), "made in the image's layer, under the hook's mount");
    assert_gone(&rt, &b, 0);

    let b = Bundle::busybox(&["pwd"]);
    let rootfs = b.rootfs();
    std::fs::create_dir_all(rootfs.join("a/b")).unwrap();
    std::os::unix::fs::symlink("/a/b", rootfs.join("link")).unwrap();
    b.edit(|c| c["process"]["cwd"] = json!("/link/../x/y"));
    let o = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "/a/x/y\n"), "{o}");
    assert!(rootfs.join("a/x/y").is_dir() && !rootfs.join("x").exists());
    assert_gone(&rt, &b, 0);
}

#[test]
fn seccomp_blocks_a_syscall() {
    let rt = Runtime::strata();
    let b = Bundle::busybox(&["sh", "-c", "mkdir /tmp/d && echo mkdir-ok || echo mkdir-blocked; echo alive"]);
    b.edit(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        })
    });
    let o = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(o.stdout, "mkdir-blocked\nalive\n", "{o}");
    assert!(!b.rootfs().join("tmp/d").exists());
}

#[test]
fn user_namespace_root_inside_is_not_root_outside() {
    let rt = Runtime::strata();
    let b =
        Bundle::busybox(&["sh", "-c", "id -u; cat /proc/self/uid_map; touch /tmp/made-inside; echo ready; sleep 1000"]);
    b.edit(|c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    });
    // The mapped root must be able to use its rootfs.
    support::run(std::process::Command::new("chown").args(["-R", "100000:100000"]).arg(b.rootfs()));
    let mut child = rt
        .command(&["run", "--bundle", b.path().to_str().unwrap(), &b.id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Block on the container's output until it says it is ready.
    let mut printed = String::new();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    while !printed.ends_with("ready\n") {
        let n = std::io::BufRead::read_line(&mut reader, &mut printed).unwrap();
        if n == 0 {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("container exited early: {printed} {err}");
        }
    }
    let made = b.rootfs().join("tmp/made-inside");
    let pid = rt.state(&b.id)["pid"].as_i64().unwrap() as i32;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(uid_line.split_whitespace().nth(1), Some("100000"), "{uid_line}");
    let md = std::fs::metadata(&made).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&md), 100000, "files created inside belong to the mapped user");
    rt.ok(&["kill", &b.id, "KILL"]);
    child.wait().unwrap();
    assert!(printed.starts_with("0\n"), "root inside: {printed}");
    assert!(printed.contains("100000"), "{printed}");
    assert_gone(&rt, &b, pid);
}

#[test]
fn hooks_run_in_order_with_the_state_on_stdin() {
    let rt = Runtime::strata();
    let b = Bundle::busybox(&["sh", "-c", "echo main"]);
    let log = b.path().join("hooks.log");
    let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("read -r state; echo {name} \"$state\" >> {}", log.display())]});
    b.edit(|c| {
        c["hooks"] = json!({
            "createRuntime": [hook("createRuntime")],
            "createContainer": [hook("createContainer")],
            "prestart": [hook("prestart")],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")],
        })
    });
    let o = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert_eq!(o.code, 0, "{o}");
    let text = std::fs::read_to_string(&log).unwrap();
    let names: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(names, ["prestart", "createRuntime", "createContainer", "poststart", "poststop"], "{text}");
    for line in text.lines() {
        let (name, state) = line.split_once(' ').unwrap();
        let state: serde_json::Value = serde_json::from_str(state).unwrap();
        assert_eq!(state["id"], json!(b.id), "{line}");
        if name == "createContainer" {
            // Run by the init, in the container's pid namespace: its own pid, as runc's.
            assert_eq!(state["pid"], json!(1), "{line}");
        }
    }

    // A failing prestart hook fails create and leaves nothing.
    let b2 = Bundle::busybox(&["true"]);
    b2.edit(|c| c["hooks"] = json!({"prestart": [{"path": "/bin/false"}]}));
    let o = rt.run(&["run", "--bundle", b2.path().to_str().unwrap(), &b2.id]);
    assert_ne!(o.code, 0, "{o}");
    assert!(o.stderr.contains("prestart"), "{o}");
    assert_gone(&rt, &b2, 0);
}

/// A hook that reports its pid through `fifo` and then blocks: lets a test kill strata-oci
/// at a known point without sleeping.
fn blocking_hook(fifo: &std::path::Path) -> serde_json::Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo $$ > {}; exec sleep 1000", fifo.display())]})
}

fn read_pid_from_fifo(fifo: &std::path::Path) -> i32 {
    std::fs::read_to_string(fifo).unwrap().trim().parse().unwrap()
}

fn mkfifo(path: &std::path::Path) {
    rustix::fs::mknodat(rustix::fs::CWD, path, rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0)
        .unwrap();
}

#[test]
fn killed_during_create_then_delete_force_leaves_nothing() {
    let rt = Runtime::strata();
    let b = Bundle::busybox(&["sleep", "1000"]);
    let fifo = b.path().join("hook.fifo");
    mkfifo(&fifo);
    b.edit(|c| c["hooks"] = json!({"createRuntime": [blocking_hook(&fifo)]}));
    let mut create = rt.command(&["create", "--bundle", b.path().to_str().unwrap(), &b.id]).spawn().unwrap();
    let hook_pid = read_pid_from_fifo(&fifo);
    let state = rt.state(&b.id);
    let init_pid = state["pid"].as_i64().unwrap() as i32;
    assert!(init_pid > 0, "{state}");
    create.kill().unwrap();
    create.wait().unwrap();
    // SAFETY: the hook's sleep is our own grandchild, known by pid.
    unsafe { libc::kill(hook_pid, libc::SIGKILL) };
    let o = rt.run(&["delete", "--force", &b.id]);
    assert_eq!(o.code, 0, "{o}");
    assert!(wait_exit(init_pid, Duration::from_secs(5)));
    assert_gone(&rt, &b, init_pid);
}

#[test]
fn killed_during_start_then_delete_force_leaves_nothing() {
    let rt = Runtime::strata();
    let b = Bundle::busybox(&["sleep", "1000"]);
    let fifo = b.path().join("hook.fifo");
    mkfifo(&fifo);
    b.edit(|c| c["hooks"] = json!({"poststart": [blocking_hook(&fifo)]}));
    rt.ok_detached(&["create", "--bundle", b.path().to_str().unwrap(), &b.id]);
    let init_pid = rt.state(&b.id)["pid"].as_i64().unwrap() as i32;
    let mut start = rt.command(&["start", &b.id]).spawn().unwrap();
    let hook_pid = read_pid_from_fifo(&fifo);
    start.kill().unwrap();
    start.wait().unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(hook_pid, libc::SIGKILL) };
    assert_eq!(rt.status(&b.id), "running");
    rt.ok(&["delete", "--force", &b.id]);
    assert_gone(&rt, &b, init_pid);
}

#[test]
fn home_is_the_users_from_the_containers_passwd_unless_set() {
    let rt = Runtime::strata();
    let b = Bundle::busybox(&["sh", "-c", "echo $HOME; sleep 1000"]);
    std::fs::create_dir_all(b.rootfs().join("etc")).unwrap();
    std::fs::write(b.rootfs().join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n")
        .unwrap();
    let bundle = b.path().to_str().unwrap().to_string();
    let mut child = rt.command(&["run", "--bundle", &bundle, &b.id]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line, "/root\n", "runc's HOME for uid 0");
    // An exec'd process too: its own user's, or / when passwd has none.
    assert_eq!(rt.ok(&["exec", "-u", "1000", &b.id, "sh", "-c", "echo $HOME"]), "/home/u\n");
    assert_eq!(rt.ok(&["exec", "-u", "4242", &b.id, "sh", "-c", "echo $HOME"]), "/\n");
    assert_eq!(rt.ok(&["exec", "-e", "HOME=/x", &b.id, "sh", "-c", "echo $HOME"]), "/x\n");
    rt.ok(&["kill", &b.id, "KILL"]);
    child.wait().unwrap();
    assert_gone(&rt, &b, 0);
}

#[test]
fn the_container_gets_a_session_keyring_of_its_own() {
    let rt = Runtime::strata();
    let keyrings = || std::fs::read_to_string("/proc/keys").unwrap_or_default();
    for (flags, own) in [(&[][..], true), (&["--no-new-keyring"][..], false)] {
        let b = Bundle::busybox(&["sleep", "1000"]);
        let args = [&["run", "-d"][..], flags, &["--bundle", b.path().to_str().unwrap(), &b.id]].concat();
        rt.ok_detached(&args);
        // As runc: `_ses.<id>`, not the session keyring of whoever ran the runtime.
        let name = format!("_ses.{}", b.id);
        assert_eq!(keyrings().contains(&name), own, "{flags:?}:\n{}", keyrings());
        rt.ok(&["delete", "--force", &b.id]);
    }
}

#[test]
fn an_unknown_capability_is_a_warning_as_runcs() {
    let rt = Runtime::strata();
    let b = Bundle::busybox(&["sh", "-c", "grep CapBnd /proc/self/status"]);
    b.edit(|c| c["process"]["capabilities"]["bounding"].as_array_mut().unwrap().push(json!("CAP_FROM_THE_FUTURE")));
    let o = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stderr.contains("ignoring unknown or unavailable capabilities: [CAP_FROM_THE_FUTURE]"), "{o}");
    assert!(o.stdout.starts_with("CapBnd:"), "{o}");
    assert_gone(&rt, &b, 0);
}

#[test]
fn a_created_container_dies_of_sigterm_as_runcs_does() {
    let rt = Runtime::strata();
    let b = Bundle::busybox(&["sleep", "1000"]);
    rt.ok_detached(&["create", "--bundle", b.path().to_str().unwrap(), &b.id]);
    let init_pid = rt.state(&b.id)["pid"].as_i64().unwrap() as i32;
    // The init waiting for `start` is its pid namespace's PID 1: without a handler the signal
    // would be dropped, and a stop would wait out its timeout.
    rt.ok(&["kill", &b.id, "TERM"]);
    assert!(wait_exit(init_pid, Duration::from_secs(10)), "the created init ignored SIGTERM");
    assert_eq!(rt.status(&b.id), "stopped");
    rt.ok(&["delete", &b.id]);
    assert_gone(&rt, &b, init_pid);
    // Started, the program has its own dispositions again: this shell traps TERM.
    let b = Bundle::busybox(&["sh", "-c", "trap 'echo trapped; exit 7' TERM; while true; do sleep 0.1; done"]);
    rt.ok_detached(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &b.id]);
    let pid = rt.state(&b.id)["pid"].as_i64().unwrap() as i32;
    rt.ok(&["kill", &b.id, "TERM"]);
    assert!(wait_exit(pid, Duration::from_secs(10)));
    rt.ok(&["delete", &b.id]);
}

#[test]
fn run_forwards_signals_to_the_container() {
    let rt = Runtime::strata();
    let b = Bundle::busybox(&[
        "sh",
        "-c",
        "trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 0.1; done",
    ]);
    let mut child =
        rt.command(&["run", "--bundle", b.path().to_str().unwrap(), &b.id]).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"ready\n");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(status.code(), Some(42), "{rest}");
    assert_eq!(rest, "got-term\n");
    assert_gone(&rt, &b, 0);
}

/// Output to a reader that went away ends strata-oci as SIGPIPE ends runc: quietly, not with
/// a panic and a backtrace.
#[test]
fn a_closed_stdout_ends_it_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let rt = Runtime::strata();
    let (read_end, write_end) = rustix::pipe::pipe().unwrap();
    drop(read_end);
    let out = rt.command(&["features"]).stdout(Stdio::from(write_end)).stderr(Stdio::piped()).output().unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn features_and_spec() {
    let rt = Runtime::strata();
    let f: serde_json::Value = serde_json::from_str(&rt.ok(&["features"])).unwrap();
    assert_eq!(f["linux"]["cgroup"]["v1"], json!(true), "{f}");
    assert!(f["linux"]["namespaces"].as_array().unwrap().contains(&json!("user")), "{f}");
    let dir = tempfile::tempdir().unwrap();
    rt.ok(&["spec", "--bundle", dir.path().to_str().unwrap()]);
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["root"]["path"], "rootfs", "{spec}");
    assert_eq!(spec["hostname"], "strata", "{spec}");
    for flag in ["-v", "--version"] {
        assert!(rt.ok(&[flag]).starts_with("strata-oci version "), "runc's shape");
    }
    let o = rt.run(&["spec", "--bundle", dir.path().to_str().unwrap()]);
    assert_ne!(o.code, 0, "spec refuses to overwrite: {o}");
}

#[test]
fn the_state_root_is_the_runtimes_alone() {
    let rt = Runtime::strata();
    let root = rt.state.path().join("fresh-root");
    let b = Bundle::busybox(&["true"]);
    let status = std::process::Command::new(&rt.binary)
        .args(["--root", root.to_str().unwrap(), "run", "--bundle", b.path().to_str().unwrap(), &b.id])
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{status:?}");
    // As runc's: the states name bundles, pids and configs.
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&root).unwrap().permissions()) & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
}

#[test]
fn json_log_format_carries_the_error() {
    let rt = Runtime::strata();
    let log = rt.state.path().join("log.json");
    let o = rt.run(&["--log", log.to_str().unwrap(), "--log-format", "json", "state", "ghost"]);
    assert_eq!(o.code, 1, "{o}");
    let line = std::fs::read_to_string(&log).unwrap();
    let entry: serde_json::Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    assert_eq!(entry["level"], "error", "{line}");
    assert!(entry["msg"].as_str().unwrap().contains("does not exist"), "{line}");
}
