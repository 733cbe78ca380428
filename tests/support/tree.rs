//! Snapshot of a directory tree (no symlink following) for comparing unpacked
//! root filesystems file by file.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Path (absolute within the snapshot root, e.g. `/etc/passwd`; the root itself
/// is not included) -> entry.
pub type Tree = BTreeMap<String, Entry>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Regular file: size and `sha256:<hex>` of its contents.
    File {
        size: u64,
        sha256: String,
    },
    Dir,
    Symlink {
        target: String,
    },
    Fifo,
    Socket,
    CharDev {
        major: u64,
        minor: u64,
    },
    BlockDev {
        major: u64,
        minor: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch (ignored by default when comparing).
    pub mtime: i64,
    /// For a non-directory whose inode appears under more than one path in the
    /// snapshot: the smallest of those paths (so hardlink groups compare across
    /// trees). `None` for inodes seen once.
    pub link_group: Option<String>,
}

impl Entry {
    /// Expected regular file (mtime 0; compare without mtime).
    pub fn file(content: impl AsRef<[u8]>, mode: u32, uid: u32, gid: u32) -> Entry {
        let c = content.as_ref();
        Entry {
            kind: Kind::File { size: c.len() as u64, sha256: super::sha256_digest(c) },
            mode,
            uid,
            gid,
            mtime: 0,
            link_group: None,
        }
    }

    pub fn dir(mode: u32, uid: u32, gid: u32) -> Entry {
        Entry { kind: Kind::Dir, mode, uid, gid, mtime: 0, link_group: None }
    }

    /// Symlinks always have mode 0o777 on Linux.
    pub fn symlink(target: &str, uid: u32, gid: u32) -> Entry {
        Entry { kind: Kind::Symlink { target: target.to_string() }, mode: 0o777, uid, gid, mtime: 0, link_group: None }
    }

    pub fn with_link_group(mut self, first_path: &str) -> Entry {
        self.link_group = Some(first_path.to_string());
        self
    }

    pub fn with_mtime(mut self, mtime: i64) -> Entry {
        self.mtime = mtime;
        self
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::File { size, sha256 } => {
                write!(f, "file {size} bytes {}", &sha256[..sha256.len().min(19)])
            }
            Kind::Dir => write!(f, "dir"),
            Kind::Symlink { target } => write!(f, "symlink -> {target}"),
            Kind::Fifo => write!(f, "fifo"),
            Kind::Socket => write!(f, "socket"),
            Kind::CharDev { major, minor } => write!(f, "chardev {major}:{minor}"),
            Kind::BlockDev { major, minor } => write!(f, "blockdev {major}:{minor}"),
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} mode {:04o} {}:{}", self.kind, self.mode, self.uid, self.gid)?;
        if let Some(g) = &self.link_group {
            write!(f, " hardlink-group {g}")?;
        }
        Ok(())
    }
}

/// Walks `dir` without following symlinks (not even `dir`'s children that are
/// symlinks to directories) and records every entry below it.
pub fn tree_snapshot(dir: impl AsRef<Path>) -> Tree {
    let root = dir.as_ref();
    let meta = fs::symlink_metadata(root).unwrap_or_else(|e| panic!("tree_snapshot: {}: {e}", root.display()));
    assert!(meta.is_dir(), "tree_snapshot: {} is not a directory", root.display());
    let mut tree = Tree::new();
    let mut inodes: HashMap<(u64, u64), Vec<String>> = HashMap::new();
    walk(root, "", &mut tree, &mut inodes);
    for paths in inodes.values() {
        if paths.len() > 1 {
            let first = paths.iter().min().unwrap().clone();
            for p in paths {
                tree.get_mut(p).unwrap().link_group = Some(first.clone());
            }
        }
    }
    tree
}

fn walk(dir: &Path, rel: &str, tree: &mut Tree, inodes: &mut HashMap<(u64, u64), Vec<String>>) {
    let rd = fs::read_dir(dir).unwrap_or_else(|e| panic!("tree_snapshot: read_dir {}: {e}", dir.display()));
    for ent in rd {
        let ent = ent.unwrap_or_else(|e| panic!("tree_snapshot: read_dir {}: {e}", dir.display()));
        let path = ent.path();
        let name = ent.file_name();
        let key = format!("{rel}/{}", name.to_string_lossy());
        let m = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("tree_snapshot: lstat {}: {e}", path.display()));
        let ft = m.file_type();
        let rdev = m.rdev();
        let (major, minor) = (((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff), (rdev & 0xff) | ((rdev >> 12) & !0xff));
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            let t = fs::read_link(&path).unwrap_or_else(|e| panic!("tree_snapshot: readlink {}: {e}", path.display()));
            Kind::Symlink { target: t.to_string_lossy().into_owned() }
        } else if ft.is_file() {
            Kind::File { size: m.len(), sha256: hash_file(&path) }
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_socket() {
            Kind::Socket
        } else if ft.is_char_device() {
            Kind::CharDev { major, minor }
        } else if ft.is_block_device() {
            Kind::BlockDev { major, minor }
        } else {
            panic!("tree_snapshot: {}: unknown file type", path.display())
        };
        if !ft.is_dir() {
            inodes.entry((m.dev(), m.ino())).or_default().push(key.clone());
        }
        tree.insert(
            key.clone(),
            Entry { kind, mode: m.mode() & 0o7777, uid: m.uid(), gid: m.gid(), mtime: m.mtime(), link_group: None },
        );
        if ft.is_dir() {
            walk(&path, &key, tree, inodes);
        }
    }
}

fn hash_file(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("tree_snapshot: open {}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).unwrap_or_else(|e| panic!("tree_snapshot: read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// What [`diff_trees`] compares besides kind/content/mode.
#[derive(Clone, Copy, Debug)]
pub struct CompareOptions {
    pub ownership: bool,
    pub mtime: bool,
    /// Compare hardlink groups (`link_group`).
    pub hardlinks: bool,
    /// Compare modes of symlinks (always 0777 on Linux, so harmless).
    pub mode: bool,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions { ownership: true, mtime: false, hardlinks: true, mode: true }
    }
}

/// Human-readable differences between `a` and `b` (empty if equal).
pub fn diff_trees(a: &Tree, b: &Tree, opts: CompareOptions) -> Vec<String> {
    let mut out = Vec::new();
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        match (a.get(k), b.get(k)) {
            (Some(x), None) => out.push(format!("- {k}: {x}   (only in left)")),
            (None, Some(y)) => out.push(format!("+ {k}: {y}   (only in right)")),
            (Some(x), Some(y)) => {
                let mut d = Vec::new();
                if x.kind != y.kind {
                    d.push(format!("{} != {}", x.kind, y.kind));
                }
                if opts.mode && x.mode != y.mode {
                    d.push(format!("mode {:04o} != {:04o}", x.mode, y.mode));
                }
                if opts.ownership && (x.uid, x.gid) != (y.uid, y.gid) {
                    d.push(format!("owner {}:{} != {}:{}", x.uid, x.gid, y.uid, y.gid));
                }
                if opts.mtime && x.mtime != y.mtime {
                    d.push(format!("mtime {} != {}", x.mtime, y.mtime));
                }
                if opts.hardlinks && x.link_group != y.link_group {
                    d.push(format!("hardlink group {:?} != {:?}", x.link_group, y.link_group));
                }
                if !d.is_empty() {
                    out.push(format!("~ {k}: {}", d.join("; ")));
                }
            }
            (None, None) => unreachable!(),
        }
    }
    out
}

/// Panics with a readable diff unless the trees match under `opts`.
pub fn assert_tree_eq_with(left: &Tree, right: &Tree, left_name: &str, right_name: &str, opts: CompareOptions) {
    let d = diff_trees(left, right, opts);
    if !d.is_empty() {
        let shown = d.len().min(200);
        panic!(
            "trees differ: left = {left_name} ({} entries), right = {right_name} ({} entries), {} differences:\n{}{}",
            left.len(),
            right.len(),
            d.len(),
            d[..shown].join("\n"),
            if d.len() > shown { "\n..." } else { "" }
        );
    }
}

/// `actual` must equal `expected` (default options: mtime ignored).
pub fn assert_tree_eq(actual: &Tree, expected: &Tree) {
    assert_tree_eq_with(actual, expected, "actual", "expected", CompareOptions::default());
}

/// Snapshots two directories and asserts they hold the same tree (the top-level
/// directories' own metadata is ignored; mtimes are ignored).
pub fn assert_same_tree(a: impl AsRef<Path>, b: impl AsRef<Path>) {
    assert_same_tree_with(a, b, CompareOptions::default())
}

pub fn assert_same_tree_with(a: impl AsRef<Path>, b: impl AsRef<Path>, opts: CompareOptions) {
    let (a, b) = (a.as_ref(), b.as_ref());
    assert_tree_eq_with(&tree_snapshot(a), &tree_snapshot(b), &a.display().to_string(), &b.display().to_string(), opts);
}
