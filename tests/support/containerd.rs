//! A private containerd (Debian's 1.6) for a test: its own root, state and sockets in a temp
//! dir, the CRI plugin off, stopped by PID when dropped. `ctr` runs against it in a containerd
//! namespace of the test's own, so cgroups (`/NAMESPACE/ID`) and runc state
//! (`/run/containerd/runc/NAMESPACE`) can be told apart and cleaned up.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Containerd {
    pub dir: tempfile::TempDir,
    pub namespace: String,
    child: Child,
}

impl Containerd {
    /// Start containerd and wait (on its log, no polling loop of our own) until it serves.
    pub fn start(namespace: &str) -> Containerd {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n",
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("containerd.sock").display(),
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn containerd (package containerd)");
        let c = Containerd { dir, namespace: namespace.to_string(), child };
        // `ctr version` blocks until the daemon answers (the client retries the dial itself).
        let status = Command::new("ctr")
            .args(["--address", c.address().to_str().unwrap(), "--connect-timeout", "20s", "version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "containerd did not come up: {}",
            std::fs::read_to_string(c.dir.path().join("containerd.log")).unwrap_or_default()
        );
        c
    }

    pub fn address(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    pub fn fifo_dir(&self) -> PathBuf {
        self.dir.path().join("fifo")
    }

    /// `ctr --address … -n NAMESPACE args…`
    pub fn ctr(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address").arg(self.address()).args(["-n", &self.namespace]).args(args).stdin(Stdio::null());
        cmd
    }

    /// Import an OCI layout directory (tarred on the way) as `name:TAG`.
    pub fn import_layout(&self, layout: &Path, name: &str) {
        let archive = self.dir.path().join("import.tar");
        super::run(Command::new("tar").arg("-C").arg(layout).arg("-cf").arg(&archive).arg("."));
        super::run(&mut self.ctr(&["image", "import", "--base-name", name, archive.to_str().unwrap()]));
    }

    /// What containerd left outside its own directories for our namespace.
    pub fn leftovers(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = super::bundle::cgroup_leftovers(&format!("/{}", self.namespace))
            .into_iter()
            .flat_map(|dir| {
                std::fs::read_dir(dir).into_iter().flatten().flatten().filter(|e| e.path().is_dir()).map(|e| e.path())
            })
            .collect();
        let runc_state = PathBuf::from("/run/containerd/runc").join(&self.namespace);
        out.extend(std::fs::read_dir(&runc_state).into_iter().flatten().flatten().map(|e| e.path()));
        out
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for dir in super::bundle::cgroup_leftovers(&format!("/{}", self.namespace)) {
            let _ = std::fs::remove_dir(dir);
        }
        let _ = std::fs::remove_dir(PathBuf::from("/run/containerd/runc").join(&self.namespace));
    }
}
