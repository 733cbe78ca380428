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

/// For the command lines: output to a reader that went away (`strata-oci list | head -1`)
/// ends the process as SIGPIPE ends a C or Go tool, quietly, instead of Rust's panic with a
/// backtrace. (Rust ignores SIGPIPE, so `println!` panics with EPIPE; SIGPIPE itself cannot
/// be restored process-wide: a monitor writing to a CLI that was killed must live on.)
pub fn end_quietly_when_stdout_closes() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            // SAFETY: restoring the default action and raising it; nothing runs after.
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                libc::raise(libc::SIGPIPE);
            }
            std::process::exit(128 + libc::SIGPIPE);
        }
        default_hook(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::one_line;
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
}
