//! What the `start` and `delete` actions can do without the daemon: join a running shim, and
//! clean up after a container that left no strata state. containerd executes the shim binary
//! for both on every container (containerd 1.6 runs `delete` whenever it closes a task's
//! connection, even to a shim that goes on serving a pod or group), so the small front-door
//! binary does these, and the daemon (which also uses them) does the rest: starting a shim,
//! and tearing down what a dead shim left running.

use crate::{group, process::state_root, rootfs, service::timestamp};
use containerd_shim::api::DeleteResponse;
use containerd_shim::protos::protobuf::MessageField;
use std::path::Path;
use std::time::SystemTime;

/// The shim socket path in a `unix://` address.
pub fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

/// `start` when the container's shim is running: join it and write the bundle's `address`
/// file. Ok(None): no shim would take it (none running, or it is shutting down). Err: a bad
/// grouping annotation.
pub fn join_running(
    bundle: &Path,
    id: &str,
    containerd_address: &str,
    namespace: &str,
) -> Result<Option<String>, String> {
    let group = group::of_bundle(bundle, id)?;
    let address = containerd_shim::socket_address(containerd_address, namespace, &group.key);
    if group::join(&address, id).is_err() {
        return Ok(None);
    }
    write_address(bundle, &address)?;
    Ok(Some(address))
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
