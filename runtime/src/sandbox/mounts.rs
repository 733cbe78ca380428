//! The container's filesystem view, built inside its new mount namespace: propagation of `/`,
//! the rootfs bind, each spec mount (its mountpoint created and resolved *inside* the rootfs,
//! so a symlink in the image can never redirect a mount onto the host), devices, pivot_root,
//! then masked and read-only paths. A wasm container's kernel filesystems are detached again
//! before it drops its capabilities.
//!
//! Runs in the container's init, single-threaded, before execve. It must never resolve a
//! container-controlled path against the host root.

use oci_spec::runtime::Mount;
use rustix::fs::{Mode, OFlags};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

pub type Result<T> = std::result::Result<T, String>;

fn cstr(s: &str) -> CString {
    CString::new(s.replace('\0', "")).expect("no NUL")
}

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// mount(2) with optional pieces; the error names the call.
pub fn mount(
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<()> {
    let (s, t, f, d) = (source.map(cstr), cstr(target), fstype.map(cstr), data.map(cstr));
    // SAFETY: every pointer is a valid NUL-terminated string or null.
    let rc = unsafe {
        libc::mount(
            s.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            t.as_ptr(),
            f.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            flags,
            d.as_ref().map_or(std::ptr::null(), |c| c.as_ptr() as *const libc::c_void),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "mount {} on {target} (type {}, flags {flags:#x}, data {:?}): {}",
            source.unwrap_or("none"),
            fstype.unwrap_or("none"),
            data.unwrap_or(""),
            errno()
        ))
    }
}

/// Parsed mount options: flags to set, flags to clear, propagation, and fs-specific data.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub flags: libc::c_ulong,
    pub clear: libc::c_ulong,
    pub propagation: Vec<libc::c_ulong>,
    pub data: Vec<String>,
    pub bind: bool,
    pub recursive: bool,
    /// `rro` (true) / `rrw` (false): the mount and every mount under it read-only or not.
    pub recursive_read_only: Option<bool>,
}

impl Options {
    /// Whether the mount ends read-only: `rro`/`rrw` are applied after the mount and its
    /// `ro`/`rw` (runc's order), so they decide when given.
    pub fn read_only(&self) -> bool {
        self.recursive_read_only.unwrap_or(self.flags & libc::MS_RDONLY != 0)
    }
}

pub fn parse_options(options: &[String]) -> Options {
    let mut o = Options::default();
    for opt in options {
        let (set, clear): (libc::c_ulong, libc::c_ulong) = match opt.as_str() {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "remount" => (libc::MS_REMOUNT, 0),
            "mand" => (libc::MS_MANDLOCK, 0),
            "nomand" => (0, libc::MS_MANDLOCK),
            "atime" => (0, libc::MS_NOATIME),
            "noatime" => (libc::MS_NOATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME),
            "bind" => {
                o.bind = true;
                continue;
            }
            "rbind" => {
                o.bind = true;
                o.recursive = true;
                continue;
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable" | "runbindable" => {
                o.propagation.push(propagation_flag(opt).expect("known propagation"));
                continue;
            }
            "rro" | "rrw" => {
                o.recursive_read_only = Some(opt == "rro");
                continue;
            }
            // Options mount(2) has no flag for, and that are not fs data either.
            "defaults" | "tmpcopyup" | "idmap" | "ridmap" => continue,
            _ => {
                o.data.push(opt.clone());
                continue;
            }
        };
        o.flags = (o.flags | set) & !clear;
        o.clear = (o.clear | clear) & !set;
    }
    o
}

pub fn propagation_flag(name: &str) -> Option<libc::c_ulong> {
    Some(match name {
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        _ => return None,
    })
}

/// `path` (absolute inside the container) resolved under `root` as an O_PATH fd: by the
/// kernel, never leaving the root (symlinks and `..` as if `root` were `/`, RESOLVE_IN_ROOT)
/// and never through a magic link of /proc.
fn resolve_in_root(root: &OwnedFd, path: &Path) -> rustix::io::Result<OwnedFd> {
    crate::fsutil::open_in_root(root, path, OFlags::PATH | OFlags::CLOEXEC)
}

/// Resolve `path` under `root` ([`resolve_in_root`]), creating what is missing: directories
/// (0755), and the last component as a file (0644) when `file` is set.
pub fn open_in_root(root: &OwnedFd, path: &Path, file: bool) -> Result<OwnedFd> {
    match resolve_in_root(root, path) {
        Err(rustix::io::Errno::NOENT) => create_missing(root, path, file)?,
        found => return found.map_err(|e| format!("resolving {} in the rootfs: {e}", path.display())),
    }
    resolve_in_root(root, path).map_err(|e| format!("resolving {} in the rootfs: {e}", path.display()))
}

/// Make `path` as a directory under `root` when nothing is there (runc's handling of a
/// missing `process.cwd`). A path that is there, or that cannot be resolved this way (a
/// magic link), is left for the caller's later use of it to report.
pub fn make_missing_dir(root: &OwnedFd, path: &Path) -> Result<()> {
    match resolve_in_root(root, path) {
        Err(rustix::io::Errno::NOENT) => create_missing(root, path, false),
        _ => Ok(()),
    }
}

/// Create each missing component of `path` under `root`, by name in its parent, every
/// prefix resolved by [`resolve_in_root`] (so `..` after a symlink goes where the kernel
/// would take it). A prefix that cannot be resolved (a magic link, a file) is an error
/// naming it.
fn create_missing(root: &OwnedFd, path: &Path, file: bool) -> Result<()> {
    let last_name =
        path.components().enumerate().filter(|(_, c)| matches!(c, Component::Normal(_))).map(|(i, _)| i).last();
    let mut prefix = PathBuf::from("/");
    for (i, component) in path.components().enumerate() {
        let name = match component {
            Component::Normal(name) => name,
            Component::ParentDir => {
                prefix.push("..");
                continue;
            }
            _ => continue,
        };
        let next = prefix.join(name);
        match resolve_in_root(root, &next) {
            Ok(_) => {}
            Err(rustix::io::Errno::NOENT) => {
                let parent = resolve_in_root(root, &prefix)
                    .map_err(|e| format!("resolving {} in the rootfs: {e}", prefix.display()))?;
                let created = if file && Some(i) == last_name {
                    rustix::fs::openat(
                        &parent,
                        name,
                        OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                        Mode::from_raw_mode(0o644),
                    )
                    .map(drop)
                } else {
                    rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755))
                };
                match created {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(format!("creating {} in the rootfs: {e}", next.display())),
                }
            }
            Err(e) => return Err(format!("resolving {} in the rootfs: {e}", next.display())),
        }
        prefix = next;
    }
    Ok(())
}

/// A spec mount's destination, resolved in the root, which it must not be: an image that
/// ships `/proc -> /` would have procfs mounted over the whole root, and the masked and
/// read-only paths (`/proc/kcore`, `/proc/sys`) then name nothing and go unprotected.
fn open_mount_target(root: &OwnedFd, destination: &Path, file: bool) -> Result<OwnedFd> {
    let target = open_in_root(root, destination, file)?;
    let inode = |fd: &OwnedFd| rustix::fs::fstat(fd).map(|st| (st.st_dev, st.st_ino));
    if destination.components().any(|c| matches!(c, Component::Normal(_))) && inode(&target).ok() == inode(root).ok() {
        return Err("the destination resolves to the container's root (through a symlink in the rootfs)".into());
    }
    Ok(target)
}

/// Bind `source` (a host path) onto `mountpoint` (an O_PATH fd of the target, resolved in the
/// root), recursively or not, and return an O_PATH fd of the new mount's root: made with
/// open_tree + move_mount (Linux 5.2), so the new mount is never looked up by path (a path
/// walk would cross it, and its symlinks, a host directory's, could lead a later remount
/// elsewhere). Without them, mount(2) and [`mounted_on`].
pub fn bind_at(source: &str, mountpoint: &OwnedFd, recursive: bool) -> Result<OwnedFd> {
    use rustix::mount::{move_mount, open_tree, MoveMountFlags, OpenTreeFlags};
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    // ENOSYS (before 5.2) or EPERM (a seccomp profile that does not list them, where mount(2)
    // may still be allowed): the classic bind.
    let unavailable = |e: rustix::io::Errno| matches!(e, rustix::io::Errno::NOSYS | rustix::io::Errno::PERM);
    let moved = open_tree(rustix::fs::CWD, source, flags).and_then(|tree| {
        let moving = MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH;
        move_mount(&tree, "", mountpoint, "", moving).map(|()| tree)
    });
    match moved {
        Ok(tree) => Ok(tree),
        Err(e) if unavailable(e) => {
            let bind = libc::MS_BIND | if recursive { libc::MS_REC } else { 0 };
            mount(Some(source), &fd_path(mountpoint), None, bind, None)?;
            mounted_on(mountpoint)
        }
        Err(e) => Err(format!("bind mount of {source}: {e}")),
    }
}

/// The root of the mount just made on `mountpoint` (an O_PATH fd taken before the mount,
/// which still names the dir underneath): looked up by name in the mountpoint's parent, found
/// by the kernel's own path of it, never by resolving the spec's destination again. That walk
/// would now cross the new mount, whose symlinks (a host directory's, under an image's
/// `data -> /x/lnk/..`) could steer a read-only remount onto another mount and leave this one
/// writable. Checked to be a different mount than the mountpoint's.
fn mounted_on(mountpoint: &OwnedFd) -> Result<OwnedFd> {
    let path = std::fs::read_link(fd_path(mountpoint)).map_err(|e| format!("locating the mountpoint: {e}"))?;
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(format!("the mountpoint {} has no parent", path.display()));
    };
    let resolve = rustix::fs::ResolveFlags::NO_SYMLINKS | rustix::fs::ResolveFlags::NO_MAGICLINKS;
    let flags = OFlags::PATH | OFlags::CLOEXEC;
    let parent = crate::fsutil::openat2_retrying(rustix::fs::CWD, parent, flags | OFlags::DIRECTORY, resolve)
        .map_err(|e| format!("reopening {}: {e}", parent.display()))?;
    let mounted = rustix::fs::openat(&parent, name, flags | OFlags::NOFOLLOW, Mode::empty())
        .map_err(|e| format!("reopening {}: {e}", path.display()))?;
    if same_mount(mountpoint, &mounted) {
        return Err(format!("{} is not the mount just made", path.display()));
    }
    Ok(mounted)
}

/// `rro` / `rrw`: the mount `mounted` (its root) and every mount under it read-only, or not,
/// with mount_setattr(2) (Linux 5.12), as runc does; without it, refused rather than ignored.
fn set_read_only_recursively(mounted: &OwnedFd, read_only: bool) -> Result<()> {
    /// `struct mount_attr`, version 0.
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 1;
    let attr = if read_only {
        MountAttr { attr_set: MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 }
    } else {
        MountAttr { attr_set: 0, attr_clr: MOUNT_ATTR_RDONLY, propagation: 0, userns_fd: 0 }
    };
    // SAFETY: mount_setattr on an fd we own, an empty path, and a mount_attr of the size given.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mounted.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    match rc {
        0 => Ok(()),
        _ if errno().raw_os_error() == Some(libc::ENOSYS) => {
            Err(format!("{} needs mount_setattr (Linux 5.12 or later)", if read_only { "rro" } else { "rrw" }))
        }
        _ => Err(format!("mount_setattr: {}", errno())),
    }
}

/// Whether two fds are on one mount: by mount id where the kernel reports it (5.8+), else by
/// the file they name.
fn same_mount(a: &OwnedFd, b: &OwnedFd) -> bool {
    use rustix::fs::{statx, AtFlags, StatxFlags};
    let id = |fd: &OwnedFd| {
        statx(fd, "", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID | StatxFlags::INO).ok().map(|st| {
            (
                st.stx_mask & StatxFlags::MNT_ID.bits() != 0,
                st.stx_mnt_id,
                st.stx_dev_major,
                st.stx_dev_minor,
                st.stx_ino,
            )
        })
    };
    match (id(a), id(b)) {
        (Some((true, a_mnt, ..)), Some((true, b_mnt, ..))) => a_mnt == b_mnt,
        (Some((_, _, a_major, a_minor, a_ino)), Some((_, _, b_major, b_minor, b_ino))) => {
            (a_major, a_minor, a_ino) == (b_major, b_minor, b_ino)
        }
        _ => true,
    }
}

/// The mount target for an O_PATH fd: its magic link, which mount(2) follows to exactly
/// the inode we resolved.
pub fn fd_path(fd: &impl AsFd) -> String {
    format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())
}

/// Context the mounts need from the runtime.
pub struct MountContext<'a> {
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub in_user_ns: bool,
    /// Host paths of the container's own cgroup in each hierarchy: (name under
    /// /sys/fs/cgroup, host dir), for `cgroup` mounts.
    pub cgroup_dirs: &'a [(String, PathBuf)],
}

/// Set up propagation of `/`, bind the rootfs onto itself, and perform every spec mount.
pub fn mount_all(ctx: &MountContext, mounts: &[Mount], rootfs_propagation: Option<&str>) -> Result<OwnedFd> {
    let prop = match rootfs_propagation {
        Some(p) if !p.is_empty() => {
            propagation_flag(p).ok_or_else(|| format!("invalid linux.rootfsPropagation {p:?}"))?
        }
        _ => libc::MS_SLAVE | libc::MS_REC,
    };
    mount(None, "/", None, prop, None)?;
    let rootfs = ctx.rootfs.to_str().ok_or("rootfs path is not UTF-8")?;
    mount(Some(rootfs), rootfs, None, libc::MS_BIND | libc::MS_REC, None)?;
    let root = rustix::fs::open(ctx.rootfs, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| format!("opening rootfs {rootfs}: {e}"))?;
    mount_more(ctx, &root, mounts)?;
    Ok(root)
}

/// Perform spec mounts in `root` (after [`mount_all`]), in order.
pub fn mount_more(ctx: &MountContext, root: &OwnedFd, mounts: &[Mount]) -> Result<()> {
    for m in mounts {
        mount_one(ctx, root, m).map_err(|e| format!("mounting {}: {e}", m.destination().display()))?;
    }
    Ok(())
}

fn mount_one(ctx: &MountContext, root: &OwnedFd, m: &Mount) -> Result<()> {
    let options = parse_options(m.options().as_deref().unwrap_or_default());
    let fstype = m.typ().as_deref().unwrap_or("");
    let is_bind = options.bind || fstype == "bind";
    let source = m.source().as_ref().map(|s| if s.is_absolute() || !is_bind { s.clone() } else { ctx.bundle.join(s) });
    if fstype == "cgroup" || fstype == "cgroup2" {
        return mount_cgroups(ctx, root, m, &options);
    }
    let source_is_file =
        is_bind && source.as_ref().is_some_and(|s| s.metadata().map(|md| !md.is_dir()).unwrap_or(false));
    let target_fd = open_mount_target(root, m.destination(), source_is_file)?;
    let target = fd_path(&target_fd);
    let data = options.data.join(",");
    let data = (!data.is_empty()).then_some(data.as_str());
    let mut mounted: Option<OwnedFd> = None;
    if is_bind {
        let src = source.ok_or("bind mount without a source")?;
        let src = src.to_str().ok_or("source is not UTF-8")?;
        let bound = bind_at(src, &target_fd, options.recursive)?;
        let extra = options.flags & !(libc::MS_REMOUNT);
        if extra != 0 {
            remount(&fd_path(&bound), extra | libc::MS_BIND, ctx.in_user_ns)?;
        }
        mounted = Some(bound);
    } else {
        let src = source.as_ref().and_then(|s| s.to_str()).unwrap_or(fstype);
        match mount(Some(src), &target, Some(fstype), options.flags, data) {
            Ok(()) => {}
            // sysfs can't be mounted in a user namespace that doesn't own the network
            // namespace: bind the host's instead, read-only, as runc does.
            Err(_) if fstype == "sysfs" && ctx.in_user_ns => {
                let bound = bind_at("/sys", &target_fd, true)?;
                remount(
                    &fd_path(&bound),
                    libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    true,
                )?;
                mounted = Some(bound);
            }
            Err(e) => return Err(e),
        }
    }
    // What the options below act on: the mount made, or with `remount` the one there.
    let mounted = match mounted {
        Some(fd) => fd,
        None if options.flags & libc::MS_REMOUNT != 0 => target_fd,
        None if options.recursive_read_only.is_some() || !options.propagation.is_empty() => mounted_on(&target_fd)?,
        None => return Ok(()),
    };
    if let Some(read_only) = options.recursive_read_only {
        set_read_only_recursively(&mounted, read_only)?;
    }
    if !options.propagation.is_empty() {
        for p in &options.propagation {
            mount(None, &fd_path(&mounted), None, *p, None)?;
        }
    }
    Ok(())
}

/// Remount with `flags`. A bind keeps the restrictions its source has (nosuid, nodev,
/// noexec, ro): a container must not get more through a bind than the source allows — a
/// `:ro` volume of a `nosuid,noexec` host mount stays nosuid and noexec (the kernel insists
/// on that in a user namespace; elsewhere a plain remount would quietly drop them). Another
/// remount in a user namespace keeps what the kernel locked, when it refuses to clear it.
pub fn remount(target: &str, flags: libc::c_ulong, in_user_ns: bool) -> Result<()> {
    if flags & libc::MS_BIND != 0 {
        return mount(None, target, None, libc::MS_REMOUNT | flags | restrictions_of(target), None);
    }
    let first = mount(None, target, None, libc::MS_REMOUNT | flags, None);
    if first.is_ok() || !in_user_ns {
        return first;
    }
    mount(None, target, None, libc::MS_REMOUNT | flags | restrictions_of(target), None)
}

/// The nosuid, nodev, noexec and ro flags of the mount `target` is on, as mount flags.
fn restrictions_of(target: &str) -> libc::c_ulong {
    let path = cstr(target);
    // SAFETY: statvfs into a zeroed struct with a valid path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_RDONLY, libc::MS_RDONLY),
    ]
    .into_iter()
    .filter(|(st_flag, _)| st.f_flag & st_flag != 0)
    .fold(0, |keep, (_, ms)| keep | ms)
}

/// A `cgroup` mount: a tmpfs at the destination (v1) with the container's own cgroup dir of
/// each hierarchy bound in, or the container's cgroup2 dir bound at the destination (v2).
fn mount_cgroups(ctx: &MountContext, root: &OwnedFd, m: &Mount, options: &Options) -> Result<()> {
    let ro = options.read_only();
    let base_flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let target_fd = open_mount_target(root, m.destination(), false)?;
    let unified_only = ctx.cgroup_dirs.len() == 1 && ctx.cgroup_dirs[0].0.is_empty();
    if unified_only {
        let (_, dir) = &ctx.cgroup_dirs[0];
        let bound = bind_at(dir.to_str().unwrap_or_default(), &target_fd, true)?;
        if ro {
            remount(&fd_path(&bound), libc::MS_BIND | libc::MS_RDONLY | base_flags, ctx.in_user_ns)?;
        }
        return Ok(());
    }
    mount(Some("tmpfs"), &fd_path(&target_fd), Some("tmpfs"), base_flags, Some("mode=755"))?;
    // Our own tmpfs, worked in by fd: nothing of the image's is looked at again.
    let tmpfs = mounted_on(&target_fd)?;
    for (name, host_dir) in ctx.cgroup_dirs {
        match rustix::fs::mkdirat(&tmpfs, name.as_str(), Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(format!("creating {name} in the cgroup tmpfs: {e}")),
        }
        let mountpoint =
            rustix::fs::openat(&tmpfs, name.as_str(), OFlags::PATH | OFlags::CLOEXEC | OFlags::NOFOLLOW, Mode::empty())
                .map_err(|e| format!("opening {name} in the cgroup tmpfs: {e}"))?;
        let bound = bind_at(host_dir.to_str().unwrap_or_default(), &mountpoint, true)?;
        let flags = libc::MS_BIND | base_flags | if ro { libc::MS_RDONLY } else { 0 };
        remount(&fd_path(&bound), flags, ctx.in_user_ns)?;
    }
    // Comounted controllers are reachable under each name, as on the host (cpu -> cpu,cpuacct).
    for (name, _) in ctx.cgroup_dirs {
        for part in name.split(',').filter(|p| *p != name) {
            let _ = rustix::fs::symlinkat(name.as_str(), &tmpfs, part);
        }
    }
    if ro {
        remount(&fd_path(&tmpfs), libc::MS_RDONLY | base_flags, ctx.in_user_ns)?;
    }
    Ok(())
}

/// Make `rootfs` the root: pivot_root, then detach the old root.
pub fn pivot_root(rootfs: &Path) -> Result<()> {
    let old = rustix::fs::open("/", OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| format!("opening /: {e}"))?;
    let new = rustix::fs::open(rootfs, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| format!("opening rootfs: {e}"))?;
    rustix::process::fchdir(&new).map_err(|e| format!("chdir to rootfs: {e}"))?;
    rustix::process::pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    rustix::process::fchdir(&old).map_err(|e| format!("chdir to old root: {e}"))?;
    // Keep unmount events of the old root from propagating back to the host.
    mount(None, ".", None, libc::MS_SLAVE | libc::MS_REC, None)?;
    rustix::mount::unmount(".", rustix::mount::UnmountFlags::DETACH).map_err(|e| format!("detaching old root: {e}"))?;
    rustix::process::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    Ok(())
}

/// `--no-pivot`: move the rootfs over / and chroot (for ramfs roots, where pivot_root fails).
pub fn move_root(rootfs: &Path) -> Result<()> {
    rustix::process::chdir(rootfs).map_err(|e| format!("chdir to rootfs: {e}"))?;
    mount(Some(rootfs.to_str().unwrap_or(".")), "/", None, libc::MS_MOVE, None)?;
    rustix::process::chroot(".").map_err(|e| format!("chroot: {e}"))?;
    rustix::process::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    Ok(())
}

/// Filesystems that expose the kernel, and through /proc/PID/mem the container's own
/// process: a wasm guest must not reach them through its "/" preopen (see
/// [`detach_kernel_filesystems`]).
pub const KERNEL_FILESYSTEMS: [&str; 11] =
    ["proc", "sysfs", "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs", "bpf", "configfs", "pstore", "efivarfs"];

/// Whether a spec mount is of a kernel filesystem (by its type; a bind of one is found in
/// the mount table).
pub fn is_kernel_filesystem(m: &Mount) -> bool {
    KERNEL_FILESYSTEMS.contains(&m.typ().as_deref().unwrap_or(""))
}

/// For a wasm container (after pivot_root and sysctls, before the process drops its
/// capabilities): detach every kernel filesystem in its mount namespace — docker's /proc,
/// /sys, /sys/fs/cgroup. The wasm host process needs none of them, and a guest given the
/// container's root as "/" could otherwise open /proc/1/mem, the memory of the very process
/// running it, and write its way out of the wasm sandbox. What to detach: the kernel
/// filesystems the namespace's mount table lists (real mount points, whatever symlinks the
/// image has; read through `proc`, see [`open_proc`]) and those the spec mounted, deepest
/// first. No mount table, no wasm: it fails rather than guess.
pub fn detach_kernel_filesystems(spec_mounts: &[Mount], proc: BorrowedFd) -> Result<()> {
    let table = mount_points_at(proc)
        .map_err(|e| format!("reading the mount table to detach kernel filesystems for a wasm program: {e}"))?;
    let mut targets: Vec<String> = table
        .into_iter()
        .filter(|m| KERNEL_FILESYSTEMS.contains(&m.fstype.as_str()))
        .map(|m| m.target)
        .chain(
            spec_mounts
                .iter()
                .filter(|m| is_kernel_filesystem(m))
                .map(|m| m.destination().to_string_lossy().into_owned()),
        )
        .collect();
    targets.sort_by(|a, b| b.matches('/').count().cmp(&a.matches('/').count()).then_with(|| a.cmp(b)));
    targets.dedup();
    for t in targets {
        match rustix::mount::unmount(
            t.as_str(),
            rustix::mount::UnmountFlags::DETACH | rustix::mount::UnmountFlags::NOFOLLOW,
        ) {
            // Not mounted (any more): gone with a mount above it, or never there.
            Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(format!("detaching {t} for a wasm program: {e}")),
        }
    }
    // In a user namespace, mounts that came in with a recursive bind are locked to it: they
    // cannot be detached (umount says EINVAL, as for no mount at all), only covered, here with
    // an empty read-only tmpfs.
    let locked = mount_points_at(proc).map_err(|e| format!("reading the mount table again: {e}"))?;
    for m in locked.iter().rev().filter(|m| KERNEL_FILESYSTEMS.contains(&m.fstype.as_str())) {
        let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        mount(Some("tmpfs"), &m.target, Some("tmpfs"), flags, Some("size=4k,mode=555"))
            .map_err(|e| format!("covering {} ({}) for a wasm program: {e}", m.target, m.fstype))?;
    }
    Ok(())
}

/// For a wasm process exec'd into a container whose mount namespace it joined (a native
/// container keeps its /proc): the same, in a private copy of that namespace. The container's
/// own view is untouched (the copy is made a slave first, so nothing detached here propagates
/// back).
pub fn private_view_without_kernel_filesystems(spec_mounts: &[Mount], proc: BorrowedFd) -> Result<()> {
    // SAFETY: the exec'd process is single-threaded; only its own mount namespace changes.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
        .map_err(|e| format!("a private mount namespace for the wasm process: {e}"))?;
    mount(None, "/", None, libc::MS_REC | libc::MS_SLAVE, None)?;
    detach_kernel_filesystems(spec_mounts, proc)
}

/// The runtime's /proc, held open (O_PATH) by a process about to enter a container's mount
/// namespace, so that it can still read its own mount table there: a wasm container mounts
/// no /proc (and detaches any it gets), yet kernel filesystems can reach it in other ways —
/// a recursive bind of a host directory (`-v /:/host` brings /host/proc). Checked to be
/// procfs, so a directory that only looks like it cannot hide mounts.
pub fn open_proc() -> Result<OwnedFd> {
    let fd = rustix::fs::open("/proc", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| format!("opening /proc: {e}"))?;
    let fs = rustix::fs::fstatfs(&fd).map_err(|e| format!("/proc: {e}"))?;
    if fs.f_type != libc::PROC_SUPER_MAGIC {
        return Err("/proc is not a procfs mount".into());
    }
    Ok(fd)
}

/// Every mount of this process's mount namespace, relative to its root, as self/mountinfo
/// under `proc` (a procfs directory, see [`open_proc`]) lists them, parents before children.
pub fn mount_points_at(proc: BorrowedFd) -> std::io::Result<Vec<MountPoint>> {
    let fd = rustix::fs::openat(proc, "self/mountinfo", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    let mut info = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut info)?;
    Ok(parse_mountinfo(&info))
}

/// A mount of this process's mount namespace, as /proc/self/mountinfo lists it.
pub struct MountPoint {
    /// Where it is mounted, relative to this process's root (escapes undone).
    pub target: String,
    pub fstype: String,
}

/// Every mount /proc/self/mountinfo lists, in its order (parents before children); empty
/// without /proc.
pub fn mount_points() -> Vec<MountPoint> {
    parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

fn parse_mountinfo(info: &str) -> Vec<MountPoint> {
    info.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            Some(MountPoint {
                target: unescape_mountinfo(before.split_whitespace().nth(4)?),
                fstype: after.split_whitespace().next()?.to_string(),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Masked paths (after pivot): files get /dev/null bound over them, directories an empty
/// read-only tmpfs. Missing paths are skipped, and so is a symlink to nothing, as runc does
/// (mount follows a symlink, here inside the container's root: what it names is masked).
pub fn mask_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        match std::fs::metadata(p) {
            Ok(md) if md.is_dir() => mount(Some("tmpfs"), p, Some("tmpfs"), libc::MS_RDONLY, None)?,
            Ok(_) => mount(Some("/dev/null"), p, None, libc::MS_BIND, None)?,
            Err(_) => continue,
        }
    }
    Ok(())
}

/// Read-only paths (after pivot): bind each onto itself and remount read-only. Missing ones
/// (a symlink to nothing included) are skipped, as with masked paths.
pub fn readonly_paths(paths: &[String], in_user_ns: bool) -> Result<()> {
    for p in paths {
        if std::fs::metadata(p).is_err() {
            continue;
        }
        mount(Some(p), p, None, libc::MS_BIND | libc::MS_REC, None)?;
        remount(
            p,
            libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            in_user_ns,
        )?;
    }
    Ok(())
}

/// `root.readonly`: remount / read-only (after pivot).
pub fn readonly_root(in_user_ns: bool) -> Result<()> {
    remount("/", libc::MS_BIND | libc::MS_RDONLY, in_user_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo("/proc"), "/proc");
        assert_eq!(unescape_mountinfo("/mnt/a\\040b\\011c\\134d"), "/mnt/a b\tc\\d");
        assert_eq!(unescape_mountinfo("/x\\04"), "/x\\04", "a cut-off escape stays as it is");
    }

    #[test]
    fn options_parse_like_mount8() {
        let o = parse_options(&["rbind".into(), "ro".into(), "nosuid".into(), "rprivate".into(), "mode=755".into()]);
        assert!(o.bind && o.recursive);
        assert_eq!(o.flags, libc::MS_RDONLY | libc::MS_NOSUID);
        assert_eq!(o.propagation, vec![libc::MS_PRIVATE | libc::MS_REC]);
        assert_eq!(o.data, vec!["mode=755".to_string()]);
        let o = parse_options(&["ro".into(), "rw".into()]);
        assert_eq!(o.flags & libc::MS_RDONLY, 0);
        assert!(!o.read_only());
        // rro / rrw act after the mount's own ro / rw (runc's order): they decide.
        let read_only =
            |opts: &[&str]| parse_options(&opts.iter().map(|o| o.to_string()).collect::<Vec<_>>()).read_only();
        assert!(read_only(&["rbind", "rro"]));
        assert!(read_only(&["rro", "rw"]));
        assert!(!read_only(&["ro", "rrw"]));
        assert!(read_only(&["rrw", "rro"]));
    }

    #[test]
    fn open_in_root_never_leaves_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root_dir = t.path().join("root");
        std::fs::create_dir_all(root_dir.join("etc")).unwrap();
        std::os::unix::fs::symlink("/", root_dir.join("escape")).unwrap();
        std::os::unix::fs::symlink("../../..", root_dir.join("etc/up")).unwrap();
        let root = rustix::fs::open(&root_dir, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        // Through an absolute symlink: lands inside the root.
        open_in_root(&root, Path::new("/escape/strata-mnt-test/x"), false).unwrap();
        assert!(root_dir.join("strata-mnt-test/x").is_dir());
        assert!(!Path::new("/strata-mnt-test").exists());
        open_in_root(&root, Path::new("/etc/up/tmp/f"), true).unwrap();
        assert!(root_dir.join("tmp/f").is_file());
    }
}
