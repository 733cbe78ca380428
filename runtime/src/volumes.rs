//! Named volumes, as docker's `local` driver keeps them: one directory per volume under
//! ROOT/volumes (`NAME/_data` is what containers mount, `NAME/volume.json` its record), made by
//! `strata volume create`, by `-v NAME:/dst` when NAME is new, and anonymously (a random
//! 64-hex name) by `-v /dst` or an image's `VOLUME`. Which containers use a volume is in their
//! records (`containers::Containers::volume_users`); the volume knows nothing of them.
//!
//! A volume appears whole or not at all: it is made under a temporary name and renamed into
//! place, so two creators of one name race harmlessly (the loser uses the winner's).

use crate::fsutil;
use crate::lock::Lock;
use crate::root::Root;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// What `volume inspect` shows of a volume besides its place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub name: String,
    /// RFC 3339, seconds.
    pub created_at: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Made for one container (`-v /dst`, an image's VOLUME): removed with it by `rm -v` and
    /// `run --rm`, and by `volume prune` once unused.
    #[serde(default)]
    pub anonymous: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(
        "{0:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"
    )]
    InvalidName(String),
    #[error("get {0}: no such volume")]
    NoSuchVolume(String),
    #[error("remove {name}: volume is in use - [{}]", containers.join(", "))]
    InUse { name: String, containers: Vec<String> },
    #[error("volume {name}: {context}: {source}")]
    Io { name: String, context: &'static str, source: io::Error },
    #[error("the record of volume {name} is corrupt: {source}")]
    Corrupt { name: String, source: serde_json::Error },
}

/// docker's rule for a local volume's name: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate_name(name: &str) -> Result<(), VolumeError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest: Vec<char> = chars.collect();
    let rest_ok = !rest.is_empty() && rest.iter().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(*c));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(VolumeError::InvalidName(name.to_string()))
    }
}

/// Whether a `-v` source names a volume rather than a host path (docker's reading: anything
/// not starting with `/`).
pub fn is_volume_name(source: &str) -> bool {
    !source.starts_with('/') && !source.is_empty()
}

pub struct Volumes {
    dir: PathBuf,
}

impl Volumes {
    pub fn open(root: &Root) -> Volumes {
        Volumes { dir: root.path().join("volumes") }
    }

    /// Held exclusive while volumes are made or taken into use (a container's record saved)
    /// and while they are removed, so that a removal never takes a volume a container is
    /// being given.
    pub fn lock(&self) -> Result<Lock, VolumeError> {
        self.ensure_dir()?;
        Lock::exclusive(&self.dir.join(".lock")).map_err(|source| VolumeError::Io {
            name: String::new(),
            context: "locking the volumes",
            source,
        })
    }

    /// Held while a container's start copies the image's files into the volume (one copy-up
    /// at a time per volume): `ROOT/volumes/NAME/lock`.
    pub fn lock_one(&self, name: &str) -> Result<Lock, VolumeError> {
        self.get(name)?;
        Lock::exclusive(&self.dir.join(name).join("lock")).map_err(|source| VolumeError::Io {
            name: name.to_string(),
            context: "locking",
            source,
        })
    }

    /// What containers mount: `ROOT/volumes/NAME/_data`.
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("_data")
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("volume.json")
    }

    fn ensure_dir(&self) -> Result<(), VolumeError> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir).map_err(|source| VolumeError::Io {
            name: String::new(),
            context: "creating the volumes directory",
            source,
        })
    }

    /// The volume `name` (made if missing, with `labels`), or a new anonymous one when `name`
    /// is None. Returns it and whether this call made it.
    pub fn create(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<(VolumeRecord, bool), VolumeError> {
        let (name, anonymous) = match name {
            Some(n) => {
                validate_name(n)?;
                (n.to_string(), false)
            }
            // 64 hex characters, as docker names anonymous volumes.
            None => (crate::containers::names::new_id(), true),
        };
        match self.get(&name) {
            Ok(existing) => return Ok((existing, false)),
            Err(VolumeError::NoSuchVolume(_)) => {}
            Err(e) => return Err(e),
        }
        self.ensure_dir()?;
        let io = |context, source| VolumeError::Io { name: name.clone(), context, source };
        let staging = tempfile::Builder::new().prefix(".tmp-").tempdir_in(&self.dir).map_err(|e| io("staging", e))?;
        // 0755 as docker's: the container's processes, whatever their user, reach the data;
        // the volumes directory above it (0700) keeps other host users out.
        std::fs::DirBuilder::new().mode(0o755).create(staging.path().join("_data")).map_err(|e| io("creating", e))?;
        let record =
            VolumeRecord { name: name.clone(), created_at: crate::clock::now_rfc3339_seconds(), labels, anonymous };
        let json = serde_json::to_vec_pretty(&record).expect("a volume record serialises");
        fsutil::write_atomic(&staging.path().join("volume.json"), &json).map_err(|e| io("writing its record", e))?;
        let staging = staging.keep();
        match std::fs::rename(&staging, self.dir.join(&name)) {
            Ok(()) => Ok((record, true)),
            // Made by another process meanwhile: theirs is the volume.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) => {
                let _ = fsutil::remove_tree(&staging);
                Ok((self.get(&name)?, false))
            }
            Err(e) => {
                let _ = fsutil::remove_tree(&staging);
                Err(io("creating", e))
            }
        }
    }

    pub fn get(&self, name: &str) -> Result<VolumeRecord, VolumeError> {
        if validate_name(name).is_err() {
            return Err(VolumeError::NoSuchVolume(name.to_string()));
        }
        match std::fs::read(self.record_path(name)) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| VolumeError::Corrupt { name: name.to_string(), source })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(VolumeError::NoSuchVolume(name.to_string())),
            Err(source) => Err(VolumeError::Io { name: name.to_string(), context: "reading its record", source }),
        }
    }

    /// Every volume, by name.
    pub fn list(&self) -> Vec<VolumeRecord> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut all: Vec<VolumeRecord> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| !n.starts_with('.'))
            .filter_map(|n| self.get(&n).ok())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Removes the volume and its data. Whether containers still use it is the caller's to
    /// check, under [`Volumes::lock`]. The record goes first: a removal cut short leaves no
    /// half volume that `get` would still offer.
    pub fn remove(&self, name: &str) -> Result<(), VolumeError> {
        self.get(name)?;
        let io = |context, source| VolumeError::Io { name: name.to_string(), context, source };
        let doomed = fsutil::unique_name(&self.dir, ".rm-");
        std::fs::rename(self.dir.join(name), &doomed).map_err(|e| io("removing", e))?;
        fsutil::remove_tree(&doomed).map_err(|e| io("removing its data", e))
    }

    /// Removes what an interrupted create or remove left (`.tmp-*`, `.rm-*`), under the lock
    /// (no one is making or removing a volume meanwhile).
    pub fn clean_leftovers(&self) {
        let Ok(_lock) = self.lock() else { return };
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".tmp-") || name.starts_with(".rm-") {
                let _ = fsutil::remove_tree(&e.path());
            }
        }
    }

    /// Bytes the volume's data takes.
    pub fn size(&self, name: &str) -> u64 {
        fsutil::tree_size(&self.data_dir(name))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volumes() -> (tempfile::TempDir, Volumes) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let v = Volumes::open(&root);
        (dir, v)
    }

    #[test]
    fn names_follow_dockers_rule() {
        for good in ["db", "my-data_1.0", "0x"] {
            validate_name(good).unwrap();
        }
        for bad in ["", "a", "-x", ".x", "a/b", "../x", "a b", "x:y"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        let err = validate_name("a/b").unwrap_err().to_string();
        assert_eq!(
            err,
            "\"a/b\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"
        );
    }

    #[test]
    fn create_is_idempotent_and_remove_takes_everything() {
        let (_d, v) = volumes();
        let (first, made) = v.create(Some("data"), BTreeMap::from([("a".into(), "1".into())])).unwrap();
        assert!(made && !first.anonymous);
        std::fs::write(v.data_dir("data").join("f"), "x").unwrap();
        let (again, made) = v.create(Some("data"), BTreeMap::new()).unwrap();
        assert!(!made);
        assert_eq!(again, first, "the first one's record (labels and all) stays");
        assert_eq!(std::fs::read_to_string(v.data_dir("data").join("f")).unwrap(), "x");
        let (anon, made) = v.create(None, BTreeMap::new()).unwrap();
        assert!(made && anon.anonymous && anon.name.len() == 64);
        assert_eq!(v.list().iter().map(|r| r.name.as_str()).collect::<Vec<_>>().len(), 2);
        v.remove("data").unwrap();
        assert!(matches!(v.get("data"), Err(VolumeError::NoSuchVolume(_))));
        assert!(matches!(v.remove("data"), Err(VolumeError::NoSuchVolume(_))));
        v.remove(&anon.name).unwrap();
        let left: Vec<_> = std::fs::read_dir(v.dir()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_name_that_is_a_path_is_never_looked_up() {
        let (_d, v) = volumes();
        assert!(matches!(v.get("../../etc"), Err(VolumeError::NoSuchVolume(_))));
        assert!(matches!(v.create(Some("../x"), BTreeMap::new()), Err(VolumeError::InvalidName(_))));
    }
}
