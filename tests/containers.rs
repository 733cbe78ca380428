//! End-to-end: `strata run/create/start/ps/logs/stop/kill/rm/wait/inspect/container prune`
//! with the busybox image the tests build, each test with its own root. Run as root inside
//! `unshare -m --propagation private` (what CI does), so a test that dies leaves no mount.

mod cli;
mod support;

use cli::{Outcome, Strata};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::*;

const IMAGE: &str = "localhost/busybox:latest";

/// An OCI archive of the busybox image, built once per test binary.
fn busybox_archive() -> &'static Path {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        // In cargo's scratch dir for tests, rebuilt by each run of this binary.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("containers-busybox");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let layout = dir.join("layout");
        busybox_image(&layout, "latest");
        let archive = dir.join("busybox.tar");
        skopeo_copy(&oci_ref(&layout, "latest"), &format!("oci-archive:{}:{IMAGE}", archive.display()));
        archive
    })
}

/// A root with the busybox image; removes whatever containers a test leaves when dropped.
struct Env {
    s: Strata,
}

impl Env {
    fn new() -> Env {
        let s = Strata::new();
        s.ok(&["load", "-q", "-i", busybox_archive().to_str().unwrap()]);
        Env { s }
    }

    fn run(&self, args: &[&str]) -> Outcome {
        self.s.run(args)
    }

    fn ok(&self, args: &[&str]) -> String {
        self.s.ok(args)
    }

    /// `run --rm IMAGE ARGS...` in the foreground.
    fn sh(&self, flags: &[&str], script: &str) -> Outcome {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[IMAGE, "sh", "-c", script]);
        self.run(&args)
    }

    fn inspect(&self, name: &str) -> serde_json::Value {
        let out = self.ok(&["inspect", name]);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
    }

    fn id(&self, name: &str) -> String {
        self.inspect(name)["Id"].as_str().unwrap().to_string()
    }

    fn record(&self, id: &str) -> serde_json::Value {
        let path = self.s.root().join("containers").join(id).join("container.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    fn ps(&self, all: bool) -> Vec<serde_json::Value> {
        self.s.ps(all)
    }

    fn ps_status(&self, name: &str) -> String {
        self.ps(true)
            .into_iter()
            .find(|c| c["Names"] == name)
            .map(|c| c["Status"].as_str().unwrap().to_string())
            .unwrap_or_else(|| "<gone>".into())
    }

    fn assert_no_trace(&self, id: &str) {
        self.s.assert_no_trace(id)
    }

    fn assert_run_released(&self, id: &str) {
        self.s.assert_run_released(id)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.s.remove_all_containers();
    }
}

fn cgroup_file(controller: &str, id: &str, file: &str) -> String {
    std::fs::read_to_string(Path::new("/sys/fs/cgroup").join(controller).join("strata").join(id).join(file))
        .unwrap_or_else(|e| panic!("reading {controller}/{file} of {id}: {e}"))
        .trim()
        .to_string()
}

fn wait_exit(pid: i32) {
    // pidfd of a process that is not our child: readable once it has exited.
    let fd =
        rustix::process::pidfd_open(rustix::process::Pid::from_raw(pid).unwrap(), rustix::process::PidfdFlags::empty());
    if let Ok(fd) = fd {
        let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
        let ts = rustix::event::Timespec { tv_sec: 10, tv_nsec: 0 };
        let _ = rustix::event::poll(&mut fds, Some(&ts));
    }
}

#[test]
fn output_and_exit_codes() {
    let e = Env::new();
    let o = e.sh(&[], "echo out; echo err >&2; exit 3");
    assert_eq!((o.code, o.stdout.as_str(), o.stderr.as_str()), (3, "out\n", "err\n"));
    assert_eq!(e.sh(&[], "true").code, 0);
    // Everything after the image is the container's, even what reads as a flag of ours.
    let o = e.run(&["run", "--rm", "--entrypoint", "echo", IMAGE, "--help", "-t", "-v", "x"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "--help -t -v x\n"), "{}", o.stderr);
    // docker's -h is the hostname; help is --help.
    let o = e.run(&["run", "--rm", "-h", "named", IMAGE, "hostname"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "named\n"), "{}", o.stderr);
    let o = e.run(&["create", "--help"]);
    assert!(o.code == 0 && o.stdout.contains("-h, --hostname <HOSTNAME>"), "{}", o.stdout);
    // Before it, a flag we do not know is an error naming it, not taken for the image.
    let o = e.run(&["run", "--rm", "--memroy", "64m", IMAGE, "true"]);
    assert_eq!(o.code, 125, "{}", o.stderr);
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert!(lines[0].starts_with("Error: unexpected argument '--memroy' found"), "{}", o.stderr);
    assert_eq!(lines[1..], ["See 'strata run --help'."], "as docker says it: {}", o.stderr);

    let o = e.run(&["run", "--rm", IMAGE, "nosuchprogram"]);
    assert_eq!(o.code, 127, "{}", o.stderr);
    assert!(o.stderr.starts_with("Error: ") && o.stderr.contains("nosuchprogram"), "{}", o.stderr);
    assert!(o.stderr.contains("executable file not found"), "{}", o.stderr);
    assert_eq!(o.stderr.lines().count(), 1, "one error line: {}", o.stderr);
    let o = e.run(&["run", "--rm", IMAGE, "/no/such/file"]);
    assert_eq!(o.code, 127, "{}", o.stderr);
    let o = e.run(&["run", "--rm", IMAGE, "/etc/passwd"]);
    assert_eq!(o.code, 126, "{}", o.stderr);
    assert!(o.stderr.contains("permission denied"), "{}", o.stderr);

    // strata itself failing: 125, one line, nothing made.
    for args in [
        &["run", "--rm", "--memory", "12x", IMAGE, "true"][..],
        &["run", "--rm", "--cap-add", "NOPE", IMAGE, "true"],
        &["run", "--rm", "--network", "bridge", IMAGE, "true"],
        &["run", "--rm", "-u", "nosuchuser", IMAGE, "true"],
        // (uid_t)-1, which setresuid reads as "unchanged": the container would stay root.
        &["run", "--rm", "-u", "4294967295", IMAGE, "true"],
        &["run", "--rm", "-u", "1000:4294967295", IMAGE, "true"],
        &["run", "--rm", "localhost:1/nothing:here", "true"],
        // Under docker's 0.01 CPUs (the quota would be below the kernel's 1 ms), or over the host's.
        &["run", "--rm", "--cpus", "0.001", IMAGE, "true"],
        &["run", "--rm", "--cpus", "1000", IMAGE, "true"],
    ] {
        let o = e.run(args);
        assert_eq!(o.code, 125, "{args:?}: {}", o.stderr);
        assert!(o.stderr.lines().any(|l| l.starts_with("Error: ")), "{args:?}: {}", o.stderr);
    }
    let o = e.run(&["run", "--rm", "-u", "nosuchuser", IMAGE, "true"]);
    assert!(o.stderr.contains("unable to find user nosuchuser"), "{}", o.stderr);
    let o = e.run(&["run", "--rm", "-u", "4294967295", IMAGE, "true"]);
    assert_eq!(o.stderr.trim(), "Error: uids and gids must be in range 0-2147483647");
    assert!(e.ps(true).is_empty(), "failed runs with --rm leave no container: {:?}", e.ps(true));
    // --cpus 0 is docker's "no limit".
    assert_eq!(e.run(&["run", "--rm", "--cpus", "0", IMAGE, "true"]).code, 0);
}

#[test]
fn environment_cwd_user_and_hostname() {
    let e = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    let env_file = tmp.path().join("env");
    std::fs::write(&env_file, "# settings\nFROM_FILE=file\nBOTH=file\n").unwrap();
    let env_file = env_file.to_str().unwrap();
    let o = e.sh(&["-e", "FOO=bar baz", "--env-file", env_file, "-e", "BOTH=flag"], "env");
    assert_eq!(o.code, 0, "{}", o.stderr);
    for want in ["FOO=bar baz", "FROM_FILE=file", "BOTH=flag", "HOME=/root", "PATH=/usr/local/sbin"] {
        assert!(o.stdout.lines().any(|l| l.starts_with(want)), "{want} missing:\n{}", o.stdout);
    }
    assert!(!o.stdout.contains("BOTH=file"), "-e wins over --env-file:\n{}", o.stdout);

    assert_eq!(e.sh(&[], "pwd").stdout, "/\n");
    assert_eq!(e.sh(&["-w", "/tmp"], "pwd").stdout, "/tmp\n");
    assert_eq!(e.sh(&["-w", "/new/work/dir"], "pwd").stdout, "/new/work/dir\n", "a missing workdir is made");

    assert_eq!(e.sh(&[], "id -u; id -g").stdout, "0\n0\n");
    // docker's RLIMIT_NOFILE, or what this host allows if that is less.
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let want = limit.rlim_max.min(1_048_576);
    assert_eq!(e.sh(&[], "ulimit -n; ulimit -Hn").stdout, format!("{want}\n{want}\n"));
    let o = e.sh(&["-u", "nobody"], "id -u; id -g; echo $HOME");
    assert_eq!(o.stdout, "65534\n65534\n/nonexistent\n", "{}", o.stderr);
    assert_eq!(e.sh(&["-u", "1234:5678"], "id -u; id -g").stdout, "1234\n5678\n");
    // --group-add: a name from the image's /etc/group, or a gid.
    let o = e.sh(&["-u", "1234:5678", "--group-add", "10", "--group-add", "root"], "id -G");
    assert_eq!(o.stdout, "5678 0 10\n", "{}", o.stderr);
    let o = e.sh(&["--group-add", "nosuch"], "true");
    assert!(o.code == 125 && o.stderr.contains("unable to find group nosuch"), "{}", o.stderr);

    assert_eq!(e.sh(&["--hostname", "web1"], "hostname").stdout, "web1\n");
    let o = e.run(&["run", "--name", "named", IMAGE, "hostname"]);
    assert_eq!(o.code, 0);
    let id = e.id("named");
    assert_eq!(o.stdout.trim(), &id[..12], "the default hostname is the short id");
    e.ok(&["rm", "named"]);
}

#[test]
fn isolation() {
    let e = Env::new();
    assert_eq!(e.sh(&[], "echo $$").stdout, "1\n", "the command is PID 1");
    let o = e.sh(&[], "ls /proc | grep -c '^[0-9]'");
    let visible: u32 = o.stdout.trim().parse().unwrap();
    assert!(visible <= 3, "host processes are visible: {visible}");

    // Own mount table: the rootfs is an overlay, and no host mount shows.
    let o = e.sh(&[], "cat /proc/self/mountinfo");
    let root_line = o.stdout.lines().find(|l| l.split(' ').nth(4) == Some("/")).unwrap_or("");
    assert!(root_line.contains("overlay"), "{}", o.stdout);
    let allowed = ["/proc", "/dev", "/sys", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"];
    for point in o.stdout.lines().filter_map(|l| l.split(' ').nth(4)) {
        assert!(
            point == "/" || allowed.iter().any(|a| point.starts_with(a)),
            "host mount {point} visible:\n{}",
            o.stdout
        );
    }

    assert_eq!(e.sh(&[], "ls /sys/class/net").stdout, "lo\n", "--network none: only lo");
    // ... and it is up, as under docker: a server inside answers on 127.0.0.1.
    let o = e.sh(&[], "busybox nc -l -p 8080 -e echo served & i=0; until busybox nc 127.0.0.1 8080 </dev/null; do i=$((i+1)); [ $i -lt 5000 ] || exit 9; done");
    assert_eq!((o.code, o.stdout.as_str()), (0, "served\n"), "{}", o.stderr);
    let host: Vec<String> =
        std::fs::read_dir("/sys/class/net").unwrap().flatten().map(|d| d.file_name().into_string().unwrap()).collect();
    let o = e.sh(&["--network", "host"], "ls /sys/class/net");
    assert_eq!(o.stdout.lines().count(), host.len(), "--network host sees the host's interfaces: {}", o.stdout);

    // Masked and read-only paths.
    assert_eq!(e.sh(&[], "wc -c < /proc/keys").stdout.trim(), "0");
    assert_eq!(e.sh(&[], "wc -c < /proc/timer_list").stdout.trim(), "0");
    assert_eq!(e.sh(&[], "ls /sys/firmware | wc -l").stdout.trim(), "0");
    let o = e.sh(&[], "echo 1 > /proc/sys/vm/drop_caches");
    assert_ne!(o.code, 0, "/proc/sys is read-only");
}

/// The exit code of `child` (a strata command), or a failure naming `what` if it has not
/// ended within `limit`: a regression that hangs fails instead (the child is killed).
fn exit_within(mut child: std::process::Child, limit: Duration, what: &str) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The container's root line of its own /proc/self/mountinfo.
fn root_mount(mountinfo: &str) -> &str {
    mountinfo.lines().find(|l| l.split(' ').nth(4) == Some("/")).unwrap_or_else(|| panic!("no root in {mountinfo}"))
}

#[test]
fn a_removed_containers_writes_are_never_synced() {
    // `--rm`: its overlay is `volatile`, so unmounting it does not sync the filesystem
    // under the root (podman's choice for --rm); a container that stays keeps the default.
    // (Kernels since 6.9 show the option as `fsync=volatile`.)
    let e = Env::new();
    let o = e.sh(&[], "cat /proc/self/mountinfo");
    // Before Linux 5.10 overlayfs has no such option, and the mount goes without it.
    let release = rustix::system::uname().release().to_string_lossy().into_owned();
    let version: Vec<u32> = release.split(['.', '-']).take(2).map(|n| n.parse().unwrap_or(0)).collect();
    if version >= vec![5, 10] {
        assert!(root_mount(&o.stdout).contains("volatile"), "{}", o.stdout);
    }
    let o = e.run(&["run", "--name", "kept", IMAGE, "cat", "/proc/self/mountinfo"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(!root_mount(&o.stdout).contains("volatile"), "{}", o.stdout);
    e.ok(&["rm", "kept"]);

    // A volatile work dir refuses a second mount; each mount starts from a new one: a
    // `create --rm` container written by `cp` (which mounts its root) still starts.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "copied in\n").unwrap();
    let id = e.ok(&["create", "--rm", "--name", "twice", IMAGE, "cat", "/x"]).trim().to_string();
    e.ok(&["cp", file.path().to_str().unwrap(), "twice:/x"]);
    let o = e.run(&["start", "-a", "twice"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "copied in\n"), "{}", o.stderr);
    e.assert_no_trace(&id);
}

#[test]
fn an_unfinished_copy_of_the_layers_is_made_anew() {
    // The vfs driver copies the layers at a run's start; a copy cut short (a full disk, a
    // killed monitor) before it was marked done must neither be used nor block the container.
    let e = Env::new();
    let id = e.ok(&["--storage-driver", "vfs", "create", "--name", "half", IMAGE, "cat", "/etc/planted"]);
    let merged = e.s.root().join("containers").join(id.trim()).join("rootfs/merged");
    std::fs::create_dir_all(merged.join("etc")).unwrap();
    std::fs::write(merged.join("etc/planted"), "a half-made copy\n").unwrap();
    let o = e.run(&["--storage-driver", "vfs", "start", "-a", "half"]);
    assert_ne!(o.code, 0, "the half-made copy was used: {}", o.stdout);
    assert!(o.stderr.contains("/etc/planted"), "{}", o.stderr);
    assert_eq!(e.run(&["--storage-driver", "vfs", "start", "-a", "half"]).code, 1, "it runs again");
    e.ok(&["--storage-driver", "vfs", "rm", "half"]);
    e.assert_no_trace(id.trim());
    // Nor does one block its removal.
    let id = e.ok(&["--storage-driver", "vfs", "create", IMAGE, "true"]);
    let merged = e.s.root().join("containers").join(id.trim()).join("rootfs/merged");
    std::fs::create_dir_all(merged.join("etc")).unwrap();
    std::fs::write(merged.join("etc/planted"), "a half-made copy\n").unwrap();
    e.ok(&["--storage-driver", "vfs", "rm", "-f", id.trim()]);
    e.assert_no_trace(id.trim());
}

#[test]
fn read_only_root() {
    let e = Env::new();
    let o = e.sh(&["--read-only"], "touch /x");
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("Read-only file system"), "{}", o.stderr);
    assert_eq!(e.sh(&["--read-only"], "touch /dev/shm/x && echo ok").stdout, "ok\n", "/dev/shm stays writable");
    assert_eq!(e.sh(&[], "touch /x && echo ok").stdout, "ok\n");
}

#[test]
fn devices_from_the_host() {
    // docker's --device: the host's node at the container's path, allowed by the container's
    // device cgroup with the permissions asked for. /dev/fuse (what it is most used for) is
    // in no default rule.
    let e = Env::new();
    let fuse = "/dev/fuse";
    assert!(std::path::Path::new(fuse).exists(), "this test needs {fuse} on the host");
    assert_eq!(e.sh(&[], "test -e /dev/fuse || echo absent").stdout, "absent\n");
    let o = e.sh(&["--device", fuse], "ls -ln /dev/fuse; exec 3<>/dev/fuse && echo opened");
    assert_eq!(o.code, 0, "{} / {}", o.stdout, o.stderr);
    let listing: Vec<&str> = o.stdout.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(listing[..6], ["crw-------", "1", "0", "0", "10,", "229"], "{} / {}", o.stdout, o.stderr);
    assert!(o.stdout.ends_with("opened\n"), "{} / {}", o.stdout, o.stderr);
    // Read only, at another path: opening it for writing is refused by the cgroup.
    let o = e.sh(&["--device", "/dev/fuse:/dev/myfuse:r"], "exec 3</dev/myfuse && echo read; exec 4>/dev/myfuse");
    assert_ne!(o.code, 0, "{} / {}", o.stdout, o.stderr);
    assert_eq!(o.stdout, "read\n", "{} / {}", o.stdout, o.stderr);
    assert!(o.stderr.contains("Operation not permitted"), "{} / {}", o.stdout, o.stderr);

    let id = e.ok(&["create", "--device", "/dev/fuse:rw", IMAGE, "true"]).trim().to_string();
    let devices = &e.inspect(&id)["HostConfig"]["Devices"];
    let want = serde_json::json!([{"PathOnHost": fuse, "PathInContainer": fuse, "CgroupPermissions": "rw"}]);
    assert_eq!(devices, &want);
    e.ok(&["rm", &id]);

    // Bad input: docker's words, exit 125, no container.
    for (arg, said) in [
        (
            "/etc/passwd",
            "error gathering device information while adding custom device \"/etc/passwd\": not a device node",
        ),
        ("/dev/no-such", "\"/dev/no-such\": no such file or directory"),
        ("/dev/fuse:/dev/x:rwx", "invalid device mode: rwx"),
        ("/dev/fuse:dev/x", "dev/x is not an absolute path"),
        ("/dev/fuse:/a:r:w", "invalid device specification: /dev/fuse:/a:r:w"),
        ("/dev/fuse:/fuse", "invalid device path /fuse: the container path must be under /dev"),
    ] {
        let o = e.run(&["run", "--rm", "--device", arg, IMAGE, "true"]);
        assert_eq!(o.code, 125, "{arg}: {}", o.stderr);
        assert!(o.stderr.contains(said) && o.stderr.lines().count() == 1, "{arg}: {}", o.stderr);
    }
    assert!(e.s.ps(true).is_empty());
}

#[test]
fn privileged() {
    // docker's --privileged: every capability (whatever --cap-drop says), no seccomp, the
    // host's devices, /sys writable, nothing masked.
    let e = Env::new();
    // Every capability strata may hand on: its own bounding set (this machine's lacks some).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let all = status.lines().find_map(|l| l.strip_prefix("CapBnd:\t")).unwrap().to_string();
    let script = "grep CapEff /proc/self/status; mount -t tmpfs none /tmp && echo mounted; \
                  test -c /dev/fuse && echo fuse; grep ' /sys sysfs' /proc/mounts | cut -d' ' -f4 | cut -d, -f1; \
                  head -c1 /proc/timer_list | wc -c";
    let o = e.sh(&["--privileged", "--cap-drop", "ALL"], script);
    assert_eq!(o.code, 0, "{} / {}", o.stdout, o.stderr);
    assert_eq!(o.stdout, format!("CapEff:\t{all}\nmounted\nfuse\nrw\n1\n"), "{}", o.stderr);
    // The same without it: none of that.
    let o = e.sh(&[], script);
    assert_eq!(o.stdout, "CapEff:\t00000000a80425fb\nro\n0\n", "{}", o.stderr);
    let id = e.ok(&["create", "--privileged", IMAGE, "true"]).trim().to_string();
    assert_eq!(e.inspect(&id)["HostConfig"]["Privileged"], true);
    e.ok(&["rm", &id]);
}

#[test]
fn named_volumes_outlive_their_containers() {
    let e = Env::new();
    assert_eq!(e.ok(&["volume", "create", "--label", "team=db", "data"]), "data\n");
    assert_eq!(e.ok(&["volume", "create", "data"]), "data\n", "an existing name is that volume");
    let o = e.sh(&["-v", "data:/data"], "echo kept > /data/f");
    assert_eq!(o.code, 0, "{}", o.stderr);
    // Another container sees it; read-only, it cannot write.
    let o = e.sh(&["-v", "data:/d:ro"], "cat /d/f; echo x > /d/g");
    assert_eq!((o.code, o.stdout.as_str()), (1, "kept\n"), "{}", o.stderr);
    assert!(o.stderr.contains("Read-only file system"), "{}", o.stderr);
    let inspected: serde_json::Value = serde_json::from_str(&e.ok(&["volume", "inspect", "data"])).unwrap();
    let mountpoint = e.s.root().join("volumes/data/_data");
    assert_eq!(inspected[0]["Mountpoint"], mountpoint.to_str().unwrap());
    assert_eq!((&inspected[0]["Labels"]["team"], &inspected[0]["Driver"]), (&"db".into(), &"local".into()));
    assert_eq!(std::fs::read_to_string(mountpoint.join("f")).unwrap(), "kept\n");

    // A volume a container uses cannot be removed, in docker's words; once it is gone it can.
    let id = e.ok(&["create", "--name", "user", "--mount", "type=volume,src=data,dst=/data", IMAGE, "true"]);
    let o = e.run(&["volume", "rm", "data"]);
    assert_eq!(o.code, 1, "{}", o.stdout);
    assert_eq!(o.stderr, format!("Error: remove data: volume is in use - [{}]\n", id.trim()));
    assert_eq!(e.inspect("user")["Mounts"][0]["Type"], "volume");
    assert_eq!(e.inspect("user")["HostConfig"]["Binds"][0], "data:/data");
    e.ok(&["rm", "-v", "user"]);
    assert!(mountpoint.join("f").exists(), "rm -v leaves named volumes");
    assert_eq!(e.ok(&["volume", "rm", "data"]), "data\n");
    assert!(!e.s.root().join("volumes/data").exists());
    let o = e.run(&["volume", "rm", "data"]);
    assert_eq!((o.code, o.stderr.as_str()), (1, "Error: get data: no such volume\n"));

    // -v NAME makes a new volume, which gets the image's files at its destination (owners,
    // modes, links as links); a volume that holds something already gets nothing.
    let o = e.sh(&["-v", "bins:/bin", "-v", "scratch:/tmp"], "ls /bin/sh && stat -c %a /tmp && touch /tmp/made");
    assert_eq!((o.code, o.stdout.as_str()), (0, "/bin/sh\n1777\n"), "{}", o.stderr);
    let bins = e.s.root().join("volumes/bins/_data");
    assert_eq!(std::fs::read_link(bins.join("sh")).unwrap(), Path::new("busybox"));
    assert!(std::fs::metadata(bins.join("busybox")).unwrap().len() > 100_000);
    let o = e.sh(&["-v", "scratch:/etc"], "ls /etc");
    assert!(!o.stdout.contains("passwd"), "scratch was not empty: nothing copied: {}", o.stdout);
    let o = e.sh(&["--mount", "type=volume,src=nocopy,dst=/etc,volume-nocopy"], "ls /etc");
    assert!(!o.stdout.contains("passwd"), "volume-nocopy: {}", o.stdout);

    let listed = e.ok(&["volume", "ls"]);
    assert_eq!(listed.lines().next(), Some("DRIVER    VOLUME NAME"), "{listed}");
    assert!(listed.contains("local     bins\n"), "{listed}");
    assert_eq!(e.ok(&["volume", "ls", "-q", "-f", "name=scr"]), "scratch\n");

    // Bad names: one line naming the problem, nothing made.
    let o = e.run(&["volume", "create", "a/b"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("\"a/b\" includes invalid characters for a local volume name"), "{}", o.stderr);
    let o = e.run(&["run", "--rm", "-v", "../x:/x", IMAGE, "true"]);
    assert_eq!(o.code, 125, "{}", o.stderr);
    assert!(o.stderr.contains("invalid characters for a local volume name"), "{}", o.stderr);
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "bins\nnocopy\nscratch\n");
}

/// An image's VOLUME is a destination and nothing else (docker on Linux): never `-v`'s
/// `SRC:DST`, which would let an image bind a host path or take another container's volume.
#[test]
fn an_images_volume_names_no_host_path_or_volume() {
    let e = Env::new();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("secret"), "SECRET\n").unwrap();
    e.ok(&["volume", "create", "theirs"]);
    e.ok(&["run", "--rm", "-v", "theirs:/data", IMAGE, "sh", "-c", "echo THEIRS > /data/s"]);
    let load = |name: &str, volume: &str| {
        let tmp = tempfile::tempdir().unwrap();
        let layout = tmp.path().join("layout");
        busybox_builder().config_field("Volumes", serde_json::json!({ volume: {} })).write(&layout, "latest");
        let archive = tmp.path().join("image.tar");
        let reference = format!("localhost/{name}:latest");
        skopeo_copy(&oci_ref(&layout, "latest"), &format!("oci-archive:{}:{reference}", archive.display()));
        e.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
        reference
    };
    // An absolute key is a path, odd as it is: an anonymous volume there, not a bind.
    let hostile = load("binds-host", &format!("{}:/host", host.path().display()));
    let script = "cat /host/secret; echo written > /host/pwned; echo ran";
    let o = e.run(&["run", "--rm", &hostile, "sh", "-c", script]);
    assert_eq!(o.stdout, "ran\n", "{}", o.stderr);
    assert!(!host.path().join("pwned").exists(), "the container wrote into the host's directory");
    // A key that is not an absolute path is refused, as `-v` refuses such a destination.
    let hostile = load("takes-volume", "theirs:/stolen");
    let o = e.run(&["run", "--rm", &hostile, "cat", "/stolen/s"]);
    assert_eq!(o.code, 125, "{}", o.stdout);
    assert!(o.stderr.contains("the image's VOLUME theirs:/stolen"), "{}", o.stderr);
    assert!(o.stderr.contains("the destination must be an absolute path"), "{}", o.stderr);
    // The anonymous volume went with --rm; `theirs` is intact.
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "theirs\n");
    assert_eq!(e.ok(&["run", "--rm", "-v", "theirs:/data", IMAGE, "cat", "/data/s"]), "THEIRS\n");
}

#[test]
fn anonymous_volumes_go_with_rm_v_run_rm_and_prune() {
    let e = Env::new();
    // An image's VOLUME gets one, as does -v /DST; --rm takes them.
    let layer = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(layer.path(), images::busybox_layer_tar()).unwrap();
    e.ok(&["import", "--change", "VOLUME /cache /var/lib/db", layer.path().to_str().unwrap(), "with-volumes"]);
    e.ok(&["import", "--change", "VOLUME /proc/x", layer.path().to_str().unwrap(), "bad-volume"]);
    let o = e.run(&["create", "bad-volume", "true"]);
    assert_eq!(o.code, 125);
    let said = &o.stderr;
    assert!(said.contains("the image's VOLUME /proc/x") && said.contains("cannot be a volume's destination"), "{said}");
    let o = e.run(&[
        "run",
        "--rm",
        "-v",
        "/scratch",
        "with-volumes",
        "sh",
        "-c",
        "touch /cache/a /var/lib/db/b /scratch/c",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "", "run --rm removes its anonymous volumes");

    // Without --rm they stay with the container; a mount of the user's covers an image's VOLUME.
    let id = e.ok(&["run", "-d", "--name", "anon", "-v", "/scratch", "--tmpfs", "/cache", "with-volumes", "true"]);
    e.ok(&["wait", id.trim()]);
    let mounts = e.inspect("anon")["Mounts"].as_array().unwrap().clone();
    let mut destinations: Vec<&str> = mounts.iter().map(|m| m["Destination"].as_str().unwrap()).collect();
    destinations.sort();
    assert_eq!(destinations, ["/scratch", "/var/lib/db"], "{mounts:?}");
    assert!(mounts.iter().all(|m| m["Type"] == "volume" && m["Name"].as_str().unwrap().len() == 64), "{mounts:?}");
    assert_eq!(e.inspect("anon")["HostConfig"]["Binds"], serde_json::json!([]));
    assert_eq!(e.ok(&["volume", "ls", "-q"]).lines().count(), 2);
    // Unused anonymous volumes go with prune; a named unused one only with -a.
    e.ok(&["volume", "create", "named"]);
    let o = e.ok(&["volume", "prune"]);
    assert_eq!(o, "Total reclaimed space: 0B\n", "anon's volumes are in use");
    e.ok(&["rm", "anon"]);
    let o = e.ok(&["volume", "prune"]);
    assert!(o.starts_with("Deleted Volumes:\n") && o.lines().count() == 5, "{o}");
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "named\n");
    assert_eq!(e.ok(&["volume", "prune", "-a"]), "Deleted Volumes:\nnamed\n\nTotal reclaimed space: 0B\n");

    // rm -v takes them at once.
    let id = e.ok(&["create", "--mount", "type=volume,target=/t", IMAGE, "true"]);
    assert_eq!(e.ok(&["volume", "ls", "-q"]).lines().count(), 1);
    e.ok(&["rm", "-v", id.trim()]);
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "");
    let left: Vec<_> =
        std::fs::read_dir(e.s.root().join("volumes")).unwrap().flatten().map(|d| d.file_name()).collect();
    assert_eq!(left, [std::ffi::OsString::from(".lock")], "nothing half made or half removed");
}

#[test]
fn cp_copies_in_and_out_of_running_and_stopped_containers() {
    let e = Env::new();
    let host = tempfile::tempdir().unwrap();
    let h = |p: &str| host.path().join(p);
    std::fs::write(h("note"), "from the host\n").unwrap();
    std::fs::create_dir_all(h("tree/sub")).unwrap();
    std::fs::write(h("tree/sub/deep"), "deep\n").unwrap();
    let hs = |p: &str| h(p).to_str().unwrap().to_string();
    e.ok(&["run", "-d", "--name", "live", "-v", "cpvol:/data", IMAGE, "sleep", "1000"]);
    let exec = |script: &str| e.ok(&["exec", "live", "sh", "-c", script]);

    // Into a running container: a file into a directory keeps its name; a directory onto a
    // missing path becomes it (here inside a volume); SRC/. is a directory's contents.
    e.ok(&["cp", &hs("note"), "live:/tmp/"]);
    e.ok(&["cp", &hs("tree"), "live:/data/tree"]);
    e.ok(&["cp", &format!("{}/.", hs("tree")), "live:root"]);
    assert_eq!(exec("cat /tmp/note /data/tree/sub/deep /root/sub/deep"), "from the host\ndeep\ndeep\n");
    // Out of it: owners kept with -a only.
    exec("echo made inside > /tmp/out; chown 1234:5678 /tmp/out");
    e.ok(&["cp", "live:/tmp/out", &hs("plain")]);
    e.ok(&["cp", "-a", "live:/tmp/out", &hs("kept")]);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::read_to_string(h("plain")).unwrap(), "made inside\n");
    assert_eq!(std::fs::metadata(h("plain")).unwrap().uid(), 0);
    assert_eq!(
        (std::fs::metadata(h("kept")).unwrap().uid(), std::fs::metadata(h("kept")).unwrap().gid()),
        (1234, 5678)
    );

    // A container's symlinks resolve inside it, whichever way the copy goes.
    exec("ln -s / /tmp/up; ln -s /etc /tmp/etc");
    e.ok(&["cp", "live:/tmp/up/etc/hostname", &hs("hostname")]);
    let id = e.id("live");
    assert_eq!(
        std::fs::read_to_string(h("hostname")).unwrap(),
        format!("{}\n", &id[..12]),
        "the container's, not the host's"
    );
    let marker = format!("strata-cp-test-{}", std::process::id());
    std::fs::write(h(&marker), "x").unwrap();
    e.ok(&["cp", &hs(&marker), "live:/tmp/etc/"]);
    assert!(!Path::new("/etc").join(&marker).exists(), "written to the host's /etc");
    assert_eq!(exec(&format!("cat /etc/{marker}")), "x");

    // A running container's /proc is the kernel's, not its files: copied as an empty
    // directory, and a kernel file that never ends (/proc/kmsg, which would hand over the
    // host's kernel log) as what its size says, nothing. Bounded, so a regression fails
    // rather than hangs.
    let bounded = |args: &[&str]| {
        let child = e.s.command(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        exit_within(child, Duration::from_secs(60), &format!("strata {args:?}"))
    };
    assert_eq!(bounded(&["cp", "live:/proc", &hs("proc")]), Some(0));
    assert_eq!(std::fs::read_dir(h("proc")).unwrap().count(), 0, "/proc copied empty");
    assert_eq!(bounded(&["cp", "live:/proc/kmsg", &hs("kmsg")]), Some(0));
    assert_eq!(std::fs::metadata(h("kmsg")).unwrap().len(), 0);

    // Many files with links outside what is copied (an fd kept for each, to link their other
    // names) under a low limit of open files: the copy still goes through.
    std::fs::create_dir_all(h("many")).unwrap();
    std::fs::create_dir_all(h("elsewhere")).unwrap();
    for i in 0..300 {
        std::fs::write(h(&format!("many/{i}")), "x").unwrap();
        std::fs::hard_link(h(&format!("many/{i}")), h(&format!("elsewhere/{i}"))).unwrap();
    }
    let mut cp = e.s.command(&["cp", &hs("many"), "live:/tmp/many"]);
    // SAFETY: setrlimit in the child before exec, async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cp, || {
            let limit = libc::rlimit { rlim_cur: 128, rlim_max: 128 };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cp.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(exec("ls /tmp/many | wc -l").trim(), "300");

    // Whatever a container puts at the destination's name (a FIFO here, which would block a
    // writer for ever; a device node would take the bytes to a host disk) is replaced.
    exec("mkfifo /tmp/trap");
    e.ok(&["cp", &hs("note"), "live:/tmp/trap"]);
    assert_eq!(exec("cat /tmp/trap"), "from the host\n");

    // A stopped container: its rootfs and its volumes, nothing left mounted afterwards.
    e.ok(&["stop", "-t", "0", "live"]);
    e.ok(&["cp", "live:/tmp/note", &hs("back")]);
    e.ok(&["cp", "live:/data/tree/sub/deep", &hs("from-volume")]);
    assert_eq!(std::fs::read_to_string(h("back")).unwrap(), "from the host\n");
    assert_eq!(std::fs::read_to_string(h("from-volume")).unwrap(), "deep\n");
    e.ok(&["cp", &hs("note"), "live:/root/offline"]);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&id), "a mount of the container is left");
    e.ok(&["start", "live"]);
    assert_eq!(exec("cat /root/offline"), "from the host\n");
    // A stopped container's read-only volume and read-only root stay read-only.
    let ro = e.ok(&["create", "--read-only", "-v", &format!("{}:/ro:ro", host.path().display()), IMAGE, "true"]);
    let ro = ro.trim();
    for target in [format!("{ro}:/ro/new"), format!("{ro}:/etc/new")] {
        let o = e.run(&["cp", &hs("note"), &target]);
        assert_eq!(o.code, 1, "{target}: {}", o.stderr);
        assert!(o.stderr.contains("Read-only file system"), "{target}: {}", o.stderr);
    }
    assert!(!h("new").exists());
    e.ok(&["rm", ro]);

    // What cannot be: docker's words, exit 1.
    let o = e.run(&["cp", "live:/nope", &hs("x")]);
    assert_eq!((o.code, o.stderr.as_str()), (1, "Error: Could not find the file /nope in container live\n"));
    let o = e.run(&["cp", "/no/such/file", "live:/tmp"]);
    assert_eq!((o.code, o.stderr.as_str()), (1, "Error: lstat /no/such/file: no such file or directory\n"));
    let o = e.run(&["cp", &hs("tree"), "live:/tmp/note"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("cannot copy a directory to a file"), "{}", o.stderr);
    let o = e.run(&["cp", &hs("note"), &hs("other")]);
    assert_eq!((o.code, o.stderr.as_str()), (1, "Error: must specify at least one container source\n"));
    let o = e.run(&["cp", "nosuch:/x", &hs("x")]);
    assert_eq!((o.code, o.stderr.as_str()), (1, "Error: No such container: nosuch\n"));
    e.ok(&["rm", "-f", "live"]);
}

/// `cp` into a stopped container mounts its volumes as it would run them: a read-only one
/// stays read-only whatever symlinks the image and the volume hold (the remount looked the
/// destination up again through the new mount: `lnk -> /` in the volume led it elsewhere).
#[test]
fn cp_keeps_a_read_only_volume_read_only_whatever_its_symlinks() {
    let e = Env::new();
    let host = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/", host.path().join("lnk")).unwrap();
    let note = host.path().join("note");
    std::fs::write(&note, "from the host\n").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let mut layer = LayerTar::new();
    layer.dir("x", 0o755).dir("x/y", 0o755).dir("x/y/lnk", 0o755).symlink("data", "/x/y/lnk/..");
    busybox_builder().layer(layer.into_bytes(), Compression::None).write(&layout, "latest");
    let archive = tmp.path().join("image.tar");
    let reference = "localhost/twisted:latest";
    skopeo_copy(&oci_ref(&layout, "latest"), &format!("oci-archive:{}:{reference}", archive.display()));
    e.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    let id = e.ok(&["create", "-v", &format!("{}:/data:ro", host.path().display()), reference, "true"]);
    let o = e.run(&["cp", note.to_str().unwrap(), &format!("{}:/x/y/copied", id.trim())]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("Read-only file system"), "{}", o.stderr);
    assert!(!host.path().join("copied").exists(), "cp wrote into the read-only volume");
    e.ok(&["rm", id.trim()]);
}

#[test]
fn cp_streams_tar_archives_both_ways() {
    // docker's `cp CONTAINER:SRC -` and `cp - CONTAINER:DEST`.
    let e = Env::new();
    e.ok(&["run", "-d", "--name", "live", IMAGE, "sleep", "1000"]);
    let exec = |script: &str| e.ok(&["exec", "live", "sh", "-c", script]);
    exec("mkdir -p /srv/x && echo a > /srv/x/a && ln -s /etc /srv/x/l && chown 7:8 /srv/x/a");
    let entries = |archive: &[u8]| -> Vec<(String, u64, String)> {
        let mut tar = tar::Archive::new(archive);
        let mut out = Vec::new();
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let uid = entry.header().uid().unwrap();
            let body = match entry.link_name().unwrap() {
                Some(target) => format!("-> {}", target.display()),
                None => {
                    let mut bytes = Vec::new();
                    std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
                    String::from_utf8_lossy(&bytes).into_owned()
                }
            };
            out.push((path, uid, body));
        }
        out
    };
    let out = e.s.command(&["cp", "live:/srv/x", "-"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        entries(&out.stdout),
        [("x/".into(), 0, String::new()), ("x/a".into(), 7, "a\n".into()), ("x/l".into(), 0, "-> /etc".into())]
    );
    let out = e.s.command(&["cp", "live:/srv/x/.", "-"]).output().unwrap();
    let names: Vec<String> = entries(&out.stdout).into_iter().map(|(p, _, _)| p).collect();
    assert_eq!(names, ["./", "./a", "./l"]);
    // A running container's kernel filesystems are their mountpoints only.
    let out = e.s.command(&["cp", "live:/", "-"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let names: Vec<String> = entries(&out.stdout).into_iter().map(|(p, _, _)| p).collect();
    assert!(names.contains(&"./proc/".to_string()) && names.contains(&"./srv/x/a".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("./proc/self") || n.starts_with("./sys/kernel")), "{names:?}");

    // In: unpacked into the directory, owned by root unless -a; `.wh.` is a name like any
    // other here; gzip is read too.
    let archive = |gzip: bool| {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data, uid) in [("in/f", &b"from a tar\n"[..], 1234), (".wh.keep", b"kept\n", 0)] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(uid);
            h.set_cksum();
            b.append_data(&mut h, path, data).unwrap();
        }
        // A second name for in/f: a link in the container too, not a second copy.
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Link);
        h.set_size(0);
        h.set_mode(0o644);
        b.append_link(&mut h, "in/g", "in/f").unwrap();
        let bytes = b.into_inner().unwrap();
        if !gzip {
            return bytes;
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &bytes).unwrap();
        gz.finish().unwrap()
    };
    let o = e.s.run_stdin(&["cp", "-", "live:/srv"], &archive(false));
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(exec("cat /srv/in/f /srv/.wh.keep; stat -c %u /srv/in/f"), "from a tar\nkept\n0\n");
    assert_eq!(exec("stat -c %h /srv/in/f; [ /srv/in/f -ef /srv/in/g ] && echo same"), "2\nsame\n");
    let o = e.s.run_stdin(&["cp", "-a", "-", "live:/root"], &archive(true));
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(exec("stat -c %u /root/in/f"), "1234\n");

    // Refused: a missing directory, something that is not a tar, an entry that climbs out.
    let o = e.s.run_stdin(&["cp", "-", "live:/nope"], &archive(false));
    assert_eq!((o.code, o.stderr.as_str()), (1, "Error: destination \"live:/nope\" must be a directory\n"));
    let o = e.s.run_stdin(&["cp", "-", "live:/srv"], b"not a tar archive at all, just words that go on and on");
    assert!(o.code == 1 && o.stderr.contains("reading the tar archive from standard input"), "{}", o.stderr);
    let marker = format!("strata-cp-escape-{}", std::process::id());
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    let name = format!("../../../../../../tmp/{marker}");
    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    let o = e.s.run_stdin(&["cp", "-", "live:/srv"], &b.into_inner().unwrap());
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(!Path::new("/tmp").join(&marker).exists(), "written outside the container");

    // A stopped container's files stream out too.
    e.ok(&["stop", "-t", "0", "live"]);
    let out = e.s.command(&["cp", "live:/srv/in/f", "-"]).output().unwrap();
    assert_eq!(entries(&out.stdout), [("f".into(), 0, "from a tar\n".into())]);
    e.ok(&["rm", "live"]);
}

#[test]
fn system_df_counts_what_is_used_and_prune_removes_what_is_not() {
    let e = Env::new();
    e.ok(&[
        "run",
        "--name",
        "done",
        "-v",
        "kept:/data",
        "-v",
        "/scratch",
        IMAGE,
        "sh",
        "-c",
        "head -c 100000 /dev/zero > /data/z; head -c 50000 /dev/zero > /big",
    ]);
    e.ok(&["run", "-d", "--name", "live", IMAGE, "sleep", "1000"]);
    let df = e.ok(&["system", "df", "--format", "{{.Type}}|{{.TotalCount}}|{{.Active}}|{{.Reclaimable}}"]);
    let rows: Vec<&str> = df.lines().collect();
    assert_eq!(rows[0], "Images|1|1|0B (0%)", "{df}");
    assert!(rows[1].starts_with("Containers|2|1|50kB ("), "the exited one's 50 kB: {df}");
    assert_eq!(rows[2], "Local Volumes|2|2|0B (0%)", "{df}");
    let table = e.ok(&["system", "df"]);
    assert!(table.starts_with("TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE\n"), "{table}");

    // The stopped container and, with --volumes, its anonymous volume go; the named one, the
    // running container and its image stay.
    let done = e.id("done");
    let out = e.ok(&["system", "prune", "--volumes"]);
    assert!(out.starts_with(&format!("Deleted Containers:\n{done}\n\nDeleted Volumes:\n")), "{out}");
    // The container's writable layer (50 kB) and its logs and files.
    let total = out.lines().last().unwrap().strip_prefix("Total reclaimed space: ").unwrap();
    let kb: f64 = total.strip_suffix("kB").expect("kB").parse().unwrap();
    assert!((50.0..100.0).contains(&kb), "{out}");
    assert_eq!(e.ps(true).len(), 1);
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "kept\n");
    assert!(e.ok(&["images", "-q"]).lines().count() == 1);
    e.ok(&["rm", "-f", "live"]);
}

/// Polls `inspect -f FORMAT NAME` until it prints `want` (30 s at most).
fn wait_for_inspect(e: &Env, name: &str, format: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = e.ok(&["inspect", "-f", format, name]);
        if now.trim() == want {
            return;
        }
        assert!(Instant::now() < deadline, "{name}: {format} is {now:?}, never {want:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn restart_policies_start_a_container_again_until_stopped_by_hand() {
    let e = Env::new();
    // on-failure:2 — a failing command runs three times, then stays exited.
    e.ok(&["run", "-d", "--name", "flaky", "--restart", "on-failure:2", IMAGE, "sh", "-c", "echo ran; exit 3"]);
    wait_for_inspect(&e, "flaky", "{{.RestartCount}} {{.State.Status}}", "2 exited");
    assert_eq!(e.ok(&["logs", "flaky"]), "ran\nran\nran\n");
    assert_eq!(e.ok(&["wait", "flaky"]), "3\n");
    let policy = &e.inspect("flaky")["HostConfig"]["RestartPolicy"];
    assert_eq!((&policy["Name"], &policy["MaximumRetryCount"]), (&"on-failure".into(), &2.into()));
    // on-failure does not restart a success; `wait` answers the first end at once.
    e.ok(&["run", "-d", "--name", "fine", "--restart", "on-failure", IMAGE, "true"]);
    assert_eq!(e.ok(&["wait", "fine"]), "0\n");
    assert_eq!(e.ok(&["inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "fine"]), "0 exited\n");

    // always — restarted after every end, until a stop by hand; a stop of a container
    // between runs keeps it stopped too.
    e.ok(&["run", "-d", "--name", "loop", "--restart", "always", IMAGE, "sh", "-c", "echo tick"]);
    wait_for_inspect(&e, "loop", "{{gt .RestartCount 2}}", "true");
    e.ok(&["stop", "loop"]);
    let after_stop = e.inspect("loop")["RestartCount"].as_u64().unwrap();
    let ticks = e.ok(&["logs", "loop"]).lines().count() as u64;
    assert_eq!(ticks, after_stop + 1, "every run logged");
    // Its monitor gives up the restart (it checks every 50 ms while backing off): none comes.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        assert_eq!(e.inspect("loop")["RestartCount"].as_u64().unwrap(), after_stop, "restarted after a stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(e.ok(&["inspect", "-f", "{{.State.Status}} {{.State.Restarting}}", "loop"]), "exited false\n");
    // A start by hand starts over, with the policy in force again.
    e.ok(&["start", "loop"]);
    // Between runs (the back-off is 1.6 s after four restarts) it is restarting: plain rm
    // and prune leave it, in docker's words; rm -f takes it.
    wait_for_inspect(&e, "loop", "{{gt .RestartCount 3}} {{.State.Restarting}}", "true true");
    let o = e.run(&["rm", "loop"]);
    assert_eq!(o.code, 1, "{}", o.stdout);
    let said = &o.stderr;
    assert!(said.contains("container is restarting: stop the container before removing or force remove"), "{said}");
    e.ok(&["container", "prune"]);
    let left: Vec<serde_json::Value> = e.ps(true).iter().map(|c| c["Names"].clone()).collect();
    assert_eq!(left, ["loop"], "prune takes the exited flaky and fine, not the restarting loop");
    e.ok(&["rm", "-f", "loop"]);

    // Bad policies and --rm with one: docker's words, nothing made.
    let o = e.run(&["run", "--rm", "--restart", "always", IMAGE, "true"]);
    assert_eq!((o.code, o.stderr.as_str()), (125, "Error: Conflicting options: --restart and --rm\n"));
    let o = e.run(&["run", "--restart", "always:3", IMAGE, "true"]);
    assert_eq!(o.code, 125);
    assert!(o.stderr.contains("maximum retry count cannot be used with restart policy 'always'"), "{}", o.stderr);
    let o = e.run(&["run", "--restart", "sometimes", IMAGE, "true"]);
    assert_eq!(o.code, 125);
    assert!(o.stderr.contains("invalid restart policy format"), "{}", o.stderr);
    assert!(e.ps(true).is_empty(), "nothing made: {:?}", e.ps(true));
}

/// A look at a container whose init has ended waits for its monitor to record how, not for
/// the monitor to exit: with a restart policy it lives on to start the container again.
#[test]
fn a_look_at_an_ended_run_waits_for_the_record_only() {
    let e = Env::new();
    // With the host's pid namespace the init's child outlives it, holding the output open:
    // the monitor drains it for the child's second before it records the end.
    let script = "sleep 1 & exit 3";
    e.ok(&["run", "-d", "--name", "slow-end", "--restart", "always", "--pid", "host", IMAGE, "sh", "-c", script]);
    // Looked at until it has been restarted: the looks span the end of its first run.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut answers = Vec::new();
    let restarted = |a: &String| a.split_whitespace().nth(1).is_some_and(|count| count != "0");
    while !answers.last().is_some_and(restarted) {
        assert!(Instant::now() < deadline, "never restarted: {answers:?}");
        let mut look = e.s.command(&["inspect", "-f", "{{.State.Status}} {{.RestartCount}}", "slow-end"]);
        let mut look = look.stdout(Stdio::piped()).spawn().unwrap();
        let mut said = look.stdout.take().unwrap();
        // Waiting for the monitor's exit took 5 s here: a restart policy's monitor never exits.
        assert_eq!(exit_within(look, Duration::from_secs(3), "inspect of a run that ended"), Some(0));
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut said, &mut answer).unwrap();
        answers.push(answer);
    }
    e.ok(&["rm", "-f", "slow-end"]);
}

#[test]
fn an_init_runs_in_front_of_the_command() {
    // docker's --init: the host's init binary (podman's catatonit here) is PID 1, the command
    // its child; the command's exit code is the container's.
    let e = Env::new();
    let o = e.sh(&["--init"], "ps -o pid,comm | sed -n 2,3p; tr '\\0' ' ' < /proc/1/cmdline; echo; exit 5");
    assert_eq!(o.code, 5, "{}", o.stderr);
    let lines: Vec<&str> = o.stdout.lines().map(str::trim).collect();
    assert_eq!(lines[..2], ["1 strata-init", "2 sh"], "{}", o.stdout);
    assert!(lines[2].starts_with("/run/strata-init -- sh -c"), "{}", o.stdout);
    // It passes stop's SIGTERM on: a `sleep`, which as PID 1 would ignore it (the kernel
    // drops signals a PID 1 has no handler for) and be killed after the timeout (137), ends
    // by the signal itself (143).
    let id = e.ok(&["run", "-d", "--init", "--stop-timeout", "60", IMAGE, "sleep", "1000"]).trim().to_string();
    e.ok(&["stop", &id]);
    assert_eq!(e.inspect(&id)["State"]["ExitCode"], 143);
    assert_eq!(e.inspect(&id)["HostConfig"]["Init"], true);
    e.ok(&["rm", &id]);
    // The binary is the host's, mounted read-only: the container cannot change it.
    let o = e.sh(&["--init"], "echo x > /run/strata-init");
    assert_ne!(o.code, 0, "{}", o.stdout);
    assert!(o.stderr.contains("Read-only file system"), "{}", o.stderr);
    // --init-path names another binary; one that is not there is refused before anything is made.
    let o = e.sh(&["--init", "--init-path", "/usr/bin/catatonit"], "ps -o comm | sed -n 2p");
    assert_eq!((o.code, o.stdout.as_str()), (0, "strata-init\n"), "{}", o.stderr);
    let o = e.run(&["run", "--rm", "--init", "--init-path", "/no/such/init", IMAGE, "true"]);
    assert_eq!(o.code, 125, "{}", o.stderr);
    assert_eq!(o.stderr, "Error: --init-path /no/such/init: No such file or directory (os error 2)\n");
    assert!(e.ps(true).is_empty(), "{:?}", e.ps(true));
}

#[test]
fn host_pid_ipc_and_uts_namespaces() {
    // docker's --pid/--ipc/--uts host: the host's namespaces (each the test's own), and for
    // IPC the host's /dev/shm; by default the container has its own of each.
    let e = Env::new();
    let ns = |n: &str| std::fs::read_link(format!("/proc/self/ns/{n}")).unwrap().display().to_string();
    let script = "for n in pid ipc uts; do readlink /proc/self/ns/$n; done; hostname";
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let o = e.sh(&["--pid", "host", "--ipc", "host", "--uts", "host"], script);
    assert_eq!(o.stdout, format!("{}\n{}\n{}\n{host_name}", ns("pid"), ns("ipc"), ns("uts")), "{}", o.stderr);
    let o = e.sh(&[], script);
    let own: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(own.len(), 4, "{}", o.stderr);
    assert!(own[0] != ns("pid") && own[1] != ns("ipc") && own[2] != ns("uts"), "{}", o.stdout);
    // The host's /dev/shm: a file made there is seen by the container.
    let marker = format!("/dev/shm/strata-test-{}", std::process::id());
    std::fs::write(&marker, "shared\n").unwrap();
    let o = e.sh(&["--ipc", "host"], &format!("cat {marker}"));
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(o.stdout, "shared\n", "{}", o.stderr);

    // With the host's pid namespace a child outlives the init and may write on for ever: the
    // run still ends (its output drained 2 s at most), the child killed with the cgroup.
    let script = "(while :; do echo on; sleep 0.2; done) & exit 3";
    let run = e.s.command(&["run", "--rm", "--pid", "host", IMAGE, "sh", "-c", script]).stdout(Stdio::null()).spawn();
    assert_eq!(exit_within(run.unwrap(), Duration::from_secs(30), "a run whose init exited"), Some(3));

    let id = e.ok(&["create", "--pid", "host", "--uts", "host", IMAGE, "true"]).trim().to_string();
    let config = &e.inspect(&id)["HostConfig"];
    assert_eq!(
        (&config["PidMode"], &config["IpcMode"], &config["UTSMode"]),
        (&"host".into(), &"private".into(), &"host".into())
    );
    e.ok(&["rm", &id]);
    for (flags, said) in [
        (&["--uts", "host", "--hostname", "x"][..], "Conflicting options: hostname and the UTS mode"),
        (&["--pid", "container:other"][..], "--pid: mode \"container:other\" is not supported"),
    ] {
        let o = e.sh(flags, "true");
        assert!(o.code == 125 && o.stderr.contains(said), "{flags:?}: {}", o.stderr);
    }
}

#[test]
fn no_new_privileges_shm_size_sysctls_and_oom_score() {
    // docker's --security-opt no-new-privileges, --shm-size, --sysctl, --oom-score-adj.
    let e = Env::new();
    let script = "grep NoNewPrivs /proc/self/status; grep ' /dev/shm ' /proc/mounts | grep -o 'size=[0-9]*k'; \
                  cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/msgmax /proc/self/oom_score_adj";
    let flags = [
        "--security-opt",
        "no-new-privileges",
        "--shm-size",
        "8m",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "--sysctl",
        "kernel.msgmax=9000",
        "--oom-score-adj",
        "500",
    ];
    let o = e.sh(&flags, script);
    assert_eq!(o.stdout, "NoNewPrivs:\t1\nsize=8192k\n1\n9000\n500\n", "{}", o.stderr);
    // The defaults (a new network namespace's ip_forward follows the host's settings: not read).
    let o = e.sh(&[], script);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(
        [lines[0], lines[1], lines[3], lines[4]],
        ["NoNewPrivs:\t0", "size=65536k", "8192", "0"],
        "{}",
        o.stderr
    );
    for (flags, said) in [
        (&["--sysctl", "vm.swappiness=1"][..], "\"vm.swappiness\" is not in a separate kernel namespace"),
        (&["--network", "host", "--sysctl", "net.ipv4.ip_forward=1"][..], "not allowed in the host's net namespace"),
        (&["--oom-score-adj", "2000"][..], "range for oom score adj is [-1000, 1000]"),
        (&["--security-opt", "no-new-privileges=maybe"][..], "invalid --security-opt"),
    ] {
        let o = e.sh(flags, "true");
        assert!(o.code == 125 && o.stderr.contains(said), "{flags:?}: {}", o.stderr);
    }
    assert!(e.s.ps(true).is_empty());
}

#[test]
fn capabilities() {
    let e = Env::new();
    let o = e.sh(&[], "hostname changed");
    assert_ne!(o.code, 0, "docker's default set has no CAP_SYS_ADMIN");
    assert!(o.stderr.contains("not permitted"), "{}", o.stderr);
    let o = e.sh(&["--cap-add", "SYS_ADMIN"], "hostname changed && hostname");
    assert_eq!(o.stdout, "changed\n", "{}", o.stderr);
    assert_eq!(e.sh(&[], "touch /f && chown 1 /f && echo ok").stdout, "ok\n");
    let o = e.sh(&["--cap-drop", "CHOWN"], "touch /f && chown 1 /f");
    assert_ne!(o.code, 0, "chown without CAP_CHOWN");
    let o = e.sh(&["--cap-drop", "ALL"], "grep CapEff /proc/self/status");
    assert!(o.stdout.contains("0000000000000000"), "{}", o.stdout);
    let o = e.sh(&["-u", "nobody"], "grep CapEff /proc/self/status");
    assert!(o.stdout.contains("0000000000000000"), "non-root has no effective caps: {}", o.stdout);
}

#[test]
fn memory_limit_kills_with_137() {
    let e = Env::new();
    let o = e.run(&[
        "run",
        "--name",
        "hog",
        "--memory",
        "32m",
        IMAGE,
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=96M",
        "count=1",
    ]);
    assert_eq!(o.code, 137, "{} {}", o.stdout, o.stderr);
    let info = e.inspect("hog");
    assert_eq!(info["State"]["ExitCode"], 137);
    assert_eq!(info["State"]["OOMKilled"], true);
    assert_eq!(info["HostConfig"]["Memory"], 32 << 20);
    let id = e.id("hog");
    e.assert_run_released(&id);
    // Within the limit it runs.
    let o = e.sh(&["--memory", "64m"], "dd if=/dev/zero of=/dev/null bs=8M count=1 2>/dev/null && echo fine");
    assert_eq!(o.stdout, "fine\n");
}

#[test]
fn pids_limit_contains_a_fork_bomb() {
    let e = Env::new();
    // The bomb runs in a subshell: the container's own shell forks once (while far below the
    // limit) and goes on to sleep, instead of racing the bomb for the last pids and dying.
    let id = e.ok(&["run", "-d", "--pids-limit", "20", IMAGE, "sh", "-c", "(f(){ f|f & }; f); exec sleep 60"]);
    let id = id.trim();
    assert_eq!(cgroup_file("pids", id, "pids.max"), "20");
    for _ in 0..20 {
        let current: u32 = cgroup_file("pids", id, "pids.current").parse().unwrap();
        assert!(current <= 20, "pids.current {current}");
    }
    let status = e.ps_status(&e.inspect(id)["Name"].as_str().unwrap()[1..]);
    assert!(status.starts_with("Up"), "status {status:?}, logs: {}", e.run(&["logs", id]).stderr);
    let o = e.run(&["rm", "-f", id]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    e.assert_no_trace(id);
}

#[test]
fn cpu_quota() {
    let e = Env::new();
    let id = e.ok(&["run", "-d", "--cpus", "0.5", IMAGE, "sleep", "30"]);
    let id = id.trim();
    assert_eq!(cgroup_file("cpu", id, "cpu.cfs_quota_us"), "50000");
    assert_eq!(cgroup_file("cpu", id, "cpu.cfs_period_us"), "100000");
    e.ok(&["rm", "-f", id]);
    e.assert_no_trace(id);

    // docker's --cpu-period/--cpu-quota: the cgroup's values, inspect's, update, and the
    // daemon's refusals in its words.
    let id = e.ok(&["run", "-d", "--cpu-period", "50000", "--cpu-quota", "20000", IMAGE, "sleep", "30"]);
    let id = id.trim();
    assert_eq!(cgroup_file("cpu", id, "cpu.cfs_period_us"), "50000");
    assert_eq!(cgroup_file("cpu", id, "cpu.cfs_quota_us"), "20000");
    let host = e.s.inspect(id)["HostConfig"].clone();
    assert_eq!((host["CpuPeriod"].as_i64(), host["CpuQuota"].as_i64()), (Some(50000), Some(20000)));
    e.ok(&["update", "--cpu-quota", "40000", id]);
    assert_eq!(cgroup_file("cpu", id, "cpu.cfs_quota_us"), "40000");
    assert_eq!(cgroup_file("cpu", id, "cpu.cfs_period_us"), "50000");
    let out = e.s.fails(&["update", "--cpus", "1", id]);
    assert!(out.stderr.contains("Conflicting options: Nano CPUs and CPU Period cannot both be set"), "{}", out.stderr);
    e.ok(&["rm", "-f", id]);
    e.assert_no_trace(id);
    // A quota of -1 is none: no conflict with --cpus.
    e.ok(&["run", "--rm", "--cpus", "0.5", "--cpu-quota", "-1", IMAGE, "true"]);
    for (flags, said) in [
        (
            &["--cpus", "1", "--cpu-quota", "50000"][..],
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
        ),
        (
            &["--cpu-period", "999"][..],
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
        ),
        (&["--cpu-quota", "999"][..], "CPU cfs quota can not be less than 1ms (i.e. 1000)"),
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[IMAGE, "true"]);
        let out = e.s.fails(&args);
        assert!(out.stderr.contains(said), "{flags:?}: {}", out.stderr);
    }
}

#[test]
fn memory_and_cpu_flags() {
    // docker's --memory-swap, --memory-reservation, --cpu-shares, --cpuset-cpus/-mems: the
    // cgroup's values, inspect's, and docker's refusals.
    let e = Env::new();
    let flags = ["run", "-m", "64m", "--memory-swap", "128m", "--memory-reservation", "32m", "-c", "512"];
    let id = e.ok(&[&flags[..], &["--cpuset-cpus", "0", "--cpuset-mems", "0", "-d", IMAGE, "sleep", "30"]].concat());
    let id = id.trim();
    assert_eq!(cgroup_file("memory", id, "memory.limit_in_bytes"), "67108864");
    if Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists() {
        assert_eq!(cgroup_file("memory", id, "memory.memsw.limit_in_bytes"), "134217728");
    }
    assert_eq!(cgroup_file("memory", id, "memory.soft_limit_in_bytes"), "33554432");
    assert_eq!(cgroup_file("cpu", id, "cpu.shares"), "512");
    assert_eq!(
        (cgroup_file("cpuset", id, "cpuset.cpus"), cgroup_file("cpuset", id, "cpuset.mems")),
        ("0".into(), "0".into())
    );
    let config = &e.inspect(id)["HostConfig"];
    assert_eq!(
        (&config["MemorySwap"], &config["CpuShares"], &config["CpusetCpus"]),
        (&134217728.into(), &512.into(), &"0".into())
    );
    e.ok(&["rm", "-f", id]);
    let cpus = std::thread::available_parallelism().unwrap().get();
    for (flags, said) in [
        (
            &["--memory-swap", "64m"][..],
            "You should always set the Memory limit when using Memoryswap limit".to_string(),
        ),
        (
            &["-m", "64m", "--memory-swap", "32m"][..],
            "Minimum memoryswap limit should be larger than memory limit".into(),
        ),
        (&["-m", "32m", "--memory-reservation", "64m"][..], "can not be less than memory reservation limit".into()),
        (
            &["--cpuset-cpus", "64"][..],
            format!("Requested CPUs are not available - requested 64, available: 0-{}", cpus - 1),
        ),
        (&["--cpuset-cpus", "x"][..], "Invalid value x for --cpuset-cpus".into()),
    ] {
        let o = e.sh(flags, "true");
        assert!(o.code == 125 && o.stderr.contains(&said), "{flags:?}: {}", o.stderr);
    }
    assert!(e.s.ps(true).is_empty());
}

#[test]
fn pause_and_unpause() {
    // docker's pause/unpause: the freezer, ps and inspect, docker's refusals, and a stop of a
    // paused container still ends it.
    let e = Env::new();
    let id = e.ok(&["run", "-d", "--name", "frozen", IMAGE, "sleep", "60"]);
    let id = id.trim();
    assert_eq!(e.ok(&["pause", "frozen"]), "frozen\n");
    assert_eq!(cgroup_file("freezer", id, "freezer.state"), "FROZEN");
    assert!(e.ps_status("frozen").ends_with("(Paused)"), "{}", e.ps_status("frozen"));
    let state = &e.inspect("frozen")["State"];
    assert_eq!((&state["Status"], &state["Paused"], &state["Running"]), (&"paused".into(), &true.into(), &true.into()));
    let o = e.run(&["pause", "frozen"]);
    assert!(o.code == 1 && o.stderr.contains(&format!("Container {id} is already paused")), "{}", o.stderr);
    let o = e.run(&["exec", "frozen", "true"]);
    assert!(o.code != 0 && o.stderr.contains("is paused, unpause it first"), "{}", o.stderr);
    assert_eq!(e.ok(&["container", "unpause", "frozen"]), "frozen\n");
    assert_eq!(cgroup_file("freezer", id, "freezer.state"), "THAWED");
    assert_eq!(e.inspect("frozen")["State"]["Status"], "running");
    e.ok(&["exec", "frozen", "true"]);
    let o = e.run(&["unpause", "frozen"]);
    assert!(o.code == 1 && o.stderr.contains(&format!("Container {id} is not paused")), "{}", o.stderr);
    // Paused again, then stopped: the signal reaches it once thawed.
    e.ok(&["pause", "frozen"]);
    e.ok(&["stop", "-t", "1", "frozen"]);
    assert_eq!(e.inspect("frozen")["State"]["Status"], "exited");
    let o = e.run(&["pause", "frozen"]);
    assert!(o.code == 1 && o.stderr.contains(&format!("container {id} is not running")), "{}", o.stderr);
    let o = e.run(&["unpause", "nosuch"]);
    assert!(o.code == 1 && o.stderr.contains("No such container: nosuch"), "{}", o.stderr);
    e.ok(&["rm", id]);
    e.assert_no_trace(id);
}

#[test]
fn update_changes_limits_now_and_for_later_starts() {
    // docker's update: the running container's cgroup at once, inspect, the next start, and
    // docker's refusals, which change nothing.
    let e = Env::new();
    let id = e.ok(&["run", "-d", "--name", "limited", "-m", "64m", IMAGE, "sleep", "60"]);
    let id = id.trim();
    let limits = ["--memory", "96m", "--memory-reservation", "32m", "--cpus", "0.5", "--pids-limit", "30", "-c", "256"];
    assert_eq!(e.ok(&[&["update"][..], &limits, &["--restart", "on-failure:3", "limited"]].concat()), "limited\n");
    let check_cgroup = || {
        assert_eq!(cgroup_file("memory", id, "memory.limit_in_bytes"), (96 << 20).to_string());
        if Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists() {
            // No --memory-swap: twice the memory, as at run.
            assert_eq!(cgroup_file("memory", id, "memory.memsw.limit_in_bytes"), (192 << 20).to_string());
        }
        assert_eq!(cgroup_file("memory", id, "memory.soft_limit_in_bytes"), (32 << 20).to_string());
        assert_eq!(cgroup_file("cpu", id, "cpu.cfs_quota_us"), "50000");
        assert_eq!(cgroup_file("cpu", id, "cpu.shares"), "256");
        assert_eq!(cgroup_file("pids", id, "pids.max"), "30");
    };
    check_cgroup();
    let config = e.inspect("limited")["HostConfig"].clone();
    assert_eq!(
        (&config["Memory"], &config["NanoCpus"], &config["PidsLimit"], &config["RestartPolicy"]["Name"]),
        (&(96i64 << 20).into(), &500000000i64.into(), &30.into(), &"on-failure".into())
    );
    // Refused, in docker's words, and nothing changes.
    let cpus = std::thread::available_parallelism().unwrap().get();
    for (flags, said) in [
        (&["--memory-swap", "64m"][..], "Minimum memoryswap limit should be larger than memory limit".to_string()),
        (&["--memory", "256m"][..], "Memory limit should be smaller than already set memoryswap limit".into()),
        (&["--memory-reservation", "128m"][..], "can not be less than memory reservation limit".into()),
        (
            &["--cpuset-cpus", "64"][..],
            format!("Requested CPUs are not available - requested 64, available: 0-{}", cpus - 1),
        ),
        (&["--restart", "sometimes"][..], "sometimes".into()),
        (&[][..], "you must provide one or more flags when using this command".into()),
    ] {
        // The swap case needs a swap limit in force first.
        if flags == ["--memory", "256m"] {
            e.ok(&["update", "--memory-swap", "200m", "limited"]);
        }
        let o = e.run(&[&["update"][..], flags, &["limited"]].concat());
        assert!(o.code != 0 && o.stderr.contains(&said), "{flags:?}: {}", o.stderr);
        assert_eq!(e.inspect("limited")["HostConfig"]["Memory"], (96i64 << 20));
    }
    // The record keeps them: a later start gets them too.
    e.ok(&["stop", "-t", "0", "limited"]);
    e.ok(&["update", "--pids-limit", "40", "limited"]);
    e.ok(&["start", "limited"]);
    assert_eq!(cgroup_file("pids", id, "pids.max"), "40");
    assert_eq!(cgroup_file("memory", id, "memory.limit_in_bytes"), (96 << 20).to_string());
    // An --rm container gets no restart policy (docker's refusal).
    let rm = e.ok(&["run", "-d", "--rm", IMAGE, "sleep", "60"]);
    let o = e.run(&["update", "--restart", "always", rm.trim()]);
    assert!(o.code == 1 && o.stderr.contains("AutoRemove is enabled"), "{}", o.stderr);
    e.ok(&["rm", "-f", rm.trim(), id]);
    e.assert_no_trace(id);
}

#[test]
fn diff_export_and_commit() {
    // docker's diff, export and commit: a container's changes listed (strata's own
    // mountpoints left out), an image made of them that runs, a deleted-and-remade directory
    // (overlayfs' opaque directory) carried through a second commit, and the export of it.
    let e = Env::new();
    let script = "mkdir /data && echo a > /data/a && echo b > /data/b && echo extra >> /etc/passwd && rm /bin/ls";
    e.ok(&["run", "--name", "first", IMAGE, "sh", "-c", script]);
    // ps -s: what it wrote, and that with its image.
    let sized = e.ok(&["ps", "-a", "-s", "--filter", "name=first", "--format", "{{.Names}} {{.Size}}"]);
    let (written, virtual_size) = sized.trim().strip_prefix("first ").unwrap().split_once(" (virtual ").unwrap();
    assert!(written.ends_with('B') && virtual_size.ends_with("MB)"), "{sized}");
    let sized = serde_json::from_str::<serde_json::Value>(&e.ok(&["inspect", "--size", "first"])).unwrap();
    let (rw, rootfs) = (sized[0]["SizeRw"].as_u64().unwrap(), sized[0]["SizeRootFs"].as_u64().unwrap());
    assert!(rw > 0 && rootfs > rw + 1_000_000, "{rw} {rootfs}");
    let diff = e.ok(&["diff", "first"]);
    assert_eq!(diff, "C /bin\nD /bin/ls\nA /data\nA /data/a\nA /data/b\nC /etc\nC /etc/passwd\n");
    let id = e.ok(&["commit", "first", "localhost/committed:one"]);
    assert!(id.starts_with("sha256:") && id.trim().len() == 71, "{id}");
    let check = "cat /data/a /data/b; tail -n 1 /etc/passwd; test -e /bin/ls || echo no ls";
    let o = e.run(&["run", "--rm", "localhost/committed:one", "sh", "-c", check]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "a\nb\nextra\nno ls\n"), "{}", o.stderr);
    // The committed image's config is the container's (its command), as docker's.
    let image = serde_json::from_str::<serde_json::Value>(&e.ok(&["inspect", "localhost/committed:one"])).unwrap();
    assert_eq!(image[0]["Config"]["Cmd"], serde_json::json!(["sh", "-c", script]), "{image}");

    // /data removed and made again: what the image had there is gone, in diff and in the
    // next image.
    let remake = "rm -rf /data && mkdir /data && echo n > /data/new";
    e.ok(&["run", "--name", "second", "-e", "FOO=bar", "localhost/committed:one", "sh", "-c", remake]);
    assert_eq!(e.ok(&["diff", "second"]), "C /data\nD /data/a\nD /data/b\nA /data/new\n");
    let changes = ["-c", "CMD [\"cat\", \"/data/new\"]", "-m", "remade /data", "-a", "Jane <jane@example.com>"];
    e.ok(&[&["commit"][..], &changes, &["second", "localhost/committed:two"]].concat());
    let o = e.run(&["run", "--rm", "localhost/committed:two"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "n\n"), "{}", o.stderr);
    let o = e.run(&["run", "--rm", "localhost/committed:two", "sh", "-c", "ls /data; echo $FOO"]);
    assert_eq!(o.stdout, "new\nbar\n", "{}", o.stderr);
    let image = serde_json::from_str::<serde_json::Value>(&e.ok(&["inspect", "localhost/committed:two"])).unwrap();
    assert_eq!(image[0]["Author"], "Jane <jane@example.com>", "{image}");
    // history: newest first, a row per layer (the base image's one has no history entry).
    let history =
        e.ok(&["history", "--no-trunc", "--format", "{{.ID}}|{{.CreatedBy}}|{{.Comment}}", "localhost/committed:two"]);
    let rows: Vec<&str> = history.lines().collect();
    let id = image[0]["Id"].as_str().unwrap();
    assert_eq!(rows.len(), 3, "{history}");
    assert_eq!(rows[0], format!("{id}|sh -c {remake}|remade /data"));
    assert_eq!(rows[1], format!("<missing>|sh -c {script}|"));

    // export: the whole filesystem as the container sees it, no whiteout, no mount.
    let tar = e.s.root().join("second.tar");
    e.ok(&["export", "-o", tar.to_str().unwrap(), "second"]);
    let listed = std::process::Command::new("tar").arg("tf").arg(&tar).output().unwrap();
    let names = String::from_utf8(listed.stdout).unwrap();
    let names: Vec<&str> = names.lines().collect();
    for want in ["bin/busybox", "data/", "data/new", "etc/passwd", "tmp/"] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains(".wh.") || n.starts_with("data/a") || *n == "bin/ls"), "{names:?}");
    let o = e.run(&["export", "-o", "/nonexistent/dir/x.tar", "second"]);
    assert!(o.code == 1 && o.stderr.contains("/nonexistent/dir/x.tar"), "{}", o.stderr);
    // A container's directories nested without end: refused with a line, not a crash.
    let nest = "i=0; while [ $i -lt 300 ]; do mkdir d; cd d; i=$((i+1)); done";
    e.ok(&["run", "--name", "deep", IMAGE, "sh", "-c", nest]);
    for args in [&["diff", "deep"][..], &["export", "-o", "/dev/null", "deep"]] {
        let o = e.run(args);
        assert!(o.code == 1 && o.stderr.contains("more than 256 directories deep"), "{args:?}: {}", o.stderr);
    }
    e.ok(&["rm", "deep"]);
    // A device is written to, never replaced.
    e.ok(&["export", "-o", "/dev/null", "second"]);
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());

    // A running container is committed paused and left running.
    e.ok(&["run", "-d", "--name", "live", IMAGE, "sh", "-c", "echo live > /tmp/l; exec sleep 60"]);
    e.ok(&["exec", "live", "test", "-e", "/tmp/l"]);
    e.ok(&["commit", "live", "localhost/committed:live"]);
    assert_eq!(e.inspect("live")["State"]["Status"], "running");
    let o = e.run(&["run", "--rm", "localhost/committed:live", "cat", "/tmp/l"]);
    assert_eq!(o.stdout, "live\n", "{}", o.stderr);

    // Refusals: nothing is made. A file named as a whiteout would delete the image's own
    // when unpacked.
    let before = e.ok(&["images", "-q", "-a"]);
    e.ok(&["run", "--name", "sly", IMAGE, "touch", "/etc/.wh.passwd"]);
    let o = e.run(&["commit", "sly", "localhost/committed:sly"]);
    assert!(o.code == 1 && o.stderr.contains("/etc/.wh.passwd") && o.stderr.contains("(.wh.)"), "{}", o.stderr);
    let o = e.run(&["commit", "-c", "FROM scratch", "first", "localhost/committed:bad"]);
    assert!(o.code == 1 && o.stderr.contains("FROM scratch"), "{}", o.stderr);
    let o = e.run(&["commit", "nosuch"]);
    assert!(o.code == 1 && o.stderr.contains("No such container: nosuch"), "{}", o.stderr);
    let o = e.run(&["diff", "nosuch"]);
    assert!(o.code == 1 && o.stderr.contains("No such container: nosuch"), "{}", o.stderr);
    assert_eq!(e.ok(&["images", "-q", "-a"]), before);
    e.ok(&["rm", "-f", "first", "second", "live", "sly"]);
}

#[test]
fn image_prune_takes_dangling_images_and_with_all_every_unused_one() {
    // docker's image prune: untagged images no container uses; -a: every image none uses.
    let e = Env::new();
    e.ok(&["run", "--name", "maker", IMAGE, "touch", "/made"]);
    let dangling = e.ok(&["commit", "maker"]).trim().to_string();
    let kept = e.ok(&["commit", "-c", "LABEL kept=1", "maker", "localhost/kept:1"]).trim().to_string();
    e.ok(&["rm", "maker"]);
    // images --filter, docker's keys.
    let only = |filter: &str| e.ok(&["images", "-q", "--no-trunc", "-f", filter]);
    assert_eq!(only("dangling=true"), format!("{dangling}\n"));
    assert_eq!(only("reference=localhost/kept:*"), format!("{kept}\n"));
    assert_eq!(
        only("reference=localhost/*"),
        format!("{}\n{kept}\n", e.ok(&["images", "-q", "--no-trunc", IMAGE]).trim())
    );
    assert_eq!(only("label=kept=1"), format!("{kept}\n"));
    assert_eq!(e.ok(&["images", "-q", "-f", "dangling=false", "-f", "label=kept"]).lines().count(), 1);
    let o = e.run(&["images", "-f", "dangling=maybe"]);
    assert!(o.code != 0 && o.stderr.contains("invalid filter 'dangling=maybe'"), "{}", o.stderr);
    let out = e.ok(&["image", "prune"]);
    assert!(out.starts_with(&format!("Deleted Images:\ndeleted: {dangling}\n\n")), "{out}");
    let ids = e.ok(&["images", "-q", "--no-trunc"]);
    assert!(!ids.contains(&dangling) && ids.contains(&kept), "{ids}");
    // A container keeps its image; the other, tagged twice, goes with both names.
    e.ok(&["tag", "localhost/kept:1", "localhost/kept:2"]);
    e.ok(&["create", "--name", "user", IMAGE]);
    let out = e.ok(&["image", "prune", "-a"]);
    let lines = "untagged: localhost/kept:1\nuntagged: localhost/kept:2\ndeleted: ";
    assert!(out.starts_with(&format!("Deleted Images:\n{lines}{kept}\n\n")), "{out}");
    assert_eq!(e.ok(&["images", "--format", "{{.Repository}}"]), "localhost/busybox\n");
    e.ok(&["rm", "user"]);
}

#[test]
fn cidfile_holds_the_id_and_is_never_reused() {
    let e = Env::new();
    let cid = e.s.root().join("cid");
    let cid_arg = cid.to_str().unwrap();
    let id = e.ok(&["run", "-d", "--cidfile", cid_arg, IMAGE, "sleep", "30"]);
    assert_eq!(std::fs::read_to_string(&cid).unwrap(), id.trim());
    let o = e.run(&["run", "--rm", "--cidfile", cid_arg, IMAGE, "true"]);
    assert!(o.code == 125 && o.stderr.contains("container ID file found"), "{}", o.stderr);
    // A container that cannot be made leaves no file.
    let failed = e.s.root().join("failed-cid");
    let o = e.run(&["create", "--cidfile", failed.to_str().unwrap(), "--memory", "1k", IMAGE]);
    assert_eq!(o.code, 125, "{}", o.stderr);
    assert!(!failed.exists());
    e.ok(&["rm", "-f", id.trim()]);
}

/// `logs` without `-f` prints what the log holds when asked and ends, as docker's does,
/// however fast the container writes (it read on to each new end, for ever); `--tail N`
/// prints N lines.
#[test]
fn logs_ends_while_the_container_writes_on() {
    let e = Env::new();
    e.ok(&["run", "-d", "--name", "chatty", IMAGE, "yes"]);
    let log = std::path::PathBuf::from(e.inspect("chatty")["LogPath"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) < 1 << 20 {
        assert!(Instant::now() < deadline, "nothing logged");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut logs = e.s.command(&["logs", "chatty"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = logs.stdout.take().unwrap();
    // A reader slower than the container's writing.
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while let Ok(n @ 1..) = std::io::Read::read(&mut out, &mut buf) {
            total += n;
            std::thread::sleep(Duration::from_millis(50));
        }
        total
    });
    assert_eq!(exit_within(logs, Duration::from_secs(60), "logs of a container writing on"), Some(0));
    assert!(reader.join().unwrap() > 0);
    assert_eq!(e.ok(&["logs", "--tail", "5", "chatty"]), "y\n".repeat(5));
    e.ok(&["rm", "-f", "chatty"]);
}

#[test]
fn logs_rotate_as_docker_json_file_does() {
    // --log-opt max-size/max-file: the files rotate, `logs` (also -f and --tail) reads across
    // them in order; with few files the oldest lines go; --log-driver none keeps nothing.
    let e = Env::new();
    let script = "while [ ! -e /go ]; do sleep 0.05; done; i=0; while [ $i -lt 60 ]; do echo line $i; i=$((i+1)); done";
    let opts = ["--log-opt", "max-size=1k", "--log-opt", "max-file=10", "--log-opt", "compress=true"];
    let id = e.ok(&[&["run", "-d", "--name", "rot"][..], &opts, &[IMAGE, "sh", "-c", script]].concat());
    let id = id.trim();
    let follow = e.s.command(&["logs", "-f", "rot"]).stdout(Stdio::piped()).spawn().unwrap();
    e.ok(&["exec", "rot", "touch", "/go"]);
    assert_eq!(e.ok(&["wait", "rot"]), "0\n");
    let followed = follow.wait_with_output().unwrap();
    let all: String = (0..60).map(|i| format!("line {i}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&followed.stdout), all);
    assert_eq!(e.ok(&["logs", "rot"]), all);
    let last: String = (40..60).map(|i| format!("line {i}\n")).collect();
    assert_eq!(e.ok(&["logs", "--tail", "20", "rot"]), last);
    let log = e.s.root().join("containers").join(id).join(format!("{id}-json.log"));
    let rotated: Vec<_> =
        (1..10).map(|n| PathBuf::from(format!("{}.{n}", log.display()))).filter(|p| p.exists()).collect();
    assert!(rotated.len() >= 3, "{rotated:?}");
    for file in rotated.iter().chain([&log]) {
        // docker's units: 1k is 1000 bytes.
        assert!(std::fs::metadata(file).unwrap().len() <= 1000, "{}", file.display());
    }
    let config = &e.inspect("rot")["HostConfig"]["LogConfig"]["Config"];
    assert_eq!((&config["max-file"], &config["max-size"]), (&"10".into(), &"1k".into()));

    // Two files: only the newest lines are left.
    let opts = ["--log-opt", "max-size=1k", "--log-opt", "max-file=2"];
    e.ok(&[
        &["run", "--name", "few"][..],
        &opts,
        &[IMAGE, "sh", "-c", &script.replace("while [ ! -e /go ]; do sleep 0.05; done; ", "")],
    ]
    .concat());
    let kept = e.ok(&["logs", "few"]);
    assert!(kept.len() < all.len() && all.ends_with(&kept) && kept.starts_with("line "), "{kept}");

    // none: nothing kept, and `logs` says so.
    e.ok(&["run", "--name", "quiet", "--log-driver", "none", IMAGE, "echo", "unheard"]);
    let o = e.run(&["logs", "quiet"]);
    assert!(o.code == 1 && o.stderr.contains("configured logging driver does not support reading"), "{}", o.stderr);
    let o = e.sh(&["--log-opt", "colour=blue"], "true");
    assert!(o.code == 125 && o.stderr.contains("unknown log opt 'colour' for json-file log driver"), "{}", o.stderr);
    e.ok(&["rm", "rot", "few", "quiet"]);
}

#[test]
fn detached_logs_stop_rm() {
    let e = Env::new();
    let out = e.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        IMAGE,
        "sh",
        "-c",
        "echo hello; echo oops >&2; while true; do sleep 1; done",
    ]);
    let id = out.trim().to_string();
    assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{out}");
    let running = e.ps(false);
    assert_eq!(running.len(), 1);
    assert_eq!(running[0]["Names"], "web");
    assert_eq!(running[0]["State"], "running");
    assert_eq!(running[0]["Kind"], "native");
    assert!(running[0]["Status"].as_str().unwrap().starts_with("Up "));
    let table = e.ok(&["ps"]);
    assert!(table.starts_with("CONTAINER ID   IMAGE"), "{table}");
    assert!(table.contains(&id[..12]) && table.contains("web"), "{table}");
    assert_eq!(e.ok(&["ps", "-q"]).trim(), &id[..12]);
    // docker's Go templates over the same rows and documents.
    assert_eq!(e.ok(&["ps", "--format", r"{{.Names}}\t{{.Kind}} {{.State}}"]), "web\tnative running\n");
    let table = e.ok(&["ps", "--format", r"table {{.ID}}\t{{.Names}}"]);
    assert_eq!(table, format!("CONTAINER ID   NAMES\n{}   web\n", &id[..12]));
    let pid = e.ok(&["inspect", "-f", "{{.State.Pid}}", "web"]).trim().parse::<i32>().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "pid {pid}");
    let inspected =
        e.ok(&["container", "inspect", "--format", "{{.Name}} {{.State.Status}} {{json .Config.Cmd}}", &id]);
    assert_eq!(
        inspected.lines().next().unwrap(),
        r#"/web running ["sh","-c","echo hello; echo oops >&2; while true; do sleep 1; done"]"#
    );

    // A container's spec and log hold its environment and output: for root only, also in
    // a root directory that other users may enter.
    let mode = |p: &Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o777;
    let dir = e.s.root().join("containers");
    assert_eq!((mode(&dir), mode(&dir.join(&id))), (0o700, 0o700));
    assert_eq!(mode(&dir.join(&id).join("config.json")), 0o600);
    // The monitor logs while nobody watches; `logs` splits the streams again.
    let mut logs = e.run(&["logs", "web"]);
    for _ in 0..50 {
        if logs.stdout.contains("hello") && logs.stderr.contains("oops") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        logs = e.run(&["logs", "web"]);
    }
    assert_eq!((logs.stdout.as_str(), logs.stderr.as_str()), ("hello\n", "oops\n"));
    let stamped = e.ok(&["logs", "--timestamps", "web"]);
    assert!(stamped.starts_with("20") && stamped.contains("Z hello"), "{stamped}");
    let raw = std::fs::read_to_string(e.s.root().join("containers").join(&id).join(format!("{id}-json.log"))).unwrap();
    let line: serde_json::Value = serde_json::from_str(raw.lines().next().unwrap()).unwrap();
    assert_eq!(line["log"], "hello\n");
    assert_eq!(mode(&dir.join(&id).join(format!("{id}-json.log"))), 0o600);
    assert_eq!(line["stream"], "stdout");

    // sh as PID 1 ignores SIGTERM: stop waits, then kills.
    let started = std::time::Instant::now();
    assert_eq!(e.ok(&["stop", "-t", "1", "web"]).trim(), "web");
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
    assert!(e.ps(false).is_empty());
    assert!(e.ps_status("web").starts_with("Exited (137)"), "{}", e.ps_status("web"));
    assert_eq!(e.inspect("web")["State"]["ExitCode"], 137);
    e.assert_run_released(&id);
    assert!(e.s.root().join("containers").join(&id).join("rootfs/upper").is_dir(), "the writable layer stays");

    assert_eq!(e.ok(&["rm", "web"]).trim(), "web");
    e.assert_no_trace(&id);
    let o = e.run(&["rm", "web"]);
    assert_eq!((o.code, o.stderr.as_str()), (1, "Error: No such container: web\n"));
}

#[test]
fn logs_since_and_until() {
    let e = Env::new();
    e.ok(&["run", "--name", "two-lines", IMAGE, "sh", "-c", "echo one; echo two"]);
    let stamped = e.ok(&["logs", "-t", "two-lines"]);
    let second = stamped.lines().nth(1).unwrap().split(' ').next().unwrap().to_string();
    assert_eq!(e.ok(&["logs", "--since", &second, "two-lines"]), "two\n");
    assert_eq!(e.ok(&["logs", "--until", &second, "two-lines"]), "one\n");
    assert_eq!(e.ok(&["logs", "--since", "1h", "two-lines"]), "one\ntwo\n");
    assert_eq!(e.ok(&["logs", "--since", "2999-01-01T00:00:00Z", "two-lines"]), "");
    let later = (std::time::SystemTime::now() + Duration::from_secs(3600)).duration_since(std::time::UNIX_EPOCH);
    assert_eq!(e.ok(&["logs", "--since", &later.unwrap().as_secs().to_string(), "two-lines"]), "");
    let o = e.run(&["logs", "--since", "yesterday", "two-lines"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("invalid --since \"yesterday\""), "{}", o.stderr);
    e.ok(&["rm", "two-lines"]);
}

#[test]
fn logs_follow_ends_with_the_container() {
    let e = Env::new();
    let id = e.ok(&["run", "-d", IMAGE, "sh", "-c", "echo a; sleep 1; echo b"]);
    let o = e.run(&["logs", "-f", id.trim()]);
    assert_eq!(o.stdout, "a\nb\n");
    assert_eq!(e.ok(&["logs", "--tail", "1", id.trim()]), "b\n");
}

#[test]
fn restart_stops_and_starts_again() {
    let e = Env::new();
    e.ok(&["run", "-d", "--name", "again", IMAGE, "sh", "-c", "echo started; sleep 1000"]);
    let pid = |e: &Env| e.ok(&["inspect", "-f", "{{.State.Pid}}", "again"]).trim().parse::<i32>().unwrap();
    let first = pid(&e);
    // Its init (sleep, exec'd by sh) ignores SIGTERM as pid 1: -t passes, SIGKILL follows.
    assert_eq!(e.ok(&["restart", "-t", "1", "again"]), "again\n");
    let second = pid(&e);
    assert!(second > 0 && second != first, "{first} -> {second}");
    assert!(e.ps_status("again").starts_with("Up "), "{}", e.ps_status("again"));
    assert_eq!(e.ok(&["logs", "again"]), "started\nstarted\n");
    // top: the host's ps, the container's processes only.
    let top = e.ok(&["top", "again"]);
    let lines: Vec<&str> = top.lines().collect();
    assert!(lines[0].starts_with("UID") && lines[0].contains("PID") && lines[0].ends_with("CMD"), "{top}");
    assert_eq!(lines.len(), 2, "only the container's one process (sh exec'd sleep): {top}");
    assert!(lines.iter().any(|l| l.split_whitespace().nth(1) == Some(&second.to_string())), "{top}");
    assert!(lines.iter().any(|l| l.ends_with("sleep 1000")), "{top}");
    let top = e.ok(&["container", "top", "again", "-o", "pid,comm"]);
    assert_eq!(
        top.lines().next().map(str::split_whitespace).map(Iterator::collect::<Vec<_>>),
        Some(vec!["PID", "COMMAND"])
    );
    assert_eq!(top.lines().count(), 2, "{top}");
    // A stopped container is started.
    e.ok(&["stop", "-t", "0", "again"]);
    assert!(e.ps_status("again").starts_with("Exited (137)"), "{}", e.ps_status("again"));
    assert_eq!(e.ok(&["container", "restart", "again"]), "again\n");
    assert!(e.ps_status("again").starts_with("Up "), "{}", e.ps_status("again"));
    e.ok(&["stop", "-t", "0", "again"]);
    let o = e.run(&["top", "again"]);
    assert_eq!((o.code, o.stderr.trim()), (1, "Error: container again is not running"));
    let o = e.run(&["restart", "nosuch"]);

    assert_eq!((o.code, o.stderr.trim()), (1, "Error: No such container: nosuch"));
    // rm -f: one not there is already gone (docker's and podman's), the others are removed.
    let o = e.run(&["rm", "-f", "nosuch", "again"]);
    assert_eq!((o.code, o.stdout.as_str(), o.stderr.as_str()), (0, "again\n", ""), "{}", o.stderr);
    let o = e.run(&["rm", "nosuch"]);
    assert_eq!((o.code, o.stderr.trim()), (1, "Error: No such container: nosuch"));
}

/// On a full disk an `--rm` container still goes: one whose end cannot be recorded, and one
/// whose start cannot be (docker removes an `--rm` container whose start failed).
#[test]
fn a_full_disk_keeps_no_rm_container() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    // The tests run in a private mount namespace (see the top): the tmpfs is ours alone.
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs", small.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(mounted.success());
    let unmount = || drop(std::process::Command::new("umount").args(["-l", small.to_str().unwrap()]).status());
    let root = small.join("root");
    std::fs::create_dir(&root).unwrap();
    let s = Strata::with_root(&root);
    s.ok(&["load", "-q", "-i", busybox_archive().to_str().unwrap()]);
    let filler = small.join("filler");
    let fill = || {
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 1 << 16];
        while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    };

    let id = s.ok(&["run", "-d", "--rm", IMAGE, "sleep", "1000"]).trim().to_string();
    fill();
    let stopped = s.run(&["stop", "-t", "0", &id]);
    let left = s.run(&["ps", "-aq"]).stdout;
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(stopped.code, 0, "{}", stopped.stderr);
    assert_eq!(left, "", "the --rm container stayed");
    s.assert_no_trace(&id);

    let id = s.ok(&["create", "--rm", IMAGE, "true"]).trim().to_string();
    fill();
    let started = s.run(&["start", "-a", &id]);
    let left = s.run(&["ps", "-aq"]).stdout;
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(started.code, 125, "{}", started.stderr);
    assert!(started.stderr.contains("No space left on device"), "{}", started.stderr);
    assert_eq!(left, "", "the --rm container stayed");
    s.assert_no_trace(&id);
    unmount();
}

/// docker's: `restart` is not the end `--rm` is about; the container is started again, and
/// the end of a later run still removes it.
#[test]
fn restart_keeps_an_rm_container() {
    let e = Env::new();
    let id = e.ok(&["run", "-d", "--rm", "--name", "again-rm", IMAGE, "sh", "-c", "echo started; sleep 1000"]);
    let id = id.trim();
    assert_eq!(e.ok(&["restart", "-t", "0", "again-rm"]), "again-rm\n");
    assert!(e.ps_status("again-rm").starts_with("Up "), "{}", e.ps_status("again-rm"));
    assert_eq!(e.ok(&["logs", "again-rm"]), "started\nstarted\n");
    assert_eq!(e.inspect(id)["HostConfig"]["AutoRemove"], true);
    assert_eq!(e.ok(&["stop", "-t", "0", "again-rm"]), "again-rm\n");
    e.assert_no_trace(id);
}

#[test]
fn tmpfs_mounts_and_the_stop_signal() {
    let e = Env::new();
    // docker's defaults (noexec,nosuid,nodev) and the options given; writable in a read-only root.
    let script = "grep ' /scratch ' /proc/mounts; stat -c %a /scratch; touch /scratch/f && echo written";
    let o = e.run(&["run", "--rm", "--read-only", "--tmpfs", "/scratch:size=1m,mode=1777", IMAGE, "sh", "-c", script]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert!(lines[0].starts_with("tmpfs /scratch tmpfs rw,nosuid,nodev,noexec"), "{}", o.stdout);
    assert!(lines[0].contains("size=1024k"), "{}", o.stdout);
    assert_eq!(lines[1..], ["1777", "written"], "{}", o.stdout);
    let o = e.run(&["run", "--rm", "--tmpfs", "relative", IMAGE, "true"]);
    assert_eq!(o.code, 125, "{}", o.stderr);
    // --stop-signal is what stop sends first.
    let trap = "trap 'echo got usr1; exit 9' USR1; echo ready; while :; do sleep 0.1; done";
    e.ok(&["run", "-d", "--name", "sig", "--stop-signal", "SIGUSR1", IMAGE, "sh", "-c", trap]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !e.ok(&["logs", "sig"]).contains("ready") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(e.ok(&["inspect", "-f", "{{.Config.StopSignal}}", "sig"]), "SIGUSR1\n");
    e.ok(&["stop", "-t", "30", "sig"]);
    assert_eq!(e.ok(&["inspect", "-f", "{{.State.ExitCode}}", "sig"]), "9\n");
    assert!(e.ok(&["logs", "sig"]).contains("got usr1"));
    assert_eq!(e.run(&["run", "--rm", "--stop-signal", "SIGNOPE", IMAGE, "true"]).code, 125);
    e.ok(&["rm", "sig"]);
    // --stop-timeout is how long stop waits without -t: a container that ignores SIGTERM
    // is killed after 1 s, not docker's default 10.
    let deaf = "trap '' TERM; echo ready; while :; do sleep 0.1; done";
    e.ok(&["run", "-d", "--name", "deaf", "--stop-timeout", "1", IMAGE, "sh", "-c", deaf]);
    while !e.ok(&["logs", "deaf"]).contains("ready") && std::time::Instant::now() < deadline + Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(e.ok(&["inspect", "-f", "{{.Config.StopTimeout}}", "deaf"]), "1\n");
    let started = std::time::Instant::now();
    e.ok(&["stop", "deaf"]);
    assert!(started.elapsed() < Duration::from_secs(8), "stop took {:?}", started.elapsed());
    assert_eq!(e.ok(&["inspect", "-f", "{{.State.ExitCode}}", "deaf"]), "137\n");
    e.ok(&["rm", "deaf"]);
}

#[test]
fn ulimits_extra_hosts_and_dns() {
    let e = Env::new();
    let script = "ulimit -n; ulimit -Hn; ulimit -u; grep -w db /etc/hosts; grep nameserver /etc/resolv.conf";
    let o = e.run(&[
        "run",
        "--rm",
        "--ulimit",
        "nofile=512:1024",
        "--ulimit",
        "nproc=100",
        "--add-host",
        "db:10.1.2.3",
        "--dns",
        "192.0.2.53",
        IMAGE,
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout, "512\n1024\n100\n10.1.2.3\tdb\nnameserver 192.0.2.53\n");
    for bad in [&["--ulimit", "nofile=2:1"][..], &["--ulimit", "colour=1"], &["--add-host", "db"], &["--dns", "x"]] {
        let o = e.run(&[&["run", "--rm"][..], bad, &[IMAGE, "true"]].concat());
        assert_eq!(o.code, 125, "{bad:?}: {}", o.stderr);
        assert_eq!(o.stderr.lines().count(), 1, "{bad:?}: {}", o.stderr);
    }
}

#[test]
fn ps_filters_as_docker_does() {
    let e = Env::new();
    e.ok(&["run", "--name", "ok", IMAGE, "true"]);
    e.ok(&["create", "--name", "made", IMAGE, "true"]);
    assert_eq!(e.run(&["run", "--name", "three", IMAGE, "sh", "-c", "exit 3"]).code, 3);
    // --label-file's lines (comments and blank lines skipped), then --label over them.
    let label_file = e.s.root().join("labels");
    std::fs::write(&label_file, "# the team\nteam=db\n\ntier=back\n").unwrap();
    let labels = ["--label-file", label_file.to_str().unwrap(), "--label", "tier=front", "-l", "solo"];
    e.ok(&[&["run", "-d", "--name", "up", "-v", "/data", "--network", "host"][..], &labels, &[IMAGE, "sleep", "1000"]]
        .concat());
    let shown = e.ok(&["inspect", "-f", "{{json .Config.Labels}}", "up"]);
    assert_eq!(shown.trim(), r#"{"solo":"","team":"db","tier":"front"}"#);
    let names = |args: &[&str]| {
        let out = e.ok(&[&["ps", "--format", "{{.Names}}"][..], args].concat());
        out.lines().map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(names(&[]), ["up"]);
    // A status filter looks at every state (no -a needed), newest first.
    assert_eq!(names(&["-f", "status=exited"]), ["three", "ok"]);
    assert_eq!(names(&["-f", "exited=3"]), ["three"]);
    assert_eq!(names(&["-f", "status=created", "-f", "status=running"]), ["up", "made"]);
    assert_eq!(names(&["-a", "-f", "name=o", "-f", "status=exited"]), ["ok"]);
    assert_eq!(names(&["-a", "--filter", "ancestor="]).len(), 0);
    assert_eq!(names(&["-a", "--filter", &format!("ancestor={IMAGE}")]).len(), 4);
    assert_eq!(names(&["-n", "2"]), ["up", "three"]);
    assert_eq!(names(&["-l"]), ["up"]);
    assert_eq!(names(&["-a", "-f", "label=tier"]), ["up"]);
    assert_eq!(names(&["-a", "-f", "label=tier=front", "-f", "label=solo"]), ["up"]);
    assert!(names(&["-a", "-f", "label=tier=back"]).is_empty());
    assert_eq!(e.ok(&["inspect", "-f", "{{index .Config.Labels \"tier\"}}", "up"]), "front\n");
    assert_eq!(e.ok(&["ps", "--format", "{{.Labels}}"]), "solo=,team=db,tier=front\n");
    // Created before or after another container (by name or ID), a mount, a network.
    assert_eq!(names(&["-a", "-f", "before=three"]), ["made", "ok"]);
    assert_eq!(names(&["-a", "-f", &format!("since={}", e.id("made"))]), ["up", "three"]);
    assert_eq!(names(&["-a", "-f", "since=ok", "-f", "before=up"]), ["three", "made"]);
    // Filtered, then the last N.
    assert_eq!(names(&["-n", "1", "-f", "before=three"]), ["made"]);
    assert_eq!(names(&["-a", "-f", "volume=/data"]), ["up"]);
    assert_eq!(names(&["-a", "-f", "network=host"]), ["up"]);
    assert_eq!(names(&["-a", "-f", "network=none"]), ["three", "made", "ok"]);
    let o = e.run(&["ps", "-f", "before=nosuch"]);
    assert!(o.code != 0 && o.stderr.contains("nosuch"), "{}", o.stderr);
    let o = e.run(&["ps", "-f", "color=blue"]);
    assert_eq!((o.code, o.stderr.trim()), (1, "Error: invalid filter 'color'"));
    e.ok(&["rm", "-f", "ok", "made", "three", "up"]);
}

#[test]
fn rename_gives_another_name() {
    let e = Env::new();
    let id = e.ok(&["run", "-d", "--name", "first", IMAGE, "sleep", "1000"]).trim().to_string();
    e.ok(&["create", "--name", "taken", IMAGE, "true"]);
    assert_eq!(e.ok(&["rename", "first", "second"]), "");
    assert_eq!(
        e.ok(&["inspect", "-f", "{{.Id}} {{.Name}} {{.State.Status}}", "second"]),
        format!("{id} /second running\n")
    );
    assert_eq!(e.run(&["inspect", "first"]).code, 1);
    let fails = |args: &[&str], line: &str| {
        let o = e.run(args);
        assert_eq!((o.code, o.stderr.trim()), (1, line), "{args:?}");
    };
    fails(&["rename", "second", "second"], "Error: Renaming a container with the same name as its current name");
    fails(
        &["container", "rename", "second", "taken"],
        &format!(
            "Error: Conflict. The container name \"/taken\" is already in use by container \"{}\". You have to \
             remove (or rename) that container to be able to reuse that name.",
            e.id("taken")
        ),
    );
    assert!(e.run(&["rename", "second", "no/slashes"]).stderr.contains("Invalid container name"));
    fails(&["rename", "nosuch", "xy"], "Error: No such container: nosuch");
    // The running container's monitor records its end under the new name.
    e.ok(&["stop", "-t", "0", "second"]);
    assert!(e.ps_status("second").starts_with("Exited (137)"), "{}", e.ps_status("second"));
    e.ok(&["rm", "second", "taken"]);
}

/// `--rm` containers are removed as they end: `wait` still gets the exit code (from their
/// monitor), and `stop` succeeds.
#[test]
fn wait_and_stop_on_rm_containers() {
    let e = Env::new();
    let sync = tempfile::tempdir().unwrap();
    let volume = format!("{}:/sync", sync.path().display());
    let script = "while [ ! -e /sync/go ]; do sleep 0.05; done; exit 5";
    let id = e.ok(&["run", "-d", "--rm", "-v", &volume, "--name", "k4", IMAGE, "sh", "-c", script]).trim().to_string();
    let waiter = e.s.command(&["wait", "k4"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Let the container end once the wait is registered.
    let waiters = e.s.root().join("containers").join(&id).join("waiters");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&waiters).map(|d| d.count()).unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "wait never registered");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::write(sync.path().join("go"), "").unwrap();
    let out = waiter.wait_with_output().unwrap();
    assert_eq!((out.status.code(), String::from_utf8_lossy(&out.stdout).trim()), (Some(0), "5"), "{out:?}");
    e.assert_no_trace(&id);

    let id = e.ok(&["run", "-d", "--rm", "--name", "rmc", IMAGE, "sleep", "1000"]).trim().to_string();
    assert_eq!(e.ok(&["stop", "-t", "1", "rmc"]), "rmc\n");
    e.assert_no_trace(&id);
    assert!(e.ps(true).is_empty());
}

/// An attached CLI that reads slowly still gets everything a container said before it
/// ended (the run cut it off 2 s after the exit, silently).
#[test]
fn a_slow_cli_gets_all_of_the_output() {
    let e = Env::new();
    let script = "head -c 3000000 /dev/zero | tr '\\0' a; echo END";
    let mut cli = e.s.command(&["run", "--rm", IMAGE, "sh", "-c", script]);
    let mut cli = cli.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut out = cli.stdout.take().unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 200 << 10];
    while let Ok(n @ 1..) = std::io::Read::read(&mut out, &mut buf) {
        got.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(exit_within(cli, Duration::from_secs(60), "a run read slowly"), Some(0));
    assert_eq!(got.len(), 3_000_004);
    assert!(got.ends_with(b"aEND\n"));
}

/// An attached CLI that stops reading holds back the container's output (as with docker),
/// never its monitor: a stop is acted on and the container's own exit code recorded.
#[test]
fn a_cli_that_does_not_read_holds_up_only_the_output() {
    let e = Env::new();
    // The writer is a child of the container's PID 1, which itself never writes: a shell that
    // had its own output pending when the stop came would block flushing it at exit (the pipe
    // is full: nobody reads), and be killed after the timeout (137), whichever runtime.
    let script = "trap 'exit 3' TERM; (while :; do echo 0123456789012345678901234567890123456789; done) & wait";
    let mut cli = e.s.command(&["run", "--name", "stall", IMAGE, "sh", "-c", script]);
    let mut cli = cli.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !e.ps_status("stall").starts_with("Up ") {
        assert!(Instant::now() < deadline, "never started: {}", e.ps_status("stall"));
        std::thread::sleep(Duration::from_millis(20));
    }
    // Until the log holds more than the CLI's pipe takes (the rest waits in the backlog).
    let log = e.s.root().join("containers").join(e.id("stall")).join(format!("{}-json.log", e.id("stall")));
    while std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) < 1 << 20 {
        assert!(Instant::now() < deadline + Duration::from_secs(20), "the monitor stalled with the CLI's pipe");
        std::thread::sleep(Duration::from_millis(20));
    }
    e.ok(&["stop", "-t", "30", "stall"]);
    assert!(e.ps_status("stall").starts_with("Exited (3)"), "{}", e.ps_status("stall"));
    drop(cli.stdout.take());
    assert_eq!(cli.wait().unwrap().code(), Some(3));
    e.ok(&["rm", "stall"]);
}

#[test]
fn stats_reads_each_containers_cgroup() {
    let e = Env::new();
    e.ok(&["run", "-d", "--name", "spin", "--memory", "64m", IMAGE, "sh", "-c", "while :; do :; done"]);
    let write_then_sleep = "dd if=/dev/zero of=/big bs=1M count=32 2>/dev/null && touch /written && exec sleep 1000";
    e.ok(&["run", "-d", "--name", "rest", IMAGE, "sh", "-c", write_then_sleep]);
    e.ok(&["exec", "rest", "sh", "-c", "until [ -f /written ]; do sleep 0.01; done"]);
    e.ok(&["create", "--name", "never", IMAGE, "true"]);
    let rows: Vec<serde_json::Value> =
        e.ok(&["stats", "--no-stream", "--format", "json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let names: Vec<&str> = rows.iter().map(|r| r["Name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 2, "the running ones: {names:?}");
    let of = |name: &str| rows.iter().find(|r| r["Name"] == name).unwrap().clone();
    let percent = |v: &serde_json::Value| v.as_str().unwrap().trim_end_matches('%').parse::<f64>().unwrap();
    let spin = of("spin");
    assert!(percent(&spin["CPUPerc"]) > 1.0, "a busy loop: {spin}");
    assert!(spin["MemUsage"].as_str().unwrap().ends_with(" / 64MiB"), "its limit: {spin}");
    assert_eq!(spin["PIDs"], "1");
    let rest = of("rest");
    assert!(percent(&rest["CPUPerc"]) < 1.0, "asleep: {rest}");
    // As docker's, the usage leaves out the file cache the kernel may drop: not the 32 MiB the
    // container wrote.
    let usage = rest["MemUsage"].as_str().unwrap().split(" / ").next().unwrap();
    let mib = match usage.find(|c: char| c.is_ascii_alphabetic()).map(|i| usage.split_at(i)) {
        Some((n, "B")) => n.parse::<f64>().unwrap() / 1048576.0,
        Some((n, "KiB")) => n.parse::<f64>().unwrap() / 1024.0,
        Some((n, "MiB")) => n.parse::<f64>().unwrap(),
        _ => panic!("a usage under a GiB: {rest}"),
    };
    assert!(mib < 16.0, "{rest}");
    // Named, a container that does not run has no numbers; the table has docker's titles.
    let table = e.ok(&["stats", "--no-stream", "never"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("CONTAINER ID   NAME") && lines[0].ends_with("PIDS"), "{table}");
    assert!(lines[1].contains("never") && lines[1].ends_with("--"), "{table}");
    e.ok(&["rm", "-f", "spin", "rest", "never"]);
}

#[test]
fn rm_flag_leaves_nothing() {
    let e = Env::new();
    let o =
        e.run(&["run", "--rm", "--memory", "64m", IMAGE, "sh", "-c", "echo x > /file; grep memory /proc/self/cgroup"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let id = o.stdout.trim().rsplit('/').next().unwrap().to_string();
    assert_eq!(id.len(), 64, "the cgroup is /strata/<id>: {}", o.stdout);
    assert!(e.ps(true).is_empty());
    e.assert_no_trace(&id);
    let left: Vec<_> =
        std::fs::read_dir(e.s.root().join("containers")).unwrap().flatten().filter(|d| d.path().is_dir()).collect();
    assert!(left.is_empty(), "{left:?}");
    let run: Vec<_> = std::fs::read_dir(e.s.root().join("run")).unwrap().flatten().collect();
    assert!(run.is_empty(), "lifecycle leftovers: {run:?}");
}

#[test]
fn killed_container_shows_137() {
    let e = Env::new();
    let id = e.ok(&["run", "-d", "--name", "sleeper", IMAGE, "sleep", "100"]);
    let id = id.trim();
    assert_eq!(e.ok(&["kill", "sleeper"]).trim(), "sleeper");
    assert_eq!(e.ok(&["wait", "sleeper"]).trim(), "137");
    assert!(e.ps_status("sleeper").starts_with("Exited (137)"));
    e.assert_run_released(id);
    let o = e.run(&["kill", "sleeper"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("is not running"), "{}", o.stderr);
    // A signal by name, handled by the container.
    e.ok(&["run", "-d", "--name", "trapper", IMAGE, "sh", "-c", "trap 'exit 42' USR1; while true; do sleep 1; done"]);
    e.ok(&["kill", "-s", "USR1", "trapper"]);
    assert_eq!(e.ok(&["wait", "trapper"]).trim(), "42");
}

#[test]
fn the_monitor_holds_only_its_own_files() {
    let e = Env::new();
    let id = e.ok(&["run", "-d", "--name", "watched", IMAGE, "sleep", "100"]);
    let id = id.trim();
    let monitor = e.record(id)["monitor"]["pid"].as_i64().unwrap();
    assert_eq!(std::fs::read_to_string(format!("/proc/{monitor}/comm")).unwrap(), "strata-monitor\n");
    let fds: Vec<(String, String)> = std::fs::read_dir(format!("/proc/{monitor}/fd"))
        .unwrap()
        .map(|fd| {
            let fd = fd.unwrap();
            let target = std::fs::read_link(fd.path()).unwrap().to_string_lossy().into_owned();
            (fd.file_name().to_string_lossy().into_owned(), target)
        })
        .collect();
    let count = |want: &dyn Fn(&str) -> bool| fds.iter().filter(|(_, t)| want(t)).count();
    // stdio: /dev/null in and out, monitor.log for its errors; the container's log; the
    // container's pidfd; pipes. Nothing the CLI had open (the CLI's ends of the same pipes,
    // the container's lock, its own stdio).
    let fd = |n: &str| fds.iter().find(|(f, _)| f == n).map(|(_, t)| t.as_str()).unwrap_or_default();
    assert_eq!((fd("0"), fd("1")), ("/dev/null", "/dev/null"), "{fds:?}");
    assert!(fd("2").ends_with(&format!("{id}/monitor.log")), "{fds:?}");
    assert_eq!(count(&|t| t == "/dev/null" || t.ends_with("/monitor.log")), 3, "{fds:?}");
    let mut pipes: Vec<&str> = fds.iter().map(|(_, t)| t.as_str()).filter(|t| t.starts_with("pipe:")).collect();
    let all = pipes.len();
    pipes.sort_unstable();
    pipes.dedup();
    assert_eq!(pipes.len(), all, "a pipe held at both ends: {fds:?}");
    let known = |t: &str| {
        t == "/dev/null"
            || t.starts_with("pipe:")
            || t == "anon_inode:[pidfd]"
            || t.ends_with("/monitor.log")
            || t.ends_with(&format!("{id}-json.log"))
    };
    assert_eq!(count(&|t| !known(t)), 0, "{fds:?}");
    e.ok(&["rm", "-f", "watched"]);
    e.assert_no_trace(id);
}

#[test]
fn a_container_whose_record_is_corrupt_is_named_and_force_removed() {
    let e = Env::new();
    let id = e.ok(&["run", "-d", "--name", "damaged", IMAGE, "sleep", "100"]).trim().to_string();
    let init = e.inspect("damaged")["State"]["Pid"].as_i64().unwrap() as i32;
    let monitor = e.record(&id)["monitor"]["pid"].as_i64().unwrap() as i32;
    // What a crash at the wrong moment, a full disk or a hand edit can leave.
    std::fs::write(e.s.root().join("containers").join(&id).join("container.json"), b"{\"id\": ").unwrap();

    let o = e.run(&["ps", "-a"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(!o.stdout.contains("damaged"), "{}", o.stdout);
    assert!(
        o.stderr.contains(&format!("skipping container {id}: the record of container {id} is corrupt")),
        "{}",
        o.stderr
    );
    // Named as corrupt (not as missing), by ID or prefix; only a forced removal removes it.
    for (args, name) in [(vec!["inspect", &id[..12]], &id[..12]), (vec!["rm", id.as_str()], id.as_str())] {
        let o = e.run(&args);
        assert_eq!(o.code, 1, "{args:?}: {}", o.stderr);
        assert_eq!(o.stderr.lines().count(), 1, "{args:?}: {}", o.stderr);
        assert!(o.stderr.contains(&format!("the record of container {id} is corrupt")), "{name}: {}", o.stderr);
    }
    assert!(e.s.root().join("containers").join(&id).exists());
    assert_eq!(e.ok(&["rm", "-f", &id[..12]]).trim(), &id[..12]);
    // Its init was killed through the lifecycle state; its monitor found it gone and left.
    wait_exit(init);
    wait_exit(monitor);
    for pid in [init, monitor] {
        // Gone, or a zombie waiting for its parent to reap it.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]).unwrap_or("gone");
        assert!(["gone", "Z", "X"].contains(&state), "process {pid} still runs: {stat}");
    }
    e.assert_no_trace(&id);
    assert_eq!(e.run(&["ps", "-a"]).stderr, "");
}

#[test]
fn ps_tells_the_truth_after_the_monitor_is_killed() {
    let e = Env::new();
    let id = e.ok(&["run", "-d", "--name", "orphan", IMAGE, "sleep", "100"]);
    let id = id.trim();
    let monitor = e.record(id)["monitor"]["pid"].as_i64().unwrap() as i32;
    // SAFETY: the monitor is a process this test started (through strata), killed by pid.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    wait_exit(monitor);
    assert!(e.ps_status("orphan").starts_with("Up"), "the container itself still runs");
    e.ok(&["kill", "orphan"]);
    assert_eq!(e.ok(&["wait", "orphan"]).trim(), "255", "the exit status died with the monitor");
    let info = e.inspect("orphan");
    assert_eq!(info["State"]["Status"], "exited");
    assert!(info["State"]["Error"].as_str().unwrap().contains("monitor died"));
    e.assert_run_released(id);

    // Monitor and container killed at once: the next look finds and cleans up.
    let id = e.ok(&["run", "-d", "--name", "both", IMAGE, "sleep", "100"]);
    let id = id.trim();
    let monitor = e.record(id)["monitor"]["pid"].as_i64().unwrap() as i32;
    let init = e.inspect("both")["State"]["Pid"].as_i64().unwrap() as i32;
    assert!(init > 0);
    // SAFETY: killing processes this test started, by pid.
    unsafe {
        libc::kill(monitor, libc::SIGKILL);
        libc::kill(init, libc::SIGKILL);
    }
    wait_exit(monitor);
    wait_exit(init);
    assert!(e.ps_status("both").starts_with("Exited (255)"), "{}", e.ps_status("both"));
    e.assert_run_released(id);
    e.ok(&["rm", "both"]);
    e.assert_no_trace(id);

    // The same to an --rm container: the next look removes it, its anonymous volume too.
    let id = e.ok(&["run", "-d", "--rm", "--name", "gone", "-v", "/scratch", IMAGE, "sleep", "100"]);
    let id = id.trim();
    assert_eq!(e.ok(&["volume", "ls", "-q"]).lines().count(), 1);
    let monitor = e.record(id)["monitor"]["pid"].as_i64().unwrap() as i32;
    let init = e.inspect(id)["State"]["Pid"].as_i64().unwrap() as i32;
    // SAFETY: killing processes this test started, by pid.
    unsafe {
        libc::kill(monitor, libc::SIGKILL);
        libc::kill(init, libc::SIGKILL);
    }
    wait_exit(monitor);
    wait_exit(init);
    assert_eq!(e.ps_status("gone"), "<gone>");
    e.assert_no_trace(id);
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "", "the anonymous volume went with it");
}

#[test]
fn container_outlives_a_killed_cli() {
    let e = Env::new();
    let mut cli =
        e.s.command(&["run", "--name", "survivor", IMAGE, "sh", "-c", "sleep 1; echo finished"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    // Wait until it runs, then kill the CLI.
    let mut status = e.ps_status("survivor");
    for _ in 0..100 {
        if status.starts_with("Up") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        status = e.ps_status("survivor");
    }
    assert!(status.starts_with("Up"), "{status}");
    cli.kill().unwrap();
    cli.wait().unwrap();
    assert_eq!(e.ok(&["wait", "survivor"]).trim(), "0");
    assert_eq!(e.ok(&["logs", "survivor"]), "finished\n");
}

#[test]
fn create_start_and_the_writable_layer() {
    let e = Env::new();
    let id = e.ok(&["create", "--name", "keeper", IMAGE, "sh", "-c", "cat /state 2>/dev/null; echo run >> /state"]);
    let id = id.trim();
    assert_eq!(e.ps_status("keeper"), "Created");
    assert!(e.ps(false).is_empty());
    let o = e.run(&["start", "-a", "keeper"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, ""));
    let o = e.run(&["start", "-a", "keeper"]);
    assert_eq!(o.stdout, "run\n", "the second run sees the first one's writes");
    assert_eq!(e.ok(&["start", "keeper"]).trim(), "keeper");
    assert_eq!(e.ok(&["wait", "keeper"]).trim(), "0");
    assert_eq!(e.ok(&["logs", "keeper"]), "run\nrun\nrun\n");
    // An exit code from start -a.
    e.ok(&["create", "--name", "three", IMAGE, "sh", "-c", "exit 3"]);
    assert_eq!(e.run(&["start", "-a", "three"]).code, 3);
    e.ok(&["rm", "keeper", "three"]);
    e.assert_no_trace(id);
}

#[test]
fn stdin_with_interactive() {
    let e = Env::new();
    let o = e.s.run_stdin(&["run", "--rm", "-i", IMAGE, "sh", "-c", "tr a-z A-Z; echo end"], b"hello\nworld\n");
    assert_eq!((o.code, o.stdout.as_str()), (0, "HELLO\nWORLD\nend\n"), "{}", o.stderr);
    // Without -i the container's stdin is empty.
    let o = e.s.run_stdin(&["run", "--rm", IMAGE, "cat"], b"ignored\n");
    assert_eq!((o.code, o.stdout.as_str()), (0, ""));
}

#[test]
fn names_ids_and_errors() {
    let e = Env::new();
    let id = e.ok(&["create", "--name", "one", IMAGE, "true"]);
    let id = id.trim();
    // Refused for its name, a create makes nothing: not even the missing bind source docker
    // would have made for it.
    let host = tempfile::tempdir().unwrap();
    let source = host.path().join("made-for-nothing");
    let bind = format!("{}:/x", source.display());
    let o = e.run(&["create", "--name", "one", "-v", &bind, IMAGE, "true"]);
    assert_eq!(o.code, 125);
    assert!(o.stderr.contains("The container name \"/one\" is already in use"), "{}", o.stderr);
    assert!(!source.exists());
    let o = e.run(&["create", "--name", "bad name", IMAGE, "true"]);
    assert_eq!(o.code, 125);
    // By full id, short prefix, name.
    assert_eq!(e.id(id), id);
    assert_eq!(e.id(&id[..5]), id);
    assert_eq!(e.id("one"), id);
    let generated = e.ok(&["create", IMAGE, "true"]);
    let name = e.inspect(generated.trim())["Name"].as_str().unwrap().to_string();
    assert!(name.len() > 3 && name[1..].contains('_'), "docker-like name: {name}");
    let o = e.run(&["inspect", "nothing-here"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("No such object: nothing-here"), "{}", o.stderr);
    // inspect still knows images.
    assert_eq!(e.inspect(IMAGE)["Kind"], "native");
    let o = e.run(&["stop", "nothing-here"]);
    assert_eq!((o.code, o.stderr.as_str()), (1, "Error: No such container: nothing-here\n"));

    // rmi refuses an image a container uses.
    let o = e.run(&["rmi", IMAGE]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("image is in use by container"), "{}", o.stderr);
    // ps shows the name a container was made from while it names that image; once the tag is
    // gone, the short image ID, as docker does.
    e.ok(&["tag", IMAGE, "strata-test/second:1"]);
    let tagged = e.ok(&["create", "--name", "by-tag", "strata-test/second:1", "true"]);
    let image_of = || e.ok(&["ps", "-a", "--filter", "name=by-tag", "--format", "{{.Image}}"]);
    assert_eq!(image_of(), "strata-test/second:1\n");
    e.ok(&["rmi", "strata-test/second:1"]);
    let image_id = e.inspect(tagged.trim())["Image"].as_str().unwrap().to_string();
    assert_eq!(image_of(), format!("{}\n", &image_id.trim_start_matches("sha256:")[..12]));
    e.ok(&["rm", "by-tag"]);
    let pruned = e.ok(&["container", "prune", "-f"]);
    assert!(pruned.contains("Deleted Containers:") && pruned.contains(id), "{pruned}");
    assert!(e.ps(true).is_empty());
    e.ok(&["rmi", IMAGE]);
}

#[test]
fn volumes() {
    let e = Env::new();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in"), "from host\n").unwrap();
    let v = format!("{}:/data", host.path().display());
    let o = e.sh(&["-v", &v], "cat /data/in; echo back > /data/out");
    assert_eq!(o.stdout, "from host\n", "{}", o.stderr);
    assert_eq!(std::fs::read_to_string(host.path().join("out")).unwrap(), "back\n");
    let ro = format!("{}:/data:ro", host.path().display());
    assert_ne!(e.sh(&["-v", &ro], "echo x > /data/x").code, 0);
    // docker's long form: a read-only bind and a tmpfs with its size and mode.
    let bind = format!("type=bind,source={},target=/data,readonly", host.path().display());
    let tmpfs = "type=tmpfs,destination=/scratch,tmpfs-size=1m,tmpfs-mode=1770";
    let o = e.sh(&["--mount", &bind, "--mount", tmpfs], "cat /data/in; stat -c %a /scratch; echo x > /data/x");
    assert_ne!(o.code, 0, "{}", o.stdout);
    assert_eq!(o.stdout, "from host\n1770\n", "{}", o.stderr);
    assert!(o.stderr.contains("Read-only file system"), "{}", o.stderr);
    assert!(!host.path().join("x").exists());
    let o = e.sh(&["--mount", "type=bind,source=/no/such/dir,target=/x"], "true");
    assert!(o.code == 125 && o.stderr.contains("bind source path does not exist: /no/such/dir"), "{}", o.stderr);
    assert!(e.s.ps(true).is_empty());
}

#[test]
fn wasm_images_run_in_the_wasm_executor() {
    let e = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let mut layer = LayerTar::new();
    layer.file("hello.wasm", HELLO_WASM, 0o755);
    ImageBuilder::new()
        .platform("wasi", "wasm")
        .entrypoint(&["/hello.wasm"])
        .layer(layer.into_bytes(), Compression::None)
        .write(&layout, "latest");
    let archive = tmp.path().join("wasm.tar");
    skopeo_copy(&oci_ref(&layout, "latest"), &format!("oci-archive:{}:localhost/hello-wasm:latest", archive.display()));
    e.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);

    let id = e.ok(&["create", "--name", "hw", "localhost/hello-wasm"]);
    let id = id.trim();
    let listed = e.ps(true);
    assert_eq!(listed[0]["Kind"], "wasm");
    let info = e.inspect("hw");
    assert_eq!(info["Kind"], "wasm");
    assert!(info["KindReason"].as_str().unwrap().contains("wasi/wasm"), "{}", info["KindReason"]);
    // It runs in the wasm executor, inside the same sandbox, its output logged like any other.
    let o = e.run(&["start", "-a", "hw"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, HELLO_WASM_STDOUT), "{}", o.stderr);
    assert_eq!(e.ok(&["logs", "hw"]), HELLO_WASM_STDOUT);
    assert_eq!(e.run(&["run", "--rm", "localhost/hello-wasm"]).stdout, HELLO_WASM_STDOUT);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(e.s.root().join("containers").join(id).join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["annotations"]["run.oci.handler"], "wasm");
    assert_eq!(config["annotations"]["io.strata.image.kind"], "wasm");
    assert_eq!(config["process"]["args"], serde_json::json!(["/hello.wasm"]));
    // wasmtime ran under docker's default seccomp profile (threads included).
    assert_eq!(config["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    e.ok(&["rm", "-f", "hw"]);
    e.assert_no_trace(id);
}

#[test]
fn signals_to_an_attached_cli_reach_the_container() {
    use std::io::{BufRead, BufReader};
    let e = Env::new();
    let script = "trap 'echo got INT; exit 5' INT; echo ready; while true; do sleep 1; done";
    let mut cli = e.s.command(&["run", "--rm", IMAGE, "sh", "-c", script]).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(cli.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    // SAFETY: signalling the CLI this test spawned, by pid.
    unsafe { libc::kill(cli.id() as i32, libc::SIGINT) };
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "got INT\n");
    assert_eq!(cli.wait().unwrap().code(), Some(5));
    assert!(e.ps(true).is_empty());
}

#[test]
fn platform_mismatch_pulls_and_fails_cleanly() {
    let e = Env::new();
    // The local image is linux/amd64; another platform must come from the registry, which
    // (localhost:80) is not there.
    let o = e.run(&["run", "--rm", "--platform", "linux/arm64", IMAGE, "true"]);
    assert_eq!(o.code, 125, "{}", o.stderr);
    assert!(o.stderr.contains("Error: "), "{}", o.stderr);
    assert!(e.ps(true).is_empty());
}

/// A pseudo-terminal for the test to drive a CLI through: (master, slave path).
fn open_pty() -> (std::fs::File, PathBuf) {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    (std::fs::File::from(master), PathBuf::from(name.to_str().unwrap()))
}

/// Everything the other side writes to `master` until it closes its last handle.
fn read_pty(mut master: std::fs::File) -> std::thread::JoinHandle<String> {
    use std::io::Read;
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the last slave is closed.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    })
}

#[test]
fn interactive_terminal() {
    use std::io::Write;
    let e = Env::new();
    let (mut master, slave_path) = open_pty();
    let size = rustix::termios::Winsize { ws_row: 40, ws_col: 100, ws_xpixel: 0, ws_ypixel: 0 };
    rustix::termios::tcsetwinsize(&master, size).unwrap();
    let slave = || std::fs::OpenOptions::new().read(true).write(true).open(&slave_path).unwrap();
    let mut cli =
        e.s.command(&["run", "-it", "--rm", "--name", "tty1", IMAGE, "sh"])
            .stdin(slave())
            .stdout(slave())
            .stderr(slave())
            .spawn()
            .unwrap();
    master.write_all(b"stty size; tty; echo sum=$((40+2)); exit 3\n").unwrap();
    let reader = read_pty(master.try_clone().unwrap());
    let status = cli.wait().unwrap();
    drop(master);
    let output = reader.join().unwrap();
    assert_eq!(status.code(), Some(3), "{output}");
    assert!(output.contains("sum=42"), "{output}");
    assert!(output.contains("40 100"), "the CLI's window size reaches the container: {output}");
    assert!(output.contains("/dev/pts/"), "the container's stdio is its own pty: {output}");
    assert!(e.ps(true).is_empty());

    // -t alone: a terminal, output through the CLI (here a pipe) and into the log.
    let o = e.run(&["run", "-t", "--name", "tty2", IMAGE, "sh", "-c", "tty; stty size"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.starts_with("/dev/pts/0\r\n"), "{:?}", o.stdout);
    assert_eq!(e.ok(&["logs", "tty2"]), o.stdout);
    e.ok(&["rm", "tty2"]);

    // -it from input that is not a terminal (here a pipe): docker's refusal, before anything
    // is made. Relayed, it could never say "end of input", and the container would wait.
    for args in [&["run", "-it", "--rm", IMAGE, "cat"][..], &["run", "-it", "--name", "tty3", IMAGE, "cat"]] {
        let o = e.s.run_stdin(args, b"");
        assert_eq!((o.code, o.stderr.trim()), (1, "Error: the input device is not a TTY"), "{args:?}");
    }
    assert!(e.ps(true).is_empty(), "nothing made: {:?}", e.ps(true));
    e.ok(&["create", "-it", "--name", "tty4", IMAGE, "cat"]);
    let o = e.s.run_stdin(&["start", "-ai", "tty4"], b"");
    assert_eq!((o.code, o.stderr.trim()), (1, "Error: the input device is not a TTY"));
    e.ok(&["rm", "tty4"]);
}

#[test]
fn exec_finds_users_in_the_containers_own_root() {
    let e = Env::new();
    let etc = tempfile::tempdir().unwrap();
    let passwd = etc.path().join("passwd");
    std::fs::write(&passwd, "root:x:0:0:root:/root:/bin/sh\nciuser:x:4242:4242::/home/ci:/bin/sh\n").unwrap();
    let volume = format!("{}:/etc/passwd:ro", passwd.display());
    e.ok(&["run", "-d", "--name", "ci", "-v", &volume, IMAGE, "sleep", "1000"]);
    // The user is in the bind-mounted passwd, not the image's.
    let o = e.run(&["exec", "-u", "ciuser", "ci", "sh", "-c", "id -u; echo $HOME"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "4242\n/home/ci\n"), "{}", o.stderr);
    // A working directory that is not there: runc's words, docker's code.
    let o = e.run(&["exec", "-w", "/nonexistent", "ci", "true"]);
    assert_eq!(o.code, 126, "{}", o.stderr);
    assert!(
        o.stderr.contains("chdir to cwd (\"/nonexistent\") set in config.json failed: no such file"),
        "{}",
        o.stderr
    );
    e.ok(&["rm", "-f", "ci"]);
}

#[test]
fn exec_into_a_running_container() {
    let e = Env::new();
    let id = e.ok(&[
        "run",
        "-d",
        "--name",
        "box",
        "-e",
        "FROM_RUN=1",
        IMAGE,
        "sh",
        "-c",
        "echo hi > /tmp/f; exec sleep 100",
    ]);
    let id = id.trim();
    // (The detached start returns once the init runs; give its first line a moment.)
    let mut o = e.run(&["exec", "box", "cat", "/tmp/f"]);
    for _ in 0..50 {
        if o.stdout == "hi\n" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        o = e.run(&["exec", "box", "cat", "/tmp/f"]);
    }
    assert_eq!((o.code, o.stdout.as_str()), (0, "hi\n"), "{}", o.stderr);
    // In the container's pid namespace (the init is 1) and cgroup, with its environment.
    let o = e.run(&["exec", "box", "sh", "-c", "echo $$ $FROM_RUN; grep pids /proc/self/cgroup; exit 4"]);
    assert_eq!(o.code, 4);
    let pid: u32 = o.stdout.split_whitespace().next().unwrap().parse().unwrap();
    assert!(pid > 1 && pid < 50, "{}", o.stdout);
    assert!(o.stdout.contains(" 1\n") && o.stdout.contains(&format!("/strata/{id}")), "{}", o.stdout);
    let o = e.run(&[
        "exec",
        "-u",
        "nobody",
        "-w",
        "/tmp",
        "-e",
        "FOO=bar",
        "box",
        "sh",
        "-c",
        "id -u; pwd; echo $FOO $HOME",
    ]);
    assert_eq!(o.stdout, "65534\n/tmp\nbar /nonexistent\n", "{}", o.stderr);
    let o = e.s.run_stdin(&["exec", "-i", "box", "tr", "a-z", "A-Z"], b"shout\n");
    assert_eq!(o.stdout, "SHOUT\n");
    let o = e.s.run_stdin(&["exec", "box", "cat"], b"not read\n");
    assert_eq!((o.code, o.stdout.as_str()), (0, ""), "no input without -i");
    // As with run: what follows the container is the command's, a first `--help` included.
    let o = e.run(&["exec", "box", "--help"]);
    assert_eq!(o.code, 127, "{}", o.stderr);
    let o = e.run(&["exec", "box", "nosuchprogram"]);
    assert_eq!(o.code, 127, "{}", o.stderr);
    assert!(o.stderr.contains("executable file not found"), "{}", o.stderr);
    assert_eq!(e.run(&["exec", "box", "/etc/passwd"]).code, 126);
    let o = e.run(&["exec", "-u", "nosuch", "box", "true"]);
    assert_eq!(
        (o.code, o.stderr.trim()),
        (126, "Error: unable to find user nosuch: no matching entries in passwd file"),
        "docker's code for a user the container lacks"
    );
    let o = e.run(&["exec", "-u", "4294967295", "box", "id", "-u"]);
    assert_eq!((o.code, o.stdout.as_str()), (126, ""), "{}", o.stderr);
    assert!(o.stderr.contains("uids and gids must be in range 0-2147483647"), "{}", o.stderr);

    // -it through a pty.
    let (mut master, slave_path) = open_pty();
    let slave = || std::fs::OpenOptions::new().read(true).write(true).open(&slave_path).unwrap();
    let mut cli =
        e.s.command(&["exec", "-it", "box", "sh"]).stdin(slave()).stdout(slave()).stderr(slave()).spawn().unwrap();
    std::io::Write::write_all(&mut master, b"tty; echo in=$((6*7)); exit 2\n").unwrap();
    let reader = read_pty(master.try_clone().unwrap());
    assert_eq!(cli.wait().unwrap().code(), Some(2));
    drop(master);
    let output = reader.join().unwrap();
    assert!(output.contains("in=42") && output.contains("/dev/pts/"), "{output}");

    // The container's own output is not mixed with exec's.
    assert_eq!(e.ok(&["logs", "box"]), "");
    e.ok(&["stop", "-t", "0", "box"]);
    let o = e.run(&["exec", "box", "true"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("is not running"), "{}", o.stderr);
}

// --- seccomp: docker's default profile, unless --security-opt says otherwise ---------------

const NOT_PERMITTED: &str = "Operation not permitted";

#[test]
fn seccomp_default_profile_confines_without_getting_in_the_way() {
    let e = Env::new();
    // Filtered, and everyday commands work under it (threads, pipes, sockets, /proc).
    let o = e.sh(
        &[],
        "grep '^Seccomp:' /proc/self/status; ls / >/dev/null && ps | head -1 && echo x | busybox md5sum >/dev/null \
         && busybox nc 127.0.0.1 1 </dev/null 2>&1; echo nc=$?",
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.starts_with("Seccomp:\t2\nPID"), "{}", o.stdout);
    // lo is up in the new network namespace (as docker's --network none): refused, not EPERM.
    assert!(o.stdout.contains("nc=1") && !o.stdout.contains(NOT_PERMITTED), "sockets work: {}", o.stdout);
    assert!(o.stdout.contains("Connection refused"), "{}", o.stdout);

    // A user namespace needs no capability: only the profile refuses it.
    let o = e.sh(&[], "busybox unshare -U true");
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains(NOT_PERMITTED), "{}", o.stderr);
    let o = e
        .sh(&["--security-opt", "seccomp=unconfined"], "busybox unshare -U true && grep '^Seccomp:' /proc/self/status");
    assert_eq!((o.code, o.stdout.as_str()), (0, "Seccomp:\t0\n"), "{}", o.stderr);

    // CAP_SYS_ADMIN unlocks mount and unshare, as in docker's profile.
    let o = e.sh(&[], "mount -t tmpfs none /tmp");
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("permission denied"), "busybox's words for EPERM: {}", o.stderr);
    let o = e.sh(
        &["--cap-add", "SYS_ADMIN"],
        "mount -t tmpfs none /tmp && umount /tmp && busybox unshare -U -n true && echo allowed",
    );
    assert_eq!(o.stdout, "allowed\n", "{}", o.stderr);

    // chroot goes with CAP_SYS_CHROOT (in docker's default set).
    assert_eq!(e.sh(&[], "busybox chroot / true && echo ok").stdout, "ok\n");
    let o = e.sh(&["--cap-drop", "SYS_CHROOT"], "busybox chroot / true");
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains(NOT_PERMITTED), "{}", o.stderr);

    // Each profile (default, +SYS_ADMIN, -SYS_CHROOT; unconfined has none) was compiled once
    // and read back from ROOT/cache/seccomp afterwards: the runs above after the first were
    // confined by cached programs, and say so.
    let cached = std::fs::read_dir(e.s.root().join("cache/seccomp")).unwrap().count();
    assert_eq!(cached, 3);
    let o = e.s.run(&["--log-level", "debug", "run", "--rm", IMAGE, "true"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("seccomp cache hit") && !o.stderr.contains("seccomp cache miss"), "{}", o.stderr);
}

#[test]
fn seccomp_mode_is_kept_shown_and_applies_to_exec() {
    let e = Env::new();
    let id = e.ok(&["run", "-d", "--name", "filtered", IMAGE, "sleep", "100"]);
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(e.s.root().join("containers").join(id.trim()).join("config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(config["linux"]["seccomp"]["defaultErrnoRet"], 1);
    let info = e.inspect("filtered");
    assert_eq!(info["Seccomp"], "builtin");
    assert_eq!(info["HostConfig"]["SecurityOpt"], serde_json::Value::Null, "docker shows none for the default");
    // Processes exec'd into the container get its filter too.
    let o = e.run(&["exec", "filtered", "grep", "^Seccomp:", "/proc/self/status"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "Seccomp:\t2\n"), "{}", o.stderr);
    e.ok(&["rm", "-f", "filtered"]);

    e.ok(&["create", "--name", "free", "--security-opt", "seccomp=unconfined", IMAGE]);
    let info = e.inspect("free");
    assert_eq!(info["Seccomp"], "unconfined");
    assert_eq!(info["HostConfig"]["SecurityOpt"], serde_json::json!(["seccomp=unconfined"]));
    // A later start keeps the choice.
    let o = e.run(&["start", "-a", "free"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    e.ok(&["rm", "free"]);
}

#[test]
fn seccomp_profile_files() {
    let e = Env::new();
    let dir = tempfile::tempdir().unwrap();
    // The OCI shape: allow everything but mkdir, which fails with EACCES.
    let oci = dir.path().join("oci.json");
    std::fs::write(
        &oci,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", oci.display());
    let o = e.sh(&["--security-opt", &opt], "busybox unshare -U true && echo unshared && mkdir /made");
    assert_eq!(o.stdout, "unshared\n");
    assert!(o.stderr.contains("Permission denied"), "{}", o.stderr);
    let info = e.inspect(e.ok(&["create", "--security-opt", &opt, IMAGE]).trim());
    assert_eq!(info["Seccomp"], oci.display().to_string());
    assert_eq!(info["HostConfig"]["SecurityOpt"], serde_json::json!([opt]));

    // docker's extensions: a rule for containers without CAP_SYS_ADMIN only.
    let docker = dir.path().join("docker.json");
    std::fs::write(
        &docker,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": []}],
            "syscalls": [{"name": "chroot", "action": "SCMP_ACT_ERRNO", "errno": "EPERM", "comment": "no chroot",
                          "excludes": {"caps": ["CAP_SYS_ADMIN"]}}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", docker.display());
    let o = e.sh(&["--security-opt", &opt], "busybox chroot / true");
    assert!(o.code != 0 && o.stderr.contains(NOT_PERMITTED), "{}", o.stderr);
    let o = e.sh(&["--security-opt", &opt, "--cap-add", "SYS_ADMIN"], "busybox chroot / true && echo ok");
    assert_eq!(o.stdout, "ok\n", "{}", o.stderr);

    // What strata does not understand is refused before anything is made, naming the field.
    let typo = dir.path().join("typo.json");
    std::fs::write(&typo, r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "include": {}}]}"#)
        .unwrap();
    let before = e.ps(true).len();
    let o = e.run(&["run", "--rm", "--security-opt", &format!("seccomp={}", typo.display()), IMAGE, "true"]);
    assert_eq!(o.code, 125);
    assert!(o.stderr.contains("syscalls[0]") && o.stderr.contains("unknown field `include`"), "{}", o.stderr);
    assert_eq!(o.stderr.trim().lines().count(), 1, "{}", o.stderr);
    let o = e.run(&["run", "--rm", "--security-opt", "apparmor=unconfined", IMAGE, "true"]);
    assert_eq!(o.code, 125);
    assert!(o.stderr.contains("apparmor=unconfined"), "{}", o.stderr);
    // A profile libseccomp refuses fails at create too.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}"#).unwrap();
    let o = e.run(&["create", "--security-opt", &format!("seccomp={}", bad.display()), IMAGE]);
    assert_eq!(o.code, 125);
    assert!(o.stderr.contains("70000"), "{}", o.stderr);
    assert_eq!(e.ps(true).len(), before, "nothing was made");
}

/// State.Health of a container.
fn health(e: &Env, name: &str) -> serde_json::Value {
    e.s.inspect(name)["State"]["Health"].clone()
}

/// The pid of a running container's health checker (a child of its monitor), if it has one.
fn checker_of(e: &Env, name: &str) -> Option<i32> {
    let pid = e.s.inspect(name)["State"]["Pid"].as_i64().unwrap();
    let parent = |p: &str| -> Option<i64> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        stat.rsplit(") ").next()?.split_whitespace().nth(1)?.parse().ok()
    };
    let monitor = parent(&pid.to_string())?;
    std::fs::read_dir("/proc").unwrap().flatten().find_map(|p| {
        let name = p.file_name().to_string_lossy().into_owned();
        let comm = std::fs::read_to_string(p.path().join("comm")).ok()?;
        (comm == "strata-health\n" && parent(&name) == Some(monitor)).then(|| name.parse().ok()).flatten()
    })
}

/// Health checks as docker runs them: `starting`, then `unhealthy` after --health-retries
/// failures in a row, `healthy` at the first probe that passes, with the last probes' exit
/// codes and output in inspect's State.Health and the word in ps's STATUS and `--filter
/// health=`; a probe past --health-timeout is killed and fails with -1; a stopped container
/// is unhealthy; commit keeps the check in the image, which the next run inherits and
/// --no-healthcheck turns off; docker's words for bad flags; no checker left behind.
#[test]
fn health_checks_as_docker_runs_them() {
    let e = Env::new();
    let quick = ["--health-interval", "200ms", "--health-retries", "2"];
    let mut args = vec!["run", "-d", "--name", "hc", "--health-cmd", "test -f /tmp/ok && echo fine"];
    args.extend_from_slice(&quick);
    args.extend_from_slice(&[IMAGE, "sleep", "1000"]);
    let id = e.ok(&args).trim().to_string();
    wait_for("hc to be unhealthy", Duration::from_secs(20), || health(&e, "hc")["Status"] == "unhealthy");
    let h = health(&e, "hc");
    assert!(h["FailingStreak"].as_u64().unwrap() >= 2, "{h}");
    assert_eq!(h["Log"][0]["ExitCode"], 1, "{h}");
    assert!(e.ok(&["ps"]).contains("(unhealthy)"));
    assert_eq!(e.ok(&["ps", "-q", "--no-trunc", "--filter", "health=unhealthy"]).trim(), id);

    e.ok(&["exec", "hc", "touch", "/tmp/ok"]);
    wait_for("hc to be healthy", Duration::from_secs(20), || health(&e, "hc")["Status"] == "healthy");
    // docker keeps the last five probes: five, and then the oldest goes as a new one comes.
    wait_for("five probes", Duration::from_secs(20), || health(&e, "hc")["Log"].as_array().unwrap().len() == 5);
    let oldest = health(&e, "hc")["Log"][0]["Start"].clone();
    wait_for("a sixth probe", Duration::from_secs(20), || health(&e, "hc")["Log"][0]["Start"] != oldest);
    let h = health(&e, "hc");
    assert_eq!(h["FailingStreak"], 0, "{h}");
    let log = h["Log"].as_array().unwrap();
    assert_eq!(log.len(), 5, "{h}");
    let last = log.last().unwrap();
    assert_eq!((last["ExitCode"].as_i64(), last["Output"].as_str()), (Some(0), Some("fine\n")), "{h}");
    assert!(e.ok(&["ps"]).contains("(healthy)"));
    assert_eq!(e.ok(&["ps", "-q", "--no-trunc", "--filter", "health=healthy"]).trim(), id);
    assert_eq!(
        e.s.inspect("hc")["Config"]["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "test -f /tmp/ok && echo fine"])
    );

    // A probe that hangs is killed at the timeout.
    e.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 100",
        "--health-timeout",
        "300ms",
        "--health-interval",
        "200ms",
        "--health-retries",
        "1",
        IMAGE,
        "sleep",
        "1000",
    ]);
    wait_for("slow to be unhealthy", Duration::from_secs(20), || health(&e, "slow")["Status"] == "unhealthy");
    let h = health(&e, "slow");
    assert_eq!(h["Log"][0]["ExitCode"], -1, "{h}");
    assert_eq!(h["Log"][0]["Output"], "Health check exceeded timeout (300ms)", "{h}");

    // The check goes into a committed image; a run of it inherits it (with a flag over it),
    // and --no-healthcheck turns it off.
    e.ok(&["commit", "hc", "localhost/checked:latest"]);
    assert_eq!(e.s.inspect("localhost/checked:latest")["Config"]["Healthcheck"]["Retries"], 2);
    e.ok(&[
        "run",
        "-d",
        "--name",
        "inherited",
        "--health-interval",
        "200ms",
        "localhost/checked:latest",
        "sleep",
        "1000",
    ]);
    wait_for("inherited to be healthy", Duration::from_secs(20), || health(&e, "inherited")["Status"] == "healthy");
    e.ok(&["run", "-d", "--name", "off", "--no-healthcheck", "localhost/checked:latest", "sleep", "1000"]);
    assert!(health(&e, "off").is_null());
    // No checker runs for it (one does for the container that inherited the check).
    assert_eq!(checker_of(&e, "off"), None);
    let checkers: Vec<i32> = ["hc", "slow", "inherited"].iter().map(|n| checker_of(&e, n).expect(n)).collect();
    assert_eq!(e.s.inspect("off")["Config"]["Healthcheck"]["Test"], serde_json::json!(["NONE"]));
    assert!(e.ok(&["ps", "--filter", "health=none", "--format", "{{.Names}}"]).lines().any(|l| l == "off"));

    // Stopped: unhealthy, as docker's, and the checker gone.
    e.ok(&["stop", "-t", "0", "hc"]);
    assert_eq!(health(&e, "hc")["Status"], "unhealthy");
    let status = e.ok(&["ps", "-a", "--filter", "name=hc", "--format", "{{.Status}}"]);
    assert!(status.starts_with("Exited (137)"), "{status}");

    for (flags, said) in [
        (&["--no-healthcheck", "--health-cmd", "true"][..], "--no-healthcheck conflicts with --health-* options"),
        (&["--health-interval", "-1s"][..], "--health-interval cannot be negative"),
        (&["--health-retries", "-1"][..], "--health-retries cannot be negative"),
        (&["--health-timeout", "1us"][..], "Timeout in Healthcheck cannot be less than 1ms"),
        (&["--health-start-period", "soon"][..], "invalid argument \"soon\" for \"--health-start-period\" flag"),
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[IMAGE, "true"]);
        let out = e.s.fails(&args);
        assert_eq!(out.code, 125);
        assert!(out.stderr.contains(said), "{flags:?}: {}", out.stderr);
    }
    e.ok(&["rm", "-f", "hc", "slow", "inherited", "off"]);
    for pid in checkers {
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "health checker {pid} left behind");
    }
}

/// What happens to a check around a run: the start period (failures not counted, probes every
/// --health-start-interval), output cut at 4096 bytes with docker's "...", a pause (no probes,
/// unhealthy, as docker's), an unpause, and a restart (starting again, the probes kept).
#[test]
fn health_checks_through_start_period_pause_and_restart() {
    let e = Env::new();
    e.ok(&[
        "run",
        "-d",
        "--name",
        "early",
        "--health-cmd",
        "false",
        "--health-start-period",
        "60s",
        "--health-start-interval",
        "200ms",
        "--health-interval",
        "60s",
        "--health-retries",
        "1",
        IMAGE,
        "sleep",
        "1000",
    ]);
    // Three probes within the start period: only its interval makes them, and none counts.
    wait_for("three probes", Duration::from_secs(20), || health(&e, "early")["Log"].as_array().unwrap().len() >= 3);
    let h = health(&e, "early");
    assert_eq!((h["Status"].as_str(), h["FailingStreak"].as_u64()), (Some("starting"), Some(0)), "{h}");
    assert!(e.ok(&["ps"]).contains("(health: starting)"));

    let check = "test -f /tmp/ok && head -c 5000 /dev/zero | tr '\\0' x";
    e.ok(&[
        "run",
        "-d",
        "--name",
        "hp",
        "--health-cmd",
        check,
        "--health-interval",
        "200ms",
        "--health-retries",
        "1",
        IMAGE,
        "sh",
        "-c",
        "touch /tmp/ok; exec sleep 1000",
    ]);
    wait_for("hp to be healthy", Duration::from_secs(20), || health(&e, "hp")["Status"] == "healthy");
    let output = health(&e, "hp")["Log"][0]["Output"].as_str().unwrap().to_string();
    assert_eq!(output, format!("{}...", "x".repeat(4096)));

    e.ok(&["pause", "hp"]);
    wait_for("a paused hp to be unhealthy", Duration::from_secs(20), || health(&e, "hp")["Status"] == "unhealthy");
    let probes = health(&e, "hp")["Log"].clone();
    e.ok(&["unpause", "hp"]);
    // (A paused container shows unhealthy at once, whether or not its checker saw the pause:
    // wait for a probe after the unpause, not just for the word.)
    wait_for("probes again after the unpause", Duration::from_secs(20), || health(&e, "hp")["Log"] != probes);
    wait_for("hp healthy again", Duration::from_secs(20), || health(&e, "hp")["Status"] == "healthy");

    e.ok(&["restart", "-t", "0", "hp"]);
    let kept = health(&e, "hp")["Log"].as_array().unwrap().len();
    assert!(kept >= 1, "the last run's probes are kept");
    wait_for("hp healthy after its restart", Duration::from_secs(20), || health(&e, "hp")["Status"] == "healthy");
    e.ok(&["rm", "-f", "early", "hp"]);
}

/// The prunes' `--filter`s as docker's: `until=` (created before a time or a duration ago),
/// `label=` and `label!=` for containers and images, `label=` and `all=true` for volumes;
/// docker's words for what it refuses.
#[test]
fn prune_filters_as_docker_does() {
    let e = Env::new();
    let names = |e: &Env| -> Vec<String> {
        let mut n: Vec<String> = e.ok(&["ps", "-a", "--format", "{{.Names}}"]).lines().map(str::to_string).collect();
        n.sort();
        n
    };
    for (name, label) in [("pa", "keep=yes"), ("pb", "tier=web"), ("pc", "tier=db")] {
        e.ok(&["create", "--name", name, "-l", label, IMAGE, "true"]);
    }
    // Created within the last hour: none is older than that; nor than a time long before
    // anything (out of the range of nanoseconds since 1970: still a time, not no filter).
    e.ok(&["container", "prune", "--filter", "until=1h"]);
    e.ok(&["container", "prune", "--filter", "until=1600-01-01T00:00:00Z"]);
    assert_eq!(names(&e), ["pa", "pb", "pc"]);
    e.ok(&["container", "prune", "--filter", "label=tier=web"]);
    assert_eq!(names(&e), ["pa", "pc"]);
    e.ok(&["container", "prune", "--filter", "label!=keep"]);
    assert_eq!(names(&e), ["pa"]);
    let out = e.ok(&["container", "prune", "--filter", "until=0s"]);
    assert!(out.starts_with("Deleted Containers:"), "{out}");
    assert!(names(&e).is_empty());

    e.ok(&["volume", "create", "--label", "team=a", "va"]);
    e.ok(&["volume", "create", "vb"]);
    e.ok(&["volume", "prune", "--filter", "label=team=a"]);
    assert_eq!(e.ok(&["volume", "ls", "-q"]).lines().count(), 2, "named volumes stay without all=true");
    e.ok(&["volume", "prune", "--filter", "all=true", "--filter", "label=team=a"]);
    assert_eq!(e.ok(&["volume", "ls", "-q"]).trim(), "vb");

    // Images by their labels: two committed ones, one labelled.
    e.ok(&["create", "--name", "base", IMAGE, "true"]);
    e.ok(&["commit", "-c", "LABEL stage=tmp", "base", "localhost/labelled:1"]);
    e.ok(&["commit", "base", "localhost/plain:1"]);
    e.ok(&["rm", "base"]);
    e.ok(&["image", "prune", "-a", "--filter", "label=stage=tmp"]);
    let images = e.ok(&["images", "--format", "{{.Repository}}"]);
    assert!(!images.contains("localhost/labelled") && images.contains("localhost/plain"), "{images}");

    for (args, said) in [
        (&["container", "prune", "--filter", "until=soon"][..], "invalid until \"soon\""),
        (&["container", "prune", "--filter", "until=-20000000000"][..], "a time before 1970"),
        (&["volume", "prune", "-a", "--filter", "all=false"][..], "invalid filter 'all'"),
        (
            &["container", "prune", "--filter", "until=1h", "--filter", "until=2h"][..],
            "more than one until filter specified",
        ),
        (&["volume", "prune", "--filter", "until=1h"][..], "invalid filter 'until'"),
        (
            &["system", "prune", "--volumes", "--filter", "until=1h"][..],
            "The \"until\" filter is not supported with \"--volumes\"",
        ),
    ] {
        let out = e.s.fails(args);
        assert!(out.stderr.contains(said), "{args:?}: {}", out.stderr);
    }
}
