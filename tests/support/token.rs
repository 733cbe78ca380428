//! A `docker-registry` (CNCF distribution 2.8) with **bearer-token auth**, and the token
//! server it sends clients to.
//!
//! * [`TokenServer`]: a small HTTP token service on 127.0.0.1 (a thread in the test
//!   process, std only). `GET /token?service=..&scope=repository:NAME:pull,push[&scope=..]`
//!   with HTTP basic credentials answers `{"token", "access_token", "expires_in", "issued_at"}`
//!   holding an RS256 JWT signed by `openssl dgst -sha256 -sign` with a throw-away key whose
//!   self-signed certificate travels in the JWT header (`x5c`) and is the registry's
//!   `rootcertbundle`. Wrong credentials get 401; a request without credentials is refused
//!   or gets a token granting nothing, see [`Anonymous`]. Every request is recorded
//!   ([`TokenServer::requests`]) and logged to a file.
//! * [`TokenRegistry`]: `docker-registry serve` configured with `auth.token` pointing at its
//!   own [`TokenServer`]. Registry and token logs go to files in its temp dir.
//!
//! Both are stopped on drop (registry: SIGKILL by PID and reaped; token server: its thread
//! is told to stop and joined).

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

use super::registry::{free_port, http_request};

/// `service` in the registry config and the token's `aud`.
pub const SERVICE: &str = "strata-test";
/// `issuer` in the registry config and the token's `iss`.
pub const ISSUER: &str = "strata-test-issuer";
/// Lifetime of issued tokens (`expires_in`).
pub const TOKEN_TTL_SECS: u64 = 300;

const START_ATTEMPTS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// What the token server does with a request that carries no credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anonymous {
    /// Issue a token that grants nothing (what Docker Hub does for a private repository);
    /// the registry then answers 401 `insufficient_scope`.
    EmptyToken,
    /// Answer 401 at the token endpoint.
    Refuse,
}

/// One `repository:NAME:ACTIONS` grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// One request the token server answered.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub method: String,
    pub path: String,
    /// User from the `Authorization: Basic` header (None: no credentials).
    pub user: Option<String>,
    pub account: Option<String>,
    pub service: Option<String>,
    /// Every `scope` parameter, percent-decoded, in order.
    pub scopes: Vec<String>,
    /// HTTP status answered.
    pub status: u16,
    /// What the issued token grants (empty when refused).
    pub granted: Vec<Access>,
}

impl TokenRequest {
    /// True if some `scope` asked for `action` on repository `repo`.
    pub fn asked(&self, repo: &str, action: &str) -> bool {
        self.scopes
            .iter()
            .filter_map(|s| parse_scope(s))
            .any(|a| a.kind == "repository" && a.name == repo && a.actions.iter().any(|x| x == action))
    }

    /// True if the issued token grants `action` on repository `repo`.
    pub fn granted(&self, repo: &str, action: &str) -> bool {
        self.granted.iter().any(|a| a.kind == "repository" && a.name == repo && a.actions.iter().any(|x| x == action))
    }
}

struct State {
    user: String,
    pass: String,
    key_path: PathBuf,
    /// Base64 (standard) DER of the signing certificate, for the JWT `x5c` header.
    cert_der_b64: String,
    anonymous: Mutex<Anonymous>,
    requests: Mutex<Vec<TokenRequest>>,
    log: Mutex<fs::File>,
    serial: AtomicU64,
}

/// The token service. See the module docs.
pub struct TokenServer {
    addr: String,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    cert_path: PathBuf,
    log_path: PathBuf,
}

impl TokenServer {
    /// Generates an RSA key and self-signed certificate in `dir` (with the `openssl` CLI),
    /// binds 127.0.0.1:0 and serves on a thread. `user`/`pass` are the only valid
    /// credentials. Anonymous requests get [`Anonymous::EmptyToken`] until changed.
    pub fn start(dir: &Path, user: &str, pass: &str) -> TokenServer {
        let key_path = dir.join("token-key.pem");
        let cert_path = dir.join("token-cert.pem");
        super::run(
            Command::new("openssl")
                .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj"])
                .arg("/CN=strata-test-token-issuer")
                .arg("-keyout")
                .arg(&key_path)
                .arg("-out")
                .arg(&cert_path)
                .stderr(Stdio::null()),
        );
        let der = super::run(Command::new("openssl").args(["x509", "-outform", "DER", "-in"]).arg(&cert_path)).stdout;
        assert!(!der.is_empty(), "token server: openssl x509 -outform DER printed nothing");

        let log_path = dir.join("token.log");
        let log =
            fs::File::create(&log_path).unwrap_or_else(|e| panic!("token server: create {}: {e}", log_path.display()));
        let listener =
            TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("token server: bind 127.0.0.1:0: {e}"));
        let addr = listener.local_addr().expect("token server: local_addr").to_string();
        let state = Arc::new(State {
            user: user.to_string(),
            pass: pass.to_string(),
            key_path,
            cert_der_b64: STANDARD.encode(&der),
            anonymous: Mutex::new(Anonymous::EmptyToken),
            requests: Mutex::new(Vec::new()),
            log: Mutex::new(log),
            serial: AtomicU64::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::Builder::new()
                .name("token-server".into())
                .spawn(move || accept_loop(listener, state, stop))
                .expect("token server: spawn thread")
        };
        TokenServer { addr, state, stop, thread: Some(thread), cert_path, log_path }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://127.0.0.1:PORT/token` (the registry's `realm`).
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// PEM certificate of the signing key (the registry's `rootcertbundle`).
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    pub fn set_anonymous(&self, policy: Anonymous) {
        *self.state.anonymous.lock().unwrap() = policy;
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn clear_requests(&self) {
        self.state.requests.lock().unwrap().clear();
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Current contents of the request log.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Stops accepting and joins the server thread. Idempotent.
    pub fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop.store(true, Ordering::SeqCst);
            // Wake the blocking accept().
            let _ = TcpStream::connect_timeout(&self.addr.parse().expect("addr"), Duration::from_secs(1));
            let _ = thread.join();
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, state: Arc<State>, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(conn) = conn else { continue };
        let state = state.clone();
        // One short-lived thread per connection (answers carry `Connection: close`).
        let _ = std::thread::Builder::new().name("token-conn".into()).spawn(move || serve(conn, &state));
    }
}

fn serve(mut conn: TcpStream, state: &State) {
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
    conn.set_write_timeout(Some(Duration::from_secs(5))).ok();
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > MAX_REQUEST_HEAD {
            return;
        }
    }
    let (status, body, extra) = handle(&String::from_utf8_lossy(&head), state);
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    };
    let mut resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        resp.push_str(&format!("{k}: {v}\r\n"));
    }
    resp.push_str("\r\n");
    resp.push_str(&body);
    let _ = conn.write_all(resp.as_bytes());
    let _ = conn.flush();
}

/// Answers one request: (status, JSON body, extra headers). Records it.
fn handle(head: &str, state: &State) -> (u16, String, Vec<(&'static str, String)>) {
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let method = first.next().unwrap_or_default().to_string();
    let target = first.next().unwrap_or_default().to_string();
    let authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.trim().to_string());
    let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
    let params: Vec<(String, String)> = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let scopes: Vec<String> = params.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v.clone()).collect();

    let basic = authorization.as_deref().and_then(|a| {
        let (scheme, b64) = a.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let raw = STANDARD.decode(b64.trim()).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        Some((u.to_string(), p.to_string()))
    });

    let mut record = TokenRequest {
        method: method.clone(),
        path: path.to_string(),
        user: basic.as_ref().map(|(u, _)| u.clone()),
        account: param("account"),
        service: param("service"),
        scopes: scopes.clone(),
        status: 0,
        granted: Vec::new(),
    };

    let unauthorized = |msg: &str| {
        (
            401,
            serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": msg}]}).to_string(),
            vec![("WWW-Authenticate", "Basic realm=\"strata-test-token\"".to_string())],
        )
    };
    let answer = if path != "/token" {
        (404, r#"{"errors":[{"code":"NOT_FOUND","message":"no such endpoint"}]}"#.to_string(), vec![])
    } else if method != "GET" {
        (405, r#"{"errors":[{"code":"UNSUPPORTED","message":"GET only"}]}"#.to_string(), vec![])
    } else if record.service.as_deref().is_some_and(|s| s != SERVICE) {
        (400, r#"{"errors":[{"code":"INVALID_REQUEST","message":"unknown service"}]}"#.to_string(), vec![])
    } else {
        let subject = match &basic {
            Some((u, p)) if *u == state.user && *p == state.pass => Some(u.clone()),
            Some(_) => None,
            None if *state.anonymous.lock().unwrap() == Anonymous::EmptyToken => Some(String::new()),
            None => None,
        };
        match subject {
            None if basic.is_some() => unauthorized("invalid username or password"),
            None => unauthorized("authentication required"),
            Some(sub) => {
                // The real user gets what it asks for; an anonymous caller gets nothing.
                let granted: Vec<Access> = if sub.is_empty() { Vec::new() } else { grant(&scopes) };
                match issue(state, &sub, &granted) {
                    Ok(body) => {
                        record.granted = granted;
                        (200, body, vec![])
                    }
                    Err(e) => {
                        (500, serde_json::json!({"errors": [{"code": "UNKNOWN", "message": e}]}).to_string(), vec![])
                    }
                }
            }
        }
    };
    record.status = answer.0;
    if let Ok(mut log) = state.log.lock() {
        let _ = writeln!(
            log,
            "{method} {path} user={:?} account={:?} service={:?} scopes={:?} -> {} granted={:?}",
            record.user, record.account, record.service, record.scopes, record.status, record.granted
        );
    }
    state.requests.lock().unwrap().push(record);
    answer
}

/// Grants every requested `pull`/`push`/`delete`/`*` on `repository` scopes, merged per name.
fn grant(scopes: &[String]) -> Vec<Access> {
    let mut out: Vec<Access> = Vec::new();
    for scope in scopes.iter().flat_map(|s| s.split(' ')) {
        let Some(req) = parse_scope(scope) else { continue };
        if req.kind != "repository" {
            continue;
        }
        let actions = req.actions.into_iter().filter(|a| matches!(a.as_str(), "pull" | "push" | "delete" | "*"));
        match out.iter_mut().find(|a| a.name == req.name) {
            Some(existing) => {
                for a in actions {
                    if !existing.actions.contains(&a) {
                        existing.actions.push(a);
                    }
                }
            }
            None => out.push(Access { kind: req.kind, name: req.name, actions: actions.collect() }),
        }
    }
    out
}

/// `TYPE:NAME:ACTION[,ACTION..]` (NAME may not contain ':' for repositories, but a
/// registry-qualified name could, so split the actions off the right).
fn parse_scope(scope: &str) -> Option<Access> {
    let (rest, actions) = scope.rsplit_once(':')?;
    let (kind, name) = rest.split_once(':')?;
    Some(Access {
        kind: kind.to_string(),
        name: name.to_string(),
        actions: actions.split(',').filter(|a| !a.is_empty()).map(str::to_string).collect(),
    })
}

/// Builds and signs the JWT; returns the JSON response body.
fn issue(state: &State, sub: &str, granted: &[Access]) -> Result<String, String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
    let serial = state.serial.fetch_add(1, Ordering::SeqCst);
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [state.cert_der_b64]});
    let access: Vec<serde_json::Value> =
        granted.iter().map(|a| serde_json::json!({"type": a.kind, "name": a.name, "actions": a.actions})).collect();
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": sub,
        "aud": SERVICE,
        "exp": now + TOKEN_TTL_SECS,
        "nbf": now.saturating_sub(10),
        "iat": now,
        "jti": format!("strata-test-{}-{now}-{serial}", std::process::id()),
        "access": access,
    });
    let signing_input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = openssl_sign(&state.key_path, signing_input.as_bytes())?;
    let jwt = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature));
    Ok(serde_json::json!({
        "token": jwt,
        "access_token": jwt,
        "expires_in": TOKEN_TTL_SECS,
        "issued_at": rfc3339(now),
    })
    .to_string())
}

/// `openssl dgst -sha256 -sign KEY -binary` over `data` (RSASSA-PKCS1-v1_5: RS256).
fn openssl_sign(key: &Path, data: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-binary", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn openssl dgst: {e}"))?;
    child.stdin.take().expect("stdin").write_all(data).map_err(|e| format!("write to openssl: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("wait for openssl: {e}"))?;
    if !out.status.success() || out.stdout.is_empty() {
        return Err(format!("openssl dgst -sign failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    Ok(out.stdout)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (days-to-civil, proleptic Gregorian).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() && hex(bytes[i + 1]).is_some() && hex(bytes[i + 2]).is_some() => {
                out.push(hex(bytes[i + 1]).unwrap() << 4 | hex(bytes[i + 2]).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A running `docker-registry` with token auth and its [`TokenServer`]. Stopped on drop.
/// Keep it in a local of the test (statics are never dropped).
pub struct TokenRegistry {
    child: Option<Child>,
    port: u16,
    addr: String,
    user: String,
    pass: String,
    token: TokenServer,
    // Dropped last (after the registry is killed and the token server joined).
    dir: tempfile::TempDir,
}

impl TokenRegistry {
    /// Starts a token server accepting `user`/`pass` and a registry that requires its
    /// tokens for every request (pull included).
    pub fn start(user: &str, pass: &str) -> TokenRegistry {
        let dir = tempfile::Builder::new()
            .prefix("strata-token-registry-")
            .tempdir()
            .unwrap_or_else(|e| panic!("token registry: cannot create temp dir: {e}"));
        let storage = dir.path().join("storage");
        fs::create_dir_all(&storage).unwrap_or_else(|e| panic!("token registry: mkdir storage: {e}"));
        let token = TokenServer::start(dir.path(), user, pass);

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
                 auth:\n  token:\n    realm: \"{realm}\"\n    service: {SERVICE}\n    issuer: {ISSUER}\n    \
                 rootcertbundle: \"{cert}\"\n",
                storage = storage.display(),
                realm = token.realm(),
                cert = token.cert_path().display(),
            );
            fs::write(&config, yaml).unwrap_or_else(|e| panic!("token registry: write config: {e}"));

            let log_path = dir.path().join("registry.log");
            let log = fs::File::create(&log_path)
                .unwrap_or_else(|e| panic!("token registry: create {}: {e}", log_path.display()));
            let log2 = log.try_clone().expect("token registry: dup log fd");
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("token registry: cannot spawn docker-registry (package docker-registry): {e}")
                });
            match wait_ready(&mut child, &addr, &log_path, &token.realm()) {
                Ok(()) => {
                    return TokenRegistry {
                        child: Some(child),
                        port,
                        addr,
                        user: user.to_string(),
                        pass: pass.to_string(),
                        token,
                        dir,
                    }
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
        panic!("token registry: could not start docker-registry: {last_failure}");
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

    /// `127.0.0.1:PORT/REPO:TAG`.
    pub fn reference(&self, repo: &str, tag: &str) -> String {
        format!("{}/{}:{}", self.addr, repo, tag)
    }

    /// `docker://127.0.0.1:PORT/REPO:TAG` (for skopeo).
    pub fn docker_ref(&self, repo: &str, tag: &str) -> String {
        format!("docker://{}", self.reference(repo, tag))
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn password(&self) -> &str {
        &self.pass
    }

    /// `user:password` for skopeo's `--creds`/`--dest-creds`.
    pub fn creds(&self) -> String {
        format!("{}:{}", self.user, self.pass)
    }

    pub fn token_server(&self) -> &TokenServer {
        &self.token
    }

    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// Current contents of the registry log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Kills docker-registry by its PID and waits for it, then stops the token server.
    /// Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.token.stop();
    }
}

impl Drop for TokenRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls (short backoff) until `GET /v2/` answers 401 with a Bearer challenge naming
/// `realm` and the log shows our process is the listener.
fn wait_ready(child: &mut Child, addr: &str, log_path: &Path, realm: &str) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let sock: SocketAddr = addr.parse().expect("socket addr");
    let mut backoff = Duration::from_millis(2);
    let log = || fs::read_to_string(log_path).unwrap_or_default();
    loop {
        if let Some(status) = child.try_wait().ok().flatten() {
            return Err(format!("docker-registry exited early ({status}); log {}:\n{}", log_path.display(), log()));
        }
        if TcpStream::connect_timeout(&sock, Duration::from_millis(200)).is_ok() {
            match http_request(addr, "GET", "/v2/", &[], &[]) {
                Ok(resp) if resp.status == 401 => {
                    if !log().contains(&format!("listening on {addr}")) {
                        return Err(format!("address already in use: another server answers on {addr}"));
                    }
                    let challenge = resp.header("WWW-Authenticate").unwrap_or_default();
                    if !challenge.starts_with("Bearer ") || !challenge.contains(realm) {
                        return Err(format!("GET /v2/ on {addr}: unexpected challenge {challenge:?}; log:\n{}", log()));
                    }
                    return Ok(());
                }
                Ok(resp) => return Err(format!("GET /v2/ on {addr} answered {} (expected 401)", resp.status)),
                Err(_) => {} // not fully up yet
            }
        }
        if Instant::now() > deadline {
            return Err(format!("docker-registry did not answer on {addr} within {READY_TIMEOUT:?}; log:\n{}", log()));
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_millis(50));
    }
}
