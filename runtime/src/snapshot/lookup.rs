//! Reading a file through a stack of snapshot directories without mounting them: the same
//! answer overlayfs would give (whiteouts hide, opaque directories and non-directories hide
//! what lower layers have below them, symlinks resolve inside the image root). Used to
//! classify an image by its entrypoint's first bytes.
//!
//! strata runs this as root on images from anywhere, so every step is an `openat` with
//! `O_NOFOLLOW` below one layer's own directory, and only a regular file is ever opened (with
//! `O_NONBLOCK`): no symlink an image ships, not even one in a lower layer that an upper
//! directory hides, can take a lookup outside the layer directories, and no device node or
//! fifo it ships is opened or can block the lookup.

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

const MAX_SYMLINK_HOPS: usize = 40;

/// A directory opened for reading, never through a symlink.
pub(crate) const DIR_FLAGS: OFlags =
    OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// One entry of the merged view: the layer directory that holds it (open), and its name and
/// stat there.
struct Entry {
    dir: OwnedFd,
    name: String,
    stat: rfs::Stat,
}

impl Entry {
    fn kind(&self) -> FileType {
        FileType::from_raw_mode(self.stat.st_mode)
    }

    fn is_whiteout(&self) -> bool {
        is_whiteout(&self.stat)
    }
}

/// An overlayfs whiteout (a 0/0 character device): the name is deleted in this layer.
pub(crate) fn is_whiteout(stat: &rfs::Stat) -> bool {
    FileType::from_raw_mode(stat.st_mode) == FileType::CharacterDevice && stat.st_rdev == 0
}

/// An overlayfs opaque directory: lower layers have nothing below it.
pub(crate) fn is_opaque(dir: &OwnedFd) -> bool {
    let mut buf = [0u8; 4];
    matches!(rfs::fgetxattr(dir, super::apply::OPAQUE_XATTR, &mut buf), Ok(1) if buf[0] == b'y')
}

/// A merged-view directory (`parent`, every component a directory in the merged view) as one
/// layer has it.
enum LayerDir {
    /// The layer has it as a directory; `opaque` if it, or a directory above it, is opaque
    /// in this layer (so lower layers have nothing below it).
    Dir { fd: OwnedFd, opaque: bool },
    /// The layer does not have it (`opaque`: a directory above it is opaque).
    Missing { opaque: bool },
    /// The layer has a non-directory (a file, a symlink, a whiteout) on the way: lower
    /// layers have nothing below it either.
    Hidden,
}

fn open_layer_dir(layer: &Path, parent: &[String]) -> LayerDir {
    let Ok(mut fd) = rfs::open(layer, DIR_FLAGS, Mode::empty()) else {
        return LayerDir::Missing { opaque: false };
    };
    let mut opaque = false;
    for name in parent {
        match rfs::openat(&fd, name.as_str(), DIR_FLAGS, Mode::empty()) {
            Ok(next) => fd = next,
            Err(Errno::NOENT) => return LayerDir::Missing { opaque },
            // ENOTDIR, ELOOP (a symlink: O_NOFOLLOW), anything else.
            Err(_) => return LayerDir::Hidden,
        }
        opaque |= is_opaque(&fd);
    }
    LayerDir::Dir { fd, opaque }
}

/// The entry `name` in the merged-view directory `parent`, from the topmost layer that has it.
fn find(layers: &[PathBuf], parent: &[String], name: &str) -> Option<Entry> {
    for layer in layers.iter().rev() {
        let (dir, opaque) = match open_layer_dir(layer, parent) {
            LayerDir::Dir { fd, opaque } => (fd, opaque),
            LayerDir::Missing { opaque: false } => continue,
            LayerDir::Missing { opaque: true } | LayerDir::Hidden => return None,
        };
        match rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => {
                let entry = Entry { dir, name: name.to_string(), stat };
                return if entry.is_whiteout() { None } else { Some(entry) };
            }
            Err(Errno::NOENT) if !opaque => {}
            Err(_) => return None,
        }
    }
    None
}

/// Resolve `path` (absolute inside the image) to the entry of the file it names, following
/// symlinks within the image root. None if it does not exist.
fn resolve(layers: &[PathBuf], path: &str) -> Option<Entry> {
    let mut pending: Vec<String> = components(path);
    pending.reverse();
    let mut current: Vec<String> = Vec::new();
    let mut hops = 0;
    let mut found: Option<Entry> = None;
    while let Some(name) = pending.pop() {
        if name == ".." {
            current.pop();
            found = None;
            continue;
        }
        let entry = find(layers, &current, &name)?;
        if entry.kind() == FileType::Symlink {
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return None;
            }
            let target = rfs::readlinkat(&entry.dir, entry.name.as_str(), Vec::new()).ok()?;
            let target = target.to_string_lossy().into_owned();
            if target.starts_with('/') {
                current.clear();
            }
            let mut parts = components(&target);
            parts.reverse();
            pending.extend(parts);
            found = None;
            continue;
        }
        let is_dir = entry.kind() == FileType::Directory;
        current.push(name);
        found = Some(entry);
        if !is_dir && !pending.is_empty() {
            return None;
        }
    }
    found
}

/// The entry `name` in the merged-view directory `parent` (every component a directory in
/// the merged view), not followed if a symlink: the layer directory holding it, open, and
/// its stat there. None if the merged view has no such entry.
pub fn entry_at(layers: &[PathBuf], parent: &[String], name: &str) -> Option<(OwnedFd, rfs::Stat)> {
    find(layers, parent, name).map(|e| (e.dir, e.stat))
}

/// The names the merged-view directory `parent` holds, sorted: every layer's down to the
/// first that makes the directory opaque (or hides it), less what a higher layer whites out.
pub fn list(layers: &[PathBuf], parent: &[String]) -> std::io::Result<Vec<String>> {
    let mut seen = std::collections::BTreeMap::<String, bool>::new();
    for layer in layers.iter().rev() {
        let (fd, opaque) = match open_layer_dir(layer, parent) {
            LayerDir::Dir { fd, opaque } => (fd, opaque),
            LayerDir::Missing { opaque: false } => continue,
            LayerDir::Missing { opaque: true } | LayerDir::Hidden => break,
        };
        for name in dir_names(&fd)? {
            if seen.contains_key(&name) {
                continue;
            }
            let whiteout = rfs::statat(&fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| is_whiteout(&st));
            seen.insert(name, !whiteout);
        }
        if opaque {
            break;
        }
    }
    Ok(seen.into_iter().filter(|(_, visible)| *visible).map(|(name, _)| name).collect())
}

/// The names in an open directory, sorted, without `.` and `..`. A name that is not UTF-8
/// is an error naming it (strata's paths are strings; nothing is skipped silently).
pub fn dir_names(dir: &OwnedFd) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in rfs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        match std::str::from_utf8(name) {
            Ok(n) => names.push(n.to_string()),
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("the name {:?} is not UTF-8", String::from_utf8_lossy(name)),
                ))
            }
        }
    }
    names.sort();
    Ok(names)
}

fn components(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// The first bytes of a regular file in the merged view (None for anything else: a device
/// node or a fifo in an image is never opened).
pub fn read_head(layers: &[PathBuf], path: &str, n: usize) -> Option<Vec<u8>> {
    let entry = resolve(layers, path)?;
    if entry.kind() != FileType::RegularFile {
        return None;
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = rfs::openat(&entry.dir, entry.name.as_str(), flags, Mode::empty()).ok()?;
    // What was opened is what was looked at (the name could have been replaced since).
    if FileType::from_raw_mode(rfs::fstat(&fd).ok()?.st_mode) != FileType::RegularFile {
        return None;
    }
    let mut buf = Vec::with_capacity(n);
    std::fs::File::from(fd).take(n as u64).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// Find a command the way execvp would, through PATH, in the merged view.
pub fn which(layers: &[PathBuf], command: &str, path_env: &str) -> Option<String> {
    if command.contains('/') {
        return resolve(layers, command).map(|_| command.to_string());
    }
    path_env
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| format!("{}/{command}", d.trim_end_matches('/')))
        .find(|candidate| resolve(layers, candidate).is_some_and(|e| e.kind() == FileType::RegularFile))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn mknod(path: &Path, kind: FileType, dev: u64) {
        rustix::fs::mknodat(rustix::fs::CWD, path, kind, Mode::from_raw_mode(0o644), dev).unwrap();
    }

    #[test]
    fn nothing_an_image_ships_reaches_outside_its_layers() {
        let t = tempfile::tempdir().unwrap();
        let host = t.path().join("host");
        fs::create_dir_all(&host).unwrap();
        fs::write(host.join("probe.wasm"), b"\0asm\x01\0\0\0").unwrap();
        let (l1, l2) = (t.path().join("1"), t.path().join("2"));
        fs::create_dir_all(l1.join("deep/sub")).unwrap();
        fs::create_dir_all(l2.join("a")).unwrap();
        // The lower layer's `a` is a symlink to a host directory; the upper layer's `a/` is a
        // directory, which hides it (overlayfs shows an empty `a`).
        symlink(&host, l1.join("a")).unwrap();
        fs::write(l1.join("deep/sub/file"), b"x").unwrap();
        // An opaque directory hides what lower layers have anywhere below it.
        fs::create_dir_all(l2.join("deep")).unwrap();
        rustix::fs::setxattr(l2.join("deep"), "trusted.overlay.opaque", b"y", rustix::fs::XattrFlags::empty()).unwrap();
        // Device nodes and fifos are looked at, never opened: opening a fifo would block.
        mknod(&l2.join("null"), FileType::CharacterDevice, rustix::fs::makedev(1, 3));
        mknod(&l2.join("fifo"), FileType::Fifo, 0);
        let layers = vec![l1.clone(), l2];
        let probe = "/a/probe.wasm";
        assert!(resolve(&layers, probe).is_none(), "{probe} was found through the lower layer's symlink");
        assert!(read_head(&layers, probe, 4).is_none());
        assert!(resolve(&layers, "/deep/sub/file").is_none(), "an opaque directory above it hides it");
        assert!(resolve(&layers, "/null").is_some() && read_head(&layers, "/null", 4).is_none());
        assert!(read_head(&layers, "/fifo", 4).is_none());
        assert_eq!(which(&layers, "fifo", "/"), None);
        // Alone, the lower layer's symlink resolves inside the image root, not on the host.
        assert!(resolve(&[l1], probe).is_none());
    }

    #[test]
    fn follows_overlay_rules() {
        let t = tempfile::tempdir().unwrap();
        let (l1, l2, l3) = (t.path().join("1"), t.path().join("2"), t.path().join("3"));
        for l in [&l1, &l2, &l3] {
            fs::create_dir_all(l.join("bin")).unwrap();
        }
        fs::write(l1.join("bin/busybox"), b"\x7fELF....").unwrap();
        symlink("busybox", l1.join("bin/sh")).unwrap();
        symlink("/bin/busybox", l1.join("bin/abs")).unwrap();
        fs::write(l1.join("bin/gone"), b"x").unwrap();
        fs::create_dir_all(l1.join("opq")).unwrap();
        fs::write(l1.join("opq/old"), b"x").unwrap();
        // layer 2 deletes bin/gone (whiteout) and makes opq opaque
        rustix::fs::mknodat(
            rustix::fs::CWD,
            l2.join("bin/gone"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .unwrap();
        fs::create_dir_all(l2.join("opq")).unwrap();
        rustix::fs::setxattr(l2.join("opq"), "trusted.overlay.opaque", b"y", rustix::fs::XattrFlags::empty()).unwrap();
        fs::write(l2.join("opq/new"), b"y").unwrap();
        fs::write(l3.join("bin/top.wasm"), b"\0asm\x01\0\0\0").unwrap();
        symlink("../../../../bin/top.wasm", l3.join("escape")).unwrap();
        let layers = vec![l1.clone(), l2, l3.clone()];

        assert_eq!(read_head(&layers, "/bin/sh", 4).unwrap(), b"\x7fELF");
        assert_eq!(read_head(&layers, "/bin/abs", 4).unwrap(), b"\x7fELF");
        assert_eq!(read_head(&layers, "/escape", 4).unwrap(), b"\0asm");
        assert!(resolve(&layers, "/bin/gone").is_none());
        assert!(resolve(&layers, "/opq/old").is_none());
        assert!(resolve(&layers, "/opq/new").is_some());
        assert_eq!(which(&layers, "sh", "/usr/bin:/bin").as_deref(), Some("/bin/sh"));
        assert_eq!(which(&layers, "gone", "/usr/bin:/bin"), None);
        assert!(resolve(&layers, "/bin/busybox/x").is_none());
    }
}
