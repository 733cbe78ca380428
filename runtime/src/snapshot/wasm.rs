//! Wasm layers as snapshots: a layer whose blob is a raw WebAssembly module or component
//! (media type `application/wasm` and kin) becomes a snapshot holding that one file, so the
//! module appears in the container's root filesystem like any file and the entrypoint can
//! name it. Where it appears: `/<org.opencontainers.image.title>` when the layer's title is a
//! plain file name, else `/<digest hex>.wasm`. An image with wasm layers and no entrypoint or
//! command runs its first module ([`default_entrypoint`]).
//!
//! The snapshot key depends only on the blob and the file name, not on the layers below
//! (the snapshot holds just the one file), so the chain IDs of the image's tar layers stay
//! those of the OCI spec. This module never looks at the bytes: whether they are wasm is the
//! executor's to say, with its own clear error.

use super::{io_err, SnapshotError};
use crate::digest::{Digest, HashingReader};
use crate::image::manifest::{Descriptor, ImageConfig, LayerKind, Manifest, RunConfig};
use std::fs::{self, File};
use std::io::{self, BufReader};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The annotation ORAS and wasm tooling put on a layer to name its file.
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

/// The longest title taken as a file name (NAME_MAX).
const MAX_NAME: usize = 255;

/// The file name a wasm layer's module gets at the root of the container's filesystem.
pub fn module_name(layer: &Descriptor) -> String {
    match layer.annotations.get(TITLE_ANNOTATION) {
        Some(title) if is_plain_name(title) => title.clone(),
        _ => format!("{}.wasm", layer.digest.hex()),
    }
}

/// One path component that cannot escape or hide: no `/`, not `.` or `..`, no NUL, not empty.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0')
        && !name.starts_with(".wh.")
}

/// The snapshot key of a wasm layer holding `blob` as `name`.
pub fn snapshot_key(blob: &Digest, name: &str) -> Digest {
    Digest::of_bytes(format!("strata wasm layer v1\n{blob}\n{name}\n").as_bytes())
}

/// Write the blob at `blob_path` as `dest/name` (mode 0644), checking it hashes to `digest`.
pub(super) fn materialise(blob_path: &Path, digest: &Digest, name: &str, dest: &Path) -> Result<(), SnapshotError> {
    let context = || format!("wasm layer {digest}");
    let file = File::open(blob_path).map_err(io_err(format!("opening {}", context())))?;
    let mut reader = HashingReader::new(BufReader::with_capacity(1 << 20, file));
    let target = dest.join(name);
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&target)
        .map_err(io_err(format!("creating {}", target.display())))?;
    io::copy(&mut reader, &mut out).map_err(io_err(format!("copying {}", context())))?;
    let actual = reader.hasher.finish();
    if &actual != digest {
        return Err(SnapshotError::DiffIdMismatch { digest: digest.clone(), expected: digest.clone(), actual });
    }
    Ok(())
}

/// The entrypoint of an image with wasm layers whose config names no program: the first wasm
/// layer's module. `None` when the config has an entrypoint or command, or no wasm layer.
pub fn default_entrypoint(manifest: &Manifest, config: &ImageConfig) -> Option<Vec<String>> {
    let run = config.config.as_ref();
    let named = run.is_some_and(|r| {
        r.entrypoint.as_ref().is_some_and(|e| !e.is_empty()) || r.cmd.as_ref().is_some_and(|c| !c.is_empty())
    });
    if named {
        return None;
    }
    let first = manifest.layers.iter().find(|l| LayerKind::from_media_type(&l.media_type) == Some(LayerKind::Wasm))?;
    Some(vec![format!("/{}", module_name(first))])
}

/// Fill in [`default_entrypoint`] in `config` (what an image's users see: inspect, run).
pub fn complete_config(manifest: &Manifest, config: &mut ImageConfig) {
    if let Some(entrypoint) = default_entrypoint(manifest, config) {
        config.config.get_or_insert_with(RunConfig::default).entrypoint = Some(entrypoint);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::manifest::media;

    fn layer(media_type: &str, bytes: &[u8], title: Option<&str>) -> Descriptor {
        let mut d = Descriptor::new(media_type, Digest::of_bytes(bytes), bytes.len() as u64);
        if let Some(t) = title {
            d.annotations.insert(TITLE_ANNOTATION.into(), t.into());
        }
        d
    }

    fn manifest(layers: Vec<Descriptor>) -> Manifest {
        Manifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::new(media::WASM_CONFIG, Digest::of_bytes(b"{}"), 2),
            layers,
            annotations: Default::default(),
        }
    }

    #[test]
    fn names_come_from_a_safe_title_or_the_digest() {
        let d = Digest::of_bytes(b"m");
        assert_eq!(module_name(&layer(media::WASM_LAYER, b"m", Some("app.wasm"))), "app.wasm");
        for bad in ["", ".", "..", "../x.wasm", "a/b.wasm", "/abs.wasm", ".wh.x", "a\0b"] {
            assert_eq!(module_name(&layer(media::WASM_LAYER, b"m", Some(bad))), format!("{}.wasm", d.hex()), "{bad:?}");
        }
        assert_eq!(module_name(&layer(media::WASM_LAYER, b"m", None)), format!("{}.wasm", d.hex()));
        assert_ne!(snapshot_key(&d, "a.wasm"), snapshot_key(&d, "b.wasm"));
    }

    #[test]
    fn default_entrypoint_is_the_first_wasm_module() {
        let m = manifest(vec![
            layer(media::OCI_LAYER_TAR, b"tar", None),
            layer(media::WASM_COMPONENT_LAYER, b"c", Some("app.wasm")),
            layer(media::WASM_LAYER, b"d", Some("other.wasm")),
        ]);
        let mut config = ImageConfig::default();
        assert_eq!(default_entrypoint(&m, &config), Some(vec!["/app.wasm".to_string()]));
        complete_config(&m, &mut config);
        assert_eq!(config.config.as_ref().unwrap().entrypoint.as_deref(), Some(&["/app.wasm".to_string()][..]));
        // A config that names a program keeps it.
        let mut named = ImageConfig {
            config: Some(RunConfig { cmd: Some(vec!["/other.wasm".into()]), ..Default::default() }),
            ..Default::default()
        };
        complete_config(&m, &mut named);
        assert!(named.config.unwrap().entrypoint.is_none());
        // No wasm layer: nothing to default to.
        assert_eq!(default_entrypoint(&manifest(vec![layer(media::OCI_LAYER_TAR, b"t", None)]), &config), None);
    }

    #[test]
    fn materialise_checks_the_digest() {
        let tmp = tempfile::tempdir().unwrap();
        let blob = tmp.path().join("blob");
        fs::write(&blob, b"\0asm\x01\0\0\0").unwrap();
        let dest = tmp.path().join("fs");
        fs::create_dir(&dest).unwrap();
        materialise(&blob, &Digest::of_bytes(b"\0asm\x01\0\0\0"), "m.wasm", &dest).unwrap();
        assert_eq!(fs::read(dest.join("m.wasm")).unwrap(), b"\0asm\x01\0\0\0");
        let err = materialise(&blob, &Digest::of_bytes(b"other"), "n.wasm", &dest).unwrap_err();
        assert!(matches!(err, SnapshotError::DiffIdMismatch { .. }), "{err}");
    }
}
