//! Advisory file locks (flock) that make concurrent commands on one root safe.
//!
//! Two locks exist per root: the *index* lock serialises changes to the list of images, and the
//! *gc* lock keeps garbage collection (prune, rmi) from deleting blobs or snapshots that an
//! in-flight pull or load has written but not yet recorded. Writers of content take the gc lock
//! shared; collectors take it exclusive. The kernel drops a lock when its holder dies, so a
//! killed command never leaves the root locked.

use rustix::fs::{flock, FlockOperation};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// A held lock; released on drop (closing the file releases the flock).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path)
}

impl Lock {
    pub fn exclusive(path: &Path) -> io::Result<Lock> {
        let file = open(path)?;
        flock(&file, FlockOperation::LockExclusive)?;
        Ok(Lock { _file: file })
    }

    /// The exclusive lock if nobody holds it now; `None` if someone does.
    pub fn try_exclusive(path: &Path) -> io::Result<Option<Lock>> {
        let file = open(path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(Lock { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn shared(path: &Path) -> io::Result<Lock> {
        let file = open(path)?;
        flock(&file, FlockOperation::LockShared)?;
        Ok(Lock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_and_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = Lock::exclusive(&path).unwrap();
        let other = open(&path).unwrap();
        assert!(flock(&other, FlockOperation::NonBlockingLockShared).is_err());
        assert!(Lock::try_exclusive(&path).unwrap().is_none());
        drop(held);
        assert!(flock(&other, FlockOperation::NonBlockingLockShared).is_ok());
        drop(other);
        assert!(Lock::try_exclusive(&path).unwrap().is_some());
    }
}
