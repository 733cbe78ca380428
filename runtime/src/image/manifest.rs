//! The JSON documents of an image: descriptors, manifests, indexes (OCI and Docker), image
//! configs, and choosing a platform from an index.
//!
//! Parsing is lenient where registries differ (Docker schema2 and OCI share a shape) and strict
//! where safety depends on it (digests must parse, sizes must be present).

use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub mod media {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const OCI_LAYER_NONDIST_TAR: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
    pub const OCI_LAYER_NONDIST_GZIP: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    pub const OCI_LAYER_NONDIST_ZSTD: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
    pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
    pub const DOCKER_FOREIGN_GZIP: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
    pub const WASM_COMPONENT_LAYER: &str = "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm";
    pub const WASM_LAYER: &str = "application/wasm";
    pub const WASM_CONTENT_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";
    pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";

    /// What a registry is asked for when pulling a manifest.
    pub const ACCEPTED_MANIFESTS: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];
}

/// How a layer blob is stored, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    Tar,
    TarGzip,
    TarZstd,
    /// A raw WebAssembly module or component, kept as a blob for the wasm executor.
    Wasm,
}

impl LayerKind {
    pub fn from_media_type(mt: &str) -> Option<LayerKind> {
        use media::*;
        Some(match mt {
            OCI_LAYER_TAR | OCI_LAYER_NONDIST_TAR | DOCKER_LAYER_TAR => LayerKind::Tar,
            OCI_LAYER_GZIP | OCI_LAYER_NONDIST_GZIP | DOCKER_LAYER_GZIP | DOCKER_FOREIGN_GZIP => LayerKind::TarGzip,
            OCI_LAYER_ZSTD | OCI_LAYER_NONDIST_ZSTD | DOCKER_LAYER_ZSTD => LayerKind::TarZstd,
            WASM_COMPONENT_LAYER | WASM_LAYER | WASM_CONTENT_LAYER => LayerKind::Wasm,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
}

impl Platform {
    /// The platform of this machine, as the OCI spec names it (GOOS/GOARCH).
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform { architecture: architecture.into(), os: "linux".into(), ..Default::default() }
    }

    /// Parse `os/arch[/variant]` as given to `--platform`.
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => {
                Ok(Platform { os: os.to_string(), architecture: arch.to_string(), ..Default::default() })
            }
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
                ..Default::default()
            }),
            _ => Err(format!("invalid platform {s:?}: expected os/arch[/variant], e.g. linux/amd64 or wasi/wasm")),
        }
    }

    pub fn is_wasi(&self) -> bool {
        matches!(self.os.as_str(), "wasi" | "wasip1" | "wasip2") || self.architecture == "wasm"
    }

    /// Whether an index entry with platform `offered` satisfies a request for `self`.
    /// `wasi/wasm` also accepts the p1/p2 spellings, since registries use all three.
    fn accepts(&self, offered: &Platform) -> bool {
        let os_ok = self.os == offered.os || (self.os == "wasi" && offered.is_wasi() && offered.architecture == "wasm");
        let variant_ok = match (&self.variant, &offered.variant) {
            (Some(want), Some(got)) => want == got,
            (Some(_), None) => false,
            (None, _) => true,
        };
        os_ok && self.architecture == offered.architecture && variant_ok
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A plain descriptor: no platform, annotations or URLs.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
            urls: None,
            artifact_type: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The part of an image config strata reads. The raw bytes are what is stored and pushed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RunConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<RootFs>,
    /// Present in `application/vnd.wasm.config.v0+json` configs.
    #[serde(rename = "layerDigests", default, skip_serializing_if = "Option::is_none")]
    pub layer_digests: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// The image's `VOLUME`s: destinations that get an anonymous volume unless mounted otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    /// The image's `HEALTHCHECK` (docker's extension of the image config). One that does not
    /// parse is left out rather than failing the whole config.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_healthcheck")]
    pub healthcheck: Option<HealthConfig>,
}

/// A health check as docker's image config and `--health-*` give it: `Test` is `["NONE"]`,
/// `["CMD", args...]`, `["CMD-SHELL", command]`, or empty (the image's); durations are
/// nanoseconds, 0 (and a retries of 0) meaning "the image's, else the default".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthConfig {
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub test: Vec<String>,
    #[serde(skip_serializing_if = "is_zero", deserialize_with = "null_as_default")]
    pub interval: i64,
    #[serde(skip_serializing_if = "is_zero", deserialize_with = "null_as_default")]
    pub timeout: i64,
    #[serde(skip_serializing_if = "is_zero", deserialize_with = "null_as_default")]
    pub start_period: i64,
    #[serde(skip_serializing_if = "is_zero", deserialize_with = "null_as_default")]
    pub start_interval: i64,
    #[serde(skip_serializing_if = "is_zero", deserialize_with = "null_as_default")]
    pub retries: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// A JSON null as the type's default (Go writes nil slices as null).
fn null_as_default<'de, D: serde::Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn lenient_healthcheck<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<HealthConfig>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

impl ImageConfig {
    pub fn platform(&self) -> Platform {
        Platform {
            architecture: self.architecture.clone(),
            os: self.os.clone(),
            variant: self.variant.clone(),
            os_version: None,
        }
    }
    pub fn diff_ids(&self) -> &[Digest] {
        self.rootfs.as_ref().map(|r| r.diff_ids.as_slice()).unwrap_or(&[])
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("invalid {what}: {source}")]
    Json { what: &'static str, source: serde_json::Error },
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("unsupported manifest schema version {0} (only schema 2 is supported)")]
    SchemaVersion(u32),
    #[error("no image for platform {wanted} in {reference}: it offers {offered}")]
    NoPlatform { wanted: String, reference: String, offered: String },
    #[error("layer {digest} has unsupported media type {media_type:?}")]
    UnsupportedLayer { digest: Digest, media_type: String },
    #[error("image config lists {diff_ids} diff_ids for {layers} tar layers")]
    DiffIdCount { diff_ids: usize, layers: usize },
}

/// A fetched manifest document: either an image manifest or an index.
#[derive(Debug, Clone)]
pub enum Document {
    Manifest(Box<Manifest>),
    Index(Index),
}

/// Tell manifests and indexes apart by media type, falling back to shape (OCI allows the
/// mediaType field to be absent).
pub fn parse_document(bytes: &[u8], content_type: Option<&str>) -> Result<Document, ManifestError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        schema_version: u32,
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|source| ManifestError::Json { what: "manifest", source })?;
    if probe.schema_version != 2 {
        return Err(ManifestError::SchemaVersion(probe.schema_version));
    }
    let mt = probe.media_type.as_deref().or(content_type.filter(|c| !c.is_empty()));
    let is_index = match mt {
        Some(media::OCI_INDEX | media::DOCKER_LIST) => true,
        Some(media::OCI_MANIFEST | media::DOCKER_MANIFEST) => false,
        Some(other) if probe.media_type.is_some() => return Err(ManifestError::UnsupportedMediaType(other.into())),
        _ => probe.manifests.is_some(),
    };
    if is_index {
        serde_json::from_slice(bytes)
            .map(Document::Index)
            .map_err(|source| ManifestError::Json { what: "image index", source })
    } else {
        serde_json::from_slice(bytes)
            .map(|m| Document::Manifest(Box::new(m)))
            .map_err(|source| ManifestError::Json { what: "image manifest", source })
    }
}

impl Manifest {
    pub fn media_type_or_default(&self) -> &str {
        self.media_type.as_deref().unwrap_or(media::OCI_MANIFEST)
    }

    /// Check every layer has a media type strata can store, and return their kinds.
    pub fn layer_kinds(&self) -> Result<Vec<LayerKind>, ManifestError> {
        self.layers
            .iter()
            .map(|l| {
                LayerKind::from_media_type(&l.media_type).ok_or_else(|| ManifestError::UnsupportedLayer {
                    digest: l.digest.clone(),
                    media_type: l.media_type.clone(),
                })
            })
            .collect()
    }
}

impl Index {
    /// Choose the manifest for `wanted`, or say what the index offers.
    pub fn select(&self, wanted: &Platform, reference: &str) -> Result<&Descriptor, ManifestError> {
        let candidates = self.manifests.iter().filter(|d| d.platform.as_ref().is_some_and(|p| wanted.accepts(p)));
        // Prefer an exact os match (wasi vs wasip1), then the first listed, as docker does.
        let mut best: Option<&Descriptor> = None;
        for d in candidates {
            let exact = d.platform.as_ref().is_some_and(|p| p.os == wanted.os);
            match best {
                None => best = Some(d),
                Some(b) if exact && b.platform.as_ref().is_some_and(|p| p.os != wanted.os) => best = Some(d),
                _ => {}
            }
        }
        best.ok_or_else(|| {
            let offered: Vec<String> = self
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .filter(|p| p.os != "unknown")
                .map(|p| p.to_string())
                .collect();
            ManifestError::NoPlatform {
                wanted: wanted.to_string(),
                reference: reference.to_string(),
                offered: if offered.is_empty() { "no platforms".into() } else { offered.join(", ") },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(os: &str, arch: &str, variant: Option<&str>, n: u8) -> Descriptor {
        Descriptor {
            media_type: media::OCI_MANIFEST.into(),
            digest: Digest::of_bytes(&[n]),
            size: 1,
            platform: Some(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(Into::into),
                os_version: None,
            }),
            annotations: Default::default(),
            urls: None,
            artifact_type: None,
        }
    }

    fn index() -> Index {
        Index {
            schema_version: 2,
            media_type: Some(media::OCI_INDEX.into()),
            manifests: vec![
                desc("linux", "amd64", None, 1),
                desc("linux", "arm", Some("v7"), 2),
                desc("linux", "arm64", Some("v8"), 3),
                desc("wasip1", "wasm", None, 4),
                desc("unknown", "unknown", None, 5),
            ],
            annotations: Default::default(),
        }
    }

    #[test]
    fn a_healthcheck_docker_wrote_is_read_and_a_malformed_one_left_out() {
        let config: RunConfig = serde_json::from_str(
            r#"{"Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 5000000000, "Timeout": null}}"#,
        )
        .unwrap();
        let check = config.healthcheck.unwrap();
        assert_eq!((check.test.len(), check.interval, check.timeout), (2, 5_000_000_000, 0));
        let config: RunConfig = serde_json::from_str(r#"{"Cmd": ["x"], "Healthcheck": {"Test": "nope"}}"#).unwrap();
        assert!(config.healthcheck.is_none());
        assert_eq!(config.cmd.unwrap(), ["x"]);
    }

    #[test]
    fn selects_platforms() {
        let idx = index();
        let pick = |p: &str| idx.select(&Platform::parse(p).unwrap(), "x").map(|d| d.digest.clone());
        assert_eq!(pick("linux/amd64").unwrap(), Digest::of_bytes(&[1]));
        assert_eq!(pick("linux/arm/v7").unwrap(), Digest::of_bytes(&[2]));
        assert_eq!(pick("linux/arm64").unwrap(), Digest::of_bytes(&[3]));
        assert_eq!(pick("wasi/wasm").unwrap(), Digest::of_bytes(&[4]));
        assert_eq!(pick("wasip1/wasm").unwrap(), Digest::of_bytes(&[4]));
        let err = pick("linux/s390x").unwrap_err().to_string();
        assert_eq!(
            err,
            "no image for platform linux/s390x in x: it offers linux/amd64, linux/arm/v7, linux/arm64/v8, wasip1/wasm"
        );
        assert!(pick("linux/arm/v6").is_err());
    }

    #[test]
    fn platform_parse_errors_name_the_input() {
        assert!(Platform::parse("linux").unwrap_err().contains("\"linux\""));
        assert!(Platform::parse("linux/").is_err());
        assert_eq!(Platform::parse("wasi/wasm").unwrap().to_string(), "wasi/wasm");
    }

    #[test]
    fn documents_by_media_type_or_shape() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,
            "digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},"layers":[]}"#;
        assert!(matches!(parse_document(m, None).unwrap(), Document::Manifest(_)));
        let i = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(parse_document(i, None).unwrap(), Document::Index(_)));
        let v1 = br#"{"schemaVersion":1}"#;
        assert!(parse_document(v1, None).unwrap_err().to_string().contains("schema version 1"));
        let bad_digest = br#"{"schemaVersion":2,"config":{"mediaType":"x","size":1,"digest":"sha256:00"},"layers":[]}"#;
        assert!(parse_document(bad_digest, None).is_err());
    }

    #[test]
    fn layer_kinds() {
        assert_eq!(LayerKind::from_media_type(media::DOCKER_LAYER_GZIP), Some(LayerKind::TarGzip));
        assert_eq!(LayerKind::from_media_type(media::OCI_LAYER_ZSTD), Some(LayerKind::TarZstd));
        assert_eq!(LayerKind::from_media_type(media::WASM_LAYER), Some(LayerKind::Wasm));
        assert_eq!(LayerKind::from_media_type("text/plain"), None);
    }
}
