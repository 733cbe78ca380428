//! Writing snapshot directories out as tar. `layer` packs one directory of changes (a
//! container's overlay upper dir) as an OCI layer: overlayfs' whiteouts become `.wh.` files
//! and an opaque directory gets the `.wh..wh..opq` marker (`commit`). `merged` packs what a
//! stack of such directories shows, as overlayfs would (`export`).
//!
//! The directories may be a running container's, which can change them under us: every step
//! is an `openat` with `O_NOFOLLOW` from an open directory; a file is first opened `O_PATH`
//! and checked to be the regular file that was looked at before it is opened for reading
//! (a device node renamed over it is never opened); a file that shrinks while read is padded
//! to the size its header gave, and an entry gone meanwhile is left out. Depth, path length
//! and (for a layer) total size are bounded as unpacking bounds them, and an archive that
//! fails is left without its end, so it never passes for a whole one.

use super::lookup::{self, DIR_FLAGS};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Reopening an `O_PATH` handle through /proc (a magic link: no `O_NOFOLLOW`).
const REOPEN_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::NONBLOCK).union(OFlags::NOCTTY).union(OFlags::CLOEXEC);
/// overlayfs features that move a file's data or a directory's contents elsewhere: strata
/// mounts without them, and reading a directory of changes made with them would lose data.
const REDIRECT_XATTR: &str = "trusted.overlay.redirect";
const METACOPY_XATTR: &str = "trusted.overlay.metacopy";
/// As `cp`'s and unpacking's bounds (also `diff`'s).
pub(crate) const MAX_DEPTH: usize = 256;
const MAX_PATH_LEN: usize = 4096;
/// The extended attributes an image carries (file capabilities): the rest are the host's.
const KEPT_XATTRS: &[&str] = &["security.capability"];

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct PackError {
    /// The path in the container (`/` first) that could not be packed.
    pub path: String,
    pub source: io::Error,
}

fn at(path: &str) -> impl FnOnce(io::Error) -> PackError + '_ {
    move |source| PackError { path: format!("/{path}"), source }
}

fn refused(path: &str, why: &str) -> PackError {
    at(path)(io::Error::other(why.to_string()))
}

/// The value of an extended attribute is there (its value aside).
fn has_xattr(fd: &OwnedFd, name: &str) -> bool {
    let mut none: [u8; 0] = [];
    rfs::fgetxattr(fd, name, &mut none[..]).is_ok()
}

/// Whether an entry of a directory of changes is one of strata's own mountpoints, made only
/// to mount over (an empty file or directory at a destination the container's spec
/// mounts): neither `diff` nor `commit` shows it, as docker's "init layer" keeps them out.
pub fn is_placeholder(mountpoints: &BTreeSet<String>, path: &str, stat: &rfs::Stat, dir: Option<&OwnedFd>) -> bool {
    if !mountpoints.contains(path) {
        return false;
    }
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => stat.st_size == 0,
        FileType::Directory => dir.is_some_and(|d| lookup::dir_names(d).is_ok_and(|n| n.is_empty())),
        _ => false,
    }
}

/// Pack `upper` (a container's directory of changes) as an OCI layer into `out`, leaving out
/// the placeholders among `mountpoints`. Returns the writer, the archive finished.
/// `max_bytes` bounds the files' total size (what unpacking the layer will accept).
pub fn layer<W: Write>(upper: &Path, mountpoints: &BTreeSet<String>, max_bytes: u64, out: W) -> Result<W, PackError> {
    let root = rfs::open(upper, DIR_FLAGS, Mode::empty()).map_err(|e| at("")(e.into()))?;
    let mut packer = Packer::new(out, max_bytes);
    let walked = packer.walk_dir(&root, "", 0, Some(mountpoints));
    packer.finish(walked)
}

/// Pack a plain tree (`cp CONTAINER:SRC -`): `name` in `dir` and what it holds, under its
/// own name; or, with no name, what `dir` holds.
/// Kernel filesystems (a running container's /proc, /sys, ...) are packed as their
/// mountpoint only.
pub fn tree<W: Write>(dir: &OwnedFd, name: Option<&str>, out: W) -> Result<W, PackError> {
    let mut packer = Packer::new(out, u64::MAX);
    let walked = match name {
        Some(name) => packer.one(dir, name, name, 0, None),
        // docker's names for a directory's contents: `./`, `./a`, ...
        None => (|| {
            let stat = rfs::fstat(dir).map_err(|e| at("")(e.into()))?;
            let mut header = header_of(&stat, tar::EntryType::Directory);
            header.set_size(0);
            packer.put_data(&mut header, "./", io::empty()).map_err(at(""))?;
            match crate::fsutil::is_kernel_fs(dir) {
                true => Ok(()),
                false => packer.walk_dir(dir, "./", 0, None),
            }
        })(),
    };
    packer.finish(walked)
}

/// Pack the merged view of `layers` (bottom first; a container's upper dir last) into `out`.
pub fn merged<W: Write>(layers: &[PathBuf], out: W) -> Result<W, PackError> {
    let mut packer = Packer::new(out, u64::MAX);
    let walked = packer.merged_dir(layers, &mut Vec::new());
    packer.finish(walked)
}

struct Packer<W: Write> {
    tar: tar::Builder<W>,
    /// Inodes with more than one link already packed, and the path packed for them.
    links: HashMap<(u64, u64), String>,
    /// Bytes of file data still allowed.
    budget: u64,
}

impl<W: Write> Packer<W> {
    fn new(out: W, max_bytes: u64) -> Self {
        let mut tar = tar::Builder::new(out);
        tar.follow_symlinks(false);
        Packer { tar, links: HashMap::new(), budget: max_bytes }
    }

    /// The archive's end after a whole walk; none after a failed one (the builder would
    /// write it when dropped, and a cut archive would pass for a whole one).
    fn finish(self, walked: Result<(), PackError>) -> Result<W, PackError> {
        match walked {
            Ok(()) => self.tar.into_inner().map_err(at("(the end of the archive)")),
            Err(e) => {
                std::mem::forget(self);
                Err(e)
            }
        }
    }

    /// Appends an entry named `path` as it is: the tar crate drops a leading `./`, which
    /// docker's names for a directory's contents have (kept when the name fits the header).
    fn put_data(&mut self, header: &mut tar::Header, path: &str, data: impl Read) -> io::Result<()> {
        if path.starts_with("./") && path.len() < 100 {
            let name = &mut header.as_old_mut().name;
            name.fill(0);
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            return self.tar.append(header, data);
        }
        self.tar.append_data(header, path, data)
    }

    /// A link entry named `path` with `target` as it is (bytes; not normalised).
    fn put_link(&mut self, header: &mut tar::Header, path: &str, target: &[u8]) -> io::Result<()> {
        if target.len() < 100 && (path.len() < 100 || !path.starts_with("./")) {
            header.set_link_name_literal(target)?;
            if path.starts_with("./") {
                return self.put_data(header, path, io::empty());
            }
            return self.tar.append_data(header, path, io::empty());
        }
        self.tar.append_link(header, path, std::ffi::OsStr::from_bytes(target))
    }

    /// The checks every entry's path passes.
    fn check_path(path: &str, depth: usize) -> Result<(), PackError> {
        if depth >= MAX_DEPTH {
            return Err(refused(path, &format!("more than {MAX_DEPTH} directories deep")));
        }
        if path.len() > MAX_PATH_LEN {
            return Err(refused(path, &format!("a path longer than {MAX_PATH_LEN} bytes")));
        }
        Ok(())
    }

    /// Packs what `dir` holds, each name as `prefix` + name. `layer`: the mountpoints of a
    /// directory of changes packed as a layer (see `one`); None for a plain tree.
    fn walk_dir(
        &mut self,
        dir: &OwnedFd,
        prefix: &str,
        depth: usize,
        layer: Option<&BTreeSet<String>>,
    ) -> Result<(), PackError> {
        for name in lookup::dir_names(dir).map_err(at(prefix))? {
            self.one(dir, &name, &format!("{prefix}{name}"), depth, layer)?;
        }
        Ok(())
    }

    /// Packs `name` in `dir` as `path`, and what it holds if a directory. For a layer, an
    /// overlayfs whiteout becomes a `.wh.` file, an opaque directory gets its marker, and a
    /// placeholder among the mountpoints is left out.
    fn one(
        &mut self,
        dir: &OwnedFd,
        name: &str,
        path: &str,
        depth: usize,
        layer: Option<&BTreeSet<String>>,
    ) -> Result<(), PackError> {
        Self::check_path(path, depth)?;
        let stat = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(at(path)(e.into())),
        };
        let kind = FileType::from_raw_mode(stat.st_mode);
        if layer.is_some() {
            if lookup::is_whiteout(&stat) {
                // An overlayfs whiteout: the layer's `.wh.NAME`.
                let mut header = header_of(&stat, tar::EntryType::Regular);
                header.set_size(0);
                header.set_mode(0o644);
                let whiteout = match path.rsplit_once('/') {
                    Some((parent, _)) => format!("{parent}/.wh.{name}"),
                    None => format!(".wh.{name}"),
                };
                return self.tar.append_data(&mut header, &whiteout, io::empty()).map_err(at(&whiteout));
            }
            if name.starts_with(".wh.") {
                // Unpacked, it would delete what the image has by that name.
                return Err(refused(path, "a name layers keep for deletions (.wh.): it cannot be committed"));
            }
        }
        let sub = match kind {
            FileType::Directory => match rfs::openat(dir, name, DIR_FLAGS, Mode::empty()) {
                Ok(sub) => Some(sub),
                Err(rustix::io::Errno::NOENT) => return Ok(()),
                Err(e) => return Err(at(path)(e.into())),
            },
            _ => None,
        };
        if layer.is_some_and(|m| is_placeholder(m, &format!("/{path}"), &stat, sub.as_ref())) {
            return Ok(());
        }
        skip_vanished(self.entry(dir, name, path, &stat, sub.as_ref(), layer.is_some()))?;
        if let Some(sub) = sub {
            if layer.is_some() && lookup::is_opaque(&sub) {
                let mut header = header_of(&stat, tar::EntryType::Regular);
                header.set_size(0);
                header.set_mode(0o644);
                let opaque = format!("{path}/.wh..wh..opq");
                self.tar.append_data(&mut header, &opaque, io::empty()).map_err(at(&opaque))?;
            }
            if layer.is_none() && crate::fsutil::is_kernel_fs(&sub) {
                return Ok(());
            }
            self.walk_dir(&sub, &format!("{path}/"), depth + 1, layer)?;
        }
        Ok(())
    }

    fn merged_dir(&mut self, layers: &[PathBuf], parent: &mut Vec<String>) -> Result<(), PackError> {
        let prefix: String = parent.iter().map(|p| format!("{p}/")).collect();
        for name in lookup::list(layers, parent).map_err(at(&prefix))? {
            let path = format!("{prefix}{name}");
            // Gone since it was listed (a running container): nothing to pack.
            let Some((dir, stat)) = lookup::entry_at(layers, parent, &name) else { continue };
            let is_dir = FileType::from_raw_mode(stat.st_mode) == FileType::Directory;
            let sub = match is_dir {
                true => {
                    Some(rfs::openat(&dir, name.as_str(), DIR_FLAGS, Mode::empty()).map_err(|e| at(&path)(e.into()))?)
                }
                false => None,
            };
            skip_vanished(self.entry(&dir, &name, &path, &stat, sub.as_ref(), true))?;
            if is_dir {
                // A container may nest directories without end: refused, not a stack overflow.
                Self::check_path(&path, parent.len() + 1)?;
                parent.push(name);
                self.merged_dir(layers, parent)?;
                parent.pop();
            }
        }
        Ok(())
    }

    /// One entry other than a whiteout: `name` in `dir`, packed as `path` (see
    /// `skip_vanished` for one gone since it was looked at). `overlay`: `dir` is an overlayfs
    /// layer's own directory (not a mounted view), whose redirects and metacopy files strata
    /// cannot read.
    fn entry(
        &mut self,
        dir: &OwnedFd,
        name: &str,
        path: &str,
        stat: &rfs::Stat,
        opened_dir: Option<&OwnedFd>,
        overlay: bool,
    ) -> Result<(), PackError> {
        let err = |e: rustix::io::Errno| at(path)(e.into());
        let kind = FileType::from_raw_mode(stat.st_mode);
        if kind == FileType::Socket {
            // A socket has no place in an archive (tar, docker's too, leaves it out).
            return Ok(());
        }
        let inode = (stat.st_dev, stat.st_ino);
        if kind != FileType::Directory && stat.st_nlink > 1 {
            if let Some(first) = self.links.get(&inode) {
                let mut header = header_of(stat, tar::EntryType::Link);
                header.set_size(0);
                let first = first.clone();
                return self.put_link(&mut header, path, first.as_bytes()).map_err(at(path));
            }
        }
        match kind {
            FileType::Directory => {
                let sub = opened_dir.expect("a directory is opened");
                if overlay && has_xattr(sub, REDIRECT_XATTR) {
                    return Err(refused(path, "a directory overlayfs moved (redirect_dir): strata cannot read it"));
                }
                let mut header = header_of(stat, tar::EntryType::Directory);
                header.set_size(0);
                self.xattrs(sub, path)?;
                self.put_data(&mut header, &format!("{path}/"), io::empty()).map_err(at(path))?;
            }
            FileType::RegularFile => {
                // Opened as a path first: what the name holds now is checked before it is
                // opened for reading, so a device node swapped in is never opened.
                let handle = rfs::openat(dir, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                    .map_err(err)?;
                let now = rfs::fstat(&handle).map_err(err)?;
                if FileType::from_raw_mode(now.st_mode) != FileType::RegularFile || (now.st_dev, now.st_ino) != inode {
                    return Err(refused(path, "changed while it was packed"));
                }
                let fd = rfs::open(
                    format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&handle)),
                    REOPEN_FLAGS,
                    Mode::empty(),
                )
                .map_err(err)?;
                if overlay && has_xattr(&fd, METACOPY_XATTR) {
                    return Err(refused(
                        path,
                        "a file overlayfs copied without its data (metacopy): strata cannot read it",
                    ));
                }
                let size = stat.st_size.max(0) as u64;
                if size > self.budget {
                    return Err(refused(path, "more data than a layer may hold (64 GiB)"));
                }
                self.budget -= size;
                self.xattrs(&fd, path)?;
                let mut header = header_of(stat, tar::EntryType::Regular);
                let reader = Exact { inner: std::fs::File::from(fd), left: size };
                self.put_data(&mut header, path, reader).map_err(at(path))?;
            }
            FileType::Symlink => {
                let target = rfs::readlinkat(dir, name, Vec::new()).map_err(err)?;
                let mut header = header_of(stat, tar::EntryType::Symlink);
                header.set_size(0);
                self.put_link(&mut header, path, target.as_bytes()).map_err(at(path))?;
            }
            _ => {
                let typ = match kind {
                    FileType::CharacterDevice => tar::EntryType::Char,
                    FileType::BlockDevice => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                };
                let mut header = header_of(stat, typ);
                header.set_size(0);
                if typ != tar::EntryType::Fifo {
                    header.set_device_major(rfs::major(stat.st_rdev)).map_err(at(path))?;
                    header.set_device_minor(rfs::minor(stat.st_rdev)).map_err(at(path))?;
                }
                self.put_data(&mut header, path, io::empty()).map_err(at(path))?;
            }
        }
        if kind != FileType::Directory && stat.st_nlink > 1 {
            self.links.insert(inode, path.to_string());
        }
        Ok(())
    }

    /// The kept extended attributes of an open file, as PAX records before its entry.
    fn xattrs(&mut self, fd: &OwnedFd, path: &str) -> Result<(), PackError> {
        let mut records = Vec::new();
        for name in KEPT_XATTRS {
            let mut buf = vec![0u8; 1024];
            if let Ok(n) = rfs::fgetxattr(fd, *name, &mut buf) {
                buf.truncate(n);
                records.push((format!("SCHILY.xattr.{name}"), buf));
            }
        }
        if records.is_empty() {
            return Ok(());
        }
        self.tar.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).map_err(at(path))
    }
}

/// An entry gone since it was looked at (a running container removed it) is left out.
fn skip_vanished(packed: Result<(), PackError>) -> Result<(), PackError> {
    match packed {
        Err(PackError { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn header_of(stat: &rfs::Stat, typ: tar::EntryType) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(typ);
    header.set_mode(stat.st_mode & 0o7777);
    header.set_uid(stat.st_uid as u64);
    header.set_gid(stat.st_gid as u64);
    header.set_mtime(stat.st_mtime.max(0) as u64);
    header.set_size(stat.st_size.max(0) as u64);
    header
}

/// Exactly `left` bytes of `inner`: cut where it grew, zeros where it shrank meanwhile.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = match self.inner.read(&mut buf[..want])? {
            0 => {
                buf[..want].fill(0);
                want
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}
