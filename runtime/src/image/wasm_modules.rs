//! The WebAssembly modules a wasm image holds: every regular file in its snapshots that starts
//! with the wasm magic (its entrypoint and any other module a container may run), as the
//! merged root filesystem shows them. `pull` and `load` precompile them into the compiled-code
//! cache and `image prune` keeps the cache entries of exactly these (by content digest).
//!
//! Native images are never searched: they may hold wasm files, but strata runs those only in
//! a wasm image. This module reads snapshots; it never unpacks, compiles or writes.

use super::classify::{classify, Kind};
use super::store::{Image, Store, StoreError};
use crate::digest::{Digest, Hasher};
use crate::snapshot::Snapshots;
use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// Directories deeper than this are not searched (a hostile layer cannot make us recurse
/// without end; images nest far less).
const MAX_DEPTH: usize = 64;

/// A module file of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleFile {
    /// Its path inside the image, e.g. `/hello.wasm`.
    pub image_path: String,
    /// Where its bytes are on the host (in the snapshot of the topmost layer that has it).
    pub host_path: PathBuf,
}

/// The modules in the merged view of `layers` (snapshot dirs, bottom first), sorted by path.
/// A path whose topmost entry is not a wasm file (or a whiteout) hides the ones below.
pub fn find(layers: &[PathBuf]) -> Vec<ModuleFile> {
    // image path -> Some(host path) if the topmost entry is a wasm file, None if it hides it.
    let mut seen: BTreeMap<String, Option<PathBuf>> = BTreeMap::new();
    for layer in layers.iter().rev() {
        walk(layer, Path::new(""), 0, &mut |rel, host, is_wasm| {
            let key = format!("/{}", rel.display());
            seen.entry(key).or_insert_with(|| is_wasm.then(|| host.to_path_buf()));
        });
    }
    seen.into_iter()
        .filter_map(|(image_path, host)| host.map(|host_path| ModuleFile { image_path, host_path }))
        .collect()
}

/// Call `f(relative path, host path, is a wasm file)` for every non-directory entry.
fn walk(base: &Path, rel: &Path, depth: usize, f: &mut impl FnMut(&Path, &Path, bool)) {
    if depth > MAX_DEPTH {
        return;
    }
    let Ok(entries) = fs::read_dir(base.join(rel)) else { return };
    for entry in entries.flatten() {
        let Ok(file_type) = entry.file_type() else { continue };
        let rel = rel.join(entry.file_name());
        let host = entry.path();
        if file_type.is_dir() {
            walk(base, &rel, depth + 1, f);
        } else {
            // Whiteouts (char 0/0), symlinks and other entries hide what is below them.
            let is_wasm = file_type.is_file() && !file_type.is_char_device() && starts_with_magic(&host);
            f(&rel, &host, is_wasm);
        }
    }
}

fn starts_with_magic(path: &Path) -> bool {
    let mut head = [0u8; 4];
    File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head == WASM_MAGIC
}

/// The sha256 of a module file (the compiled-code cache's key).
pub fn digest_of(path: &Path) -> io::Result<Digest> {
    let mut file = File::open(path)?;
    let mut hasher = Hasher::default();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(hasher.finish()),
            n => hasher.update(&buf[..n]),
        }
    }
}

/// The modules of `image` if it is a wasm image, from its snapshots that exist now (unpacked
/// ones only: this never unpacks). The module of a wasm layer counts whatever its bytes are
/// (its media type says it is one; compiling it is what finds out otherwise).
pub fn of_image(snapshots: &Snapshots, image: &Image) -> Vec<ModuleFile> {
    let plan: Vec<_> =
        Snapshots::plan(image).unwrap_or_default().into_iter().filter(|p| snapshots.exists(&p.chain_id)).collect();
    let layers: Vec<PathBuf> = plan.iter().map(|p| snapshots.fs_dir(&p.chain_id)).collect();
    if classify(image, &layers).kind != Kind::Wasm {
        return Vec::new();
    }
    let mut modules = find(&layers);
    for p in &plan {
        let Some(name) = &p.wasm_file else { continue };
        let image_path = format!("/{name}");
        if !modules.iter().any(|m| m.image_path == image_path) {
            modules.push(ModuleFile { image_path, host_path: snapshots.fs_dir(&p.chain_id).join(name) });
        }
    }
    modules
}

/// The digests of every module of every wasm image in `store`: what the compiled-code cache
/// must keep. A damaged image or unreadable file is skipped (it has nothing to run).
pub fn digests_in_store(store: &Store) -> Result<HashSet<Digest>, StoreError> {
    let snapshots = Snapshots::new(store.root());
    let mut digests = HashSet::new();
    for record in store.list()? {
        let Ok(image) = store.load(&record.descriptor) else { continue };
        for module in of_image(&snapshots, &image) {
            if let Ok(d) = digest_of(&module.host_path) {
                digests.insert(d);
            }
        }
    }
    Ok(digests)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    fn write(path: &Path, bytes: &[u8]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn finds_wasm_files_through_the_layers() {
        let tmp = tempfile::tempdir().unwrap();
        let (low, high) = (tmp.path().join("low"), tmp.path().join("high"));
        write(&low.join("app.wasm"), MODULE);
        write(&low.join("bin/tool.wasm"), MODULE);
        write(&low.join("replaced.wasm"), MODULE);
        write(&low.join("removed.wasm"), MODULE);
        write(&low.join("etc/notes.txt"), b"text");
        write(&high.join("replaced.wasm"), b"#!/bin/sh\n");
        write(&high.join("lib/new.wasm"), MODULE);
        fs::create_dir_all(&high).unwrap();
        // An overlayfs whiteout hides the lower file.
        rustix::fs::mknodat(
            rustix::fs::CWD,
            high.join("removed.wasm").as_path(),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let found = find(&[low.clone(), high.clone()]);
        let paths: Vec<&str> = found.iter().map(|m| m.image_path.as_str()).collect();
        assert_eq!(paths, ["/app.wasm", "/bin/tool.wasm", "/lib/new.wasm"]);
        assert_eq!(found[2].host_path, high.join("lib/new.wasm"));
        assert_eq!(digest_of(&found[0].host_path).unwrap(), Digest::of_bytes(MODULE));
    }
}
