//! wasm-instantiate: cold compile vs cached load through strata's executor cache, side by side.
//!
//! For each module given, the median time to: compile it in memory (what a cache miss costs);
//! load it from the cache by file identity (the stat index: no read, no hash: the path a
//! container start takes); and load it by content digest (a file the index does not know:
//! read + sha256 + artifact). Also a fresh `Engine::new`, paid once per container process.
//! Run it through `bench/wasm-instantiate/run.sh`, which builds the guests and a release binary.
//!
//! Usage: wasm-instantiate [--runs N] MODULE.wasm...

use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use strata::executor::wasm::{load_module, new_engine, ArtifactCache, Compiled};
use wasmtime::Engine;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn load(engine: &Engine, cache: Option<&ArtifactCache>, path: &Path) -> Result<Compiled> {
    load_module(engine, cache, path).map_err(|e| anyhow!("{e}"))
}

/// Median of `runs` timings of `f`, each given its iteration number.
fn time<T>(runs: usize, mut f: impl FnMut(usize) -> Result<(T, Duration)>) -> Result<Duration> {
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        let (value, took) = f(i)?;
        std::hint::black_box(value);
        samples.push(took);
    }
    Ok(median(samples))
}

fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, Duration)> {
    let t = Instant::now();
    let v = f()?;
    Ok((v, t.elapsed()))
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut runs = 20usize;
    let mut modules: Vec<PathBuf> = Vec::new();
    while let Some(a) = args.next() {
        if a == "--runs" {
            runs = args.next().context("--runs N")?.parse()?;
        } else {
            modules.push(a.into());
        }
    }
    if modules.is_empty() {
        bail!("usage: wasm-instantiate [--runs N] MODULE.wasm...");
    }
    let engine = new_engine().map_err(|e| anyhow!("{e}"))?;
    let fresh = time(runs, |_| timed(|| new_engine().map_err(|e| anyhow!("{e}"))))?;
    println!("fresh Engine::new (once per container process): {}\n", ms(fresh));
    println!(
        "{:<24} {:>8} {:>14} {:>18} {:>18} {:>8}",
        "module", "size", "cold compile", "cached (identity)", "cached (digest)", "ratio"
    );
    for module in &modules {
        let size = std::fs::metadata(module).with_context(|| module.display().to_string())?.len();
        let name = module.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let cold = time(runs.min(10), |_| timed(|| load(&engine, None, module)))?;

        let cache_dir = tempfile::tempdir()?;
        let cache = ArtifactCache::open(cache_dir.path())?;
        load(&engine, Some(&cache), module)?; // fills the cache and the stat index
        let by_identity = time(runs * 10, |_| timed(|| load(&engine, Some(&cache), module)))?;
        // Each copy is a new file identity, so the index misses and the digest path runs.
        let copies = tempfile::tempdir()?;
        let by_digest = time(runs * 10, |i| {
            let copy = copies.path().join(format!("{i}.wasm"));
            std::fs::copy(module, &copy)?;
            timed(|| load(&engine, Some(&cache), &copy))
        })?;
        println!(
            "{:<24} {:>5} KB {:>14} {:>18} {:>18} {:>7.0}x",
            name,
            size / 1024,
            ms(cold),
            ms(by_identity),
            ms(by_digest),
            cold.as_secs_f64() / by_identity.as_secs_f64()
        );
    }
    println!(
        "\nratio = cold compile / cached load by identity. Medians; cold over {} runs, cached over {}.",
        runs.min(10),
        runs * 10
    );
    Ok(())
}
