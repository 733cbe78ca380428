//! Registries on a NON-loopback address (so that strata uses https for them), kept
//! entirely inside a private network namespace so no traffic can leave the machine.
//!
//! A test describes a shell script with [`NetnsScript`]: registries to start (plain http
//! or TLS with a self-signed certificate from [`self_signed_cert`]), then commands
//! ("steps", usually built as a [`std::process::Command`], e.g. `cli::Strata::command`
//! or skopeo). [`NetnsScript::run`] runs the script under
//! `unshare -n -m --propagation private` (root only): inside, `lo` is brought up and
//! [`NETNS_IP`] (TEST-NET-1, never routed) is added to it, the registries are started in
//! the background and polled until they answer, the steps run in order with their exit
//! code, stdout and stderr written to files, and on exit (normal, failure or SIGTERM from
//! the `timeout` wrapper) the registries are killed by PID. The namespace disappears with
//! the script. [`NetnsOutcome::step`] then gives each step's result to the test.
//!
//! Ports are fixed by the caller: every run has a network namespace of its own, so tests
//! running in parallel never collide.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The registries' address inside the namespace (RFC 5737 documentation range).
pub const NETNS_IP: &str = "192.0.2.10";

/// Upper bound for one whole script run (registries, seeding and every step).
const SCRIPT_TIMEOUT_SECS: u32 = 120;

/// A certificate and its private key, PEM files.
#[derive(Debug, Clone)]
pub struct Cert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A self-signed server certificate (ECDSA P-256, 2 days) for IP address `ip`:
/// subjectAltName `IP:ip`, CA:FALSE, serverAuth, made with the `openssl` CLI in `dir`
/// (created if needed). Nothing trusts it, so verifying clients must reject it as
/// issued by an unknown CA.
pub fn self_signed_cert(dir: &Path, ip: &str) -> Cert {
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("tls: mkdir {}: {e}", dir.display()));
    // Our own config instead of the system's openssl.cnf, whose v3_ca defaults would make
    // the certificate a CA (rustls then reports CaUsedAsEndEntity, not an unknown issuer).
    let cnf = dir.join("openssl.cnf");
    fs::write(
        &cnf,
        format!(
            "[req]\nprompt = no\ndistinguished_name = dn\nx509_extensions = v3\n\
             [dn]\nCN = {ip}\n\
             [v3]\nsubjectAltName = IP:{ip}\nbasicConstraints = critical,CA:FALSE\n\
             keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n"
        ),
    )
    .unwrap_or_else(|e| panic!("tls: write {}: {e}", cnf.display()));
    let cert = Cert { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    super::run(
        Command::new("openssl")
            .args(["req", "-x509", "-config"])
            .arg(&cnf)
            .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-keyout"])
            .arg(&cert.key)
            .arg("-out")
            .arg(&cert.cert),
    );
    cert
}

/// `s` quoted for a POSIX shell (left bare when it is obviously safe).
pub fn sh_quote(s: &str) -> String {
    let safe = |b: u8| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b);
    if !s.is_empty() && s.bytes().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `cmd` as one shell command line: `env [-u VAR].. [VAR=VALUE].. PROGRAM ARGS..`
/// (prefixed with `cd DIR &&` if it has a working directory). Paths must be UTF-8.
pub fn shell_line(cmd: &Command) -> String {
    let text = |s: &std::ffi::OsStr| {
        sh_quote(s.to_str().unwrap_or_else(|| panic!("tls: non-UTF-8 text in {}", super::describe(cmd))))
    };
    let mut unset = String::new();
    let mut set = String::new();
    for (k, v) in cmd.get_envs() {
        match v {
            None => write!(unset, " -u {}", text(k)).unwrap(),
            Some(v) => write!(set, " {}={}", text(k), text(v)).unwrap(),
        }
    }
    let mut line = String::new();
    if let Some(d) = cmd.get_current_dir() {
        write!(line, "cd {} && ", text(d.as_os_str())).unwrap();
    }
    if !unset.is_empty() || !set.is_empty() {
        write!(line, "env{unset}{set} ").unwrap();
    }
    line.push_str(&text(cmd.get_program()));
    for a in cmd.get_args() {
        line.push(' ');
        line.push_str(&text(a));
    }
    line
}

/// A registry started by a [`NetnsScript`].
#[derive(Debug, Clone)]
pub struct NetnsRegistry {
    pub name: String,
    /// `NETNS_IP:PORT`.
    pub addr: String,
    pub tls: bool,
}

impl NetnsRegistry {
    /// `ADDR/REPO:TAG`.
    pub fn reference(&self, repo: &str, tag: &str) -> String {
        format!("{}/{}:{}", self.addr, repo, tag)
    }

    /// `docker://ADDR/REPO:TAG`.
    pub fn docker_ref(&self, repo: &str, tag: &str) -> String {
        format!("docker://{}", self.reference(repo, tag))
    }
}

/// A script to run in a private network namespace; see the module docs.
pub struct NetnsScript {
    dir: tempfile::TempDir,
    ip: String,
    body: String,
    registries: Vec<NetnsRegistry>,
    steps: Vec<String>,
}

impl NetnsScript {
    /// An empty script whose namespace has address `ip` (normally [`NETNS_IP`]) on `lo`.
    pub fn new(ip: &str) -> NetnsScript {
        let dir = tempfile::Builder::new()
            .prefix("strata-netns-")
            .tempdir()
            .unwrap_or_else(|e| panic!("tls: cannot create temp dir: {e}"));
        fs::create_dir_all(dir.path().join("steps")).expect("tls: mkdir steps");
        NetnsScript { dir, ip: ip.to_string(), body: String::new(), registries: Vec::new(), steps: Vec::new() }
    }

    /// The script's working directory (kept until the [`NetnsOutcome`] is dropped).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts a `docker-registry serve` (anonymous, filesystem storage in the script's dir)
    /// on `IP:port`, with TLS if `tls` is given, and waits until it answers `GET /v2/`.
    /// If it exits or stays silent, the script stops and [`NetnsScript::run`] panics.
    pub fn registry(&mut self, name: &str, port: u16, tls: Option<&Cert>) -> NetnsRegistry {
        check_name(name);
        assert!(self.registries.iter().all(|r| r.name != name), "tls: registry name {name:?} used twice");
        let addr = format!("{}:{port}", self.ip);
        let storage = self.dir().join(format!("registry-{name}"));
        fs::create_dir_all(&storage).expect("tls: mkdir registry storage");
        let tls_yaml = match tls {
            None => String::new(),
            Some(c) => {
                format!("  tls:\n    certificate: \"{}\"\n    key: \"{}\"\n", c.cert.display(), c.key.display())
            }
        };
        let yaml = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n\
             storage:\n  filesystem:\n    rootdirectory: \"{storage}\"\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: \"{addr}\"\n  secret: strata-test-secret\n{tls_yaml}\
             health:\n  storagedriver:\n    enabled: false\n",
            storage = storage.display(),
        );
        let config = self.dir().join(format!("registry-{name}.yml"));
        fs::write(&config, yaml).expect("tls: write registry config");
        let url = format!("{}://{addr}/v2/", if tls.is_some() { "https" } else { "http" });
        writeln!(
            self.body,
            "docker-registry serve {config} >registry-{name}.log 2>&1 </dev/null &\n\
             pid=$!\nPIDS=\"$PIDS $pid\"\necho \"$pid\" >>pids\n\
             wait_up {name} {url} \"$pid\"",
            config = sh_quote(&config.display().to_string()),
            url = sh_quote(&url),
        )
        .unwrap();
        let reg = NetnsRegistry { name: name.to_string(), addr, tls: tls.is_some() };
        self.registries.push(reg.clone());
        reg
    }

    /// Runs `cmd` (stdin /dev/null); its exit code, stdout and stderr are recorded under `name`.
    pub fn step(&mut self, name: &str, cmd: &Command) {
        self.add_step(name, cmd, false);
    }

    /// Like [`NetnsScript::step`], but if `cmd` fails the script stops there and
    /// [`NetnsScript::run`] panics (for setup such as seeding a registry).
    pub fn require(&mut self, name: &str, cmd: &Command) {
        self.add_step(name, cmd, true);
    }

    fn add_step(&mut self, name: &str, cmd: &Command, required: bool) {
        check_name(name);
        assert!(!self.steps.iter().any(|s| s == name), "tls: step name {name:?} used twice");
        self.steps.push(name.to_string());
        writeln!(
            self.body,
            "{line} >steps/{name}.out 2>steps/{name}.err </dev/null\necho $? >steps/{name}.rc",
            line = shell_line(cmd)
        )
        .unwrap();
        if required {
            writeln!(
                self.body,
                "[ \"$(cat steps/{name}.rc)\" = 0 ] || {{ echo \"required step {name} failed\" >&2; exit 90; }}"
            )
            .unwrap();
        }
    }

    /// The complete script text.
    pub fn script(&self) -> String {
        format!(
            "# generated by tests/support/tls.rs; run with unshare -n -m --propagation private\n\
             set -u\n\
             cd {dir} || exit 99\n\
             unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY\n\
             PIDS=\n\
             cleanup() {{\n  for p in $PIDS; do kill -9 \"$p\" 2>/dev/null; done\n  wait\n}}\n\
             trap cleanup EXIT\n\
             trap 'exit 143' INT TERM\n\
             wait_up() {{ # NAME URL PID: poll until the registry answers (any HTTP status)\n  \
               n=0\n  \
               until curl -s -k --noproxy '*' --max-time 2 -o /dev/null \"$2\"; do\n    \
                 kill -0 \"$3\" 2>/dev/null || {{ echo \"registry $1 exited early\" >&2; exit 91; }}\n    \
                 n=$((n + 1))\n    \
                 [ \"$n\" -lt 1000 ] || {{ echo \"registry $1 did not answer on $2\" >&2; exit 92; }}\n    \
                 sleep 0.01\n  \
               done\n\
             }}\n\
             ip link set lo up || exit 98\n\
             ip addr add {ip}/32 dev lo || exit 98\n\
             {body}",
            dir = sh_quote(&self.dir().display().to_string()),
            ip = self.ip,
            body = self.body,
        )
    }

    /// Runs the script in a new network + mount namespace (needs root) and returns the
    /// recorded steps. Panics, with the script's output and the registry logs, if the
    /// namespace cannot be set up, a registry does not come up, a required step fails,
    /// the script times out, or a registry process outlives the script.
    pub fn run(self) -> NetnsOutcome {
        let script_path = self.dir().join("script.sh");
        fs::write(&script_path, self.script()).expect("tls: write script");
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", &SCRIPT_TIMEOUT_SECS.to_string(), "unshare", "-n", "-m", "--propagation", "private"])
            .arg("sh")
            .arg(&script_path)
            .stdin(Stdio::null());
        let line = super::describe(&cmd);
        let out = cmd.output().unwrap_or_else(|e| panic!("tls: cannot spawn `{line}`: {e}"));
        let outcome = NetnsOutcome {
            dir: self.dir,
            registries: self.registries,
            steps: self.steps,
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if outcome.code != 0 {
            let why = match outcome.code {
                90 => "a required step failed",
                91 | 92 => "a registry did not come up",
                98 => "cannot configure lo in the new namespace",
                124 | 137 => "the script timed out",
                _ => "unexpected failure (unshare needs root: CAP_SYS_ADMIN)",
            };
            panic!("tls: `{line}` exited {} ({why})\n{}", outcome.code, outcome.diagnostics());
        }
        let alive = outcome.live_registry_pids();
        assert!(alive.is_empty(), "tls: docker-registry still running after the script: {alive:?}");
        outcome
    }
}

fn check_name(name: &str) {
    assert!(
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "tls: name {name:?} must be [A-Za-z0-9_-]+"
    );
}

/// Exit code, stdout and stderr of one step.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    pub name: String,
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl StepOutcome {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

impl std::fmt::Display for StepOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "step {} exited {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.name,
            self.code,
            self.stdout_text(),
            self.stderr
        )
    }
}

/// What a [`NetnsScript`] run left behind (its temp dir lives as long as this does).
pub struct NetnsOutcome {
    dir: tempfile::TempDir,
    registries: Vec<NetnsRegistry>,
    steps: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl NetnsOutcome {
    /// The recorded result of step `name`.
    pub fn step(&self, name: &str) -> StepOutcome {
        assert!(self.steps.iter().any(|s| s == name), "tls: no step named {name:?}");
        let base = self.dir.path().join("steps");
        let rc = fs::read_to_string(base.join(format!("{name}.rc")))
            .unwrap_or_else(|e| panic!("tls: step {name} did not run ({e})\n{}", self.diagnostics()));
        StepOutcome {
            name: name.to_string(),
            code: rc.trim().parse().unwrap_or_else(|e| panic!("tls: step {name}: bad exit code {rc:?}: {e}")),
            stdout: fs::read(base.join(format!("{name}.out"))).unwrap_or_default(),
            stderr: fs::read_to_string(base.join(format!("{name}.err"))).unwrap_or_default(),
        }
    }

    /// Log of the registry called `name`.
    pub fn registry_log(&self, name: &str) -> String {
        fs::read_to_string(self.dir.path().join(format!("registry-{name}.log"))).unwrap_or_default()
    }

    /// The script's own output, every recorded step and every registry log.
    pub fn diagnostics(&self) -> String {
        let mut s = format!("--- script stdout ---\n{}\n--- script stderr ---\n{}\n", self.stdout, self.stderr);
        for name in &self.steps {
            if self.dir.path().join("steps").join(format!("{name}.rc")).exists() {
                writeln!(s, "{}", self.step(name)).unwrap();
            }
        }
        for r in &self.registries {
            writeln!(s, "--- registry {} ({}) log ---\n{}", r.name, r.addr, self.registry_log(&r.name)).unwrap();
        }
        s
    }

    /// PIDs of registries started by the script that still run docker-registry.
    fn live_registry_pids(&self) -> Vec<u32> {
        let pids = fs::read_to_string(self.dir.path().join("pids")).unwrap_or_default();
        pids.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|pid: &u32| {
                fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains("docker-registry"))
                    .unwrap_or(false)
            })
            .collect()
    }
}
