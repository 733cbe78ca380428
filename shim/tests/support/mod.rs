//! Fixtures for the shim's end-to-end tests: a private containerd 1.6 (Debian's) per test,
//! the project's example images, and leftover checks.
//!
//! [`Containerd`] writes its config (root, state, gRPC and ttrpc sockets under a temp dir; CRI
//! on only when asked), starts the daemon with the shim's directory first on its PATH, and on
//! drop stops it by PID and removes what containerd and the shims write outside that dir:
//! shim sockets in /run/containerd/s, cgroups under /sys/fs/cgroup/*/<namespace>, stray
//! processes of this instance. Each test uses its own containerd namespace, so tests running
//! side by side never see each other's containers or cgroups.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const RUNTIME: &str = "io.containerd.strata.v1";
pub const BUSYBOX: &str = "localhost/strata-examples/busybox:latest";
pub const WASM: &str = "localhost/strata-examples/wasm-examples:latest";
/// The same modules, run as user 1000:1000 (the image's `USER`; ctr 1.6 has no `--user`).
pub const WASM_AS_USER: &str = "localhost/strata-examples/wasm-examples:user-1000";
/// busybox sleeping forever: the pod sandbox ("pause") image for CRI.
pub const PAUSE: &str = "localhost/strata-examples/pause:latest";

/// target/debug (or release): where the shim binary is.
pub fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_containerd-shim-strata-v1")).parent().unwrap().to_path_buf()
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    out
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Wait for `cond`, checking every 20 ms, up to `limit` (a condition, not a sleep).
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The example images as OCI archives (built once per test binary): the wasm guests in an
/// ordinary tar layer (containerd 1.6 cannot unpack raw wasm layers) and busybox, made the way
/// wasm-examples/build.sh makes them, through strata's own import and save.
/// The image archives the tests import: wasm, busybox, pause, and wasm run as user 1000.
pub fn images() -> &'static [PathBuf; 4] {
    static IMAGES: OnceLock<[PathBuf; 4]> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("strata-shim-images-").tempdir().unwrap().keep();
        let guests = dir.join("guests");
        let out = run(Command::new(workspace().join("wasm-examples/build-guests.sh"))
            .arg(&guests)
            .env("STRATA_COMPONENTIZE", "skip"));
        assert!(out.status.success(), "build-guests.sh: {}", text(&out.stderr));
        let wasm_root = dir.join("wasm");
        std::fs::create_dir_all(&wasm_root).unwrap();
        for g in ["hello.wasm", "busy-loop.wasm"] {
            std::fs::copy(guests.join(g), wasm_root.join(g)).unwrap();
        }
        let busybox_root = dir.join("busybox");
        for d in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
            std::fs::create_dir_all(busybox_root.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", busybox_root.join("bin/busybox")).unwrap();
        let list = run(Command::new("/bin/busybox").arg("--list"));
        for applet in text(&list.stdout).lines().filter(|a| *a != "busybox") {
            let _ = std::os::unix::fs::symlink("busybox", busybox_root.join("bin").join(applet));
        }
        std::fs::write(busybox_root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        let wasm = dir.join("wasm.tar");
        let busybox = dir.join("busybox.tar");
        import_and_save(&dir.join("store"), &wasm_root, "wasi/wasm", r#"ENTRYPOINT ["/hello.wasm"]"#, WASM, &wasm);
        import_and_save(&dir.join("store"), &busybox_root, "linux/amd64", r#"CMD ["sh"]"#, BUSYBOX, &busybox);
        let pause = dir.join("pause.tar");
        let entry = r#"ENTRYPOINT ["/bin/sleep", "2147483647"]"#;
        import_and_save(&dir.join("store"), &busybox_root, "linux/amd64", entry, PAUSE, &pause);
        let as_user = dir.join("wasm-as-user.tar");
        import_and_save(&dir.join("store"), &wasm_root, "wasi/wasm", "USER 1000:1000", WASM_AS_USER, &as_user);
        [wasm, busybox, pause, as_user]
    })
}

fn import_and_save(root: &Path, rootfs: &Path, platform: &str, change: &str, name: &str, out: &Path) {
    use strata::image::{archive, import, manifest::Platform, reference::ImageRef, store::Store};
    let mut layer = tar::Builder::new(Vec::new());
    layer.follow_symlinks(false);
    layer.append_dir_all(".", rootfs).unwrap();
    let layer = layer.into_inner().unwrap();
    let store = Store::open(&strata::root::Root::open(root).unwrap()).unwrap();
    let name = ImageRef::parse(name).unwrap();
    let opts = import::ImportOptions {
        platform: Platform::parse(platform).unwrap(),
        changes: vec![change.to_string()],
        annotations: Default::default(),
    };
    let image = import::import(&store, &layer[..], Some(&name), &opts).unwrap();
    let mut file = std::fs::File::create(out).unwrap();
    archive::save(&store, &[(image, Some(name))], &mut file).unwrap();
}

#[path = "../../../tests/support/containerd.rs"]
mod private_containerd;
pub use private_containerd::CRI_OFF;

/// A private containerd (the shared harness) that knows the shim: strata's shim binaries first
/// on its PATH, the containers run so far (their shim sockets are named by id), extra cgroup
/// parents (CRI's), and the shim's processes.
pub struct Containerd {
    base: private_containerd::Containerd,
    /// Container ids run so far (shim groupings): their shim sockets are known by name.
    pub ids: std::sync::Mutex<Vec<String>>,
    /// Cgroup parents to remove at the end (besides the namespace's).
    pub cgroup_parents: std::sync::Mutex<Vec<String>>,
}

impl std::ops::Deref for Containerd {
    type Target = private_containerd::Containerd;
    fn deref(&self) -> &Self::Target {
        &self.base
    }
}

impl Containerd {
    /// A private containerd (CRI off); `namespace` is this test's containerd namespace.
    pub fn start(namespace: &str) -> Containerd {
        Self::start_with(namespace, CRI_OFF)
    }

    /// With `extra` appended to the top of the config (plugins, CRI settings).
    pub fn start_with(namespace: &str, extra: &str) -> Containerd {
        Containerd {
            base: private_containerd::Containerd::start_with(namespace, extra, Some(&bin_dir())),
            ids: Default::default(),
            cgroup_parents: Default::default(),
        }
    }

    /// CRI off, with `env` in the environment of containerd and its shims.
    pub fn start_with_env(namespace: &str, env: &[(&str, &std::ffi::OsStr)]) -> Containerd {
        Containerd {
            base: private_containerd::Containerd::start_with_env(namespace, CRI_OFF, Some(&bin_dir()), env),
            ids: Default::default(),
            cgroup_parents: Default::default(),
        }
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        run(&mut self.ctr_cmd(args))
    }

    /// Stop containerd and start it again; the shims and their tasks go on.
    pub fn restart(&mut self) {
        self.base.restart();
    }

    /// containerd's event stream (`ctr events`), from now on.
    pub fn events(&self) -> EventStream {
        let mut child = self
            .ctr_cmd(&["events"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let stream = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        EventStream { child, lines, seen: Vec::new() }
    }

    /// `ctr` that must succeed; its stdout.
    pub fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(out.status.success(), "ctr {args:?} failed: {}\n{}", text(&out.stderr), self.log_tail());
        text(&out.stdout)
    }

    pub fn fifo(&self) -> String {
        self.fifo_dir().display().to_string()
    }

    pub fn import_images(&self) {
        let [wasm, busybox, pause, as_user] = images();
        self.ctr_ok(&["image", "import", "--all-platforms", &wasm.display().to_string()]);
        self.ctr_ok(&["image", "import", "--all-platforms", &as_user.display().to_string()]);
        self.ctr_ok(&["image", "import", &busybox.display().to_string()]);
        self.ctr_ok(&["image", "import", &pause.display().to_string()]);
    }

    /// `ctr run` of `image` through strata's shim, with `args` before the image.
    pub fn run_args(&self, flags: &[&str], image: &str, id: &str, cmd: &[&str]) -> Vec<String> {
        self.ids.lock().unwrap().push(id.to_string());
        let mut a: Vec<String> = vec!["run".into(), "--runtime".into(), RUNTIME.into()];
        a.push("--fifo-dir".into());
        a.push(self.fifo());
        a.extend(flags.iter().map(|s| s.to_string()));
        a.push(image.into());
        a.push(id.into());
        a.extend(cmd.iter().map(|s| s.to_string()));
        a
    }

    pub fn ctr_run(&self, flags: &[&str], image: &str, id: &str, cmd: &[&str]) -> Output {
        let a = self.run_args(flags, image, id, cmd);
        self.ctr(&a.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Shim processes of this instance (their command line names our address).
    pub fn shim_pids(&self) -> Vec<i32> {
        processes_mentioning(&self.address().display().to_string())
            .into_iter()
            .filter(|(_, cmd)| cmd.contains("containerd-shim-strata-v1"))
            .map(|(pid, _)| pid)
            .collect()
    }

    /// The shim serving container `id` (the serving process, not its zygote).
    pub fn shim_of(&self, id: &str) -> Option<i32> {
        let needle = format!("-id {id} ");
        processes_mentioning(&self.address().display().to_string())
            .into_iter()
            .filter(|(pid, cmd)| {
                cmd.contains("containerd-shim-strata-v1") && cmd.contains(&needle) && !parent_is_shim(*pid)
            })
            .map(|(pid, _)| pid)
            .next()
    }

    /// Whether `pid` is a serving shim (not a zygote, whose parent is a shim).
    pub fn shim_of_pid_is_serving(&self, pid: i32) -> bool {
        !parent_is_shim(pid)
    }

    /// What must be gone once every container of this test is deleted: shim processes and
    /// sockets, rootfs mounts, the namespace's cgroups.
    pub fn assert_no_leftovers(&self) {
        wait_for("the shims to exit", Duration::from_secs(20), || self.shim_pids().is_empty());
        for s in self.sockets() {
            assert!(!Path::new(&s).exists(), "shim socket {s} left behind");
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = self.dir.path().display().to_string();
        assert!(!mounts.contains(&root), "mounts left under {root}:\n{mounts}");
        for cg in self.cgroup_dirs() {
            let children: Vec<_> = std::fs::read_dir(&cg)
                .map(|r| r.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()).collect())
                .unwrap_or_default();
            assert!(children.is_empty(), "cgroups left in {}: {children:?}\n{}", cg.display(), self.log_tail());
        }
    }
}

impl Containerd {
    /// The shim sockets of the containers run so far (named by address, namespace and id).
    pub fn sockets(&self) -> Vec<String> {
        let address = self.address().display().to_string();
        self.ids
            .lock()
            .unwrap()
            .iter()
            .map(|id| containerd_shim::socket_address(&address, &self.namespace, id).replace("unix://", ""))
            .collect()
    }
}

impl Containerd {
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = self.namespace_cgroups();
        for p in self.cgroup_parents.lock().unwrap().iter() {
            dirs.extend(private_containerd::cgroups_named(p));
        }
        dirs
    }
}

/// The processes whose parent is `pid`.
pub fn children(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        if stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)) == Some(pid.to_string().as_str()) {
            found.push(child);
        }
    }
    found
}

fn parent_is_shim(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let Some(ppid) = stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)) else { return false };
    std::fs::read(format!("/proc/{ppid}/cmdline"))
        .map(|c| text(&c).contains("containerd-shim-strata-v1"))
        .unwrap_or(false)
}

/// (pid, command line) of every process whose command line contains `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let cmd = text(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            found.push((pid, cmd));
        }
    }
    found
}

pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().and_then(|r| r.split_whitespace().next()) != Some("Z"))
        .unwrap_or(false)
}

impl Drop for Containerd {
    /// Shims outlive containerd by design: a failed test's are killed (ours only, by pid) and
    /// their sockets removed, CRI's cgroup parents too; the shared harness does the rest.
    fn drop(&mut self) {
        for pid in self.shim_pids() {
            // SAFETY: a process whose command line names our private containerd.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for s in self.sockets() {
            let _ = std::fs::remove_file(&s);
        }
        for p in self.cgroup_parents.lock().unwrap().iter() {
            for cg in private_containerd::cgroups_named(p) {
                private_containerd::remove_cgroup_tree(&cg);
            }
        }
    }
}

/// Read everything `r` gives until EOF (a pty master: until EIO).
pub fn read_all(mut r: impl Read) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    text(&out)
}

/// `ctr events`' lines, read on a thread so a test can wait for one with a limit.
pub struct EventStream {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every line read so far, in order.
    pub seen: Vec<String>,
}

impl EventStream {
    /// Wait up to `limit` for a line `wanted` accepts (kept in `seen`, as all lines are).
    pub fn wait_for(&mut self, limit: std::time::Duration, wanted: &dyn Fn(&str) -> bool) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while let Ok(line) = self.lines.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            let found = wanted(&line);
            self.seen.push(line);
            if found {
                return true;
            }
        }
        false
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
