//! A container's wasm module, found in the compiled-code cache or compiled into it before the
//! container's process takes its user: by the init (or an exec's joining process), which is
//! still root and holds the host's cache directory (root's alone, mode 0700).
//!
//! The privileged side only does file I/O: it looks the module up (by file identity, else by
//! digest), opens the artifact and checks its trailer; wasmtime parses it later, in the guest's
//! own process, as the guest's user (`executor::wasm::run`).
//!
//! On a miss at create the module is compiled here, not later in the guest's process: a guest
//! run as another user (`--user 1000`, Kubernetes' `runAsNonRoot`) could not store the
//! artifact, and compiled its module again at every start. The compiler does not run in the
//! privileged process either: the module is untrusted input. It runs in a child that first
//! becomes the container's process (user, capabilities, seccomp: what the guest itself would
//! compile as), then drops every capability, holds no fd but a memfd for its output, is not
//! dumpable, runs under [`CompilerLimits`] and the compiler's seccomp filter (no new process,
//! exec, file or socket: `spec::seccomp::compiler`). The parent ends whatever else runs in the
//! namespace, seals the memfd, and stores what the child wrote, unparsed, under the digest it
//! computed itself of the bytes the child compiled.
//!
//! What the child writes is native code every container running that module will load, so
//! only a child nothing else can reach may write it: one in a pid namespace the container
//! creates (at create it holds only the init and the child). Joining a running container
//! (exec), or a pid namespace shared with other containers (a pod's), a process with
//! CAP_SYS_PTRACE there could rewrite the child's output; there a miss is compiled by the
//! guest, in memory, and nothing is stored.

use super::identity;
use super::seccomp::Filter;
use crate::executor::wasm::{self, ArtifactCache, CompilerLimits, PendingCompile, Preload, Preloaded};
use oci_spec::runtime::Process;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Instant;

/// The compiler child's exit code when it could not load its seccomp filter.
const EXIT_NOT_CONFINED: i32 = 2;

/// The artifact of the module at `path`, from `cache` or compiled into it; `None` leaves the
/// loading (and any error message) to the guest's run. Call while still root, before
/// `identity::become_process`, in a single-threaded process.
pub(crate) fn preload(
    cache: &ArtifactCache,
    path: &Path,
    compile_on_miss: bool,
    process: &Process,
    seccomp: Option<&Filter>,
) -> Option<Preloaded> {
    match wasm::preload(cache, path, compile_on_miss) {
        Preload::Loaded(preloaded) => Some(preloaded),
        Preload::Nothing => None,
        Preload::Compile(pending) => compile_in_child(cache, pending, process, seccomp),
    }
}

fn compile_in_child(
    cache: &ArtifactCache,
    pending: PendingCompile,
    process: &Process,
    seccomp: Option<&Filter>,
) -> Option<Preloaded> {
    let limits = CompilerLimits::for_module(pending.module_size());
    let sealable = rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING;
    let out: OwnedFd = rustix::fs::memfd_create("strata-wasm-artifact", sealable).ok()?;
    let started = Instant::now();
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the caller is single-threaded; the child ends in `_exit`.
    let pid = match unsafe { libc::fork() } {
        -1 => return None,
        0 => compiler_child(&pending, out, parent, process, seccomp, limits),
        pid => pid,
    };
    let exited = crate::lifecycle::wait_for_exit(pid, Some(limits.wall_clock()));
    // Whatever the wait said (it also says "exited" when it cannot watch): a child still
    // there now is ended, so the reap below never blocks.
    let status = match crate::lifecycle::try_reap(pid) {
        Some(status) => Some(status),
        None => {
            // SAFETY: kill of our own child, not reaped yet (its pid is still ours).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            crate::lifecycle::reap(pid)
        }
    };
    let path = pending.path().display().to_string();
    if !exited || status != Some(0) {
        let why = match status {
            _ if !exited => format!("took more than {} s", limits.wall_clock().as_secs()),
            Some(code) if code > 128 => format!("the compiler was killed by signal {}", code - 128),
            Some(EXIT_NOT_CONFINED) => {
                tracing::warn!(
                    "wasm: the compiler child could not load its seccomp filter (does the container's profile refuse seccomp?); \
                     {path} is compiled in memory at every start"
                );
                "the compiler could not be confined".to_string()
            }
            Some(code) => format!("the compiler failed (exit {code})"),
            None => "the compiler could not be waited for".to_string(),
        };
        tracing::debug!("wasm: compiling {path} ahead of the guest: {why}; the guest compiles it in memory");
        return None;
    }
    // At create this process is PID 1 of a pid namespace of the container's own that so far
    // holds only the compile: whatever the child may have left running goes with it.
    // SAFETY: getpid/kill/waitpid; kill(-1) only ever as PID 1 of that namespace.
    unsafe {
        if libc::getpid() == 1 {
            libc::kill(-1, libc::SIGKILL);
            while libc::waitpid(-1, std::ptr::null_mut(), 0) > 0
                || std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
            {}
        }
    }
    let out = std::fs::File::from(out);
    let mut artifact = match wasm::sealed_output(&out, &limits) {
        Ok(artifact) => artifact,
        Err(e) => {
            tracing::debug!("wasm: compiling {path} ahead of the guest: {e}; the guest compiles it in memory");
            return None;
        }
    };
    pending.finish(cache, &mut artifact, started.elapsed())
}

/// The compiler child: becomes the container's process, gives up what it does not need to
/// compile, compiles into `out`, and exits 0 (or 1).
fn compiler_child(
    pending: &PendingCompile,
    out: OwnedFd,
    parent: libc::pid_t,
    process: &Process,
    seccomp: Option<&Filter>,
    limits: CompilerLimits,
) -> ! {
    let attempt = || -> Result<(), String> {
        // No backtraces: resolving one allocates, and at the memory limit that deadlocks std's
        // allocation-failure report. (Single-threaded: setting the environment is safe.)
        std::env::set_var("RUST_BACKTRACE", "0");
        // An exec's joining process is not its namespace's PID 1: nothing else would end us.
        identity::die_with_parent(parent)?;
        close_all_but(out.as_raw_fd());
        identity::become_process(process, seccomp)?;
        identity::die_with_parent(parent)?;
        identity::give_up_privileges()?;
        limits.apply().map_err(|e| format!("compiler limits: {e}"))?;
        // On top of the container's own filter: no new process, exec, file or socket.
        if identity::confine_compiler().is_err() {
            // SAFETY: leave without running the runtime's destructors.
            unsafe { libc::_exit(EXIT_NOT_CONFINED) }
        }
        pending.compile_into(&std::fs::File::from(out))
    };
    let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(attempt)) {
        Ok(Ok(())) => 0,
        _ => 1,
    };
    // SAFETY: leave without running the runtime's destructors.
    unsafe { libc::_exit(code) }
}

/// Close every fd of this process except `keep` (stdio too: the container's, not ours).
fn close_all_but(keep: i32) {
    // SAFETY: close_range on fd numbers only; nothing in this process uses them afterwards.
    unsafe {
        if keep > 0 {
            libc::syscall(libc::SYS_close_range, 0u32, (keep - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (keep + 1) as u32, u32::MAX, 0u32);
    }
}
