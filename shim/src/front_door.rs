//! The `start` and `delete` actions without the daemon's weight: `start` joins a running shim
//! or starts the daemon, `delete` cleans up after a container that left no strata state.
//! containerd executes the shim binary for both on every container (containerd 1.6 runs
//! `delete` whenever it closes a task's connection, even to a shim that goes on serving a pod
//! or group), so the small front-door binary does them, and the daemon (which uses them too)
//! does the rest: serving, and tearing down what a dead shim left running.

use crate::{group, process::state_root, rootfs, service::timestamp};
use containerd_shim::api::DeleteResponse;
use containerd_shim::protos::protobuf::{well_known_types::any::Any, Message, MessageField};
use containerd_shim::protos::shim::oci::Options;
use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::SystemTime;

/// The shim socket path in a `unix://` address.
pub fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

/// What `start` is told: the container, and the containerd that runs it.
pub struct StartArgs<'a> {
    pub id: &'a str,
    pub namespace: &'a str,
    /// containerd's socket (`-address`).
    pub containerd: &'a str,
    pub debug: bool,
}

/// `start`: join the shim of the container's group (see `group`), starting one if none would
/// take it — another `start` of the group may win the socket in between: then join that one.
/// `daemon` is the binary to start. Writes the bundle's `address` file; returns the address.
/// Err: one line for containerd.
pub fn start(bundle: &Path, args: &StartArgs, daemon: &Path) -> Result<String, String> {
    let group = group::of_bundle(bundle, args.id)?.key;
    let address = containerd_shim::socket_address(args.containerd, args.namespace, &group);
    let mut options = None;
    let mut last_error = String::new();
    for _ in 0..5 {
        match group::join(&address, args.id) {
            Ok(()) => {
                write_address(bundle, &address)?;
                return Ok(address);
            }
            Err(e) => last_error = e,
        }
        let options = options.get_or_insert_with(runtime_options);
        spawn_daemon(bundle, args, daemon, &address, options)?;
    }
    Err(format!("no shim of group {group} would take container {}: {last_error}", args.id))
}

/// The runtime options containerd writes to `start`'s stdin (its `ShimCgroup`, if any).
fn runtime_options() -> Options {
    let mut data = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut data);
    Any::parse_from_bytes(&data).and_then(|any| Options::parse_from_bytes(&any.value)).unwrap_or_default()
}

/// Start the daemon serving on `address`, and wait until it serves (it closes its stdout
/// then). As containerd-shim's own spawn: in the shim cgroup the runtime options name, with an
/// OOM score just above containerd's.
fn spawn_daemon(
    bundle: &Path,
    args: &StartArgs,
    daemon: &Path,
    address: &str,
    options: &Options,
) -> Result<(), String> {
    let mut command = std::process::Command::new(daemon);
    command.current_dir(bundle).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).args([
        "-namespace",
        args.namespace,
        "-id",
        args.id,
        "-address",
        args.containerd,
        "-socket",
        address,
    ]);
    if args.debug {
        command.arg("-debug");
    }
    let mut child = command.spawn().map_err(|e| format!("starting {}: {e}", daemon.display()))?;
    if !options.shim_cgroup.is_empty() {
        containerd_shim::cgroup::add_task_to_cgroup(&options.shim_cgroup, child.id())
            .map_err(|e| format!("moving the shim into {}: {e}", options.shim_cgroup))?;
    }
    containerd_shim::cgroup::adjust_oom_score(child.id()).map_err(|e| format!("the shim's OOM score: {e}"))?;
    if let Some(mut ready) = child.stdout.take() {
        let _ = std::io::copy(&mut ready, &mut std::io::stderr());
    }
    Ok(())
}

/// The bundle's `address` file, which containerd reads to reconnect and to remove the socket
/// after the shim is gone. Like the rest of a task's state under /run it need not survive a
/// reboot: no fsync.
pub fn write_address(bundle: &Path, address: &str) -> Result<(), String> {
    strata::fsutil::write_atomic_unsynced(&bundle.join("address"), address.as_bytes())
        .map_err(|e| format!("writing the address file: {e}"))
}

/// `delete` for a container that left no strata state (its shim deleted it, or never created
/// it): unmount its rootfs and forget a dead shim's socket. `false` (nothing done): it has
/// state, which takes the daemon.
pub fn cleanup_stateless(bundle: &Path) -> bool {
    if state_root(bundle).exists() {
        return false;
    }
    release_bundle(bundle);
    true
}

/// What every `delete` does last: the rootfs mounts go, and so does the socket of a shim that
/// was killed outright (one still serving a pod's or group's other containers answers on it
/// and keeps it).
pub fn release_bundle(bundle: &Path) {
    if let Err(e) = rootfs::unmount_all(&bundle.join("rootfs")) {
        log::warn!("{e}");
    }
    if let Ok(address) = std::fs::read_to_string(bundle.join("address")) {
        let path = socket_path(address.trim());
        if std::os::unix::net::UnixStream::connect(path).is_err() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `delete`'s answer: the task's init `pid` (0 if unknown) ended as runc's shim reports a
/// task whose shim died: killed.
pub fn killed(pid: i32) -> DeleteResponse {
    DeleteResponse {
        pid: pid as u32,
        exit_status: 128 + libc::SIGKILL as u32,
        exited_at: MessageField::some(timestamp(SystemTime::now())),
        ..Default::default()
    }
}
