//! `cp`'s engine: copies a file or a tree from a path under one root to a path under another,
//! with docker's rules for what lands where (a file into a directory keeps its name; a
//! directory onto a missing path becomes it; `SRC/.` copies a directory's contents).
//!
//! One side is a container's root (`/proc/PID/root` of a running one, or its assembled rootfs),
//! which its processes may change while we copy. So nothing here walks a path string there:
//! the two starting points are resolved with `openat2(RESOLVE_IN_ROOT)` (symlinks and `..`
//! stay inside the root), and from there every step is one name in a directory we hold open,
//! opened with `O_NOFOLLOW`: a directory swapped for a symlink mid-copy is refused, never
//! followed out of the container (docker's CVE-2018-15664 was such a race).

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("Could not find the file {0}")]
    NoSource(String),
    #[error("destination directory {0} does not exist")]
    NoDestinationDir(String),
    #[error("cannot copy a directory to a file: {0}")]
    DirectoryToFile(String),
    #[error("cannot copy to {0}: {1} is a symbolic link or a file, not a directory")]
    LinkInTheWay(String, String),
    #[error("cannot overwrite directory {0} with a file")]
    DirectoryInTheWay(String),
    #[error("cannot copy a directory into itself: {0}")]
    IntoItself(String),
    #[error("{0}: more than 256 directories deep")]
    TooDeep(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

fn io(context: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> CopyError {
    let context = context.into();
    move |e| CopyError::Io { context, source: e.into() }
}

/// A path under a root directory (the host's `/`, or a container's root).
pub struct Place<'a> {
    pub root: &'a OwnedFd,
    /// As the user wrote it (its trailing `/` or `/.` matter); taken from the root.
    pub path: &'a str,
}

/// How to copy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `-L`: a source that is a symlink is copied as what it points to.
    pub follow_link: bool,
    /// `-a`: owners (and set-id bits) are kept; otherwise what is made belongs to whoever
    /// copies, as docker's, without set-id bits.
    pub archive: bool,
}

/// How deep a copied tree may go: a container can make one deeper than any real use, to
/// exhaust our file descriptors or stack.
const MAX_DEPTH: usize = 256;

/// docker's `cp` from `src` to `dst`.
pub fn copy(src: Place, dst: Place, opts: Options) -> Result<(), CopyError> {
    let contents_only = src.path.ends_with("/.");
    let source = resolve(src.root, src.path, !opts.follow_link).map_err(|e| match e {
        rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR => CopyError::NoSource(src.path.to_string()),
        e => CopyError::Io { context: format!("opening {}", src.path), source: e.into() },
    })?;
    let source_stat = rustix::fs::fstat(&source).map_err(io(format!("reading {}", src.path)))?;
    let source_is_dir = FileType::from_raw_mode(source_stat.st_mode) == FileType::Directory;
    let source_name = base_name(src.path);
    let mut walk = Walk::new(opts);

    match resolve(dst.root, dst.path, false) {
        Ok(target) => {
            let is_dir = rustix::fs::fstat(&target).map(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory);
            let is_dir = is_dir.map_err(io(format!("reading {}", dst.path)))?;
            match (source_is_dir, is_dir) {
                (true, false) => Err(CopyError::DirectoryToFile(dst.path.to_string())),
                (true, true) if contents_only => {
                    walk.contents(&source, &source_stat, &open_dir(&target, dst.path)?, dst.path)
                }
                // Into the directory, under the source's own name (`/` has none: its contents).
                (_, true) => match &source_name {
                    Some(name) => walk.entry(&source, &open_dir(&target, dst.path)?, name, dst.path),
                    None => walk.contents(&source, &source_stat, &open_dir(&target, dst.path)?, dst.path),
                },
                // A file over a file: the destination's name in its directory.
                (false, false) => {
                    let (parent, name) = parent_of(dst.root, dst.path)?;
                    walk.entry(&source, &parent, &name, dst.path)
                }
            }
        }
        Err(rustix::io::Errno::NOENT) => {
            if dst.path.ends_with('/') && !source_is_dir {
                return Err(CopyError::NoDestinationDir(dst.path.to_string()));
            }
            let (parent, name) = parent_of(dst.root, dst.path)?;
            walk.entry(&source, &parent, &name, dst.path)
        }
        Err(e) => Err(CopyError::Io { context: format!("opening {}", dst.path), source: e.into() }),
    }
}

/// `cp CONTAINER:SRC -`: SRC as a tar archive into `out`, under its own name (`SRC/.` and `/`
/// as their contents), read with `pack`'s care. A symlink is packed as the link.
pub fn pack_out(src: Place, out: impl std::io::Write) -> Result<(), CopyError> {
    let packed = |e: crate::snapshot::pack::PackError| CopyError::Io {
        context: format!("packing {}", e.path),
        source: e.source,
    };
    let missing = |e: rustix::io::Errno| match e {
        rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR => CopyError::NoSource(src.path.to_string()),
        e => CopyError::Io { context: format!("opening {}", src.path), source: e.into() },
    };
    let name = base_name(src.path).filter(|_| !src.path.ends_with("/."));
    let Some(name) = name.and_then(|n| n.into_string().ok()) else {
        let dir = resolve(src.root, src.path, false).map_err(missing)?;
        let dir = rustix::fs::openat(&dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(missing)?;
        return crate::snapshot::pack::tree(&dir, None, out).map(drop).map_err(packed);
    };
    // The name must be there (as the link itself if a symlink), in the directory it is in.
    resolve(src.root, src.path, true).map_err(missing)?;
    let (parent, _) = parent_of(src.root, src.path).map_err(|_| CopyError::NoSource(src.path.to_string()))?;
    crate::snapshot::pack::tree(&parent, Some(&name), out).map(drop).map_err(packed)
}

/// Whether `path` is a directory under its root (symlinks followed inside it).
pub fn is_directory(place: Place) -> bool {
    resolve(place.root, place.path, false)
        .and_then(|fd| rustix::fs::fstat(&fd))
        .is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory)
}

/// `path` under `root` as an `O_PATH` fd; with `no_follow`, a final symlink is the link itself.
fn resolve(root: &OwnedFd, path: &str, no_follow: bool) -> rustix::io::Result<OwnedFd> {
    let mut flags = OFlags::PATH | OFlags::CLOEXEC;
    if no_follow && !path.ends_with('/') && !path.ends_with("/.") {
        flags |= OFlags::NOFOLLOW;
    }
    crate::fsutil::open_in_root(root, path.trim_start_matches('/'), flags)
}

/// The last name of `path` (None for `/`, `.` or `/.`).
fn base_name(path: &str) -> Option<OsString> {
    let trimmed = path.trim_end_matches("/.").trim_end_matches('/');
    let name = trimmed.rsplit('/').next().unwrap_or(trimmed);
    (!name.is_empty() && name != "." && name != "..").then(|| OsString::from(name))
}

/// The directory `path` is in, opened, and the name `path` has there.
fn parent_of(root: &OwnedFd, path: &str) -> Result<(OwnedFd, OsString), CopyError> {
    let trimmed = path.trim_end_matches('/');
    let name = base_name(trimmed).ok_or_else(|| CopyError::NoDestinationDir(path.to_string()))?;
    let parent = match trimmed.rfind('/') {
        Some(i) => &trimmed[..i],
        None => "",
    };
    let parent = if parent.is_empty() { "/" } else { parent };
    let fd = resolve(root, parent, false).map_err(|e| match e {
        rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR => CopyError::NoDestinationDir(parent.to_string()),
        e => CopyError::Io { context: format!("opening {parent}"), source: e.into() },
    })?;
    Ok((open_dir(&fd, parent)?, name))
}

/// A readable directory fd from an `O_PATH` one.
fn open_dir(fd: &OwnedFd, shown: &str) -> Result<OwnedFd, CopyError> {
    rustix::fs::openat(fd, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(io(format!("opening directory {shown}")))
}

/// An `O_PATH` fd of a regular file opened for reading (through its /proc/self/fd link: the
/// same file, no lookup by name). Non-blocking: a file of the kernel's (a running container's /proc/kmsg) may never end.
fn reopen(fd: &OwnedFd) -> rustix::io::Result<OwnedFd> {
    let link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd));
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    rustix::fs::open(link.as_str(), flags, Mode::empty())
}

/// One copy under way: how, and the source directories above the current one (device and
/// inode), so that a copy into its own source (through a bind, say) is refused rather than
/// run for ever.
struct Walk {
    opts: Options,
    ancestors: Vec<(u64, u64)>,
    /// The destination directories written into so far: a source directory among them is
    /// the copy reading its own output.
    written: std::collections::HashSet<(u64, u64)>,
    /// The copy made of each source file with more than one link, by the source's inode:
    /// its other names are linked to it, as tar keeps them (a tree of many names for one big
    /// file would otherwise take its size once per name).
    linked: std::collections::HashMap<(u64, u64), OwnedFd>,
    max_linked: usize,
}

/// How many multiply-linked files a copy remembers (an fd each); beyond, names are copied.
/// At most a quarter of the open files we may have (often 1,024): the walk needs its own.
fn max_linked() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(u64::MAX);
    (soft / 4).min(4096) as usize
}

/// Where one entry goes: `name` in the directory `into` (`shown` in messages).
struct Dest<'a> {
    into: &'a OwnedFd,
    name: &'a OsStr,
    shown: &'a str,
}

impl Walk {
    fn new(opts: Options) -> Walk {
        Walk {
            opts,
            ancestors: Vec::new(),
            written: Default::default(),
            linked: Default::default(),
            max_linked: max_linked(),
        }
    }

    /// Copies what `source` (an `O_PATH` fd) is to `name` in directory `into`.
    fn entry(&mut self, source: &OwnedFd, into: &OwnedFd, name: &OsStr, shown: &str) -> Result<(), CopyError> {
        let stat = rustix::fs::fstat(source).map_err(io(format!("reading {shown}")))?;
        let to = Dest { into, name, shown };
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => {
                let dir = make_dir(&to, &stat)?;
                // A running container's /proc, /sys, cgroups...: the kernel's, not its files
                // (some never end, some would read the host's with our rights): left empty.
                if !crate::fsutil::is_kernel_fs(source) {
                    self.contents(source, &stat, &dir, shown)?;
                }
                self.finish(&dir, None, &stat, shown)
            }
            FileType::RegularFile => {
                let inode = (stat.st_dev, stat.st_ino);
                if let Some(first) = self.linked.get(&inode).filter(|_| stat.st_nlink > 1) {
                    let temp = temp_name(to.name);
                    match rustix::fs::linkat(first, "", to.into, &temp, AtFlags::EMPTY_PATH) {
                        Ok(()) => return self.put_in_place(&temp, to, Ok(())),
                        // Another filesystem (a volume): a copy of its own.
                        Err(rustix::io::Errno::XDEV) => {}
                        Err(e) => return Err(CopyError::Io { context: format!("linking {shown}"), source: e.into() }),
                    }
                }
                let from = reopen(source).map_err(io(format!("opening {shown}")))?;
                let made = self.file(from, to, &stat)?;
                if stat.st_nlink > 1 && self.linked.len() < self.max_linked {
                    self.linked.insert(inode, made);
                }
                Ok(())
            }
            FileType::Symlink => {
                let target =
                    rustix::fs::readlinkat(source, "", Vec::new()).map_err(io(format!("reading link {shown}")))?;
                self.link(target.as_bytes(), to, &stat)
            }
            other => {
                tracing::warn!("cp: {shown} is a {other:?}, not copied");
                Ok(())
            }
        }
    }

    /// Copies every entry of the directory `source` (whose stat is `stat`) into `into`.
    fn contents(
        &mut self,
        source: &OwnedFd,
        stat: &rustix::fs::Stat,
        into: &OwnedFd,
        shown: &str,
    ) -> Result<(), CopyError> {
        let here = (stat.st_dev, stat.st_ino);
        let target = rustix::fs::fstat(into).map_err(io(format!("reading {shown}")))?;
        let target = (target.st_dev, target.st_ino);
        if here == target || self.ancestors.contains(&target) || self.written.contains(&here) {
            return Err(CopyError::IntoItself(shown.to_string()));
        }
        self.written.insert(target);
        if self.ancestors.len() >= MAX_DEPTH {
            return Err(CopyError::TooDeep(shown.to_string()));
        }
        self.ancestors.push(here);
        let result = self.each_child(source, into, shown);
        self.ancestors.pop();
        result
    }

    fn each_child(&mut self, source: &OwnedFd, into: &OwnedFd, shown: &str) -> Result<(), CopyError> {
        let dir = open_dir(source, shown)?;
        let entries = rustix::fs::Dir::read_from(&dir).map_err(io(format!("reading directory {shown}")))?;
        for entry in entries {
            let entry = entry.map_err(io(format!("reading directory {shown}")))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes()).to_os_string();
            if name == "." || name == ".." {
                continue;
            }
            let child_shown = format!("{}/{}", shown.trim_end_matches('/'), name.to_string_lossy());
            // One name, not followed: whatever it is now is what is copied.
            let child =
                rustix::fs::openat(&dir, &name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty());
            match child {
                Ok(child) => self.entry(&child, into, &name, &child_shown)?,
                // Gone meanwhile (a running container's file).
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => return Err(CopyError::Io { context: format!("opening {child_shown}"), source: e.into() }),
            }
        }
        Ok(())
    }

    /// A new file under a temporary name, renamed over whatever has `to`'s name: nothing that
    /// is there (a link, a FIFO, a device node a container made) is ever opened or written.
    /// Returns the new file, open.
    fn file(&self, from: OwnedFd, to: Dest, stat: &rustix::fs::Stat) -> Result<OwnedFd, CopyError> {
        let temp = temp_name(to.name);
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let made = rustix::fs::openat(to.into, &temp, flags, Mode::from_raw_mode(0o600))
            .map_err(io(format!("creating {}", to.shown)))?;
        let kept =
            made.try_clone().map_err(|e| CopyError::Io { context: format!("creating {}", to.shown), source: e })?;
        let written = (|| {
            // As much as the file held when looked at: one that a running container keeps
            // growing (or a kernel file of no size) cannot fill the disk.
            let mut reader = std::io::Read::take(std::fs::File::from(from), stat.st_size as u64);
            let mut writer = std::fs::File::from(made);
            std::io::copy(&mut reader, &mut writer)
                .map_err(|e| CopyError::Io { context: format!("copying {}", to.shown), source: e })?;
            self.finish(&writer.into(), None, stat, to.shown)
        })();
        self.put_in_place(&temp, to, written)?;
        Ok(kept)
    }

    /// A new link under a temporary name, renamed over whatever has `to`'s name.
    fn link(&self, target: &[u8], to: Dest, stat: &rustix::fs::Stat) -> Result<(), CopyError> {
        let temp = temp_name(to.name);
        rustix::fs::symlinkat(OsStr::from_bytes(target), to.into, &temp)
            .map_err(io(format!("creating link {}", to.shown)))?;
        let made = self.finish(to.into, Some(&temp), stat, to.shown);
        self.put_in_place(&temp, to, made)
    }

    /// Renames `temp` to `to`'s name once `made` it well, or removes it.
    fn put_in_place(&self, temp: &OsStr, to: Dest, made: Result<(), CopyError>) -> Result<(), CopyError> {
        let placed = made.and_then(|()| {
            rustix::fs::renameat(to.into, temp, to.into, to.name).map_err(|e| match e {
                rustix::io::Errno::ISDIR => CopyError::DirectoryInTheWay(to.shown.to_string()),
                e => CopyError::Io { context: format!("creating {}", to.shown), source: e.into() },
            })
        });
        if placed.is_err() {
            let _ = rustix::fs::unlinkat(to.into, temp, AtFlags::empty());
        }
        placed
    }

    /// Mode (after the owner: chown clears set-id bits), owner with `-a`, and times, on `fd`
    /// (or on the link `link` in the directory `fd`, which has no mode of its own). Without
    /// `-a` the set-id bits go with the owner: a file a container made setuid does not become
    /// a setuid file of whoever copies it.
    fn finish(
        &self,
        fd: &OwnedFd,
        link: Option<&OsStr>,
        stat: &rustix::fs::Stat,
        shown: &str,
    ) -> Result<(), CopyError> {
        let times = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec { tv_sec: stat.st_atime as _, tv_nsec: stat.st_atime_nsec as _ },
            last_modification: rustix::fs::Timespec { tv_sec: stat.st_mtime as _, tv_nsec: stat.st_mtime_nsec as _ },
        };
        let owner = self.opts.archive.then(|| {
            (Some(rustix::process::Uid::from_raw(stat.st_uid)), Some(rustix::process::Gid::from_raw(stat.st_gid)))
        });
        let mode_bits = if self.opts.archive { 0o7777 } else { 0o1777 };
        let result = match link {
            Some(name) => (|| {
                if let Some((uid, gid)) = owner {
                    rustix::fs::chownat(fd, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)?;
                }
                rustix::fs::utimensat(fd, name, &times, AtFlags::SYMLINK_NOFOLLOW)
            })(),
            None => (|| {
                if let Some((uid, gid)) = owner {
                    rustix::fs::fchown(fd, uid, gid)?;
                }
                rustix::fs::fchmod(fd, Mode::from_raw_mode(stat.st_mode & mode_bits))?;
                rustix::fs::futimens(fd, &times)
            })(),
        };
        result.map_err(io(format!("setting the mode, owner and times of {shown}")))
    }
}

/// `.NAME.strata-cp-PID-N`: beside the target, unique to this copy.
fn temp_name(name: &OsStr) -> OsString {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut temp = OsString::from(".");
    temp.push(name);
    temp.push(format!(".strata-cp-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    temp
}

/// `to`'s name as a directory (an existing one is used, never a link), opened.
fn make_dir(to: &Dest, stat: &rustix::fs::Stat) -> Result<OwnedFd, CopyError> {
    let mode = Mode::from_raw_mode(stat.st_mode & 0o777) | Mode::RWXU;
    match rustix::fs::mkdirat(to.into, to.name, mode) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(CopyError::Io { context: format!("creating directory {}", to.shown), source: e.into() }),
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(to.into, to.name, flags, Mode::empty()).map_err(|e| match e {
        rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => {
            CopyError::LinkInTheWay(to.shown.to_string(), to.name.to_string_lossy().into_owned())
        }
        e => CopyError::Io { context: format!("opening directory {}", to.shown), source: e.into() },
    })
}

/// docker's volume copy-up: the contents of the directory at `src` into the directory `into`
/// (an `O_PATH` fd), owners and modes kept, and the directory's own owner and mode onto
/// `into`. Nothing at `src`, or not a directory: nothing copied (false).
pub fn populate(src: Place, into: &OwnedFd) -> Result<bool, CopyError> {
    let source = match resolve(src.root, src.path, false) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(false),
        Err(e) => return Err(CopyError::Io { context: format!("opening {}", src.path), source: e.into() }),
    };
    let stat = rustix::fs::fstat(&source).map_err(io(format!("reading {}", src.path)))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
        return Ok(false);
    }
    let dir = open_dir(into, src.path)?;
    let mut walk = Walk::new(Options { follow_link: false, archive: true });
    walk.contents(&source, &stat, &dir, src.path)?;
    walk.finish(&dir, None, &stat, src.path)?;
    Ok(true)
}

/// The host's `/`, as a root for [`Place`].
pub fn host_root() -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open("/", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

/// A directory as a root for [`Place`] (a container's `/proc/PID/root`, its rootfs).
pub fn open_root(path: &std::path::Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

/// Runs `f` on the root of `record`'s container as its processes see it: a running (or
/// paused) container's `/proc/PID/root`, mounts and all; a stopped one's rootfs assembled
/// with its volumes and binds on top, in a mount namespace of this process's own (so nothing
/// is left mounted, whatever happens), under the container's lock (no run starts meanwhile).
/// Unsharing the mount namespace needs this process single-threaded (the CLI is).
pub fn with_root<T>(
    c: &super::Containers,
    record: &super::record::ContainerRecord,
    f: impl FnOnce(&OwnedFd) -> Result<T, super::ContainerError>,
) -> Result<T, super::ContainerError> {
    use super::{io_err, status::observe};
    let running_root = |obs: &super::status::Observed| -> Result<Option<OwnedFd>, super::ContainerError> {
        let Some(init) = obs.init.filter(|_| obs.is_running()) else { return Ok(None) };
        let root = open_root(std::path::Path::new(&format!("/proc/{}/root", init.pid)))
            .map_err(io_err("opening the container's root"))?;
        // The pid was still the container's init when its root was opened.
        if !init.alive() {
            return Err(super::ContainerError::NotRunning(record.id.clone()));
        }
        Ok(Some(root))
    };
    let gone = || super::ContainerError::NoSuchContainer(record.id.clone());
    let obs = observe(c, record.clone())?.ok_or_else(gone)?;
    if let Some(root) = running_root(&obs)? {
        return f(&root);
    }
    let lock = c.lock(&record.id)?;
    // Looked at again under the lock: a start (or a restart) may have begun meanwhile, and a
    // second overlay on its upper dir would wreck the running one.
    let obs = observe(c, c.load(&record.id)?)?.ok_or_else(gone)?;
    if obs.is_running() || obs.record.monitor.is_some_and(|m| m.alive()) {
        drop(lock);
        let obs = observe(c, c.load(&record.id)?)?.ok_or_else(gone)?;
        return match running_root(&obs)? {
            Some(root) => f(&root),
            None => {
                Err(super::ContainerError::Copy(format!("container {} is starting or stopping; try again", record.id)))
            }
        };
    }
    let record = &obs.record;
    // SAFETY: only this process's view of mounts changes, which nothing else here relies on.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
        .map_err(|e| io_err("entering a mount namespace of our own")(e.into()))?;
    crate::sandbox::mounts::mount(None, "/", None, libc::MS_REC | libc::MS_PRIVATE, None)
        .map_err(|e| super::ContainerError::Copy(format!("making our mounts private: {e}")))?;
    let paths = c.paths(&record.id);
    let merged = super::rootfs::mount(&paths, &record.layers, c.driver(), record.auto_remove)?;
    let result = (|| {
        use crate::sandbox::mounts::{bind_at, fd_path, mount, open_in_root, remount};
        let mounting = |what: &str, e: String| super::ContainerError::Copy(format!("mounting {what}: {e}"));
        // Binds and volumes as the container would have them, read-only ones read-only,
        // parents before children. Their mountpoints first, made where the container's
        // first start would make them (a read-only root takes none later).
        let mut volumes = record.options.volumes.clone();
        volumes.sort_by_key(|v| std::path::Path::new(&v.destination).components().count());
        let root = open_root(&merged).map_err(io_err("opening the container's root"))?;
        for v in &volumes {
            open_in_root(&root, std::path::Path::new(&v.destination), v.source.is_file())
                .map_err(|e| mounting(&v.destination, e))?;
        }
        if record.options.read_only {
            // `--read-only`: the root is a bind of itself, made read-only.
            let path = merged.to_string_lossy();
            mount(Some(&path), &path, None, libc::MS_BIND, None).map_err(|e| mounting("/", e))?;
            remount(&path, libc::MS_BIND | libc::MS_RDONLY, false).map_err(|e| mounting("/", e))?;
        }
        // Opened again: the top mount at `merged` now.
        let root = open_root(&merged).map_err(io_err("opening the container's root"))?;
        for v in &volumes {
            let target = resolve(&root, &v.destination, false).map_err(|e| mounting(&v.destination, e.to_string()))?;
            let source = v.source.to_string_lossy();
            // The new mount by fd, never looked up again through itself (see `bind_at`).
            let bound = bind_at(&source, &target, true).map_err(|e| mounting(&v.destination, e))?;
            if v.read_only {
                remount(&fd_path(&bound), libc::MS_BIND | libc::MS_RDONLY | libc::MS_REC, false)
                    .map_err(|e| mounting(&v.destination, e))?;
            }
        }
        f(&root)
    })();
    // Our namespace goes with us; the mountpoint's directories are on the host (a lazy
    // unmount of the overlay takes the binds on it too).
    super::rootfs::unmount(&paths)?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;

    /// Copies between two temp roots, both seen as `/`.
    fn cp(src_root: &Path, src: &str, dst_root: &Path, dst: &str) -> Result<(), CopyError> {
        let (s, d) = (open_root(src_root).unwrap(), open_root(dst_root).unwrap());
        copy(Place { root: &s, path: src }, Place { root: &d, path: dst }, Options::default())
    }

    fn tree() -> (tempfile::TempDir, tempfile::TempDir) {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::create_dir_all(a.path().join("dir/sub")).unwrap();
        fs::write(a.path().join("dir/f"), "file f").unwrap();
        fs::write(a.path().join("dir/sub/g"), "file g").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", a.path().join("dir/link")).unwrap();
        fs::write(a.path().join("top"), "top").unwrap();
        fs::set_permissions(a.path().join("top"), std::os::unix::fs::PermissionsExt::from_mode(0o751)).unwrap();
        (a, b)
    }

    #[test]
    fn files_follow_dockers_rules() {
        let (a, b) = tree();
        // Onto a missing name: that name. Into a directory: its own name. Over a file: replaced.
        cp(a.path(), "/top", b.path(), "/copy").unwrap();
        assert_eq!(fs::read_to_string(b.path().join("copy")).unwrap(), "top");
        let mode = fs::metadata(b.path().join("copy")).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o751);
        fs::create_dir(b.path().join("d")).unwrap();
        cp(a.path(), "top", b.path(), "/d").unwrap();
        assert_eq!(fs::read_to_string(b.path().join("d/top")).unwrap(), "top");
        cp(a.path(), "/dir/f", b.path(), "/copy").unwrap();
        assert_eq!(fs::read_to_string(b.path().join("copy")).unwrap(), "file f");
        // A missing directory (trailing slash) is an error; so is a missing parent.
        assert!(matches!(cp(a.path(), "/top", b.path(), "/nodir/"), Err(CopyError::NoDestinationDir(_))));
        assert!(matches!(cp(a.path(), "/top", b.path(), "/nodir/x"), Err(CopyError::NoDestinationDir(_))));
        assert!(matches!(cp(a.path(), "/nope", b.path(), "/x"), Err(CopyError::NoSource(_))));
    }

    #[test]
    fn directories_follow_dockers_rules() {
        let (a, b) = tree();
        cp(a.path(), "/dir", b.path(), "/new").unwrap();
        assert_eq!(fs::read_to_string(b.path().join("new/sub/g")).unwrap(), "file g");
        assert_eq!(fs::read_link(b.path().join("new/link")).unwrap(), Path::new("/etc/passwd"), "a link as a link");
        cp(a.path(), "/dir", b.path(), "/new").unwrap();
        assert!(b.path().join("new/dir/sub/g").exists(), "into an existing directory, under its name");
        fs::create_dir(b.path().join("flat")).unwrap();
        cp(a.path(), "/dir/.", b.path(), "/flat").unwrap();
        assert!(b.path().join("flat/sub/g").exists() && !b.path().join("flat/dir").exists(), "SRC/. is its contents");
        assert!(matches!(cp(a.path(), "/dir", b.path(), "/flat/f"), Err(CopyError::DirectoryToFile(_))));
    }

    #[test]
    fn nothing_leads_outside_either_root() {
        let (a, b) = tree();
        // A source link is copied as a link, not read through (and -L reads it inside the root).
        cp(a.path(), "/dir/link", b.path(), "/l").unwrap();
        assert_eq!(fs::read_link(b.path().join("l")).unwrap(), Path::new("/etc/passwd"));
        let (s, d) = (open_root(a.path()).unwrap(), open_root(b.path()).unwrap());
        let followed = copy(
            Place { root: &s, path: "/dir/link" },
            Place { root: &d, path: "/followed" },
            Options { follow_link: true, archive: false },
        );
        assert!(matches!(followed, Err(CopyError::NoSource(_))), "/etc/passwd of the source root: not there");
        // A destination that is a link to outside: the copy lands inside the root.
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), b.path().join("escape")).unwrap();
        let result = cp(a.path(), "/top", b.path(), "/escape/top");
        assert!(result.is_err(), "{result:?}");
        assert!(!outside.path().join("top").exists(), "nothing written outside the root");
        // A file in the destination that is a link is replaced, not written through.
        let victim = outside.path().join("victim");
        fs::write(&victim, "untouched").unwrap();
        std::os::unix::fs::symlink(&victim, b.path().join("over")).unwrap();
        cp(a.path(), "/top", b.path(), "/over").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
    }

    #[test]
    fn what_is_at_the_destination_is_replaced_never_written_through() {
        let (a, b) = tree();
        // A FIFO by the target's name would block a writer for ever; a device node would take
        // the bytes to a host device. Either is replaced.
        rustix::fs::mknodat(
            rustix::fs::CWD,
            b.path().join("fifo").as_path(),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        cp(a.path(), "/top", b.path(), "/fifo").unwrap();
        assert_eq!(fs::read_to_string(b.path().join("fifo")).unwrap(), "top");
        // A directory by that name is not replaced by a file.
        fs::create_dir_all(b.path().join("adir/top")).unwrap();
        assert!(matches!(cp(a.path(), "/top", b.path(), "/adir"), Err(CopyError::DirectoryInTheWay(_))));
        let left: Vec<_> = fs::read_dir(b.path().join("adir")).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, ["top"], "no temporary file left");
    }

    #[test]
    fn a_directory_is_not_copied_into_itself_and_set_id_bits_need_archive() {
        let (a, _b) = tree();
        let err = cp(a.path(), "/dir", a.path(), "/dir/sub").unwrap_err();
        assert!(matches!(err, CopyError::IntoItself(_)), "{err}");
        let (s, d) = (open_root(a.path()).unwrap(), open_root(_b.path()).unwrap());
        fs::set_permissions(a.path().join("top"), std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
        cp(a.path(), "/top", _b.path(), "/plain").unwrap();
        let archive = Options { follow_link: false, archive: true };
        copy(Place { root: &s, path: "/top" }, Place { root: &d, path: "/kept" }, archive).unwrap();
        let mode = |p: &str| {
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(_b.path().join(p)).unwrap().permissions()) & 0o7777
        };
        assert_eq!((mode("plain"), mode("kept")), (0o755, 0o4755));
    }
}
