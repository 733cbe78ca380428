//! `strata`: the docker/podman-like command line.

#[path = "../cli/mod.rs"]
mod cli;

/// A plain level up to `info` applies to strata's own messages only: the libraries under us
/// (rustls, reqwest, hyper) log their own view of failures we already report as one
/// `Error:` line. `debug` shows everything but the wasm compiler's per-function chatter
/// (thousands of lines per module); `trace`, or explicit directives (`reqwest=debug`),
/// show exactly what they say.
fn log_directives(level: &str) -> String {
    const COMPILER: [&str; 5] =
        ["cranelift_codegen", "cranelift_frontend", "regalloc2", "wasmtime_internal_cranelift", "wasmtime"];
    match level {
        "error" | "warn" | "info" => format!("strata={level}"),
        "debug" => std::iter::once("debug".to_string())
            .chain(COMPILER.iter().map(|c| format!("{c}=info")))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

fn main() {
    strata::report::end_quietly_when_stdout_closes();
    // As docker and podman say it: the problem, and where to read more.
    let parsed: cli::args::Cli =
        strata::report::parse_args_or_exit(125, |u| format!("Error: {}\nSee '{} --help'.", u.message, u.command));
    let filter = tracing_subscriber::EnvFilter::try_new(log_directives(&parsed.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("strata=warn"));
    // Colours only for a terminal: a log file or a pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .init();
    match cli::run(parsed) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            strata::report::end_quietly_if_broken_pipe(e.as_ref());
            eprintln!("Error: {}", strata::report::one_line(e.as_ref()));
            std::process::exit(cli::exit_code(&e));
        }
    }
}
