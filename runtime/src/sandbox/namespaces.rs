//! Namespaces from the spec: which to create (clone flags) and which to join (`path`).
//! User and pid namespaces given by path are joined by the runtime before the clone (a pid
//! namespace only applies to children; the user namespace must come first); the others are
//! joined by the init right after it starts.

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

pub fn clone_flag(t: LinuxNamespaceType) -> libc::c_int {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => 0x80, // CLONE_NEWTIME
    }
}

#[derive(Debug, Default)]
pub struct Plan {
    /// Namespaces the clone creates.
    pub clone_flags: libc::c_int,
    /// Namespaces joined by path: (type, path).
    pub joins: Vec<(LinuxNamespaceType, PathBuf)>,
}

impl Plan {
    pub fn from_spec(namespaces: &[LinuxNamespace]) -> Plan {
        let mut plan = Plan::default();
        for ns in namespaces {
            match ns.path() {
                Some(path) if !path.as_os_str().is_empty() => plan.joins.push((ns.typ(), path.clone())),
                _ => plan.clone_flags |= clone_flag(ns.typ()),
            }
        }
        // The user namespace first: it grants the capabilities to join the others.
        plan.joins.sort_by_key(|(t, _)| if *t == LinuxNamespaceType::User { 0 } else { 1 });
        plan
    }

    pub fn creates(&self, t: LinuxNamespaceType) -> bool {
        self.clone_flags & clone_flag(t) != 0
    }

    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        self.creates(t) || self.joins.iter().any(|(j, _)| *j == t)
    }
}

/// Join the namespace at `path` (setns).
pub fn join(t: LinuxNamespaceType, path: &std::path::Path) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("opening {:?} namespace {}: {e}", t, path.display()))?;
    // SAFETY: setns on an fd we own, with the namespace type it must be.
    let rc = unsafe { libc::setns(file.as_raw_fd(), clone_flag(t)) };
    if rc != 0 {
        return Err(format!("joining {:?} namespace {}: {}", t, path.display(), std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Bring `lo` up in a network namespace the container just created. runc leaves it down, but
/// every caller brings it up anyway (docker and podman for `--network none`, CNI's loopback
/// plugin under containerd), and programs that talk to themselves over 127.0.0.1 expect it.
pub fn loopback_up() -> Result<(), String> {
    let fail = |what: &str| format!("bringing lo up: {what}: {}", std::io::Error::last_os_error());
    // SAFETY: a socket only for the ioctls below, closed when `sock` drops.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(fail("socket"));
    }
    // SAFETY: fd is a new socket that nothing else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write `req`, which lives across both calls.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(fail("SIOCGIFFLAGS"));
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(fail("SIOCSIFFLAGS"));
        }
    }
    Ok(())
}
