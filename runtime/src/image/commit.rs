//! `commit`: a new image from an image plus one more layer (a container's changes), as
//! `docker commit` makes it: the base's layers and config, the container's run config in
//! place of the image's (with `--change` instructions on top), one more diff ID and history
//! entry. The manifest keeps the base's format (OCI or Docker), so the layer types agree.

use super::import::{apply_changes, ImportError};
use super::manifest::{media, Descriptor, Manifest, RunConfig};
use super::reference::ImageRef;
use super::store::{io_err, Image, Store, StoreError};
use crate::digest::HashingWriter;
use crate::snapshot::Snapshots;
use std::io::{self, Write};

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("image {0} is not a filesystem image (a wasm artifact's layers are not tars): its containers cannot be committed")]
    NotAFilesystemImage(String),
    #[error(transparent)]
    Change(#[from] ImportError),
    #[error("writing the new layer: {0}")]
    Layer(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
}

pub struct CommitOptions {
    /// The container's run config (the image's with the container's own settings).
    pub run: RunConfig,
    /// `--change` instructions (Dockerfile forms) over it.
    pub changes: Vec<String>,
    pub author: Option<String>,
    pub message: Option<String>,
    /// The history entry's `created_by` (docker: the container's command).
    pub created_by: String,
}

/// OCI's and Docker's layer types are all tars (`...tar`, `...tar+gzip`, `...tar.gzip`).
fn is_tar_layer(media_type: &str) -> bool {
    media_type.contains(".tar")
}

/// Make the image: `write_layer` writes the new layer's (uncompressed) tar; the image is
/// recorded under `name` (or untagged) and returned.
pub fn commit<E: std::fmt::Display>(
    store: &Store,
    base: &Image,
    write_layer: impl FnOnce(&mut dyn Write) -> Result<(), E>,
    name: Option<&ImageRef>,
    opts: CommitOptions,
) -> Result<Image, CommitError> {
    if base.manifest.layers.iter().any(|l| !is_tar_layer(&l.media_type)) {
        return Err(CommitError::NotAFilesystemImage(base.id().to_string()));
    }
    let mut run = opts.run;
    apply_changes(&mut run, &opts.changes)?;
    let _content = store.root().lock_content().map_err(StoreError::from)?;

    // The layer: tar -> hash (diff ID) -> gzip -> hash (blob digest) -> blob file.
    let blob = store.blob_writer()?;
    let gz = flate2::write::GzEncoder::new(blob, flate2::Compression::fast());
    let mut diff = HashingWriter::new(gz);
    write_layer(&mut diff).map_err(|e| CommitError::Layer(e.to_string()))?;
    diff.flush().map_err(|e| CommitError::Layer(e.to_string()))?;
    let diff_id = diff.hasher.finish();
    let blob = diff.inner.finish().map_err(io_err("compressing the layer"))?;
    let layer_size = blob.written();
    let layer_digest = blob.commit(None, None)?;

    // The config: the base's as it is stored (fields strata does not read kept), the run
    // config laid over its own, one more diff ID and history entry.
    let created = crate::clock::now_rfc3339_seconds();
    let mut config: serde_json::Value = serde_json::from_slice(&base.config_bytes).map_err(|e| StoreError::Io {
        context: "reading the base image's config".into(),
        source: io::Error::other(e),
    })?;
    if !config.is_object() {
        config = serde_json::json!({});
    }
    let mut run_json = config.get("config").cloned().filter(|c| c.is_object()).unwrap_or_else(|| serde_json::json!({}));
    for key in ["User", "Env", "Entrypoint", "Cmd", "WorkingDir", "Labels", "StopSignal", "Volumes"] {
        run_json.as_object_mut().expect("an object").remove(key);
    }
    if let serde_json::Value::Object(ours) = serde_json::to_value(&run).expect("run config serialises") {
        run_json.as_object_mut().expect("an object").extend(ours);
    }
    config["config"] = run_json;
    config["created"] = created.clone().into();
    if let Some(author) = &opts.author {
        config["author"] = author.clone().into();
    }
    if !config["rootfs"].is_object() {
        config["rootfs"] = serde_json::json!({ "type": "layers", "diff_ids": [] });
    }
    match config["rootfs"]["diff_ids"].as_array_mut() {
        Some(ids) => ids.push(diff_id.to_string().into()),
        None => config["rootfs"]["diff_ids"] = serde_json::json!([diff_id.to_string()]),
    }
    let mut entry = serde_json::json!({ "created": created, "created_by": opts.created_by });
    if let Some(author) = &opts.author {
        entry["author"] = author.clone().into();
    }
    if let Some(message) = &opts.message {
        entry["comment"] = message.clone().into();
    }
    match config["history"].as_array_mut() {
        Some(history) => history.push(entry),
        None => config["history"] = serde_json::json!([entry]),
    }
    let config_bytes = serde_json::to_vec(&config).expect("config serialises");
    let config_digest = store.write_blob(&config_bytes, None)?;

    let docker = base.manifest.media_type.as_deref() == Some(media::DOCKER_MANIFEST)
        || base.descriptor.media_type == media::DOCKER_MANIFEST;
    let (manifest_type, config_type, layer_type) = match docker {
        true => (media::DOCKER_MANIFEST, media::DOCKER_CONFIG, media::DOCKER_LAYER_GZIP),
        false => (media::OCI_MANIFEST, media::OCI_CONFIG, media::OCI_LAYER_GZIP),
    };
    let mut layers = base.manifest.layers.clone();
    layers.push(Descriptor::new(layer_type, layer_digest, layer_size));
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(manifest_type.into()),
        artifact_type: None,
        config: Descriptor::new(config_type, config_digest, config_bytes.len() as u64),
        layers,
        annotations: Default::default(),
    };
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
    let manifest_digest = store.write_blob(&manifest_bytes, None)?;
    let mut desc = Descriptor::new(manifest_type, manifest_digest, manifest_bytes.len() as u64);
    desc.platform = base.descriptor.platform.clone();
    let image = store.load(&desc)?;
    Snapshots::new(store.root()).prepare(store, &image)?;
    store.record(name, &desc)?;
    Ok(store.load(&desc)?)
}
