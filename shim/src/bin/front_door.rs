//! `containerd-shim-strata-v1`: what containerd executes, twice per container (`start`, then
//! `delete`). It is small so that those executions are cheap: `start` joins a running shim or
//! starts `containerd-shim-strata-v1-daemon` (next to this binary), `delete` cleans up after a
//! container that left no state (`containerd_shim_strata::front_door`); anything else (a dead
//! shim's cleanup, -v, -h and every error message) it execs the daemon for, with the same
//! arguments.

use containerd_shim::protos::protobuf::Message;
use containerd_shim_strata::front_door::{self, StartArgs};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

/// The daemon's file name, next to this binary's.
const DAEMON: &str = "containerd-shim-strata-v1-daemon";

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if let Some(code) = fast_path(&args) {
        std::process::exit(code);
    }
    let daemon = daemon_path();
    let err = std::process::Command::new(&daemon).args(&args).exec();
    eprintln!("containerd-shim-strata-v1: cannot run {}: {err}", daemon.display());
    std::process::exit(1);
}

fn daemon_path() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent().map(|dir| dir.join(DAEMON)).unwrap_or_else(|| PathBuf::from(DAEMON))
}

/// `start` or `delete` done here: their exit code. None: the daemon's job.
fn fast_path(args: &[OsString]) -> Option<i32> {
    // Outside containerd, or asked for help: the daemon explains.
    std::env::var_os("TTRPC_ADDRESS")?;
    if args.iter().any(|a| matches!(a.to_str(), Some("-h" | "-help" | "--help"))) {
        return None;
    }
    let flags = containerd_shim::parse(args).ok().filter(|f| !f.version)?;
    // containerd runs both actions in the task's bundle.
    let bundle = std::env::current_dir().ok()?;
    let mut stdout = std::io::stdout();
    match flags.action.as_str() {
        "start" => {
            let args = StartArgs {
                id: &flags.id,
                namespace: &flags.namespace,
                containerd: &flags.address,
                debug: flags.debug,
            };
            match front_door::start(&bundle, &args, &daemon_path()) {
                Ok(address) => Some(reply(stdout.write_all(address.as_bytes()).and_then(|()| stdout.flush()))),
                Err(e) => {
                    eprintln!("containerd-shim-strata-v1: {e}");
                    Some(1)
                }
            }
        }
        "delete" if front_door::cleanup_stateless(&bundle) => {
            let response = front_door::killed(0).write_to_bytes().unwrap_or_default();
            Some(reply(stdout.write_all(&response)))
        }
        _ => None,
    }
}

/// The exit code after writing the answer to containerd.
fn reply(written: std::io::Result<()>) -> i32 {
    match written {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("containerd-shim-strata-v1: writing the answer to containerd: {e}");
            1
        }
    }
}
