//! End-to-end: unpacked layers and assembled root filesystems, checked against an
//! independent unpacker (umoci), plus hostile layers, tags, rmi and prune.

mod cli;
mod support;

use cli::Strata;
use support::*;

fn load_layout(s: &Strata, layout: &std::path::Path, tag: &str, name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("a.tar");
    skopeo_copy(&oci_ref(layout, tag), &format!("oci-archive:{}:{name}", archive.display()));
    s.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
}

/// `strata image mount` inside a private mount namespace; returns the tree it showed.
fn mounted_tree(s: &Strata, driver: &str, image: &str, copy_to: &std::path::Path) {
    let script = format!(
        "set -e; m=$({strata} --storage-driver {driver} image mount {image}); cp -a \"$m\"/. {dest}/; \
         grep -q \" $m \" /proc/self/mountinfo && echo overlay || echo copy; {strata} image unmount {image} >/dev/null",
        strata = cli::STRATA,
        dest = copy_to.display(),
    );
    std::fs::create_dir_all(copy_to).unwrap();
    let out = s
        .command(&[])
        .get_envs()
        .fold(std::process::Command::new("unshare"), |mut c, (k, v)| {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
            c
        })
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let how = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(how, if driver == "vfs" { "copy" } else { "overlay" });
}

#[test]
fn merged_rootfs_equals_umoci_unpack() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let img = multilayer_image(&layout, "v1");
    assert!(img.layers.len() >= 3);
    let bundle = tmp.path().join("umoci");
    umoci_unpack(&layout, "v1", &bundle);

    let s = Strata::new();
    load_layout(&s, &layout, "v1", "localhost/multi:v1");
    for driver in ["overlay", "vfs"] {
        let copy = tmp.path().join(format!("strata-{driver}"));
        mounted_tree(&s, driver, "localhost/multi:v1", &copy);
        assert_same_tree(bundle.join("rootfs"), &copy);
        if let Some(expected) = &img.expected_tree {
            assert_tree_eq(&tree_snapshot(&copy), expected);
        }
    }
    // No mount, no mount dir left behind.
    assert_eq!(std::fs::read_dir(s.root().join("mounts")).unwrap().count(), 0);
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!info.contains(s.root().to_str().unwrap()));
}

#[test]
fn no_whiteout_file_reaches_a_rootfs() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    multilayer_image(&layout, "v1");
    let s = Strata::new();
    load_layout(&s, &layout, "v1", "localhost/multi:v1");
    let copy = tmp.path().join("rootfs");
    mounted_tree(&s, "overlay", "localhost/multi:v1", &copy);
    for path in tree_snapshot(&copy).keys() {
        assert!(!path.to_string().contains(".wh."), "{path} leaked into the rootfs");
    }
}

fn hostile(name: &str, tar: Vec<u8>) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    ImageBuilder::new().layer(tar, Compression::Gzip).write(&layout, name);
    (tmp, layout)
}

#[test]
fn hostile_layer_is_refused_through_load_and_leaves_nothing() {
    let mut t = LayerTar::new();
    t.symlink("evil", "/");
    t.file("evil/tmp/strata-escaped", "pwned", 0o644);
    let (tmp, layout) = hostile("evil", t.into_bytes());
    let archive = tmp.path().join("evil.tar");
    run(std::process::Command::new("tar").arg("-C").arg(&layout).arg("-cf").arg(&archive).arg("."));
    let s = Strata::new();
    let e = s.fails(&["load", "-i", archive.to_str().unwrap()]);
    assert!(e.stderr.contains("evil/tmp/strata-escaped"), "{}", e.stderr);
    assert!(!std::path::Path::new("/tmp/strata-escaped").exists());
    assert!(s.images().is_empty());
    assert_eq!(s.snapshot_count(), 0);
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());
}

/// Classifying an image reads its entrypoint's first bytes without mounting it. A lower
/// layer's symlink `a -> /` under an upper layer's directory `a/` (overlayfs hides the
/// symlink) must not let that read reach a host file: here a wasm file, which would make the
/// image a wasm one.
#[test]
fn classifying_an_image_never_reads_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = tmp.path().join("probe.wasm");
    std::fs::write(&probe, b"\0asm\x01\0\0\0").unwrap();
    let mut lower = LayerTar::new();
    lower.symlink("a", "/");
    let mut upper = LayerTar::new();
    upper.dir("a", 0o755);
    let entrypoint = format!("/a{}", probe.display());
    let layout = tmp.path().join("layout");
    ImageBuilder::new()
        .layer(lower.into_bytes(), Compression::Gzip)
        .layer(upper.into_bytes(), Compression::Gzip)
        .entrypoint(&[&entrypoint])
        .write(&layout, "latest");
    let s = Strata::new();
    load_layout(&s, &layout, "latest", "localhost/probe:latest");
    let inspected = s.ok(&["image", "inspect", "-f", "{{.Kind}}: {{.KindReason}}", "localhost/probe"]);
    assert_eq!(inspected.trim(), format!("native: entrypoint {entrypoint} not found in the image; native by default"));
}

#[test]
fn diff_id_mismatch_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let mut t = LayerTar::new();
    t.file("a", "a", 0o644);
    let wrong = sha256_digest(b"not the layer");
    ImageBuilder::new()
        .raw_layer("application/vnd.oci.image.layer.v1.tar", t.into_bytes(), &wrong)
        .write(&layout, "bad");
    let archive = tmp.path().join("bad.tar");
    run(std::process::Command::new("tar").arg("-C").arg(&layout).arg("-cf").arg(&archive).arg("."));
    let s = Strata::new();
    let e = s.fails(&["load", "-i", archive.to_str().unwrap()]);
    assert!(e.stderr.contains(&format!("but the image config says {wrong}")), "{}", e.stderr);
    assert!(s.images().is_empty());
    assert_eq!(s.snapshot_count(), 0);
}

#[test]
fn tag_rmi_and_prune() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let img = busybox_image(&layout, "latest");
    let s = Strata::new();
    load_layout(&s, &layout, "latest", "localhost/busybox:latest");
    s.ok(&["tag", "localhost/busybox", "example.com/mine:v2"]);
    assert_eq!(s.images().len(), 2);
    assert_eq!(s.inspect("example.com/mine:v2")["Id"], img.config_digest());

    // By ID with two names: refused without -f.
    let short = &img.config_digest()[7..19];
    let e = s.fails(&["rmi", short]);
    assert!(e.stderr.contains("image is referenced in multiple repositories"), "{}", e.stderr);
    // By name: just untags.
    assert_eq!(s.ok(&["rmi", "example.com/mine:v2"]).trim(), "Untagged: example.com/mine:v2");
    assert_eq!(s.blob_count(), 3, "manifest, config, layer");
    // Last name: deletes the image, its blobs and its snapshot.
    let out = s.ok(&["rmi", "localhost/busybox"]);
    assert!(
        out.contains("Untagged: localhost/busybox:latest")
            && out.contains(&format!("Deleted: {}", img.config_digest())),
        "{out}"
    );
    assert!(s.images().is_empty());
    assert_eq!(s.blob_count(), 0);
    assert_eq!(s.snapshot_count(), 0);

    let e = s.fails(&["rmi", "localhost/busybox"]);
    assert!(e.stderr.contains("No such image: localhost/busybox"), "{}", e.stderr);
    let e = s.fails(&["tag", "nothing", "x"]);
    assert!(e.stderr.contains("No such image: nothing"), "{}", e.stderr);

    // Leftovers of a killed command are pruned.
    std::fs::write(s.root().join("tmp/blob-leftover"), b"x").unwrap();
    std::fs::write(s.root().join("images/blobs/sha256").join("0".repeat(64)), b"x").unwrap();
    std::fs::create_dir_all(s.root().join("snapshots/.staging-1/fs")).unwrap();
    let out = s.ok(&["image", "prune"]);
    assert!(out.contains("Removed 1 blobs"), "{out}");
    assert_eq!(s.blob_count(), 0);
    assert!(s.leftovers().is_empty());
}

#[test]
fn rmi_refuses_an_image_a_container_uses() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let img = busybox_image(&layout, "latest");
    let s = Strata::new();
    load_layout(&s, &layout, "latest", "localhost/busybox:latest");
    let c = s.root().join("containers/c1");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(c.join("container.json"), format!(r#"{{"image_id":"{}"}}"#, img.config_digest())).unwrap();
    let e = s.fails(&["rmi", "localhost/busybox"]);
    assert!(e.stderr.contains("image is in use by container c1"), "{}", e.stderr);
    // -f untags but keeps the image (and its snapshot) for the container.
    let short = &img.config_digest()[7..19];
    let listed = s.ok(&["images", "--format", r"{{.Repository}}:{{.Tag}}\t{{.ID}} {{.Platform}}"]);
    assert_eq!(listed, format!("localhost/busybox:latest\t{short} linux/amd64\n"));
    let table = s.ok(&["images", "--format", r"table {{.Tag}}\t{{.ID}}\t{{lower .Repository}}"]);
    assert_eq!(table, format!("TAG       IMAGE ID       REPOSITORY\nlatest    {short}   localhost/busybox\n"));
    let inspected = s.ok(&["image", "inspect", "-f", "{{.Id}} {{index .RepoTags 0}}", "localhost/busybox"]);
    assert_eq!(inspected, format!("{} localhost/busybox:latest\n", img.config_digest()));
    // The size is the unpacked one (the layer's tar), as docker shows it, not the gzip blob's.
    let unpacked = support::images::busybox_layer_tar().len() as u64;
    assert!(unpacked > img.layers[0].size, "the fixture's layer is compressed");
    assert_eq!(s.ok(&["images", "--format", "{{.SizeBytes}}"]).trim(), unpacked.to_string());
    assert_eq!(s.ok(&["image", "inspect", "-f", "{{.Size}}", "localhost/busybox"]).trim(), unpacked.to_string());
    s.ok(&["rmi", "-f", "localhost/busybox"]);
    // Listed untagged, as docker lists a dangling image.
    assert_eq!(s.ok(&["images", "-q"]).trim(), &img.config_digest()[7..19]);
    let listed = s.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(listed, "<none>:<none>\n");
    assert_eq!(s.ok(&["images", "-a", "-q"]).trim(), &img.config_digest()[7..19]);
    assert_eq!(s.snapshot_count(), 1);
}

#[test]
fn version_and_info() {
    let s = Strata::new();
    let version = s.ok(&["version"]);
    assert!(version.starts_with("strata version ") && version.contains("OS/Arch:     linux/"), "{version}");
    let arch = s.ok(&["version", "--format", "{{.Os}}/{{.Arch}}"]);
    assert!(["linux/amd64\n", "linux/arm64\n"].contains(&arch.as_str()), "{arch}");
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    busybox_image(&layout, "latest");
    load_layout(&s, &layout, "latest", "localhost/busybox:latest");
    let info: serde_json::Value = serde_json::from_str(&s.ok(&["info", "--format", "json"])).unwrap();
    assert_eq!((info["Images"].as_u64(), info["Containers"].as_u64()), (Some(1), Some(0)), "{info}");
    assert_eq!(info["StrataRootDir"], s.root().to_str().unwrap());
    assert_eq!(info["NCPU"].as_u64(), std::thread::available_parallelism().ok().map(|n| n.get() as u64));
    let text = s.ok(&["info"]);
    assert!(text.starts_with("Containers: 0\n Running: 0\n") && text.contains("\nImages: 1\n"), "{text}");
    assert_eq!(s.ok(&["info", "-f", "{{.Driver}}"]), "overlay\n");
}

#[test]
fn images_json_and_usage_errors() {
    let s = Strata::new();
    let e = s.run(&["images", "--bogus"]);
    assert_eq!(e.code, 125);
    // docker's Go templates: a broken one is one line naming the problem; a table's titles
    // print even when there is nothing to list.
    let e = s.fails(&["images", "--format", "{{.ID"]);
    assert_eq!(e.stderr.trim(), "Error: template parsing error: template: 1:6: unclosed action");
    let e = s.fails(&["images", "--format", r"table {{.ID}}\t{{.Nope}}"]);
    assert_eq!(e.stderr.trim(), "Error: template: map has no entry for key: Nope");
    assert_eq!(s.ok(&["images", "--format", r"table {{.ID}}\t{{.Repository}}"]), "IMAGE ID   REPOSITORY\n");
    let e = s.fails(&["image", "inspect", "nothing"]);
    assert!(e.stderr.contains("No such image: nothing"), "{}", e.stderr);
    assert_eq!(e.stdout.trim(), "[]");
    // Plain `inspect` looks for containers too, and says so as docker does.
    let e = s.fails(&["inspect", "nothing"]);
    assert!(e.stderr.contains("No such object: nothing"), "{}", e.stderr);
    assert_eq!(e.stdout.trim(), "[]");
    // A root that cannot be made: the path and the reason, the reason said once.
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("a-file");
    std::fs::write(&bad, "").unwrap();
    let e = s.fails(&["--root", bad.join("root").to_str().unwrap(), "images"]);
    let line =
        format!("Error: cannot create strata root {}: Not a directory (os error 20)", bad.join("root").display());
    assert_eq!(e.stderr.trim(), line);
}
