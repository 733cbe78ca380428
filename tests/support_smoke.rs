//! Proves the fixtures in tests/support are real: a real registry accepts them,
//! skopeo round-trips them with their digests intact, umoci unpacks them to the
//! expected trees.

mod support;

use std::io::Read;
use std::path::Path;

use support::images::{MT_CONFIG, MT_INDEX, MT_LAYER_GZIP, MT_LAYER_TAR, MT_LAYER_ZSTD, MT_MANIFEST};
use support::images::{MT_WASM_COMPONENT_LAYER, MT_WASM_CONFIG, MT_WASM_LAYER};
use support::*;

/// Decompresses every tar layer of `img` from its layout and checks digest,
/// size and diff_id; raw (wasm) layers must have diff_id == digest.
fn verify_layers(img: &BuiltImage) {
    let layout = OciLayout::create(&img.layout_dir);
    let manifest = img.manifest_json();
    assert_eq!(manifest["mediaType"], MT_MANIFEST);
    assert_eq!(manifest["config"]["digest"], img.config.digest);
    assert_eq!(sha256_digest(&layout.read_blob(&img.config.digest)), img.config.digest);
    for (i, l) in img.layers.iter().enumerate() {
        let blob = layout.read_blob(&l.digest);
        assert_eq!(sha256_digest(&blob), l.digest);
        assert_eq!(blob.len() as u64, l.size);
        assert_eq!(manifest["layers"][i]["digest"], l.digest);
        assert_eq!(manifest["layers"][i]["mediaType"], l.media_type);
        assert_eq!(manifest["layers"][i]["size"], l.size);
        let plain = match l.media_type.as_str() {
            MT_LAYER_TAR => blob.clone(),
            MT_LAYER_GZIP => {
                let mut v = Vec::new();
                flate2::read::GzDecoder::new(&blob[..]).read_to_end(&mut v).unwrap();
                v
            }
            MT_LAYER_ZSTD => zstd::decode_all(&blob[..]).unwrap(),
            _ => {
                assert_eq!(l.diff_id, l.digest, "raw layer diff_id");
                continue;
            }
        };
        assert_eq!(sha256_digest(&plain), l.diff_id, "diff_id of layer {i}");
        // It is a well-formed tar.
        let mut ar = tar::Archive::new(&plain[..]);
        assert!(ar.entries().unwrap().all(|e| e.is_ok()));
    }
    if img.config.media_type == MT_CONFIG {
        let cfg = img.config_json();
        assert_eq!(cfg["rootfs"]["diff_ids"], serde_json::json!(img.diff_ids()));
    }
}

fn assert_registry_manifest(reg: &Registry, repo: &str, reference: &str, expect_digest: &str) {
    let r = if reference.starts_with("sha256:") {
        format!("docker://{}/{}@{}", reg.addr(), repo, reference)
    } else {
        reg.docker_ref(repo, reference)
    };
    let raw = skopeo_inspect_raw(&r, reg.creds().as_deref());
    assert_eq!(sha256_digest(&raw), expect_digest, "digest of {r} as served");
}

#[test]
fn fixtures_push_to_registry_with_digests_intact() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");

    let bb = busybox_image(&layout, "busybox");
    let ml = multilayer_image(&layout, "multilayer");
    let zs = zstd_image(&layout, "zstd");
    let wa = wasm_artifact_image(&layout, "wasm-artifact");
    let wc = wasm_component_image(&layout, "wasm-component");
    let mp = multiplatform_index(&layout, "multi");

    for img in [&bb, &ml, &zs, &wa, &wc] {
        verify_layers(img);
    }
    for img in &mp.manifests {
        verify_layers(img);
    }
    assert_eq!(bb.config_json()["config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(zs.layers[0].media_type, MT_LAYER_ZSTD);
    assert_eq!(wa.config.media_type, MT_WASM_CONFIG);
    assert_eq!(wa.layers[0].media_type, MT_WASM_LAYER);
    assert_eq!(wa.config_json()["layerDigests"], serde_json::json!([wa.layers[0].digest]));
    assert_eq!(wc.layers[0].media_type, MT_WASM_COMPONENT_LAYER);
    assert_eq!(wc.config_json()["os"], "wasip2");
    let wasi = mp.for_platform("wasi", "wasm");
    assert_eq!(wasi.config_json()["config"]["Entrypoint"], serde_json::json!(["/hello.wasm"]));
    let index: serde_json::Value = serde_json::from_slice(&mp.index_bytes).unwrap();
    assert_eq!(index["mediaType"], MT_INDEX);
    assert_eq!(index["manifests"][1]["platform"]["os"], "wasi");
    assert_eq!(index["manifests"][1]["platform"]["architecture"], "wasm");

    for (img, repo) in
        [(&bb, "busybox"), (&ml, "multilayer"), (&zs, "zstd"), (&wa, "wasm-artifact"), (&wc, "wasm-component")]
    {
        // The plain helper, exactly as documented (no --preserve-digests): the
        // manifest must still come out byte for byte.
        skopeo_copy(&img.oci_ref(), &reg.docker_ref(repo, "v1"));
        assert_registry_manifest(&reg, repo, "v1", img.manifest_digest());
        let m = reg.get_manifest(repo, "v1");
        assert_eq!(m.status, 200, "{}", m.text());
        assert_eq!(sha256_digest(&m.body), img.manifest_digest());
        for l in &img.layers {
            assert!(reg.blob_data_path(&l.digest).is_file(), "blob {} of {repo} not in registry storage", l.digest);
        }
    }

    // The index, with all its platforms.
    let pushed = push_layout(&reg, &layout, "multi", "multi");
    assert_eq!(pushed, reg.docker_ref("multi", "multi"));
    assert_registry_manifest(&reg, "multi", "multi", mp.index_digest());
    for m in &mp.manifests {
        assert_registry_manifest(&reg, "multi", m.manifest_digest(), m.manifest_digest());
        for l in &m.layers {
            assert!(reg.blob_data_path(&l.digest).is_file());
        }
    }
    let wasm_layer = &wasi.layers[0].digest;
    let blob = reg.get_blob("multi", wasm_layer);
    assert_eq!(blob.status, 200);
    assert_eq!(sha256_digest(&blob.body), *wasm_layer);

    // The raw wasm artifact layer is served as is.
    let blob = reg.get_blob("wasm-artifact", &wa.layers[0].digest);
    assert_eq!(blob.body, HELLO_WASM);

    // stop() kills the process by PID and reaps it.
    let mut reg = reg;
    let pid = reg.pid().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    reg.stop();
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "registry {pid} still alive");
    assert!(reg.pid().is_none());
}

#[test]
fn umoci_unpacks_multilayer_to_expected_tree_and_registry_roundtrip_is_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let ml = multilayer_image(&layout, "ml");
    let out = tmp.path().join("unpacked");
    umoci_unpack(&layout, "ml", &out);
    let rootfs = out.join("rootfs");
    let expected = ml.expected_tree.as_ref().unwrap();
    assert_tree_eq(&tree_snapshot(&rootfs), expected);
    // mtimes made it through too.
    let snap = tree_snapshot(&rootfs);
    assert_eq!(snap["/etc/secret"].mtime, support::images::FIXED_MTIME as i64);

    // Through a registry and back: same bytes, same tree.
    let reg = Registry::start();
    skopeo_copy(&ml.oci_ref(), &reg.docker_ref("ml", "t"));
    let back = tmp.path().join("back");
    skopeo_copy(&reg.docker_ref("ml", "t"), &oci_ref(&back, "t"));
    let back_index = OciLayout::create(&back).read_index();
    assert_eq!(back_index["manifests"][0]["digest"], ml.manifest_digest());
    let out2 = tmp.path().join("unpacked2");
    umoci_unpack(&back, "t", &out2);
    assert_same_tree(&rootfs, out2.join("rootfs"));
    assert_same_tree_with(&rootfs, out2.join("rootfs"), CompareOptions { mtime: true, ..Default::default() });
}

#[test]
fn umoci_unpacks_busybox_and_it_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    busybox_image(&layout, "bb");
    let out = tmp.path().join("bb");
    umoci_unpack(&layout, "bb", &out);
    let rootfs = out.join("rootfs");
    let snap = tree_snapshot(&rootfs);
    for a in
        ["sh", "echo", "cat", "ls", "true", "false", "sleep", "env", "id", "hostname", "mkdir", "rm", "ps", "mount"]
    {
        assert_eq!(snap[&format!("/bin/{a}")].kind, Kind::Symlink { target: "busybox".into() }, "/bin/{a}");
    }
    assert_eq!(snap["/tmp"].mode, 0o1777);
    for d in ["/etc", "/proc", "/sys", "/dev", "/root"] {
        assert_eq!(snap[d].kind, Kind::Dir, "{d}");
    }
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.starts_with("root:x:0:0:") && passwd.contains("\nnobody:x:65534:"));
    let ran = run(std::process::Command::new(rootfs.join("bin/sh")).args(["-c", "echo hi from busybox"]));
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "hi from busybox\n");
}

#[test]
fn basic_auth_registry_refuses_anonymous_push() {
    let reg = Registry::start_with_basic_auth("tester", "s3cret-pass");
    let anon = support::registry::http_request(reg.addr(), "GET", "/v2/", &[], &[]).unwrap();
    assert_eq!(anon.status, 401);
    assert!(anon.header("www-authenticate").unwrap_or("").starts_with("Basic"));
    assert_eq!(reg.get("/v2/").status, 200);

    let tmp = tempfile::tempdir().unwrap();
    let img = zstd_image(&tmp.path().join("layout"), "z");
    let err = try_skopeo_copy(&["--dest-no-creds"], &img.oci_ref(), &reg.docker_ref("private", "z"))
        .expect_err("anonymous push must be refused");
    assert!(err.contains("authentication required") || err.contains("unauthorized"), "unexpected failure text: {err}");
    let err = try_skopeo_copy(&["--dest-creds", "tester:wrong"], &img.oci_ref(), &reg.docker_ref("private", "z"))
        .expect_err("wrong password must be refused");
    assert!(err.contains("unauthorized") || err.contains("authentication required"), "{err}");

    skopeo_copy_with(&["--dest-creds", "tester:s3cret-pass"], &img.oci_ref(), &reg.docker_ref("private", "z"));
    assert_registry_manifest(&reg, "private", "z", img.manifest_digest());
    assert!(reg.log().contains("/v2/private/manifests/z"));
}

#[test]
fn tree_diff_is_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/same"), "x").unwrap();
        std::os::unix::fs::symlink("../sub/same", d.join("link")).unwrap();
    }
    std::fs::write(a.join("only-a"), "a").unwrap();
    std::fs::write(a.join("sub/diff"), "one").unwrap();
    std::fs::write(b.join("sub/diff"), "two!").unwrap();
    std::fs::hard_link(b.join("sub/same"), b.join("sub/same2")).unwrap();
    assert_same_tree(a.join("sub").join(".."), &a);
    let msg =
        std::panic::catch_unwind(|| assert_same_tree(&a, &b)).expect_err("trees differ").downcast::<String>().unwrap();
    assert!(msg.contains("- /only-a: file 1 bytes"), "{msg}");
    assert!(msg.contains("~ /sub/diff: file 3 bytes"), "{msg}");
    assert!(msg.contains("+ /sub/same2:"), "{msg}");
    assert!(msg.contains("~ /sub/same: hardlink group None != Some(\"/sub/same\")"), "{msg}");
    assert!(!msg.contains("/link"), "{msg}");
}
