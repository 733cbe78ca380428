//! The isolation layer shared by native and wasm containers: cgroups (v1 and v2) and the
//! seccomp filter. Namespaces, mounts, pivot_root and the process model join it with the
//! native-container work.

pub mod cgroups;
pub mod console;
pub mod devices;
pub mod hooks;
pub mod identity;
pub mod init;
pub mod join;
pub mod keyring;
pub mod mounts;
pub mod namespaces;
pub mod program;
pub mod seccomp;
pub mod seccomp_cache;
pub mod spawn;
pub mod sync;
pub mod title;
pub mod wasm_compile;
