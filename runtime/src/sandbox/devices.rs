//! /dev inside the container: the default devices every container gets (null, zero, full,
//! random, urandom, tty), the spec's `linux.devices`, and the standard symlinks. Created with
//! mknod, or, inside a user namespace (where mknod is not allowed), bind-mounted from the host.

use super::mounts::{fd_path, mount, open_in_root, Result};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub struct Device {
    pub path: PathBuf,
    pub kind: LinuxDeviceType,
    pub major: i64,
    pub minor: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

pub fn defaults() -> Vec<Device> {
    [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]
        .into_iter()
        .map(|(name, major, minor)| Device {
            path: PathBuf::from("/dev").join(name),
            kind: LinuxDeviceType::C,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        })
        .collect()
}

pub fn from_spec(d: &LinuxDevice) -> Device {
    Device {
        path: d.path().clone(),
        kind: d.typ(),
        major: d.major(),
        minor: d.minor(),
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    }
}

/// Create every device under `root` (the rootfs, before pivot_root).
pub fn create_all(root: &OwnedFd, devices: &[Device], in_user_ns: bool) -> Result<()> {
    for d in devices {
        create(root, d, in_user_ns).map_err(|e| format!("device {}: {e}", d.path.display()))?;
    }
    Ok(())
}

fn create(root: &OwnedFd, d: &Device, in_user_ns: bool) -> Result<()> {
    if !d.path.starts_with("/dev") {
        return Err("devices must live under /dev".into());
    }
    let parent_path = d.path.parent().unwrap_or(Path::new("/dev"));
    let name = d.path.file_name().ok_or("device path has no name")?;
    let parent = open_in_root(root, parent_path, false)?;
    // O_PATH fds can't be used for mknodat: reopen the parent as a directory.
    let dir = rustix::fs::openat(
        rustix::fs::CWD,
        fd_path(&parent),
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| format!("opening {}: {e}", parent_path.display()))?;
    let _ = rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::empty());
    if in_user_ns {
        // Bind the host's device node onto an empty file.
        rustix::fs::openat(
            &dir,
            name,
            rustix::fs::OFlags::CREATE | rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::from_raw_mode(0o644),
        )
        .map_err(|e| format!("creating mountpoint: {e}"))?;
        let target = open_in_root(root, &d.path, true)?;
        let host = d.path.to_str().ok_or("path is not UTF-8")?;
        return mount(Some(host), &fd_path(&target), None, libc::MS_BIND, None);
    }
    let file_type = match d.kind {
        LinuxDeviceType::C | LinuxDeviceType::U => rustix::fs::FileType::CharacterDevice,
        LinuxDeviceType::B => rustix::fs::FileType::BlockDevice,
        LinuxDeviceType::P => rustix::fs::FileType::Fifo,
        LinuxDeviceType::A => return Err("type \"a\" is for cgroup rules, not a device node".into()),
    };
    let dev = rustix::fs::makedev(d.major as u32, d.minor as u32);
    rustix::fs::mknodat(&dir, name, file_type, rustix::fs::Mode::from_raw_mode(d.mode), dev)
        .map_err(|e| format!("mknod: {e}"))?;
    rustix::fs::chownat(
        &dir,
        name,
        Some(rustix::fs::Uid::from_raw(d.uid)),
        Some(rustix::fs::Gid::from_raw(d.gid)),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| format!("chown: {e}"))?;
    // mknod applies the umask; set the exact mode.
    rustix::fs::chmodat(&dir, name, rustix::fs::Mode::from_raw_mode(d.mode), rustix::fs::AtFlags::empty())
        .map_err(|e| format!("chmod: {e}"))?;
    Ok(())
}

/// /dev/fd, /dev/std{in,out,err}, /dev/ptmx (when /dev/pts exists) and /dev/core.
pub fn create_symlinks(root: &OwnedFd) -> Result<()> {
    let dev = open_in_root(root, Path::new("/dev"), false)?;
    let dir = rustix::fs::openat(
        rustix::fs::CWD,
        fd_path(&dev),
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| format!("opening /dev: {e}"))?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("/proc/kcore", "core"),
    ];
    if rustix::fs::statat(&dir, "pts", rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_ok() {
        let _ = rustix::fs::unlinkat(&dir, "ptmx", rustix::fs::AtFlags::empty());
        links.push(("pts/ptmx", "ptmx"));
    }
    for (target, name) in links {
        match rustix::fs::symlinkat(target, &dir, name) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(format!("symlink /dev/{name}: {e}")),
        }
    }
    Ok(())
}
