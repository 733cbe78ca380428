//! End-to-end: registries that are NOT on loopback, so strata must use https and verify
//! certificates unless told otherwise (`--tls-verify=false` or ROOT/config.json's
//! `insecure-registries`). Each test runs in a private network namespace (as root,
//! tests/support/tls.rs) where 192.0.2.10 (TEST-NET-1) sits on `lo`: a docker-registry
//! with a self-signed certificate on 192.0.2.10:5443 and/or a plain-http one on
//! 192.0.2.10:5080, seeded with skopeo, then strata runs against them. Nothing leaves
//! the machine; the registries die with the script.

mod cli;
mod support;

use cli::Strata;
use std::process::Command;
use support::tls::{self, NetnsOutcome, NetnsRegistry, NetnsScript, NETNS_IP};
use support::*;

const TLS_PORT: u16 = 5443;
const HTTP_PORT: u16 = 5080;
const REPO: &str = "busybox";
const TAG: &str = "latest";

/// A namespace script with the requested registries started and each seeded with the
/// busybox image as `busybox:latest` (digests preserved).
struct Setup {
    ns: NetnsScript,
    img: BuiltImage,
    tls: Option<NetnsRegistry>,
    http: Option<NetnsRegistry>,
    _tmp: tempfile::TempDir,
}

fn setup(with_tls: bool, with_http: bool) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let img = busybox_image(&layout, TAG);
    let mut ns = NetnsScript::new(NETNS_IP);
    let tls = with_tls.then(|| {
        let cert = tls::self_signed_cert(&ns.dir().join("cert"), NETNS_IP);
        ns.registry("tls", TLS_PORT, Some(&cert))
    });
    let http = with_http.then(|| ns.registry("http", HTTP_PORT, None));
    for reg in tls.iter().chain(http.iter()) {
        let mut seed = Command::new("skopeo");
        seed.args(["copy", "--insecure-policy", "--dest-tls-verify=false", "--dest-no-creds"])
            .args(["--preserve-digests", "--quiet"])
            .arg(oci_ref(&layout, TAG))
            .arg(reg.docker_ref(REPO, TAG));
        ns.require(&format!("seed-{}", reg.name), &seed);
    }
    Setup { ns, img, tls, http, _tmp: tmp }
}

/// A strata root whose config.json lists `registries` as insecure.
fn strata_with_insecure(registries: &[&str]) -> Strata {
    let s = Strata::new();
    std::fs::create_dir_all(s.root()).unwrap();
    let config = serde_json::json!({ "insecure-registries": registries });
    std::fs::write(s.root().join("config.json"), config.to_string()).unwrap();
    s
}

/// A successful pull: exit 0, stdout is the reference, and the image is in the store
/// with the layout's manifest digest.
fn assert_pulled(out: &NetnsOutcome, name: &str, s: &Strata, reference: &str, manifest_digest: &str) {
    let o = out.step(name);
    assert_eq!(o.code, 0, "{o}\n{}", out.diagnostics());
    assert_eq!(o.stdout_text().trim(), reference, "{o}");
    let info = s.inspect(reference);
    assert_eq!(info["Digest"], manifest_digest, "{info:#}");
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());
}

/// A refused pull/push: exit 1, nothing on stdout, and stderr is exactly one
/// `Error: ...` line naming the registry. Returns that line.
fn assert_one_line_error(out: &NetnsOutcome, name: &str, registry: &str) -> String {
    let o = out.step(name);
    assert_eq!(o.code, 1, "{o}\n{}", out.diagnostics());
    assert!(!o.stderr.contains("panicked"), "{o}");
    assert_eq!(o.stdout_text(), "", "{o}");
    let lines: Vec<&str> = o.stderr.trim_end().lines().collect();
    assert_eq!(lines.len(), 1, "the error must be a single line (no log noise, no escape codes); {o}");
    let line = lines[0];
    assert!(line.starts_with("Error: "), "{o}");
    assert!(line.contains(registry), "the error names the registry {registry}; {o}");
    line.to_string()
}

#[test]
fn self_signed_https_registry_is_refused_by_default() {
    let mut t = setup(true, false);
    let reg = t.tls.clone().unwrap();
    let reference = reg.reference(REPO, TAG);
    let s = Strata::new();
    t.ns.step("pull-default", &s.command(&["pull", &reference]));
    t.ns.step("pull-verify-true", &s.command(&["pull", "--tls-verify=true", &reference]));
    // Push needs the image locally: pull it without verification into another root, then
    // push from there with verification on (the default).
    let local = Strata::new();
    t.ns.require("pull-for-push", &local.command(&["pull", "-q", "--tls-verify=false", &reference]));
    let dest = reg.reference("pushed/busybox", "v1");
    t.ns.step("push-default", &local.command(&["push", &reference, &dest]));
    let out = t.ns.run();

    for name in ["pull-default", "pull-verify-true", "push-default"] {
        let line = assert_one_line_error(&out, name, &reg.addr);
        let lower = line.to_lowercase();
        assert!(
            lower.contains("certificate") || line.contains("UnknownIssuer"),
            "{name}: the error says the certificate is the problem: {line}"
        );
    }
    // Nothing was stored by the refused pulls, nothing uploaded by the refused push.
    assert!(s.images().is_empty(), "{:?}", s.images());
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());
    assert!(!out.registry_log("tls").contains("pushed/busybox"), "{}", out.registry_log("tls"));
}

#[test]
fn tls_verify_false_pulls_and_pushes_over_unverified_https() {
    let mut t = setup(true, false);
    let reg = t.tls.clone().unwrap();
    let reference = reg.reference(REPO, TAG);
    let s = Strata::new();
    t.ns.step("pull", &s.command(&["pull", "--tls-verify=false", &reference]));
    let dest = reg.reference("pushed/busybox", "v1");
    t.ns.step("push", &s.command(&["push", "--tls-verify=false", &reference, &dest]));
    let mut inspect = Command::new("skopeo");
    inspect.args(["inspect", "--raw", "--tls-verify=false", "--no-creds"]).arg(format!("docker://{dest}"));
    t.ns.step("skopeo-inspect", &inspect);
    let out = t.ns.run();

    assert_pulled(&out, "pull", &s, &reference, t.img.manifest_digest());
    let push = out.step("push");
    assert_eq!(push.code, 0, "{push}\n{}", out.diagnostics());
    assert!(push.stdout_text().trim().ends_with(t.img.manifest_digest()), "{push}");
    let raw = out.step("skopeo-inspect");
    assert_eq!(raw.code, 0, "{raw}");
    assert_eq!(sha256_digest(&raw.stdout), t.img.manifest_digest(), "{raw}");
    // It really was https: the TLS registry served the blobs and took the upload.
    let log = out.registry_log("tls");
    assert!(log.contains("pushed/busybox"), "{log}");
}

#[test]
fn insecure_registries_in_root_config_skip_verification_for_that_registry_only() {
    let mut t = setup(true, true);
    let tls_reg = t.tls.clone().unwrap();
    let http_reg = t.http.clone().unwrap();
    let tls_ref = tls_reg.reference(REPO, TAG);
    let http_ref = http_reg.reference(REPO, TAG);
    // Lists only the TLS registry: it is pulled without verification, the other one
    // (plain http, not listed) still gets verified https and fails.
    let listed = strata_with_insecure(&[&tls_reg.addr]);
    t.ns.step("listed-tls", &listed.command(&["pull", &tls_ref]));
    t.ns.step("unlisted-http", &listed.command(&["pull", &http_ref]));
    // Listing the plain-http registry makes strata fall back to http for it.
    let http_listed = strata_with_insecure(&[&http_reg.addr]);
    t.ns.step("listed-http", &http_listed.command(&["pull", &http_ref]));
    // ... unless --tls-verify=true says otherwise, as podman's does.
    let forced = strata_with_insecure(&[&http_reg.addr]);
    t.ns.step("listed-http-verify-true", &forced.command(&["pull", "--tls-verify=true", &http_ref]));
    let out = t.ns.run();

    assert_pulled(&out, "listed-tls", &listed, &tls_ref, t.img.manifest_digest());
    assert_one_line_error(&out, "unlisted-http", &http_reg.addr);
    assert_pulled(&out, "listed-http", &http_listed, &http_ref, t.img.manifest_digest());
    assert_one_line_error(&out, "listed-http-verify-true", &http_reg.addr);
    assert!(forced.images().is_empty());
}

#[test]
fn plain_http_registry_off_loopback_needs_tls_verify_false() {
    let mut t = setup(false, true);
    let reg = t.http.clone().unwrap();
    let reference = reg.reference(REPO, TAG);
    let s = Strata::new();
    t.ns.step("pull-default", &s.command(&["pull", &reference]));
    t.ns.step("pull-insecure", &s.command(&["pull", "--tls-verify=false", &reference]));
    let out = t.ns.run();

    assert_one_line_error(&out, "pull-default", &reg.addr);
    assert_pulled(&out, "pull-insecure", &s, &reference, t.img.manifest_digest());
}
