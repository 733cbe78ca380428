//! The wasm executor: runs a container's WebAssembly module or component in wasmtime, inside
//! the sandbox the native path also uses (namespaces, cgroups, pivot_root, user, caps).
//!
//! The sandbox's init calls [`run`] where a native container would `execve`: after
//! `pivot_root`, the user and capabilities are set, in the container's single-threaded PID 1.
//! `run` starts threads (the signal thread, one I/O worker for wasmtime-wasi, a CPU-quota ticker);
//! the caller must not fork afterwards, only exit with the returned code.
//!
//! One path serves WASI p1 core modules (`_start`) and p2 components (`wasi:cli/run`), told
//! apart by their header ([`WasmKind::of`]). Compiled code comes from the [`ArtifactCache`]
//! (mmapped); a miss compiles once, before the container's process starts, and stores the
//! artifact ([`preload`]).
//!
//! # Exit codes
//!
//! | what happened | exit code |
//! |---|---|
//! | `_start` / `wasi:cli/run` returned normally | 0 |
//! | `proc_exit(n)` (p1) or `wasi:cli/exit` with a code (p2) | n |
//! | `wasi:cli/run` returned an error / `exit(err)` (p2; through the p1 adapter any non-zero code becomes this) | 1 |
//! | a trap (unreachable, out-of-bounds, stack overflow, ...): message and wasm backtrace on stderr | 134 (128+SIGABRT, as a native abort) |
//! | the module file does not exist | 127 |
//! | not wasm, invalid, or fails to link (an import we don't provide) or instantiate: one line on stderr naming the problem | 126 |
//! | SIGTERM / SIGINT / SIGHUP received: the guest is interrupted through the epoch | 128+signal (143 / 130 / 129) |
//! | an internal error of the executor (a bug: a caught panic) | 134 |
//!
//! # Limits
//!
//! * memory: `memory_limit` is the container's limit, which its cgroup enforces on the whole
//!   process; the guest gets that minus what the executor itself uses once the module is
//!   loaded (its anonymous RSS) and an 8 MiB reserve for host-side buffers. That share is one
//!   budget for all its linear memories and tables (a table element counted as 8 bytes);
//!   growth past it fails inside the guest (`memory.grow` returns -1, malloc returns NULL),
//!   as it does natively, before the cgroup's OOM killer would end the process. A module whose *initial* memory is over its share cannot be instantiated (126).
//! * CPU: `cpu` (quota/period, as in `linux.resources.cpu`) is honoured with epoch deadlines:
//!   a ticker thread advances the epoch every 10 ms; at each tick the guest's thread CPU time
//!   in the current period is compared with the quota, and once over, the guest sleeps until
//!   the period ends. The cgroup's CFS quota still applies on top.
//! * signals: SIGTERM, SIGINT and SIGHUP are blocked and taken by a signal thread (PID 1 in a
//!   pid namespace ignores signals that have no handler; blocked ones are still queued). It
//!   advances the epoch, so running wasm stops at its next loop back-edge or call; if the guest
//!   sits in a blocking host call (reading stdin, sleeping) and has not stopped after 200 ms,
//!   the thread ends the process with `_exit(128+signal)`. Output is never lost: stdout and
//!   stderr are written straight to fds 1/2, unbuffered.
//!
//! # Calling it from the sandbox
//!
//! ```text
//! // in the runtime, before the clone or in the init before pivot_root (host paths still resolve):
//! let cache = ArtifactCache::open(&cache_dir).ok();   // ROOT/cache/wasm, $STRATA_WASM_CACHE, or DEFAULT_CACHE_DIR
//! // in the init after pivot_root, still privileged (the cache is root's alone):
//! let preloaded = match preload(&cache, &resolved_args0) {
//!     Preload::Loaded(p) => Some(p),
//!     Preload::Compile(pending) => /* a child compiles (pending.compile_into), then */ pending.finish(..),
//!     Preload::Nothing => None,
//! };                                                   // (sandbox::wasm_compile does this)
//! drop(cache);
//! // where a native container would execve (after user, caps, seccomp, the exec-fifo
//! // handshake and the startContainer hooks):
//! let mut job = WasmJob::from_spec(&spec, resolved_args0);
//! job.preloaded = preloaded;                           // None: run compiles in memory
//! let code = run(job);
//! unsafe { libc::_exit(code) }                         // nothing is buffered
//! ```
//!
//! The guest's process never holds the cache: it is closed before the guest's user is set.
//! (`job.cache`, which makes [`run`] load from and store to a cache itself, is for running
//! the executor outside any sandbox: `strata-wasm-run`.)
//! The seccomp profile must let wasmtime work: `mmap`/`mprotect` with `PROT_EXEC`,
//! `madvise`, `rt_sigaction`, `sigaltstack`, `rt_sigprocmask`, `rt_sigtimedwait` (sigwait),
//! thread creation (`clone`/`clone3`), `futex`; docker's default profile allows all of them.
//!
//! This module must never call `exit`, panic on bad input, or fork.

mod cache;
mod compiler_limits;
mod engine;
mod kind;
mod limits;
mod run;
mod signals;
mod spec;
mod wasi;

pub use cache::{
    compile_stream, precompile_check, prune, recently_used, ArtifactCache, CacheOutcome, Compiled, FileIdentity,
    ModuleToCompile,
};
pub use compiler_limits::{sealed_output, CompilerLimits};
pub use engine::new_engine;
pub use kind::WasmKind;
pub use limits::open_memory_gauge;
pub use run::{load_module, preload, run, PendingCompile, Preload, Preloaded, EXIT_TRAP};

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where `strata-oci` and the shim keep compiled wasm by default (`strata` uses
/// `ROOT/cache/wasm` under its `--root`).
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/strata/cache/wasm";
/// Environment variable that overrides [`DEFAULT_CACHE_DIR`] for `strata-oci` and the shim.
pub const CACHE_DIR_ENV: &str = "STRATA_WASM_CACHE";

/// Everything [`run`] needs, taken from the OCI spec by the sandbox.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmJob {
    /// The module's path inside the (already pivoted) root: `process.args[0]`, resolved.
    pub module: PathBuf,
    /// argv as the guest sees it, argv[0] included (`process.args`).
    pub args: Vec<String>,
    /// `KEY=VALUE` strings (`process.env`); entries without `=` are ignored.
    #[serde(default)]
    pub env: Vec<String>,
    /// `process.cwd`, given to p2 guests as `initial-cwd`. (wasi-libc's p1 programs start in
    /// "/" and resolve relative paths from there whatever we say.)
    #[serde(default = "root_dir")]
    pub cwd: PathBuf,
    /// Directories the guest may use: "/" (the root filesystem) and each OCI mount at its
    /// destination. A mount that turns out not to be a directory (a file bind such as
    /// /etc/hosts) is skipped at run time: the guest reaches it through "/".
    #[serde(default)]
    pub preopens: Vec<Preopen>,
    /// `linux.resources.memory.limit`, bytes.
    #[serde(default)]
    pub memory_limit: Option<u64>,
    /// `linux.resources.cpu.{quota,period}`.
    #[serde(default)]
    pub cpu: Option<CpuLimit>,
    /// Whether the guest may use sockets (false for `--network none`).
    #[serde(default)]
    pub network: bool,
    /// A compiled-code cache [`run`] loads from and stores to itself (outside a sandbox; a
    /// container's process gets its module through `preloaded` instead); `None` compiles in
    /// memory.
    #[serde(skip)]
    pub cache: Option<ArtifactCache>,
    /// The module, already loaded from the cache while the process was privileged
    /// ([`preload`]); `None` loads it (cache or compile) in [`run`].
    #[serde(skip)]
    pub preloaded: Option<Preloaded>,
    /// This process's smaps_rollup, opened while /proc was there ([`open_memory_gauge`]): how
    /// much of the memory limit the executor itself uses, once a container's /proc is gone.
    #[serde(skip)]
    pub memory_gauge: Option<std::fs::File>,
}

fn root_dir() -> PathBuf {
    PathBuf::from("/")
}

impl Default for WasmJob {
    /// Nothing granted: no preopens, no network, no limits, cwd "/", no cache.
    fn default() -> WasmJob {
        WasmJob {
            module: PathBuf::new(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: root_dir(),
            preopens: Vec::new(),
            memory_limit: None,
            cpu: None,
            network: false,
            cache: None,
            preloaded: None,
            memory_gauge: None,
        }
    }
}

/// A directory made available to the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preopen {
    /// The path the guest uses, e.g. "/" or "/data".
    pub guest: PathBuf,
    /// The directory in our (pivoted) filesystem.
    pub host: PathBuf,
    /// Refuse writes through this preopen (an `ro` mount).
    #[serde(default)]
    pub read_only: bool,
}

impl Preopen {
    /// The root filesystem as "/", read-write (a read-only rootfs is enforced by the mount).
    pub fn root() -> Preopen {
        Preopen { guest: PathBuf::from("/"), host: PathBuf::from("/"), read_only: false }
    }
}

/// A CFS-style CPU limit: `quota` µs of CPU per `period` µs (a quota ≤ 0 means none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuLimit {
    pub quota: i64,
    pub period: u64,
}

/// Why a module could not be run (each maps to one line on stderr and an exit code).
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    #[error("cannot open wasm module {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a WebAssembly module or component (it is {what})")]
    NotWasm { path: PathBuf, what: String },
    #[error("{path}: invalid WebAssembly: {message}")]
    Compile { path: PathBuf, message: String },
    #[error("{path}: cannot link: {message}")]
    Link { path: PathBuf, message: String },
    #[error("{path}: cannot instantiate: {message}")]
    Instantiate { path: PathBuf, message: String },
    #[error("preopen {guest} ({host}): {message}")]
    Preopen { guest: PathBuf, host: PathBuf, message: String },
    #[error("wasm cache {path}: {op}: {source}")]
    Cache { path: PathBuf, op: &'static str, source: std::io::Error },
    #[error("wasm engine: {0}")]
    Engine(String),
}

impl WasmError {
    /// The exit code a container gets when its module fails this way (see the module docs).
    pub fn exit_code(&self) -> i32 {
        match self {
            WasmError::Open { source, .. } if source.kind() == std::io::ErrorKind::NotFound => 127,
            _ => 126,
        }
    }
}

/// A wasmtime error and its causes on one line ("a: b: c"), without the repeated parts.
pub(crate) fn error_chain(e: &wasmtime::Error) -> String {
    crate::report::one_line(e.as_ref()).replace('\n', " ")
}
