//! A container's wasm module, loaded or compiled before the container's process takes its
//! user: by the init (or an exec's joining process), which is still root and holds the host's
//! compiled-code cache directory (root's alone, mode 0700).
//!
//! On a cache miss the module is compiled here, and not later in the guest's own process: a
//! guest run as another user (`--user 1000`, Kubernetes' `runAsNonRoot`) could not store the
//! artifact, and compiled its module again at every start. The compiler does not run in the
//! privileged process either: the module is untrusted input, and a compiler bug that handed it
//! control there would have root and an fd on the host's filesystem. It runs in a child that
//! first becomes the container's process (user, capabilities, seccomp: what the guest itself
//! would compile as), then drops every capability, holds no fd but a memfd for its output, is
//! not dumpable (the container's other processes cannot ptrace it), and runs under
//! [`CompilerLimits`]. The parent stores what the child wrote under the digest it computed
//! itself, of the bytes the child compiled: the child decides nothing about where its output
//! goes.

use super::identity;
use super::seccomp::Filter;
use crate::executor::wasm::{self, ArtifactCache, CompilerLimits, PendingCompile, Preload, Preloaded};
use oci_spec::runtime::Process;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Instant;

/// The artifact of the module at `path`, from `cache` or compiled into it; `None` leaves the
/// loading (and any error message) to the guest's run. Call while still root, before
/// `identity::become_process`, in a single-threaded process.
pub(crate) fn preload(
    cache: &ArtifactCache,
    path: &Path,
    process: &Process,
    seccomp: Option<&Filter>,
) -> Option<Preloaded> {
    match wasm::preload(cache, path) {
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
    let out: OwnedFd = rustix::fs::memfd_create("strata-wasm-artifact", rustix::fs::MemfdFlags::CLOEXEC).ok()?;
    let started = Instant::now();
    // SAFETY: the caller is single-threaded; the child ends in `_exit`.
    let pid = match unsafe { libc::fork() } {
        -1 => return None,
        0 => compiler_child(&pending, out, process, seccomp, limits),
        pid => pid,
    };
    let exited = crate::lifecycle::wait_for_exit(pid, Some(limits.wall_clock()));
    if !exited {
        // SAFETY: kill of our own child, not reaped yet.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let status = crate::lifecycle::reap(pid);
    let path = pending.path().display().to_string();
    if !exited || status != Some(0) {
        let why = match status {
            _ if !exited => format!("took more than {} s", limits.wall_clock().as_secs()),
            Some(code) if code > 128 => format!("the compiler was killed by signal {} (a limit)", code - 128),
            Some(code) => format!("the compiler failed (exit {code})"),
            None => "the compiler could not be waited for".to_string(),
        };
        tracing::debug!("wasm: compiling {path} ahead of the guest: {why}; the guest compiles it in memory");
        return None;
    }
    let size = rustix::fs::fstat(&out).ok()?.st_size as u64;
    if size > limits.memory {
        return None;
    }
    let mut serialized = vec![0u8; size as usize];
    let file = std::fs::File::from(out);
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut serialized, 0).ok()?;
    pending.finish(cache, &serialized, started.elapsed())
}

/// The compiler child: becomes the container's process, gives up what it does not need to
/// compile, compiles into `out`, and exits 0 (or 1).
fn compiler_child(
    pending: &PendingCompile,
    out: OwnedFd,
    process: &Process,
    seccomp: Option<&Filter>,
    limits: CompilerLimits,
) -> ! {
    let attempt = || -> Result<(), String> {
        // No backtraces: resolving one allocates, and at the memory limit that deadlocks std's
        // allocation-failure report. (Single-threaded: setting the environment is safe.)
        std::env::set_var("RUST_BACKTRACE", "0");
        close_all_but(out.as_raw_fd());
        identity::become_process(process, seccomp)?;
        for set in [caps::CapSet::Effective, caps::CapSet::Permitted, caps::CapSet::Inheritable, caps::CapSet::Ambient]
        {
            caps::clear(None, set).map_err(|e| format!("dropping capabilities: {e}"))?;
        }
        identity::set_no_new_privs()?;
        // SAFETY: prctl with constant arguments.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        limits.apply().map_err(|e| format!("compiler limits: {e}"))?;
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
