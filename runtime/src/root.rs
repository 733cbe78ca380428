//! The on-disk layout of one strata root (`--root`, default `/var/lib/strata`).
//!
//! ```text
//! ROOT/images/        OCI image layout (oci-layout, index.json, blobs/sha256/...), readable by
//!                     skopeo (`oci:ROOT/images:NAME`) and umoci as is
//! ROOT/snapshots/     one directory per unpacked layer, keyed by chain ID
//! ROOT/mounts/        root filesystems assembled from snapshots (upper, work, merged)
//! ROOT/tmp/           partial downloads and staging; anything here is garbage once unlocked
//! ROOT/cache/wasm/    compiled wasm (`executor::wasm`'s artifact cache), filled by pull and runs
//! ROOT/volumes/       named volumes (`volumes`): NAME/_data, NAME/volume.json
//! ROOT/config.json    settings (e.g. {"insecure-registries": ["host:port"]})
//! ROOT/*.lock         see `lock`
//! ```
//! Two roots never share anything, so tests and users can run several side by side.

use crate::lock::Lock;
use serde::Deserialize;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

pub const DEFAULT_ROOT: &str = "/var/lib/strata";

#[derive(Debug, Clone)]
pub struct Root {
    path: PathBuf,
}

/// Settings read from ROOT/config.json.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RootConfig {
    #[serde(default)]
    pub insecure_registries: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("cannot create strata root {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("invalid {path}: {source}")]
    Config { path: PathBuf, source: serde_json::Error },
    #[error("cannot lock {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },
}

impl Root {
    /// Open (creating if needed) a root. Directories are 0700: snapshots may hold setuid
    /// binaries and device nodes from images, which no other host user may reach.
    pub fn open(path: impl Into<PathBuf>) -> Result<Root, RootError> {
        let path: PathBuf = path.into();
        let path =
            if path.is_absolute() { path } else { std::env::current_dir().map(|d| d.join(&path)).unwrap_or(path) };
        let root = Root { path };
        for dir in [root.path.clone(), root.images(), root.blobs(), root.snapshots(), root.mounts(), root.tmp()] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|source| RootError::Create { path: dir.clone(), source })?;
        }
        Ok(root)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn images(&self) -> PathBuf {
        self.path.join("images")
    }
    pub fn blobs(&self) -> PathBuf {
        self.path.join("images/blobs/sha256")
    }
    pub fn snapshots(&self) -> PathBuf {
        self.path.join("snapshots")
    }
    pub fn mounts(&self) -> PathBuf {
        self.path.join("mounts")
    }
    pub fn tmp(&self) -> PathBuf {
        self.path.join("tmp")
    }
    pub fn containers(&self) -> PathBuf {
        self.path.join("containers")
    }
    /// The compiled-wasm cache of this root (created on first use by the cache itself).
    pub fn wasm_cache(&self) -> PathBuf {
        self.path.join("cache/wasm")
    }

    pub fn config(&self) -> Result<RootConfig, RootError> {
        let path = self.path.join("config.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| RootError::Config { path, source }),
            Err(_) => Ok(RootConfig::default()),
        }
    }

    /// Serialises changes to the image index.
    pub fn lock_index(&self) -> Result<Lock, RootError> {
        let path = self.path.join("index.lock");
        Lock::exclusive(&path).map_err(|source| RootError::Lock { path, source })
    }

    /// Held shared by anything that writes content it has not recorded yet.
    pub fn lock_content(&self) -> Result<Lock, RootError> {
        let path = self.path.join("gc.lock");
        Lock::shared(&path).map_err(|source| RootError::Lock { path, source })
    }

    /// Held exclusive by garbage collection.
    pub fn lock_gc(&self) -> Result<Lock, RootError> {
        let path = self.path.join("gc.lock");
        Lock::exclusive(&path).map_err(|source| RootError::Lock { path, source })
    }
}
