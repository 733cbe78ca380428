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
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// List images
    #[command(alias = "list")]
    Ls(ImagesArgs),
    Pull(PullArgs),
    Push(PushArgs),
    Inspect(InspectArgs),
    Tag(TagArgs),
    /// Remove images
    #[command(alias = "remove")]
    Rm(RmiArgs),
    /// Remove unused blobs, snapshots and leftovers of interrupted commands
    Prune(PruneArgs),
    Load(LoadArgs),
    Save(SaveArgs),
    Import(ImportArgs),
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
    #[command(flatten)]
    pub transport: TransportArgs,
    /// Image reference
    pub image: String,
}

#[derive(Args, Debug)]
pub struct PushArgs {
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
    #[arg(short, long)]
    pub username: Option<String>,
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
    #[arg(long)]
    pub authfile: Option<PathBuf>,
    pub registry: Option<String>,
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Output format: table (default) or json (one JSON object per line)
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show untagged images too
    #[arg(short, long)]
    pub all: bool,
    /// Don't truncate IDs
    #[arg(long)]
    pub no_trunc: bool,
    /// Only images of this repository (optionally :tag)
    pub reference: Option<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
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
    /// Also remove untagged images
    #[arg(short, long)]
    pub all: bool,
    /// Don't ask (strata never asks; accepted for docker compatibility)
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Archive to read (default: stdin)
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    #[arg(short, long)]
    pub quiet: bool,
    /// Platform to load from a multi-platform archive
    #[arg(long)]
    pub platform: Option<String>,
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
    /// Apply a Dockerfile instruction (ENTRYPOINT, CMD, ENV, WORKDIR, USER, LABEL)
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
