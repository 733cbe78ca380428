//! Starting a container's init: one clone(2) straight into the new namespaces (no
//! intermediate process), from a runtime that has started no threads.

use super::init::{self, InitConfig};
use super::namespaces;
use super::sync::{self, Channel};
use oci_spec::runtime::LinuxNamespaceType;

/// The runtime's handle on an init it cloned.
pub struct Spawned {
    pub pid: i32,
    pub chan: Channel,
}

/// Clone the init. User and pid namespaces given by path are joined here first, by the
/// runtime itself, because they only take effect for children.
pub fn spawn(cfg: InitConfig) -> Result<Spawned, String> {
    for (t, path) in &cfg.plan.joins {
        if matches!(t, LinuxNamespaceType::User | LinuxNamespaceType::Pid) {
            namespaces::join(*t, path)?;
        }
    }
    let (parent, child) = sync::pair().map_err(|e| format!("creating sync socket: {e}"))?;
    // Not the cgroup namespace: it is rooted at the cgroup the process is in when it is
    // created, and the init joins the container's cgroup only after the clone; it unshares
    // its cgroup namespace then.
    let flags = ((cfg.plan.clone_flags & !libc::CLONE_NEWCGROUP) | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: a fork-like clone (no CLONE_VM, no new stack): the child gets a copy of this
    // single-threaded process and never returns into the caller (init::main diverges).
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    match pid {
        -1 => Err(format!("clone: {}", std::io::Error::last_os_error())),
        0 => {
            drop(parent);
            // Die with the runtime while it sets us up (the init clears this when ready).
            // SAFETY: prctl with constant arguments.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
            init::main(cfg, child)
        }
        pid => {
            drop(child);
            Ok(Spawned { pid: pid as i32, chan: parent })
        }
    }
}

/// Write the user namespace's id maps for `pid` (the runtime is privileged in the parent
/// namespace, so setgroups may stay allowed).
pub fn write_id_maps(
    pid: i32,
    uid: &[oci_spec::runtime::LinuxIdMapping],
    gid: &[oci_spec::runtime::LinuxIdMapping],
) -> Result<(), String> {
    let fmt = |maps: &[oci_spec::runtime::LinuxIdMapping]| {
        maps.iter().map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size())).collect::<String>()
    };
    if !uid.is_empty() {
        std::fs::write(format!("/proc/{pid}/uid_map"), fmt(uid)).map_err(|e| format!("writing uid_map: {e}"))?;
    }
    if !gid.is_empty() {
        std::fs::write(format!("/proc/{pid}/gid_map"), fmt(gid)).map_err(|e| format!("writing gid_map: {e}"))?;
    }
    Ok(())
}
