//! clap definitions for `strata-oci`, the runc command line.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "strata-oci",
    // runc's shape: `runc version X` and the spec version on the next line.
    version = concat!("version ", env!("CARGO_PKG_VERSION"), "\nspec: 1.0.2"),
    disable_version_flag = true,
    about = "OCI runtime with runc's command line (for podman, containerd and scripts)"
)]
pub struct Cli {
    /// Print the version (runc's -v and --version)
    #[arg(short = 'v', long, action = clap::ArgAction::Version)]
    pub version: Option<bool>,
    /// Where container state lives
    #[arg(long, global = true, default_value = "/run/strata")]
    pub root: PathBuf,
    /// Write logs (and errors) to this file instead of stderr
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format: text or json
    #[arg(long, global = true, default_value = "text")]
    pub log_format: String,
    /// Debug logging
    #[arg(long, global = true)]
    pub debug: bool,
    /// cgroupsPath is systemd's slice:prefix:name (made where systemd would put the scope, through cgroupfs)
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Ignored (accepted for runc compatibility)
    #[arg(long, global = true, hide = true)]
    pub criu: Option<String>,
    /// Ignored (accepted for runc compatibility)
    #[arg(long, global = true, hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container (its init waits for `start`)
    Create(CreateArgs),
    /// Start a created container
    Start(IdArg),
    /// Print a container's OCI state as JSON
    State(IdArg),
    /// Send a signal to a container's init (default SIGTERM)
    Kill(KillArgs),
    /// Delete a container
    Delete(DeleteArgs),
    /// Create and start a container, wait for it, then delete it
    Run(RunArgs),
    /// List containers
    #[command(alias = "ls")]
    List(ListArgs),
    /// List a container's processes
    Ps(PsArgs),
    /// Freeze every process of a container
    Pause(IdArg),
    /// Thaw a paused container
    Resume(IdArg),
    /// Change a container's resource limits
    Update(UpdateArgs),
    /// Run a new process in a container
    Exec(ExecArgs),
    /// Print what this runtime supports (JSON)
    Features,
    /// Write a starter config.json
    Spec(SpecArgs),
}

#[derive(Args, Debug)]
pub struct IdArg {
    pub id: String,
}

#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    /// Bundle directory (holds config.json)
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket to send the terminal's master fd to
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Write the init's pid here
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root
    #[arg(long)]
    pub no_pivot: bool,
    /// Keep the caller's session keyring (by default the container gets its own, _ses.ID)
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass N extra fds (3..3+N) to the container
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    pub id: String,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Don't wait: start the container and exit
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container's state after it exits
    #[arg(long)]
    pub keep: bool,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal every process in the container
    #[arg(short, long)]
    pub all: bool,
    pub id: String,
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Kill the container first if it is running
    #[arg(short, long)]
    pub force: bool,
    pub id: String,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// table or json
    #[arg(short, long, default_value = "table")]
    pub format: String,
    /// Only IDs
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// table or json
    #[arg(short, long, default_value = "table")]
    pub format: String,
    pub id: String,
    /// Options passed to ps(1) (table format)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// LinuxResources JSON file, or - for stdin
    #[arg(short, long)]
    pub resources: Option<String>,
    /// Memory limit (bytes, or with a unit: 100m; -1 for none; 0 leaves it)
    #[arg(long, allow_negative_numbers = true, value_parser = bytes_or_unlimited)]
    pub memory: Option<i64>,
    /// Memory plus swap limit (as --memory)
    #[arg(long, allow_negative_numbers = true, value_parser = bytes_or_unlimited)]
    pub memory_swap: Option<i64>,
    /// Memory soft limit (as --memory)
    #[arg(long, allow_negative_numbers = true, value_parser = bytes_or_unlimited)]
    pub memory_reservation: Option<i64>,
    /// Maximum number of pids (-1 for none; 0 leaves it)
    #[arg(long, allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    /// CPU CFS quota (µs; -1 for none)
    #[arg(long, allow_negative_numbers = true)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS period (µs)
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU shares
    #[arg(long)]
    pub cpu_share: Option<u64>,
    /// CPUs the container may use (0-3, 0,1)
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Realtime period (µs)
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    /// Realtime runtime (µs)
    #[arg(long, allow_negative_numbers = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// Block I/O weight (10-1000)
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    pub id: String,
}

/// runc's memory values: `-1` (no limit), or a size in bytes with an optional unit.
fn bytes_or_unlimited(s: &str) -> Result<i64, String> {
    if s.trim() == "-1" {
        return Ok(-1);
    }
    strata::spec::run_options::parse_bytes(s).map_err(|e| e.to_string())
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    #[arg(short, long)]
    pub tty: bool,
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    #[arg(short, long)]
    pub env: Vec<String>,
    #[arg(long)]
    pub cwd: Option<String>,
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional gids for the process
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// Add a capability to the process's sets
    #[arg(short = 'c', long)]
    pub cap: Vec<String>,
    /// Set no_new_privs for the process
    #[arg(long)]
    pub no_new_privs: bool,
    /// Pass N fds from 3 up to the process
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    /// Accepted for compatibility (no SELinux/AppArmor here)
    #[arg(long)]
    pub process_label: Option<String>,
    #[arg(long)]
    pub apparmor: Option<String>,
    /// Accepted for compatibility: exec'd processes join the container's own cgroup
    #[arg(long)]
    pub cgroup: Vec<String>,
    /// Accepted for compatibility
    #[arg(long)]
    pub ignore_paused: bool,
    pub id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct SpecArgs {
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
}
