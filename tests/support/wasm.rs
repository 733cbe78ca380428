//! The example wasm guests and images, built from `wasm-examples/` once per test binary.
//!
//! [`guests`] runs `build-guests.sh` (clang + wasi-libc, wat2wasm) and makes the p2 component
//! in-process with wit-component (cargo holds its build lock while tests run, so the script's
//! `cargo run` of the componentizer would wait forever). [`example_images`] then runs
//! `build.sh` on those guests with the strata binary under test: the same script the demo and
//! CI use, so the images tested are the images shipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The built guests: hello, files, busy, grow (C), trap, busy-loop, hello-wat (WAT) and
/// hello-component (p2) as `NAME.wasm`.
pub fn guests() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wasm-guests");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm-examples/build-guests.sh");
        let status = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .env("STRATA_COMPONENTIZE", "skip")
            .status()
            .expect("running build-guests.sh");
        assert!(status.success(), "build-guests.sh failed");
        let module = std::fs::read(dir.join("hello.wasm")).unwrap();
        std::fs::write(dir.join("hello-component.wasm"), componentize(&module)).unwrap();
        dir
    })
}

/// A WASI p1 command module as a p2 component (the preview1 command adapter).
pub fn componentize(module: &[u8]) -> Vec<u8> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .unwrap()
        .adapter(
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
        )
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

/// The path of guest `name` (without `.wasm`).
pub fn guest(name: &str) -> PathBuf {
    guests().join(format!("{name}.wasm"))
}

/// `wasm-examples/build.sh`'s archives (hello-wasm, wasm-examples, hello-component,
/// hello-artifact, hello-component-artifact, hello-multi, busybox `.tar`), built with the
/// strata binary under test. Images are named `localhost/strata-examples/NAME:latest`.
pub fn example_images() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wasm-example-images");
        let _ = std::fs::remove_dir_all(&out);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm-examples/build.sh");
        let output = Command::new("bash")
            .arg(&script)
            .arg(env!("CARGO_BIN_EXE_strata"))
            .env("OUT_DIR", &out)
            .env("STRATA_EXAMPLE_GUESTS", guests())
            .env_remove("STRATA_ROOT")
            .output()
            .expect("running build.sh");
        assert!(output.status.success(), "build.sh failed:\n{}", String::from_utf8_lossy(&output.stderr));
        out
    })
}

/// One of [`example_images`]' archives, e.g. `archive("hello-wasm")`.
pub fn archive(name: &str) -> PathBuf {
    example_images().join(format!("{name}.tar"))
}

/// How many MiB `grow` allocated before its allocation failed, from its output
/// ("grow: allocation failed after N MiB").
pub fn grow_failed_after(stdout: &str) -> u64 {
    stdout
        .trim()
        .strip_prefix("grow: allocation failed after ")
        .and_then(|s| s.strip_suffix(" MiB"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output of grow: {stdout:?}"))
}

/// A p2 command component that imports an interface no WASI host provides.
pub fn component_with_missing_import() -> Vec<u8> {
    wat::parse_str(
        r#"(component
             (import "example:missing/frobnicate@0.1.0" (instance $m (export "frob" (func))))
             (core module $c (func (export "run") (result i32) i32.const 0))
             (core instance $ci (instantiate $c))
             (func $run (result (result)) (canon lift (core func $ci "run")))
             (instance $r (export "run" (func $run)))
             (export "wasi:cli/run@0.2.0" (instance $r)))"#,
    )
    .expect("component WAT")
}

/// The import [`component_with_missing_import`] needs.
pub const MISSING_IMPORT: &str = "example:missing/frobnicate@0.1.0";
