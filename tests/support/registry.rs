//! A real `docker-registry serve CONFIG` (Debian's CNCF distribution 2.8) on
//! 127.0.0.1 with filesystem storage in a temp dir.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::base64_encode;

/// Accept header listing every manifest type a pull client handles.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

const START_ATTEMPTS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running registry. Stopped (SIGKILL by PID, then reaped) by [`Registry::stop`]
/// or on drop; its temp dir (storage, config, log, htpasswd) is removed on drop.
/// Keep it in a local of the test (not in a `static`: statics are never dropped,
/// so the process would outlive the test binary).
pub struct Registry {
    child: Option<Child>,
    port: u16,
    addr: String,
    creds: Option<(String, String)>,
    // Dropped after `child` is killed (Drop::drop runs before field drops).
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts an anonymous registry (push and pull without credentials).
    pub fn start() -> Registry {
        Self::start_inner(None)
    }

    /// Starts a registry requiring HTTP basic auth (`htpasswd -Bbc`) for every
    /// request, including pulls.
    pub fn start_with_basic_auth(user: &str, pass: &str) -> Registry {
        Self::start_inner(Some((user.to_string(), pass.to_string())))
    }

    fn start_inner(creds: Option<(String, String)>) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("strata-registry-")
            .tempdir()
            .unwrap_or_else(|e| panic!("registry: cannot create temp dir: {e}"));
        let storage = dir.path().join("storage");
        fs::create_dir_all(&storage).unwrap_or_else(|e| panic!("registry: mkdir storage: {e}"));

        let auth_yaml = match &creds {
            None => String::new(),
            Some((user, pass)) => {
                let htpasswd = dir.path().join("htpasswd");
                super::run(Command::new("htpasswd").arg("-Bbc").arg(&htpasswd).arg(user).arg(pass));
                format!("auth:\n  htpasswd:\n    realm: strata-test-registry\n    path: \"{}\"\n", htpasswd.display())
            }
        };

        let mut last_failure = String::new();
        for _attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let config = dir.path().join("config.yml");
            let yaml = format!(
                "version: 0.1\n\
                 log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: \"{storage}\"\n  delete:\n    enabled: true\n  \
                 maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: {addr}\n  secret: strata-test-secret\n\
                 health:\n  storagedriver:\n    enabled: false\n\
                 {auth_yaml}",
                storage = storage.display(),
            );
            fs::write(&config, yaml).unwrap_or_else(|e| panic!("registry: write config: {e}"));

            // Truncated on each attempt; a failed attempt's log goes into the panic text.
            let log_path = dir.path().join("registry.log");
            let log =
                fs::File::create(&log_path).unwrap_or_else(|e| panic!("registry: create {}: {e}", log_path.display()));
            let log2 = log.try_clone().expect("registry: dup log fd");
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .unwrap_or_else(|e| panic!("registry: cannot spawn docker-registry (package docker-registry): {e}"));

            let mut child = child;
            match wait_ready(&mut child, &addr, &log_path) {
                Ok(()) => {
                    return Registry { child: Some(child), port, addr, creds, dir };
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let retry = e.contains("address already in use");
                    last_failure = e;
                    if !retry {
                        break;
                    }
                }
            }
        }
        panic!("registry: could not start docker-registry: {last_failure}");
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// PID of the docker-registry process (None once stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `127.0.0.1:PORT/REPO:TAG` (what a pull client takes).
    pub fn reference(&self, repo: &str, tag: &str) -> String {
        format!("{}/{}:{}", self.addr, repo, tag)
    }

    /// `docker://127.0.0.1:PORT/REPO:TAG` (what skopeo takes).
    pub fn docker_ref(&self, repo: &str, tag: &str) -> String {
        format!("docker://{}", self.reference(repo, tag))
    }

    /// The `(user, password)` the registry was started with, if any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.creds.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// `user:password` for skopeo's `--creds`/`--dest-creds`, if any.
    pub fn creds(&self) -> Option<String> {
        self.creds.as_ref().map(|(u, p)| format!("{u}:{p}"))
    }

    /// The registry's filesystem storage root. Blobs live in
    /// `docker/registry/v2/blobs/sha256/<first 2 hex>/<hex>/data` under it
    /// (see [`Registry::blob_data_path`]).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The on-disk file holding blob `digest` (`sha256:<hex>`), to corrupt it in a test.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.storage_dir().join("docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }

    /// The registry's log file (stdout+stderr of docker-registry).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// Current contents of the log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// One HTTP/1.1 request to the registry (Connection: close), with basic auth
    /// if the registry has credentials. `path` starts with `/v2/`.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
        let auth;
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some((u, p)) = self.credentials() {
            auth = format!("Basic {}", base64_encode(format!("{u}:{p}").as_bytes()));
            all.push(("Authorization", &auth));
        }
        http_request(&self.addr, method, path, &all, body)
            .unwrap_or_else(|e| panic!("registry: {method} {path} on {}: {e}", self.addr))
    }

    /// `GET path` with credentials if any.
    pub fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", path, &[], &[])
    }

    /// `GET /v2/REPO/manifests/REFERENCE` accepting OCI and Docker manifests and
    /// indexes (distribution answers 404 to OCI manifests without such an Accept).
    pub fn get_manifest(&self, repo: &str, reference: &str) -> HttpResponse {
        self.request("GET", &format!("/v2/{repo}/manifests/{reference}"), &[("Accept", MANIFEST_ACCEPT)], &[])
    }

    /// `GET /v2/REPO/blobs/DIGEST`.
    pub fn get_blob(&self, repo: &str, digest: &str) -> HttpResponse {
        self.get(&format!("/v2/{repo}/blobs/{digest}"))
    }

    /// Kills docker-registry by its PID and waits for it. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Retries connecting with a short exponential backoff until `GET /v2/`
/// answers 200 or 401 and the log shows our process is the listener.
fn wait_ready(child: &mut Child, addr: &str, log_path: &Path) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let sock: SocketAddr = addr.parse().expect("socket addr");
    let mut backoff = Duration::from_millis(2);
    loop {
        if let Some(status) = child.try_wait().ok().flatten() {
            return Err(format!(
                "docker-registry exited early ({status}); log {}:\n{}",
                log_path.display(),
                fs::read_to_string(log_path).unwrap_or_default()
            ));
        }
        if TcpStream::connect_timeout(&sock, Duration::from_millis(200)).is_ok() {
            match http_request(addr, "GET", "/v2/", &[], &[]) {
                Ok(resp) if resp.status == 200 || resp.status == 401 => {
                    let log = fs::read_to_string(log_path).unwrap_or_default();
                    if log.contains(&format!("listening on {}", addr)) {
                        return Ok(());
                    }
                    // Someone else answers on this port.
                    return Err(format!("address already in use: another server answers on {} ", addr));
                }
                Ok(resp) => return Err(format!("GET /v2/ on {} answered {} (expected 200 or 401)", addr, resp.status)),
                Err(_) => {} // not fully up yet
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "docker-registry did not answer on {} within {:?}; log:\n{}",
                addr,
                READY_TIMEOUT,
                fs::read_to_string(log_path).unwrap_or_default()
            ));
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_millis(50));
    }
}

/// A port that was free a moment ago (bind 127.0.0.1:0, read, release).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind 127.0.0.1:0: {e}"));
    l.local_addr().expect("local_addr").port()
}

/// Response of [`http_request`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A bare-bones HTTP/1.1 client: one request per connection (Connection: close),
/// reads to EOF, decodes chunked bodies. Enough to poke a local registry.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.set_write_timeout(Some(Duration::from_secs(10))).ok();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: strata-tests\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).map_err(|e| format!("write: {e}"))?;
    s.write_all(body).map_err(|e| format!("write body: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("incomplete HTTP response ({} bytes)", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut rest = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        rest = dechunk(&rest)?;
    }
    Ok(HttpResponse { status, headers, body: rest })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n").ok_or("truncated chunk header")?;
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("bad chunk size {size_text:?}: {e}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}
