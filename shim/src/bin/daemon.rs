//! `containerd-shim-strata-v1-daemon`: the shim itself (see the library's docs). The front
//! door (`containerd-shim-strata-v1`) starts it to serve, and execs it with containerd's
//! arguments for what it does not do itself: a dead shim's `delete`, -v, -h, bad arguments.
//!
//! `main` decides, while the process is still single-threaded, what this process is: a
//! re-exec'd spawn worker (hidden mode), or the shim; a serving shim forks its zygote here,
//! before the tokio runtime starts any thread.

use containerd_shim_strata::spawn::{reexec, zygote, Spawner};
use containerd_shim_strata::{shim, RUNTIME_ID};
use std::sync::Arc;

/// `zygote` (default) or `reexec`: how containers are spawned (see `spawn`).
pub const SPAWN_ENV: &str = "STRATA_SHIM_SPAWN";

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == reexec::WORKER_ARG) {
        reexec::worker_main(args.get(2).is_some_and(|a| a == "console"));
    }
    let flags = match check_args(&args[1..]) {
        Ok(flags) => flags,
        Err(code) => std::process::exit(code),
    };
    let serving = flags.action.is_empty() && !flags.socket.is_empty();
    if serving && std::env::var(SPAWN_ENV).as_deref() != Ok("reexec") {
        let spawner = match zygote::start() {
            Ok(client) => Spawner::zygote(client),
            Err(e) => {
                eprintln!("strata shim: no zygote ({e}); containers will be spawned by re-exec");
                Spawner::Reexec
            }
        };
        let _ = shim::SPAWNER.set(Arc::new(spawner));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("strata shim: starting the runtime: {e}");
            std::process::exit(1);
        }
    };
    if serving {
        // Our own logger: containerd-shim's would keep writing to the first container's FIFO.
        if let Err(e) = containerd_shim_strata::shim_log::init(flags.debug, &flags.id) {
            eprintln!("strata shim: logging: {e}");
        }
    }
    let config = containerd_shim::Config { no_reaper: true, no_setup_logger: true, ..Default::default() };
    runtime.block_on(containerd_shim::asynchronous::run::<shim::StrataShim>(RUNTIME_ID, Some(config)));
}

const USAGE: &str = "\
usage: containerd-shim-strata-v1 [flags] [start|delete]
containerd's runtime v2 shim for io.containerd.strata.v1: containerd runs it (see the README's
containerd section); it is not meant to be run by hand.
  -namespace NAME        the containerd namespace that owns the shim
  -id ID                 the task's id
  -address PATH          containerd's gRPC socket
  -publish-binary PATH   the binary that publishes events (containerd)
  -socket PATH           the socket to serve on (serving mode)
  -bundle PATH           the bundle, if not the working directory
  -debug                 debug logging
  -v, -version           print the version and exit";

/// What containerd-shim 0.11 leaves to us in its arguments: -v (parsed, then ignored), -h,
/// and one-line errors for a bad flag, an unknown action, or a run outside containerd (the
/// library reports those as `InvalidArgument(..)` / `Env(NotPresent)`). Err: the exit code.
fn check_args(args: &[std::ffi::OsString]) -> Result<containerd_shim::Flags, i32> {
    if args.iter().any(|a| matches!(a.to_str(), Some("-h" | "-help" | "--help"))) {
        println!("{USAGE}");
        return Err(0);
    }
    let flags = containerd_shim::parse(args).map_err(|e| {
        let msg = match e {
            containerd_shim::Error::InvalidArgument(m) => m,
            other => other.to_string(),
        };
        eprintln!("containerd-shim-strata-v1: {msg}\n{USAGE}");
        2
    })?;
    if flags.version {
        println!("containerd-shim-strata-v1:\n  Version:  {}\n  Runtime:  {RUNTIME_ID}", env!("CARGO_PKG_VERSION"));
        return Err(0);
    }
    if !matches!(flags.action.as_str(), "" | "start" | "delete") {
        eprintln!("containerd-shim-strata-v1: unknown action {:?} (start, delete, or none to serve)", flags.action);
        return Err(2);
    }
    if std::env::var_os("TTRPC_ADDRESS").is_none() {
        eprintln!("containerd-shim-strata-v1: TTRPC_ADDRESS is not set: the shim is started by containerd");
        return Err(1);
    }
    Ok(flags)
}
