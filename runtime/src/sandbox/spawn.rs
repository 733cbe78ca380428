//! Starting a container's init: one clone(2) straight into the new namespaces (no
//! intermediate process), from a runtime that has started no threads.

use super::init::{self, InitConfig};
use super::namespaces;
use super::sync::{self, Channel};
use oci_spec::runtime::LinuxNamespaceType;
use std::os::fd::{AsRawFd, OwnedFd};

/// The runtime's handle on an init it cloned.
pub struct Spawned {
    pub pid: i32,
    pub chan: Channel,
    /// Whether the init was started inside the cgroup given to [`spawn`].
    pub in_cgroup: bool,
}

/// clone3's arguments (linux/sched.h, CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Clone the init, into the v2 cgroup `cgroup` when given (see [`fork`]). User and pid
/// namespaces given by path are joined here first, by the runtime itself, because they only
/// take effect for children.
pub fn spawn(cfg: InitConfig, cgroup: Option<&OwnedFd>) -> Result<Spawned, String> {
    for (t, path) in &cfg.plan.joins {
        if matches!(t, LinuxNamespaceType::User | LinuxNamespaceType::Pid) {
            namespaces::join(*t, path)?;
        }
    }
    let (parent, child) = sync::pair().map_err(|e| format!("creating sync socket: {e}"))?;
    // Not the cgroup namespace: it is rooted at the cgroup the process is in when it is
    // created, and the init joins the container's cgroup only after the clone; it unshares
    // its cgroup namespace then.
    let ns_flags = (cfg.plan.clone_flags & !libc::CLONE_NEWCGROUP) as u64;
    // SAFETY: this process is single-threaded and the child never returns into the caller
    // (init::main diverges).
    let (pid, in_cgroup) = unsafe { fork(ns_flags, cgroup)? };
    match pid {
        0 => {
            drop(parent);
            // Die with the runtime while it sets us up (the init clears this when ready).
            // SAFETY: prctl with constant arguments.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
            init::main(cfg, child)
        }
        pid => {
            drop(child);
            Ok(Spawned { pid, chan: parent, in_cgroup })
        }
    }
}

/// A fork-like clone (no CLONE_VM, no new stack) with the namespace flags `ns_flags`, into
/// the v2 cgroup `cgroup` when given: clone3 with CLONE_INTO_CGROUP, which starts the child
/// there without the RCU grace period a later `cgroup.procs` write waits for; a kernel
/// without it (before 5.7) gets a plain clone and `false`. Returns (pid, or 0 in the child;
/// whether the child started in the cgroup).
///
/// # Safety
/// The caller is single-threaded, and the child must not return into code that assumes it
/// is the parent (it ends in execve or `_exit`).
pub(crate) unsafe fn fork(ns_flags: u64, cgroup: Option<&OwnedFd>) -> Result<(i32, bool), String> {
    if let Some(fd) = cgroup {
        let args = CloneArgs {
            flags: ns_flags | CLONE_INTO_CGROUP,
            exit_signal: libc::SIGCHLD as u64,
            cgroup: fd.as_raw_fd() as u64,
            ..Default::default()
        };
        // SAFETY: per this function's contract; `args` outlives the call.
        let pid =
            unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
        if pid >= 0 {
            return Ok((pid as i32, true));
        }
        let e = std::io::Error::last_os_error();
        if !matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::E2BIG | libc::EINVAL)) {
            return Err(format!("clone3 into the cgroup: {e}"));
        }
    }
    // SAFETY: per this function's contract.
    let pid =
        unsafe { libc::syscall(libc::SYS_clone, ns_flags | libc::SIGCHLD as u64, 0usize, 0usize, 0usize, 0usize) };
    if pid < 0 {
        return Err(format!("clone: {}", std::io::Error::last_os_error()));
    }
    Ok((pid as i32, false))
}

/// linux/sched.h; not in every libc crate version.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

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
