//! The real callers of a low-level runtime drive `strata-oci` in place of runc: podman
//! (`--runtime`, through conmon) and containerd's `io.containerd.runc.v2` shim (its
//! `BinaryName`, which `ctr run --runc-binary` sets).
//!
//! Runs as root inside a private mount namespace (the test command does `unshare -m`).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::bundle::{cgroup_leftovers, unique_id, Outcome, STRATA_OCI};
use support::containerd::Containerd;

/// podman with storage, runroot and config of its own; containers.conf keeps rlimits to what
/// this machine allows (root cannot raise nofile above 20000 or nproc above its hard limit
/// here; podman's defaults ask for 1048576).
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Podman {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
        .unwrap();
        Podman { dir }
    }

    fn command(&self, args: &[&str]) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", d.join("containers.conf"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("run"))
            .args(["--storage-driver", "vfs", "--runtime", STRATA_OCI, "--cgroup-manager", "cgroupfs"])
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Outcome {
        self.command(args).output().expect("spawn podman").into()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(o.code, 0, "podman {args:?}: {o}");
        o.stdout
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.command(&["rm", "-af", "-t", "0"]).output();
        let _ = self.command(&["system", "reset", "-f"]).output();
        // podman's cgroupfs manager leaves its (empty) parent cgroups behind.
        for dir in cgroup_leftovers("/libpod_parent/conmon").into_iter().chain(cgroup_leftovers("/libpod_parent")) {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[test]
fn podman_runs_containers_through_strata_oci() {
    let p = Podman::new();
    let layout = tempfile::tempdir().unwrap();
    support::busybox_image(layout.path(), "v1");
    let archive = layout.path().join("busybox.tar");
    support::run(Command::new("tar").arg("-C").arg(layout.path()).args(["-cf"]).arg(&archive).args([
        "index.json",
        "oci-layout",
        "blobs",
    ]));
    p.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    let image = p.ok(&["images", "-q"]).trim().to_string();

    let o = p.run(&["run", "--rm", "--network", "none", &image, "sh", "-c", "echo hello from podman; exit 3"]);
    assert_eq!(o.code, 3, "{o}");
    assert_eq!(o.stdout, "hello from podman\n", "{o}");

    let name = unique_id("podman");
    p.ok(&["run", "-d", "--name", &name, "--network", "none", &image, "sleep", "1000"]);
    let o = p.run(&["exec", &name, "sh", "-c", "echo exec $(cat /proc/1/cmdline | tr '\\0' ' '); exit 4"]);
    assert_eq!(o.code, 4, "{o}");
    assert_eq!(o.stdout, "exec sleep 1000\n", "{o}");
    let inspect: serde_json::Value = serde_json::from_str(&p.ok(&["inspect", &name])).unwrap();
    assert_eq!(inspect[0]["State"]["Status"], "running", "{inspect}");
    assert!(inspect[0]["OCIRuntime"].as_str().unwrap().contains("strata-oci"), "{}", inspect[0]["OCIRuntime"]);
    // sleep ignores SIGTERM as PID 1: podman falls back to SIGKILL.
    p.ok(&["stop", "-t", "0", &name]);
    let inspect: serde_json::Value = serde_json::from_str(&p.ok(&["inspect", &name])).unwrap();
    assert_eq!(inspect[0]["State"]["Status"], "exited", "{inspect}");
    assert_eq!(inspect[0]["State"]["ExitCode"], 137, "{inspect}");
    let cgroup = inspect[0]["State"]["CgroupPath"].as_str().unwrap_or_default().to_string();
    p.ok(&["rm", &name]);
    if !cgroup.is_empty() {
        assert!(cgroup_leftovers(&cgroup).is_empty(), "{cgroup} left behind");
    }

    // A terminal: podman's conmon takes it over strata-oci's --console-socket.
    let o = p.run(&["run", "--rm", "-t", "--network", "none", &image, "readlink", "/proc/self/fd/0"]);
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.starts_with("/dev/pts/"), "{o}");
}

#[test]
fn containerd_runc_shim_runs_strata_oci_as_its_binary() {
    let ctd = Containerd::start(&unique_id("strata-oci"));
    let layout = tempfile::tempdir().unwrap();
    support::busybox_image(layout.path(), "v1");
    let archive = ctd.dir.path().join("import.tar");
    support::run(Command::new("tar").arg("-C").arg(layout.path()).arg("-cf").arg(&archive).arg("."));
    let o: Outcome = ctd
        .ctr_cmd(&["image", "import", "--base-name", "localhost/busybox", archive.to_str().unwrap()])
        .output()
        .unwrap()
        .into();
    assert_eq!(o.code, 0, "{o}");
    let fifo = ctd.fifo_dir();
    let fifo = fifo.to_str().unwrap();
    let run = |args: &[&str]| -> Outcome { ctd.ctr_cmd(args).output().unwrap().into() };

    let o = run(&[
        "run",
        "--rm",
        "--runc-binary",
        STRATA_OCI,
        "--fifo-dir",
        fifo,
        "localhost/busybox:v1",
        "once",
        "sh",
        "-c",
        "echo hello from containerd; exit 3",
    ]);
    assert_eq!(o.code, 3, "{o}");
    assert_eq!(o.stdout, "hello from containerd\n", "{o}");

    let o = run(&[
        "run",
        "-d",
        "--runc-binary",
        STRATA_OCI,
        "--fifo-dir",
        fifo,
        "localhost/busybox:v1",
        "long",
        "sleep",
        "1000",
    ]);
    assert_eq!(o.code, 0, "{o}");
    let o = run(&["task", "exec", "--fifo-dir", fifo, "--exec-id", "e1", "long", "sh", "-c", "echo in-task; exit 5"]);
    assert_eq!(o.code, 5, "{o}");
    assert_eq!(o.stdout, "in-task\n", "{o}");
    let o = run(&["task", "pause", "long"]);
    assert_eq!(o.code, 0, "{o}");
    let ls = run(&["task", "ls"]).stdout;
    assert!(ls.lines().any(|l| l.starts_with("long") && l.contains("PAUSED")), "{ls}");
    assert_eq!(run(&["task", "resume", "long"]).code, 0);
    let o = run(&["task", "kill", "-s", "KILL", "long"]);
    assert_eq!(o.code, 0, "{o}");
    // The runc shim learns of the exit when it reaps the init, after `kill` returned, and
    // `task delete` refuses a task it still sees running (a busy CI machine showed the gap).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let ls = run(&["task", "ls"]).stdout;
        if ls.lines().any(|l| l.starts_with("long ") && l.contains("STOPPED")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the killed task never showed as stopped: {ls}");
    }
    // `task delete` reports the exit.
    let o = run(&["task", "delete", "long"]);
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stderr.contains("137") || o.stdout.contains("137"), "{o}");
    assert_eq!(run(&["container", "rm", "long"]).code, 0);
    // Nothing left of our namespace: no container cgroups, no runc state.
    let leftovers = |ctd: &Containerd| -> Vec<PathBuf> {
        let cgroups = ctd.namespace_cgroups().into_iter().flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten());
        let runc_state =
            std::fs::read_dir(Path::new("/run/containerd/runc").join(&ctd.namespace)).into_iter().flatten();
        cgroups.chain(runc_state).flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()
    };
    assert!(leftovers(&ctd).is_empty(), "{:?}", leftovers(&ctd));
}
