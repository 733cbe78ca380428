//! The daemon's log: lines in containerd's logfmt written to the `log` FIFO in the bundle of a
//! container the shim serves, which containerd copies into its own log while that container
//! exists. containerd-shim's logger keeps the FIFO of the container that started the shim; a
//! pod's or shim group's shim outlives that container, and its later lines went nowhere. This
//! one moves to another member's FIFO when the container it writes for is deleted, or to the
//! next container created if it had none left.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

/// The environment variable containerd-shim reads for the log level (as it does).
const LEVEL_ENV: &str = "RUST_LOG";

/// Where the lines go: the FIFO of container `id`, while containerd reads it.
struct Target {
    id: String,
    fifo: File,
}

struct ShimLog {
    target: Mutex<Option<Target>>,
}

static LOG: OnceLock<ShimLog> = OnceLock::new();

/// Log to the FIFO of container `id` in the working directory (the bundle of the container
/// that started the shim), at info level, debug with `debug` (or `RUST_LOG`'s level). Without
/// one (a shim started by hand) lines wait for the first container created.
pub fn init(debug: bool, id: &str) -> Result<(), String> {
    let log = LOG.get_or_init(|| ShimLog { target: Mutex::new(None) });
    *log.lock() = open_fifo(Path::new(".")).ok().map(|fifo| Target { id: id.to_string(), fifo });
    log::set_logger(log).map_err(|e| e.to_string())?;
    let wanted = std::env::var(LEVEL_ENV).ok().and_then(|l| l.parse().ok()).unwrap_or(log::LevelFilter::Info);
    log::set_max_level(if debug { wanted.max(log::LevelFilter::Debug) } else { wanted });
    Ok(())
}

/// Container `id` of `bundle` was created: log there if the log has nowhere to go.
pub fn created(id: &str, bundle: &Path) {
    let Some(log) = LOG.get() else { return };
    let mut target = log.lock();
    if target.is_none() {
        *target = open_fifo(bundle).ok().map(|fifo| Target { id: id.to_string(), fifo });
    }
}

/// Container `id` was deleted: if the log went to its FIFO, it moves to the first of `others`
/// (the containers left: id and bundle) whose FIFO containerd reads.
pub fn deleted<'a>(id: &str, others: impl IntoIterator<Item = (&'a str, &'a Path)>) {
    let Some(log) = LOG.get() else { return };
    let mut target = log.lock();
    if target.as_ref().is_some_and(|t| t.id == id) {
        *target = others
            .into_iter()
            .find_map(|(id, bundle)| open_fifo(bundle).ok().map(|fifo| Target { id: id.to_string(), fifo }));
    }
}

/// The bundle's `log` FIFO, for writing, if containerd has it open for reading (without a
/// reader, opening fails at once instead of waiting for one). Writes block as usual.
fn open_fifo(bundle: &Path) -> std::io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        bundle.join("log"),
        OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    let flags = rustix::fs::fcntl_getfl(fd.as_fd())?;
    rustix::fs::fcntl_setfl(fd.as_fd(), flags - OFlags::NONBLOCK)?;
    Ok(File::from(fd))
}

impl ShimLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Target>> {
        self.target.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl log::Log for ShimLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        if let Some(target) = self.lock().as_mut() {
            // One write per line: written piece by piece (as `writeln!` on a file does), a
            // line could be cut by another writer's on the way into containerd's log.
            let line = format!(
                "time=\"{}\" level={} msg=\"{}\"\n",
                strata::lifecycle::now_rfc3339(),
                record.level().as_str().to_lowercase(),
                record.args().to_string().replace('\\', "\\\\").replace('"', "\\\"")
            );
            // A reader gone (containerd restarting) costs the line, never the shim: EPIPE,
            // as SIGPIPE is ignored.
            let _ = target.fifo.write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}
