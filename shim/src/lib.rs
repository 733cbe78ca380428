//! containerd's runtime v2 shim for strata (runtime type `io.containerd.strata.v1`): runs OCI
//! containers — native processes and WebAssembly modules side by side, one shim per
//! Kubernetes pod or shim group — through strata's library.
//!
//! Two binaries share this library. `containerd-shim-strata-v1` (`bin/front_door.rs`) is what
//! containerd executes for every container's `start` and `delete`: it does the common cases
//! (`front_door`) and execs `containerd-shim-strata-v1-daemon` (`bin/daemon.rs`), the shim
//! itself, for everything else.

pub mod events;
pub mod front_door;
pub mod group;
pub mod idle;
pub mod metrics;
pub mod process;
pub mod reaper;
pub mod rootfs;
pub mod service;
pub mod shim;
pub mod shim_log;
pub mod spawn;
pub mod stdio;

/// The runtime type containerd knows us by.
pub const RUNTIME_ID: &str = "io.containerd.strata.v1";
