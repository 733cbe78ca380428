//! End-to-end: strata against a docker-registry that uses bearer-token auth (the
//! docker/distribution token flow: 401 + `WWW-Authenticate: Bearer realm=..,service=..,scope=..`,
//! a JWT fetched from the realm with basic credentials, then `Authorization: Bearer`), with a
//! token server of our own (tests/support/token.rs). Images are seeded with skopeo.

mod cli;
mod support;

use cli::Strata;
use support::token::{Anonymous, TokenRegistry};
use support::*;

const USER: &str = "alice";
const PASS: &str = "t0ken-s3cret";

/// The single `Error: ...` line of a failed command's stderr (progress lines may precede it).
fn error_line(stderr: &str) -> &str {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("Error:")).collect();
    assert_eq!(errors.len(), 1, "expected exactly one `Error:` line in stderr:\n{stderr}");
    assert!(stderr.trim_end().ends_with(errors[0]), "the error is the last thing printed:\n{stderr}");
    errors[0]
}

#[test]
fn bearer_token_pull_push_login() {
    let reg = TokenRegistry::start(USER, PASS);
    let tokens = reg.token_server();
    let addr = reg.addr().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let img = busybox_image(&layout, "latest");
    let creds = reg.creds();
    skopeo_copy_with(
        &["--preserve-digests", "--quiet", "--dest-creds", &creds],
        &oci_ref(&layout, "latest"),
        &reg.docker_ref("private/busybox", "latest"),
    );
    assert!(
        tokens.requests().iter().any(|r| r.user.as_deref() == Some(USER) && r.granted("private/busybox", "push")),
        "skopeo seeded the registry through the token server; token log:\n{}",
        tokens.log()
    );
    let reference = reg.reference("private/busybox", "latest");
    let s = Strata::new();

    // 1. Anonymous pull: whether the token server hands out a token granting nothing
    //    (Docker Hub style; the registry then answers 401 insufficient_scope) or refuses
    //    outright, strata fails with one error line naming the registry.
    for policy in [Anonymous::EmptyToken, Anonymous::Refuse] {
        tokens.set_anonymous(policy);
        tokens.clear_requests();
        let anon = s.fails(&["pull", &reference]);
        assert_eq!(anon.code, 1, "{policy:?}: {}", anon.stderr);
        let line = error_line(&anon.stderr);
        assert!(
            line.contains(&format!("registry {addr} requires authentication")) && line.contains("strata login"),
            "{policy:?}: {line}"
        );
        let asked: Vec<_> = tokens.requests();
        assert!(
            asked.iter().any(|r| r.user.is_none() && r.asked("private/busybox", "pull")),
            "{policy:?}: strata asked the token server anonymously for a pull token; log:\n{}",
            tokens.log()
        );
        assert!(s.images().is_empty(), "{policy:?}: nothing stored after a refused pull");
    }
    assert!(!s.authfile().exists());

    // 2. Wrong password: login fails naming the registry and the user; nothing is stored.
    tokens.clear_requests();
    let wrong = s.run_stdin(&["login", "-u", USER, "--password-stdin", &addr], b"nope\n");
    assert_eq!(wrong.code, 1, "{}\n{}", wrong.stdout, wrong.stderr);
    let line = error_line(&wrong.stderr);
    assert!(
        line.contains(&format!("registry {addr} refused the credentials for user \"{USER}\""))
            && line.contains("incorrect username or password"),
        "{line}"
    );
    assert!(!wrong.stdout.contains("Login Succeeded"), "{}", wrong.stdout);
    assert!(!s.authfile().exists(), "a failed login stores nothing");
    assert!(
        tokens.requests().iter().any(|r| r.user.as_deref() == Some(USER) && r.status == 401),
        "the wrong password was checked at the token realm; log:\n{}",
        tokens.log()
    );

    // 3. Right password: login, pull, inspect, push.
    tokens.clear_requests();
    let ok = s.run_stdin(&["login", "-u", USER, "--password-stdin", &addr], format!("{PASS}\n").as_bytes());
    assert_eq!(ok.code, 0, "{}\n{}", ok.stdout, ok.stderr);
    assert_eq!(ok.stdout.trim(), "Login Succeeded");
    let auth: serde_json::Value = serde_json::from_slice(&std::fs::read(s.authfile()).unwrap()).unwrap();
    assert_eq!(auth["auths"][addr.as_str()]["auth"], base64_encode(format!("{USER}:{PASS}").as_bytes()));
    assert!(
        tokens.requests().iter().any(|r| r.user.as_deref() == Some(USER) && r.status == 200),
        "login was checked at the token realm; log:\n{}",
        tokens.log()
    );

    tokens.clear_requests();
    let pulled = s.ok(&["pull", "-q", &reference]);
    assert_eq!(pulled.trim(), reference);
    let info = s.inspect(&reference);
    assert_eq!(info["Digest"], img.manifest_digest());
    assert_eq!(info["Id"], img.config_digest());
    assert!(
        tokens
            .requests()
            .iter()
            .any(|r| r.user.as_deref() == Some(USER) && r.status == 200 && r.granted("private/busybox", "pull")),
        "the pull used a pull token for alice; log:\n{}",
        tokens.log()
    );

    tokens.clear_requests();
    let dest = reg.reference("other", "v1");
    let pushed = s.ok(&["push", &reference, &dest]);
    assert!(pushed.trim().ends_with(img.manifest_digest()), "{pushed}");
    let raw = skopeo_inspect_raw(&reg.docker_ref("other", "v1"), Some(&creds));
    assert_eq!(sha256_digest(&raw), img.manifest_digest(), "skopeo reads back the manifest strata pushed");

    // 4. The push really ran on a push token.
    let push_tokens: Vec<_> =
        tokens.requests().into_iter().filter(|r| r.user.as_deref() == Some(USER) && r.asked("other", "push")).collect();
    assert!(!push_tokens.is_empty(), "no token request with scope repository:other:...push; log:\n{}", tokens.log());
    assert!(push_tokens.iter().all(|r| r.status == 200 && r.granted("other", "push")), "{push_tokens:?}");

    // Stored credentials that the token server no longer accepts: a clear error naming the
    // registry and the user, nothing stored.
    let stale = Strata::new();
    std::fs::write(
        stale.authfile(),
        format!(r#"{{"auths":{{"{addr}":{{"auth":"{}"}}}}}}"#, base64_encode(format!("{USER}:old").as_bytes())),
    )
    .unwrap();
    let e = stale.fails(&["pull", &reference]);
    assert_eq!(e.code, 1, "{}", e.stderr);
    let line = error_line(&e.stderr);
    assert!(line.contains(&format!("registry {addr} refused the credentials for user \"{USER}\"")), "{line}");
    assert!(stale.images().is_empty());
}
