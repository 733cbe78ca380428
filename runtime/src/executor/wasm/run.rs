//! [`run`]: one guest, start to exit code. Loads (cache or compile), links WASI, applies the
//! limits, calls `_start` or `wasi:cli/run`, and maps the outcome to an exit code (the table is
//! in the module docs of `executor::wasm`).
//!
//! Everything that goes wrong is reported as one line on stderr (plus the wasm backtrace for a
//! trap); this module must never panic out of `run`, call `exit`, or fork.

use super::cache::{self, ArtifactCache, Compiled, FileIdentity};
use super::kind::{describe_magic, WasmKind};
use super::limits::{self, Deadline, Interrupted, Ticker};
use super::signals::Watcher;
use super::{engine, error_chain, wasi, WasmError, WasmJob};
use crate::digest::Digest;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::Ordering;
use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Engine, Linker, Module, Store, Trap, WasmBacktrace};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxView, WasiView};

/// Exit code of a trap: 128+SIGABRT, what a native program that aborts gets.
pub const EXIT_TRAP: i32 = 134;

/// Run `job`'s module to completion and return its exit code. Never panics, never exits (but
/// see the module docs: a signalled guest stuck in a host call is ended by `_exit`).
pub fn run(mut job: WasmJob) -> i32 {
    let cache = job.cache.take();
    let preloaded = job.preloaded.take();
    let gauge = job.memory_gauge.take();
    let job = &job;
    match std::panic::catch_unwind(AssertUnwindSafe(move || run_job(job, cache, preloaded, gauge))) {
        Ok(code) => code,
        Err(_) => {
            eprintln!("strata: {}: internal error in the wasm executor", job.module.display());
            EXIT_TRAP
        }
    }
}

fn run_job(
    job: &WasmJob,
    cache: Option<ArtifactCache>,
    preloaded: Option<Preloaded>,
    gauge: Option<std::fs::File>,
) -> i32 {
    let (engine, preloaded) = match preloaded {
        Some(p) => (p.engine.clone(), Some(p)),
        None => match engine::new_engine() {
            Ok(e) => (e, None),
            Err(e) => return fail(&WasmError::Engine(error_chain(&e))),
        },
    };
    // First, before anything else can start a thread: they must all inherit the blocked mask.
    let watcher = match Watcher::start(&engine) {
        Ok(w) => w,
        Err(e) => return fail(&WasmError::Engine(format!("signal thread: {e}"))),
    };
    let compiled = match load(&engine, cache.as_ref(), &job.module, preloaded) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    // The cache is a host directory, open in this process: closed before any guest code
    // runs, or a process of the container allowed to ptrace this one could reach the
    // host's filesystem through /proc/PID/fd/N/.. (the module is loaded; it is not needed).
    drop(cache);
    let _ticker = match job.cpu.filter(|c| c.quota > 0 && c.period > 0) {
        Some(_) => match Ticker::start(&engine) {
            Ok(t) => Some(t),
            Err(e) => return fail(&WasmError::Engine(format!("cpu ticker thread: {e}"))),
        },
        None => None,
    };
    let guest_memory = limits::guest_memory_limit(job.memory_limit, gauge.as_ref());
    // Read once, here: not kept open while the guest runs.
    drop(gauge);
    tracing::debug!(
        "wasm limits: memory {:?} bytes ({:?} for the guest), cpu {:?}, network {}",
        job.memory_limit,
        guest_memory,
        job.cpu.map(|c| (c.quota, c.period)),
        job.network
    );
    // Signalled while compiling: don't start the guest at all.
    let early = watcher.received.load(Ordering::SeqCst);
    if early != 0 {
        return 128 + early;
    }
    let deadline = Deadline::new(watcher.received.clone(), job.cpu);
    let io = match io_runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(&WasmError::Engine(format!("wasi i/o thread: {e}"))),
    };
    let entered = io.enter();
    watcher.guest_starts();
    let outcome = match compiled {
        Compiled::Module(m) => run_module(&engine, job, &m, deadline, guest_memory),
        Compiled::Component(c) => run_component(&engine, job, &c, deadline, guest_memory),
    };
    let code = match outcome {
        Ok(code) => code,
        Err(Failure::Setup(e)) => fail(&e),
        Err(Failure::Guest(e)) => guest_error(&job.module, &e),
    };
    drop(entered);
    // Not waiting for the worker: a host call the guest left behind may still block in it, and
    // the process ends right after us anyway.
    io.shutdown_background();
    // A signal that came before the guest reached a deadline check still decides the code.
    let sig = watcher.received.load(Ordering::SeqCst);
    drop(watcher);
    if sig != 0 && code == 0 {
        return 128 + sig;
    }
    code
}

/// The tokio runtime wasmtime-wasi's host calls need (it implements WASI p1 on p2's async
/// host): one worker thread drives its I/O and timers, while each call itself blocks on the
/// guest's thread (`in_tokio` uses the runtime entered there). Left to itself, wasmtime-wasi
/// builds an ambient runtime with a worker per CPU: 64 threads in every wasm container of a
/// 64-CPU host, each one created and torn down for a `hello`.
fn io_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("strata-wasm-io")
        .enable_io()
        .enable_time()
        .build()
}

/// Open, identify and compile (or load from `cache`) the module at `path`: by file identity
/// without reading it when the stat index knows it, else by content digest, else compiled.
pub fn load_module(engine: &Engine, cache: Option<&ArtifactCache>, path: &Path) -> Result<Compiled, WasmError> {
    load(engine, cache, path, None)
}

/// [`load_module`], taking `preloaded` when it was found for the very file now at `path`.
fn load(
    engine: &Engine,
    cache: Option<&ArtifactCache>,
    path: &Path,
    preloaded: Option<Preloaded>,
) -> Result<Compiled, WasmError> {
    // Opened by the guest's own user, now: a module it may not read does not run, and a file
    // replaced since the preload (between create and start) is a new identity.
    let (file, identity) = open_module(path)?;
    if let Some(p) = preloaded.filter(|p| p.identity == identity) {
        // Parsed here, as the guest's user: the privileged side only opened and checked it.
        let t = std::time::Instant::now();
        match cache::deserialize_verified(engine, &p.artifact, p.kind) {
            Ok(compiled) => {
                let us = t.elapsed().as_micros();
                match p.found {
                    Found::ByIdentity => {
                        tracing::debug!("wasm cache hit {} ({}, by file identity) loaded in {us} us", p.digest, p.kind)
                    }
                    Found::ByDigest => tracing::debug!("wasm cache hit {} ({}) loaded in {us} us", p.digest, p.kind),
                    Found::Compiled => {
                        tracing::debug!("wasm artifact {} ({}, compiled at create) loaded in {us} us", p.digest, p.kind)
                    }
                }
                return Ok(compiled);
            }
            Err(e) => tracing::debug!("wasm cache entry {} does not load ({}); compiling", p.digest, error_chain(&e)),
        }
    }
    if let Some(c) = cache {
        if let Some((compiled, _)) = cache::load_by_identity(engine, c, &identity) {
            return Ok(compiled);
        }
    }
    let (bytes, kind) = read_module(&file, path)?;
    cache::load_or_compile(engine, cache, &bytes, kind, Some(&identity))
        .map(|(c, _)| c)
        .map_err(|e| WasmError::Compile { path: path.to_path_buf(), message: error_chain(&e) })
}

/// An artifact found in the cache ahead of [`run`] for the module file `identity` names: open
/// and checked (trailer, CRC), not parsed. [`run`] loads it as the guest's user.
pub struct Preloaded {
    identity: FileIdentity,
    digest: Digest,
    kind: WasmKind,
    artifact: File,
    engine: Engine,
    found: Found,
}

/// How [`preload`] came by an artifact (for the log).
#[derive(Debug, Clone, Copy)]
enum Found {
    ByIdentity,
    ByDigest,
    Compiled,
}

impl std::fmt::Debug for Preloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Preloaded({})", self.digest)
    }
}

/// What [`preload`] found for a container's module.
pub enum Preload {
    /// Its artifact, in the cache.
    Loaded(Preloaded),
    /// Not in the cache: the module, read for a compile ([`PendingCompile`]).
    Compile(PendingCompile),
    /// Nothing to do ahead (no such file, not wasm, a miss where no compile was asked for, a
    /// cache we may not write): [`run`] loads or compiles it, and says what is wrong with it.
    Nothing,
}

/// Modules larger than this are not read ahead of [`run`] (which reads them anyway).
const MAX_PRELOAD_MODULE: u64 = 512 << 20;

/// Find the artifact of the module at `path` in `cache`, while the container's process is
/// still root: the cache directory is root's alone (mode 0700), so a guest run as another user
/// (`--user 1000`) could neither read nor fill it later. Only file I/O happens here (nothing
/// of an artifact is parsed as root): [`run`] loads the artifact as the guest's user, and only
/// if the file that user then opens at `path` is still the one found here.
///
/// A file the stat index knows is found without being opened (a stat only). Otherwise, with
/// `compile_on_miss`, the module is read and hashed and its artifact looked up by digest; on a
/// miss it comes back as a [`PendingCompile`] for the sandbox to compile in a child process
/// (this module never forks). Starts no threads; never panics.
pub fn preload(cache: &ArtifactCache, path: &Path, compile_on_miss: bool) -> Preload {
    let attempt = || {
        let Some(md) = std::fs::metadata(path).ok().filter(|md| md.is_file()) else { return Preload::Nothing };
        let identity = FileIdentity::of(&md);
        let Ok(engine) = engine::new_engine() else { return Preload::Nothing };
        let compat = engine::compat_key(&engine);
        // A stat index entry is only ever believed for a file whose identity no one chose.
        let indexed = rustix::fs::statfs(path).is_ok_and(|fs| cache::identity_is_the_kernels(&fs));
        if let Some((digest, kind)) = cache.index_lookup(&identity).filter(|_| indexed) {
            if let Some(artifact) = cache.open_verified(&compat, &digest, kind) {
                return Preload::Loaded(Preloaded {
                    identity,
                    digest,
                    kind,
                    artifact,
                    engine,
                    found: Found::ByIdentity,
                });
            }
        }
        if !compile_on_miss || md.len() > MAX_PRELOAD_MODULE || !cache.writable() {
            return Preload::Nothing;
        }
        let Ok((file, opened)) = open_module(path) else { return Preload::Nothing };
        if opened != identity {
            return Preload::Nothing;
        }
        // Bounded, and the same file after as before: one that grows or changes while it is
        // read is left to the guest.
        let mut bytes = Vec::with_capacity(md.len() as usize);
        if std::io::Read::read_to_end(&mut std::io::Read::take(&file, MAX_PRELOAD_MODULE + 1), &mut bytes).is_err()
            || bytes.len() as u64 != md.len()
            || file.metadata().map(|m| FileIdentity::of(&m)).ok() != Some(identity.clone())
        {
            return Preload::Nothing;
        }
        let Some(kind) = WasmKind::of(&bytes) else { return Preload::Nothing };
        let digest = Digest::of_bytes(&bytes);
        let indexable = rustix::fs::fstatfs(&file).is_ok_and(|fs| cache::identity_is_the_kernels(&fs));
        if let Some(artifact) = cache.open_verified(&compat, &digest, kind) {
            if indexable {
                let _ = cache.index_store(&identity, &digest, kind);
            }
            return Preload::Loaded(Preloaded { identity, digest, kind, artifact, engine, found: Found::ByDigest });
        }
        Preload::Compile(PendingCompile { identity, indexable, engine, digest, kind, bytes, path: path.to_path_buf() })
    };
    std::panic::catch_unwind(AssertUnwindSafe(attempt)).unwrap_or(Preload::Nothing)
}

/// A module read by [`preload`] that is not in the cache yet. The sandbox compiles it in a
/// child process ([`PendingCompile::compile_into`]) and hands what the child wrote to
/// [`PendingCompile::finish`], which stores it under the digest computed here, in the parent,
/// of the very bytes the child compiled.
pub struct PendingCompile {
    identity: FileIdentity,
    /// Whether `identity` may go into the stat index (see `cache::identity_is_the_kernels`).
    indexable: bool,
    engine: Engine,
    digest: Digest,
    kind: WasmKind,
    bytes: Vec<u8>,
    path: std::path::PathBuf,
}

impl PendingCompile {
    /// The module's size in bytes (what the compiler's limits are sized by).
    pub fn module_size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The module's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Compile the module and write the serialized artifact to `out`. For the compiler child;
    /// never panics (an error is a line for the log).
    pub fn compile_into(&self, out: &File) -> Result<(), String> {
        let attempt = || -> Result<(), String> {
            let serialized =
                cache::precompile_bytes(&self.engine, &self.bytes, self.kind).map_err(|e| error_chain(&e))?;
            std::io::Write::write_all(&mut &*out, &serialized).map_err(|e| e.to_string())
        };
        std::panic::catch_unwind(AssertUnwindSafe(attempt)).unwrap_or_else(|_| Err("the compiler panicked".into()))
    }

    /// Store what the child wrote (`serialized`, read to its end: `sealed_output`) in
    /// `cache`, streamed, without parsing it, and return the artifact as found; `elapsed` is
    /// how long the child took.
    pub fn finish(
        self,
        cache: &ArtifactCache,
        serialized: &mut dyn std::io::Read,
        elapsed: std::time::Duration,
    ) -> Option<Preloaded> {
        let PendingCompile { identity, indexable, engine, digest, kind, .. } = self;
        let ms = elapsed.as_millis();
        let compat = engine::compat_key(&engine);
        if let Err(e) = cache.store_from(&compat, &digest, kind, serialized) {
            tracing::debug!("wasm cache miss {digest} ({kind}) compiled in {ms} ms; cache not writable ({e})");
            return None;
        }
        tracing::debug!(
            "wasm cache miss {digest} ({kind}) compiled in {ms} ms (in a child, as the container's user), stored"
        );
        if indexable {
            let _ = cache.index_store(&identity, &digest, kind);
        }
        let artifact = cache.open_verified(&compat, &digest, kind)?;
        Some(Preloaded { identity, digest, kind, artifact, engine, found: Found::Compiled })
    }
}

/// Open the module file at `path` (a fifo or device there neither blocks nor is read) and
/// identify it.
fn open_module(path: &Path) -> Result<(File, FileIdentity), WasmError> {
    let open_err = |source| WasmError::Open { path: path.to_path_buf(), source };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(open_err)?;
    let md = file.metadata().map_err(open_err)?;
    if !md.is_file() {
        return Err(WasmError::NotWasm { path: path.to_path_buf(), what: "not a regular file".into() });
    }
    Ok((file, FileIdentity::of(&md)))
}

/// The whole module and its kind; bytes that are not wasm are an error naming what they are.
fn read_module(file: &File, path: &Path) -> Result<(Vec<u8>, WasmKind), WasmError> {
    let mut bytes = Vec::with_capacity(file.metadata().map(|m| m.len() as usize).unwrap_or(0));
    let mut reader = file;
    reader.read_to_end(&mut bytes).map_err(|source| WasmError::Open { path: path.to_path_buf(), source })?;
    let kind = WasmKind::of(&bytes).ok_or_else(|| WasmError::NotWasm {
        path: path.to_path_buf(),
        what: describe_magic(&bytes[..bytes.len().min(8)]),
    })?;
    Ok((bytes, kind))
}

enum Failure {
    /// Linking or instantiating failed before any guest code ran.
    Setup(WasmError),
    /// The guest ran and ended with an error: exit, trap or interruption.
    Guest(wasmtime::Error),
}

struct P1Host {
    wasi: WasiP1Ctx,
    limits: limits::GuestLimits,
}

struct P2Host {
    ctx: WasiCtx,
    table: ResourceTable,
    limits: limits::GuestLimits,
}

impl WasiView for P2Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.ctx, table: &mut self.table }
    }
}

fn run_module(
    engine: &Engine,
    job: &WasmJob,
    module: &Module,
    deadline: Deadline,
    guest_memory: Option<u64>,
) -> Result<i32, Failure> {
    let path = &job.module;
    let link = |e: wasmtime::Error| Failure::Setup(WasmError::Link { path: path.clone(), message: error_chain(&e) });
    let mut linker: Linker<P1Host> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |h: &mut P1Host| &mut h.wasi).map_err(link)?;
    let pre = linker.instantiate_pre(module).map_err(link)?;
    let wasi = wasi::builder(job).map_err(Failure::Setup)?.build_p1();
    let mut store = Store::new(engine, P1Host { wasi, limits: limits::store_limits(guest_memory) });
    store.limiter(|h| &mut h.limits);
    arm(&mut store, deadline);
    let instance = pre.instantiate(&mut store).map_err(|e| instantiate_failure(path, e, guest_memory))?;
    let start = instance.get_typed_func::<(), ()>(&mut store, "_start").map_err(|_| {
        Failure::Setup(WasmError::Link {
            path: path.clone(),
            message: "no `_start` export: not a WASI command module".into(),
        })
    })?;
    tracing::debug!("wasm guest {} starting (core module, _start)", path.display());
    start.call(&mut store, ()).map(|()| 0).map_err(Failure::Guest)
}

fn run_component(
    engine: &Engine,
    job: &WasmJob,
    component: &Component,
    deadline: Deadline,
    guest_memory: Option<u64>,
) -> Result<i32, Failure> {
    let path = &job.module;
    let link = |e: wasmtime::Error| Failure::Setup(WasmError::Link { path: path.clone(), message: error_chain(&e) });
    let mut linker = wasmtime::component::Linker::<P2Host>::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(link)?;
    let pre = linker.instantiate_pre(component).map_err(link)?;
    let pre = CommandPre::new(pre).map_err(|e| {
        Failure::Setup(WasmError::Link {
            path: path.clone(),
            message: format!("not a WASI command component (no wasi:cli/run export): {}", error_chain(&e)),
        })
    })?;
    let ctx = wasi::builder(job).map_err(Failure::Setup)?.build();
    let host = P2Host { ctx, table: ResourceTable::new(), limits: limits::store_limits(guest_memory) };
    let mut store = Store::new(engine, host);
    store.limiter(|h| &mut h.limits);
    arm(&mut store, deadline);
    let command = pre.instantiate(&mut store).map_err(|e| instantiate_failure(path, e, guest_memory))?;
    tracing::debug!("wasm guest {} starting (component, wasi:cli/run)", path.display());
    match command.wasi_cli_run().call_run(&mut store) {
        Ok(Ok(())) => Ok(0),
        Ok(Err(())) => Ok(1),
        Err(e) => Err(Failure::Guest(e)),
    }
}

/// Epoch deadline one tick ahead, and the callback that decides at each tick.
fn arm<T: 'static>(store: &mut Store<T>, mut deadline: Deadline) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| deadline.on_tick().map_err(wasmtime::Error::new));
}

/// A start function that traps, exits or is interrupted is the guest's doing; anything else
/// (memory over the limit, ...) means the module cannot run here.
fn instantiate_failure(path: &Path, e: wasmtime::Error, guest_memory: Option<u64>) -> Failure {
    if find::<Trap>(&e).is_some() || find::<I32Exit>(&e).is_some() || find::<Interrupted>(&e).is_some() {
        return Failure::Guest(e);
    }
    let mut message = error_chain(&e);
    if let Some(bytes) = guest_memory {
        // Most often a memory larger than the container's limit leaves room for.
        message.push_str(&format!(" (the guest may use {} MiB of the container's memory limit)", bytes >> 20));
    }
    Failure::Setup(WasmError::Instantiate { path: path.to_path_buf(), message })
}

/// The exit code for a guest that ended with an error, reporting traps on stderr.
fn guest_error(path: &Path, e: &wasmtime::Error) -> i32 {
    if let Some(exit) = find::<I32Exit>(e) {
        return exit.0;
    }
    if let Some(Interrupted(sig)) = find::<Interrupted>(e) {
        return 128 + sig;
    }
    let backtrace = find::<WasmBacktrace>(e).map(|bt| bt.to_string());
    let what = match find::<Trap>(e) {
        // A trap displays as "wasm trap: ...".
        Some(trap) => trap.to_string(),
        // Every layer of the chain but the backtrace, which follows on lines of its own (in
        // the chain it printed twice, the cause lost at the end of a line).
        None => format!("wasm guest failed: {}", layers_but(e, backtrace.as_deref()).replace('\n', " ")),
    };
    eprintln!("strata: {}: {what}", path.display());
    if let Some(bt) = backtrace {
        eprintln!("{bt}");
    }
    EXIT_TRAP
}

/// `e`'s chain of context and cause as one "a: b: c" text, without the layer that reads
/// `skip` (a `WasmBacktrace` is context, not an error type the chain can be asked about).
fn layers_but(e: &wasmtime::Error, skip: Option<&str>) -> String {
    let layers: Vec<String> =
        e.chain().map(|layer| layer.to_string()).filter(|text| Some(text.as_str()) != skip).collect();
    layers.join(": ")
}

/// `e` or any error or context in its chain as a `T`.
fn find<T: std::fmt::Display + std::fmt::Debug + Send + Sync + 'static>(e: &wasmtime::Error) -> Option<&T> {
    e.downcast_ref::<T>()
}

/// Report a setup failure as one line and return its exit code.
fn fail(e: &WasmError) -> i32 {
    eprintln!("strata: {e}");
    e.exit_code()
}
