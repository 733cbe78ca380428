//! Which `linux.sysctl` keys a container may set: only those of a kernel namespace the
//! container has to itself (runc's rule). The values are written through /proc/sys inside the
//! container, and for any other key /proc/sys is the host's: `vm.swappiness` there retunes the
//! machine. So a key is allowed only when the namespace it belongs to is new or joined by a
//! path that is not the runtime's own:
//! - IPC: `kernel.msgmax`, `kernel.msgmnb`, `kernel.msgmni`, `kernel.sem`, `kernel.shmall`,
//!   `kernel.shmmax`, `kernel.shmmni`, `kernel.shm_rmid_forced`, `fs.mqueue.*`;
//! - network: `net.*`;
//! - UTS: `kernel.domainname`, `kernel.hostname`.

use oci_spec::runtime::{Linux, LinuxNamespaceType};
use std::os::unix::fs::MetadataExt;

const IPC_KEYS: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// The namespace a sysctl key belongs to, or None for one no namespace holds.
fn namespace_of(key: &str) -> Option<LinuxNamespaceType> {
    if IPC_KEYS.contains(&key) || key.starts_with("fs.mqueue.") {
        Some(LinuxNamespaceType::Ipc)
    } else if key.starts_with("net.") {
        Some(LinuxNamespaceType::Network)
    } else if key == "kernel.domainname" || key == "kernel.hostname" {
        Some(LinuxNamespaceType::Uts)
    } else {
        None
    }
}

fn proc_name(ns: LinuxNamespaceType) -> &'static str {
    match ns {
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::Network => "net",
        _ => "uts",
    }
}

/// Whether the container gets a namespace of type `ns` apart from the runtime's: a new one, or
/// one joined by a path that is not the namespace the runtime itself runs in.
fn has_own(linux: &Linux, ns: LinuxNamespaceType) -> bool {
    let Some(entry) = linux.namespaces().as_deref().unwrap_or_default().iter().find(|n| n.typ() == ns) else {
        return false;
    };
    let Some(path) = entry.path() else {
        return true;
    };
    let id = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    match (id(path), id(std::path::Path::new(&format!("/proc/self/ns/{}", proc_name(ns))))) {
        (Some(joined), Some(ours)) => joined != ours,
        // A path that cannot be read fails the join later, with its own error.
        (None, _) => true,
        (Some(_), None) => false,
    }
}

/// Err: the offending key (as written) and why, in runc's words.
pub fn check(linux: &Linux) -> Result<(), (String, String)> {
    let mut keys: Vec<&String> = linux.sysctl().as_ref().map(|s| s.keys().collect()).unwrap_or_default();
    keys.sort();
    for key in keys {
        let normal = key.replace('/', ".");
        match namespace_of(&normal) {
            Some(ns) if has_own(linux, ns) => {}
            Some(ns) => {
                return Err((
                    key.clone(),
                    format!("sysctl {key:?} is not allowed in the host's {} namespace", proc_name(ns)),
                ))
            }
            None => return Err((key.clone(), format!("sysctl {key:?} is not in a separate kernel namespace"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux(namespaces: serde_json::Value, sysctl: serde_json::Value) -> Linux {
        serde_json::from_value(serde_json::json!({"namespaces": namespaces, "sysctl": sysctl})).unwrap()
    }

    #[test]
    fn only_keys_of_the_containers_own_namespaces_pass() {
        let all = serde_json::json!([{"type": "ipc"}, {"type": "network"}, {"type": "uts"}, {"type": "mount"}]);
        let ok = serde_json::json!({"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000", "fs.mqueue.msg_max": "20",
            "kernel.domainname": "x", "net/ipv4/tcp_fin_timeout": "30"});
        assert_eq!(check(&linux(all.clone(), ok)), Ok(()));
        // Not namespaced at all: the host's value, whatever the namespaces.
        for key in ["vm.swappiness", "kernel.pid_max", "fs.file-max", "kernel.shm_next_id_x"] {
            let e = check(&linux(all.clone(), serde_json::json!({key: "1"}))).unwrap_err();
            assert_eq!(e.0, key);
            assert!(e.1.contains("not in a separate kernel namespace"), "{e:?}");
        }
        // Namespaced, but the namespace is the host's.
        for (key, ns) in [("net.ipv4.tcp_fin_timeout", "net"), ("kernel.shmmni", "ipc"), ("kernel.hostname", "uts")] {
            let e = check(&linux(serde_json::json!([{"type": "mount"}]), serde_json::json!({key: "1"}))).unwrap_err();
            assert_eq!(e.1, format!("sysctl {key:?} is not allowed in the host's {ns} namespace"));
        }
        // Joining the runtime's own network namespace by path is the host's too.
        let joined = serde_json::json!([{"type": "network", "path": "/proc/self/ns/net"}]);
        assert!(check(&linux(joined, serde_json::json!({"net.core.somaxconn": "1"}))).is_err());
    }
}
