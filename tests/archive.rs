//! End-to-end: `strata save` / `strata load` round trips through skopeo's oci-archive and
//! docker-archive transports.

mod cli;
mod support;

use cli::Strata;
use support::*;

fn loaded_digest(s: &Strata, name: &str) -> String {
    s.inspect(name)["Digest"].as_str().unwrap().to_string()
}

#[test]
fn save_is_an_oci_archive_skopeo_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let img = multilayer_image(&layout, "v1");
    // Get the image into strata through an archive made by skopeo.
    let archive = tmp.path().join("in.tar");
    skopeo_copy(&img.oci_ref(), &format!("oci-archive:{}:localhost/multi:v1", archive.display()));
    let s = Strata::new();
    let out = s.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: localhost/multi:v1");
    assert_eq!(loaded_digest(&s, "localhost/multi:v1"), img.manifest_digest());

    // strata save -> skopeo reads it -> same manifest digest.
    let saved = tmp.path().join("saved.tar");
    s.ok(&["save", "-o", saved.to_str().unwrap(), "localhost/multi:v1"]);
    let copy = tmp.path().join("copy");
    skopeo_copy(&format!("oci-archive:{}", saved.display()), &format!("oci:{}:x", copy.display()));
    let raw = skopeo_inspect_raw(&format!("oci:{}:x", copy.display()), None);
    assert_eq!(sha256_digest(&raw), img.manifest_digest());

    // ... and a fresh strata root loads it back with the same identity.
    let t = Strata::new();
    let out = t.ok(&["load", "-i", saved.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: localhost/multi:v1");
    assert_eq!(t.inspect("localhost/multi:v1")["Id"], img.config_digest());
}

#[test]
fn docker_archives_load_and_keep_their_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let img = busybox_image(&layout, "latest");
    let archive = tmp.path().join("docker.tar");
    skopeo_copy(&img.oci_ref(), &format!("docker-archive:{}:example.com/tools/busybox:1.0", archive.display()));
    let s = Strata::new();
    let out = s.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: example.com/tools/busybox:1.0");
    let info = s.inspect("example.com/tools/busybox:1.0");
    assert_eq!(info["Id"], img.config_digest(), "the config is kept byte for byte");
    assert_eq!(info["RootFS"]["Layers"], serde_json::json!(img.diff_ids()));
    assert_eq!(info["Kind"], "native");
    assert!(info["Layers"].as_array().unwrap().iter().all(|l| l["Unpacked"] == true));

    // and the other way: strata save -> skopeo docker-archive reader? strata writes OCI +
    // manifest.json; skopeo's docker-archive transport reads manifest.json.
    let saved = tmp.path().join("saved.tar");
    s.ok(&["save", "-o", saved.to_str().unwrap(), "example.com/tools/busybox:1.0"]);
    let copy = tmp.path().join("copy");
    skopeo_copy(&format!("docker-archive:{}", saved.display()), &format!("oci:{}:x", copy.display()));
    let bundle = tmp.path().join("bundle");
    umoci_unpack(&copy, "x", &bundle);
    assert!(bundle.join("rootfs/bin/busybox").is_file());
}

#[test]
fn compressed_archive_from_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let img = zstd_image(&layout, "z");
    let archive = tmp.path().join("in.tar");
    skopeo_copy(&img.oci_ref(), &format!("oci-archive:{}:localhost/z:1", archive.display()));
    let raw = std::fs::read(&archive).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    let s = Strata::new();
    let out = s.run_stdin(&["load"], &gz.finish().unwrap());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "Loaded image: localhost/z:1");
}

#[test]
fn corrupt_archive_loads_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let img = busybox_image(&layout, "latest");
    // Corrupt the layer blob inside the layout, then archive it by hand (skopeo would refuse).
    let blob = layout.join("blobs/sha256").join(&img.layers[0].digest["sha256:".len()..]);
    let mut bytes = std::fs::read(&blob).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    std::fs::write(&blob, bytes).unwrap();
    let archive = tmp.path().join("bad.tar");
    run(std::process::Command::new("tar").arg("-C").arg(&layout).arg("-cf").arg(&archive).arg("."));
    let s = Strata::new();
    let e = s.fails(&["load", "-i", archive.to_str().unwrap()]);
    assert!(
        e.stderr.contains(&format!(
            "archive entry blobs/sha256/{} does not match its digest",
            &img.layers[0].digest["sha256:".len()..]
        )),
        "{}",
        e.stderr
    );
    assert!(s.images().is_empty());
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());

    let e = s.fails(&["load", "-i", "/nonexistent.tar"]);
    assert!(e.stderr.contains("/nonexistent.tar"), "{}", e.stderr);
    let junk = tmp.path().join("junk.tar");
    run(std::process::Command::new("tar").arg("-C").arg(tmp.path()).arg("-cf").arg(&junk).arg("layout/oci-layout"));
    let e = s.fails(&["load", "-i", junk.to_str().unwrap()]);
    assert!(e.stderr.contains("not an image archive"), "{}", e.stderr);
    // Not a tar file at all (text whose lines would land in the tar crate's message): one
    // line that says so.
    let text = tmp.path().join("passwd");
    std::fs::write(&text, "root:x:0:0:root:/root:/bin/bash\n".repeat(40)).unwrap();
    let e = s.fails(&["load", "-i", text.to_str().unwrap()]);
    assert_eq!(e.stderr.lines().count(), 1, "{}", e.stderr);
    assert!(e.stderr.contains("not a tar archive, or a damaged one"), "{}", e.stderr);
    assert!(s.images().is_empty());
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());
}

/// A gzipped tar of `(name, size)` entries of zeros, written to `path`: a few kB that
/// unpack to many MB (gzip(1) compresses: the test build's own deflate is unoptimised).
fn zeros_archive(path: &std::path::Path, entries: &[(&str, usize)]) {
    use std::io::Read;
    let mut tar = tar::Builder::new(Vec::new());
    for (name, size) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(*size as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, std::io::repeat(0).take(*size as u64)).unwrap();
    }
    let raw = path.with_extension("raw");
    std::fs::write(&raw, tar.into_inner().unwrap()).unwrap();
    let gz = std::process::Command::new("gzip").arg("-1c").arg(&raw).output().unwrap();
    assert!(gz.status.success());
    std::fs::write(path, gz.stdout).unwrap();
    std::fs::remove_file(raw).unwrap();
}

/// `load` reads only an archive's JSON documents into memory, and only so much of them: a
/// small compressed archive cannot make it hold gigabytes (or store files no image uses).
#[test]
fn an_archive_cannot_make_load_hold_gigabytes() {
    const MIB: usize = 1 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let s = Strata::new();
    let load = |name: &str, entries: &[(&str, usize)]| {
        let archive = tmp.path().join(name);
        zeros_archive(&archive, entries);
        s.fails(&["load", "-i", archive.to_str().unwrap()]).stderr
    };
    let many: Vec<(String, usize)> = (0..5).map(|i| (format!("doc{i}.json"), 16 * MIB)).collect();
    let many: Vec<(&str, usize)> = many.iter().map(|(n, z)| (n.as_str(), *z)).collect();
    let e = load("many.tgz", &many);
    assert!(e.contains("doc4.json") && e.contains("more than 67108864 bytes"), "{e}");
    let e = load("big.tgz", &[("index.json", 17 * MIB)]);
    assert!(e.contains("index.json") && e.contains("at most 16777216"), "{e}");
    // Files that are neither documents, blobs nor layer tars are skipped, not kept.
    let e = load("junk.tgz", &[("junk-1", MIB), ("junk-2", 2 * MIB)]);
    assert!(e.contains("not an image archive"), "{e}");
    assert_eq!(s.blob_count(), 0);
    assert!(s.images().is_empty());
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());
}

/// `load` is all or nothing: an archive whose second image is bad records neither. And a
/// descriptor must declare its blob's real size (`images` and `history` add sizes up: a
/// declared 2^64-1 made them overflow).
#[test]
fn an_archive_loads_whole_and_with_true_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let tar_of = |layout: &std::path::Path, name: &str| {
        let archive = tmp.path().join(name);
        run(std::process::Command::new("tar").arg("-C").arg(layout).arg("-cf").arg(&archive).arg("."));
        archive
    };
    let s = Strata::new();

    let layout = tmp.path().join("two");
    busybox_image(&layout, "good");
    let junk = b"notatar".repeat(100);
    ImageBuilder::new()
        .raw_layer(support::images::MT_LAYER_TAR, junk.clone(), &sha256_digest(&junk))
        .write(&layout, "bad");
    let e = s.fails(&["load", "-i", tar_of(&layout, "two.tar").to_str().unwrap()]);
    assert!(e.stderr.contains("tar"), "{}", e.stderr);
    assert!(s.images().is_empty(), "{:?}", s.images());

    // The layer's descriptor claims 2^64-1 bytes; manifest and index rewritten to match.
    let layout = tmp.path().join("huge");
    let img = busybox_image(&layout, "latest");
    let mut manifest: serde_json::Value = serde_json::from_slice(&img.manifest_bytes).unwrap();
    manifest["layers"][0]["size"] = serde_json::json!(u64::MAX);
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = sha256_digest(&manifest_bytes);
    std::fs::write(layout.join("blobs/sha256").join(&digest["sha256:".len()..]), &manifest_bytes).unwrap();
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    index["manifests"][0]["digest"] = serde_json::json!(digest);
    index["manifests"][0]["size"] = serde_json::json!(manifest_bytes.len());
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let e = s.fails(&["load", "-i", tar_of(&layout, "huge.tar").to_str().unwrap()]);
    assert!(e.stderr.contains(&format!("but its descriptor declares {}", u64::MAX)), "{}", e.stderr);
    assert!(s.images().is_empty(), "{:?}", s.images());
    s.ok(&["images"]);
}

/// A GNU long name (or PAX header) declaring a gigabyte: refused from its header, before the
/// tar crate would read it into memory whole (a 33 kB compressed archive took 1.6 GB).
#[test]
fn a_huge_tar_extension_header_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_path("././@LongLink").unwrap();
    header.set_entry_type(tar::EntryType::GNULongName);
    header.set_size(1 << 30);
    header.set_mode(0o644);
    header.set_cksum();
    let mut archive = header.as_bytes().to_vec();
    archive.extend(vec![b'a'; 64 << 10]);
    let path = tmp.path().join("longname.tar");
    std::fs::write(&path, archive).unwrap();
    let s = Strata::new();
    let e = s.fails(&["load", "-i", path.to_str().unwrap()]);
    assert_eq!(e.stderr.lines().count(), 1, "{}", e.stderr);
    assert!(e.stderr.contains("an extension header of 1073741824 bytes"), "{}", e.stderr);
    assert!(s.images().is_empty());
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());
}
