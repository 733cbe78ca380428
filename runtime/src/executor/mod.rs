//! Executors: the last step of starting a container, after the sandbox is set up.
//!
//! A native container `execve`s its `process.args` (that lives in the sandbox's init); a wasm
//! container runs its module in wasmtime inside the same sandbox ([`wasm::run`]). This module
//! owns only that last step: it must never create namespaces, cgroups or mounts, and never fork.

pub mod wasm;
