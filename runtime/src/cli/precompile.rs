//! Compiling a wasm image's modules into `ROOT/cache/wasm` ahead of its first run, for `pull`
//! and `load` (both unless `--no-precompile`): one module per CPU at a time. A module that does
//! not compile is a warning (its run will say the same, as its error); the pull or load itself
//! has succeeded.

use super::images::Ctx;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use strata::image::wasm_modules;

/// Compile `image`'s modules (none for a native image); "Precompiled N wasm modules" on
/// stderr unless `quiet`, a warning per module that failed.
pub fn image(ctx: &Ctx, image: &strata::image::Image, quiet: bool) {
    let modules = wasm_modules::of_image(&ctx.snapshots, image);
    if modules.is_empty() {
        return;
    }
    let cache_dir = ctx.root.wasm_cache();
    let parallel = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(modules.len());
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..parallel {
            s.spawn(|| {
                while let Some(m) = modules.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if let Err(e) = strata::executor::wasm::precompile_file(&cache_dir, &m.host_path) {
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
