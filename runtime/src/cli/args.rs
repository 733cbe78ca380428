//! clap definitions for `strata`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use strata::snapshot::rootfs::Driver;

#[derive(Parser, Debug)]
#[command(name = "strata", version, about = "Run OCI images as native Linux containers or WebAssembly modules")]
pub struct Cli {
    /// Where strata keeps images, snapshots and containers
    #[arg(long, global = true, env = "STRATA_ROOT", default_value = strata::root::DEFAULT_ROOT)]
    pub root: PathBuf,
    /// How root filesystems are assembled: overlay (default) or vfs (copies; no overlayfs needed)
    #[arg(long, global = true, env = "STRATA_STORAGE_DRIVER", default_value = "overlay")]
    pub storage_driver: Driver,
    /// Log level (error, warn, info, debug, trace)
    #[arg(long, global = true, env = "STRATA_LOG", default_value = "warn")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// Log in to a registry
    Login(LoginArgs),
    /// Log out from a registry
    Logout(LogoutArgs),
    /// List images
    Images(ImagesArgs),
    /// Show an image's manifest, config, layers and classification (JSON)
    Inspect(InspectArgs),
    /// Give an image another name
    Tag(TagArgs),
    /// Remove images
    Rmi(RmiArgs),
    /// Load images from a tar archive (OCI or docker format)
    Load(LoadArgs),
    /// Save images to an OCI tar archive
    Save(SaveArgs),
    /// Create an image from a root filesystem tarball
    Import(ImportArgs),
    /// Show an image's history (what made each layer)
    History(HistoryArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Create and start a container from an image
    // docker's -h is --hostname here: --help only.
    #[command(disable_help_flag = true)]
    Run(RunArgs),
    /// Create a container from an image without starting it
    // docker's -h is --hostname here: --help only.
    #[command(disable_help_flag = true)]
    Create(CreateArgs),
    /// Start created or stopped containers
    Start(StartArgs),
    /// List containers
    Ps(PsArgs),
    /// Show a container's output
    Logs(LogsArgs),
    /// Stop running containers (the stop signal, then SIGKILL after a timeout)
    Stop(StopArgs),
    /// Stop containers (if running) and start them again
    Restart(StopArgs),
    /// Give a container another name
    Rename(RenameArgs),
    /// Show a container's processes (the host's ps, default -ef)
    Top(TopArgs),
    /// Show containers' resource use (CPU, memory, block I/O, pids), live
    Stats(StatsArgs),
    /// Send a signal to running containers
    Kill(KillArgs),
    /// Pause every process of running containers
    Pause(ContainersArgs),
    /// Resume every process of paused containers
    Unpause(ContainersArgs),
    /// Change containers' resource limits and restart policy
    Update(UpdateArgs),
    /// Remove containers
    Rm(RmArgs),
    /// Wait for containers to stop and print their exit codes
    Wait(ContainersArgs),
    /// Run a command in a running container
    Exec(ExecArgs),
    /// Copy files between a container and the host
    Cp(CpArgs),
    /// List what a container added (A), changed (C) and deleted (D) in its filesystem
    Diff(DiffArgs),
    /// Write a container's filesystem as a tar archive
    Export(ExportArgs),
    /// Create an image from a container's changes
    Commit(CommitArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Disk use, pruning, and what strata runs on
    #[command(subcommand)]
    System(SystemCommand),
    /// Show strata's version
    Version(VersionArgs),
    /// Show what strata holds and runs on (containers, images, storage, cgroups, host)
    Info(InfoArgs),
    /// The per-container monitor (started by run/start; not for people)
    #[command(name = "container-monitor", hide = true)]
    ContainerMonitor(MonitorArgs),
    /// Compile one wasm module, stdin to stdout, as nobody (started by pull/load; not for people)
    #[command(name = "wasm-precompile", hide = true)]
    WasmPrecompile(WasmPrecompileArgs),
}

#[derive(Subcommand, Debug)]
pub enum ContainerCommand {
    /// List containers
    #[command(alias = "ps", alias = "list")]
    Ls(PsArgs),
    /// Create and start a container from an image
    // docker's -h is --hostname here: --help only.
    #[command(disable_help_flag = true)]
    Run(RunArgs),
    /// Create a container from an image without starting it
    // docker's -h is --hostname here: --help only.
    #[command(disable_help_flag = true)]
    Create(CreateArgs),
    /// Start created or stopped containers
    Start(StartArgs),
    /// Show a container's output
    Logs(LogsArgs),
    /// Stop running containers (the stop signal, then SIGKILL after a timeout)
    Stop(StopArgs),
    /// Stop containers (if running) and start them again
    Restart(StopArgs),
    /// Give a container another name
    Rename(RenameArgs),
    /// Show a container's processes (the host's ps, default -ef)
    Top(TopArgs),
    /// Show containers' resource use (CPU, memory, block I/O, pids), live
    Stats(StatsArgs),
    /// Send a signal to running containers
    Kill(KillArgs),
    /// Pause every process of running containers
    Pause(ContainersArgs),
    /// Resume every process of paused containers
    Unpause(ContainersArgs),
    /// Change containers' resource limits and restart policy
    Update(UpdateArgs),
    /// Remove containers
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Wait for containers to stop and print their exit codes
    Wait(ContainersArgs),
    /// Run a command in a running container
    Exec(ExecArgs),
    /// Show containers' configuration and state (JSON)
    Inspect(InspectArgs),
    /// Remove all stopped containers
    Prune(ContainerPruneArgs),
    /// Copy files between a container and the host
    Cp(CpArgs),
    /// List what a container added (A), changed (C) and deleted (D) in its filesystem
    Diff(DiffArgs),
    /// Write a container's filesystem as a tar archive
    Export(ExportArgs),
    /// Create an image from a container's changes
    Commit(CommitArgs),
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Output format: table (default), json (one JSON object per line), a Go template
    /// ('{{.CreatedBy}}'), or `table` and a template (columns with titles)
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't truncate IDs and commands
    #[arg(long)]
    pub no_trunc: bool,
    pub image: String,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    pub container: String,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Write to a file instead of standard output
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Author (e.g. "Jane Doe <jane@example.com>")
    #[arg(short, long)]
    pub author: Option<String>,
    /// Apply a Dockerfile instruction to the image (ENTRYPOINT, CMD, ENV, WORKDIR, USER, LABEL, VOLUME)
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    pub message: Option<String>,
    /// Pause a running container while its changes are read (--pause=false not to)
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub pause: bool,
    pub container: String,
    /// The new image's name, REPOSITORY[:TAG] (untagged if not given)
    pub repository: Option<String>,
}

#[derive(Args, Debug)]
pub struct CpArgs {
    /// Keep owners (uid and gid) as they are
    #[arg(short, long)]
    pub archive: bool,
    /// Copy what a source symlink points to, not the link
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// CONTAINER:SRC_PATH or a host path
    pub source: String,
    /// CONTAINER:DEST_PATH or a host path
    pub destination: String,
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// List images
    #[command(alias = "list")]
    Ls(ImagesArgs),
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// Show an image's manifest, config, layers and classification (JSON)
    Inspect(InspectArgs),
    /// Give an image another name
    Tag(TagArgs),
    /// Remove images
    #[command(alias = "remove")]
    Rm(RmiArgs),
    /// Remove unused blobs, snapshots and leftovers of interrupted commands
    Prune(PruneArgs),
    /// Load images from a tar archive (OCI or docker format)
    Load(LoadArgs),
    /// Save images to an OCI tar archive
    Save(SaveArgs),
    /// Create an image from a root filesystem tarball
    Import(ImportArgs),
    /// Show an image's history (what made each layer)
    History(HistoryArgs),
    /// Assemble an image's root filesystem (overlay of its layers) and print its path
    Mount(MountArgs),
    /// Undo `image mount`
    #[command(alias = "umount")]
    Unmount(MountArgs),
}

#[derive(Args, Debug, Clone)]
pub struct TransportArgs {
    /// Require HTTPS and verify certificates (default: true, except loopback and insecure registries)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
    /// Credentials file (default: $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json, ~/.docker/config.json)
    #[arg(long)]
    pub authfile: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Platform os/arch[/variant] to choose from a multi-platform image (e.g. wasi/wasm)
    #[arg(long)]
    pub platform: Option<String>,
    /// Print only the image reference
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't compile a wasm image's modules into the compiled-code cache now (the first run
    /// compiles them instead)
    #[arg(long)]
    pub no_precompile: bool,
    #[command(flatten)]
    pub transport: TransportArgs,
    /// Image reference
    pub image: String,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Print only the image reference (no progress)
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub transport: TransportArgs,
    /// Local image
    pub image: String,
    /// Destination reference (default: the image's own name)
    pub destination: Option<String>,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// User name
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (visible in the process list: prefer --password-stdin)
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub transport: TransportArgs,
    /// Registry host (default: docker.io)
    pub registry: Option<String>,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Credentials file (default: $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json, ~/.docker/config.json)
    #[arg(long)]
    pub authfile: Option<PathBuf>,
    /// Registry host (default: docker.io)
    pub registry: Option<String>,
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Output format: table (default), json (one JSON object per line), a Go template
    /// ('{{.ID}}'), or `table` and a template (columns with titles)
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show all images (as docker; untagged ones are always listed, strata has no intermediate images)
    #[arg(short, long)]
    pub all: bool,
    /// Don't truncate IDs
    #[arg(long)]
    pub no_trunc: bool,
    /// Only images that match KEY=VALUE: dangling=true|false, reference=PATTERN (a glob over
    /// NAME[:TAG]), label=KEY[=VALUE], before=IMAGE, since=IMAGE
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    /// Only images of this repository (optionally :tag)
    pub reference: Option<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Only look for this kind of object: container or image
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Print this Go template over each object ('{{.State.Status}}') instead of the JSON
    #[arg(short, long)]
    pub format: Option<String>,
    /// Add a container's sizes: SizeRw (what it wrote) and SizeRootFs (with its image)
    #[arg(short, long)]
    pub size: bool,
    /// Containers or images (by name or ID)
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Remove even if the image has several names or is in use
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Also remove untagged images, and compiled wasm no image holds even if used this week
    #[arg(short, long)]
    pub all: bool,
    /// Only what matches: until=TIME (created before it: RFC 3339, Unix seconds, or a duration ago), label=KEY[=VALUE], label!=KEY[=VALUE]
    #[arg(long = "filter", value_name = "FILTER")]
    pub filter: Vec<String>,
    /// Don't ask (strata never asks; accepted for docker compatibility)
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Archive to read (default: stdin)
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    /// Print only the loaded images (no count of precompiled wasm modules)
    #[arg(short, long)]
    pub quiet: bool,
    /// Platform to load from a multi-platform archive
    #[arg(long)]
    pub platform: Option<String>,
    /// Don't compile a wasm image's modules into the compiled-code cache now (the first run
    /// compiles them instead)
    #[arg(long)]
    pub no_precompile: bool,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Archive to write (default: stdout)
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct MountArgs {
    pub image: String,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Apply a Dockerfile instruction (ENTRYPOINT, CMD, ENV, WORKDIR, USER, LABEL, VOLUME)
    #[arg(short, long)]
    pub change: Vec<String>,
    /// Platform os/arch[/variant] of the new image (default: this machine's; wasi/wasm for wasm)
    #[arg(long)]
    pub platform: Option<String>,
    /// Set an annotation on the image manifest (KEY=VALUE)
    #[arg(long)]
    pub annotation: Vec<String>,
    /// Tarball to import, or - for stdin
    pub file: String,
    /// Name for the new image
    pub reference: Option<String>,
}

/// The limits `run`, `create` and `update` share.
#[derive(Args, Debug, Clone, Default)]
pub struct ResourceArgs {
    /// Memory limit (units b, k, m, g), e.g. 64m
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Memory plus swap (units b, k, m, g); -1 for unlimited swap (default: twice --memory)
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Memory soft limit (units b, k, m, g)
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Number of CPUs (e.g. 0.5)
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    /// Limit CPU CFS (Completely Fair Scheduler) period, in microseconds
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota, in microseconds (-1: none)
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes (-1: unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
}

/// What `run` and `create` share: how to make the container.
#[derive(Args, Debug, Clone)]
pub struct ContainerSpecArgs {
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to take it from this environment)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file (one KEY=VALUE a line)
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Override the image's entrypoint ("" clears it)
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// User to run as: name|uid[:group|gid]
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Container host name (default: the short container ID)
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    #[command(flatten)]
    pub resources: ResourceArgs,
    /// Mount the container's root filesystem read-only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Add a Linux capability (or ALL)
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop a Linux capability (or ALL)
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Security options: seccomp=unconfined, seccomp=builtin (docker's default profile) or seccomp=PROFILE.json
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// A mount in docker's long form: type=bind,source=SRC,target=DST[,readonly] or type=tmpfs,target=DST[,tmpfs-size=64m][,tmpfs-mode=1777]
    #[arg(long = "mount", value_name = "type=...,target=...")]
    pub mount: Vec<String>,
    /// Mount a tmpfs at PATH (options after a colon: size=64m,mode=1777,...)
    #[arg(long, value_name = "PATH[:OPTIONS]")]
    pub tmpfs: Vec<String>,
    /// Seconds `stop` waits before it kills the container (default 10; -1: no limit)
    #[arg(long = "stop-timeout", allow_hyphen_values = true)]
    pub stop_timeout: Option<i64>,
    /// The signal `stop` sends first (default: the image's, else SIGTERM)
    #[arg(long = "stop-signal", value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Command to run to check health (run by /bin/sh -c in the container)
    #[arg(long = "health-cmd", value_name = "COMMAND")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 30s)
    #[arg(long = "health-interval", value_name = "DURATION", allow_hyphen_values = true)]
    pub health_interval: Option<String>,
    /// Consecutive failures needed to report unhealthy (default 3)
    #[arg(long = "health-retries", allow_hyphen_values = true)]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-period", value_name = "DURATION", allow_hyphen_values = true)]
    pub health_start_period: Option<String>,
    /// Time between running the check during the start period (ms|s|m|h) (default 5s)
    #[arg(long = "health-start-interval", value_name = "DURATION", allow_hyphen_values = true)]
    pub health_start_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 30s)
    #[arg(long = "health-timeout", value_name = "DURATION", allow_hyphen_values = true)]
    pub health_timeout: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// A resource limit: NAME=SOFT[:HARD] (nofile, nproc, core, memlock, stack, ...)
    #[arg(long, value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// Add a line to /etc/hosts: HOST:IP
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_host: Vec<String>,
    /// A DNS server for /etc/resolv.conf (instead of the host's)
    #[arg(long, value_name = "IP")]
    pub dns: Vec<String>,
    /// Size of /dev/shm (units b, k, m, g; default 64m)
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// A namespaced kernel parameter: KEY=VALUE (net.*, kernel.shm*, kernel.msg*, fs.mqueue.*, ...)
    #[arg(long = "sysctl", value_name = "KEY=VALUE")]
    pub sysctl: Vec<String>,
    /// The container process's OOM score adjustment (-1000 to 1000)
    #[arg(long = "oom-score-adj", allow_hyphen_values = true)]
    pub oom_score_adj: Option<i32>,
    /// Add a supplementary group (a name in the image's /etc/group, or a gid)
    #[arg(long = "group-add", value_name = "GROUP")]
    pub group_add: Vec<String>,
    /// Every capability, no seccomp, every host device, nothing masked, /sys writable
    #[arg(long)]
    pub privileged: bool,
    /// Restart the container when it ends: no, always, unless-stopped, on-failure[:N]
    #[arg(long, default_value = "no", value_name = "POLICY")]
    pub restart: String,
    /// Run an init (catatonit, tini) as PID 1 that passes signals on and reaps orphans
    #[arg(long)]
    pub init: bool,
    /// The init binary --init runs (default: the host's catatonit, tini-static or docker-init)
    #[arg(long = "init-path", value_name = "PATH")]
    pub init_path: Option<std::path::PathBuf>,
    /// Add a host device: HOST[:CONTAINER][:PERMISSIONS] (permissions: some of r, w, m; default rwm)
    #[arg(long, value_name = "HOST[:CONTAINER][:PERMS]")]
    pub device: Vec<String>,
    /// Set a label on the container: KEY=VALUE (or KEY, empty)
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Read labels from a file (one KEY=VALUE a line; # comments and blank lines skipped)
    #[arg(long = "label-file", value_name = "FILE")]
    pub label_file: Vec<PathBuf>,
    /// PID namespace: host shares the host's (default: the container's own)
    #[arg(long, value_name = "MODE", default_value = "")]
    pub pid: String,
    /// IPC namespace: host shares the host's, and its /dev/shm (default: the container's own)
    #[arg(long, value_name = "MODE", default_value = "")]
    pub ipc: String,
    /// UTS (hostname) namespace: host shares the host's (default: the container's own)
    #[arg(long, value_name = "MODE", default_value = "")]
    pub uts: String,
    /// Network: none (a new namespace with only lo, the default) or host
    #[arg(long, alias = "net", default_value = "none")]
    pub network: String,
    /// Platform os/arch of the image to pull if it is missing (e.g. linux/amd64, wasi/wasm)
    #[arg(long)]
    pub platform: Option<String>,
    /// Pull the image before creating the container: always, missing, never
    #[arg(long, default_value = "missing", value_name = "POLICY")]
    pub pull: String,
    /// Write the container's ID to this file (which must not exist)
    #[arg(long, value_name = "FILE")]
    pub cidfile: Option<PathBuf>,
    /// Where the output is kept: json-file (default) or none
    #[arg(long = "log-driver", default_value = "json-file", value_name = "DRIVER")]
    pub log_driver: String,
    /// json-file's options: max-size=SIZE (rotate past it), max-file=N (files kept)
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    pub log_opt: Vec<String>,
    /// Bind mount a host path: SRC:DST[:ro]
    #[arg(short = 'v', long = "volume", value_name = "SRC:DST[:ro]")]
    pub volumes: Vec<String>,
    /// Keep stdin open (and attached when running in the foreground)
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    pub tty: bool,
    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    #[command(flatten)]
    pub transport: TransportArgs,
    /// Image to run, then the command and its arguments (default: the image's)
    #[arg(
        value_names = ["IMAGE", "COMMAND"],
        num_args = 1..,
        required = true,
        trailing_var_arg = true
    )]
    pub image_and_command: Vec<String>,
}

/// One positional for the image and the command, as docker's: everything after the image is
/// the container's, even `--help` or a flag of ours (an image and a command as two positionals
/// let clap take a first argument such as `-v` or `--help` for strata's).
impl ContainerSpecArgs {
    pub fn image(&self) -> &str {
        &self.image_and_command[0]
    }

    pub fn command(&self) -> &[String] {
        &self.image_and_command[1..]
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Run in the background and print the container ID
    #[arg(short, long)]
    pub detach: bool,
    #[command(flatten)]
    pub spec: ContainerSpecArgs,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub spec: ContainerSpecArgs,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach stdout/stderr and exit with the container's exit code
    #[arg(short, long)]
    pub attach: bool,
    /// Attach stdin
    #[arg(short, long)]
    pub interactive: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default: only running ones)
    #[arg(short, long)]
    pub all: bool,
    /// Only show container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: table (default), json (one JSON object per line), a Go template
    /// ('{{.ID}}'), or `table` and a template (columns with titles)
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Don't truncate IDs and commands
    #[arg(long)]
    pub no_trunc: bool,
    /// Only containers that match KEY=VALUE: id, name, status, exited, ancestor, kind (wasm or
    /// native); a key given twice matches either value
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    /// Only the N most recently created containers (of all states)
    #[arg(short = 'n', long = "last")]
    pub last: Option<usize>,
    /// Only the most recently created container (of all states)
    #[arg(short, long)]
    pub latest: bool,
    /// Show each container's size: what it wrote, and with its image ("virtual")
    #[arg(short, long)]
    pub size: bool,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow the output until the container stops
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines ("all" for everything)
    #[arg(short = 'n', long, default_value = "all", allow_hyphen_values = true)]
    pub tail: String,
    /// Prefix each line with its timestamp
    #[arg(short, long)]
    pub timestamps: bool,
    /// Only lines since a time: RFC 3339, Unix seconds, or a duration ago (10m, 1h30m)
    #[arg(long)]
    pub since: Option<String>,
    /// Only lines before a time (as --since)
    #[arg(long)]
    pub until: Option<String>,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait for the container to stop before killing it
    /// (default: the container's --stop-timeout, else 10; -1 waits for as long as it takes)
    #[arg(short = 't', long = "time", alias = "timeout", allow_hyphen_values = true)]
    pub time: Option<i64>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct VersionArgs {
    /// Print as json or through a Go template
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Print as json or through a Go template ('{{.CgroupVersion}}')
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// All containers (default: the running ones)
    #[arg(short, long)]
    pub all: bool,
    /// Print one sample and exit (default: refresh every second)
    #[arg(long)]
    pub no_stream: bool,
    /// Output format: table (default), json (one JSON object per line) or a Go template
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Don't truncate IDs
    #[arg(long)]
    pub no_trunc: bool,
    /// Containers (name or ID; default: the running ones)
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct TopArgs {
    /// The container (name or ID)
    pub container: String,
    /// Options for ps (default: -ef)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_options: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RenameArgs {
    /// The container (name or ID)
    pub container: String,
    /// Its new name
    pub new_name: String,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal to send (name or number)
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Kill and remove running containers
    #[arg(short, long)]
    pub force: bool,
    /// Remove the container's anonymous volumes (`-v /dst`, an image's VOLUME) too
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ContainersArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub resources: ResourceArgs,
    /// Restart policy from now on: no, always, unless-stopped, on-failure[:N]
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ContainerPruneArgs {
    /// Only what matches: until=TIME (created before it: RFC 3339, Unix seconds, or a duration ago), label=KEY[=VALUE], label!=KEY[=VALUE]
    #[arg(long = "filter", value_name = "FILTER")]
    pub filter: Vec<String>,
    /// Don't ask (strata never asks; accepted for docker compatibility)
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct WasmPrecompileArgs {}

#[derive(Subcommand, Debug)]
pub enum SystemCommand {
    /// Show the disk space images, containers, volumes and compiled wasm take
    Df(SystemDfArgs),
    /// Remove stopped containers, unused image data (with -a, untagged images), and with
    /// --volumes unused anonymous volumes
    Prune(SystemPruneArgs),
    /// Show what strata holds and runs on (containers, images, storage, cgroups, host)
    Info(InfoArgs),
}

#[derive(Args, Debug)]
pub struct SystemDfArgs {
    /// Output format: table (default), json, a Go template, or `table` and a template
    #[arg(long, default_value = "table")]
    pub format: String,
}

#[derive(Args, Debug)]
pub struct SystemPruneArgs {
    /// Only what matches: until=TIME (created before it: RFC 3339, Unix seconds, or a duration ago), label=KEY[=VALUE], label!=KEY[=VALUE]
    #[arg(long = "filter", value_name = "FILTER")]
    pub filter: Vec<String>,
    /// Also untagged images, and compiled wasm no image holds even if used this week
    #[arg(short, long)]
    pub all: bool,
    /// Also unused anonymous volumes
    #[arg(long)]
    pub volumes: bool,
    /// Don't ask (strata never asks; accepted for docker compatibility)
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// Create a volume (a new one has a random name unless given one)
    Create(VolumeCreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(VolumeLsArgs),
    /// Show volumes' details (JSON)
    Inspect(VolumeInspectArgs),
    /// Remove volumes no container uses
    #[command(alias = "remove")]
    Rm(VolumeRmArgs),
    /// Remove unused anonymous volumes (with -a, every unused volume)
    Prune(VolumePruneArgs),
}

#[derive(Args, Debug)]
pub struct VolumeCreateArgs {
    /// Set a label on the volume: KEY=VALUE
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// The driver: only local
    #[arg(short, long, default_value = "local")]
    pub driver: String,
    /// Volume name (default: a random 64-hex one)
    pub name: Option<String>,
}

#[derive(Args, Debug)]
pub struct VolumeLsArgs {
    /// Only show volume names
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter: dangling=true|false, name=PART, label=KEY[=VALUE]
    #[arg(short, long, value_name = "FILTER")]
    pub filter: Vec<String>,
    /// Output format: table (default), json, a Go template ('{{.Name}}'), or `table` and a template
    #[arg(long, default_value = "table")]
    pub format: String,
}

#[derive(Args, Debug)]
pub struct VolumeInspectArgs {
    /// Print this Go template over each volume ('{{.Mountpoint}}') instead of the JSON
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct VolumeRmArgs {
    /// Don't fail for a volume that does not exist
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct VolumePruneArgs {
    /// Only what matches: label=KEY[=VALUE], label!=KEY[=VALUE], all=true (named volumes too)
    #[arg(long = "filter", value_name = "FILTER")]
    pub filter: Vec<String>,
    /// Every unused volume, named ones too
    #[arg(short, long)]
    pub all: bool,
    /// Don't ask (strata never asks; accepted for docker compatibility)
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct MonitorArgs {
    pub id: String,
    #[arg(long)]
    pub status_fd: Option<i32>,
    #[arg(long)]
    pub stdout_fd: Option<i32>,
    #[arg(long)]
    pub stderr_fd: Option<i32>,
    #[arg(long)]
    pub stdin_fd: Option<i32>,
    #[arg(long)]
    pub control_fd: Option<i32>,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Keep stdin open and attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    pub tty: bool,
    /// Run in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to take it from this environment)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// User to run as: name|uid[:group|gid]
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// The container, then the command and its arguments
    #[arg(
        value_names = ["CONTAINER", "COMMAND"],
        num_args = 2..,
        required = true,
        trailing_var_arg = true
    )]
    pub container_and_command: Vec<String>,
}

/// As [`ContainerSpecArgs`]: everything after the container is the command's.
impl ExecArgs {
    pub fn container(&self) -> &str {
        &self.container_and_command[0]
    }

    pub fn command(&self) -> &[String] {
        &self.container_and_command[1..]
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every command `--help` lists says what it does, and `strata image X` / `strata
    /// container X` say what the top-level `strata X` says (not an argument struct's doc).
    #[test]
    fn every_command_says_what_it_does() {
        let cli = Cli::command();
        let about = |c: &clap::Command| c.get_about().map(|a| a.to_string());
        let mut missing = Vec::new();
        for group in cli.get_subcommands().filter(|c| !c.is_hide_set()) {
            if about(group).is_none() {
                missing.push(group.get_name().to_string());
            }
            for sub in group.get_subcommands().filter(|c| !c.is_hide_set()) {
                let name = format!("{} {}", group.get_name(), sub.get_name());
                // `strata rm` and `strata inspect` are container rm and image inspect.
                let not_twins = [("image", "rm"), ("image", "inspect"), ("container", "inspect")];
                let mirrors = ["image", "container"].contains(&group.get_name());
                let twin = cli
                    .find_subcommand(sub.get_name())
                    .filter(|_| mirrors && !not_twins.contains(&(group.get_name(), sub.get_name())));
                match (about(sub), twin) {
                    (None, _) => missing.push(name),
                    (Some(text), Some(top)) => assert_eq!(Some(text), about(top), "{name}"),
                    (Some(_), None) => {}
                }
            }
        }
        assert!(missing.is_empty(), "commands without a description: {missing:?}");
    }

    /// Every option of every command has a line of help.
    #[test]
    fn every_option_says_what_it_does() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments().filter(|a| !a.is_positional() && !a.is_hide_set()) {
                if arg.get_help().is_none() {
                    missing.push(format!("{path} --{}", arg.get_long().unwrap_or(arg.get_id().as_str())));
                }
            }
            for sub in cmd.get_subcommands().filter(|c| !c.is_hide_set()) {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "strata", &mut missing);
        assert!(missing.is_empty(), "options without help: {missing:?}");
    }
}
