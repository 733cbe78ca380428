//! Compiling a wasm image's modules into `ROOT/cache/wasm` ahead of its first run, for `pull`
//! and `load` (both unless `--no-precompile`): one module per CPU at a time. A module that does
//! not compile is a warning (its run will say the same, as its error); the pull or load itself
//! has succeeded.
//!
//! The module comes from an image: the compiler is not run here, as root on the host. Each
//! module is compiled in a child process (this binary's hidden `wasm-precompile`) that, before
//! it reads a byte, becomes a user of its own without capabilities and loads a seccomp filter
//! that refuses new processes, exec, opening files, sockets and signals to others
//! (`spec::seccomp::compiler`); it reads the module from its stdin and writes the artifact to
//! its stdout (a memfd, sealed before it is read), under [`CompilerLimits`]. Nothing of
//! strata's environment or fds reaches it. This process stores
//! what the child wrote, unparsed, under the digest it computed itself of the module file.
//! (A module compiled at a container's create runs under the same limits, inside the
//! container's sandbox: `sandbox::wasm_compile`.)

use super::args::WasmPrecompileArgs;
use super::images::Ctx;
use anyhow::Result;
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use strata::executor::wasm::{precompile_check, sealed_output, CompilerLimits, ModuleToCompile};
use strata::image::wasm_modules;

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
                    let result = match precompile_check(&cache_dir, &m.host_path) {
                        Ok(None) => Ok(()),
                        Ok(Some(pending)) => in_child(&pending, log_level),
                        Err(e) => Err(e.to_string()),
                    };
                    if let Err(e) = result {
                        failures.lock().unwrap_or_else(|e| e.into_inner()).push((m.image_path.clone(), e));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    for (path, e) in &failures {
        eprintln!("warning: not precompiling {}: {e}", printable(path));
    }
    let compiled = modules.len() - failures.len();
    if !quiet && compiled > 0 {
        eprintln!("Precompiled {compiled} wasm module{}", if compiled == 1 { "" } else { "s" });
    }
}

/// Compile `module` in a child process under its limits and store what it wrote; the error is
/// one line saying why it failed (the compiler's message, or the limit it hit).
fn in_child(pending: &ModuleToCompile, log_level: &str) -> Result<(), String> {
    let limits = CompilerLimits::for_module(pending.size());
    let input = pending.input().map_err(|e| format!("the module: {e}"))?;
    let sealable = rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING;
    let output: OwnedFd =
        rustix::fs::memfd_create("strata-wasm-artifact", sealable).map_err(|e| format!("memfd: {e}"))?;
    let artifact = std::fs::File::from(output.try_clone().map_err(|e| format!("memfd: {e}"))?);
    // This very binary, even if a newer one replaced it on disk during the pull.
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("strata");
    cmd.arg("--log-level").arg(log_level).arg("wasm-precompile");
    cmd.stdin(Stdio::from(input)).stdout(Stdio::from(output)).stderr(Stdio::piped());
    // SAFETY: `apply` only calls getrlimit/setrlimit, and close_range is a plain syscall: all
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            limits.apply()?;
            // Nothing strata inherited without close-on-exec reaches the child (only its stdio).
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // Nothing of strata's environment either. No backtraces: resolving one allocates, and
    // under the memory limit that deadlocks the allocation-failure report (std holds its
    // backtrace lock).
    cmd.env_clear().env("RUST_BACKTRACE", "0").env("RUST_LIB_BACKTRACE", "0");
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
    // A child that sleeps uses no CPU time: a wall-clock bound too.
    let wall = limits.wall_clock();
    let exited = strata::lifecycle::wait_for_exit(child.id() as i32, Some(wall));
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| format!("waiting for the compiler process: {e}"))?;
    let stderr = drain.and_then(|t| t.join().ok()).unwrap_or_default();
    // What a compiler child says (even an error quoting the module) reaches a terminal only
    // as text.
    let stderr = printable(&String::from_utf8_lossy(&stderr));
    if !exited {
        return Err(format!("compiling took more than {} s (the limit)", wall.as_secs()));
    }
    if !status.success() {
        return Err(why_it_failed(status.signal(), &stderr, limits));
    }
    // Whatever it logged (`--log-level debug`), passed on.
    eprint!("{stderr}");
    let mut sealed = sealed_output(&artifact, &limits)?;
    pending.store(&mut sealed).map_err(|e| e.to_string())
}

/// One line on why a compiler child that ended by `signal` (or exited non-zero) after writing
/// `stderr` failed: the limit it hit, its panic, or its own error.
fn why_it_failed(signal: Option<i32>, stderr: &str, limits: CompilerLimits) -> String {
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
        (Some(libc::SIGXFSZ), _) => format!("the compiled code is larger than {} MiB (the limit)", limits.memory >> 20),
        (Some(libc::SIGKILL), _) => {
            format!("the compiler process was killed: over its {cpu_secs} s CPU limit, or by the OOM killer")
        }
        _ if out_of_memory => format!("compiling needs more than {} MiB of memory (the limit)", limits.memory >> 20),
        (_, Some(message)) => format!("the compiler failed: {}", message.trim()),
        (Some(sig), None) => format!("the compiler process died of signal {sig}"),
        (None, None) => last_line.strip_prefix("Error: ").unwrap_or(last_line).to_string(),
    }
}

/// The hidden `strata wasm-precompile`: what [`in_child`] runs. Gives up root, capabilities and
/// most system calls before it reads the module from stdin, then writes the artifact to stdout.
pub fn one(_args: WasmPrecompileArgs) -> Result<i32> {
    use strata::sandbox::identity;
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    identity::die_with_parent(parent).map_err(anyhow::Error::msg)?;
    identity::become_compiler().map_err(anyhow::Error::msg)?;
    identity::die_with_parent(parent).map_err(anyhow::Error::msg)?;
    let fds = open_fds();
    identity::confine_compiler().map_err(anyhow::Error::msg)?;
    tracing::debug!("wasm-precompile: compiling as {}, open fds {fds}", identity::describe_self());
    strata::executor::wasm::compile_stream(&mut std::io::stdin().lock(), &mut std::io::stdout().lock())?;
    Ok(0)
}

/// `text` with control characters (but newlines and tabs) and bidirectional overrides shown as
/// `?`: it came from an image or a compiler child, and goes to a terminal.
fn printable(text: &str) -> String {
    let hidden = |c: char| {
        (c.is_control() && c != '\n' && c != '\t') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    text.chars().map(|c| if hidden(c) { '?' } else { c }).collect()
}

/// This process's open fds, e.g. "0 1 2" (the listing's own left out).
fn open_fds() -> String {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return "unknown".into() };
    let mut fds: Vec<i32> = dir
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).map_or(true, |t| !t.starts_with("/proc")))
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    fds.iter().map(|fd| fd.to_string()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_compile_says_which_limit_or_error() {
        let limits = CompilerLimits { memory: 48 << 20, cpu_secs: 5 };
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
        assert_eq!(
            why_it_failed(Some(libc::SIGXFSZ), "", limits),
            "the compiled code is larger than 48 MiB (the limit)"
        );
        assert_eq!(printable("a \x1b]0;x\x07 \u{202e}b\tc\n"), "a ?]0;x? ?b\tc\n");
        let error = "Error: /m.wasm: invalid WebAssembly: bad magic\n";
        assert_eq!(why_it_failed(None, error, limits), "/m.wasm: invalid WebAssembly: bad magic");
    }
}
