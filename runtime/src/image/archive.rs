//! `load` and `save`: images in and out of tar archives without a registry.
//!
//! `save` writes an OCI image-layout archive (what `skopeo copy oci-archive:` reads) that also
//! carries docker's `manifest.json`, so `docker load` takes it too. `load` reads OCI archives
//! (also the ones `docker save` writes since docker 25) and docker's legacy archives
//! (`manifest.json` + `<id>/layer.tar`, what `skopeo copy docker-archive:` writes), plain or
//! gzip/zstd-compressed. Every blob is verified against its digest on the way in.

use super::manifest::{media, parse_document, Descriptor, Document, Index, Manifest, Platform};
use super::reference::ImageRef;
use super::store::{io_err, Image, Store, StoreError, CONTAINERD_NAME, REF_NAME};
use crate::digest::{Digest, HashingReader};
use crate::snapshot::{SnapshotError, Snapshots};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Snapshot(#[from] SnapshotError),
    #[error("reading archive: {0}")]
    Read(io::Error),
    /// A tar header that does not parse (the tar crate's message quotes the header's raw
    /// bytes, which may be anything: only its first words are kept).
    #[error("not a tar archive, or a damaged one ({0})")]
    NotTar(String),
    #[error("writing archive {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("archive entry {path} does not match its digest (content hashes to {actual})")]
    BlobMismatch { path: String, actual: Digest },
    #[error("not an image archive: it has neither index.json (OCI) nor manifest.json (docker)")]
    NotAnArchive,
    #[error("archive is missing {what} {path}")]
    Missing { what: &'static str, path: String },
    #[error("archive's {file} is invalid: {detail}")]
    Invalid { file: String, detail: String },
    #[error("archive holds no image for platform {0}")]
    NoPlatform(String),
}

/// docker's manifest.json entry.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// Where each archive path went.
#[derive(Default)]
struct Contents {
    /// The archive's JSON documents (index.json, manifest.json, docker configs), in memory.
    files: HashMap<String, Vec<u8>>,
    /// Larger files, streamed into the store: path -> (digest, size).
    blobs: HashMap<String, (Digest, u64)>,
    /// Symlinks (legacy archives link duplicate layers): path -> target path.
    links: HashMap<String, String>,
}

impl Contents {
    fn resolve<'a>(&'a self, path: &'a str) -> &'a str {
        let mut p = path;
        for _ in 0..8 {
            match self.links.get(p) {
                Some(t) => p = t,
                None => break,
            }
        }
        p
    }
    fn file(&self, path: &str) -> Option<&Vec<u8>> {
        self.files.get(self.resolve(&clean(path)?))
    }
    fn blob(&self, path: &str) -> Option<&(Digest, u64)> {
        self.blobs.get(self.resolve(&clean(path)?))
    }
}

/// Normalise an archive path ("./a/../b" -> "b"); None if it escapes.
fn clean(path: &str) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop()?;
            }
            _ => {}
        }
    }
    Some(out.join("/"))
}

/// The largest document (a JSON file, a manifest or config blob) `load` reads into memory.
const SMALL_FILE: u64 = 16 << 20;
/// All the documents of one archive together: a few kB in real archives, and a small
/// compressed archive must not make `load` hold gigabytes.
const MAX_DOCUMENTS: u64 = 64 << 20;

/// Whether an archive path (not a blob) is one of the documents `load` reads.
fn is_document(path: &str) -> bool {
    path.ends_with(".json") || path == "oci-layout" || path == "repositories"
}

fn decompressed(reader: impl Read + 'static) -> io::Result<Box<dyn Read>> {
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let head = reader.fill_buf()?.to_vec();
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(reader)?)
    } else {
        Box::new(reader)
    })
}

/// A header error as one clean line: the message up to its first quoted detail, printable
/// characters only.
fn not_tar(e: io::Error) -> ArchiveError {
    let message = e.to_string();
    let words: String = message.split(": ").next().unwrap_or("").chars().filter(|c| !c.is_control()).take(80).collect();
    ArchiveError::NotTar(words)
}

fn read_contents(store: &Store, reader: Box<dyn Read>) -> Result<Contents, ArchiveError> {
    let stream = decompressed(reader).map_err(ArchiveError::Read)?;
    let mut archive = tar::Archive::new(super::tar_guard::ExtensionGuard::new(stream));
    let mut contents = Contents::default();
    let mut documents = 0;
    for entry in archive.entries().map_err(not_tar)? {
        let mut entry = entry.map_err(not_tar)?;
        let raw_path = entry.path().map_err(ArchiveError::Read)?.to_string_lossy().into_owned();
        let Some(path) = clean(&raw_path) else { continue };
        match entry.header().entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let Some(target) = entry.link_name().map_err(ArchiveError::Read)? else { continue };
                let target = target.to_string_lossy().into_owned();
                let resolved = if entry.header().entry_type() == tar::EntryType::Link {
                    clean(&target)
                } else {
                    let parent =
                        Path::new(&path).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
                    clean(&format!("{parent}/{target}"))
                };
                if let Some(r) = resolved {
                    contents.links.insert(path, r);
                }
                continue;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            _ => continue,
        }
        // The entry's size as the crate reads it (a PAX `size` overrides the header's).
        let size = entry.size();
        let named_digest = path.strip_prefix("blobs/sha256/").and_then(|h| Digest::from_hex(h).ok());
        if named_digest.is_none() && is_document(&path) {
            documents += size;
            if size > SMALL_FILE || documents > MAX_DOCUMENTS {
                return Err(ArchiveError::Invalid { file: path, detail: too_large(size, documents) });
            }
            let mut buf = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut buf).map_err(ArchiveError::Read)?;
            contents.files.insert(path, buf);
            continue;
        }
        if named_digest.is_none() && !path.ends_with(".tar") {
            continue; // not an image's (docker's legacy per-layer `json` and `VERSION` files)
        }
        // Blobs and docker's layer tars go to the store, where `image prune` finds what no
        // image uses.
        let mut writer = store.blob_writer()?;
        let size = io::copy(&mut entry, &mut writer).map_err(ArchiveError::Read)?;
        let digest = writer.commit(named_digest.as_ref(), None).map_err(|e| match e {
            StoreError::DigestMismatch { actual, .. } => ArchiveError::BlobMismatch { path: path.clone(), actual },
            other => other.into(),
        })?;
        contents.blobs.insert(path, (digest, size));
    }
    Ok(contents)
}

/// What `load` recorded: one entry per image, with the names it got.
#[derive(Debug)]
pub struct Loaded {
    pub image: Image,
    pub names: Vec<ImageRef>,
}

/// Load every image of an archive into the store and unpack it.
pub fn load(store: &Store, reader: Box<dyn Read>, platform: &Platform) -> Result<Vec<Loaded>, ArchiveError> {
    let _content = store.root().lock_content().map_err(StoreError::from)?;
    let contents = read_contents(store, reader)?;
    let images = if contents.files.contains_key("index.json") {
        load_oci(store, &contents, platform)?
    } else if contents.files.contains_key("manifest.json") {
        load_docker(store, &contents)?
    } else {
        return Err(ArchiveError::NotAnArchive);
    };
    let snapshots = Snapshots::new(store.root());
    // Every image verified and unpacked before any is recorded: an archive whose second image
    // is bad loads none.
    let mut loaded = Vec::new();
    for (names, descriptor) in images {
        let image = store.load(&descriptor)?;
        for layer in image.manifest.layers.iter().chain([&image.manifest.config]) {
            if !store.has_blob(&layer.digest) {
                return Err(ArchiveError::Missing { what: "layer", path: layer.digest.to_string() });
            }
            // Declared sizes are what `images` and `history` add up: they must be the blobs'.
            let stored = std::fs::metadata(store.blob_path(&layer.digest)).map(|m| m.len()).unwrap_or(0);
            if stored != layer.size {
                let detail = format!("{} is {stored} bytes, but its descriptor declares {}", layer.digest, layer.size);
                return Err(ArchiveError::Invalid { file: "manifest".into(), detail });
            }
        }
        snapshots.prepare(store, &image)?;
        loaded.push((descriptor, Loaded { image, names }));
    }
    for (descriptor, image) in &loaded {
        if image.names.is_empty() {
            store.record(None, descriptor)?;
        }
        for name in &image.names {
            store.record(Some(name), descriptor)?;
        }
    }
    Ok(loaded.into_iter().map(|(_, image)| image).collect())
}

/// A manifest or config blob of an OCI archive, by digest (the archive's blobs are in the
/// store by now; it may also have been there before).
fn blob_bytes(store: &Store, digest: &Digest, what: &'static str) -> Result<Vec<u8>, ArchiveError> {
    let path = format!("blobs/sha256/{}", digest.hex());
    let size = store
        .blob_path(digest)
        .metadata()
        .map(|m| m.len())
        .map_err(|_| ArchiveError::Missing { what, path: path.clone() })?;
    document_blob(store, &path, digest, size)
}

/// A stored blob that is a document (a manifest, a config), read into memory if not too large.
fn document_blob(store: &Store, path: &str, digest: &Digest, size: u64) -> Result<Vec<u8>, ArchiveError> {
    if size > SMALL_FILE {
        return Err(ArchiveError::Invalid { file: path.to_string(), detail: too_large(size, size) });
    }
    Ok(store.read_blob(digest)?)
}

fn too_large(size: u64, documents: u64) -> String {
    if size > SMALL_FILE {
        format!("{size} bytes; a manifest, config or index has at most {SMALL_FILE}")
    } else {
        format!("the archive's JSON documents come to more than {MAX_DOCUMENTS} bytes ({documents})")
    }
}

fn load_oci(
    store: &Store,
    contents: &Contents,
    platform: &Platform,
) -> Result<Vec<(Vec<ImageRef>, Descriptor)>, ArchiveError> {
    let index: Index = serde_json::from_slice(&contents.files["index.json"])
        .map_err(|e| ArchiveError::Invalid { file: "index.json".into(), detail: e.to_string() })?;
    // docker save (25+) names images in manifest.json; use those names where the index has none.
    let docker_names: HashMap<String, Vec<String>> = contents
        .files
        .get("manifest.json")
        .and_then(|b| serde_json::from_slice::<Vec<DockerEntry>>(b).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.config.trim_start_matches("blobs/sha256/").to_string(), e.repo_tags.unwrap_or_default()))
        .collect();
    let mut out = Vec::new();
    for entry in &index.manifests {
        let bytes = blob_bytes(store, &entry.digest, "manifest")?;
        let mut chosen = entry.clone();
        let mut doc = parse_document(&bytes, Some(&entry.media_type))
            .map_err(|e| ArchiveError::Invalid { file: format!("manifest {}", entry.digest), detail: e.to_string() })?;
        if let Document::Index(inner) = &doc {
            let pick = inner.select(platform, "archive").map_err(|_| ArchiveError::NoPlatform(platform.to_string()))?;
            chosen = Descriptor { annotations: entry.annotations.clone(), ..pick.clone() };
            let bytes = blob_bytes(store, &pick.digest, "manifest")?;
            doc = parse_document(&bytes, Some(&pick.media_type)).map_err(|e| ArchiveError::Invalid {
                file: format!("manifest {}", pick.digest),
                detail: e.to_string(),
            })?;
        }
        let Document::Manifest(manifest) = doc else {
            return Err(ArchiveError::Invalid {
                file: format!("manifest {}", chosen.digest),
                detail: "nested index".into(),
            });
        };
        blob_bytes(store, &manifest.config.digest, "config")?;
        let mut names = Vec::new();
        let annotated = entry.annotations.get(CONTAINERD_NAME).or_else(|| entry.annotations.get(REF_NAME));
        // A bare tag ("latest") is no image name; a full reference is.
        if let Some(n) = annotated.filter(|n| n.contains('/') || n.contains(':') && !n.starts_with(':')) {
            if let Ok(r) = ImageRef::parse(n) {
                names.push(r);
            }
        }
        if names.is_empty() {
            for tag in docker_names.get(manifest.config.digest.hex()).into_iter().flatten() {
                if let Ok(r) = ImageRef::parse(tag) {
                    names.push(r);
                }
            }
        }
        chosen.annotations.remove(REF_NAME);
        chosen.annotations.remove(CONTAINERD_NAME);
        out.push((names, chosen));
    }
    Ok(out)
}

fn load_docker(store: &Store, contents: &Contents) -> Result<Vec<(Vec<ImageRef>, Descriptor)>, ArchiveError> {
    let entries: Vec<DockerEntry> = serde_json::from_slice(&contents.files["manifest.json"])
        .map_err(|e| ArchiveError::Invalid { file: "manifest.json".into(), detail: e.to_string() })?;
    let mut out = Vec::new();
    for entry in entries {
        let config_bytes = match contents.file(&entry.config) {
            Some(b) => b.clone(),
            None => {
                let (digest, size) = contents
                    .blob(&entry.config)
                    .ok_or_else(|| ArchiveError::Missing { what: "config", path: entry.config.clone() })?;
                document_blob(store, &entry.config, digest, *size)?
            }
        };
        let config_digest = store.write_blob(&config_bytes, None)?;
        let mut layers = Vec::new();
        for path in &entry.layers {
            let (digest, size) = contents
                .blob(path)
                .cloned()
                .ok_or_else(|| ArchiveError::Missing { what: "layer", path: path.clone() })?;
            let media_type = layer_media_type(store, &digest)?;
            layers.push(Descriptor::new(media_type, digest, size));
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media::DOCKER_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::new(media::DOCKER_CONFIG, config_digest, config_bytes.len() as u64),
            layers,
            annotations: BTreeMap::new(),
        };
        let bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
        let digest = store.write_blob(&bytes, None)?;
        let names = entry.repo_tags.unwrap_or_default().iter().filter_map(|t| ImageRef::parse(t).ok()).collect();
        out.push((names, Descriptor::new(media::DOCKER_MANIFEST, digest, bytes.len() as u64)));
    }
    Ok(out)
}

fn layer_media_type(store: &Store, digest: &Digest) -> Result<&'static str, ArchiveError> {
    let mut head = [0u8; 4];
    let mut f = File::open(store.blob_path(digest)).map_err(io_err(format!("opening layer {digest}")))?;
    let n = f.read(&mut head).map_err(io_err(format!("reading layer {digest}")))?;
    Ok(match &head[..n] {
        [0x1f, 0x8b, ..] => media::DOCKER_LAYER_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd] => media::DOCKER_LAYER_ZSTD,
        _ => media::DOCKER_LAYER_TAR,
    })
}

/// Write `images` as one OCI archive (with docker's manifest.json alongside).
pub fn save(store: &Store, images: &[(Image, Option<ImageRef>)], out: &mut dyn Write) -> Result<(), ArchiveError> {
    let mut builder = tar::Builder::new(out);
    let write_err = |source: io::Error| ArchiveError::Write { path: PathBuf::from("-"), source };
    let mut seen: Vec<Digest> = Vec::new();
    let mut index = Index {
        schema_version: 2,
        media_type: Some(media::OCI_INDEX.into()),
        manifests: Vec::new(),
        annotations: BTreeMap::new(),
    };
    let mut docker: Vec<DockerEntry> = Vec::new();
    append_bytes(&mut builder, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(write_err)?;
    for (image, name) in images {
        let blobs = std::iter::once(image.digest())
            .chain(std::iter::once(image.id()))
            .chain(image.manifest.layers.iter().map(|l| &l.digest));
        for digest in blobs {
            if seen.contains(digest) {
                continue;
            }
            seen.push(digest.clone());
            let path = store.blob_path(digest);
            let mut file = File::open(&path).map_err(|_| StoreError::MissingBlob(digest.clone()))?;
            let size = file.metadata().map_err(io_err("stat blob"))?.len();
            let mut header = tar_header(size);
            // Verify while copying: a corrupted store must not leak into an archive.
            let mut hashing = HashingReader::new(&mut file);
            builder
                .append_data(&mut header, format!("blobs/sha256/{}", digest.hex()), &mut hashing)
                .map_err(write_err)?;
            let actual = hashing.hasher.finish();
            if &actual != digest {
                return Err(StoreError::DigestMismatch { expected: digest.clone(), actual }.into());
            }
        }
        let mut desc = image.descriptor.clone();
        let tags: Vec<String> = name.iter().map(|n| n.to_string()).collect();
        if let Some(n) = name {
            desc.annotations.insert(REF_NAME.into(), n.to_string());
            desc.annotations.insert(CONTAINERD_NAME.into(), n.to_string());
        }
        index.manifests.push(desc);
        docker.push(DockerEntry {
            config: format!("blobs/sha256/{}", image.id().hex()),
            repo_tags: Some(tags),
            layers: image.manifest.layers.iter().map(|l| format!("blobs/sha256/{}", l.digest.hex())).collect(),
        });
    }
    append_bytes(&mut builder, "index.json", &serde_json::to_vec(&index).expect("index serialises"))
        .map_err(write_err)?;
    append_bytes(&mut builder, "manifest.json", &serde_json::to_vec(&docker).expect("manifest serialises"))
        .map_err(write_err)?;
    builder.into_inner().map_err(write_err)?.flush().map_err(write_err)?;
    Ok(())
}

fn tar_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

fn append_bytes<W: Write>(builder: &mut tar::Builder<W>, path: &str, data: &[u8]) -> io::Result<()> {
    let mut header = tar_header(data.len() as u64);
    builder.append_data(&mut header, path, data)
}
