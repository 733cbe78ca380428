//! A container's root filesystem: an overlay of its image's snapshots (read-only lower dirs)
//! plus its own writable upper dir, or, where overlayfs is unavailable or the `vfs` driver is
//! chosen, a flattened copy of the layers. The caller owns the mount's lifetime.

use super::flatten::flatten;
use crate::fsutil::remove_tree;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// Stack snapshots with overlayfs (the default).
    Overlay,
    /// Copy the layers into one plain directory (works on any filesystem, costs disk and time).
    Vfs,
}

impl std::str::FromStr for Driver {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "overlay" | "overlayfs" => Ok(Driver::Overlay),
            "vfs" | "copy" => Ok(Driver::Vfs),
            other => Err(format!("unknown storage driver {other:?}: expected overlay or vfs")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error("too many layers to stack with overlayfs ({0}); use --storage-driver vfs")]
    TooManyLayers(usize),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> RootfsError {
    let context = context.into();
    move |source| RootfsError::Io { context, source }
}

/// Whether the kernel may skip syncing the upper dir (overlayfs `volatile`, Linux 5.10+).
/// Unmounting an overlay syncs the whole filesystem under its upper dir (syncfs): a
/// writable layer that is thrown away when the run ends (`run --rm`) gains nothing from it,
/// and on a disk the unmount waits for every dirty page of that filesystem, anyone's. As
/// podman does for `--rm` and CRI-O for all its containers. A volatile mount leaves
/// `work/work/incompat/volatile`, which refuses a second mount of the same work dir; the
/// container's own work dir is made anew at each mount (see `containers::rootfs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpperSync {
    /// The kernel's default: the upper dir is synced on unmount and syncfs.
    Synced,
    /// Not synced (falls back to `Synced` where the kernel lacks the option).
    Volatile,
}

/// What `assemble` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assembled {
    Overlay { merged: PathBuf },
    Copy { merged: PathBuf },
}

impl Assembled {
    pub fn path(&self) -> &Path {
        match self {
            Assembled::Overlay { merged } | Assembled::Copy { merged } => merged,
        }
    }
}

/// Build a root filesystem for `layers` (bottom first) under `dir` (`upper/`, `work/`,
/// `merged/`). With `Driver::Overlay`, a failed overlay mount falls back to a copy, with a
/// warning. `dir/merged` is the root filesystem either way.
pub fn assemble(layers: &[PathBuf], dir: &Path, driver: Driver, sync: UpperSync) -> Result<Assembled, RootfsError> {
    let merged = dir.join("merged");
    fs::create_dir_all(&merged).map_err(io_err(format!("creating {}", merged.display())))?;
    if driver == Driver::Overlay {
        match mount_overlay(layers, dir, &merged, sync) {
            Ok(()) => return Ok(Assembled::Overlay { merged }),
            Err(e) => {
                tracing::warn!("overlayfs unavailable ({e}); falling back to a flattened copy of the layers");
                eprintln!("warning: overlayfs unavailable ({e}); using a flattened copy of the layers");
            }
        }
    }
    flatten(layers, &merged).map_err(|e| RootfsError::Io {
        context: format!("copying layers into {}", merged.display()),
        source: io::Error::other(e.to_string()),
    })?;
    Ok(Assembled::Copy { merged })
}

/// The kernel takes mount options in one page.
const MAX_OPTIONS: usize = 4000;

fn mount_overlay(layers: &[PathBuf], dir: &Path, merged: &Path, sync: UpperSync) -> Result<(), RootfsError> {
    let upper = dir.join("upper");
    let work = dir.join("work");
    for d in [&upper, &work] {
        fs::create_dir_all(d).map_err(io_err(format!("creating {}", d.display())))?;
    }
    // An image with no tar layers (e.g. a wasm artifact) still gets an (empty) root.
    let empty = dir.join("empty");
    let lowers: Vec<String> = if layers.is_empty() {
        fs::create_dir_all(&empty).map_err(io_err("creating empty lower dir"))?;
        vec![empty.display().to_string()]
    } else {
        layers.iter().rev().map(|p| p.display().to_string()).collect()
    };
    let data =
        format!("lowerdir={},upperdir={},workdir={},index=off", lowers.join(":"), upper.display(), work.display());
    if data.len() >= MAX_OPTIONS {
        return Err(RootfsError::TooManyLayers(layers.len()));
    }
    let mount = |data: String| {
        let data = std::ffi::CString::new(data).map_err(|_| RootfsError::Io {
            context: "overlay options".into(),
            source: io::Error::other("layer path contains a NUL byte"),
        })?;
        rustix::mount::mount("overlay", merged, "overlay", rustix::mount::MountFlags::empty(), Some(data.as_c_str()))
            .map_err(|e| RootfsError::Io {
                context: format!("mounting overlay on {}", merged.display()),
                source: e.into(),
            })
    };
    match sync {
        UpperSync::Synced => mount(data),
        // No room left in the page for the option: without it.
        UpperSync::Volatile if data.len() + ",volatile".len() >= MAX_OPTIONS => mount(data),
        // A kernel before 5.10 refuses the option it does not know (EINVAL): mount without.
        UpperSync::Volatile => mount(format!("{data},volatile")).or_else(|e| match e {
            RootfsError::Io { ref source, .. } if source.raw_os_error() == Some(libc::EINVAL) => mount(data),
            e => Err(e),
        }),
    }
}

/// Undo `assemble`: unmount (if mounted) and remove `dir`.
pub fn disassemble(dir: &Path) -> Result<(), RootfsError> {
    let merged = dir.join("merged");
    match rustix::mount::unmount(&merged, rustix::mount::UnmountFlags::DETACH) {
        Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => {
            return Err(RootfsError::Io { context: format!("unmounting {}", merged.display()), source: e.into() })
        }
    }
    remove_tree(dir).map_err(io_err(format!("removing {}", dir.display())))
}

/// Whether `path` is a mount point (its device differs from its parent's, or it is listed
/// in /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let wanted = path.to_string_lossy();
    crate::sandbox::mounts::mount_points().iter().any(|m| m.target == wanted)
}
