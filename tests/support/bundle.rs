//! OCI bundles for runtime tests (a busybox rootfs and a runc-like config.json), and a
//! runner for `strata-oci` (or runc, crun) with a private `--root`.
//!
//! Every bundle gets an absolute cgroup path under `/strata-test/` (never under the test's own
//! cgroup) and a unique container id; [`cgroup_leftovers`] tells whether any of it remains.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const STRATA_OCI: &str = env!("CARGO_BIN_EXE_strata-oci");
/// The parent of every test container's cgroup.
pub const CGROUP_PARENT: &str = "/strata-test";

/// A unique container id for this test process.
pub fn unique_id(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A bundle directory: `rootfs/` (busybox) and `config.json`.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub id: String,
}

impl Bundle {
    /// busybox rootfs, config running `args`, a fresh id (also the cgroup's name).
    pub fn busybox(args: &[&str]) -> Bundle {
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        let mut archive = tar::Archive::new(super::images::busybox_layer_tar());
        archive.set_preserve_permissions(true);
        archive.unpack(&rootfs).expect("unpack busybox");
        let id = unique_id("oci");
        let b = Bundle { dir, id };
        b.write_config(&default_config(args, &format!("{CGROUP_PARENT}/{}", b.id)));
        b
    }

    /// An empty rootfs (for the caller to fill), config running `args`, a fresh id.
    pub fn empty(args: &[&str]) -> Bundle {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        let b = Bundle { dir, id: unique_id("oci") };
        b.write_config(&default_config(args, &format!("{CGROUP_PARENT}/{}", b.id)));
        b
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn config(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.path().join("config.json")).unwrap()).unwrap()
    }

    pub fn write_config(&self, config: &Value) {
        std::fs::write(self.path().join("config.json"), serde_json::to_vec_pretty(config).unwrap()).unwrap();
    }

    /// Change config.json in place.
    pub fn edit(&self, f: impl FnOnce(&mut Value)) -> &Self {
        let mut c = self.config();
        f(&mut c);
        self.write_config(&c);
        self
    }

    /// The container's cgroup path (absolute, v1 hierarchy-relative).
    pub fn cgroup(&self) -> String {
        self.config()["linux"]["cgroupsPath"].as_str().unwrap().to_string()
    }

    /// A file in the container's cgroup of `controller` (v1), e.g. ("memory", "memory.limit_in_bytes").
    pub fn cgroup_file(&self, controller: &str, file: &str) -> PathBuf {
        PathBuf::from("/sys/fs/cgroup").join(controller).join(self.cgroup().trim_start_matches('/')).join(file)
    }
}

/// Cgroup directories of `path` that exist in any hierarchy.
pub fn cgroup_leftovers(path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join(rel))
        .filter(|p| p.is_dir())
        .collect()
}

/// runc's `spec` defaults (namespaces, mounts, capabilities, masked paths), with `args`.
pub fn default_config(args: &[&str], cgroups_path: &str) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "ambient": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "strata-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// What a command did.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Outcome {
    fn from(out: Output) -> Outcome {
        Outcome {
            code: out
                .status
                .code()
                .unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&out.status).unwrap_or(0)),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// An OCI runtime binary with its own `--root` state directory.
pub struct Runtime {
    pub binary: PathBuf,
    pub state: tempfile::TempDir,
}

impl Runtime {
    pub fn strata() -> Runtime {
        Runtime::new(STRATA_OCI)
    }

    pub fn new(binary: impl Into<PathBuf>) -> Runtime {
        Runtime { binary: binary.into(), state: tempfile::tempdir().expect("tempdir") }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(self.state.path()).args(args).stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Outcome {
        self.command(args).output().expect("spawn runtime").into()
    }

    /// `run(args)` after the shell commands `prelude` (ending in `;` or `&&`), in the same
    /// process, itself started through `wrapper` (e.g. `unshare -m`): a umask or a mount that
    /// only this one command sees.
    pub fn run_after(&self, wrapper: &[&str], prelude: &str, args: &[&str]) -> Outcome {
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg("sh");
                c
            }
            None => Command::new("sh"),
        };
        cmd.args(["-c", &format!("{prelude} exec \"$0\" \"$@\"")])
            .arg(&self.binary)
            .arg("--root")
            .arg(self.state.path())
            .args(args)
            .stdin(Stdio::null());
        cmd.output().expect("spawn runtime").into()
    }

    /// Run a command that leaves a container behind (`create`, `run -d`, `exec -d`): the
    /// container inherits our stdio, so output goes to files, not pipes we would wait on.
    pub fn run_detached(&self, args: &[&str]) -> Outcome {
        let out = tempfile::tempfile().unwrap();
        let err = tempfile::tempfile().unwrap();
        let status = self
            .command(args)
            .stdout(out.try_clone().unwrap())
            .stderr(err.try_clone().unwrap())
            .status()
            .expect("spawn runtime");
        let read = |mut f: std::fs::File| {
            use std::io::{Read, Seek};
            let mut s = String::new();
            f.rewind().unwrap();
            f.read_to_string(&mut s).unwrap();
            s
        };
        Outcome { code: status.code().unwrap_or(-1), stdout: read(out), stderr: read(err) }
    }

    /// [`run_detached`](Self::run_detached) and require exit 0.
    pub fn ok_detached(&self, args: &[&str]) {
        let o = self.run_detached(args);
        assert_eq!(o.code, 0, "{} {args:?}: {o}", self.binary.display());
    }

    /// Run and require exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(o.code, 0, "{} {args:?}: {o}", self.binary.display());
        o.stdout
    }

    /// The OCI state of `id` as JSON.
    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state prints JSON")
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap_or_default().to_string()
    }

    /// Best-effort `delete --force`, for cleanup paths.
    pub fn force_delete(&self, id: &str) {
        let _ = self.command(&["delete", "--force", id]).output();
    }
}

/// Wait (on its pidfd, no polling) until process `pid` has exited; false on timeout.
pub fn wait_exit(pid: i32, timeout: std::time::Duration) -> bool {
    strata::lifecycle::wait_for_exit(pid, Some(timeout))
}
