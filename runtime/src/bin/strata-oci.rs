//! `strata-oci`: the runc command line (for podman `--runtime`, containerd's runc shim
//! `BinaryName`, and scripts).

#[path = "../oci/mod.rs"]
mod oci;

use std::io::Write;

/// Report an error the way runc does: a log line (text or JSON, to --log when given) that
/// callers parse, and the plain message on stderr.
fn report(log: Option<&std::path::Path>, format: &str, msg: &str) {
    let time = strata::lifecycle::now_rfc3339();
    let line = if format == "json" {
        serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
    } else {
        format!("time=\"{time}\" level=error msg={msg:?}")
    };
    if let Some(path) = log {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{line}");
        }
    }
    eprintln!("{msg}");
}

/// `--debug`: strata's debug messages (e.g. the wasm executor's cache hits and misses) to the
/// `--log` file, or to stderr without one, as runc's debug lines go.
fn init_debug_log(log: Option<&std::path::Path>) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("strata=debug"))
        .with_target(false)
        .with_ansi(false);
    match log.and_then(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).ok()) {
        Some(file) => builder.with_writer(std::sync::Mutex::new(file)).init(),
        None => builder.with_writer(std::io::stderr).init(),
    }
}

fn main() {
    strata::report::end_quietly_when_stdout_closes();
    // One line, as the callers (containerd's runc shim, podman) quote our stderr.
    let cli: oci::args::Cli =
        strata::report::parse_args_or_exit(1, |u| format!("{} (see '{} --help')", u.message, u.command));
    // runc's: an exec that fails in the runtime exits 255, so that callers tell it from the
    // program's own exit status.
    let failure_code = if matches!(cli.command, oci::args::Command::Exec(_)) { 255 } else { 1 };
    let log = cli.log.clone();
    let format = cli.log_format.clone();
    if cli.debug {
        init_debug_log(log.as_deref());
    }
    match oci::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            strata::report::end_quietly_if_broken_pipe(e.as_ref());
            report(log.as_deref(), &format, &strata::report::one_line(e.as_ref()));
            std::process::exit(failure_code);
        }
    }
}
