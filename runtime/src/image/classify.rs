//! Is an image a WebAssembly image or a native one, and why. The signals are tried in order
//! and the first that speaks decides (DESIGN.md): wasm layer media types, the platform,
//! annotations/labels, then the entrypoint file's first bytes.

use super::manifest::LayerKind;
use super::store::Image;
use crate::snapshot::lookup;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Wasm,
    Native,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Wasm => "wasm",
            Kind::Native => "native",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classification {
    pub kind: Kind,
    pub reason: String,
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Classify `image`; `layers` are its snapshot dirs (bottom first), used for the last signal.
pub fn classify(image: &Image, layers: &[PathBuf]) -> Classification {
    let wasm = |reason: String| Classification { kind: Kind::Wasm, reason };
    for layer in &image.manifest.layers {
        if LayerKind::from_media_type(&layer.media_type) == Some(LayerKind::Wasm) {
            return wasm(format!("layer {} has media type {}", layer.digest.short(), layer.media_type));
        }
    }
    let platform = image.config.platform();
    if platform.is_wasi() {
        return wasm(format!("image platform is {platform}"));
    }
    let labels = image.config.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default();
    let annotations = image.manifest.annotations.iter().chain(image.descriptor.annotations.iter()).chain(labels.iter());
    for (key, value) in annotations {
        let hit = match key.as_str() {
            "run.oci.handler" => value == "wasm",
            "module.wasm.image/variant" => value == "compat" || value == "compat-smart",
            _ => false,
        };
        if hit {
            return wasm(format!("annotation {key}={value}"));
        }
    }
    by_entrypoint(image, layers)
}

fn by_entrypoint(image: &Image, layers: &[PathBuf]) -> Classification {
    let native = |reason: String| Classification { kind: Kind::Native, reason };
    let run = image.config.config.clone().unwrap_or_default();
    let argv: Vec<String> = run.entrypoint.unwrap_or_default().into_iter().chain(run.cmd.unwrap_or_default()).collect();
    let Some(argv0) = argv.first() else {
        return native("no entrypoint or cmd; native by default".into());
    };
    let path_env = run
        .env
        .unwrap_or_default()
        .iter()
        .find_map(|e| e.strip_prefix("PATH=").map(str::to_string))
        .unwrap_or_else(|| DEFAULT_PATH.to_string());
    let Some(path) = lookup::which(layers, argv0, &path_env) else {
        return native(format!("entrypoint {argv0} not found in the image; native by default"));
    };
    match lookup::read_head(layers, &path, 4).as_deref() {
        Some(b"\0asm") => Classification { kind: Kind::Wasm, reason: format!("entrypoint {path} is a wasm binary") },
        Some(b"\x7fELF") => native(format!("entrypoint {path} is an ELF binary")),
        Some(head) if head.starts_with(b"#!") => native(format!("entrypoint {path} is a script")),
        _ => native(format!("entrypoint {path} is not wasm; native by default")),
    }
}
