//! `strata`: the docker/podman-like command line.

#[path = "../cli/mod.rs"]
mod cli;

use clap::Parser;

/// A plain level up to `info` applies to strata's own messages only: the libraries under us
/// (rustls, reqwest, oci-client) log their own view of failures we already report as one
/// `Error:` line. `debug`/`trace`, or explicit directives (`oci_client=debug`), show everything.
fn log_directives(level: &str) -> String {
    match level {
        "error" | "warn" | "info" => format!("strata={level}"),
        other => other.to_string(),
    }
}

fn main() {
    let parsed = match cli::args::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 125 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(log_directives(&parsed.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("strata=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
    match cli::run(parsed) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::exit(cli::exit_code(&e));
        }
    }
}
