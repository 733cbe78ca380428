//! Small filesystem helpers every store shares: atomic file replacement, temp names, and
//! opening a path inside a root the way a container would see it.
//!
//! A command may be killed at any instant; anything another command reads must therefore be
//! either the old complete file or the new complete file, never a torn one.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// `path` (absolute inside a container, or relative) opened under `root` with `flags`,
/// resolved by the kernel as if `root` were `/` (symlinks and `..` never leave it,
/// RESOLVE_IN_ROOT) and never through a magic link of /proc.
pub fn open_in_root(
    root: &std::os::fd::OwnedFd,
    path: impl AsRef<Path>,
    flags: rustix::fs::OFlags,
) -> rustix::io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::ResolveFlags;
    let path = path.as_ref();
    let relative = path.strip_prefix("/").unwrap_or(path);
    let relative = if relative.as_os_str().is_empty() { Path::new(".") } else { relative };
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    openat2_retrying(root, relative, flags, resolve)
}

/// openat2(2), again while it says EAGAIN: a lookup scoped to a root (`RESOLVE_IN_ROOT`)
/// that goes through `..` fails so whenever a rename or mount anywhere on the host ran
/// meanwhile (the kernel cannot then vouch for the walk); it is meant to be retried.
pub fn openat2_retrying(
    dir: impl std::os::fd::AsFd,
    path: impl AsRef<Path>,
    flags: rustix::fs::OFlags,
    resolve: rustix::fs::ResolveFlags,
) -> rustix::io::Result<std::os::fd::OwnedFd> {
    let path = path.as_ref();
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(&dir, path, flags, rustix::fs::Mode::empty(), resolve) {
            Err(rustix::io::Errno::AGAIN) if tries < 1000 => tries += 1,
            done => return done,
        }
    }
}

/// Replace `path` with `data` atomically: write a temp file beside it, fsync, rename over.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Replace `path` atomically (temp file + rename) without fsync: for runtime state on tmpfs
/// (`/run`), which a power loss clears anyway, and files that need not outlive a crash (a
/// `--rm` container's record); a reader still never sees a torn file.
pub fn write_atomic_unsynced(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Remove a directory tree if it exists; a missing path is success.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Remove a file if it exists; a missing path is success.
pub fn remove_file_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// A unique name for a staging entry inside `dir`.
pub fn unique_name(dir: &Path, prefix: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    dir.join(format!("{prefix}{}-{n}-{nanos}", std::process::id()))
}

/// Total size in bytes of regular files under `path` (not following symlinks).
pub fn tree_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(entries) = fs::read_dir(&p) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

/// A filesystem of the kernel's (proc, sysfs, cgroups, ...), whose files are not a
/// container's data and may not even read as files.
pub fn is_kernel_fs(fd: &impl std::os::fd::AsFd) -> bool {
    const KERNEL: &[i64] = &[
        0x9fa0,      // proc
        0x6265_6572, // sysfs
        0x2701_9a9a, // cgroup (v1; 0x27e0eb is its older magic)
        0x0027_e0eb,
        0x6367_7270, // cgroup2
        0x1cd1,      // devpts
        0x1980_0202, // mqueue
        0x6462_6720, // debugfs
        0x7363_6673, // securityfs
        0x7472_6163, // tracefs
        0xcafe_4a11, // bpf
        0x6573_5546, // fuse (its server is the container's: a read can hang)
    ];
    rustix::fs::fstatfs(fd).is_ok_and(|fs| KERNEL.contains(&{ fs.f_type }))
}
