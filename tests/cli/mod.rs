//! Running the real `strata` binary against a private root, for end-to-end tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// A strata root in a temp dir, with its own credentials file.
pub struct Strata {
    pub dir: tempfile::TempDir,
}

pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Outcome {
    fn from(out: Output) -> Outcome {
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Strata {
    pub fn new() -> Strata {
        Strata { dir: tempfile::tempdir().expect("tempdir") }
    }

    pub fn with_root(root: &Path) -> Strata {
        let s = Strata::new();
        std::os::unix::fs::symlink(root, s.root()).expect("link root");
        s
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn authfile(&self) -> PathBuf {
        self.dir.path().join("auth.json")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(STRATA);
        cmd.env("STRATA_ROOT", self.root())
            .env("REGISTRY_AUTH_FILE", self.authfile())
            .env_remove("DOCKER_CONFIG")
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Run `strata ARGS`; whatever the input, strata must not panic.
    pub fn run(&self, args: &[&str]) -> Outcome {
        let o = Outcome::from(self.command(args).output().expect("spawn strata"));
        assert!(!o.stderr.contains("panicked"), "strata {args:?} panicked: {}", o.stderr);
        o
    }

    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Outcome {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strata");
        child.stdin.take().unwrap().write_all(input).unwrap();
        Outcome::from(child.wait_with_output().unwrap())
    }

    /// Run and require exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(o.code, 0, "strata {args:?} failed ({}):\n{}\n{}", o.code, o.stdout, o.stderr);
        o.stdout
    }

    /// Run and require a failure; returns the outcome for the caller to check the message.
    pub fn fails(&self, args: &[&str]) -> Outcome {
        let o = self.run(args);
        assert_ne!(o.code, 0, "strata {args:?} unexpectedly succeeded:\n{}\n{}", o.stdout, o.stderr);
        assert!(!o.stderr.contains("panicked"), "strata panicked: {}", o.stderr);
        o
    }

    pub fn inspect(&self, image: &str) -> serde_json::Value {
        let out = self.ok(&["inspect", image]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("inspect prints JSON");
        v[0].clone()
    }

    /// Named images, as `images --format json` reports them.
    pub fn images(&self) -> Vec<serde_json::Value> {
        self.ok(&["images", "-a", "--format", "json"])
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    }

    /// Everything left in ROOT/tmp and snapshot staging: must be empty after any command.
    pub fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.root().join("tmp")).into_iter().flatten().flatten() {
            out.push(entry.path().display().to_string());
        }
        for entry in std::fs::read_dir(self.root().join("snapshots")).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with('.') {
                out.push(entry.path().display().to_string());
            }
        }
        out
    }

    pub fn snapshot_count(&self) -> usize {
        std::fs::read_dir(self.root().join("snapshots"))
            .map(|d| d.flatten().filter(|e| !e.file_name().to_string_lossy().starts_with('.')).count())
            .unwrap_or(0)
    }

    pub fn blob_count(&self) -> usize {
        std::fs::read_dir(self.root().join("images/blobs/sha256")).map(|d| d.count()).unwrap_or(0)
    }

    /// `ps [-a] --format json`, one object per container.
    pub fn ps(&self, all: bool) -> Vec<serde_json::Value> {
        let args: &[&str] = if all { &["ps", "-a", "--format", "json"] } else { &["ps", "--format", "json"] };
        self.ok(args).lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect()
    }

    /// Nothing of container `id` is left: no record, state, mount, cgroup or process.
    pub fn assert_no_trace(&self, id: &str) {
        let root = self.root();
        assert!(!root.join("containers").join(id).exists(), "container dir of {id} left");
        let run: Vec<_> = std::fs::read_dir(root.join("run")).map(|d| d.flatten().collect()).unwrap_or_default();
        assert!(run.iter().all(|e| !e.file_name().to_string_lossy().contains(id)), "lifecycle state of {id} left");
        self.assert_run_released(id);
    }

    /// The run of `id` holds nothing any more: no mount, cgroup or lifecycle state.
    pub fn assert_run_released(&self, id: &str) {
        let root = self.root().canonicalize().unwrap();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(root.to_str().unwrap()), "a mount under the root is left:\n{mounts}");
        for cg in cgroup_dirs(id) {
            assert!(!cg.exists(), "cgroup {} left", cg.display());
        }
        assert!(!self.root().join("run").join(id).exists(), "lifecycle state of {id} left");
    }

    /// Remove every container of this root (for Drop impls of test environments).
    pub fn remove_all_containers(&self) {
        let ids = self.run(&["ps", "-aq", "--no-trunc"]).stdout;
        for id in ids.lines() {
            let _ = self.run(&["rm", "-f", id]);
        }
    }
}

/// A container's cgroup in every v1 hierarchy (or the v2 one).
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.join("strata").join(id)];
    }
    std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("strata").is_dir())
        .map(|e| e.path().join("strata").join(id))
        .collect()
}
