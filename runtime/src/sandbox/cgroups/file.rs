//! Reading and writing single cgroupfs files, with errors that name the file and the value.
//!
//! Writes open an existing file (never create one: a missing file means a missing controller or
//! feature, and on a fake test tree it must fail the same way) and hand the value to the kernel in
//! one `write`, as cgroupfs expects.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use super::CgroupError;

/// Writes `value` to `file`. The kernel validates the value; its refusal becomes
/// `cgroup: writing "abc" to .../memory.limit_in_bytes: Invalid argument`.
pub(crate) fn write(file: &Path, value: &str) -> Result<(), CgroupError> {
    tracing::trace!(file = %file.display(), value, "cgroup write");
    #[cfg(test)]
    recorder::record(file, value);
    #[cfg(test)]
    let stored = super::fake::stored_value(file, value);
    #[cfg(not(test))]
    let stored = value;
    let result =
        OpenOptions::new().write(true).truncate(true).open(file).and_then(|mut f| f.write_all(stored.as_bytes()));
    #[cfg(test)]
    if result.is_ok() {
        super::fake::after_write(file, value);
    }
    result.map_err(|err| CgroupError::Write { file: file.to_path_buf(), value: value.to_string(), err })
}

/// Reads a whole file, trimmed of the trailing newline.
pub(crate) fn read(file: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(file)
        .map(|s| s.trim_end().to_string())
        .map_err(|err| CgroupError::Read { file: file.to_path_buf(), err })
}

/// Reads a file that may legitimately be absent (a feature this kernel lacks).
pub(crate) fn read_optional(file: &Path) -> Result<Option<String>, CgroupError> {
    match fs::read_to_string(file) {
        Ok(s) => Ok(Some(s.trim_end().to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(CgroupError::Read { file: file.to_path_buf(), err }),
    }
}

/// `mkdir` of one cgroup directory (the kernel fills it with the controllers' files), 0755
/// whatever the caller's umask: a container in a user namespace bind-mounts its cgroup as a
/// host uid that is not root, which a 0700 parent (umask 077) would stop.
pub(crate) fn mkdir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    #[cfg(test)]
    super::fake::on_mkdir(dir);
    Ok(())
}

/// `rmdir` of one cgroup directory (the kernel drops the files with it).
pub(crate) fn rmdir(dir: &Path) -> io::Result<()> {
    #[cfg(test)]
    super::fake::before_rmdir(dir);
    fs::remove_dir(dir)
}

/// Parses a single unsigned number; `max` (v2) reads as `None`.
pub(crate) fn parse_u64_or_max(file: &Path, text: &str) -> Result<Option<u64>, CgroupError> {
    let text = text.trim();
    if text == "max" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| CgroupError::Parse { file: file.to_path_buf(), content: text.to_string() })
}

pub(crate) fn read_u64(file: &Path) -> Result<u64, CgroupError> {
    let text = read(file)?;
    text.trim().parse().map_err(|_| CgroupError::Parse { file: file.to_path_buf(), content: text })
}

pub(crate) fn read_u64_optional(file: &Path) -> Result<Option<u64>, CgroupError> {
    match read_optional(file)? {
        None => Ok(None),
        Some(text) => parse_u64_or_max(file, &text),
    }
}

/// Looks up `key` in a flat-keyed file (`memory.events`, `cpu.stat`, `memory.oom_control`):
/// lines of `key value`.
pub(crate) fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// Every `key value` line of a flat-keyed file (`memory.stat`); lines that are not one are
/// skipped.
pub(crate) fn keyed_values(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (k, v) = line.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// The numbers of a space-separated list (`cpuacct.usage_percpu`).
pub(crate) fn u64_list(text: &str) -> Vec<u64> {
    text.split_whitespace().filter_map(|n| n.parse().ok()).collect()
}

/// Reads the pids listed in a `cgroup.procs` file.
pub(crate) fn read_pids(file: &Path) -> Result<Vec<i32>, CgroupError> {
    let text = read(file)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().parse().map_err(|_| CgroupError::Parse { file: file.to_path_buf(), content: l.to_string() }))
        .collect()
}

/// Test-only log of every write made by this thread, in order: a fake cgroupfs keeps only the last
/// value written to a file, while `devices.allow` or `io.max` take many writes.
#[cfg(test)]
pub(crate) mod recorder {
    use std::cell::RefCell;
    use std::path::{Path, PathBuf};

    thread_local! {
        static WRITES: RefCell<Vec<(PathBuf, String)>> = const { RefCell::new(Vec::new()) };
    }

    pub(crate) fn record(file: &Path, value: &str) {
        WRITES.with(|w| w.borrow_mut().push((file.to_path_buf(), value.to_string())));
    }

    /// Returns and clears this thread's writes.
    pub(crate) fn take() -> Vec<(PathBuf, String)> {
        WRITES.with(|w| std::mem::take(&mut *w.borrow_mut()))
    }
}
