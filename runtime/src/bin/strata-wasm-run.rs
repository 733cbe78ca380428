//! strata-wasm-run: run one wasm job through strata's executor, outside any sandbox.
//!
//! For tests, benchmarks and debugging the executor on its own. The job is the JSON form of
//! `strata::executor::wasm::WasmJob` (module, args, env, cwd, preopens, memory_limit, cpu,
//! network), from a file or `-` for stdin; `--cache DIR` uses that compiled-code cache.
//! `--debug` turns on the executor's debug log (cache hits and misses) on stderr.
//!
//! Usage: strata-wasm-run [--debug] [--cache DIR] JOB.json
//!        strata-wasm-run [--debug] [--cache DIR] --module FILE [--ro-volume H:G]... -- ARGS...
//! Exits with the guest's exit code (see the executor's docs), 125 on bad usage.

use std::path::PathBuf;
use strata::executor::wasm::{run, ArtifactCache, Preopen, WasmJob};

fn usage(msg: &str) -> ! {
    eprintln!("strata-wasm-run: {msg}");
    eprintln!("usage: strata-wasm-run [--debug] [--cache DIR] (JOB.json | --module FILE [-v HOST:GUEST[:ro]]... [-e K=V]... [-- ARGS...])");
    std::process::exit(125)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut debug, mut cache, mut job_file, mut module) = (false, None, None, None);
    let (mut volumes, mut env, mut guest_args) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--debug" => debug = true,
            "--cache" => cache = Some(PathBuf::from(args.next().unwrap_or_else(|| usage("--cache needs a DIR")))),
            "--module" => module = Some(PathBuf::from(args.next().unwrap_or_else(|| usage("--module needs a FILE")))),
            "-v" => volumes.push(args.next().unwrap_or_else(|| usage("-v needs HOST:GUEST"))),
            "-e" => env.push(args.next().unwrap_or_else(|| usage("-e needs K=V"))),
            "--" => guest_args.extend(args.by_ref()),
            s if s.starts_with('-') && s != "-" => usage(&format!("unknown option {s}")),
            _ => job_file = Some(a),
        }
    }
    if debug {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("strata=debug"))
            .with_writer(std::io::stderr)
            .with_target(false)
            .without_time()
            .with_ansi(false)
            .init();
    }
    let mut job = match (job_file, module) {
        (Some(f), None) => {
            let text = if f == "-" {
                std::io::read_to_string(std::io::stdin()).unwrap_or_else(|e| usage(&format!("stdin: {e}")))
            } else {
                std::fs::read_to_string(&f).unwrap_or_else(|e| usage(&format!("{f}: {e}")))
            };
            serde_json::from_str::<WasmJob>(&text).unwrap_or_else(|e| usage(&format!("{f}: {e}")))
        }
        (None, Some(m)) => {
            let mut preopens = vec![Preopen::root()];
            for v in volumes {
                let mut parts = v.split(':');
                let (Some(host), Some(guest)) = (parts.next(), parts.next()) else { usage("-v needs HOST:GUEST") };
                let read_only = parts.next() == Some("ro");
                preopens.push(Preopen { guest: guest.into(), host: host.into(), read_only });
            }
            let mut argv = vec![m.to_string_lossy().into_owned()];
            argv.extend(guest_args);
            WasmJob { module: m, args: argv, env, cwd: "/".into(), preopens, ..Default::default() }
        }
        _ => usage("give a JOB.json or --module FILE"),
    };
    if let Some(dir) = cache {
        match ArtifactCache::open(&dir) {
            Ok(c) => job.cache = Some(c),
            Err(e) => eprintln!("strata-wasm-run: {e}; compiling in memory"),
        }
    }
    std::process::exit(run(job))
}
