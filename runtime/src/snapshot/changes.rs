//! What a container changed in its root filesystem (`diff`): its overlay upper dir read
//! against the image's layers, as docker's `A` (added), `C` (changed) and `D` (deleted).
//! A directory is shown changed when its owner, mode or type differ from the image's, or
//! when anything below it is shown (as docker's, whose copied-up directories differ in
//! their times); an opaque directory (removed and made
//! again) hides everything the image had below it, which is shown deleted. strata's own
//! mountpoints (see `pack::is_placeholder`) are left out.

use super::lookup::{self, DIR_FLAGS};
use super::pack;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode};
use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Added,
    Changed,
    Deleted,
}

impl Kind {
    /// docker's letter.
    pub fn letter(self) -> char {
        match self {
            Kind::Added => 'A',
            Kind::Changed => 'C',
            Kind::Deleted => 'D',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: Kind,
    /// Absolute in the container.
    pub path: String,
}

/// The changes in `upper` over `layers` (bottom first), in path order (a directory before
/// what is in it).
pub fn changes(upper: &Path, layers: &[PathBuf], mountpoints: &BTreeSet<String>) -> std::io::Result<Vec<Change>> {
    let root = rfs::open(upper, DIR_FLAGS, Mode::empty())?;
    let mut out = Vec::new();
    walk(&root, layers, &mut Vec::new(), true, mountpoints, &mut out)?;
    Ok(out)
}

fn path_of(parent: &[String], name: &str) -> String {
    parent.iter().map(|p| format!("/{p}")).chain(std::iter::once(format!("/{name}"))).collect()
}

/// Walks the upper directory `dir` (the merged view's `parent`); `lower_visible` is false
/// below an opaque directory.
fn walk(
    dir: &OwnedFd,
    layers: &[PathBuf],
    parent: &mut Vec<String>,
    lower_visible: bool,
    mountpoints: &BTreeSet<String>,
    out: &mut Vec<Change>,
) -> std::io::Result<()> {
    for name in lookup::dir_names(dir)? {
        let path = path_of(parent, &name);
        let stat = rfs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)?;
        let kind = FileType::from_raw_mode(stat.st_mode);
        let lower = if lower_visible { lookup::entry_at(layers, parent, &name).map(|(_, s)| s) } else { None };
        if lookup::is_whiteout(&stat) {
            // A whiteout of something the image has (one of nothing is not a change).
            if lower.is_some() {
                out.push(Change { kind: Kind::Deleted, path });
            }
            continue;
        }
        let sub = match kind {
            FileType::Directory => Some(rfs::openat(dir, name.as_str(), DIR_FLAGS, Mode::empty())?),
            _ => None,
        };
        if pack::is_placeholder(mountpoints, &path, &stat, sub.as_ref()) {
            continue;
        }
        let Some(sub) = sub else {
            let kind = if lower.is_some() { Kind::Changed } else { Kind::Added };
            out.push(Change { kind, path });
            continue;
        };
        if parent.len() + 1 >= super::pack::MAX_DEPTH {
            // A container may nest directories without end: refused, not a stack overflow.
            let why = format!("more than {} directories deep", super::pack::MAX_DEPTH);
            return Err(std::io::Error::other(format!("{path}: {why}")));
        }
        let at = out.len();
        let opaque = lookup::is_opaque(&sub);
        let lower_dir = lower.filter(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory);
        parent.push(name);
        walk(&sub, layers, parent, lower_visible && !opaque, mountpoints, out)?;
        if opaque && lower_dir.is_some() {
            // What the image had here and the upper dir does not: deleted with the directory.
            let kept: BTreeSet<String> = lookup::dir_names(&sub)?.into_iter().collect();
            let mut gone = Vec::new();
            for child in lookup::list(layers, parent)? {
                if !kept.contains(&child) {
                    gone.push(Change { kind: Kind::Deleted, path: path_of(parent, &child) });
                }
            }
            out.extend(gone);
            out[at..].sort_by(|a, b| a.path.cmp(&b.path));
        }
        parent.pop();
        let below = out.len() > at;
        let kind = match lower {
            None => Some(Kind::Added),
            Some(l) if lower_dir.is_none() || l.st_mode != stat.st_mode => Some(Kind::Changed),
            Some(l) if (l.st_uid, l.st_gid) != (stat.st_uid, stat.st_gid) => Some(Kind::Changed),
            Some(_) if below => Some(Kind::Changed),
            Some(_) => None,
        };
        if let Some(kind) = kind {
            out.insert(at, Change { kind, path });
        }
        // A directory with nothing of its own that changed (only copied up to hold a
        // changed file) is not shown; what is in it is.
    }
    Ok(())
}
