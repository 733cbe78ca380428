//! A container's root filesystem across runs: assembled (overlay of the image's snapshots
//! and the container's own upper dir) when a run starts, unmounted when it ends. The upper
//! dir, which holds everything the container wrote, stays until the container is removed.
//! With the copy driver (or no overlayfs) `merged` is a flattened copy made once and kept.

use super::{io_err, ContainerError, Paths};
use crate::snapshot::rootfs::{self, Assembled, Driver, UpperSync};
use std::fs;
use std::path::{Path, PathBuf};

/// Assemble the rootfs for a run; returns the path to use as the container's root. A
/// container removed when its run ends (`--rm`) gets an upper dir the kernel never syncs.
pub fn mount(paths: &Paths, layers: &[PathBuf], driver: Driver, auto_remove: bool) -> Result<PathBuf, ContainerError> {
    let merged = paths.merged();
    if paths.copied_marker().exists() {
        return Ok(merged);
    }
    // A run that crashed may have left its overlay mounted: start from a clean mountpoint.
    unmount(paths)?;
    let sync = if auto_remove { UpperSync::Volatile } else { UpperSync::Synced };
    match rootfs::assemble(layers, &paths.rootfs_dir(), driver, sync)? {
        Assembled::Overlay { merged } => Ok(merged),
        Assembled::Copy { merged } => {
            fs::write(paths.copied_marker(), b"").map_err(io_err("marking the copied rootfs"))?;
            Ok(merged)
        }
    }
}

/// Undo `mount`, keeping the upper dir (and a copied rootfs). Idempotent.
pub fn unmount(paths: &Paths) -> Result<(), ContainerError> {
    if paths.copied_marker().exists() {
        return Ok(());
    }
    let merged = paths.merged();
    detach(&merged)?;
    match fs::remove_dir(&merged) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // Files, yet no mount (every one was just detached) and no mark of a finished copy: a
        // copy of the layers cut short (a full disk, a killed monitor). It goes; the next run
        // copies anew. Left, it failed every later start and `rm -f`.
        Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => crate::fsutil::remove_tree(&merged)
            .map_err(io_err(format!("removing the unfinished copy {}", merged.display())))?,
        Err(e) => return Err(ContainerError::Io { context: format!("removing {}", merged.display()), source: e }),
    }
    crate::fsutil::remove_tree(&paths.work()).map_err(io_err(format!("removing {}", paths.work().display())))?;
    crate::fsutil::remove_tree(&paths.rootfs_dir().join("empty")).map_err(io_err("removing the empty lower dir"))
}

/// Whether a run's rootfs may still be mounted (the mountpoint exists).
pub fn maybe_mounted(paths: &Paths) -> bool {
    !paths.copied_marker().exists() && paths.merged().exists()
}

fn detach(path: &Path) -> Result<(), ContainerError> {
    // Repeat: an earlier crash may have stacked more than one mount on the same point.
    loop {
        match rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH) {
            Ok(()) => continue,
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => {
                return Err(ContainerError::Io { context: format!("unmounting {}", path.display()), source: e.into() })
            }
        }
    }
}
