//! The image store: an OCI image layout under `ROOT/images` holding every blob by digest and,
//! in `index.json`, one descriptor per named image (annotation
//! `org.opencontainers.image.ref.name` = the full normalised reference, e.g.
//! `docker.io/library/busybox:latest`), so skopeo and umoci can read it as is.
//!
//! Invariants: a blob file exists only once its bytes matched its digest (written to
//! `ROOT/tmp`, verified, renamed into place); `index.json` is replaced atomically and only
//! after every blob it points to is present. A command killed at any point leaves at worst
//! unreferenced blobs, which `image prune` collects.

use super::manifest::{parse_document, Descriptor, Document, ImageConfig, Index, Manifest, ManifestError};
use super::reference::{ImageRef, ReferenceError};
use crate::digest::{Digest, HashingWriter};
use crate::fsutil::{unique_name, write_atomic};
use crate::root::{Root, RootError};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Root(#[from] RootError),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error("blob {expected} is corrupt: its content hashes to {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest} has {actual} bytes, but {expected} were expected")]
    SizeMismatch { digest: Digest, expected: u64, actual: u64 },
    #[error("blob {0} is missing from the store")]
    MissingBlob(Digest),
    #[error("the store's index.json is corrupt: {0}")]
    CorruptIndex(serde_json::Error),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("No such image: {0}")]
    NoSuchImage(String),
    #[error("{0} is an image index, not an image manifest")]
    NotAnImage(Digest),
    #[error("image config {digest} is invalid: {source}")]
    BadConfig { digest: Digest, source: serde_json::Error },
    #[error("{input:?} matches more than one image: {candidates}")]
    Ambiguous { input: String, candidates: String },
}

pub fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

/// One entry of the index: an image manifest, maybe with a name.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    pub name: Option<ImageRef>,
    pub descriptor: Descriptor,
}

/// An image with its documents loaded and verified.
#[derive(Debug, Clone)]
pub struct Image {
    pub names: Vec<ImageRef>,
    pub descriptor: Descriptor,
    pub manifest: Manifest,
    pub manifest_bytes: Vec<u8>,
    pub config: ImageConfig,
    pub config_bytes: Vec<u8>,
}

impl Image {
    /// Docker's image ID: the config digest.
    pub fn id(&self) -> &Digest {
        &self.manifest.config.digest
    }
    pub fn digest(&self) -> &Digest {
        &self.descriptor.digest
    }
    /// Sum of the layer blob sizes plus the config (what docker reports as the image size).
    pub fn size(&self) -> u64 {
        // Declared sizes are the image's word: summed without overflowing.
        self.manifest.layers.iter().fold(self.manifest.config.size, |total, l| total.saturating_add(l.size))
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    root: Root,
}

impl Store {
    pub fn open(root: &Root) -> Result<Store, StoreError> {
        let store = Store { root: root.clone() };
        let layout = root.images().join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_err("writing oci-layout"))?;
        }
        let index = root.images().join("index.json");
        if !index.exists() {
            let _lock = root.lock_index()?;
            if !index.exists() {
                store.write_index(&[])?;
            }
        }
        Ok(store)
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.blobs().join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Read a (small) blob and check it still matches its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let bytes = fs::read(self.blob_path(digest)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::MissingBlob(digest.clone()),
            _ => StoreError::Io { context: format!("reading blob {digest}"), source: e },
        })?;
        let actual = Digest::of_bytes(&bytes);
        if &actual != digest {
            return Err(StoreError::DigestMismatch { expected: digest.clone(), actual });
        }
        Ok(bytes)
    }

    /// Store bytes whose digest is computed here (or checked against `expected`).
    pub fn write_blob(&self, bytes: &[u8], expected: Option<&Digest>) -> Result<Digest, StoreError> {
        let actual = Digest::of_bytes(bytes);
        if let Some(expected) = expected {
            if expected != &actual {
                return Err(StoreError::DigestMismatch { expected: expected.clone(), actual });
            }
        }
        if !self.has_blob(&actual) {
            let mut w = self.blob_writer()?;
            w.write_all(bytes).map_err(io_err("writing blob"))?;
            w.commit(Some(&actual), Some(bytes.len() as u64))?;
        }
        Ok(actual)
    }

    /// A writer for a blob of not-yet-known (or to-be-verified) digest, staged in ROOT/tmp.
    pub fn blob_writer(&self) -> Result<BlobWriter, StoreError> {
        let path = unique_name(&self.root.tmp(), "blob-");
        let file = File::create(&path).map_err(io_err(format!("creating {}", path.display())))?;
        Ok(BlobWriter {
            inner: Some(HashingWriter::new(BufWriter::with_capacity(1 << 20, file))),
            tmp: path,
            blobs: self.root.blobs(),
        })
    }

    fn index_path(&self) -> PathBuf {
        self.root.images().join("index.json")
    }

    fn read_index(&self) -> Result<Index, StoreError> {
        let bytes = fs::read(self.index_path()).map_err(io_err("reading index.json"))?;
        serde_json::from_slice(&bytes).map_err(StoreError::CorruptIndex)
    }

    fn write_index(&self, manifests: &[Descriptor]) -> Result<(), StoreError> {
        let index = Index {
            schema_version: 2,
            media_type: Some(super::manifest::media::OCI_INDEX.into()),
            manifests: manifests.to_vec(),
            annotations: BTreeMap::new(),
        };
        let bytes = serde_json::to_vec(&index).expect("index serialises");
        write_atomic(&self.index_path(), &bytes).map_err(io_err("writing index.json"))
    }

    /// Every image entry, named or not.
    pub fn list(&self) -> Result<Vec<ImageRecord>, StoreError> {
        Ok(self
            .read_index()?
            .manifests
            .into_iter()
            .map(|d| ImageRecord {
                name: d.annotations.get(REF_NAME).and_then(|n| ImageRef::parse(n).ok()),
                descriptor: d,
            })
            .collect())
    }

    /// Record `descriptor` under `name` (replacing whatever had that name), or as an unnamed
    /// image if `name` is None and no entry points at it yet.
    pub fn record(&self, name: Option<&ImageRef>, descriptor: &Descriptor) -> Result<(), StoreError> {
        let _lock = self.root.lock_index()?;
        let mut entries = self.read_index()?.manifests;
        let mut desc = descriptor.clone();
        desc.annotations.remove(REF_NAME);
        desc.annotations.remove(CONTAINERD_NAME);
        match name {
            Some(name) => {
                let n = name.to_string();
                entries.retain(|d| d.annotations.get(REF_NAME) != Some(&n));
                // An unnamed entry for the same manifest is superseded by the named one.
                entries.retain(|d| d.digest != desc.digest || d.annotations.contains_key(REF_NAME));
                desc.annotations.insert(REF_NAME.into(), n.clone());
                desc.annotations.insert(CONTAINERD_NAME.into(), n);
            }
            None => {
                if entries.iter().any(|d| d.digest == desc.digest) {
                    return Ok(());
                }
            }
        }
        entries.push(desc);
        self.write_index(&entries)
    }

    /// Remove entries. `keep` decides per entry; returns the removed ones.
    pub fn remove_entries(&self, mut remove: impl FnMut(&ImageRecord) -> bool) -> Result<Vec<ImageRecord>, StoreError> {
        let _lock = self.root.lock_index()?;
        let mut kept = Vec::new();
        let mut removed = Vec::new();
        for record in self.list()? {
            if remove(&record) {
                removed.push(record);
            } else {
                kept.push(record.descriptor);
            }
        }
        if !removed.is_empty() {
            self.write_index(&kept)?;
        }
        Ok(removed)
    }

    /// Load an image manifest and its config, verified against their digests.
    pub fn load(&self, descriptor: &Descriptor) -> Result<Image, StoreError> {
        let manifest_bytes = self.read_blob(&descriptor.digest)?;
        let manifest = match parse_document(&manifest_bytes, Some(&descriptor.media_type))? {
            Document::Manifest(m) => *m,
            Document::Index(_) => return Err(StoreError::NotAnImage(descriptor.digest.clone())),
        };
        let config_bytes = self.read_blob(&manifest.config.digest)?;
        let mut config: ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(|source| StoreError::BadConfig { digest: manifest.config.digest.clone(), source })?;
        // A wasm artifact without an entrypoint runs its module (the bytes stay as they are).
        crate::snapshot::wasm::complete_config(&manifest, &mut config);
        let names = self
            .list()?
            .into_iter()
            .filter(|r| r.descriptor.digest == descriptor.digest)
            .filter_map(|r| r.name)
            .collect();
        Ok(Image { names, descriptor: descriptor.clone(), manifest, manifest_bytes, config, config_bytes })
    }

    /// Find an image the way docker does: by full or short ID (config digest), by manifest
    /// digest, or by reference (`busybox` means `docker.io/library/busybox:latest`).
    pub fn resolve(&self, input: &str) -> Result<Image, StoreError> {
        let records = self.list()?;
        let hex_part = input.strip_prefix("sha256:").unwrap_or(input);
        let looks_like_id =
            hex_part.len() >= 3 && hex_part.len() <= 64 && hex_part.bytes().all(|b| b.is_ascii_hexdigit());
        if looks_like_id {
            let mut matches: Vec<Image> = Vec::new();
            for record in &records {
                if matches.iter().any(|m| m.descriptor.digest == record.descriptor.digest) {
                    continue;
                }
                let Ok(image) = self.load(&record.descriptor) else { continue };
                if image.id().hex().starts_with(hex_part) || (hex_part.len() == 64 && image.digest().hex() == hex_part)
                {
                    matches.push(image);
                }
            }
            let mut ids: Vec<&Digest> = matches.iter().map(|m| m.id()).collect();
            ids.dedup();
            match (matches.len(), ids.len()) {
                (0, _) => {}
                (1, _) => return Ok(matches.remove(0)),
                (_, 1) => return Ok(matches.remove(0)),
                _ => {
                    return Err(StoreError::Ambiguous {
                        input: input.into(),
                        candidates: ids.iter().map(|d| d.short().to_string()).collect::<Vec<_>>().join(", "),
                    })
                }
            }
        }
        let reference = match ImageRef::parse(input) {
            Ok(r) => r,
            Err(_) if looks_like_id => return Err(StoreError::NoSuchImage(input.into())),
            Err(e) => return Err(e.into()),
        };
        self.resolve_ref(&reference)?.ok_or_else(|| StoreError::NoSuchImage(input.into()))
    }

    /// The image recorded under exactly this reference; for `name@digest`, any entry of
    /// that name whose manifest has that digest.
    pub fn resolve_ref(&self, reference: &ImageRef) -> Result<Option<Image>, StoreError> {
        let wanted = reference.to_string();
        for record in self.list()? {
            let Some(name) = &record.name else { continue };
            let hit = name.to_string() == wanted
                || (reference.digest().as_ref() == Some(&record.descriptor.digest) && name.name() == reference.name());
            if hit {
                return self.load(&record.descriptor).map(Some);
            }
        }
        Ok(None)
    }
}

/// A blob being written: hashed as it streams, moved into the store only if it verifies.
/// Dropping it without `commit` deletes the partial file.
pub struct BlobWriter {
    inner: Option<HashingWriter<BufWriter<File>>>,
    tmp: PathBuf,
    blobs: PathBuf,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.as_mut().expect("writer used after commit").write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.as_mut().expect("writer used after commit").flush()
    }
}

impl BlobWriter {
    pub fn written(&self) -> u64 {
        self.inner.as_ref().map(|w| w.hasher.len()).unwrap_or(0)
    }

    /// The digest of what was written so far.
    pub fn digest_so_far(&self) -> Digest {
        self.inner.as_ref().map(|w| w.hasher.clone().finish()).unwrap_or_else(|| Digest::of_bytes(b""))
    }

    /// Verify against `expected` (digest and size, when given) and move into the store.
    pub fn commit(mut self, expected: Option<&Digest>, expected_size: Option<u64>) -> Result<Digest, StoreError> {
        let writer = self.inner.take().expect("commit once");
        let hasher = writer.hasher.clone();
        let file = writer
            .inner
            .into_inner()
            .map_err(|e| StoreError::Io { context: "writing blob".into(), source: e.into_error() })?;
        file.sync_all().map_err(io_err("syncing blob"))?;
        drop(file);
        let size = hasher.len();
        let actual = hasher.finish();
        if let Some(expected) = expected {
            if expected != &actual {
                return Err(StoreError::DigestMismatch { expected: expected.clone(), actual });
            }
            if let Some(want) = expected_size {
                if want != size {
                    return Err(StoreError::SizeMismatch { digest: expected.clone(), expected: want, actual: size });
                }
            }
        }
        let dest = self.blobs.join(actual.hex());
        fs::rename(&self.tmp, &dest).map_err(io_err(format!("storing blob {actual}")))?;
        Ok(actual)
    }

    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.inner.is_some() || self.tmp.exists() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Copy a reader into a new blob, verifying it.
pub fn copy_into_blob(
    store: &Store,
    reader: &mut impl Read,
    expected: Option<&Digest>,
    expected_size: Option<u64>,
) -> Result<Digest, StoreError> {
    let mut w = store.blob_writer()?;
    io::copy(reader, &mut w).map_err(io_err("writing blob"))?;
    w.commit(expected, expected_size)
}
