//! Compiling a wasm image's modules into `ROOT/cache/wasm` ahead of its first run, for `pull`
//! and `load` (both unless `--no-precompile`): one module per CPU at a time. A module that does
//! not compile is a warning (its run will say the same, as its error); the pull or load itself
//! has succeeded.
//!
//! Each module is compiled in a child process (this binary's hidden `wasm-precompile`) with
//! limits on its memory and CPU time: the module comes from an image, and a small one can make
//! the compiler use gigabytes (3.5 kB gzipped of nested blocks: ~1.1 GB) or minutes, here as
//! root on the host. Legitimate modules need ~35× their size in memory; a child gets
//! 256 MiB plus 100× the module's size. (At `run` the compile happens inside the container's
//! own cgroup, under its limits.)

use super::args::WasmPrecompileArgs;
use super::images::Ctx;
use anyhow::Result;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use strata::image::wasm_modules;

/// Memory a compile may always use, and how much more per byte of module.
const MEMORY_BASE: u64 = 256 << 20;
const MEMORY_PER_BYTE: u64 = 100;
/// CPU seconds a compile may always use, and how many more per MiB of module.
const CPU_BASE_SECS: u64 = 60;
const CPU_SECS_PER_MIB: u64 = 10;
/// Fixed limits instead (an operator whose modules need more, or a test that wants less).
pub const MEMORY_ENV: &str = "STRATA_PRECOMPILE_MEMORY_MIB";
pub const CPU_ENV: &str = "STRATA_PRECOMPILE_CPU_SECS";

/// Compile `image`'s modules (none for a native image); "Precompiled N wasm modules" on
/// stderr unless `quiet`, a warning per module that failed.
pub fn image(ctx: &Ctx, image: &strata::image::Image, quiet: bool) {
    let modules = wasm_modules::of_image(&ctx.snapshots, image);
    if modules.is_empty() {
        return;
    }
    let cache_dir = ctx.root.wasm_cache();
    // The children log at our level (`--log-level debug` shows their cache messages).
    // (Not `trace`: the compiler's own chatter would be megabytes per module.)
    let log_level = match tracing::level_filters::LevelFilter::current().to_string().to_lowercase().as_str() {
        "trace" => "debug".to_string(),
        other => other.to_string(),
    };
    let log_level = log_level.as_str();
    let parallel = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(modules.len());
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..parallel {
            s.spawn(|| {
                while let Some(m) = modules.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let limits = std::fs::metadata(&m.host_path).map(|md| limits_for(md.len()));
                    let result = limits
                        .map_err(|e| e.to_string())
                        .and_then(|limits| in_child(&cache_dir, &m.host_path, log_level, limits));
                    if let Err(e) = result {
                        failures.lock().unwrap_or_else(|e| e.into_inner()).push((m.image_path.clone(), e));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    for (path, e) in &failures {
        eprintln!("warning: not precompiling {path}: {e}");
    }
    let compiled = modules.len() - failures.len();
    if !quiet && compiled > 0 {
        eprintln!("Precompiled {compiled} wasm module{}", if compiled == 1 { "" } else { "s" });
    }
}

/// What one compile may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limits {
    memory: u64,
    cpu_secs: u64,
}

/// The limits a compile of a module of `size` bytes runs under, from [`MEMORY_ENV`] and
/// [`CPU_ENV`] when set.
fn limits_for(size: u64) -> Limits {
    let from_env = |name| std::env::var(name).ok().and_then(|v| v.trim().parse::<u64>().ok()).filter(|&n| n > 0);
    Limits {
        memory: from_env(MEMORY_ENV).map_or_else(
            || MEMORY_BASE.saturating_add(size.saturating_mul(MEMORY_PER_BYTE)),
            |mib| mib.saturating_mul(1 << 20),
        ),
        cpu_secs: from_env(CPU_ENV)
            .unwrap_or_else(|| CPU_BASE_SECS.saturating_add(size / (1 << 20) * CPU_SECS_PER_MIB)),
    }
}

/// Compile `module` into `cache_dir` in a child process under `limits`; the error is one line
/// saying why it failed (the compiler's message, or the limit it hit).
fn in_child(cache_dir: &Path, module: &Path, log_level: &str, limits: Limits) -> Result<(), String> {
    let Limits { memory, cpu_secs } = limits;
    // This very binary, even if a newer one replaced it on disk during the pull.
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("strata");
    cmd.arg("--log-level").arg(log_level).arg("wasm-precompile").arg("--cache").arg(cache_dir).arg(module);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe and the closure touches nothing else.
    unsafe {
        cmd.pre_exec(move || {
            // Private writable memory (heap and anonymous maps): what the compiler allocates.
            let data = libc::rlimit { rlim_cur: memory, rlim_max: memory };
            // SIGXCPU at the soft limit, SIGKILL a second later.
            let cpu = libc::rlimit { rlim_cur: cpu_secs, rlim_max: cpu_secs + 1 };
            if libc::setrlimit(libc::RLIMIT_DATA, &data) != 0 || libc::setrlimit(libc::RLIMIT_CPU, &cpu) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // No backtraces: resolving one allocates, and under the memory limit that deadlocks the
    // allocation-failure report (std holds its backtrace lock).
    cmd.env("RUST_BACKTRACE", "0").env("RUST_LIB_BACKTRACE", "0");
    let mut child = cmd.spawn().map_err(|e| format!("starting the compiler process: {e}"))?;
    // Drained while it runs (a full pipe would stop the child), keeping the last 64 KiB.
    let drain = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            use std::io::Read;
            const KEEP: usize = 64 << 10;
            let (mut kept, mut chunk) = (Vec::new(), [0u8; 8192]);
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                kept.extend_from_slice(&chunk[..n]);
                if kept.len() > KEEP {
                    kept.drain(..kept.len() - KEEP);
                }
            }
            kept
        })
    });
    // CPU time does not pass while a child sleeps: a wall-clock bound too.
    let wall = Duration::from_secs(cpu_secs.saturating_mul(2).saturating_add(10));
    let exited = strata::lifecycle::wait_for_exit(child.id() as i32, Some(wall));
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| format!("waiting for the compiler process: {e}"))?;
    let stderr = drain.and_then(|t| t.join().ok()).unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr);
    if !exited {
        return Err(format!("compiling took more than {} s (the limit)", wall.as_secs()));
    }
    if status.success() {
        // Whatever it logged (`--log-level debug`), passed on.
        eprint!("{stderr}");
        return Ok(());
    }
    Err(why_it_failed(status.signal(), &stderr, limits))
}

/// One line on why a compiler child that ended by `signal` (or exited non-zero) after writing
/// `stderr` failed: the limit it hit, its panic, or its own error.
fn why_it_failed(signal: Option<i32>, stderr: &str, limits: Limits) -> String {
    let last_line = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    // std's "memory allocation of N bytes failed", cranelift's "unhandled out-of-memory error:
    // ...", a failed mmap's ENOMEM (os error 12).
    let out_of_memory =
        stderr.lines().any(|l| l.starts_with("memory allocation of") || l.starts_with("unhandled out-of-memory error"))
            || last_line.ends_with("(os error 12)");
    // A panic's message is the line after "panicked at".
    let panic = stderr.lines().skip_while(|l| !l.contains("panicked at")).nth(1);
    let cpu_secs = limits.cpu_secs;
    match (signal, panic) {
        (Some(libc::SIGXCPU), _) => format!("compiling took more than {cpu_secs} s of CPU (the limit)"),
        (Some(libc::SIGKILL), _) => {
            format!("the compiler process was killed: over its {cpu_secs} s CPU limit, or by the OOM killer")
        }
        _ if out_of_memory => format!("compiling needs more than {} MiB of memory (the limit)", limits.memory >> 20),
        (_, Some(message)) => format!("the compiler failed: {}", message.trim()),
        (Some(sig), None) => format!("the compiler process died of signal {sig}"),
        (None, None) => last_line.strip_prefix("Error: ").unwrap_or(last_line).to_string(),
    }
}

/// The hidden `strata wasm-precompile --cache DIR MODULE`: what [`in_child`] runs.
pub fn one(args: WasmPrecompileArgs) -> Result<i32> {
    strata::executor::wasm::precompile_file(&args.cache, &args.module)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The only test here that reads the environment: the variables are not set in `cargo test`.
    #[test]
    fn limits_grow_with_the_module() {
        assert_eq!(limits_for(0), Limits { memory: 256 << 20, cpu_secs: 60 });
        // A 3 MB module of nested blocks needs ~1.1 GB to compile: over its limit.
        let memory = limits_for(3_000_000).memory;
        assert!(memory < 600 << 20, "{memory}");
        // A 25 MB interpreter (~35x its size in practice) fits.
        let Limits { memory, cpu_secs } = limits_for(25 << 20);
        assert!(memory > 35 * (25 << 20), "{memory}");
        assert_eq!(cpu_secs, 60 + 250);
        assert_eq!(limits_for(u64::MAX).memory, u64::MAX);
    }

    #[test]
    fn a_failed_compile_says_which_limit_or_error() {
        let limits = Limits { memory: 48 << 20, cpu_secs: 5 };
        let cranelift = "\nthread 'main' panicked at cranelift-entity/src/map.rs:116:31:\n\
                         unhandled out-of-memory error: out of memory (failed to allocate 8388640 bytes)\n\
                         note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(why_it_failed(None, cranelift, limits), "compiling needs more than 48 MiB of memory (the limit)");
        let std_oom = "memory allocation of 1048576 bytes failed\n";
        assert_eq!(
            why_it_failed(Some(libc::SIGABRT), std_oom, limits),
            "compiling needs more than 48 MiB of memory (the limit)"
        );
        assert_eq!(why_it_failed(Some(libc::SIGXCPU), "", limits), "compiling took more than 5 s of CPU (the limit)");
        let panic = "thread 'main' panicked at src/x.rs:1:1:\nindex out of bounds\nnote: ...\n";
        assert_eq!(why_it_failed(None, panic, limits), "the compiler failed: index out of bounds");
        let error = "Error: /m.wasm: invalid WebAssembly: bad magic\n";
        assert_eq!(why_it_failed(None, error, limits), "/m.wasm: invalid WebAssembly: bad magic");
    }
}
