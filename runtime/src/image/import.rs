//! `import`: make a one-layer image from a root filesystem tarball, as `docker import` does,
//! with `--change` instructions (ENTRYPOINT, CMD, ENV, WORKDIR, USER, LABEL, VOLUME,
//! HEALTHCHECK) and a platform.
//! This is how the project builds its own example images without a registry or a daemon.

use super::manifest::{media, Descriptor, HealthConfig, ImageConfig, Manifest, Platform, RootFs, RunConfig};
use super::reference::ImageRef;
use super::store::{io_err, Image, Store, StoreError};
use crate::digest::HashingWriter;
use crate::snapshot::{SnapshotError, Snapshots};
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "invalid --change {0:?}: expected ENTRYPOINT, CMD, ENV, WORKDIR, USER, LABEL, VOLUME or HEALTHCHECK with a value"
    )]
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
            "HEALTHCHECK" => run.healthcheck = Some(healthcheck(value).ok_or_else(bad)?),
            _ => return Err(bad()),
        }
    }
    Ok(())
}

/// A Dockerfile's `HEALTHCHECK [--interval=D] [--timeout=D] [--start-period=D]
/// [--start-interval=D] [--retries=N] CMD command` (exec form as ["CMD", ...], shell form as
/// ["CMD-SHELL", command]) or `HEALTHCHECK NONE`.
fn healthcheck(value: &str) -> Option<HealthConfig> {
    if value.eq_ignore_ascii_case("NONE") {
        return Some(HealthConfig { test: vec!["NONE".into()], ..Default::default() });
    }
    let mut check = HealthConfig::default();
    let mut rest = value;
    while let Some(option) = rest.strip_prefix("--") {
        let (option, after) = option.split_once(char::is_whitespace)?;
        let (name, v) = option.split_once('=')?;
        let duration = || crate::clock::parse_go_duration(v).filter(|n| *n == 0 || *n >= 1_000_000);
        match name {
            "interval" => check.interval = duration()?,
            "timeout" => check.timeout = duration()?,
            "start-period" => check.start_period = duration()?,
            "start-interval" => check.start_interval = duration()?,
            "retries" => check.retries = v.parse().ok().filter(|n: &i64| *n >= 0)?,
            _ => return None,
        }
        rest = after.trim_start();
    }
    let (keyword, command) = rest.split_once(char::is_whitespace)?;
    if !keyword.eq_ignore_ascii_case("CMD") {
        return None;
    }
    let command = command.trim();
    check.test = match serde_json::from_str::<Vec<String>>(command) {
        Ok(args) if !args.is_empty() => std::iter::once("CMD".to_string()).chain(args).collect(),
        Ok(_) => return None,
        Err(_) => vec!["CMD-SHELL".into(), command.to_string()],
    };
    Some(check)
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

    #[test]
    fn healthcheck_in_its_dockerfile_forms() {
        let check = |change: &str| {
            let mut run = RunConfig::default();
            apply_changes(&mut run, &[change.into()]).map(|_| run.healthcheck.unwrap())
        };
        let c = check(r#"HEALTHCHECK --interval=5s --retries=2 CMD ["/check.wasm", "x"]"#).unwrap();
        assert_eq!(c.test, vec!["CMD", "/check.wasm", "x"]);
        assert_eq!((c.interval, c.retries, c.timeout), (5_000_000_000, 2, 0));
        let c = check("HEALTHCHECK --timeout=1m30s CMD curl -f http://localhost/ || exit 1").unwrap();
        assert_eq!(c.test, vec!["CMD-SHELL", "curl -f http://localhost/ || exit 1"]);
        assert_eq!(c.timeout, 90_000_000_000);
        assert_eq!(check("HEALTHCHECK NONE").unwrap().test, vec!["NONE"]);
        for bad in [
            "HEALTHCHECK",
            "HEALTHCHECK CMD",
            "HEALTHCHECK --interval=soon CMD true",
            "HEALTHCHECK --every=1s CMD true",
            "HEALTHCHECK --retries=-1 CMD true",
            "HEALTHCHECK RUN true",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}
