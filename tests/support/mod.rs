//! Shared fixtures for strata's end-to-end tests.
//!
//! Use from a test file with `mod support;` (the file must be registered as an
//! integration test of crate `strata`, see `runtime/Cargo.toml`).
//!
//! * [`registry::Registry`]: a real `docker-registry` (CNCF distribution 2.8) on
//!   127.0.0.1, optionally with htpasswd basic auth.
//! * [`images`]: an OCI image-layout writer ([`images::OciLayout`],
//!   [`images::LayerTar`], [`images::ImageBuilder`]) and ready-made images
//!   (busybox, multi-layer with whiteouts, zstd, multi-platform index, wasm
//!   artifacts).
//! * [`tree`]: snapshot of a directory tree for file-by-file comparison of
//!   unpacked root filesystems.
//! * [`wasm`]: the example guests and images of `wasm-examples/`, built once per binary.
//! * skopeo / umoci wrappers in this file.
//!
//! Everything here panics with a descriptive message on failure (it is test
//! code) unless its name starts with `try_`, which returns a `Result`.
#![allow(dead_code, unused_imports)]

pub mod bundle;
pub mod containerd;
pub mod images;
pub mod registry;
pub mod tls;
pub mod token;
pub mod tree;
pub mod wasm;

pub use images::{
    busybox_builder, busybox_image, multilayer_image, multiplatform_index, wasm_artifact_image,
    wasm_artifact_image_with, wasm_component_image, wasm_component_image_with, write_index, zstd_image, BuiltImage,
    BuiltIndex, Compression, Descriptor, ImageBuilder, LayerInfo, LayerTar, OciLayout, EMPTY_WASM_COMPONENT,
    EMPTY_WASM_MODULE, HELLO_WASM, HELLO_WASM_STDOUT,
};
pub use registry::{HttpResponse, Registry};
pub use tree::{
    assert_same_tree, assert_same_tree_with, assert_tree_eq, assert_tree_eq_with, diff_trees, tree_snapshot,
    CompareOptions, Entry, Kind, Tree,
};

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use sha2::{Digest, Sha256};

/// Wait for `cond`, checking every 20 ms, up to `limit` (a condition, not a sleep).
pub fn wait_for(what: &str, limit: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Whether a process's resident set is under half its peak (VmRSS against VmHWM): what
/// giving back the code that started it does, whatever size the kernel maps code in.
pub fn rss_below_half_peak(pid: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |key: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    kb("VmRSS:") * 2 < kb("VmHWM:")
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// Lower-case hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Renders a command line for error messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` (stdin closed), returns its output if it exited 0, otherwise
/// an error text with the command line, status, stdout and stderr.
pub fn try_run(cmd: &mut Command) -> Result<Output, String> {
    let line = describe(cmd);
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("cannot spawn `{line}`: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "`{line}` failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Like [`try_run`] but panics on failure.
pub fn run(cmd: &mut Command) -> Output {
    try_run(cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// `skopeo copy --src-tls-verify=false --dest-tls-verify=false --insecure-policy SRC DST`,
/// panicking (with skopeo's stderr) unless it succeeds. Returns skopeo's stdout.
pub fn skopeo_copy(src: &str, dst: &str) -> String {
    skopeo_copy_with(&[], src, dst)
}

/// [`skopeo_copy`] with extra options placed before SRC, e.g.
/// `&["--all", "--preserve-digests", "--dest-creds", "user:pass"]`.
pub fn skopeo_copy_with(extra: &[&str], src: &str, dst: &str) -> String {
    try_skopeo_copy(extra, src, dst).unwrap_or_else(|e| panic!("{e}"))
}

/// [`skopeo_copy_with`] returning the failure text (with stderr) instead of panicking,
/// for tests that expect a copy to be refused.
pub fn try_skopeo_copy(extra: &[&str], src: &str, dst: &str) -> Result<String, String> {
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--insecure-policy"]);
    cmd.args(extra).arg(src).arg(dst);
    try_run(&mut cmd).map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// `skopeo inspect --raw --tls-verify=false [--creds C] REF`: the manifest (or index)
/// bytes exactly as the registry serves them. `image_ref` is e.g.
/// `docker://127.0.0.1:5000/busybox:latest` or `oci:/dir:tag`.
pub fn skopeo_inspect_raw(image_ref: &str, creds: Option<&str>) -> Vec<u8> {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--raw"]);
    if image_ref.starts_with("docker://") {
        cmd.arg("--tls-verify=false");
        match creds {
            Some(c) => cmd.args(["--creds", c]),
            None => cmd.arg("--no-creds"),
        };
    }
    cmd.arg(image_ref);
    run(&mut cmd).stdout
}

/// Pushes `layout_dir:tag` to `registry` as `repo:tag` with `--all --preserve-digests`
/// (so the pushed manifest/index digests are exactly the layout's) and the registry's
/// credentials if it has any. Returns the `docker://...` reference.
pub fn push_layout(registry: &Registry, layout_dir: &Path, tag: &str, repo: &str) -> String {
    let dst = registry.docker_ref(repo, tag);
    let src = oci_ref(layout_dir, tag);
    let creds = registry.creds();
    let mut extra = vec!["--all", "--preserve-digests", "--quiet"];
    if let Some(c) = creds.as_deref() {
        extra.push("--dest-creds");
        extra.push(c);
    }
    skopeo_copy_with(&extra, &src, &dst);
    dst
}

/// `oci:DIR:TAG`.
pub fn oci_ref(layout_dir: &Path, tag: &str) -> String {
    format!("oci:{}:{}", layout_dir.display(), tag)
}

/// `umoci unpack --image DIR:TAG OUT` (as root: ownership is kept). The root
/// filesystem ends up in `OUT/rootfs`. `OUT` must not exist yet.
pub fn umoci_unpack(layout_dir: &Path, tag: &str, out: &Path) {
    let mut cmd = Command::new("umoci");
    cmd.arg("unpack").arg("--image").arg(format!("{}:{}", layout_dir.display(), tag)).arg(out);
    run(&mut cmd);
}

/// Compiles WebAssembly text with `wat2wasm` (package wabt) and returns the module bytes.
pub fn wat2wasm(wat: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir for wat2wasm");
    let src = dir.path().join("m.wat");
    let dst = dir.path().join("m.wasm");
    std::fs::write(&src, wat).expect("write .wat");
    run(Command::new("wat2wasm").arg(&src).arg("-o").arg(&dst));
    std::fs::read(&dst).expect("read wat2wasm output")
}

/// True if `program` is found on PATH (to skip gracefully where a tool is optional).
pub fn have_program(program: impl AsRef<OsStr>) -> bool {
    let program = program.as_ref();
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file())).unwrap_or(false)
}

/// Minimal standard base64 (for `Authorization: Basic`).
pub fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if chunk.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}
