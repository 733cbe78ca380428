//! A [`WasmJob`] from an OCI runtime spec: the field-by-field mapping the sandbox needs, kept
//! here so the sandbox's init only adds what it resolved itself (the module path, the cache).
//!
//! This module only reads the spec; it must never touch the filesystem.

use super::{CpuLimit, Preopen, WasmJob};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::path::{Path, PathBuf};

/// Where the kernel's own filesystems live: never preopened. The sandbox detaches /proc and
/// /sys in a wasm container (see `sandbox::mounts`); /dev is reached through "/".
const SYSTEM_DIRS: [&str; 3] = ["/proc", "/sys", "/dev"];

impl WasmJob {
    /// Map `spec` to a job: argv (`process.args`, argv[0] as given), env, cwd; "/" plus each
    /// mount at its destination as preopens (read-only when mounted `ro`); the memory limit;
    /// the CPU quota; network unless the container has a new network namespace of its own
    /// (`--network none`), i.e. a `network` namespace entry without a path.
    /// `module` is `process.args[0]` resolved inside the container's root.
    pub fn from_spec(spec: &Spec, module: PathBuf) -> WasmJob {
        let process = spec.process().as_ref();
        let args = process.and_then(|p| p.args().clone()).unwrap_or_default();
        let env = process.and_then(|p| p.env().clone()).unwrap_or_default();
        let cwd = process.map(|p| p.cwd().clone()).filter(|c| c.is_absolute()).unwrap_or_else(|| PathBuf::from("/"));

        let root_ro = spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false);
        let mut preopens = vec![Preopen { read_only: root_ro, ..Preopen::root() }];
        for m in spec.mounts().as_deref().unwrap_or_default() {
            let dest = m.destination();
            if !dest.is_absolute() || dest == Path::new("/") || SYSTEM_DIRS.iter().any(|s| dest.starts_with(s)) {
                continue;
            }
            let read_only =
                crate::sandbox::mounts::parse_options(m.options().as_deref().unwrap_or_default()).read_only();
            preopens.retain(|p| p.guest != *dest);
            preopens.push(Preopen { guest: dest.clone(), host: dest.clone(), read_only });
        }

        let linux = spec.linux().as_ref();
        let resources = linux.and_then(|l| l.resources().as_ref());
        let memory_limit = resources
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit())
            .and_then(|l| u64::try_from(l).ok())
            .filter(|l| *l > 0);
        // A quota without a period runs against the kernel's default period, 100 ms.
        let cpu = resources.and_then(|r| r.cpu().as_ref()).and_then(|c| match (c.quota(), c.period()) {
            (Some(quota), period) if quota > 0 => {
                Some(CpuLimit { quota, period: period.filter(|p| *p > 0).unwrap_or(100_000) })
            }
            _ => None,
        });
        let isolated_net = linux
            .and_then(|l| l.namespaces().as_ref())
            .into_iter()
            .flatten()
            .any(|ns| ns.typ() == LinuxNamespaceType::Network && ns.path().is_none());

        WasmJob {
            module,
            args,
            env,
            cwd,
            preopens,
            memory_limit,
            cpu,
            network: !isolated_net,
            cache: None,
            preloaded: None,
            memory_gauge: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn maps_process_mounts_and_resources() {
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["/app.wasm", "x"], "env": ["A=1"], "cwd": "/work", "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs", "readonly": false},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm"},
                {"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind", "rw"]},
                {"destination": "/config", "type": "bind", "source": "/srv/cfg", "options": ["rbind", "ro"]}
            ],
            "linux": {
                "resources": {"memory": {"limit": 67108864}, "cpu": {"quota": 50000, "period": 100000}},
                "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "mount"}]
            }
        }));
        let job = WasmJob::from_spec(&s, "/app.wasm".into());
        assert_eq!(job.args, ["/app.wasm", "x"]);
        assert_eq!(job.env, ["A=1"]);
        assert_eq!(job.cwd, Path::new("/work"));
        let guests: Vec<(&str, bool)> = job.preopens.iter().map(|p| (p.guest.to_str().unwrap(), p.read_only)).collect();
        assert_eq!(guests, [("/", false), ("/data", false), ("/config", true)]);
        assert!(job.preopens.iter().all(|p| p.guest == p.host));
        assert_eq!(job.memory_limit, Some(64 << 20));
        assert_eq!(job.cpu, Some(CpuLimit { quota: 50_000, period: 100_000 }));
        assert!(!job.network, "a fresh network namespace means --network none");
    }

    #[test]
    fn host_network_and_no_limits() {
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["/app.wasm"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs", "readonly": true},
            "linux": {"resources": {"memory": {"limit": -1}, "cpu": {"quota": -1, "period": 100000}},
                      "namespaces": [{"type": "pid"}]}
        }));
        let job = WasmJob::from_spec(&s, "/app.wasm".into());
        assert!(job.network);
        assert_eq!((job.memory_limit, job.cpu), (None, None));
        assert_eq!(job.preopens, [Preopen { guest: "/".into(), host: "/".into(), read_only: true }]);
    }

    #[test]
    fn a_quota_without_a_period_runs_against_the_kernels_default_period() {
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["/app.wasm"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs"},
            "linux": {"resources": {"cpu": {"quota": 20000}}}
        }));
        let job = WasmJob::from_spec(&s, "/app.wasm".into());
        assert_eq!(job.cpu, Some(CpuLimit { quota: 20_000, period: 100_000 }));
    }
}
