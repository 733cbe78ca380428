//! strata: a container runtime for OCI images, running each container as a Linux process
//! isolated with namespaces and cgroups, or as a WebAssembly module.
//!
//! The library owns everything the front doors share: the image store and registry client
//! (`image`), layer unpacking and root filesystems (`snapshot`), and the on-disk layout of a
//! strata root (`root`). The binaries in `src/bin` only parse arguments and print.

pub mod clock;
pub mod containers;
pub mod digest;
pub mod executor;
pub mod fsutil;
pub mod image;
pub mod lifecycle;
pub mod lock;
pub mod report;
pub mod root;
pub mod sandbox;
pub mod snapshot;
pub mod spec;
pub mod volumes;
pub mod working_set;
