//! How an error reads on one line for people: the error, then each cause not already said,
//! joined by ": ". strata's errors put their cause in their own message (`cannot read X:
//! <io error>`) and also expose it as their source, so printing the whole chain (anyhow's
//! `{:#}`) would say every such cause twice.

use std::error::Error;

/// `e` and its causes on one line, none said twice.
pub fn one_line(e: &(dyn Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

/// An OS error as the kernel's words in Go's (and runc's) lower case, without Rust's
/// " (os error N)": `no such file or directory`.
pub fn os_words(e: &std::io::Error) -> String {
    let text = e.to_string();
    let words = text.rsplit_once(" (os error ").map_or(text.as_str(), |(words, _)| words);
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A command-line usage error, as docker words one: what is wrong on one line (clap's
/// message, its continuation lines joined, and its suggestion if it has one), and the command
/// whose `--help` to see. clap's own rendering spans six lines or more, with the usage and tips.
pub struct UsageError {
    pub message: String,
    /// The command as typed up to the subcommand (`strata run`).
    pub command: String,
}

/// Parses this process's arguments as `P`, or exits: help and version as clap prints them (0);
/// a usage error as `say` words it from [`UsageError`], with `code`.
pub fn parse_args_or_exit<P: clap::Parser>(code: i32, say: impl FnOnce(&UsageError) -> String) -> P {
    let e = match P::try_parse() {
        Ok(parsed) => return parsed,
        Err(e) => e,
    };
    if e.use_stderr() && e.kind() != clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let args: Vec<String> = std::env::args().collect();
        eprintln!("{}", say(&UsageError::of(&e, &P::command(), &args)));
        std::process::exit(code);
    }
    // Help and version, or the help for a missing subcommand (an error: `code`).
    let _ = e.print();
    std::process::exit(if e.use_stderr() { code } else { 0 })
}

impl UsageError {
    /// The error of parsing `args` with `cli`: clap's usage names the command when it has one
    /// (not for a bad value), else the subcommands are found in `args`.
    pub fn of(e: &clap::Error, cli: &clap::Command, args: &[String]) -> UsageError {
        let mut usage = UsageError::from_clap(e);
        if usage.command.is_empty() {
            usage.command = command_path(cli, args);
        }
        usage
    }

    pub fn from_clap(e: &clap::Error) -> UsageError {
        use clap::error::{ContextKind, ContextValue};
        let rendered = e.render().to_string();
        let mut lines = rendered.lines();
        let mut message = lines.next().unwrap_or_default().trim_start_matches("error: ").to_string();
        // Continuation lines (a missing argument's name, the possible values) are indented;
        // a blank line ends the message.
        for line in lines.take_while(|l| !l.trim().is_empty()) {
            if !line.trim_start().starts_with("tip:") {
                message.push(' ');
                message.push_str(line.trim());
            }
        }
        let suggested = [ContextKind::SuggestedSubcommand, ContextKind::SuggestedArg].into_iter().find_map(|kind| {
            match e.get(kind) {
                Some(ContextValue::String(s)) => Some(s.clone()),
                Some(ContextValue::Strings(v)) => v.first().cloned(),
                _ => None,
            }
        });
        if let Some(s) = suggested {
            message.push_str(&format!(" (did you mean '{s}'?)"));
        }
        let usage = match e.get(ContextKind::Usage) {
            Some(ContextValue::StyledStr(u)) => u.to_string(),
            _ => String::new(),
        };
        let command = usage
            .trim_start_matches("Usage:")
            .split_whitespace()
            .take_while(|w| !w.starts_with(['-', '<', '[']))
            .collect::<Vec<_>>()
            .join(" ");
        UsageError { message, command }
    }
}

/// The command and the subcommands named in `args` (its first element is the program).
fn command_path(cli: &clap::Command, args: &[String]) -> String {
    let mut path = vec![cli.get_name().to_string()];
    let mut current = cli;
    for arg in args.iter().skip(1) {
        if let Some(sub) = current.find_subcommand(arg) {
            path.push(sub.get_name().to_string());
            current = sub;
        }
    }
    path.join(" ")
}

/// For the command lines: output to a reader that went away (`strata-oci list | head -1`)
/// ends the process as SIGPIPE ends a C or Go tool, quietly, instead of Rust's panic with a
/// backtrace. (Rust ignores SIGPIPE, so `println!` panics with EPIPE; SIGPIPE itself cannot
/// be restored process-wide: a monitor writing to a CLI that was killed must live on.)
pub fn end_quietly_when_stdout_closes() {
    std::panic::set_hook(Box::new({
        let default_hook = std::panic::take_hook();
        move |info| {
            let message = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or_default();
            if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
                die_of_sigpipe();
            }
            default_hook(info);
        }
    }));
}

/// A command whose output went to a reader that left (`strata inspect IMG | head`) ends as
/// SIGPIPE ends a C or Go tool, without an error line: for the errors written output returns.
pub fn end_quietly_if_broken_pipe(e: &(dyn Error + 'static)) {
    let mut cause: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) {
            die_of_sigpipe();
        }
        cause = c.source();
    }
}

fn die_of_sigpipe() -> ! {
    // SAFETY: restoring the default action and raising it; nothing runs after.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    std::process::exit(128 + libc::SIGPIPE)
}

#[cfg(test)]
mod tests {
    use super::{one_line, UsageError};
    use std::io;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {path}: {source}")]
    struct ReadError {
        path: String,
        source: io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("starting the container")]
    struct Outer(#[source] ReadError);

    fn not_found() -> io::Error {
        io::Error::new(io::ErrorKind::NotFound, "No such file or directory")
    }

    #[test]
    fn a_cause_in_the_message_is_not_repeated() {
        let e = ReadError { path: "/b/config.json".into(), source: not_found() };
        assert_eq!(one_line(&e), "cannot read /b/config.json: No such file or directory");
    }

    #[test]
    fn causes_the_message_lacks_are_appended_in_order() {
        let e = Outer(ReadError { path: "/b/config.json".into(), source: not_found() });
        assert_eq!(one_line(&e), "starting the container: cannot read /b/config.json: No such file or directory");
        let e = anyhow::Error::new(not_found()).context("loading x").context("run");
        assert_eq!(one_line(e.as_ref()), "run: loading x: No such file or directory");
    }

    #[test]
    fn os_errors_read_as_the_kernels_words() {
        assert_eq!(super::os_words(&io::Error::from_raw_os_error(2)), "no such file or directory");
        assert_eq!(super::os_words(&io::Error::other("Plain")), "plain");
    }

    #[test]
    fn a_usage_error_is_one_line_and_the_command_to_ask() {
        use clap::{Arg, Command};
        let cli = || {
            Command::new("strata").subcommand(
                Command::new("run")
                    .arg(Arg::new("memory").long("memory"))
                    .arg(Arg::new("pull").long("pull").value_parser(["always", "never"]))
                    .arg(Arg::new("image").required(true)),
            )
        };
        let usage = |args: &[&str]| UsageError::from_clap(&cli().try_get_matches_from(args).unwrap_err());
        let e = usage(&["strata", "run", "--memroy", "1m", "img"]);
        assert_eq!(e.message, "unexpected argument '--memroy' found (did you mean '--memory'?)");
        assert_eq!(e.command, "strata run");
        let e = usage(&["strata", "runn"]);
        assert_eq!(e.message, "unrecognized subcommand 'runn' (did you mean 'run'?)");
        assert_eq!(e.command, "strata");
        let e = usage(&["strata", "run"]);
        assert_eq!(e.message, "the following required arguments were not provided: <image>");
        let e = usage(&["strata", "run", "--pull", "sometimes", "img"]);
        assert_eq!(e.message, "invalid value 'sometimes' for '--pull <pull>' [possible values: always, never]");
        // A bad value's error has no usage: the command is found in the arguments.
        let args: Vec<String> = ["strata", "run", "--pull", "sometimes", "img"].map(String::from).into();
        let e = UsageError::of(&cli().try_get_matches_from(&args).unwrap_err(), &cli(), &args);
        assert_eq!(e.command, "strata run");
    }
}
