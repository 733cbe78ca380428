//! What `strata run`/`create` asked for on top of an image (`RunOptions`, persisted with the
//! container so every start builds the same spec), and the parsing of docker's flag syntax
//! for it: `-e`/`--env-file`, memory sizes, `--cpus`, `-v`, `--network`.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum OptionError {
    #[error("invalid memory size {0:?}: use a number with an optional unit b, k, m or g (e.g. 64m)")]
    InvalidMemory(String),
    #[error("minimum memory limit allowed is 6MB")]
    MemoryTooSmall,
    #[error("invalid value {0:?} for --cpus: expected a positive number such as 0.5 or 2")]
    InvalidCpus(String),
    #[error("invalid environment variable {0:?}")]
    InvalidEnv(String),
    #[error("poorly formatted environment: variable '{0}' contains whitespaces")]
    EnvWhitespace(String),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// A new network namespace with only `lo` (strata has no bridge networking yet).
    #[default]
    None,
    /// The host's network namespace.
    Host,
}

impl std::str::FromStr for NetworkMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(NetworkMode::None),
            "host" => Ok(NetworkMode::Host),
            other => Err(format!("network mode {other:?} is not supported: use none or host")),
        }
    }
}

impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
        })
    }
}

/// A `-v SRC:DST[:ro]` bind mount, or a named volume (`-v NAME:DST`, `-v DST` for an
/// anonymous one, `--mount type=volume`), which is a bind of the volume's directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// The host path; for a named volume its data directory, filled in at create.
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
    /// A named volume's name; empty for an anonymous one until create names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// Made for this container (`-v DST`, an image's VOLUME): `rm -v` and `run --rm` remove it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
    /// docker's `nocopy`: a new, empty volume does not get the image's files at its destination.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_copy: bool,
}

impl std::str::FromStr for Volume {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let (source, destination, mode) = match parts.as_slice() {
            // docker's `-v /dst`: an anonymous volume there.
            [dst] if dst.starts_with('/') => ("", *dst, ""),
            [src, dst] => (*src, *dst, ""),
            [src, dst, mode] => (*src, *dst, *mode),
            _ => return Err(format!("invalid volume specification {s:?}: expected [SRC:]DST[:ro|rw]")),
        };
        let (mut read_only, mut no_copy) = (false, false);
        for option in mode.split(',').filter(|o| !o.is_empty()) {
            match option {
                "rw" => read_only = false,
                "ro" => read_only = true,
                "nocopy" if !source.starts_with('/') => no_copy = true,
                // SELinux relabelling: nothing to relabel without SELinux, as docker on such hosts.
                "z" | "Z" => {}
                other => {
                    return Err(format!(
                    "invalid volume specification {s:?}: unknown mode {other:?} (ro, rw, z, Z, or nocopy for a volume)"
                ))
                }
            }
        }
        let mut volume = Volume::checked(s, source, destination, read_only)?;
        volume.no_copy = no_copy;
        Ok(volume)
    }
}

impl Volume {
    /// An image's `VOLUME`: an anonymous volume at that destination, the whole text a path (as
    /// docker reads it on Linux). Never `-v`'s `SRC:DST[:MODE]`: an image must not name a host
    /// path to bind, or another container's volume. The checks `-v DST` gets (absolute, not
    /// `/`, nothing in /proc).
    pub fn from_image(destination: &str) -> Result<Volume, String> {
        Volume::checked(destination, "", destination, false)
    }

    /// A bind of `source` at `destination`, checked (`s` is what the user wrote, for errors):
    /// a source that is not an absolute path names a volume (empty: an anonymous one).
    fn checked(s: &str, source: &str, destination: &str, read_only: bool) -> Result<Volume, String> {
        let volume = match source {
            "" => Some(String::new()),
            s if s.starts_with('/') => None,
            name => {
                crate::volumes::validate_name(name).map_err(|e| format!("invalid volume specification {s:?}: {e}"))?;
                Some(name.to_string())
            }
        };
        if !destination.starts_with('/') {
            return Err(format!("invalid volume specification {s:?}: the destination must be an absolute path"));
        }
        let destination = clean_destination(destination);
        if destination == "/" {
            return Err(format!("invalid volume specification {s:?}: destination can't be '/'"));
        }
        // runc's rule: /proc is procfs, and what is under it the kernel's.
        if destination == "/proc" || destination.starts_with("/proc/") {
            return Err(format!("invalid volume specification {s:?}: {destination} cannot be a volume's destination"));
        }
        let source = if volume.is_some() { PathBuf::new() } else { source.into() };
        Ok(Volume { source, destination, read_only, anonymous: volume.as_deref() == Some(""), volume, no_copy: false })
    }
}

/// A `--mount` (docker's long form): a bind or a volume, as `-v` makes, or a tmpfs, as
/// `--tmpfs` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountArg {
    Bind(Volume),
    Tmpfs(Tmpfs),
}

/// Parse `--mount type=bind|volume|tmpfs,source=...,target=...[,readonly][,volume-nocopy]
/// [,tmpfs-size=..][,tmpfs-mode=..]` in docker's terms (`src`, `dst`/`destination`, `ro`; a bare
/// `readonly` is true; type=volume is the default, without a source an anonymous volume).
pub fn parse_mount(s: &str) -> Result<MountArg, String> {
    let invalid = |why: String| format!("invalid argument {s:?} for \"--mount\" flag: {why}");
    let (mut typ, mut source, mut target, mut read_only, mut no_copy) = ("volume", None, None, false, false);
    let mut tmpfs_options = Vec::new();
    for field in s.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (field, None),
        };
        let flag = |v: Option<&str>| match v {
            None | Some("1" | "true") => Ok(true),
            Some("0" | "false") => Ok(false),
            Some(other) => Err(invalid(format!("invalid value for {key}: {other}"))),
        };
        match (key.to_ascii_lowercase().as_str(), value) {
            ("readonly" | "ro", v) => read_only = flag(v)?,
            ("volume-nocopy", v) => no_copy = flag(v)?,
            (_, None) => return Err(invalid(format!("invalid field '{field}' must be a key=value pair"))),
            ("type", Some(v)) => typ = v,
            ("source" | "src", Some(v)) => source = Some(v),
            ("target" | "dst" | "destination", Some(v)) => target = Some(v),
            // Without SELinux or a VM between, these change nothing (as docker on Linux).
            ("consistency" | "bind-propagation" | "bind-nonrecursive", Some(_)) => {}
            ("volume-driver", Some("local")) => {}
            ("volume-driver", Some(other)) => {
                return Err(invalid(format!("volume driver {other:?} is not supported: strata has only \"local\"")))
            }
            ("tmpfs-size", Some(v)) => {
                tmpfs_options.push(format!("size={}", parse_bytes(v).map_err(|e| invalid(e.to_string()))?))
            }
            ("tmpfs-mode", Some(v)) => {
                let mode =
                    u32::from_str_radix(v, 8).map_err(|_| invalid(format!("invalid value for tmpfs-mode: {v}")))?;
                tmpfs_options.push(format!("mode={mode:o}"));
            }
            (other, Some(_)) => return Err(invalid(format!("unexpected key '{other}' in '{field}'"))),
        }
    }
    let target = target.ok_or_else(|| invalid("target is required".into()))?;
    match typ {
        "bind" => {
            let source = source.ok_or_else(|| invalid("source is required when specifying a bind mount".into()))?;
            if !source.starts_with('/') {
                return Err(format!(
                    "invalid mount config for type \"bind\": invalid mount path: '{source}' mount path must be absolute"
                ));
            }
            let volume = Volume::checked(s, source, target, read_only)?;
            // docker's: unlike -v, --mount makes no missing source.
            if !volume.source.exists() {
                return Err(format!(
                    "invalid mount config for type \"bind\": bind source path does not exist: {source}"
                ));
            }
            Ok(MountArg::Bind(volume))
        }
        "volume" => {
            let source = source.unwrap_or("");
            if source.starts_with('/') {
                return Err(format!(
                    "invalid mount config for type \"volume\": invalid mount path: '{source}' mount path must not be absolute"
                ));
            }
            let mut volume = Volume::checked(s, source, target, read_only)?;
            volume.no_copy = no_copy;
            Ok(MountArg::Bind(volume))
        }
        "tmpfs" => {
            if source.is_some() {
                return Err(invalid("source is not supported for tmpfs mounts".into()));
            }
            if read_only {
                tmpfs_options.push("ro".into());
            }
            format!("{target}:{}", tmpfs_options.join(",")).parse().map(MountArg::Tmpfs)
        }
        other => Err(invalid(format!("mount type {other:?} is not supported: use bind, volume or tmpfs"))),
    }
}

/// An absolute destination made lexically clean, as Go's `filepath.Clean` (docker's): `.`
/// and empty parts dropped, `..` taking the part before it (never above `/`). So `/x/../proc`
/// is `/proc` for the checks, and `/x/../data` the `/data` another mount may cover.
fn clean_destination(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    format!("/{}", parts.join("/"))
}

/// docker's check across all `-v`: two volumes cannot have one destination.
pub fn check_volumes(volumes: &[Volume]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for v in volumes {
        if !seen.insert(v.destination.as_str()) {
            return Err(format!("Duplicate mount point: {}", v.destination));
        }
    }
    Ok(())
}

/// What `strata run`/`create` asked for on top of the image. Persisted with the container,
/// so a later `start` builds the same spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunOptions {
    /// `--entrypoint`: Some(empty) clears the image's.
    pub entrypoint: Option<Vec<String>>,
    /// CMD from the command line; empty means the image's.
    pub cmd: Vec<String>,
    /// `KEY=VALUE` from `--env-file` then `-e`, already resolved.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    /// Bytes.
    pub memory: Option<i64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub network: NetworkMode,
    /// `-v` and `--mount type=bind`.
    pub volumes: Vec<Volume>,
    pub tty: bool,
    pub interactive: bool,
    /// `--security-opt` as given (what `inspect` shows, as docker does).
    pub security_opt: Vec<String>,
    /// The seccomp profile `security_opt` chose (a profile file is kept here, read at create).
    pub seccomp: super::seccomp::SeccompMode,
    /// `--tmpfs PATH[:OPTIONS]` and `--mount type=tmpfs`.
    pub tmpfs: Vec<Tmpfs>,
    /// `--stop-signal`, over the image's.
    pub stop_signal: Option<String>,
    /// `--health-*` and `--no-healthcheck` (`Test: ["NONE"]`), over the image's HEALTHCHECK.
    pub healthcheck: Option<crate::image::manifest::HealthConfig>,
    /// `--ulimit`, checked.
    pub ulimits: Vec<Ulimit>,
    /// `--add-host HOST:IP`, as (host, ip).
    pub add_hosts: Vec<(String, String)>,
    /// `--dns`: the nameservers of the container's resolv.conf.
    pub dns: Vec<std::net::IpAddr>,
    /// `--label`: the container's labels (over the image's).
    pub labels: std::collections::BTreeMap<String, String>,
    /// `--device`, read from the host.
    pub devices: Vec<Device>,
    /// `--memory-swap`: memory plus swap, bytes; -1 is unlimited swap (default: twice the
    /// memory limit).
    pub memory_swap: Option<i64>,
    /// `--memory-reservation`: the soft limit, bytes.
    pub memory_reservation: Option<i64>,
    /// `--cpu-shares`: the relative weight (cpu.shares).
    pub cpu_shares: Option<u64>,
    /// `--cpu-period` / `--cpu-quota`: the CFS period and quota in µs (quota -1: none).
    pub cpu_period: Option<u64>,
    pub cpu_quota: Option<i64>,
    /// `--cpuset-cpus` / `--cpuset-mems`: the CPUs and memory nodes allowed (`0-2,4`).
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    /// `--stop-timeout`: seconds `stop` waits before SIGKILL (-1: for ever; default 10).
    pub stop_timeout: Option<i64>,
    /// `--shm-size`: the size of /dev/shm, bytes (docker's default 64 MiB).
    pub shm_size: Option<i64>,
    /// `--sysctl KEY=VALUE`: namespaced kernel parameters.
    pub sysctls: std::collections::BTreeMap<String, String>,
    /// `--oom-score-adj`.
    pub oom_score_adj: Option<i32>,
    /// `--group-add`: supplementary groups (names in the image's /etc/group, or gids).
    pub group_add: Vec<String>,
    /// `--pid host`: the host's pid namespace.
    pub pid_host: bool,
    /// `--ipc host`: the host's IPC namespace and /dev/shm.
    pub ipc_host: bool,
    /// `--uts host`: the host's hostname namespace.
    pub uts_host: bool,
    /// `--privileged`: every capability, no seccomp, every host device, nothing masked, /sys
    /// and the cgroup hierarchies writable.
    pub privileged: bool,
    /// `--init`: the host's init binary (catatonit, tini-static, docker-init), run as the
    /// container's PID 1 in front of its command: it reaps orphans and passes signals on.
    pub init: Option<std::path::PathBuf>,
    /// `--restart`: when the container's monitor starts it again after it ends.
    pub restart: RestartPolicy,
    /// `--log-driver` and `--log-opt`: where the container's output is kept.
    pub log: LogConfig,
}

/// docker's `json-file` log driver (with its rotation: `max-size`, `max-file`) or `none`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// `--log-driver none`: the output is not kept (`logs` has nothing to read).
    pub none: bool,
    /// `max-size`: a log file is rotated before it would grow past this many bytes.
    pub max_size: Option<u64>,
    /// `max-file`: how many files (the current one and rotated ones) are kept; docker's
    /// default is 1 (the full file is dropped).
    pub max_file: Option<u32>,
    /// The options as given (what inspect shows, as docker's).
    pub opts: std::collections::BTreeMap<String, String>,
}

/// json-file options docker takes that change nothing here: the log's attributes (labels,
/// env, tag) and `compress` (rotated files are kept as they are).
const IGNORED_LOG_OPTS: &[&str] = &["compress", "labels", "labels-regex", "env", "env-regex", "tag"];

impl LogConfig {
    /// From `--log-driver` and each `--log-opt KEY=VALUE`, with docker's checks and words.
    pub fn parse(driver: &str, opts: &[String]) -> Result<LogConfig, String> {
        let mut config = LogConfig::default();
        match driver {
            "json-file" => {}
            "none" => config.none = true,
            other => return Err(format!("logging driver {other:?} is not supported (json-file or none)")),
        }
        if config.none && !opts.is_empty() {
            return Err("invalid logging opts for driver none".into());
        }
        for opt in opts {
            let (key, value) = opt.split_once('=').unwrap_or((opt, ""));
            match key {
                "max-size" => match parse_decimal_size(value) {
                    Some(size) if size > 0 => config.max_size = Some(size),
                    _ => return Err("max-size must be a positive number".into()),
                },
                "max-file" => match value.parse::<i64>() {
                    Ok(n) if n >= 1 => config.max_file = Some(n.min(u32::MAX as i64) as u32),
                    Ok(_) => return Err("max-file cannot be less than 1".into()),
                    Err(_) => return Err(format!("strconv.Atoi: parsing {value:?}: invalid syntax")),
                },
                k if IGNORED_LOG_OPTS.contains(&k) => {}
                other => return Err(format!("unknown log opt '{other}' for json-file log driver")),
            }
            config.opts.insert(key.to_string(), value.to_string());
        }
        Ok(config)
    }

    /// The files kept: the current one and as many rotated ones.
    pub fn files(&self) -> u32 {
        self.max_file.unwrap_or(1)
    }
}

/// docker's `units.FromHumanSize`: decimal units (`10m` is 10,000,000 bytes), `b` optional,
/// any case, a fraction allowed.
fn parse_decimal_size(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let digits_end = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let number: f64 = t[..digits_end].parse().ok()?;
    let unit = t[digits_end..].trim().trim_end_matches('b');
    let scale = match unit {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        "p" => 1e15,
        _ => return None,
    };
    let bytes = number * scale;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// docker's `--restart` policies. strata has no daemon, so nothing restarts a container
/// after the host reboots: `always` and `unless-stopped` both mean "after every end that is
/// not a stop, kill or rm by hand".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    No,
    Always,
    UnlessStopped,
    /// After a non-zero exit, at most this many times in a row (None: no limit).
    OnFailure(Option<u32>),
}

impl std::str::FromStr for RestartPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, max) = match s.split_once(':') {
            Some((n, m)) => (n, Some(m)),
            None => (s, None),
        };
        match (name, max) {
            ("no" | "", None) => Ok(RestartPolicy::No),
            ("always", None) => Ok(RestartPolicy::Always),
            ("unless-stopped", None) => Ok(RestartPolicy::UnlessStopped),
            ("on-failure", None) => Ok(RestartPolicy::OnFailure(None)),
            ("on-failure", Some(m)) => match m.parse::<i64>() {
                Ok(n) if n >= 0 => Ok(RestartPolicy::OnFailure((n > 0).then_some(n as u32))),
                _ => Err(format!("invalid restart policy: maximum retry count must be a positive integer: {m:?}")),
            },
            ("no" | "always" | "unless-stopped", Some(_)) => Err(format!(
                "invalid restart policy format: maximum retry count cannot be used with restart policy '{name}'"
            )),
            _ => Err(format!("invalid restart policy format: {s:?} (no, always, unless-stopped, on-failure[:N])")),
        }
    }
}

impl RestartPolicy {
    /// docker's `HostConfig.RestartPolicy`: its name and maximum retry count.
    pub fn docker_name(&self) -> (&'static str, u32) {
        match self {
            RestartPolicy::No => ("no", 0),
            RestartPolicy::Always => ("always", 0),
            RestartPolicy::UnlessStopped => ("unless-stopped", 0),
            RestartPolicy::OnFailure(max) => ("on-failure", max.unwrap_or(0)),
        }
    }

    /// Whether a run that ended with `code`, after `restarts` restarts in a row, starts again.
    pub fn restarts(&self, code: i32, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure(max) => code != 0 && max.is_none_or(|m| restarts < m),
        }
    }
}

/// Where `--init`'s binary is mounted in the container (read-only, as podman mounts its own
/// at /run/podman-init).
pub const INIT_DESTINATION: &str = "/run/strata-init";

/// The init binaries `--init` looks for when no `--init-path` is given, in podman's and
/// docker's places: each is static, so it runs in any image.
const INIT_CANDIDATES: &[&str] = &[
    "/usr/libexec/podman/catatonit",
    "/usr/bin/catatonit",
    "/usr/bin/tini-static",
    "/usr/libexec/docker/docker-init",
    "/usr/bin/docker-init",
];

/// The init binary for `--init`: `--init-path` when given (it must be a regular file), else
/// the first of [`INIT_CANDIDATES`] this host has.
pub fn find_init(init_path: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = init_path {
        // Absolute: a later start (or a restart) may run from anywhere.
        return match std::fs::metadata(path) {
            Ok(md) if md.is_file() => {
                std::fs::canonicalize(path).map_err(|e| format!("--init-path {}: {e}", path.display()))
            }
            Ok(_) => Err(format!("--init-path {}: not a regular file", path.display())),
            Err(e) => Err(format!("--init-path {}: {e}", path.display())),
        };
    }
    INIT_CANDIDATES.iter().map(Path::new).find(|p| p.is_file()).map(Path::to_path_buf).ok_or_else(|| {
        "--init: no init binary on this host (catatonit, tini-static or docker-init); install one or give --init-path"
            .to_string()
    })
}

impl RunOptions {
    /// Memory plus swap in force: `--memory-swap`, else docker's default of twice `--memory`
    /// (None without a memory limit).
    pub fn memory_swap_in_force(&self) -> Option<i64> {
        self.memory.map(|limit| self.memory_swap.unwrap_or(limit.saturating_mul(2)))
    }
}

/// A `--ulimit NAME=SOFT[:HARD]` (docker's names; -1 is unlimited).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// The OCI name, `RLIMIT_NOFILE`.
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

const ULIMIT_NAMES: [&str; 15] = [
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

impl std::str::FromStr for Ulimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Ulimit, String> {
        let (name, values) = s.split_once('=').ok_or_else(|| format!("invalid ulimit argument: {s}"))?;
        if !ULIMIT_NAMES.contains(&name) {
            return Err(format!("invalid ulimit type: {name}"));
        }
        let value = |v: &str| match v {
            "-1" | "unlimited" => Ok(u64::MAX),
            v => v.parse::<u64>().map_err(|_| format!("invalid ulimit argument: {s}")),
        };
        let (soft, hard) = match values.split_once(':') {
            Some((soft, hard)) => (value(soft)?, value(hard)?),
            None => (value(values)?, value(values)?),
        };
        if soft > hard {
            return Err(format!("ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"));
        }
        Ok(Ulimit { name: format!("RLIMIT_{}", name.to_ascii_uppercase()), soft, hard })
    }
}

/// `--add-host HOST:IP` (docker also takes `HOST=IP`); the IP may be IPv6, so the host ends
/// at the first separator.
pub fn parse_add_host(s: &str) -> Result<(String, String), String> {
    let invalid = || format!("invalid argument {s:?} for \"--add-host\" flag: bad format for add-host");
    let (host, ip) = s.split_once([':', '=']).ok_or_else(invalid)?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) || ip.parse::<std::net::IpAddr>().is_err() {
        return Err(invalid());
    }
    Ok((host.to_string(), ip.to_string()))
}

/// A `--tmpfs PATH[:OPTIONS]`: docker mounts it `noexec,nosuid,nodev` unless the options say
/// otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tmpfs {
    pub destination: String,
    pub options: Vec<String>,
}

impl std::str::FromStr for Tmpfs {
    type Err = String;

    fn from_str(s: &str) -> Result<Tmpfs, String> {
        let (destination, options) = s.split_once(':').unwrap_or((s, ""));
        if !destination.starts_with('/') || destination.split('/').any(|c| c == "..") {
            return Err(format!("invalid mount path for --tmpfs {s:?}: must be absolute, without .."));
        }
        let mut all: Vec<String> = ["noexec", "nosuid", "nodev"].map(String::from).into();
        for option in options.split(',').filter(|o| !o.is_empty()) {
            // An option undoes its opposite among docker's defaults.
            let opposite = match option {
                "exec" => Some("noexec"),
                "suid" => Some("nosuid"),
                "dev" => Some("nodev"),
                _ => None,
            };
            all.retain(|o| Some(o.as_str()) != opposite);
            all.push(option.to_string());
        }
        let destination = match destination.trim_end_matches('/') {
            "" => "/",
            trimmed => trimmed,
        };
        Ok(Tmpfs { destination: destination.to_string(), options: all })
    }
}

/// A `--device HOST[:CONTAINER][:PERMISSIONS]`: a host device node made in the container and
/// allowed by its device cgroup. The node's type and numbers are the host's when it was given
/// (as docker reads them at create).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub host: String,
    /// The cgroup access: some of `r`, `w`, `m`.
    pub permissions: String,
    /// The node made in the container: at the container's path, root's, with the host node's
    /// type, numbers and mode.
    pub node: oci_spec::runtime::LinuxDevice,
}

/// The device node at `path` on the host (a char or block device, read through `md`, its
/// lstat) as a spec's `linux.devices` entry at the same path, owner and mode; None for anything
/// else. What `--device` and `--privileged` read of the host.
pub fn host_node(path: &Path, md: &std::fs::Metadata) -> Option<oci_spec::runtime::LinuxDevice> {
    use oci_spec::runtime::LinuxDeviceType;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let typ = match md.file_type() {
        t if t.is_char_device() => LinuxDeviceType::C,
        t if t.is_block_device() => LinuxDeviceType::B,
        _ => return None,
    };
    let mut node = oci_spec::runtime::LinuxDevice::default();
    node.set_path(path.to_path_buf());
    node.set_typ(typ);
    node.set_major(libc::major(md.rdev()) as i64);
    node.set_minor(libc::minor(md.rdev()) as i64);
    node.set_file_mode(Some(md.mode() & 0o7777));
    node.set_uid(Some(md.uid()));
    node.set_gid(Some(md.gid()));
    Some(node)
}

/// docker's: one to three of r, w and m, each once.
fn is_device_permissions(s: &str) -> bool {
    !s.is_empty() && s.len() <= 3 && s.chars().all(|c| "rwm".contains(c)) && {
        let mut seen: Vec<char> = s.chars().collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len() == s.len()
    }
}

/// Parse `--device` as docker does (a second field that reads as permissions is one) and read
/// the host node. Errors in docker's words.
pub fn parse_device(arg: &str) -> Result<Device, String> {
    let fields: Vec<&str> = arg.split(':').collect();
    let (host, container, permissions) = match fields[..] {
        [host] => (host, host, "rwm"),
        [host, second] if is_device_permissions(second) => (host, host, second),
        [host, container] => (host, container, "rwm"),
        [host, container, permissions] => {
            if !is_device_permissions(permissions) {
                return Err(format!("invalid device mode: {permissions}"));
            }
            (host, container, permissions)
        }
        _ => return Err(format!("invalid device specification: {arg}")),
    };
    if !container.starts_with('/') || container.split('/').any(|c| c == "..") {
        return Err(format!("{container} is not an absolute path"));
    }
    let gathering =
        |why: String| format!("error gathering device information while adding custom device {host:?}: {why}");
    let md = std::fs::metadata(host).map_err(|e| {
        gathering(match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".into(),
            _ => e.to_string(),
        })
    })?;
    let mut node = host_node(Path::new(container), &md).ok_or_else(|| gathering("not a device node".into()))?;
    // The sandbox makes device nodes in the container's /dev only.
    if !container.starts_with("/dev/") {
        return Err(format!("invalid device path {container}: the container path must be under /dev"));
    }
    node.set_uid(Some(0));
    node.set_gid(Some(0));
    Ok(Device { host: host.to_string(), permissions: permissions.to_string(), node })
}

/// A cpuset list (`0-2,4`) as a set of numbers, or None if it is not one.
pub fn parse_cpuset(list: &str) -> Option<std::collections::BTreeSet<u32>> {
    let mut set = std::collections::BTreeSet::new();
    for part in list.split(',') {
        let (low, high) = part.split_once('-').unwrap_or((part, part));
        let (low, high): (u32, u32) = (low.parse().ok()?, high.parse().ok()?);
        if low > high || high - low > 1 << 16 {
            return None;
        }
        set.extend(low..=high);
    }
    Some(set)
}

/// `--cpuset-cpus`/`--cpuset-mems` checked as docker does: a list, of what `online` (the host's
/// list, e.g. /sys/devices/system/cpu/online) has. `what` is "CPUs" or "Mems".
pub fn check_cpuset(flag: &str, what: &str, list: &str, online: &str) -> Result<(), String> {
    let wanted = parse_cpuset(list).ok_or_else(|| format!("Invalid value {list} for {flag}"))?;
    let available = parse_cpuset(online.trim()).unwrap_or_default();
    if !wanted.is_subset(&available) {
        return Err(format!("Requested {what} are not available - requested {list}, available: {}", online.trim()));
    }
    Ok(())
}

/// `--pid`, `--ipc` or `--uts` (`flag`): whether `mode` asks for the host's namespace. docker's
/// private modes are the default; sharing another container's is not supported.
pub fn parse_namespace_mode(flag: &str, mode: &str) -> Result<bool, String> {
    match (flag, mode) {
        (_, "host") => Ok(true),
        (_, "") | ("ipc", "private" | "shareable") => Ok(false),
        (_, other) => Err(format!("--{flag}: mode {other:?} is not supported: use host (or leave it out)")),
    }
}

/// One `-e` argument: `KEY=VALUE` as is; a bare `KEY` takes the value from `lookup` (the
/// caller's environment) or is dropped when unset, as docker does.
pub fn resolve_env_arg(arg: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, OptionError> {
    if arg.is_empty() || arg.starts_with('=') || arg.contains('\0') {
        return Err(OptionError::InvalidEnv(arg.into()));
    }
    if arg.contains('=') {
        return Ok(Some(arg.to_string()));
    }
    Ok(lookup(arg).map(|v| format!("{arg}={v}")))
}

/// An `--env-file`: one variable a line, `#` comments and blank lines skipped, as docker reads
/// it (a UTF-8 byte order mark is no part of the first name; a name has no whitespace).
pub fn parse_env_file(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>, OptionError> {
    let mut out = Vec::new();
    for line in text.strip_prefix('\u{feff}').unwrap_or(text).lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line.split_once('=').map_or(line, |(name, _)| name);
        if name.contains(char::is_whitespace) {
            return Err(OptionError::EnvWhitespace(name.to_string()));
        }
        if let Some(v) = resolve_env_arg(line, lookup)? {
            out.push(v);
        }
    }
    Ok(out)
}

/// docker's memory sizes: a number with an optional b, k, m, g (t, p) unit, binary multiples,
/// an optional trailing `b`/`ib` (`64m`, `64MB`, `1.5g`, `512MiB`). Zero is docker's "no
/// limit": `None`.
pub fn parse_memory(s: &str) -> Result<Option<i64>, OptionError> {
    let bytes = parse_bytes(s)?;
    if bytes == 0 {
        return Ok(None);
    }
    if bytes < 6 * 1024 * 1024 {
        return Err(OptionError::MemoryTooSmall);
    }
    Ok(Some(bytes))
}

/// A size in docker's (and runc's) units, without docker's rules on top: `64m` is 67108864.
pub fn parse_bytes(s: &str) -> Result<i64, OptionError> {
    let invalid = || OptionError::InvalidMemory(s.into());
    let t = s.trim().to_ascii_lowercase();
    let digits_end = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits_end);
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let unit = unit.trim_start();
    let unit = unit.strip_suffix("ib").or_else(|| unit.strip_suffix('b').filter(|u| !u.is_empty())).unwrap_or(unit);
    let multiplier: f64 = match unit {
        "" | "b" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(invalid()),
    };
    let bytes = number * multiplier;
    if !bytes.is_finite() || bytes > i64::MAX as f64 {
        return Err(invalid());
    }
    Ok(bytes as i64)
}

/// `--cpus`: a number of CPUs; 0 is docker's "no limit" (`None`).
pub fn parse_cpus(s: &str) -> Result<Option<f64>, OptionError> {
    match s.trim().parse::<f64>() {
        Ok(0.0) => Ok(None),
        Ok(c) if c.is_finite() && c > 0.0 => Ok(Some(c)),
        _ => Err(OptionError::InvalidCpus(s.into())),
    }
}

/// CFS period and quota for `--cpus`, as docker computes them.
pub fn cpu_quota(cpus: f64) -> (u64, i64) {
    let period = 100_000u64;
    (period, ((cpus * period as f64).round() as i64).max(1000))
}

#[cfg(test)]
mod tests {
    #[test]
    fn mounts_in_dockers_long_form() {
        let bind = parse_mount("type=bind,src=/tmp,dst=/data/./x/,readonly").unwrap();
        assert_eq!(
            bind,
            MountArg::Bind(Volume {
                source: "/tmp".into(),
                destination: "/data/x".into(),
                read_only: true,
                ..Default::default()
            })
        );
        let MountArg::Bind(named) = parse_mount("type=volume,src=db,dst=/var/db,volume-nocopy").unwrap() else {
            panic!()
        };
        assert_eq!((named.volume.as_deref(), named.no_copy, named.anonymous), (Some("db"), true, false));
        let MountArg::Bind(anon) = parse_mount("target=/cache").unwrap() else { panic!() };
        assert_eq!((anon.volume.as_deref(), anon.anonymous), (Some(""), true));
        let MountArg::Bind(v) = parse_mount("type=bind,source=/tmp,target=/d,ro=false").unwrap() else { panic!() };
        assert!(!v.read_only);
        let MountArg::Tmpfs(t) = parse_mount("type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=1770").unwrap() else {
            panic!()
        };
        assert_eq!(t.destination, "/t");
        assert!(t.options.contains(&"size=1048576".to_string()) && t.options.contains(&"mode=1770".to_string()));
        for (bad, said) in [
            ("type=bind,src=/tmp", "target is required"),
            ("type=bind,dst=/x", "source is required"),
            ("type=nfs,dst=/x", "mount type \"nfs\" is not supported"),
            ("type=volume,src=/abs,dst=/x", "'/abs' mount path must not be absolute"),
            ("type=volume,src=a/b,dst=/x", "invalid characters for a local volume name"),
            ("type=volume,dst=/x,volume-driver=nfs", "volume driver \"nfs\" is not supported"),
            ("type=bind,src=/tmp,dst=/x,nope=1", "unexpected key 'nope'"),
            ("type=tmpfs,dst=/x,tmpfs-mode=9", "invalid value for tmpfs-mode"),
            ("type=bind,src=/no/such/dir,dst=/x", "bind source path does not exist: /no/such/dir"),
            ("type=bind,src=relative,dst=/x", "'relative' mount path must be absolute"),
        ] {
            let e = parse_mount(bad).unwrap_err();
            assert!(e.contains(said), "{bad}: {e}");
        }
    }

    #[test]
    fn cpusets_are_lists_of_what_the_host_has() {
        let set = |l: &str| parse_cpuset(l).map(|s| s.into_iter().collect::<Vec<_>>());
        assert_eq!(set("0-2,4"), Some(vec![0, 1, 2, 4]));
        assert_eq!(set("3"), Some(vec![3]));
        for bad in ["", "x", "2-1", "1,", "-1", "0-99999999"] {
            assert_eq!(set(bad), None, "{bad:?}");
        }
        assert!(check_cpuset("--cpuset-cpus", "CPUs", "0,1", "0-1\n").is_ok());
        let e = check_cpuset("--cpuset-cpus", "CPUs", "1-2", "0-1\n").unwrap_err();
        assert_eq!(e, "Requested CPUs are not available - requested 1-2, available: 0-1");
    }

    use super::*;

    #[test]
    fn env_arguments_and_files() {
        let lookup = |k: &str| (k == "FROM_HOST").then(|| "yes".to_string());
        assert_eq!(resolve_env_arg("A=b=c", &lookup).unwrap(), Some("A=b=c".into()));
        assert_eq!(resolve_env_arg("FROM_HOST", &lookup).unwrap(), Some("FROM_HOST=yes".into()));
        assert_eq!(resolve_env_arg("UNSET", &lookup).unwrap(), None);
        assert!(resolve_env_arg("=x", &lookup).is_err());
        let file = "\u{feff}# comment\n\nA=1\n  B=two words\nFROM_HOST\nUNSET\n";
        assert_eq!(parse_env_file(file, &lookup).unwrap(), ["A=1", "B=two words", "FROM_HOST=yes"]);
        assert_eq!(parse_env_file("\u{feff}C=3\n", &lookup).unwrap(), ["C=3"], "the BOM is no part of the name");
        for bad in ["A B=2\n", "export C=3\n", "SPACED NAME\n"] {
            let e = parse_env_file(bad, &lookup).unwrap_err().to_string();
            assert!(
                e.starts_with("poorly formatted environment: variable '") && e.ends_with("' contains whitespaces"),
                "{e}"
            );
        }
    }

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("64m").unwrap(), Some(64 << 20));
        assert_eq!(parse_memory("64MB").unwrap(), Some(64 << 20));
        assert_eq!(parse_memory("64MiB").unwrap(), Some(64 << 20));
        assert_eq!(parse_memory("1g").unwrap(), Some(1 << 30));
        assert_eq!(parse_memory("1.5G").unwrap(), Some(3 << 29));
        assert_eq!(parse_memory("10485760").unwrap(), Some(10 << 20));
        assert_eq!(parse_memory("8192k").unwrap(), Some(8 << 20));
        assert_eq!(parse_memory("0").unwrap(), None, "docker's \"no limit\"");
        assert_eq!(parse_memory("0m").unwrap(), None);
        assert!(matches!(parse_memory("1k"), Err(OptionError::MemoryTooSmall)));
        for bad in ["", "m", "12x", "-5m", "1.2.3m"] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_cpus("0").unwrap(), None, "docker's no limit");
        assert!(parse_cpus("-1").is_err() && parse_cpus("abc").is_err() && parse_cpus("NaN").is_err());
        assert_eq!(cpu_quota(0.5), (100_000, 50_000));
    }

    #[test]
    fn restart_policies_as_docker_reads_them() {
        let p = |s: &str| s.parse::<RestartPolicy>();
        assert_eq!(p("no"), Ok(RestartPolicy::No));
        assert_eq!(p("unless-stopped"), Ok(RestartPolicy::UnlessStopped));
        assert_eq!(p("on-failure:5"), Ok(RestartPolicy::OnFailure(Some(5))));
        assert_eq!(p("on-failure:0"), Ok(RestartPolicy::OnFailure(None)), "0: no limit, as docker");
        for bad in ["on-failure:-1", "on-failure:x", "always:2", "sometimes"] {
            assert!(p(bad).is_err(), "{bad}");
        }
        assert!(!RestartPolicy::OnFailure(None).restarts(0, 0));
        assert!(RestartPolicy::OnFailure(Some(2)).restarts(1, 1));
        assert!(!RestartPolicy::OnFailure(Some(2)).restarts(1, 2));
        assert!(RestartPolicy::Always.restarts(0, 1000));
        assert!(!RestartPolicy::No.restarts(1, 0));
        assert_eq!(RestartPolicy::OnFailure(Some(3)).docker_name(), ("on-failure", 3));
    }

    #[test]
    fn volume_syntax() {
        let v: Volume = "/host:/ctr:ro".parse().unwrap();
        assert_eq!(
            v,
            Volume { source: "/host".into(), destination: "/ctr".into(), read_only: true, ..Default::default() }
        );
        // A source that is not a path names a volume; a lone destination is an anonymous one.
        let v: Volume = "data:/ctr:ro,nocopy".parse().unwrap();
        assert_eq!((v.volume.as_deref(), v.read_only, v.no_copy, v.anonymous), (Some("data"), true, true, false));
        assert_eq!(v.source, PathBuf::new(), "filled in at create");
        let v: Volume = "/ctr".parse().unwrap();
        assert_eq!((v.volume.as_deref(), v.anonymous, v.destination.as_str()), (Some(""), true, "/ctr"));
        assert!("/a:rel".parse::<Volume>().is_err());
        assert!("/a:/b:xx".parse::<Volume>().is_err());
        assert!("/a:/b:nocopy".parse::<Volume>().is_err(), "nocopy is for volumes");
        assert!("rel".parse::<Volume>().is_err());
        assert!("a/b:/x".parse::<Volume>().unwrap_err().contains("invalid characters for a local volume name"));
        // docker's SELinux modes mean nothing here; combined with ro they still make it ro.
        let v: Volume = "/host:/ctr/./data/:ro,Z".parse().unwrap();
        assert_eq!((v.destination.as_str(), v.read_only), ("/ctr/data", true));
        assert!(!"/host:/ctr:z".parse::<Volume>().unwrap().read_only);
        for (bad, says) in [
            ("/a:/", "destination can't be '/'"),
            ("/a://", "destination can't be '/'"),
            ("/a:/proc", "/proc cannot"),
            ("/a:/proc/sys", "/proc/sys cannot"),
            ("/a:/x/../proc", "/proc cannot"),
            ("/a:/x/../..", "destination can't be '/'"),
        ] {
            let e = bad.parse::<Volume>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let two = |a: &str, b: &str| check_volumes(&[a.parse().unwrap(), b.parse().unwrap()]);
        assert_eq!(two("/a:/data", "/b:/data/"), Err("Duplicate mount point: /data".to_string()));
        assert_eq!(two("/a:/data", "/b:/other"), Ok(()));
        assert_eq!(two("/a:/data", "/b:/x/../data"), Err("Duplicate mount point: /data".to_string()));
        // An image's VOLUME: a path and nothing else, cleaned the same way.
        let v = Volume::from_image("/x/../data").unwrap();
        assert_eq!((v.destination.as_str(), v.volume.as_deref()), ("/data", Some("")));
        assert!(Volume::from_image("/x/../proc").unwrap_err().contains("/proc cannot"));
        assert_eq!(Volume::from_image("/tmp/h:/host").unwrap().destination, "/tmp/h:/host");
    }
}
