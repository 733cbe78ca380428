//! Flatten: merge a chain of overlay-form layer directories (as `apply` leaves them) into one
//! plain directory: the copy fallback where overlayfs is unavailable, and what `strata unpack`
//! produces. Copying, it arrives at the tree overlayfs shows when it stacks the same directories.
//!
//! It must never follow a symlink in `dest` (an upper entry replaces a lower symlink, never
//! writes through it), never copy a whiteout device or a `trusted.overlay.*` xattr into `dest`,
//! and never let a lower layer's entry survive under a directory an upper layer made opaque.

use super::apply::at::{self, Node};
use super::apply::OPAQUE_XATTR;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FlattenError {
    #[error("flatten destination {}: {op}: {source}", .path.display())]
    Dest { path: PathBuf, op: &'static str, source: io::Error },
    #[error("flattening layer {}: entry {entry:?}: {op}: {source}", .layer.display())]
    Entry { layer: PathBuf, entry: String, op: &'static str, source: io::Error },
}

impl From<FlattenError> for io::Error {
    fn from(e: FlattenError) -> io::Error {
        let kind = match &e {
            FlattenError::Dest { source, .. } | FlattenError::Entry { source, .. } => source.kind(),
        };
        io::Error::new(kind, e.to_string())
    }
}

/// Merge `layers` (bottom first) onto `dest`, which is created if missing and otherwise must
/// be a directory (normally empty; anything in it counts as a layer below the first).
pub fn flatten(layers: &[PathBuf], dest: &Path) -> Result<(), FlattenError> {
    let dest_err = |op| move |source: io::Error| FlattenError::Dest { path: dest.to_path_buf(), op, source };
    match std::fs::create_dir(dest) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(dest_err("creating")(e)),
        _ => {}
    }
    let root = rfs::openat(rfs::CWD, dest, at::DIR_FLAGS, Mode::empty()).map_err(|e| dest_err("opening")(e.into()))?;
    let mut f = Flattener {
        dest: root,
        is_root: rustix::process::geteuid().is_root(),
        layer: PathBuf::new(),
        links: HashMap::new(),
        dir_times: BTreeMap::new(),
    };
    for layer in layers {
        f.layer(layer)?;
    }
    f.set_dir_times()
}

struct Flattener {
    dest: OwnedFd,
    is_root: bool,
    /// The layer being merged, for errors.
    layer: PathBuf,
    /// First dest path of each multiply-linked inode of the current layer, so later names of
    /// it become hardlinks in dest too. Layers never share inodes, so this resets per layer.
    links: HashMap<(u64, u64), Vec<Vec<u8>>>,
    /// Directory times, set once every layer is in: merging changes a directory's mtime.
    dir_times: BTreeMap<Vec<Vec<u8>>, Timestamps>,
}

impl Flattener {
    fn err<E: Into<io::Error>>(&self, comps: &[Vec<u8>], op: &'static str) -> impl FnOnce(E) -> FlattenError {
        let layer = self.layer.clone();
        let entry = at::display(comps);
        move |e| FlattenError::Entry { layer, entry, op, source: e.into() }
    }

    fn layer(&mut self, layer: &Path) -> Result<(), FlattenError> {
        self.layer = layer.to_path_buf();
        self.links.clear();
        let src =
            rfs::openat(rfs::CWD, layer, at::DIR_FLAGS, Mode::empty()).map_err(self.err(&[], "opening the layer"))?;
        let st = rfs::fstat(&src).map_err(self.err(&[], "inspecting the layer root"))?;
        let dest = self.dest.try_clone().map_err(self.err(&[], "opening the destination"))?;
        if is_opaque(Node::Fd(src.as_fd())) {
            at::clear_dir(dest.as_fd()).map_err(self.err(&[], "clearing the destination under an opaque root"))?;
            self.dir_times.clear();
        }
        let mut comps = Vec::new();
        self.merge(src.as_fd(), dest.as_fd(), &mut comps)?;
        self.copy_meta(Node::Fd(src.as_fd()), Node::Fd(dest.as_fd()), &st, &[], true)?;
        self.dir_times.insert(Vec::new(), stat_times(&st));
        Ok(())
    }

    /// Copy the entries of the layer directory `src` onto the dest directory `dst`.
    fn merge(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        comps: &mut Vec<Vec<u8>>,
    ) -> Result<(), FlattenError> {
        let mut names = at::list_dir(src).map_err(self.err(comps, "listing the directory"))?;
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, _) in names {
            comps.push(name);
            let result = self.entry(src, dst, comps);
            comps.pop();
            result?;
        }
        Ok(())
    }

    fn entry(&mut self, src: BorrowedFd<'_>, dst: BorrowedFd<'_>, comps: &[Vec<u8>]) -> Result<(), FlattenError> {
        let Some(name) = comps.last().map(Vec::as_slice) else {
            return Ok(());
        };
        let st = rfs::statat(src, name, AtFlags::SYMLINK_NOFOLLOW).map_err(self.err(comps, "inspecting"))?;
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind == FileType::CharacterDevice && st.st_rdev == 0 {
            // A whiteout: the path is deleted from the layers below, and is not itself copied.
            return self.clear(dst, comps);
        }
        if kind == FileType::Directory {
            return self.directory(src, dst, comps, &st);
        }
        let key = (st.st_dev, st.st_ino);
        if st.st_nlink > 1 {
            if let Some(first) = self.links.get(&key).cloned() {
                if self.link(dst, comps, &first)? {
                    return Ok(());
                }
            }
        }
        self.clear(dst, comps)?;
        match kind {
            FileType::RegularFile => self.file(src, dst, comps, &st)?,
            FileType::Symlink => {
                let target = rfs::readlinkat(src, name, Vec::new()).map_err(self.err(comps, "reading the symlink"))?;
                rfs::symlinkat(target.as_c_str(), dst, name).map_err(self.err(comps, "creating the symlink"))?;
                self.copy_meta(Node::At(src, name), Node::At(dst, name), &st, comps, false)?;
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo | FileType::Socket => {
                rfs::mknodat(dst, name, kind, Mode::from_raw_mode(0o600), st.st_rdev)
                    .map_err(self.err(comps, "creating the device node"))?;
                self.copy_meta(Node::At(src, name), Node::At(dst, name), &st, comps, true)?;
            }
            _ => {
                let unknown = io::Error::new(io::ErrorKind::Unsupported, format!("unknown file type {:o}", st.st_mode));
                return Err(self.err(comps, "copying")(unknown));
            }
        }
        if st.st_nlink > 1 {
            self.links.insert(key, comps.to_vec());
        }
        Ok(())
    }

    fn directory(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        comps: &[Vec<u8>],
        st: &Stat,
    ) -> Result<(), FlattenError> {
        let name = comps.last().map(Vec::as_slice).unwrap_or_default();
        let s = at::open_dir(src, name).map_err(self.err(comps, "opening the directory"))?;
        let kept = match rfs::statat(dst, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(existing) if FileType::from_raw_mode(existing.st_mode) == FileType::Directory => true,
            Err(Errno::NOENT) => false,
            Ok(_) => {
                // A lower symlink (or file) here is replaced, never descended through.
                self.clear(dst, comps)?;
                false
            }
            Err(e) => return Err(self.err(comps, "inspecting the destination")(e)),
        };
        if !kept {
            rfs::mkdirat(dst, name, Mode::from_raw_mode(0o700)).map_err(self.err(comps, "creating the directory"))?;
        }
        let d = at::open_dir(dst, name).map_err(self.err(comps, "opening the destination directory"))?;
        if kept && is_opaque(Node::Fd(s.as_fd())) {
            // Opaque hides the layers below only: this layer's entries are copied right after.
            at::clear_dir(d.as_fd()).map_err(self.err(comps, "clearing an opaque directory"))?;
            self.dir_times.retain(|path, _| !(path.len() > comps.len() && path.starts_with(comps)));
        }
        let mut sub = comps.to_vec();
        self.merge(s.as_fd(), d.as_fd(), &mut sub)?;
        self.copy_meta(Node::Fd(s.as_fd()), Node::Fd(d.as_fd()), st, comps, true)?;
        self.dir_times.insert(comps.to_vec(), stat_times(st));
        Ok(())
    }

    fn file(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        comps: &[Vec<u8>],
        st: &Stat,
    ) -> Result<(), FlattenError> {
        let name = comps.last().map(Vec::as_slice).unwrap_or_default();
        let from = rfs::openat(src, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
            .map_err(self.err(comps, "opening the file"))?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let to =
            rfs::openat(dst, name, flags, Mode::from_raw_mode(0o600)).map_err(self.err(comps, "creating the file"))?;
        let (mut from, mut to) = (File::from(from), File::from(to));
        // std's copy between two files uses copy_file_range: no bytes through userspace.
        io::copy(&mut from, &mut to).map_err(self.err(comps, "copying the file"))?;
        self.copy_meta(Node::Fd(from.as_fd()), Node::Fd(to.as_fd()), st, comps, true)
    }

    /// Make `comps` in dest a hardlink of `first` (an earlier name of the same inode in this
    /// layer). False if that is not possible, and the caller copies instead.
    fn link(&mut self, dst: BorrowedFd<'_>, comps: &[Vec<u8>], first: &[Vec<u8>]) -> Result<bool, FlattenError> {
        let (Some((fname, fparent)), Some(name)) = (first.split_last(), comps.last()) else {
            return Ok(false);
        };
        let Ok(fdir) = at::walk(self.dest.as_fd(), fparent, false) else {
            return Ok(false);
        };
        self.clear(dst, comps)?;
        Ok(rfs::linkat(&fdir, fname.as_slice(), dst, name.as_slice(), AtFlags::empty()).is_ok())
    }

    /// Remove whatever dest has at `comps` (a directory recursively), never following it.
    fn clear(&mut self, dst: BorrowedFd<'_>, comps: &[Vec<u8>]) -> Result<(), FlattenError> {
        let name = comps.last().map(Vec::as_slice).unwrap_or_default();
        if at::remove(dst, name).map_err(self.err(comps, "removing"))? {
            self.dir_times.retain(|path, _| !path.starts_with(comps));
        }
        Ok(())
    }

    /// Owner, then mode (chown clears setuid bits), then xattrs (chown clears file
    /// capabilities), then, for non-directories, times.
    fn copy_meta(
        &self,
        src: Node<'_>,
        dst: Node<'_>,
        st: &Stat,
        comps: &[Vec<u8>],
        chmod: bool,
    ) -> Result<(), FlattenError> {
        if self.is_root {
            let (uid, gid) =
                (Some(rfs::Uid::from_raw_unchecked(st.st_uid)), Some(rfs::Gid::from_raw_unchecked(st.st_gid)));
            match dst {
                Node::Fd(fd) => rfs::fchown(fd, uid, gid),
                Node::At(parent, name) => rfs::chownat(parent, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW),
            }
            .map_err(self.err(comps, "setting the owner"))?;
        }
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        if chmod {
            let mode = Mode::from_raw_mode(st.st_mode & 0o7777);
            match dst {
                Node::Fd(fd) => rfs::fchmod(fd, mode),
                // Only device nodes and FIFOs we created an instant ago come here.
                Node::At(parent, name) => rfs::chmodat(parent, name, mode, AtFlags::empty()),
            }
            .map_err(self.err(comps, "setting the mode"))?;
        }
        self.copy_xattrs(src, dst, comps, is_dir)?;
        if !is_dir {
            let times = stat_times(st);
            match dst {
                Node::Fd(fd) => rfs::futimens(fd, &times),
                Node::At(parent, name) => rfs::utimensat(parent, name, &times, AtFlags::SYMLINK_NOFOLLOW),
            }
            .map_err(self.err(comps, "setting the times"))?;
        }
        Ok(())
    }

    /// Copy xattrs except `trusted.overlay.*` (overlay's own bookkeeping, meaningless once
    /// flattened). A merged directory shows only the upper layer's xattrs, as under overlayfs.
    fn copy_xattrs(
        &self,
        src: Node<'_>,
        dst: Node<'_>,
        comps: &[Vec<u8>],
        merged_dir: bool,
    ) -> Result<(), FlattenError> {
        let keys = match src.list_xattrs() {
            Ok(keys) => keys,
            Err(Errno::NOTSUP) => Vec::new(),
            Err(e) => return Err(self.err(comps, "listing xattrs")(e)),
        };
        let keys: Vec<Vec<u8>> = keys.into_iter().filter(|k| !k.starts_with(b"trusted.overlay.")).collect();
        if merged_dir {
            for old in dst.list_xattrs().unwrap_or_default() {
                if !keys.contains(&old) {
                    let _ = dst.remove_xattr(&old);
                }
            }
        }
        for key in keys {
            let Some(value) = src.get_xattr(&key).map_err(self.err(comps, "reading an xattr"))? else {
                continue;
            };
            match dst.set_xattr(&key, &value) {
                Ok(()) => {}
                Err(err @ (Errno::NOTSUP | Errno::PERM)) => {
                    tracing::debug!(entry = %at::display(comps), key = %String::from_utf8_lossy(&key), %err, "xattr not supported here");
                }
                Err(e) => return Err(self.err(comps, "setting an xattr")(e)),
            }
        }
        Ok(())
    }

    fn set_dir_times(&mut self) -> Result<(), FlattenError> {
        let records = std::mem::take(&mut self.dir_times);
        for (comps, times) in records {
            let Some((name, parent)) = comps.split_last() else {
                rfs::futimens(&self.dest, &times).map_err(self.err(&comps, "setting the times"))?;
                continue;
            };
            let Ok(dir) = at::walk(self.dest.as_fd(), parent, false) else {
                continue;
            };
            if let Ok(st) = rfs::statat(&dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    rfs::utimensat(&dir, name.as_slice(), &times, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(self.err(&comps, "setting the times"))?;
                }
            }
        }
        Ok(())
    }
}

fn is_opaque(dir: Node<'_>) -> bool {
    matches!(dir.get_xattr(OPAQUE_XATTR.as_bytes()), Ok(Some(v)) if v == b"y")
}

fn stat_times(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec { tv_sec: st.st_atime, tv_nsec: st.st_atime_nsec as _ },
        last_modification: Timespec { tv_sec: st.st_mtime, tv_nsec: st.st_mtime_nsec as _ },
    }
}

#[cfg(test)]
mod tests {
    use super::super::apply::tests::{sandbox, xattr, Sandbox, Tar, MTIME};
    use super::super::apply::{apply_layer, ApplyLimits, Compression};
    use super::*;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    fn layer(sb: &Sandbox, name: &str, tar: Tar) -> PathBuf {
        let dir = sb.tmp.path().join("layers").join(name);
        fs::create_dir_all(&dir).unwrap();
        apply_layer(&tar.bytes()[..], Compression::None, &dir, &ApplyLimits::default()).unwrap();
        dir
    }

    /// One line per entry: path, type, mode, owner and content / target.
    fn tree(root: &Path) -> Vec<String> {
        let mut lines = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = path.symlink_metadata().unwrap();
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                let head = format!("{rel} {:o} {}:{}", meta.mode() & 0o7777, meta.uid(), meta.gid());
                let ft = meta.file_type();
                if ft.is_dir() {
                    lines.push(format!("{head} dir"));
                    stack.push(path);
                } else if ft.is_symlink() {
                    lines.push(format!("{head} -> {}", fs::read_link(&path).unwrap().display()));
                } else if ft.is_file() {
                    lines.push(format!("{head} {:?}", String::from_utf8_lossy(&fs::read(&path).unwrap())));
                } else {
                    lines.push(format!("{head} node {}", meta.rdev()));
                }
            }
        }
        lines.sort();
        lines
    }

    #[test]
    fn three_layer_chain_flattens_to_the_exact_tree() {
        let sb = sandbox();
        let outside = sb.outside.to_str().unwrap().to_string();
        let mut l1 = Tar::new();
        l1.dir("bin/")
            .file_with("bin/sh", b"sh1", 0o755, 0, MTIME)
            .hardlink("bin/ls", "bin/sh")
            .dir("etc/")
            .file("etc/a", b"a1")
            .file("etc/b", b"b1")
            .dir("opq/")
            .file("opq/old", b"old")
            .dir("gone/")
            .file("gone/x", b"x")
            .symlink("link", "etc/a")
            .symlink("esc", &outside)
            .file_with("suid", b"s", 0o4755, 1000, MTIME);
        let mut l2 = Tar::new();
        l2.file("etc/a", b"a2")
            .file("etc/.wh.b", b"")
            .dir("opq/")
            .file("opq/.wh..wh..opq", b"")
            .file("opq/new", b"new")
            .file(".wh.gone", b"")
            .dir("usr/")
            .file("usr/x", b"x")
            .hardlink("usr/y", "usr/x")
            .dir("esc/")
            .file("esc/f", b"f");
        let mut l3 = Tar::new();
        l3.file_with("bin/sh", b"sh3", 0o755, 0, MTIME)
            .symlink("etc/a", "/etc/passwd")
            .file("gone", b"back")
            .dir_with("d/", 0o711, 1_000_000_000)
            .file_with("d/f", b"f", 0o600, 0, 1_200_000_000);
        let layers = [layer(&sb, "1", l1), layer(&sb, "2", l2), layer(&sb, "3", l3)];
        let dest = sb.tmp.path().join("flat");
        flatten(&layers, &dest).unwrap();

        let expected = [
            "bin 755 0:0 dir",
            "bin/ls 755 0:0 \"sh1\"",
            "bin/sh 755 0:0 \"sh3\"",
            "d 711 0:0 dir",
            "d/f 600 0:0 \"f\"",
            "esc 755 0:0 dir",
            "esc/f 644 0:0 \"f\"",
            "etc 755 0:0 dir",
            "etc/a 777 0:0 -> /etc/passwd",
            "gone 644 0:0 \"back\"",
            "link 777 0:0 -> etc/a",
            "opq 755 0:0 dir",
            "opq/new 644 0:0 \"new\"",
            "suid 4755 1000:1000 \"s\"",
            "usr 755 0:0 dir",
            "usr/x 644 0:0 \"x\"",
            "usr/y 644 0:0 \"x\"",
        ];
        assert_eq!(tree(&dest), expected);
        let ino = |p: &str| dest.join(p).metadata().unwrap().ino();
        assert_eq!(ino("usr/x"), ino("usr/y"), "hardlinks within a layer stay one inode");
        assert_ne!(ino("bin/sh"), ino("bin/ls"), "replacing one name must not rewrite its old link");
        assert_eq!(xattr(&dest.join("opq"), OPAQUE_XATTR), None);
        assert_eq!(dest.join("d").metadata().unwrap().mtime(), 1_000_000_000);
        assert_eq!(dest.join("d/f").metadata().unwrap().mtime(), 1_200_000_000);
        assert_eq!(dest.join("etc/a").symlink_metadata().unwrap().mtime(), MTIME as i64);
        // The layers themselves are inputs, left as they were.
        assert!(layers[1].join("etc/b").symlink_metadata().unwrap().file_type().is_char_device());
        sb.untouched_except(&["layers", "flat"]);
    }

    #[test]
    fn opaque_dir_keeps_its_own_layer_entries_and_hides_lower_ones() {
        let sb = sandbox();
        let mut l1 = Tar::new();
        l1.dir("o/").file("o/low", b"low").dir("o/sub/").file("o/sub/deep", b"deep");
        let mut l2 = Tar::new();
        l2.dir("o/").file("o/.wh..wh..opq", b"").dir("o/sub/").file("o/sub/mine", b"mine");
        let layers = [layer(&sb, "1", l1), layer(&sb, "2", l2)];
        let dest = sb.tmp.path().join("flat");
        flatten(&layers, &dest).unwrap();
        assert_eq!(tree(&dest), ["o 755 0:0 dir", "o/sub 755 0:0 dir", "o/sub/mine 644 0:0 \"mine\""]);
    }

    #[test]
    fn lower_symlink_is_replaced_never_followed() {
        let sb = sandbox();
        let outside = sb.outside.to_str().unwrap().to_string();
        let mut l1 = Tar::new();
        l1.symlink("d", &outside).symlink("f", &format!("{outside}/sentinel"));
        let mut l2 = Tar::new();
        l2.dir("d/").file("d/sentinel", b"pwned").file("f", b"replaced");
        let layers = [layer(&sb, "1", l1), layer(&sb, "2", l2)];
        let dest = sb.tmp.path().join("flat");
        flatten(&layers, &dest).unwrap();
        assert_eq!(tree(&dest), ["d 755 0:0 dir", "d/sentinel 644 0:0 \"pwned\"", "f 644 0:0 \"replaced\""]);
        sb.untouched_except(&["layers", "flat"]);
    }

    #[test]
    fn whiteout_of_a_lower_symlink_removes_only_the_symlink() {
        let sb = sandbox();
        let outside = sb.outside.to_str().unwrap().to_string();
        let mut l1 = Tar::new();
        l1.symlink("s", &outside);
        let mut l2 = Tar::new();
        l2.file(".wh.s", b"");
        let layers = [layer(&sb, "1", l1), layer(&sb, "2", l2)];
        let dest = sb.tmp.path().join("flat");
        flatten(&layers, &dest).unwrap();
        assert!(tree(&dest).is_empty());
        sb.untouched_except(&["layers", "flat"]);
    }

    #[test]
    fn device_nodes_and_xattrs_are_copied() {
        let sb = sandbox();
        let mut l1 = Tar::new();
        l1.node("null", tar::EntryType::Char, 1, 3)
            .node("fifo", tar::EntryType::Fifo, 0, 0)
            .pax(&[("SCHILY.xattr.user.k", b"v")])
            .file("x", b"x");
        let layers = [layer(&sb, "1", l1)];
        let dest = sb.tmp.path().join("flat");
        flatten(&layers, &dest).unwrap();
        let null = dest.join("null").symlink_metadata().unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), rfs::makedev(1, 3));
        assert!(dest.join("fifo").symlink_metadata().unwrap().file_type().is_fifo());
        assert_eq!(xattr(&dest.join("x"), "user.k").as_deref(), Some(&b"v"[..]));
    }
}
