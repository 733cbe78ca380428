//! What containers do with named volumes (`crate::volumes` keeps them): at create, each named
//! volume a container asks for gets its directory (made if new) and each `VOLUME` of its image
//! that nothing else is mounted on an anonymous volume; at start, a new, empty volume gets the
//! image's files at its destination (docker's copy-up); at `rm -v` and `run --rm`, the
//! container's anonymous volumes go. Which containers use a volume is read from their records.

use super::record::ContainerRecord;
use super::{ContainerError, Containers};
use crate::spec::run_options::{RunOptions, Volume};
use crate::volumes::{VolumeError, Volumes};
use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Fills in the source of each named volume in `options` (making new ones; an anonymous one
/// gets its name) and adds an anonymous volume for each of `image_volumes` that no volume,
/// bind or tmpfs of `options` covers. The caller holds [`Volumes::lock`] until the record
/// is saved. Returns the anonymous volumes it made (for the caller to remove should the
/// record not be saved); on error, it has removed them itself.
pub(super) fn attach(
    volumes: &Volumes,
    options: &mut RunOptions,
    image_volumes: &[String],
) -> Result<Vec<String>, ContainerError> {
    let taken: Vec<String> = options
        .volumes
        .iter()
        .map(|v| v.destination.clone())
        .chain(options.tmpfs.iter().map(|t| t.destination.clone()))
        .collect();
    for destination in image_volumes {
        let destination = clean(destination);
        if destination != "/" && !taken.contains(&destination) {
            options.volumes.push(Volume {
                destination,
                volume: Some(String::new()),
                anonymous: true,
                ..Default::default()
            });
        }
    }
    let mut made_anonymous: Vec<String> = Vec::new();
    for v in options.volumes.iter_mut() {
        let Some(name) = &v.volume else { continue };
        let wanted = (!name.is_empty()).then_some(name.as_str());
        let made = volumes.create(wanted, BTreeMap::new());
        let (record, _) = match made {
            Ok(ok) => ok,
            Err(e) => {
                for name in &made_anonymous {
                    let _ = volumes.remove(name);
                }
                return Err(e.into());
            }
        };
        if record.anonymous {
            made_anonymous.push(record.name.clone());
        }
        v.source = volumes.data_dir(&record.name);
        v.volume = Some(record.name);
    }
    Ok(made_anonymous)
}

/// `/a/./b/` as `/a/b`.
fn clean(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    format!("/{}", parts.join("/"))
}

/// The containers whose records name volume `name`.
pub fn users(c: &Containers, name: &str) -> Vec<ContainerRecord> {
    c.list().into_iter().filter(|r| uses(r, name)).collect()
}

fn uses(r: &ContainerRecord, name: &str) -> bool {
    r.options.volumes.iter().any(|v| v.volume.as_deref() == Some(name))
}

/// Removes `name` unless a container uses it: docker's `volume rm` (with `force`, a volume
/// that does not exist is no error).
pub fn remove(c: &Containers, name: &str, force: bool) -> Result<(), ContainerError> {
    let volumes = Volumes::open(c.root());
    let _lock = volumes.lock()?;
    let users = users(c, name);
    if !users.is_empty() {
        let containers = users.iter().map(|r| r.id.clone()).collect();
        return Err(VolumeError::InUse { name: name.to_string(), containers }.into());
    }
    match volumes.remove(name) {
        Err(VolumeError::NoSuchVolume(_)) if force => Ok(()),
        other => Ok(other?),
    }
}

/// After `record`'s container is gone: removes its anonymous volumes that no other container
/// uses (docker's `rm -v`, and `run --rm`). Named volumes stay, as docker keeps them.
pub fn remove_anonymous(c: &Containers, record: &ContainerRecord) -> Result<(), ContainerError> {
    let anonymous: Vec<&str> =
        record.options.volumes.iter().filter(|v| v.anonymous).filter_map(|v| v.volume.as_deref()).collect();
    if anonymous.is_empty() {
        return Ok(());
    }
    let volumes = Volumes::open(c.root());
    let _lock = volumes.lock()?;
    let others: Vec<ContainerRecord> = c.list().into_iter().filter(|r| r.id != record.id).collect();
    for name in anonymous {
        if others.iter().any(|r| uses(r, name)) {
            continue;
        }
        match volumes.remove(name) {
            Ok(()) | Err(VolumeError::NoSuchVolume(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// docker's copy-up, before the container starts: a volume that is still empty gets what the
/// image holds at its destination (files, their owners and modes), unless `no_copy`. The
/// destination is resolved inside `rootfs` (an image's symlink never leads outside it), and
/// nothing is followed while copying.
pub(super) fn populate(volumes: &[Volume], rootfs: &Path) -> Result<(), ContainerError> {
    for v in volumes.iter().filter(|v| v.volume.is_some() && !v.no_copy) {
        let io = |context: String| move |source: std::io::Error| ContainerError::Io { context, source };
        if !is_empty_dir(&v.source) {
            continue;
        }
        let root = open_dir(rootfs).map_err(io(format!("opening {}", rootfs.display())))?;
        let Some(source) = resolve_in_root(&root, &v.destination) else { continue };
        let from = PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&source)));
        let name = v.volume.as_deref().unwrap_or_default();
        copy_tree(&from, &v.source).map_err(io(format!("copying the image's {} into volume {name}", v.destination)))?;
    }
    Ok(())
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(false)
}

fn open_dir(path: &Path) -> std::io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    Ok(rustix::fs::open(path, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?)
}

/// The directory at `path` inside `root` (RESOLVE_IN_ROOT: symlinks and `..` stay inside);
/// None when it is not there or not a directory (nothing to copy).
fn resolve_in_root(root: &OwnedFd, path: &str) -> Option<OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let relative = path.trim_start_matches('/');
    let relative = if relative.is_empty() { "." } else { relative };
    rustix::fs::openat2(
        root.as_fd(),
        relative,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .ok()
}

/// Copies the tree at `from` into the existing directory `to`: directories, regular files
/// and symlinks (as links), with owners and modes; `to` takes `from`'s owner and mode too.
/// Other kinds of files are left out.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    copy_owner_and_mode(&std::fs::metadata(from)?, to)?;
    for entry in walkdir::WalkDir::new(from).min_depth(1).follow_links(false) {
        let entry = entry.map_err(std::io::Error::other)?;
        let relative = entry.path().strip_prefix(from).map_err(std::io::Error::other)?;
        let target = to.join(relative);
        let md = entry.path().symlink_metadata()?;
        let kind = md.file_type();
        if kind.is_dir() {
            std::fs::create_dir(&target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
            std::os::unix::fs::lchown(&target, Some(md.uid()), Some(md.gid()))?;
            continue;
        } else {
            tracing::warn!("volume copy-up: {} is not a file, directory or link; left out", entry.path().display());
            continue;
        }
        copy_owner_and_mode(&md, &target)?;
    }
    Ok(())
}

fn copy_owner_and_mode(md: &std::fs::Metadata, target: &Path) -> std::io::Result<()> {
    std::os::unix::fs::lchown(target, Some(md.uid()), Some(md.gid()))?;
    // After the owner: chown clears the setuid and setgid bits.
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(md.mode() & 0o7777))
}
