//! OCI image-layout writer and ready-made test images.
//!
//! Layouts written here are read by `skopeo copy oci:DIR:TAG ...` and
//! `umoci unpack --image DIR:TAG ...`. All content is deterministic (fixed
//! mtimes, fixed `created`, sorted JSON keys), so digests are stable across runs.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{json, Value};

use super::sha256_digest;
use super::tree::{Entry, Tree};

pub const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MT_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MT_WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
pub const MT_WASM_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";
pub const MT_WASM_COMPONENT_LAYER: &str = "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm";
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// mtime of every tar entry written by the fixtures (2020-09-13T12:26:40Z).
pub const FIXED_MTIME: u64 = 1_600_000_000;
/// `created` of every config written by the fixtures.
pub const FIXED_CREATED: &str = "2020-09-13T12:26:40Z";

pub const DEFAULT_PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A WASI preview1 command module (144 bytes) that writes [`HELLO_WASM_STDOUT`] to
/// fd 1 with `fd_write` and returns from `_start` (exit code 0). Compiled with
/// wat2wasm from:
///
/// ```wat
/// (module
///   (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
///   (memory (export "memory") 1)
///   (data (i32.const 16) "hello from wasm\n")
///   (func (export "_start")
///     (i32.store (i32.const 0) (i32.const 16))
///     (i32.store (i32.const 4) (i32.const 16))
///     (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
/// ```
pub const HELLO_WASM: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x0c, 0x02, 0x60, 0x04, 0x7f, 0x7f, 0x7f, 0x7f, 0x01, 0x7f,
    0x60, 0x00, 0x00, 0x02, 0x23, 0x01, 0x16, 0x77, 0x61, 0x73, 0x69, 0x5f, 0x73, 0x6e, 0x61, 0x70, 0x73, 0x68, 0x6f,
    0x74, 0x5f, 0x70, 0x72, 0x65, 0x76, 0x69, 0x65, 0x77, 0x31, 0x08, 0x66, 0x64, 0x5f, 0x77, 0x72, 0x69, 0x74, 0x65,
    0x00, 0x00, 0x03, 0x02, 0x01, 0x01, 0x05, 0x03, 0x01, 0x00, 0x01, 0x07, 0x13, 0x02, 0x06, 0x6d, 0x65, 0x6d, 0x6f,
    0x72, 0x79, 0x02, 0x00, 0x06, 0x5f, 0x73, 0x74, 0x61, 0x72, 0x74, 0x00, 0x01, 0x0a, 0x1d, 0x01, 0x1b, 0x00, 0x41,
    0x00, 0x41, 0x10, 0x36, 0x02, 0x00, 0x41, 0x04, 0x41, 0x10, 0x36, 0x02, 0x00, 0x41, 0x01, 0x41, 0x00, 0x41, 0x01,
    0x41, 0x08, 0x10, 0x00, 0x1a, 0x0b, 0x0b, 0x16, 0x01, 0x00, 0x41, 0x10, 0x0b, 0x10, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
    0x20, 0x66, 0x72, 0x6f, 0x6d, 0x20, 0x77, 0x61, 0x73, 0x6d, 0x0a,
];
/// What [`HELLO_WASM`] prints.
pub const HELLO_WASM_STDOUT: &str = "hello from wasm\n";
/// The smallest valid core module (`\0asm` version 1, no sections).
pub const EMPTY_WASM_MODULE: &[u8] = b"\0asm\x01\0\0\0";
/// The smallest valid component (`\0asm`, version 0x0d, layer 1, no sections).
/// Valid but not runnable: a real p2 command needs wit-component.
pub const EMPTY_WASM_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

/// Applets linked (as relative symlinks `/bin/NAME -> busybox`) by [`busybox_image`].
pub const BUSYBOX_APPLETS: &[&str] = &[
    "[", "ash", "awk", "basename", "cat", "chmod", "chown", "cp", "cut", "date", "dd", "df", "dirname", "du", "echo",
    "env", "expr", "false", "find", "grep", "head", "hostname", "id", "kill", "ln", "ls", "mkdir", "mkfifo", "mknod",
    "mount", "mv", "nproc", "printf", "ps", "pwd", "readlink", "realpath", "rm", "rmdir", "sed", "seq", "sh", "sleep",
    "sort", "stat", "sync", "tail", "tee", "test", "timeout", "touch", "tr", "true", "umount", "uname", "wc", "which",
    "whoami", "xargs", "yes",
];

// ---------------------------------------------------------------------------
// Small fs helpers

fn write_file(path: &Path, data: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir -p {}: {e}", parent.display()));
    }
    fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn to_json_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialize json")
}

// ---------------------------------------------------------------------------
// Compression

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The OCI layer media type for a tar with this compression.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => MT_LAYER_TAR,
            Compression::Gzip => MT_LAYER_GZIP,
            Compression::Zstd => MT_LAYER_ZSTD,
        }
    }

    pub fn compress(self, data: &[u8]) -> Vec<u8> {
        match self {
            Compression::None => data.to_vec(),
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).expect("gzip");
                e.finish().expect("gzip finish")
            }
            Compression::Zstd => zstd::encode_all(data, 3).expect("zstd"),
        }
    }
}

// ---------------------------------------------------------------------------
// Layer tarballs

/// Builds a layer tarball in memory. Paths are relative (`etc/passwd`); every
/// entry gets mtime [`FIXED_MTIME`] unless changed with [`LayerTar::mtime`].
pub struct LayerTar {
    b: tar::Builder<Vec<u8>>,
    mtime: u64,
}

impl Default for LayerTar {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerTar {
    pub fn new() -> LayerTar {
        LayerTar { b: tar::Builder::new(Vec::new()), mtime: FIXED_MTIME }
    }

    /// mtime for the entries appended from now on.
    pub fn mtime(&mut self, mtime: u64) -> &mut Self {
        self.mtime = mtime;
        self
    }

    fn header(&self, ty: tar::EntryType, mode: u32, uid: u64, gid: u64, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(self.mtime);
        h.set_size(size);
        h
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.dir_owned(path, mode, 0, 0)
    }

    pub fn dir_owned(&mut self, path: &str, mode: u32, uid: u64, gid: u64) -> &mut Self {
        let mut h = self.header(tar::EntryType::Directory, mode, uid, gid, 0);
        self.b.append_data(&mut h, path, std::io::empty()).unwrap_or_else(|e| panic!("tar dir {path}: {e}"));
        self
    }

    pub fn file(&mut self, path: &str, data: impl AsRef<[u8]>, mode: u32) -> &mut Self {
        self.file_owned(path, data, mode, 0, 0)
    }

    pub fn file_owned(&mut self, path: &str, data: impl AsRef<[u8]>, mode: u32, uid: u64, gid: u64) -> &mut Self {
        let data = data.as_ref();
        let mut h = self.header(tar::EntryType::Regular, mode, uid, gid, data.len() as u64);
        self.b.append_data(&mut h, path, data).unwrap_or_else(|e| panic!("tar file {path}: {e}"));
        self
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.symlink_owned(path, target, 0, 0)
    }

    pub fn symlink_owned(&mut self, path: &str, target: &str, uid: u64, gid: u64) -> &mut Self {
        let mut h = self.header(tar::EntryType::Symlink, 0o777, uid, gid, 0);
        self.b.append_link(&mut h, path, target).unwrap_or_else(|e| panic!("tar symlink {path} -> {target}: {e}"));
        self
    }

    /// Hardlink `path` to `target`, an earlier entry's path in the same archive
    /// (relative, e.g. `bin/tool`). `mode` should match the target's.
    pub fn hardlink(&mut self, path: &str, target: &str, mode: u32) -> &mut Self {
        let mut h = self.header(tar::EntryType::Link, mode, 0, 0, 0);
        self.b.append_link(&mut h, path, target).unwrap_or_else(|e| panic!("tar hardlink {path} -> {target}: {e}"));
        self
    }

    /// Whiteout deleting `path` (file or whole directory) from lower layers:
    /// writes `dirname/.wh.basename`.
    pub fn whiteout(&mut self, path: &str) -> &mut Self {
        let path = path.trim_end_matches('/');
        let (dir, base) = match path.rsplit_once('/') {
            Some((d, b)) => (format!("{d}/"), b),
            None => (String::new(), path),
        };
        let wh = format!("{dir}.wh.{base}");
        self.file(&wh, b"", 0o644)
    }

    /// Opaque marker `dir/.wh..wh..opq`: hides everything lower layers put in `dir`.
    pub fn opaque(&mut self, dir: &str) -> &mut Self {
        let p = format!("{}/.wh..wh..opq", dir.trim_end_matches('/'));
        self.file(&p, b"", 0o644)
    }

    pub fn fifo(&mut self, path: &str, mode: u32) -> &mut Self {
        let mut h = self.header(tar::EntryType::Fifo, mode, 0, 0, 0);
        self.b.append_data(&mut h, path, std::io::empty()).unwrap_or_else(|e| panic!("tar fifo {path}: {e}"));
        self
    }

    pub fn char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> &mut Self {
        let mut h = self.header(tar::EntryType::Char, mode, 0, 0, 0);
        h.set_device_major(major).expect("device major");
        h.set_device_minor(minor).expect("device minor");
        self.b.append_data(&mut h, path, std::io::empty()).unwrap_or_else(|e| panic!("tar chardev {path}: {e}"));
        self
    }

    /// An entry with an unvalidated name (≤ 100 bytes, may be absolute or contain
    /// `..`) and optional link name (≤ 100 bytes): for hostile-layer tests.
    pub fn raw(
        &mut self,
        name: &[u8],
        ty: tar::EntryType,
        mode: u32,
        link_name: Option<&[u8]>,
        data: &[u8],
    ) -> &mut Self {
        assert!(name.len() <= 100, "raw tar name longer than 100 bytes");
        let mut h = self.header(ty, mode, 0, 0, data.len() as u64);
        {
            let old = h.as_old_mut();
            old.name = [0; 100];
            old.name[..name.len()].copy_from_slice(name);
            if let Some(l) = link_name {
                assert!(l.len() <= 100, "raw tar link name longer than 100 bytes");
                old.linkname = [0; 100];
                old.linkname[..l.len()].copy_from_slice(l);
            }
        }
        h.set_cksum();
        self.b.append(&h, data).expect("tar raw entry");
        self
    }

    /// Finishes the archive (two zero blocks) and returns its bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.b.into_inner().expect("finish tar")
    }
}

// ---------------------------------------------------------------------------
// Layout

/// A descriptor (media type, digest, size) of a blob in a layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl Descriptor {
    pub fn to_json(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
}

/// An OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/`).
pub struct OciLayout {
    root: PathBuf,
}

impl OciLayout {
    /// Creates (or opens) the layout at `dir`, writing `oci-layout` and an
    /// empty `index.json` if they are missing.
    pub fn create(dir: &Path) -> OciLayout {
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        write_file(&dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#);
        let index = dir.join("index.json");
        if !index.exists() {
            let v = json!({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": []});
            write_file(&index, &to_json_bytes(&v));
        }
        OciLayout { root: dir.to_path_buf() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let (alg, hex) = digest.split_once(':').unwrap_or_else(|| panic!("bad digest {digest}"));
        self.root.join("blobs").join(alg).join(hex)
    }

    /// Stores `data` as a blob; returns its descriptor with `media_type`.
    pub fn put_blob(&self, media_type: &str, data: &[u8]) -> Descriptor {
        let digest = sha256_digest(data);
        write_file(&self.blob_path(&digest), data);
        Descriptor { media_type: media_type.to_string(), digest, size: data.len() as u64 }
    }

    pub fn read_blob(&self, digest: &str) -> Vec<u8> {
        let p = self.blob_path(digest);
        fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
    }

    pub fn read_index(&self) -> Value {
        let p = self.root.join("index.json");
        serde_json::from_slice(&fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())))
            .unwrap_or_else(|e| panic!("parse {}: {e}", p.display()))
    }

    /// Points `tag` (annotation `org.opencontainers.image.ref.name`) at `desc`
    /// in `index.json`, replacing an older entry with the same tag. `extra`
    /// fields (e.g. `platform`) are merged into the entry.
    pub fn tag(&self, desc: &Descriptor, tag: &str, extra: Option<Value>) {
        let mut index = self.read_index();
        let manifests = index["manifests"].as_array_mut().expect("index.json manifests");
        manifests.retain(|m| m["annotations"][ANNOTATION_REF_NAME].as_str() != Some(tag));
        let mut entry = desc.to_json();
        if let Some(Value::Object(extra)) = extra {
            for (k, v) in extra {
                entry[k] = v;
            }
        }
        entry["annotations"] = json!({ ANNOTATION_REF_NAME: tag });
        manifests.push(entry);
        write_file(&self.root.join("index.json"), &to_json_bytes(&index));
    }
}

// ---------------------------------------------------------------------------
// Image builder

/// One layer of a built image.
#[derive(Clone, Debug)]
pub struct LayerInfo {
    pub media_type: String,
    /// Digest of the blob as stored (compressed).
    pub digest: String,
    /// Digest of the uncompressed content (what the config's `rootfs.diff_ids` lists).
    pub diff_id: String,
    pub size: u64,
}

/// What an [`ImageBuilder`] wrote.
#[derive(Clone, Debug)]
pub struct BuiltImage {
    pub layout_dir: PathBuf,
    /// Tag in the layout's `index.json` ("" for a manifest only reachable through an index).
    pub tag: String,
    pub manifest: Descriptor,
    pub manifest_bytes: Vec<u8>,
    pub config: Descriptor,
    pub config_bytes: Vec<u8>,
    pub layers: Vec<LayerInfo>,
    /// `(os, architecture)` from the config (for index entries).
    pub platform: (String, String),
    /// The root filesystem an unpacker must produce, where the fixture defines it.
    pub expected_tree: Option<Tree>,
}

impl BuiltImage {
    pub fn manifest_digest(&self) -> &str {
        &self.manifest.digest
    }

    pub fn config_digest(&self) -> &str {
        &self.config.digest
    }

    pub fn layer_digests(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.digest.clone()).collect()
    }

    pub fn diff_ids(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    pub fn manifest_json(&self) -> Value {
        serde_json::from_slice(&self.manifest_bytes).expect("manifest json")
    }

    pub fn config_json(&self) -> Value {
        serde_json::from_slice(&self.config_bytes).expect("config json")
    }

    /// `oci:DIR:TAG` for skopeo.
    pub fn oci_ref(&self) -> String {
        super::oci_ref(&self.layout_dir, &self.tag)
    }
}

/// What [`write_index`] wrote.
#[derive(Clone, Debug)]
pub struct BuiltIndex {
    pub layout_dir: PathBuf,
    pub tag: String,
    pub index: Descriptor,
    pub index_bytes: Vec<u8>,
    /// The child manifests, in index order.
    pub manifests: Vec<BuiltImage>,
}

impl BuiltIndex {
    pub fn index_digest(&self) -> &str {
        &self.index.digest
    }

    pub fn oci_ref(&self) -> String {
        super::oci_ref(&self.layout_dir, &self.tag)
    }

    /// The child manifest for `os`/`arch`.
    pub fn for_platform(&self, os: &str, arch: &str) -> &BuiltImage {
        self.manifests
            .iter()
            .find(|m| m.platform.0 == os && m.platform.1 == arch)
            .unwrap_or_else(|| panic!("index has no {os}/{arch} manifest"))
    }
}

struct PendingLayer {
    media_type: String,
    blob: Vec<u8>,
    diff_id: String,
    history: String,
}

/// Builds one image manifest + config + layers into an OCI layout.
///
/// ```ignore
/// let mut t = LayerTar::new();
/// t.dir("etc", 0o755).file("etc/hello", "hi\n", 0o644);
/// let img = ImageBuilder::new().cmd(&["/bin/sh"]).layer(t.into_bytes(), Compression::Gzip)
///     .write(dir, "latest");
/// ```
pub struct ImageBuilder {
    os: String,
    architecture: String,
    variant: Option<String>,
    exec_config: serde_json::Map<String, Value>,
    layers: Vec<PendingLayer>,
    config_media_type: String,
    custom_config: Option<Vec<u8>>,
    annotations: BTreeMap<String, String>,
    artifact_type: Option<String>,
    expected_tree: Option<Tree>,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ImageBuilder {
    /// linux/amd64, empty exec config, no layers.
    pub fn new() -> ImageBuilder {
        ImageBuilder {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
            exec_config: serde_json::Map::new(),
            layers: Vec::new(),
            config_media_type: MT_CONFIG.into(),
            custom_config: None,
            annotations: BTreeMap::new(),
            artifact_type: None,
            expected_tree: None,
        }
    }

    pub fn platform(mut self, os: &str, architecture: &str) -> Self {
        self.os = os.into();
        self.architecture = architecture.into();
        self
    }

    pub fn variant(mut self, variant: &str) -> Self {
        self.variant = Some(variant.into());
        self
    }

    /// Sets `config.<key>` of the image config (e.g. `"StopSignal"`).
    pub fn config_field(mut self, key: &str, value: Value) -> Self {
        self.exec_config.insert(key.into(), value);
        self
    }

    pub fn env(self, env: &[&str]) -> Self {
        self.config_field("Env", json!(env))
    }

    pub fn cmd(self, cmd: &[&str]) -> Self {
        self.config_field("Cmd", json!(cmd))
    }

    pub fn entrypoint(self, ep: &[&str]) -> Self {
        self.config_field("Entrypoint", json!(ep))
    }

    pub fn working_dir(self, dir: &str) -> Self {
        self.config_field("WorkingDir", json!(dir))
    }

    pub fn user(self, user: &str) -> Self {
        self.config_field("User", json!(user))
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        let labels = self.exec_config.entry("Labels").or_insert_with(|| json!({}));
        labels[key] = json!(value);
        self
    }

    /// Adds a tar layer (`tar` is the uncompressed archive), compressed with `c`.
    pub fn layer(mut self, tar: Vec<u8>, c: Compression) -> Self {
        let diff_id = sha256_digest(&tar);
        let n = self.layers.len() + 1;
        self.layers.push(PendingLayer {
            media_type: c.media_type().into(),
            blob: c.compress(&tar),
            diff_id,
            history: format!("strata test fixture: layer {n} ({c:?})"),
        });
        self
    }

    /// Adds an already-encoded layer blob with any media type; `diff_id` goes
    /// into `rootfs.diff_ids` (for a raw wasm layer: the blob's own digest).
    pub fn raw_layer(mut self, media_type: &str, blob: Vec<u8>, diff_id: &str) -> Self {
        let n = self.layers.len() + 1;
        self.layers.push(PendingLayer {
            media_type: media_type.into(),
            blob,
            diff_id: diff_id.into(),
            history: format!("strata test fixture: layer {n} ({media_type})"),
        });
        self
    }

    /// Media type of the config blob (default OCI image config).
    pub fn config_media_type(mut self, mt: &str) -> Self {
        self.config_media_type = mt.into();
        self
    }

    /// Uses `bytes` as the config blob verbatim instead of generating an OCI config
    /// ([`ImageBuilder::layer_digests`] helps to build configs that list the layers).
    pub fn custom_config(mut self, media_type: &str, bytes: Vec<u8>) -> Self {
        self.config_media_type = media_type.into();
        self.custom_config = Some(bytes);
        self
    }

    /// Layer blob digests of the layers added so far (for custom configs).
    pub fn layer_digests(&self) -> Vec<String> {
        self.layers.iter().map(|l| sha256_digest(&l.blob)).collect()
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    pub fn artifact_type(mut self, t: &str) -> Self {
        self.artifact_type = Some(t.into());
        self
    }

    pub fn expected_tree(mut self, tree: Tree) -> Self {
        self.expected_tree = Some(tree);
        self
    }

    fn config_bytes(&self) -> Vec<u8> {
        if let Some(c) = &self.custom_config {
            return c.clone();
        }
        let mut v = json!({
            "created": FIXED_CREATED,
            "architecture": self.architecture,
            "os": self.os,
            "config": Value::Object(self.exec_config.clone()),
            "rootfs": {
                "type": "layers",
                "diff_ids": self.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
            "history": self.layers.iter().map(|l| json!({
                "created": FIXED_CREATED,
                "created_by": l.history,
            })).collect::<Vec<_>>(),
        });
        if let Some(var) = &self.variant {
            v["variant"] = json!(var);
        }
        to_json_bytes(&v)
    }

    /// Writes layer, config and manifest blobs into `layout` without tagging.
    pub fn write_blobs(&self, layout: &OciLayout) -> BuiltImage {
        let mut layers = Vec::new();
        let mut layer_json = Vec::new();
        for l in &self.layers {
            let d = layout.put_blob(&l.media_type, &l.blob);
            layer_json.push(d.to_json());
            layers.push(LayerInfo {
                media_type: l.media_type.clone(),
                digest: d.digest,
                diff_id: l.diff_id.clone(),
                size: d.size,
            });
        }
        let config_bytes = self.config_bytes();
        let config = layout.put_blob(&self.config_media_type, &config_bytes);
        let mut m = json!({
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": config.to_json(),
            "layers": layer_json,
        });
        if !self.annotations.is_empty() {
            m["annotations"] = json!(self.annotations);
        }
        if let Some(t) = &self.artifact_type {
            m["artifactType"] = json!(t);
        }
        let manifest_bytes = to_json_bytes(&m);
        let manifest = layout.put_blob(MT_MANIFEST, &manifest_bytes);
        BuiltImage {
            layout_dir: layout.path().to_path_buf(),
            tag: String::new(),
            manifest,
            manifest_bytes,
            config,
            config_bytes,
            layers,
            platform: (self.os.clone(), self.architecture.clone()),
            expected_tree: self.expected_tree.clone(),
        }
    }

    /// Writes the image into the layout at `dir` (created if needed) and tags it `tag`.
    pub fn write(self, dir: &Path, tag: &str) -> BuiltImage {
        let layout = OciLayout::create(dir);
        let mut img = self.write_blobs(&layout);
        layout.tag(&img.manifest, tag, None);
        img.tag = tag.into();
        img
    }

    fn platform_json(&self) -> Value {
        let mut p = json!({"os": self.os, "architecture": self.architecture});
        if let Some(v) = &self.variant {
            p["variant"] = json!(v);
        }
        p
    }
}

/// Writes an image index over `images` (each entry's `platform` from its
/// builder) into the layout at `dir` and tags the index `tag`.
pub fn write_index(dir: &Path, tag: &str, images: Vec<ImageBuilder>) -> BuiltIndex {
    let layout = OciLayout::create(dir);
    let mut manifests = Vec::new();
    let mut entries = Vec::new();
    for b in &images {
        let img = b.write_blobs(&layout);
        let mut e = img.manifest.to_json();
        e["platform"] = b.platform_json();
        entries.push(e);
        manifests.push(img);
    }
    let index_json = json!({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": entries});
    let index_bytes = to_json_bytes(&index_json);
    let index = layout.put_blob(MT_INDEX, &index_bytes);
    layout.tag(&index, tag, None);
    BuiltIndex { layout_dir: dir.to_path_buf(), tag: tag.into(), index, index_bytes, manifests }
}

// ---------------------------------------------------------------------------
// Ready-made images

/// Uncompressed tar of the busybox root filesystem (cached per test process).
pub fn busybox_layer_tar() -> &'static [u8] {
    static TAR: OnceLock<Vec<u8>> = OnceLock::new();
    TAR.get_or_init(|| {
        let bb = fs::read("/bin/busybox").unwrap_or_else(|e| panic!("read /bin/busybox (package busybox-static): {e}"));
        let mut t = LayerTar::new();
        t.dir("bin", 0o755).file("bin/busybox", &bb, 0o755);
        for a in BUSYBOX_APPLETS {
            t.symlink(&format!("bin/{a}"), "busybox");
        }
        t.dir("dev", 0o755)
            .dir("etc", 0o755)
            .file(
                "etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
                0o644,
            )
            .file("etc/group", "root:x:0:\nnogroup:x:65534:\nnobody:x:65534:\n", 0o644)
            .dir("proc", 0o555)
            .dir("root", 0o700)
            .dir("sys", 0o555)
            .dir("tmp", 0o1777);
        t.into_bytes()
    })
}

fn busybox_layer_gzip() -> &'static [u8] {
    static GZ: OnceLock<Vec<u8>> = OnceLock::new();
    GZ.get_or_init(|| Compression::Gzip.compress(busybox_layer_tar()))
}

/// The busybox image as a builder (one gzip layer, linux/amd64, PATH env,
/// Cmd ["sh"]), to add layers or change the config before writing.
pub fn busybox_builder() -> ImageBuilder {
    let tar = busybox_layer_tar();
    ImageBuilder::new().env(&[DEFAULT_PATH_ENV]).cmd(&["sh"]).raw_layer(
        MT_LAYER_GZIP,
        busybox_layer_gzip().to_vec(),
        &sha256_digest(tar),
    )
}

/// linux/amd64 image, one gzip layer: `/bin/busybox` (static, from the host)
/// plus relative symlinks `/bin/<applet> -> busybox` for [`BUSYBOX_APPLETS`];
/// dirs /dev /etc /proc /root (0700) /sys /tmp (1777); /etc/passwd and
/// /etc/group with root and nobody (65534). Env PATH=..., Cmd ["sh"].
pub fn busybox_image(dir: &Path, tag: &str) -> BuiltImage {
    busybox_builder().write(dir, tag)
}

/// Layers of [`multilayer_image`] (uncompressed tars) and the expected rootfs.
pub fn multilayer_layers() -> (Vec<Vec<u8>>, Tree) {
    // Layer 1: the base.
    let mut l1 = LayerTar::new();
    l1.dir("bin", 0o755)
        .file("bin/tool", "#!/bin/sh\necho tool v1\n", 0o755)
        .hardlink("bin/tool-hard", "bin/tool", 0o755)
        .symlink("bin/tool-rel", "tool")
        .symlink("bin/tool-abs", "/bin/tool")
        .file("bin/suid", "setuid\n", 0o4755)
        .file("bin/sgid", "setgid\n", 0o2755)
        .dir("etc", 0o755)
        .file("etc/hostname", "layer1\n", 0o644)
        .file("etc/motd", "hello from layer 1\n", 0o444)
        .file("etc/secret", "s3cret\n", 0o400)
        .dir("lib", 0o755)
        .symlink("lib/motd", "../etc/motd")
        .dir("data", 0o755)
        .file("data/keep.txt", "keep\n", 0o644)
        .file("data/remove-me.txt", "bye\n", 0o644)
        .file("data/exec.sh", "#!/bin/sh\nexit 0\n", 0o700)
        .dir("opaque", 0o755)
        .file("opaque/old1.txt", "old1\n", 0o644)
        .dir("opaque/sub", 0o755)
        .file("opaque/sub/old2.txt", "old2\n", 0o644)
        .dir("gone", 0o755)
        .file("gone/a.txt", "a\n", 0o644)
        .dir("gone/nested", 0o700)
        .file("gone/nested/b.txt", "b\n", 0o644)
        .dir("reborn", 0o755)
        .file("reborn/x.txt", "x from layer 1\n", 0o644)
        .dir("home", 0o755)
        .dir_owned("home/user", 0o750, 1000, 1000)
        .file_owned("home/user/notes.txt", "notes\n", 0o600, 1000, 1000)
        .dir("srv", 0o755)
        .file_owned("srv/www.html", "<html></html>\n", 0o640, 33, 33)
        .dir("empty", 0o700)
        .dir("tmp", 0o1777)
        .dir("var", 0o755)
        .dir("var/empty", 0o555);

    // Layer 2: modify, delete a file, delete directories, more hardlinks, owners.
    let mut l2 = LayerTar::new();
    l2.dir("etc", 0o755)
        .file("etc/hostname", "multilayer\n", 0o600)
        .dir("data", 0o755)
        .whiteout("data/remove-me.txt")
        .file("data/added-in-2.txt", "added in layer 2\n", 0o644)
        .file_owned("data/nobody.txt", "nobody\n", 0o664, 65534, 65534)
        .dir_owned("data/owned-dir", 0o2775, 1000, 100)
        .whiteout("gone")
        .whiteout("reborn")
        .dir("bin", 0o755)
        .file("bin/tool2", "tool2\n", 0o755)
        .hardlink("bin/tool2-hard", "bin/tool2", 0o755)
        .hardlink("bin/tool2-hard2", "bin/tool2", 0o755);

    // Layer 3: opaque dir with new contents, re-created dir, changed symlink.
    let mut l3 = LayerTar::new();
    l3.dir("opaque", 0o755)
        .opaque("opaque")
        .file("opaque/new.txt", "new in layer 3\n", 0o644)
        .dir("opaque/sub", 0o711)
        .file("opaque/sub/new2.txt", "new2\n", 0o644)
        .dir("reborn", 0o755)
        .file("reborn/y.txt", "y from layer 3\n", 0o644)
        .dir("bin", 0o755)
        .symlink("bin/tool-rel", "tool2")
        .dir("etc", 0o755)
        .file("etc/motd", "motd from layer 3\n", 0o644);

    let mut t = Tree::new();
    let mut add = |p: &str, e: Entry| {
        t.insert(p.to_string(), e);
    };
    add("/bin", Entry::dir(0o755, 0, 0));
    add("/bin/tool", Entry::file("#!/bin/sh\necho tool v1\n", 0o755, 0, 0).with_link_group("/bin/tool"));
    add("/bin/tool-hard", Entry::file("#!/bin/sh\necho tool v1\n", 0o755, 0, 0).with_link_group("/bin/tool"));
    add("/bin/tool-rel", Entry::symlink("tool2", 0, 0));
    add("/bin/tool-abs", Entry::symlink("/bin/tool", 0, 0));
    add("/bin/suid", Entry::file("setuid\n", 0o4755, 0, 0));
    add("/bin/sgid", Entry::file("setgid\n", 0o2755, 0, 0));
    add("/bin/tool2", Entry::file("tool2\n", 0o755, 0, 0).with_link_group("/bin/tool2"));
    add("/bin/tool2-hard", Entry::file("tool2\n", 0o755, 0, 0).with_link_group("/bin/tool2"));
    add("/bin/tool2-hard2", Entry::file("tool2\n", 0o755, 0, 0).with_link_group("/bin/tool2"));
    add("/etc", Entry::dir(0o755, 0, 0));
    add("/etc/hostname", Entry::file("multilayer\n", 0o600, 0, 0));
    add("/etc/motd", Entry::file("motd from layer 3\n", 0o644, 0, 0));
    add("/etc/secret", Entry::file("s3cret\n", 0o400, 0, 0));
    add("/lib", Entry::dir(0o755, 0, 0));
    add("/lib/motd", Entry::symlink("../etc/motd", 0, 0));
    add("/data", Entry::dir(0o755, 0, 0));
    add("/data/keep.txt", Entry::file("keep\n", 0o644, 0, 0));
    add("/data/exec.sh", Entry::file("#!/bin/sh\nexit 0\n", 0o700, 0, 0));
    add("/data/added-in-2.txt", Entry::file("added in layer 2\n", 0o644, 0, 0));
    add("/data/nobody.txt", Entry::file("nobody\n", 0o664, 65534, 65534));
    add("/data/owned-dir", Entry::dir(0o2775, 1000, 100));
    add("/opaque", Entry::dir(0o755, 0, 0));
    add("/opaque/new.txt", Entry::file("new in layer 3\n", 0o644, 0, 0));
    add("/opaque/sub", Entry::dir(0o711, 0, 0));
    add("/opaque/sub/new2.txt", Entry::file("new2\n", 0o644, 0, 0));
    add("/reborn", Entry::dir(0o755, 0, 0));
    add("/reborn/y.txt", Entry::file("y from layer 3\n", 0o644, 0, 0));
    add("/home", Entry::dir(0o755, 0, 0));
    add("/home/user", Entry::dir(0o750, 1000, 1000));
    add("/home/user/notes.txt", Entry::file("notes\n", 0o600, 1000, 1000));
    add("/srv", Entry::dir(0o755, 0, 0));
    add("/srv/www.html", Entry::file("<html></html>\n", 0o640, 33, 33));
    add("/empty", Entry::dir(0o700, 0, 0));
    add("/tmp", Entry::dir(0o1777, 0, 0));
    add("/var", Entry::dir(0o755, 0, 0));
    add("/var/empty", Entry::dir(0o555, 0, 0));

    (vec![l1.into_bytes(), l2.into_bytes(), l3.into_bytes()], t)
}

/// linux/amd64 image with three gzip layers (see [`multilayer_layers`]):
/// added files; `/etc/hostname` modified (content and mode) in layer 2 and
/// `/etc/motd` in layer 3; `/data/remove-me.txt` deleted by a `.wh.` whiteout;
/// directories `/gone` (deleted) and `/reborn` (deleted in 2, re-created in 3)
/// whited out; `/opaque` made opaque (`.wh..wh..opq`) in layer 3 with new
/// contents; hardlink groups `/bin/tool{,-hard}` and `/bin/tool2{,-hard,-hard2}`;
/// relative (`/bin/tool-rel`, `/lib/motd -> ../etc/motd`) and absolute
/// (`/bin/tool-abs -> /bin/tool`) symlinks, the relative one re-pointed in
/// layer 3; setuid `/bin/suid` (4755), setgid `/bin/sgid` (2755) and dir
/// `/data/owned-dir` (2775, 1000:100); owners 1000:1000, 33:33, 65534:65534;
/// modes 0400..0777, /tmp 1777; empty dirs `/empty` (0700) and `/var/empty`
/// (0555). Fixed mtimes. `expected_tree` holds the final rootfs.
pub fn multilayer_image(dir: &Path, tag: &str) -> BuiltImage {
    let (layers, tree) = multilayer_layers();
    let mut b = ImageBuilder::new().env(&[DEFAULT_PATH_ENV]).cmd(&["/bin/tool"]).expected_tree(tree);
    for l in layers {
        b = b.layer(l, Compression::Gzip);
    }
    b.write(dir, tag)
}

/// linux/amd64 image with two `tar+zstd` layers and no shell: layer 1 has
/// /etc/os-release, /hello.txt ("hello from zstd layer 1\n"), /data/old.txt;
/// layer 2 rewrites /hello.txt ("hello from zstd layer 2\n"), adds
/// /data/new.txt and whites out /data/old.txt. `expected_tree` is set.
pub fn zstd_image(dir: &Path, tag: &str) -> BuiltImage {
    let os_release = "NAME=strata-zstd-fixture\nID=strata\n";
    let mut l1 = LayerTar::new();
    l1.dir("etc", 0o755)
        .file("etc/os-release", os_release, 0o644)
        .file("hello.txt", "hello from zstd layer 1\n", 0o644)
        .dir("data", 0o755)
        .file("data/old.txt", "old\n", 0o644);
    let mut l2 = LayerTar::new();
    l2.file("hello.txt", "hello from zstd layer 2\n", 0o644).dir("data", 0o755).whiteout("data/old.txt").file_owned(
        "data/new.txt",
        "new\n",
        0o640,
        1000,
        1000,
    );
    let mut t = Tree::new();
    t.insert("/etc".into(), Entry::dir(0o755, 0, 0));
    t.insert("/etc/os-release".into(), Entry::file(os_release, 0o644, 0, 0));
    t.insert("/hello.txt".into(), Entry::file("hello from zstd layer 2\n", 0o644, 0, 0));
    t.insert("/data".into(), Entry::dir(0o755, 0, 0));
    t.insert("/data/new.txt".into(), Entry::file("new\n", 0o640, 1000, 1000));
    ImageBuilder::new()
        .env(&[DEFAULT_PATH_ENV])
        .cmd(&["/hello.txt"])
        .layer(l1.into_bytes(), Compression::Zstd)
        .layer(l2.into_bytes(), Compression::Zstd)
        .expected_tree(t)
        .write(dir, tag)
}

/// An image index tagged `tag` with two manifests:
/// * linux/amd64: one uncompressed tar layer with `/hello.txt`
///   ("hello from linux/amd64\n"), Cmd ["/hello.txt"];
/// * wasi/wasm: one uncompressed tar layer with `/hello.wasm` = [`HELLO_WASM`]
///   (mode 0755), Entrypoint ["/hello.wasm"].
pub fn multiplatform_index(dir: &Path, tag: &str) -> BuiltIndex {
    let mut native = LayerTar::new();
    native.file("hello.txt", "hello from linux/amd64\n", 0o644);
    let mut wasm = LayerTar::new();
    wasm.file("hello.wasm", HELLO_WASM, 0o755);
    write_index(
        dir,
        tag,
        vec![
            ImageBuilder::new()
                .env(&[DEFAULT_PATH_ENV])
                .cmd(&["/hello.txt"])
                .layer(native.into_bytes(), Compression::None),
            ImageBuilder::new()
                .platform("wasi", "wasm")
                .entrypoint(&["/hello.wasm"])
                .layer(wasm.into_bytes(), Compression::None),
        ],
    )
}

/// [`wasm_artifact_image_with`] with [`HELLO_WASM`].
pub fn wasm_artifact_image(dir: &Path, tag: &str) -> BuiltImage {
    wasm_artifact_image_with(dir, tag, HELLO_WASM)
}

/// A wasm OCI artifact (CNCF wasm-oci layout): one layer of media type
/// `application/vnd.wasm.content.layer.v1+wasm` holding the raw `module` bytes
/// (not a tar) and a config of media type `application/vnd.wasm.config.v0+json`:
/// `{"architecture":"wasm","author":...,"created":...,"layerDigests":[...],"os":"wasip1"}`.
pub fn wasm_artifact_image_with(dir: &Path, tag: &str, module: &[u8]) -> BuiltImage {
    let digest = sha256_digest(module);
    let config = json!({
        "created": FIXED_CREATED,
        "author": "strata test fixtures",
        "architecture": "wasm",
        "os": "wasip1",
        "layerDigests": [digest],
    });
    ImageBuilder::new()
        .platform("wasip1", "wasm")
        .raw_layer(MT_WASM_LAYER, module.to_vec(), &digest)
        .custom_config(MT_WASM_CONFIG, to_json_bytes(&config))
        .write(dir, tag)
}

/// [`wasm_component_image_with`] with [`EMPTY_WASM_COMPONENT`] (valid, not runnable).
pub fn wasm_component_image(dir: &Path, tag: &str) -> BuiltImage {
    wasm_component_image_with(dir, tag, EMPTY_WASM_COMPONENT)
}

/// A component image: one raw layer of media type
/// `application/vnd.bytecodealliance.wasm.component.layer.v0+wasm` and a normal
/// OCI image config with os `wasip2`, architecture `wasm`,
/// `rootfs.diff_ids = [digest of the component]`.
pub fn wasm_component_image_with(dir: &Path, tag: &str, component: &[u8]) -> BuiltImage {
    let digest = sha256_digest(component);
    ImageBuilder::new()
        .platform("wasip2", "wasm")
        .raw_layer(MT_WASM_COMPONENT_LAYER, component.to_vec(), &digest)
        .write(dir, tag)
}
