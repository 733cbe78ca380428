//! Garbage collection: remove blobs no image references, snapshots no image (or container
//! rootfs) stacks, and leftovers of killed commands in ROOT/tmp and snapshot staging; and
//! compiled wasm of modules no image holds any more ([`collect_wasm_cache`]).
//! Runs under the exclusive gc lock, so nothing in flight can be collected.

use super::store::{Store, StoreError};
use crate::digest::Digest;
use crate::fsutil::remove_tree;
use crate::snapshot::Snapshots;
use std::collections::HashSet;
use std::fs;

#[derive(Debug, Default)]
pub struct GcReport {
    pub blobs_removed: usize,
    pub snapshots_removed: usize,
    pub bytes_freed: u64,
}

/// Chain IDs that something other than an image still uses (a container's rootfs).
pub type InUse = HashSet<Digest>;

pub fn collect(store: &Store, extra_snapshots_in_use: &InUse) -> Result<GcReport, StoreError> {
    let root = store.root();
    let _gc = root.lock_gc()?;
    let mut live_blobs: HashSet<Digest> = HashSet::new();
    let mut live_snapshots: HashSet<Digest> = extra_snapshots_in_use.clone();
    for record in store.list()? {
        live_blobs.insert(record.descriptor.digest.clone());
        match store.load(&record.descriptor) {
            Ok(image) => {
                live_blobs.insert(image.id().clone());
                live_blobs.extend(image.manifest.layers.iter().map(|l| l.digest.clone()));
                if let Ok(plan) = Snapshots::plan(&image) {
                    live_snapshots.extend(plan.into_iter().map(|p| p.chain_id));
                }
            }
            // A damaged image keeps whatever it still points at; prune never makes it worse.
            Err(_) => continue,
        }
    }
    let mut report = GcReport::default();
    if let Ok(entries) = fs::read_dir(root.blobs()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let live = Digest::from_hex(&name).map(|d| live_blobs.contains(&d)).unwrap_or(false);
            if !live {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                if fs::remove_file(entry.path()).is_ok() {
                    report.blobs_removed += 1;
                    report.bytes_freed += size;
                }
            }
        }
    }
    let snapshots = Snapshots::new(root);
    for chain in snapshots.list() {
        if !live_snapshots.contains(&chain) {
            let size = crate::fsutil::tree_size(&snapshots.dir(&chain));
            if snapshots.remove(&chain).is_ok() {
                report.snapshots_removed += 1;
                report.bytes_freed += size;
            }
        }
    }
    for leftover in snapshots.staging_leftovers() {
        let _ = remove_tree(&leftover);
    }
    if let Ok(entries) = fs::read_dir(root.tmp()) {
        for entry in entries.flatten() {
            let _ = remove_tree(&entry.path()).or_else(|_| fs::remove_file(entry.path()));
        }
    }
    Ok(report)
}

/// Remove the compiled artifacts (with their `.checked` records) and stat-index entries in the
/// wasm cache at `cache_dir` of every module no wasm image in `store` holds, unless, with
/// `keep_used_within`, the artifact was read that recently (the cache is shared with strata-oci
/// and the shim, whose containers' modules no image here holds); returns the bytes freed. Run
/// it after [`collect`], so the modules of removed images are gone from the snapshots.
pub fn collect_wasm_cache(
    store: &Store,
    cache_dir: &std::path::Path,
    keep_used_within: Option<std::time::Duration>,
) -> Result<u64, GcError> {
    let _gc = store.root().lock_gc()?;
    let mut keep = super::wasm_modules::digests_in_store(store)?;
    if let Some(within) = keep_used_within {
        keep.extend(crate::executor::wasm::recently_used(cache_dir, within));
    }
    Ok(crate::executor::wasm::prune(cache_dir, &keep)?)
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Wasm(#[from] crate::executor::wasm::WasmError),
}

impl From<crate::root::RootError> for GcError {
    fn from(e: crate::root::RootError) -> GcError {
        GcError::Store(e.into())
    }
}
