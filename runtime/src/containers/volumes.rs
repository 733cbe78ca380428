//! What containers do with named volumes (`crate::volumes` keeps them): at create, each named
//! volume a container asks for gets its directory (made if new) and each `VOLUME` of its image
//! that nothing else is mounted on an anonymous volume; at start, a new, empty volume gets the
//! image's files at its destination (docker's copy-up); at `rm -v` and `run --rm`, the
//! container's anonymous volumes go. Which containers use a volume is read from their records.

use super::copy;
use super::record::ContainerRecord;
use super::{ContainerError, Containers};
use crate::spec::run_options::{RunOptions, Volume};
use crate::volumes::{VolumeError, Volumes};
use std::collections::BTreeMap;
use std::path::Path;

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
        let volume = Volume::from_image(destination)
            .map_err(|e| ContainerError::ImageVolume(format!("the image's VOLUME {destination}: {e}")))?;
        if !taken.contains(&volume.destination) {
            options.volumes.push(volume);
        }
    }
    let mut made_anonymous: Vec<String> = Vec::new();
    for v in options.volumes.iter_mut() {
        let Some(name) = &v.volume else { continue };
        let wanted = (!name.is_empty()).then_some(name.as_str());
        let made = volumes.create(wanted, BTreeMap::new());
        let (record, made) = match made {
            Ok(ok) => ok,
            Err(e) => {
                for name in &made_anonymous {
                    let _ = volumes.remove(name);
                }
                return Err(e.into());
            }
        };
        // Only what this call made: `-v NAME` of another container's anonymous volume names it.
        if made && record.anonymous {
            made_anonymous.push(record.name.clone());
        }
        v.source = volumes.data_dir(&record.name);
        v.volume = Some(record.name);
    }
    Ok(made_anonymous)
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
/// copy is `copy::populate`'s: the destination resolved inside `rootfs`, and both trees
/// walked fd by fd without following links, so neither an image's symlink nor another
/// container that has the volume mounted can steer it outside. The volume's own lock makes
/// two first starts at once copy once.
pub(super) fn populate(store: &Volumes, volumes: &[Volume], rootfs: &Path) -> Result<(), ContainerError> {
    for v in volumes.iter().filter(|v| !v.no_copy) {
        let Some(name) = v.volume.as_deref() else { continue };
        let _lock = store.lock_one(name)?;
        if !is_empty_dir(&v.source) {
            continue;
        }
        let io = |context: String| move |source: std::io::Error| ContainerError::Io { context, source };
        let root = copy::open_root(rootfs).map_err(io(format!("opening {}", rootfs.display())))?;
        let data = copy::open_root(&v.source).map_err(io(format!("opening volume {name}")))?;
        copy::populate(copy::Place { root: &root, path: &v.destination }, &data).map_err(|e| {
            ContainerError::Copy(format!("copying the image's {} into volume {name}: {e}", v.destination))
        })?;
    }
    Ok(())
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(false)
}
