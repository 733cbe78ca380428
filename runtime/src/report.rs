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
