//! `import`: make a one-layer image from a root filesystem tarball, as `docker import` does,
//! with `--change` instructions (ENTRYPOINT, CMD, ENV, WORKDIR, USER, LABEL) and a platform.
//! This is how the project builds its own example images without a registry or a daemon.

use super::manifest::{media, Descriptor, ImageConfig, Manifest, Platform, RootFs, RunConfig};
use super::reference::ImageRef;
use super::store::{io_err, Image, Store, StoreError};
use crate::digest::HashingWriter;
use crate::snapshot::{SnapshotError, Snapshots};
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("invalid --change {0:?}: expected ENTRYPOINT, CMD, ENV, WORKDIR, USER or LABEL with a value")]
    BadChange(String),
    #[error("reading the tarball: {0}")]
    Read(io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

pub struct ImportOptions {
    pub platform: Platform,
    pub changes: Vec<String>,
    pub annotations: BTreeMap<String, String>,
}

/// Parse a JSON array (`["a","b"]`) or, failing that, shell form wrapped in `/bin/sh -c`.
fn command_form(value: &str) -> Vec<String> {
    serde_json::from_str::<Vec<String>>(value)
        .unwrap_or_else(|_| vec!["/bin/sh".into(), "-c".into(), value.to_string()])
}

fn key_value(value: &str) -> Option<(String, String)> {
    let (k, v) = value.split_once('=').or_else(|| value.split_once(' '))?;
    let v = v.trim();
    let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
    (!k.trim().is_empty()).then(|| (k.trim().to_string(), v.to_string()))
}

pub fn apply_changes(run: &mut RunConfig, changes: &[String]) -> Result<(), ImportError> {
    for change in changes {
        let bad = || ImportError::BadChange(change.clone());
        let (instr, value) = change.trim().split_once(char::is_whitespace).ok_or_else(bad)?;
        let value = value.trim();
        match instr.to_ascii_uppercase().as_str() {
            "ENTRYPOINT" => run.entrypoint = Some(command_form(value)),
            "CMD" => run.cmd = Some(command_form(value)),
            "WORKDIR" => run.working_dir = Some(value.to_string()),
            "USER" => run.user = Some(value.to_string()),
            "ENV" => {
                let (k, v) = key_value(value).ok_or_else(bad)?;
                let env = run.env.get_or_insert_with(Vec::new);
                env.retain(|e| e.split('=').next() != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
            "LABEL" => {
                let (k, v) = key_value(value).ok_or_else(bad)?;
                run.labels.get_or_insert_with(BTreeMap::new).insert(k, v);
            }
            // `VOLUME /a /b` or `VOLUME ["/a", "/b"]`.
            "VOLUME" => {
                let volumes = run.volumes.get_or_insert_with(BTreeMap::new);
                let paths = serde_json::from_str::<Vec<String>>(value)
                    .unwrap_or_else(|_| value.split_whitespace().map(str::to_string).collect());
                for path in paths {
                    if !path.starts_with('/') {
                        return Err(bad());
                    }
                    volumes.insert(path, serde_json::json!({}));
                }
            }
            _ => return Err(bad()),
        }
    }
    Ok(())
}

/// Import a (possibly gzip/zstd-compressed) tarball as a one-layer image.
pub fn import(
    store: &Store,
    reader: impl Read,
    name: Option<&ImageRef>,
    opts: &ImportOptions,
) -> Result<Image, ImportError> {
    let _content = store.root().lock_content().map_err(StoreError::from)?;
    let mut run = RunConfig {
        env: Some(vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()]),
        ..Default::default()
    };
    apply_changes(&mut run, &opts.changes)?;

    // Stream: input -> (decompress) -> hash (diff_id) -> gzip -> hash (blob digest) -> blob file.
    let mut input = BufReader::with_capacity(1 << 20, reader);
    let head = input.fill_buf().map_err(ImportError::Read)?.to_vec();
    let mut plain: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(input))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(input).map_err(ImportError::Read)?)
    } else {
        Box::new(input)
    };
    let blob = store.blob_writer()?;
    let gz = flate2::write::GzEncoder::new(blob, flate2::Compression::fast());
    let mut diff = HashingWriter::new(gz);
    io::copy(&mut plain, &mut diff).map_err(ImportError::Read)?;
    diff.flush().map_err(ImportError::Read)?;
    let diff_id = diff.hasher.finish();
    let blob = diff.inner.finish().map_err(io_err("compressing layer"))?;
    let layer_size = blob.written();
    let layer_digest = blob.commit(None, None)?;

    let created = crate::clock::now_rfc3339_seconds();
    let config = ImageConfig {
        architecture: opts.platform.architecture.clone(),
        os: opts.platform.os.clone(),
        variant: opts.platform.variant.clone(),
        created: Some(created.clone()),
        author: None,
        config: Some(run),
        rootfs: Some(RootFs { kind: "layers".into(), diff_ids: vec![diff_id] }),
        layer_digests: None,
    };
    let mut config_json = serde_json::to_value(&config).expect("config serialises");
    config_json["history"] = serde_json::json!([{ "created": created, "created_by": "strata import" }]);
    let config_bytes = serde_json::to_vec(&config_json).expect("config serialises");
    let config_digest = store.write_blob(&config_bytes, None)?;
    let descriptor = Descriptor::new;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        artifact_type: None,
        config: descriptor(media::OCI_CONFIG, config_digest, config_bytes.len() as u64),
        layers: vec![descriptor(media::OCI_LAYER_GZIP, layer_digest, layer_size)],
        annotations: opts.annotations.clone(),
    };
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
    let manifest_digest = store.write_blob(&manifest_bytes, None)?;
    let mut desc = descriptor(media::OCI_MANIFEST, manifest_digest, manifest_bytes.len() as u64);
    desc.platform = Some(opts.platform.clone());
    let image = store.load(&desc)?;
    Snapshots::new(store.root()).prepare(store, &image)?;
    store.record(name, &desc)?;
    Ok(store.load(&desc)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_follow_dockerfile_forms() {
        let mut run = RunConfig::default();
        apply_changes(
            &mut run,
            &[
                r#"ENTRYPOINT ["/hello.wasm", "a b"]"#.into(),
                "CMD echo hi".into(),
                "ENV A=1".into(),
                "ENV A=2".into(),
                "WORKDIR /w".into(),
                "LABEL run.oci.handler=wasm".into(),
            ],
        )
        .unwrap();
        assert_eq!(run.entrypoint.unwrap(), vec!["/hello.wasm", "a b"]);
        assert_eq!(run.cmd.unwrap(), vec!["/bin/sh", "-c", "echo hi"]);
        assert_eq!(run.env.unwrap(), vec!["A=2"]);
        assert_eq!(run.working_dir.as_deref(), Some("/w"));
        assert_eq!(run.labels.unwrap()["run.oci.handler"], "wasm");
        let err = apply_changes(&mut RunConfig::default(), &["FROM x".into()]).unwrap_err();
        assert!(err.to_string().contains("FROM x"));
        assert!(apply_changes(&mut RunConfig::default(), &["ENTRYPOINT".into()]).is_err());
    }
}
