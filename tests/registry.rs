//! End-to-end: strata against a real docker-registry on loopback, with skopeo on the other
//! side. Images are built by the tests themselves (tests/support).

mod cli;
mod support;

use cli::Strata;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use support::*;

fn layout(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("layout")
}

#[test]
fn pull_busybox_lists_inspects_and_classifies_native() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let img = busybox_image(&layout(&tmp), "latest");
    push_layout(&reg, &layout(&tmp), "latest", "library/busybox");
    let s = Strata::new();
    let reference = reg.reference("library/busybox", "latest");
    let out = s.ok(&["pull", &reference]);
    assert_eq!(out.trim(), reference);

    let info = s.inspect(&reference);
    assert_eq!(info["Id"], img.config_digest());
    assert_eq!(info["Digest"], img.manifest_digest());
    assert_eq!(info["RepoTags"][0], reference);
    assert_eq!(info["Platform"], "linux/amd64");
    assert_eq!(info["Kind"], "native");
    assert_eq!(info["KindReason"], "entrypoint /bin/sh is an ELF binary");
    assert_eq!(info["Layers"][0]["Unpacked"], true);
    assert_eq!(info["Layers"][0]["DiffID"], img.diff_ids()[0]);

    // by short ID and by manifest digest too
    let short = &img.config_digest()["sha256:".len().."sha256:".len() + 12];
    assert_eq!(s.inspect(short)["Digest"], img.manifest_digest());
    let pinned = format!("{}/library/busybox@{}", reg.addr(), img.manifest_digest());
    assert_eq!(s.inspect(&pinned)["Id"], img.config_digest());

    let images = s.images();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["Repository"], format!("{}/library/busybox", reg.addr()));
    assert_eq!(images[0]["Tag"], "latest");
    assert_eq!(s.ok(&["images", "-q"]).trim(), short);
    let table = s.ok(&["images"]);
    assert!(table.starts_with("REPOSITORY"), "{table}");
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());

    // The store is an OCI layout skopeo reads as is.
    let from_store = skopeo_inspect_raw(&format!("oci:{}:{}", s.root().join("images").display(), reference), None);
    assert_eq!(sha256_digest(&from_store), img.manifest_digest());

    // A second pull finds everything present.
    let again = s.run(&["pull", &reference]);
    assert_eq!(again.code, 0);
    assert!(again.stderr.contains("Already exists"), "{}", again.stderr);
    assert!(again.stderr.contains(&format!("Status: Image is up to date for {reference}")), "{}", again.stderr);
}

#[test]
fn push_with_strata_pull_with_skopeo_and_back() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let img = multilayer_image(&layout(&tmp), "v1");
    // skopeo -> registry -> strata
    push_layout(&reg, &layout(&tmp), "v1", "multi");
    let s = Strata::new();
    s.ok(&["pull", "-q", &reg.reference("multi", "v1")]);
    // strata -> registry (new name) -> skopeo: same manifest bytes, so the same digest
    let dest = reg.reference("copy/multi", "v2");
    let pushed = s.ok(&["push", &reg.reference("multi", "v1"), &dest]);
    assert!(pushed.trim().ends_with(img.manifest_digest()), "{pushed}");
    let raw = skopeo_inspect_raw(&format!("docker://{dest}"), None);
    assert_eq!(sha256_digest(&raw), img.manifest_digest());
    let out = tmp.path().join("from-skopeo");
    skopeo_copy(&format!("docker://{dest}"), &format!("oci:{}:v2", out.display()));
    let bundle = tmp.path().join("bundle");
    umoci_unpack(&out, "v2", &bundle);
    assert!(bundle.join("rootfs").is_dir());

    // Pushing again uploads nothing.
    let again = s.run(&["push", &reg.reference("multi", "v1"), &dest]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.stderr.matches("Layer already exists").count(), img.layers.len() + 1, "{}", again.stderr);
}

#[test]
fn import_push_then_skopeo_reads_it() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/motd"), "imported\n").unwrap();
    let tarball = tmp.path().join("rootfs.tar");
    run(std::process::Command::new("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&tarball).arg("."));
    let s = Strata::new();
    let name = reg.reference("imported", "v1");
    let id = s.ok(&["import", "-c", "CMD [\"/bin/sh\"]", tarball.to_str().unwrap(), &name]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    s.ok(&["push", &name]);
    let dest = tmp.path().join("oci");
    skopeo_copy(&format!("docker://{name}"), &format!("oci:{}:v1", dest.display()));
    let bundle = tmp.path().join("bundle");
    umoci_unpack(&dest, "v1", &bundle);
    assert_eq!(std::fs::read_to_string(bundle.join("rootfs/etc/motd")).unwrap(), "imported\n");
}

/// `strata import` of a rootfs holding only /motd (made under `dir`) as `name`.
fn import_one_file_image(s: &Strata, dir: &std::path::Path, name: &str) {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(rootfs.join("motd"), format!("{name}\n")).unwrap();
    let tarball = dir.join("rootfs.tar");
    run(std::process::Command::new("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&tarball).arg("."));
    s.ok(&["import", tarball.to_str().unwrap(), name]);
}

#[test]
fn push_to_a_digest_reference_needs_the_image_digest() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let s = Strata::new();
    import_one_file_image(&s, tmp.path(), "local/pinned:1");
    let pushed = s.ok(&["push", "local/pinned:1", &reg.reference("pinned", "v1")]);
    let digest = pushed.trim().rsplit_once('@').unwrap().1.to_string();
    // The same manifest by its digest: accepted, and the registry serves it under that digest.
    let by_digest = format!("{}/pinned-copy@{digest}", reg.addr());
    let o = s.run(&["push", "local/pinned:1", &by_digest]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout.trim(), format!("{}/pinned-copy@{digest}", reg.addr()));
    skopeo_copy(&format!("docker://{by_digest}"), &format!("oci:{}:x", tmp.path().join("copy").display()));
    // Another digest: refused before anything is sent.
    let other = format!("{}/pinned-other@sha256:{}", reg.addr(), "0".repeat(64));
    let o = s.fails(&["push", "local/pinned:1", &other]);
    assert!(o.stderr.contains("that reference names another digest"), "{}", o.stderr);
    assert!(!o.stderr.contains("Pushed"), "{}", o.stderr);
}

#[test]
fn multiplatform_index_picks_the_platform_or_says_what_it_offers() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let index = multiplatform_index(&layout(&tmp), "multi");
    push_layout(&reg, &layout(&tmp), "multi", "hello");
    let reference = reg.reference("hello", "multi");

    let s = Strata::new();
    s.ok(&["pull", "-q", &reference]);
    assert_eq!(s.inspect(&reference)["Digest"], index.for_platform("linux", "amd64").manifest_digest());

    let w = Strata::new();
    w.ok(&["pull", "-q", "--platform", "wasi/wasm", &reference]);
    let info = w.inspect(&reference);
    assert_eq!(info["Digest"], index.for_platform("wasi", "wasm").manifest_digest());
    assert_eq!(info["Kind"], "wasm");
    assert_eq!(info["KindReason"], "image platform is wasi/wasm");

    let x = Strata::new();
    let err = x.fails(&["pull", "--platform", "linux/arm64", &reference]);
    assert_eq!(err.code, 1);
    assert!(
        err.stderr.contains("no image for platform linux/arm64")
            && err.stderr.contains("it offers linux/amd64, wasi/wasm"),
        "{}",
        err.stderr
    );
    assert!(x.images().is_empty());
    let bad = x.fails(&["pull", "--platform", "linux", &reference]);
    assert!(bad.stderr.contains("invalid platform \"linux\""), "{}", bad.stderr);
}

#[test]
fn zstd_layers_unpack() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let img = zstd_image(&layout(&tmp), "z");
    assert!(img.layers.iter().all(|l| l.media_type.ends_with("+zstd")));
    push_layout(&reg, &layout(&tmp), "z", "zstd");
    let s = Strata::new();
    s.ok(&["pull", "-q", &reg.reference("zstd", "z")]);
    let info = s.inspect(&reg.reference("zstd", "z"));
    for layer in info["Layers"].as_array().unwrap() {
        assert_eq!(layer["Unpacked"], true);
    }
    assert_eq!(s.snapshot_count(), img.layers.len());
}

#[test]
fn wasm_artifacts_are_stored_as_blobs_and_classified_wasm() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let artifact = wasm_artifact_image(&layout(&tmp), "artifact");
    let component = wasm_component_image(&tmp.path().join("component"), "c");
    push_layout(&reg, &layout(&tmp), "artifact", "wasm/artifact");
    push_layout(&reg, &tmp.path().join("component"), "c", "wasm/component");
    let s = Strata::new();
    for (repo, tag, img) in [("wasm/artifact", "artifact", &artifact), ("wasm/component", "c", &component)] {
        let reference = reg.reference(repo, tag);
        s.ok(&["pull", "-q", &reference]);
        let info = s.inspect(&reference);
        assert_eq!(info["Kind"], "wasm");
        let reason = info["KindReason"].as_str().unwrap();
        assert!(reason.contains(&img.layers[0].media_type), "{reason}");
        let hex = &img.layers[0].digest["sha256:".len()..];
        let blob = s.root().join("images/blobs/sha256").join(hex);
        assert!(std::fs::read(&blob).unwrap().starts_with(b"\0asm"));
        // Without a title the module appears as /<digest>.wasm, the entrypoint by default.
        assert_eq!(info["Config"]["Entrypoint"], serde_json::json!([format!("/{hex}.wasm")]), "{info}");
    }
    // Each raw wasm layer is a snapshot holding just its module.
    assert_eq!(s.snapshot_count(), 2);
    for snapshot in std::fs::read_dir(s.root().join("snapshots")).unwrap().flatten() {
        let files: Vec<_> = std::fs::read_dir(snapshot.path().join("fs")).unwrap().flatten().collect();
        assert_eq!(files.len(), 1);
        assert!(std::fs::read(files[0].path()).unwrap().starts_with(b"\0asm"));
    }
}

#[test]
fn basic_auth_login_logout() {
    let reg = Registry::start_with_basic_auth("alice", "s3cret");
    let tmp = tempfile::tempdir().unwrap();
    busybox_image(&layout(&tmp), "latest");
    push_layout(&reg, &layout(&tmp), "latest", "private/busybox");
    let reference = reg.reference("private/busybox", "latest");
    let s = Strata::new();

    let anon = s.fails(&["pull", &reference]);
    assert!(anon.stderr.contains(&format!("registry {} requires authentication", reg.addr())), "{}", anon.stderr);
    let wrong = s.run_stdin(&["login", "-u", "alice", "--password-stdin", reg.addr()], b"nope\n");
    assert_eq!(wrong.code, 1);
    assert!(
        wrong.stderr.contains(&format!("registry {} refused the credentials", reg.addr()))
            && wrong.stderr.contains("incorrect username or password"),
        "{}",
        wrong.stderr
    );
    assert!(!s.authfile().exists(), "a failed login stores nothing");
    // A registry that is no `host[:port]`: refused before anything is sent. As a URL,
    // `[::1]@host` would send the credentials over plain http to `host`, not to loopback.
    for bad in [format!("[::1]@{}", reg.addr()), format!("localhost@{}", reg.addr())] {
        let o = s.run_stdin(&["login", "-u", "alice", "--password-stdin", &bad], b"s3cret\n");
        assert_eq!((o.code, o.stderr.trim()), (1, format!("Error: invalid registry {bad:?}").as_str()));
    }

    let ok = s.run_stdin(&["login", "-u", "alice", "--password-stdin", reg.addr()], b"s3cret\n");
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert_eq!(ok.stdout.trim(), "Login Succeeded");
    let auth: serde_json::Value = serde_json::from_slice(&std::fs::read(s.authfile()).unwrap()).unwrap();
    assert_eq!(auth["auths"][reg.addr()]["auth"], base64_encode(b"alice:s3cret"));

    s.ok(&["pull", "-q", &reference]);
    s.ok(&["push", &reference, &reg.reference("private/copy", "v1")]);

    // Credentials changed behind our back: a clear error naming the registry and user.
    let stale = Strata::new();
    std::fs::write(
        stale.authfile(),
        format!(r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#, reg.addr(), base64_encode(b"alice:old")),
    )
    .unwrap();
    let e = stale.fails(&["pull", &reference]);
    assert!(e.stderr.contains("refused the credentials for user \"alice\""), "{}", e.stderr);
    assert!(stale.images().is_empty());

    assert!(s.ok(&["logout", reg.addr()]).contains("Removing login credentials"));
    assert!(s.fails(&["logout", reg.addr()]).stderr.contains("not logged in"));
}

#[test]
fn registry_not_running_is_a_clear_error() {
    let port = support::registry::free_port();
    let s = Strata::new();
    let e = s.fails(&["pull", &format!("127.0.0.1:{port}/nothing:here")]);
    assert_eq!(e.code, 1);
    assert!(e.stderr.contains(&format!("registry 127.0.0.1:{port} is not reachable")), "{}", e.stderr);
    assert_eq!(e.stderr.trim().lines().count(), 1, "one line: {}", e.stderr);
    assert!(s.images().is_empty());
    assert!(s.leftovers().is_empty());
}

#[test]
fn unknown_tag_and_bad_reference() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    busybox_image(&layout(&tmp), "latest");
    push_layout(&reg, &layout(&tmp), "latest", "busybox");
    let s = Strata::new();
    let e = s.fails(&["pull", &reg.reference("busybox", "nope")]);
    assert!(e.stderr.contains("manifest unknown"), "{}", e.stderr);
    assert!(e.stderr.contains(&reg.reference("busybox", "nope")), "{}", e.stderr);
    let e = s.fails(&["pull", &reg.reference("nosuchrepo", "latest")]);
    assert!(e.stderr.contains("manifest unknown"), "{}", e.stderr);
    let e = s.fails(&["pull", "Upper/Case"]);
    assert!(e.stderr.contains("invalid reference \"Upper/Case\""), "{}", e.stderr);
    let e = s.fails(&["pull", "a b"]);
    assert!(e.stderr.contains("invalid reference"), "{}", e.stderr);
    assert!(s.images().is_empty());
}

#[test]
fn corrupt_blob_in_registry_is_refused() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let img = busybox_image(&layout(&tmp), "latest");
    push_layout(&reg, &layout(&tmp), "latest", "busybox");
    let path = reg.blob_data_path(&img.layers[0].digest);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let s = Strata::new();
    let e = s.fails(&["pull", &reg.reference("busybox", "latest")]);
    assert!(
        e.stderr.contains(&format!("blob {} from registry {} is corrupt", img.layers[0].digest, reg.addr())),
        "{}",
        e.stderr
    );
    assert!(s.images().is_empty());
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());
    assert!(!s.root().join("images/blobs/sha256").join(&img.layers[0].digest["sha256:".len()..]).exists());
    assert_eq!(s.snapshot_count(), 0);
}

/// A loopback HTTP proxy in front of the registry that, while `cut` is set, answers one
/// request for `blob_path` with only the first half of the registry's response and closes.
struct CuttingProxy {
    port: u16,
    cut: Arc<AtomicBool>,
}

/// What the proxy does after sending half of the target blob.
#[derive(Clone, Copy)]
enum Cut {
    Close,
    Stall,
}

impl CuttingProxy {
    fn start(upstream: String, blob_path: String, how: Cut) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(true));
        let flag = cut.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, blob_path, flag) = (upstream.clone(), blob_path.clone(), flag.clone());
                std::thread::spawn(move || serve(client, &upstream, &blob_path, &flag, how));
            }
        });
        CuttingProxy { port, cut }
    }
}

fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(head)
}

fn serve(mut client: TcpStream, upstream: &str, blob_path: &str, cut: &AtomicBool, how: Cut) {
    // One upstream connection per request (Connection: close), so responses end at EOF.
    while let Some(head) = read_head(&mut client) {
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        lines.retain(|l| !l.to_ascii_lowercase().starts_with("connection:"));
        let request = format!("{}\r\nConnection: close\r\n\r\n", lines.join("\r\n"));
        let Ok(mut up) = TcpStream::connect(upstream) else { return };
        if up.write_all(request.as_bytes()).is_err() {
            return;
        }
        let mut response = Vec::new();
        if up.read_to_end(&mut response).is_err() {
            return;
        }
        let is_target = lines.first().is_some_and(|l| l.starts_with("GET ") && l.contains(blob_path));
        if is_target && cut.swap(false, Ordering::SeqCst) {
            let _ = client.write_all(&response[..response.len() / 2]);
            if let Cut::Stall = how {
                // Hold the connection open, sending nothing more, until the test process ends.
                loop {
                    std::thread::park();
                }
            }
            return;
        }
        if client.write_all(&response).is_err() {
            return;
        }
        if text.to_ascii_lowercase().contains("connection: close") {
            return;
        }
    }
}

#[test]
fn download_cut_off_halfway_then_repull_succeeds() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let img = busybox_image(&layout(&tmp), "latest");
    push_layout(&reg, &layout(&tmp), "latest", "busybox");
    let layer = &img.layers[0];
    assert!(layer.size > 100_000, "the layer must be big enough to cut");
    let proxy = CuttingProxy::start(reg.addr().to_string(), format!("/blobs/{}", layer.digest), Cut::Close);
    let reference = format!("127.0.0.1:{}/busybox:latest", proxy.port);
    let s = Strata::new();
    let e = s.fails(&["pull", &reference]);
    assert!(
        e.stderr.contains(&format!("downloading {} from registry 127.0.0.1:{} failed after", layer.digest, proxy.port)),
        "{}",
        e.stderr
    );
    assert!(!proxy.cut.load(Ordering::SeqCst), "the cut happened");
    assert!(s.images().is_empty());
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());
    s.ok(&["pull", "-q", &reference]);
    assert_eq!(s.inspect(&reference)["Digest"], img.manifest_digest());
}

#[test]
fn full_root_filesystem_is_a_clear_error_and_leaves_nothing() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    busybox_image(&layout(&tmp), "latest");
    push_layout(&reg, &layout(&tmp), "latest", "busybox");
    let mnt = tmp.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    // A private mount namespace: the tmpfs vanishes with the shell, whatever happens.
    let script = format!(
        "mount -t tmpfs -o size=1500k tmpfs {mnt} && \
         {strata} --root {mnt}/root pull -q {reference}; echo \"exit=$?\"; \
         {strata} --root {mnt}/root images -a -q | wc -l; \
         ls -A {mnt}/root/tmp | wc -l; ls -A {mnt}/root/snapshots | wc -l",
        mnt = mnt.display(),
        strata = cli::STRATA,
        reference = reg.reference("busybox", "latest"),
    );
    let out = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, ["exit=1", "0", "0", "0"], "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn concurrent_pulls_of_one_image_on_one_root() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let img = multilayer_image(&layout(&tmp), "v1");
    push_layout(&reg, &layout(&tmp), "v1", "multi");
    let s = Strata::new();
    let reference = reg.reference("multi", "v1");
    let children: Vec<_> = (0..4)
        .map(|_| {
            s.command(&["pull", "-q", &reference])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(s.images().len(), 1);
    assert_eq!(s.snapshot_count(), img.layers.len());
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());
}

#[test]
fn pull_killed_mid_download_records_nothing_and_prune_cleans_up() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let img = busybox_image(&layout(&tmp), "latest");
    push_layout(&reg, &layout(&tmp), "latest", "busybox");
    let layer = &img.layers[0];
    let proxy = CuttingProxy::start(reg.addr().to_string(), format!("/blobs/{}", layer.digest), Cut::Stall);
    let reference = format!("127.0.0.1:{}/busybox:latest", proxy.port);
    let s = Strata::new();
    let mut child = s
        .command(&["pull", "-q", &reference])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the condition "half the layer was sent and a partial blob exists", then kill -9.
    let tmpdir = s.root().join("tmp");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let partial = std::fs::read_dir(&tmpdir).map(|d| d.count()).unwrap_or(0);
        if partial > 0 && !proxy.cut.load(Ordering::SeqCst) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the pull never got halfway");
        assert!(child.try_wait().unwrap().is_none(), "the pull ended before it was killed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(s.images().is_empty(), "a killed pull records no image");
    assert!(!s.leftovers().is_empty(), "the partial download is still there before prune");
    s.ok(&["image", "prune"]);
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());
    s.ok(&["pull", "-q", &reg.reference("busybox", "latest")]);
    assert_eq!(s.inspect(&reg.reference("busybox", "latest"))["Digest"], img.manifest_digest());
}

#[test]
fn docker_schema2_manifests_and_manifest_lists() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let index = multiplatform_index(&layout(&tmp), "multi");
    // skopeo converts to Docker schema2 manifests and a Docker manifest list on the way.
    let dst = reg.docker_ref("docker/hello", "v2s2");
    skopeo_copy_with(&["--all", "--format", "v2s2"], &index.oci_ref(), &dst);
    let list: serde_json::Value = serde_json::from_slice(&skopeo_inspect_raw(&dst, None)).unwrap();
    assert_eq!(list["mediaType"], "application/vnd.docker.distribution.manifest.list.v2+json");
    let amd64 = list["manifests"].as_array().unwrap().iter().find(|m| m["platform"]["os"] == "linux").unwrap()
        ["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let s = Strata::new();
    let reference = reg.reference("docker/hello", "v2s2");
    s.ok(&["pull", "-q", &reference]);
    let info = s.inspect(&reference);
    assert_eq!(info["Digest"], amd64);
    assert_eq!(info["MediaType"], "application/vnd.docker.distribution.manifest.v2+json");
    assert_eq!(info["Layers"][0]["Unpacked"], true);
    // and strata pushes it back unchanged
    let back = reg.reference("docker/copy", "v1");
    s.ok(&["push", &reference, &back]);
    assert_eq!(sha256_digest(&skopeo_inspect_raw(&format!("docker://{back}"), None)), amd64);
}

/// A registry that answers `/v2/` with a Bearer challenge pointing at its own `/token`, and
/// streams `endless` (a path prefix) without end: a manifest, a token or an error body.
fn endless_registry(endless: &'static str, status: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut client in listener.incoming().flatten() {
            std::thread::spawn(move || {
                while let Some(head) = read_head(&mut client) {
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
                    let authorized = text.to_ascii_lowercase().contains("authorization: bearer t0k3n");
                    if path.starts_with(endless) {
                        let head = format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\r\n{{\"x\":\"");
                        if client.write_all(head.as_bytes()).is_err() {
                            return;
                        }
                        // Until the client hangs up.
                        while client.write_all(&[b' '; 64 * 1024]).is_ok() {}
                        return;
                    }
                    let reply = if path.starts_with("/token") {
                        "HTTP/1.1 200 OK\r\nContent-Length: 18\r\n\r\n{\"token\":\"t0k3n\"}\n".to_string()
                    } else if !authorized {
                        format!(
                            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",\
                             service=\"hostile\"\r\nContent-Length: 0\r\n\r\n"
                        )
                    } else {
                        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_string()
                    };
                    if client.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A registry is untrusted input: a manifest, a token or an error body that never ends is
/// refused at a few MiB, never read into memory whole.
#[test]
fn a_hostile_registry_cannot_make_pull_hold_its_answers() {
    let s = Strata::new();
    for (endless, status, says) in [
        ("/v2/x/manifests/", "200 OK", "the manifest is larger than 4194304 bytes"),
        ("/token", "200 OK", "the token response is larger than 1048576 bytes"),
        ("/v2/x/manifests/", "400 Bad Request", "HTTP 400: {\"x\":\""),
    ] {
        let port = endless_registry(endless, status);
        let o = s.fails(&["pull", "-q", &format!("127.0.0.1:{port}/x:1")]);
        assert!(o.stderr.contains(says) && o.stderr.lines().count() == 1, "{endless} {status}: {}", o.stderr);
    }
    assert!(s.images().is_empty());
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());
}

/// Push reads a registry's answers with the same limits (it went through oci-client, which
/// read them whole).
#[test]
fn a_hostile_registry_cannot_make_push_hold_its_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Strata::new();
    import_one_file_image(&s, tmp.path(), "local/x:1");
    // The stub says every blob exists (HEAD answers 200), so the manifest is what gets put.
    for (endless, status, says) in [
        ("/token", "200 OK", "the token response is larger than 1048576 bytes"),
        ("/v2/x/manifests/", "400 Bad Request", "HTTP 400: {\"x\":\""),
    ] {
        let port = endless_registry(endless, status);
        let o = s.fails(&["push", "local/x:1", &format!("127.0.0.1:{port}/x:1")]);
        assert!(
            o.stderr.contains(says) && o.stderr.lines().filter(|l| l.contains("Error")).count() == 1,
            "{endless} {status}: {}",
            o.stderr
        );
    }
}

#[test]
fn run_pull_policies_always_missing_never() {
    // docker's `run --pull`: never uses what is here (or fails), missing pulls what is not
    // here, always takes the registry's current image for the tag.
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    busybox_image(&layout(&tmp), "latest");
    push_layout(&reg, &layout(&tmp), "latest", "library/busybox");
    let reference = reg.reference("library/busybox", "latest");
    let s = Strata::new();
    let o = s.run(&["run", "--rm", "--pull", "never", &reference, "true"]);
    assert!(o.code == 125 && o.stderr.contains(&format!("No such image: {reference}")), "{}", o.stderr);
    let o = s.run(&["run", "--rm", "--pull", "sometimes", &reference, "true"]);
    assert!(o.code == 125 && o.stderr.contains("invalid pull option: 'sometimes'"), "{}", o.stderr);
    s.ok(&["run", "--rm", &reference, "true"]);
    let first = s.inspect(&reference)["Id"].clone();

    // Another root pushes a new image under the same tag.
    let other = Strata::new();
    other.ok(&["run", "--name", "changer", &reference, "touch", "/new"]);
    other.ok(&["commit", "changer", &reference]);
    other.ok(&["push", &reference]);
    other.ok(&["rm", "changer"]);

    let o = s.run(&["run", "--rm", "--pull", "never", &reference, "test", "-e", "/new"]);
    assert_eq!(o.code, 1, "the old image: {}", o.stderr);
    let o = s.run(&["run", "--rm", "--pull", "missing", &reference, "test", "-e", "/new"]);
    assert_eq!(o.code, 1, "still the old image: {}", o.stderr);
    let o = s.run(&["run", "--rm", "--pull", "always", &reference, "test", "-e", "/new"]);
    assert_eq!(o.code, 0, "the new image: {}", o.stderr);
    assert_ne!(s.inspect(&reference)["Id"], first);
}
