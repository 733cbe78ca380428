//! A private containerd (Debian's 1.6) for one test, shared by strata's tests (its runc shim
//! driving `strata-oci`) and the shim's (`shim/tests/support` includes this file by path).
//!
//! Its root, state, sockets and FIFOs live in a temp dir; CRI is off unless the config asks for
//! it; a directory may go first on its PATH (where containerd finds `containerd-shim-*`). `ctr`
//! runs in a containerd namespace of the test's own, so cgroups (`/NAMESPACE/...`) and runc's
//! state (`/run/containerd/runc/NAMESPACE`) can be told apart. Dropped, it stops the daemon by
//! PID, keeps its log when the test failed, and removes what containerd wrote outside its dir:
//! mounts under the dir, the namespace's cgroups (killing what a failed test left in them),
//! runc's state dir. Self-contained: std, libc, rustix and tempfile only.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The config line that turns the CRI plugin off (every test but the CRI one).
pub const CRI_OFF: &str = "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n";

pub struct Containerd {
    pub dir: tempfile::TempDir,
    pub namespace: String,
    child: Child,
    /// The daemon's PATH and extra environment, for [`Containerd::restart`].
    path: String,
    env: Vec<(String, std::ffi::OsString)>,
}

impl Containerd {
    /// containerd with CRI off; `namespace` is this test's containerd namespace.
    pub fn start(namespace: &str) -> Containerd {
        Self::start_with(namespace, CRI_OFF, None)
    }

    /// With `extra` at the top of the config (plugins, CRI settings) and `path_first` (a
    /// directory with shim binaries) first on the daemon's PATH.
    pub fn start_with(namespace: &str, extra: &str, path_first: Option<&Path>) -> Containerd {
        Self::start_with_env(namespace, extra, path_first, &[])
    }

    /// [`Containerd::start_with`], with `env` added to the daemon's environment (and so its
    /// shims').
    pub fn start_with_env(
        namespace: &str,
        extra: &str,
        path_first: Option<&Path>,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Containerd {
        let dir = tempfile::Builder::new().prefix("strata-ctd-").tempdir().expect("tempdir");
        let d = dir.path();
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n{extra}\n\
             [grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n",
            root = d.join("root").display(),
            state = d.join("state").display(),
            d = d.display(),
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let mut path = std::env::var("PATH").unwrap_or_default();
        if let Some(first) = path_first {
            path = format!("{}:{path}", first.display());
        }
        let env: Vec<(String, std::ffi::OsString)> =
            env.iter().map(|(k, v)| (k.to_string(), v.to_os_string())).collect();
        let child = spawn_daemon(d, &path, &env);
        let c = Containerd { dir, namespace: namespace.to_string(), child, path, env };
        c.wait_serving();
        c
    }

    /// Stop containerd (SIGTERM, by its pid; its shims and tasks go on) and start it again on
    /// the same config and state, as a host's restart of the service does.
    pub fn restart(&mut self) {
        // SAFETY: signalling the containerd we started, by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        self.child = spawn_daemon(self.dir.path(), &self.path, &self.env);
        self.wait_serving();
    }

    /// `ctr version` succeeds once the daemon serves; it fails fast before.
    fn wait_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ctr_cmd(&["version"]).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap().success() {
            assert!(Instant::now() < deadline, "containerd did not come up:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn address(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    pub fn fifo_dir(&self) -> PathBuf {
        self.dir.path().join("fifo")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// The last 30 lines of the log above debug level (for assertion messages).
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().filter(|l| !l.contains("level=debug")).collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `ctr --address … --namespace NAMESPACE ARGS…`, stdin from /dev/null.
    pub fn ctr_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address").arg(self.address()).args(["--namespace", &self.namespace]).args(args);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// The namespace's cgroups (`/sys/fs/cgroup/*/NAMESPACE`): containerd makes them for the
    /// namespace's containers and never removes them.
    pub fn namespace_cgroups(&self) -> Vec<PathBuf> {
        cgroups_named(&self.namespace)
    }
}

/// The processes whose command line has `-address ADDRESS` (containerd's shims).
fn shims_of(address: &Path) -> Vec<i32> {
    let wanted = format!("-address\0{}\0", address.display());
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(&wanted))
        })
        .collect()
}

/// `/sys/fs/cgroup/*/NAME` that exist.
pub fn cgroups_named(name: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else { return Vec::new() };
    entries.flatten().map(|e| e.path().join(name.trim_start_matches('/'))).filter(|p| p.is_dir()).collect()
}

/// Kill what a failed test left running in `dir` (a cgroup of the test's own), then remove it.
pub fn remove_cgroup_tree(dir: &Path) {
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // SAFETY: a process inside this test's own cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten().filter(|e| e.path().is_dir()) {
            remove_cgroup_tree(&e.path());
        }
    }
    // The killed processes leave the cgroup as they are reaped: wait for that, briefly.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// containerd on the config in `dir`, its log appended to `dir/containerd.log`.
fn spawn_daemon(dir: &Path, path: &str, env: &[(String, std::ffi::OsString)]) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("containerd.log")).unwrap();
    Command::new("containerd")
        .args(["--log-level", "debug", "--config"])
        .arg(dir.join("config.toml"))
        .env("PATH", path)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("containerd (Debian's package: scripts/deps.sh)")
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let keep = std::env::temp_dir().join(format!("strata-containerd-{}.log", self.namespace));
            let _ = std::fs::copy(self.dir.path().join("containerd.log"), &keep);
            eprintln!("containerd's log: {}", keep.display());
        }
        // SAFETY: signalling the containerd we started, by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        // A test that failed halfway leaves its tasks' shims (strata's or runc's) waiting for a
        // containerd that is gone: each names this instance's address on its command line.
        for pid in shims_of(&self.address()) {
            // SAFETY: a shim of the containerd this test started, by its pid.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let root = self.dir.path().display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut targets: Vec<&str> =
            mounts.lines().filter_map(|l| l.split(' ').nth(4)).filter(|t| t.starts_with(&root)).collect();
        targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
        for t in targets {
            let _ = rustix::mount::unmount(t, rustix::mount::UnmountFlags::DETACH);
        }
        for cg in self.namespace_cgroups() {
            remove_cgroup_tree(&cg);
        }
        let _ = std::fs::remove_dir_all(Path::new("/run/containerd/runc").join(&self.namespace));
    }
}
