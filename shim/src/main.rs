//! `containerd-shim-strata-v1`: containerd's runtime v2 shim for strata (runtime type
//! `io.containerd.strata.v1`). Runs OCI containers — native processes and WebAssembly modules
//! side by side, one shim per Kubernetes pod — through strata's library.
//!
//! `main` decides, while the process is still single-threaded, what this process is: a
//! re-exec'd spawn worker (hidden mode), or the shim; a serving shim forks its zygote here,
//! before the tokio runtime starts any thread.

mod events;
mod metrics;
mod process;
mod reaper;
mod rootfs;
mod service;
mod shim;
mod spawn;
mod stdio;

use spawn::{reexec, zygote, Spawner};
use std::sync::Arc;

/// The runtime type containerd knows us by.
pub const RUNTIME_ID: &str = "io.containerd.strata.v1";
/// `zygote` (default) or `reexec`: how containers are spawned (see `spawn`).
pub const SPAWN_ENV: &str = "STRATA_SHIM_SPAWN";

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == reexec::WORKER_ARG) {
        reexec::worker_main(args.get(2).is_some_and(|a| a == "console"));
    }
    let flags = containerd_shim::parse(&args[1..]);
    // containerd-shim 0.11 parses -v/-version but does nothing with it: answer as runc's shim.
    if flags.as_ref().is_ok_and(|f| f.version) {
        println!("containerd-shim-strata-v1:\n  Version:  {}\n  Runtime:  {RUNTIME_ID}", env!("CARGO_PKG_VERSION"));
        return;
    }
    let serving = flags.map(|f| f.action.is_empty() && !f.socket.is_empty());
    if serving.unwrap_or(false) && std::env::var(SPAWN_ENV).as_deref() != Ok("reexec") {
        let spawner = match zygote::start() {
            Ok(client) => Spawner::Zygote(client),
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
    let config = containerd_shim::Config { no_reaper: true, ..Default::default() };
    runtime.block_on(containerd_shim::asynchronous::run::<shim::StrataShim>(RUNTIME_ID, Some(config)));
}
