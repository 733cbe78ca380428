//! Snapshots: each layer unpacked once, into its own directory keyed by chain ID
//! (`ROOT/snapshots/<chain-id-hex>/fs`, in overlayfs lower-dir form), shared by every image and
//! container that stacks it. A snapshot appears only complete: it is unpacked into a staging
//! directory, its diff_id checked, then renamed into place. A wasm layer (a raw module blob)
//! becomes a snapshot holding the module as one file (see [`wasm`]).

pub mod apply;
pub mod changes;
pub mod flatten;
pub mod lookup;
pub mod pack;
pub mod rootfs;
pub mod wasm;

use crate::digest::{chain_ids, Digest};
use crate::fsutil::{remove_tree, unique_name};
use crate::image::manifest::LayerKind;
use crate::image::store::{Image, Store};
use crate::root::Root;
use apply::{apply_layer, ApplyError, ApplyLimits, Compression};
use std::fs::{self, File};
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("layer {digest}: {source}")]
    Apply { digest: Digest, source: ApplyError },
    #[error("layer {digest} unpacks to diff_id {actual}, but the image config says {expected}")]
    DiffIdMismatch { digest: Digest, expected: Digest, actual: Digest },
    #[error("image config lists {diff_ids} diff_ids for {layers} tar layers")]
    DiffIdCount { diff_ids: usize, layers: usize },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

/// In a snapshot's directory, next to `fs`: its unpacked size in bytes.
const SIZE_FILE: &str = "size";

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> SnapshotError {
    let context = context.into();
    move |source| SnapshotError::Io { context, source }
}

/// One layer of an image, with where its snapshot lives.
#[derive(Debug, Clone)]
pub struct LayerPlan {
    pub blob: Digest,
    pub kind: LayerKind,
    /// For a wasm layer, the blob digest (the blob is the content).
    pub diff_id: Digest,
    /// For a wasm layer, [`wasm::snapshot_key`] (see there why it is not a chain).
    pub chain_id: Digest,
    /// For a wasm layer, the file name its module gets in the snapshot.
    pub wasm_file: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Snapshots {
    root: Root,
}

impl Snapshots {
    pub fn new(root: &Root) -> Snapshots {
        Snapshots { root: root.clone() }
    }

    pub fn dir(&self, chain_id: &Digest) -> PathBuf {
        self.root.snapshots().join(chain_id.hex())
    }

    /// The directory overlayfs stacks (the layer's own files).
    pub fn fs_dir(&self, chain_id: &Digest) -> PathBuf {
        self.dir(chain_id).join("fs")
    }

    pub fn exists(&self, chain_id: &Digest) -> bool {
        self.fs_dir(chain_id).is_dir()
    }

    /// The layer's unpacked size (its uncompressed tar stream, or its module), recorded when it
    /// was unpacked; None for a snapshot not there, or unpacked before sizes were recorded.
    pub fn unpacked_size(&self, chain_id: &Digest) -> Option<u64> {
        fs::read_to_string(self.dir(chain_id).join(SIZE_FILE)).ok()?.trim().parse().ok()
    }

    /// An image's unpacked size, as docker's SIZE: the sum of its layers' (a layer without a
    /// recorded size counts its compressed blob).
    pub fn image_size(&self, image: &Image) -> u64 {
        match self.layer_sizes(image) {
            Some(sizes) => sizes.iter().fold(0, |total: u64, size| total.saturating_add(*size)),
            None => image.size(),
        }
    }

    /// Each layer's unpacked size (its compressed one if not recorded), bottom first; None
    /// for an image whose layers can't be told.
    pub fn layer_sizes(&self, image: &Image) -> Option<Vec<u64>> {
        let plan = Self::plan(image).ok()?;
        let compressed =
            |l: &LayerPlan| image.manifest.layers.iter().find(|d| d.digest == l.blob).map(|d| d.size).unwrap_or(0);
        Some(plan.iter().map(|l| self.unpacked_size(&l.chain_id).unwrap_or_else(|| compressed(l))).collect())
    }

    /// The layers of an image, bottom first: tar layers paired with diff_ids and chain IDs,
    /// wasm layers (in their place in the stack) with their one-file snapshots.
    pub fn plan(image: &Image) -> Result<Vec<LayerPlan>, SnapshotError> {
        let kinds = image.manifest.layer_kinds().map_err(|e| SnapshotError::Io {
            context: "reading layers".into(),
            source: io::Error::other(e.to_string()),
        })?;
        let diff_ids = image.config.diff_ids();
        let all: Vec<_> = image.manifest.layers.iter().zip(kinds).collect();
        let tar_count = all.iter().filter(|(_, k)| *k != LayerKind::Wasm).count();
        // Configs list diff_ids either for every layer (wasm layers included, as OCI configs
        // of component images do) or for the tar layers only.
        let paired: Vec<_> = if diff_ids.len() == all.len() {
            all.into_iter().zip(diff_ids.iter()).filter(|((_, k), _)| *k != LayerKind::Wasm).collect()
        } else if diff_ids.len() == tar_count {
            all.into_iter().filter(|(_, k)| *k != LayerKind::Wasm).zip(diff_ids.iter()).collect()
        } else {
            return Err(SnapshotError::DiffIdCount { diff_ids: diff_ids.len(), layers: tar_count });
        };
        let tar_diff_ids: Vec<Digest> = paired.iter().map(|(_, d)| (*d).clone()).collect();
        let chains = chain_ids(&tar_diff_ids);
        let mut tar_plans = paired.into_iter().zip(chains).map(|(((desc, kind), diff_id), chain_id)| LayerPlan {
            blob: desc.digest.clone(),
            kind,
            diff_id: diff_id.clone(),
            chain_id,
            wasm_file: None,
        });
        let mut plans = Vec::with_capacity(image.manifest.layers.len());
        for desc in &image.manifest.layers {
            if LayerKind::from_media_type(&desc.media_type) == Some(LayerKind::Wasm) {
                let name = wasm::module_name(desc);
                plans.push(LayerPlan {
                    blob: desc.digest.clone(),
                    kind: LayerKind::Wasm,
                    diff_id: desc.digest.clone(),
                    chain_id: wasm::snapshot_key(&desc.digest, &name),
                    wasm_file: Some(name),
                });
            } else {
                plans.extend(tar_plans.next());
            }
        }
        Ok(plans)
    }

    /// Unpack one layer blob into its snapshot, unless it is there already.
    pub fn unpack(&self, store: &Store, layer: &LayerPlan, limits: &ApplyLimits) -> Result<(), SnapshotError> {
        if self.exists(&layer.chain_id) {
            return Ok(());
        }
        let staging = unique_name(&self.root.snapshots(), ".staging-");
        let fs_dir = staging.join("fs");
        fs::create_dir_all(&fs_dir).map_err(io_err(format!("creating {}", fs_dir.display())))?;
        let result = self.unpack_into(store, layer, &fs_dir, limits).map(|size| {
            // What `images` shows; a snapshot is complete without it.
            let _ = fs::write(staging.join(SIZE_FILE), size.to_string());
        });
        let result = result.and_then(|()| {
            match fs::rename(&staging, self.dir(&layer.chain_id)) {
                Ok(()) => Ok(()),
                // Someone else unpacked the same layer meanwhile: theirs is as good as ours.
                Err(_) if self.exists(&layer.chain_id) => Ok(()),
                Err(e) => Err(SnapshotError::Io { context: format!("storing snapshot {}", layer.chain_id), source: e }),
            }
        });
        if staging.exists() {
            let _ = remove_tree(&staging);
        }
        result
    }

    fn unpack_into(
        &self,
        store: &Store,
        layer: &LayerPlan,
        dest: &Path,
        limits: &ApplyLimits,
    ) -> Result<u64, SnapshotError> {
        let blob = store.blob_path(&layer.blob);
        let compression = match layer.kind {
            LayerKind::Tar => Compression::None,
            LayerKind::TarGzip => Compression::Gzip,
            LayerKind::TarZstd => Compression::Zstd,
            LayerKind::Wasm => {
                let name = layer.wasm_file.as_deref().unwrap_or("module.wasm");
                wasm::materialise(&blob, &layer.blob, name, dest)?;
                return Ok(fs::metadata(&blob).map(|m| m.len()).unwrap_or(0));
            }
        };
        let file = File::open(&blob).map_err(io_err(format!("opening layer {}", layer.blob)))?;
        // Trust the bytes over the label: docker itself detects compression by magic.
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let detected = {
            use std::io::BufRead;
            let head = reader.fill_buf().map_err(io_err(format!("reading layer {}", layer.blob)))?;
            Compression::detect(head)
        };
        let compression = if matches!(detected, Compression::None) { compression } else { detected };
        let outcome = apply_layer(reader, compression, dest, limits)
            .map_err(|source| SnapshotError::Apply { digest: layer.blob.clone(), source })?;
        let actual: Digest = outcome.diff_id.parse().map_err(|e: crate::digest::DigestError| SnapshotError::Io {
            context: "diff_id".into(),
            source: io::Error::other(e.to_string()),
        })?;
        if actual != layer.diff_id {
            return Err(SnapshotError::DiffIdMismatch {
                digest: layer.blob.clone(),
                expected: layer.diff_id.clone(),
                actual,
            });
        }
        Ok(outcome.unpacked_bytes)
    }

    /// The snapshot dirs of an image, bottom first (unpacking any that are missing).
    pub fn prepare(&self, store: &Store, image: &Image) -> Result<Vec<PathBuf>, SnapshotError> {
        let plan = Self::plan(image)?;
        let limits = ApplyLimits::default();
        for layer in &plan {
            self.unpack(store, layer, &limits)?;
        }
        Ok(plan.iter().map(|l| self.fs_dir(&l.chain_id)).collect())
    }

    /// Chain IDs of every snapshot present.
    pub fn list(&self) -> Vec<Digest> {
        let Ok(entries) = fs::read_dir(self.root.snapshots()) else { return Vec::new() };
        entries.flatten().filter_map(|e| Digest::from_hex(&e.file_name().to_string_lossy()).ok()).collect()
    }

    /// Staging leftovers of killed commands (only safe to remove under the gc lock).
    pub fn staging_leftovers(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(self.root.snapshots()) else { return Vec::new() };
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".staging-"))
            .map(|e| e.path())
            .collect()
    }

    pub fn remove(&self, chain_id: &Digest) -> io::Result<()> {
        // Rename first so a half-deleted snapshot is never mistaken for a complete one.
        let dir = self.dir(chain_id);
        let doomed = unique_name(&self.root.snapshots(), ".staging-rm-");
        match fs::rename(&dir, &doomed) {
            Ok(()) => remove_tree(&doomed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}
