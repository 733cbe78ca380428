//! The compiled-code cache: wasmtime artifacts on disk, keyed by what makes them valid.
//!
//! Layout under the cache directory (default [`super::DEFAULT_CACHE_DIR`]):
//!
//! ```text
//! v1/<compat>/<sha256-hex>.cwasm   wasmtime's serialized artifact + a 64-byte trailer
//! v1/<compat>/<sha256-hex>.checked   "<boot> <ino>-<size>-<mtime>-<ctime>": the artifact file
//!                                  with that identity passed its CRC in that boot
//! v1/index/<ino>-<size>-<mtime>-<ctime>   33 bytes: module sha256 + kind (skips re-hashing)
//! ```
//!
//! `<compat>` is [`super::engine::compat_key`]: wasmtime's compatibility hash plus our engine
//! settings, so an artifact from another wasmtime or config is never even looked at. The trailer
//! (magic, kind, payload length, CRC-32 of the payload, module digest, compat key) is checked
//! before wasmtime sees a byte: a truncated, corrupt, mislabelled or stale entry is removed and
//! rebuilt, never trusted. Files are written to a temp name and renamed into place, so readers
//! see a whole old entry, a whole new one, or none; they are not fsynced: a crash can leave a
//! torn entry, which the trailer check catches.
//!
//! The CRC covers every byte, so checking it reads the whole artifact (megabytes for a large
//! module) at every start, where wasmtime itself only maps the pages it runs. So once an
//! artifact file's CRC passed, its `.checked` file records the file's identity (inode, size,
//! mtime, ctime) and the boot, and while both hold only the trailer is checked: after its
//! first check in a boot, an artifact's bytes in the page cache and on disk are trusted until
//! the next boot. The CRC guards against accidents (the cache is writable by its owner alone,
//! who could as well write a valid CRC): a write through a file descriptor gives the file a new
//! ctime; a record is only made for a file last changed over a second before (a change within
//! the same clock tick could keep the ctime), unchanged while it was read, and synced to disk
//! first (so a writeback error shows, and a crash, which could lose unsynced bytes, is a new
//! boot anyway); and only on the kernel's local filesystems, whose times are the host's clock.
//!
//! After the container's `pivot_root` the host path is gone, so [`ArtifactCache`] keeps a
//! directory fd opened before the pivot and does everything through `openat` on it. If the
//! directory is not writable (a user namespace, a read-only root), the cache degrades to
//! compiling in memory; it must never make a run fail.

use super::engine::compat_key;
use super::kind::WasmKind;
use super::WasmError;
use crate::digest::Digest;
use rustix::fs::{AtFlags, Mode, OFlags};
use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

const VERSION_DIR: &str = "v1";
const INDEX_DIR: &str = "v1/index";
const TRAILER_MAGIC: &[u8; 8] = b"STRATAWC";
const TRAILER_VERSION: u8 = 1;
const TRAILER_LEN: usize = 64;
const ARTIFACT_EXT: &str = ".cwasm";
const CHECKED_EXT: &str = ".checked";

/// A compiled module or component, ready to instantiate.
pub enum Compiled {
    Module(Module),
    Component(Component),
}

/// What [`precompile`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// A valid artifact was already there.
    Hit,
    /// The module was compiled and stored.
    Compiled,
}

/// A cache directory, held open by fd so it stays usable after `pivot_root`.
#[derive(Debug)]
pub struct ArtifactCache {
    dir: OwnedFd,
    path: PathBuf,
    /// This boot's id, which `.checked` records name; `None` (no /proc, or a cache on a network
    /// or FUSE filesystem, whose server sets the times): no records are used.
    boot: Option<String>,
}

impl ArtifactCache {
    /// Open (creating it, mode 0700, if needed) the cache directory `dir`. Call this before
    /// `pivot_root`; the fd is close-on-exec.
    ///
    /// An artifact is run as native code, so a directory another user could write to (not
    /// ours, or group- or world-writable: `STRATA_WASM_CACHE` pointed somewhere shared) is
    /// refused, and the module is compiled in memory instead.
    pub fn open(dir: &Path) -> Result<ArtifactCache, WasmError> {
        use std::os::unix::fs::DirBuilderExt;
        if let Err(e) = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
            // Unwritable parents are fine as long as the directory itself exists.
            if !dir.is_dir() {
                return Err(WasmError::Cache { path: dir.to_path_buf(), op: "create", source: e });
            }
        }
        let fd = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| WasmError::Cache { path: dir.to_path_buf(), op: "open", source: e.into() })?;
        let st = rustix::fs::fstat(&fd).map_err(|e| WasmError::Cache {
            path: dir.to_path_buf(),
            op: "stat",
            source: e.into(),
        })?;
        if st.st_uid != rustix::process::geteuid().as_raw() || st.st_mode & 0o022 != 0 {
            let source = io::Error::new(
                io::ErrorKind::PermissionDenied,
                "others may write to it (not ours, or group- or world-writable)",
            );
            return Err(WasmError::Cache { path: dir.to_path_buf(), op: "trust", source });
        }
        let local = rustix::fs::fstatfs(&fd).is_ok_and(|fs| identity_is_the_kernels(&fs));
        Ok(ArtifactCache { dir: fd, path: dir.to_path_buf(), boot: boot_id().filter(|_| local) })
    }

    /// The host path the cache was opened at (for messages; it may not resolve after a pivot).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this process may add entries (not in a user namespace that maps us to another
    /// user, not on a read-only mount).
    pub fn writable(&self) -> bool {
        use rustix::fs::Access;
        rustix::fs::accessat(&self.dir, ".", Access::WRITE_OK | Access::EXEC_OK, AtFlags::EACCESS).is_ok()
    }

    /// The raw directory fd, e.g. to keep it out of an fd-closing sweep before exec.
    pub fn as_raw_fd(&self) -> i32 {
        self.dir.as_raw_fd()
    }

    /// Load the artifact of module `digest` for `engine`, if a valid one is stored. A bad entry
    /// (torn, corrupt, another kind, not loadable) is removed and reported as a miss.
    pub(crate) fn load(&self, engine: &Engine, compat: &str, digest: &Digest, kind: WasmKind) -> Option<Compiled> {
        let file = self.open_verified(compat, digest, kind)?;
        match deserialize_verified(engine, &file, kind) {
            Ok(compiled) => Some(compiled),
            Err(e) => {
                tracing::debug!("wasm cache entry {digest} does not load ({e}); rebuilding");
                self.remove_entry(compat, digest);
                None
            }
        }
    }

    /// The artifact file of module `digest`, open for reading, if the entry is whole and its
    /// trailer (labels, length, CRC) checks out; a bad entry is removed. Only file I/O: nothing
    /// of the artifact is parsed, so a privileged process may call this and leave
    /// [`deserialize_verified`] to the less privileged one that runs the code. The CRC is
    /// skipped for the very file it passed for before in this boot (its `.checked` record).
    pub(crate) fn open_verified(&self, compat: &str, digest: &Digest, kind: WasmKind) -> Option<File> {
        let name = artifact_name(compat, digest);
        let file = match self.open_file(&name) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::debug!("wasm cache: cannot open {name}: {e}");
                return None;
            }
        };
        let before = match file.metadata() {
            Ok(md) => md,
            Err(e) => {
                tracing::debug!("wasm cache: cannot stat {name}: {e}");
                return None;
            }
        };
        let record = self.boot.as_deref().map(|boot| checked_record(boot, &FileIdentity::of(&before)));
        let checked_name = checked_name(compat, digest);
        let checked =
            record.as_deref().is_some_and(|r| self.read_small(&checked_name).is_some_and(|c| c == r.as_bytes()));
        let check = if checked { Check::Trailer } else { Check::Whole };
        if let Err(why) = verify(&file, before.len(), compat, digest, kind, check) {
            tracing::debug!("wasm cache entry {digest} is invalid ({why}); rebuilding");
            self.remove_entry(compat, digest);
            return None;
        }
        if let Some(record) = record.filter(|_| !checked) {
            let unchanged = file.metadata().is_ok_and(|after| FileIdentity::of(&after) == FileIdentity::of(&before));
            if unchanged && settled(&before) && file.sync_data().is_ok() {
                let _ = self.write_atomic(&checked_name, |out| out.write_all_at(record.as_bytes(), 0));
            }
        }
        Some(file)
    }

    /// Store `serialized` (wasmtime's artifact for module `digest`) atomically. Failures are
    /// returned for logging; the caller goes on with the in-memory copy.
    pub(crate) fn store(&self, compat: &str, digest: &Digest, kind: WasmKind, serialized: &[u8]) -> io::Result<()> {
        self.store_from(compat, digest, kind, &mut &serialized[..])
    }

    /// [`ArtifactCache::store`] of what `serialized` reads to its end, streamed (the artifact
    /// is never held in memory whole).
    pub(crate) fn store_from(
        &self,
        compat: &str,
        digest: &Digest,
        kind: WasmKind,
        serialized: &mut dyn io::Read,
    ) -> io::Result<()> {
        self.mkdirs(&[VERSION_DIR, &format!("{VERSION_DIR}/{compat}")])?;
        self.write_atomic(&artifact_name(compat, digest), |out| {
            let mut crc = crc32fast::Hasher::new();
            let (mut buf, mut len) = (vec![0u8; 256 * 1024], 0u64);
            loop {
                let n = match serialized.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                crc.update(&buf[..n]);
                out.write_all_at(&buf[..n], len)?;
                len += n as u64;
            }
            out.write_all_at(&trailer_for(compat, digest, kind, crc.finalize(), len), len)
        })
    }

    /// The module digest and kind recorded for a module file with this identity, if any.
    pub(crate) fn index_lookup(&self, id: &FileIdentity) -> Option<(Digest, WasmKind)> {
        let buf = self.read_small(&id.index_name()).filter(|b| b.len() == 33)?;
        let digest = Digest::from_hex(&hex::encode(&buf[..32])).ok()?;
        Some((digest, WasmKind::from_byte(buf[32])?))
    }

    pub(crate) fn index_store(&self, id: &FileIdentity, digest: &Digest, kind: WasmKind) -> io::Result<()> {
        self.mkdirs(&[VERSION_DIR, INDEX_DIR])?;
        let mut data = hex::decode(digest.hex()).map_err(io::Error::other)?;
        data.push(kind.as_byte());
        self.write_atomic(&id.index_name(), |out| out.write_all_at(&data, 0))
    }

    fn open_file(&self, name: &str) -> io::Result<File> {
        let fd = rustix::fs::openat(&self.dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(File::from(fd))
    }

    fn remove(&self, name: &str) {
        let _ = rustix::fs::unlinkat(&self.dir, name, AtFlags::empty());
    }

    /// An artifact and its `.checked` record.
    fn remove_entry(&self, compat: &str, digest: &Digest) {
        self.remove(&artifact_name(compat, digest));
        self.remove(&checked_name(compat, digest));
    }

    /// The contents of a small file (an index entry, a `.checked` record: up to 255 bytes; a
    /// longer one is `None`).
    fn read_small(&self, name: &str) -> Option<Vec<u8>> {
        let file = self.open_file(name).ok()?;
        let mut buf = [0u8; 256];
        let n = read_full(&file, &mut buf).ok()?;
        (n < buf.len()).then(|| buf[..n].to_vec())
    }

    fn mkdirs(&self, dirs: &[&str]) -> io::Result<()> {
        for d in dirs {
            match rustix::fs::mkdirat(&self.dir, *d, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Create `name` whole or not at all: `write` fills a temp file, which is then renamed.
    fn write_atomic(&self, name: &str, write: impl FnOnce(&File) -> io::Result<()>) -> io::Result<()> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        // The pid alone is no name: every wasm container's process is pid 1 in its namespace,
        // and a leftover of one that was killed mid-write would block the entry for good.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let tmp = format!("{name}.tmp-{}-{nanos}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let fd = rustix::fs::openat(
            &self.dir,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let result = write(&File::from(fd))
            .and_then(|()| rustix::fs::renameat(&self.dir, tmp.as_str(), &self.dir, name).map_err(io::Error::from));
        if result.is_err() {
            self.remove(&tmp);
        }
        result
    }
}

/// Who a module file is, cheaply: enough to find its digest again without reading it. The
/// kernel sets ctime on every change and nobody can set it back, so a file whose bytes changed
/// gets a new identity. `st_dev` is left out on purpose: an overlay mount has a new one per
/// container while the (lower-layer) inode stays the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIdentity {
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileIdentity {
    pub fn of(md: &std::fs::Metadata) -> FileIdentity {
        FileIdentity {
            ino: md.ino(),
            size: md.size(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        }
    }

    fn index_name(&self) -> String {
        format!("{INDEX_DIR}/{}", self.stamp())
    }

    /// `<ino>-<size>-<mtime>-<ctime>`, times as seconds.nanoseconds.
    fn stamp(&self) -> String {
        let (m, c) = (self.mtime, self.ctime);
        format!("{}-{}-{}.{:09}-{}.{:09}", self.ino, self.size, m.0, m.1, c.0, c.1)
    }
}

fn artifact_name(compat: &str, digest: &Digest) -> String {
    format!("{VERSION_DIR}/{compat}/{}{ARTIFACT_EXT}", digest.hex())
}

fn checked_name(compat: &str, digest: &Digest) -> String {
    format!("{VERSION_DIR}/{compat}/{}{CHECKED_EXT}", digest.hex())
}

/// magic(8) version(1) kind(1) reserved(2) crc32(4) payload_len(8) digest(32) compat(8)
fn trailer(compat: &str, digest: &Digest, kind: WasmKind, payload: &[u8]) -> [u8; TRAILER_LEN] {
    trailer_for(compat, digest, kind, crc32fast::hash(payload), payload.len() as u64)
}

fn trailer_for(compat: &str, digest: &Digest, kind: WasmKind, crc: u32, len: u64) -> [u8; TRAILER_LEN] {
    let mut t = [0u8; TRAILER_LEN];
    t[..8].copy_from_slice(TRAILER_MAGIC);
    t[8] = TRAILER_VERSION;
    t[9] = kind.as_byte();
    t[12..16].copy_from_slice(&crc.to_le_bytes());
    t[16..24].copy_from_slice(&len.to_le_bytes());
    if let Ok(d) = hex::decode(digest.hex()) {
        t[24..56].copy_from_slice(&d);
    }
    if let Ok(c) = hex::decode(compat) {
        let n = c.len().min(8);
        t[56..56 + n].copy_from_slice(&c[..n]);
    }
    t
}

/// How much of an artifact [`verify`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Length and labels only (the file's CRC passed before: its `.checked` record).
    Trailer,
    /// And the CRC of every byte.
    Whole,
}

#[cfg(test)]
thread_local! {
    /// How many whole-file CRC checks this thread ran (what the `.checked` records save).
    static WHOLE_CHECKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Seconds added to the real clock where `settled` looks, so a test decides what is settled.
    static CLOCK_OFFSET: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

/// Check an artifact file of `len` bytes against its trailer: length, labels, and (for
/// [`Check::Whole`]) the CRC of every byte.
fn verify(file: &File, len: u64, compat: &str, digest: &Digest, kind: WasmKind, check: Check) -> Result<(), String> {
    if len < TRAILER_LEN as u64 {
        return Err(format!("truncated: {len} bytes"));
    }
    let payload_len = len - TRAILER_LEN as u64;
    let mut t = [0u8; TRAILER_LEN];
    file.read_exact_at(&mut t, payload_len).map_err(|e| format!("read: {e}"))?;
    let expected = trailer(compat, digest, kind, &[]);
    if t[..10] != expected[..10] || t[24..] != expected[24..] {
        return Err("trailer does not match (torn, or another module, kind or engine)".into());
    }
    if u64::from_le_bytes(t[16..24].try_into().unwrap_or_default()) != payload_len {
        return Err("length does not match the trailer".into());
    }
    if check == Check::Trailer {
        return Ok(());
    }
    #[cfg(test)]
    WHOLE_CHECKS.with(|n| n.set(n.get() + 1));
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; (256 * 1024).min(payload_len as usize)];
    let mut off = 0u64;
    while off < payload_len {
        let want = buf.len().min((payload_len - off) as usize);
        let n = file.read_at(&mut buf[..want], off).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("shorter than its length".into());
        }
        crc.update(&buf[..n]);
        off += n as u64;
    }
    if crc.finalize().to_le_bytes() != t[12..16] {
        return Err("checksum mismatch".into());
    }
    Ok(())
}

/// What an artifact's `.checked` record says: the boot and the identity of the file whose CRC
/// passed.
fn checked_record(boot: &str, id: &FileIdentity) -> String {
    format!("{boot} {}\n", id.stamp())
}

/// Whether a file last changed (`md`'s ctime) over a second ago: a later write is then sure
/// to give it another ctime, even on a filesystem that stamps times by the clock tick.
fn settled(md: &std::fs::Metadata) -> bool {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let now_ns = now.as_nanos() as i128;
    #[cfg(test)]
    let now_ns = now_ns + CLOCK_OFFSET.with(|o| o.get()) as i128 * 1_000_000_000;
    let changed_ns = md.ctime() as i128 * 1_000_000_000 + md.ctime_nsec() as i128;
    now_ns - changed_ns > 1_000_000_000
}

/// This boot's id (the kernel's random one), `None` if it cannot be read.
fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')).then(|| id.to_string())
}

/// Whether the identities (inode, size, times) of files on the filesystem `fs` describes were
/// assigned by the kernel of a local filesystem, so no one can make another file show them.
/// The stat index maps an identity to a module digest for every container on the host: a FUSE
/// or network filesystem (a volume) can present any inode number and times, and could point
/// another image's module file at its own module. Those files are found by digest only. (An
/// overlay shows its lower layer's inodes: one whose lower layer is such a filesystem is not
/// told apart.)
pub(crate) fn identity_is_the_kernels(fs: &rustix::fs::StatFs) -> bool {
    const OVERLAYFS: i64 = 0x794c_7630;
    const EXT4: i64 = 0xef53;
    const XFS: i64 = 0x5846_5342;
    const BTRFS: i64 = 0x9123_683e;
    const TMPFS: i64 = 0x0102_1994;
    // (`f_type`'s width differs between targets.)
    #[allow(clippy::unnecessary_cast)]
    let kind = fs.f_type as i64;
    [OVERLAYFS, EXT4, XFS, BTRFS, TMPFS].contains(&kind)
}

/// Load an artifact [`ArtifactCache::open_verified`] returned: by mmap, or from a copy when
/// mapping fails (a verified entry on a noexec mount).
pub(crate) fn deserialize_verified(engine: &Engine, file: &File, kind: WasmKind) -> Result<Compiled, wasmtime::Error> {
    match deserialize(engine, file, kind) {
        Ok(compiled) => Ok(compiled),
        Err(mmap_err) => {
            let compiled =
                deserialize_copy(engine, file, kind).map_err(|e| e.context(format!("mmap failed: {mmap_err}")));
            if compiled.is_ok() {
                tracing::debug!("wasm cache entry loaded as a copy (mmap failed: {mmap_err})");
            }
            compiled
        }
    }
}

/// Load a verified artifact by mmap. Modules map the open file. wasmtime 48 has no
/// `Component::deserialize_open_file`, so components go through `/proc/self/fd` (still an
/// mmap), or are copied when /proc is not mounted.
fn deserialize(engine: &Engine, file: &File, kind: WasmKind) -> Result<Compiled, wasmtime::Error> {
    // SAFETY (both): the file is one we wrote (checked by trailer and digest, and by its CRC in
    // this boot: `open_verified`), it is never modified in place (only replaced by rename), and
    // wasmtime checks its own header and the engine compatibility again.
    match kind {
        WasmKind::Module => {
            let file = file.try_clone().map_err(wasmtime::Error::new)?;
            unsafe { Module::deserialize_open_file(engine, file) }.map(Compiled::Module)
        }
        WasmKind::Component => {
            let proc_path = PathBuf::from(format!("/proc/self/fd/{}", file.as_fd().as_raw_fd()));
            if !proc_path.exists() {
                return deserialize_copy(engine, file, kind);
            }
            unsafe { Component::deserialize_file(engine, &proc_path) }.map(Compiled::Component)
        }
    }
}

/// Load a verified artifact from a copy in memory (the trailer cut off).
fn deserialize_copy(engine: &Engine, file: &File, kind: WasmKind) -> Result<Compiled, wasmtime::Error> {
    let bytes = read_all(file).map_err(wasmtime::Error::new)?;
    let payload = &bytes[..bytes.len().saturating_sub(TRAILER_LEN)];
    // SAFETY: as in `deserialize`; the bytes are a private copy.
    match kind {
        WasmKind::Module => unsafe { Module::deserialize(engine, payload) }.map(Compiled::Module),
        WasmKind::Component => unsafe { Component::deserialize(engine, payload) }.map(Compiled::Component),
    }
}

/// The whole file, read from offset 0 whatever its position.
fn read_all(file: &File) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; file.metadata()?.len() as usize];
    let n = read_full(file, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn read_full(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64)? {
            0 => break,
            m => n += m,
        }
    }
    Ok(n)
}

/// Compile `bytes` (already classified as `kind`) into a serialized artifact, without loading
/// the code: no executable memory is made (a compiler child's seccomp filter refuses it).
pub(crate) fn precompile_bytes(engine: &Engine, bytes: &[u8], kind: WasmKind) -> Result<Vec<u8>, wasmtime::Error> {
    match kind {
        WasmKind::Module => engine.precompile_module(bytes),
        WasmKind::Component => engine.precompile_component(bytes),
    }
}

/// Compile `bytes` (already classified as `kind`) with `engine`.
pub(crate) fn compile(engine: &Engine, bytes: &[u8], kind: WasmKind) -> Result<Compiled, wasmtime::Error> {
    match kind {
        WasmKind::Module => Module::new(engine, bytes).map(Compiled::Module),
        WasmKind::Component => Component::new(engine, bytes).map(Compiled::Component),
    }
}

/// Get `bytes` compiled: from the cache when a valid artifact is there, else compile, store
/// (best effort) and return. `identity`, when given, is recorded in the stat index.
pub(crate) fn load_or_compile(
    engine: &Engine,
    cache: Option<&ArtifactCache>,
    bytes: &[u8],
    kind: WasmKind,
    identity: Option<&FileIdentity>,
) -> Result<(Compiled, CacheOutcome), wasmtime::Error> {
    let digest = Digest::of_bytes(bytes);
    if let Some(compiled) = cache.and_then(|c| load_by_digest(engine, c, &digest, kind, identity)) {
        return Ok((compiled, CacheOutcome::Hit));
    }
    let compat = compat_key(engine);
    let t = Instant::now();
    let compiled = compile(engine, bytes, kind)?;
    let ms = t.elapsed().as_millis();
    let Some(cache) = cache else {
        tracing::debug!("wasm cache off: {digest} ({kind}) compiled in memory in {ms} ms");
        return Ok((compiled, CacheOutcome::Compiled));
    };
    let serialized = match &compiled {
        Compiled::Module(m) => m.serialize(),
        Compiled::Component(c) => c.serialize(),
    };
    let stored = serialized.map_err(io::Error::other).and_then(|s| cache.store(&compat, &digest, kind, &s));
    match stored {
        Ok(()) => {
            tracing::debug!("wasm cache miss {digest} ({kind}) compiled in {ms} ms, stored");
            if let Some(id) = identity {
                let _ = cache.index_store(id, &digest, kind);
            }
        }
        Err(e) => tracing::debug!(
            "wasm cache miss {digest} ({kind}) compiled in {ms} ms; cache not writable ({e}), kept in memory"
        ),
    }
    Ok((compiled, CacheOutcome::Compiled))
}

/// The artifact of module `digest`, if the cache holds a valid one (never compiles); `identity`,
/// when given, is then recorded in the stat index.
pub(crate) fn load_by_digest(
    engine: &Engine,
    cache: &ArtifactCache,
    digest: &Digest,
    kind: WasmKind,
    identity: Option<&FileIdentity>,
) -> Option<Compiled> {
    let t = Instant::now();
    let compiled = cache.load(engine, &compat_key(engine), digest, kind)?;
    tracing::debug!("wasm cache hit {digest} ({kind}) loaded in {} us", t.elapsed().as_micros());
    if let Some(id) = identity {
        let _ = cache.index_store(id, digest, kind);
    }
    Some(compiled)
}

/// The fast path: a module file whose identity is in the stat index and whose artifact is
/// valid loads without reading or hashing the module at all.
pub(crate) fn load_by_identity(
    engine: &Engine,
    cache: &ArtifactCache,
    identity: &FileIdentity,
) -> Option<(Compiled, Digest)> {
    let t = Instant::now();
    let (digest, kind) = cache.index_lookup(identity)?;
    let compiled = cache.load(engine, &compat_key(engine), &digest, kind)?;
    tracing::debug!("wasm cache hit {digest} ({kind}, by file identity) loaded in {} us", t.elapsed().as_micros());
    Some((compiled, digest))
}

/// Compile `module_bytes` into the cache at `cache_dir` unless a valid artifact is there, in
/// this process (the tests' shortcut; strata compiles modules from images in a child without
/// privileges: [`precompile_check`], [`compile_stream`]).
#[cfg(test)]
fn precompile(cache_dir: &Path, module_bytes: &[u8]) -> Result<CacheOutcome, WasmError> {
    let kind = WasmKind::of(module_bytes).ok_or_else(|| WasmError::NotWasm {
        path: PathBuf::from("(module bytes)"),
        what: super::kind::describe_magic(module_bytes),
    })?;
    let cache = ArtifactCache::open(cache_dir)?;
    let engine = super::engine::new_engine().map_err(|e| WasmError::Engine(e.to_string()))?;
    load_or_compile(&engine, Some(&cache), module_bytes, kind, None)
        .map(|(_, outcome)| outcome)
        .map_err(|e| WasmError::Compile { path: PathBuf::from("(module bytes)"), message: super::error_chain(&e) })
}

/// A module file `strata pull`/`load` wants in the cache that is not there yet: what storing
/// an artifact for it needs. The compile itself happens elsewhere ([`compile_stream`], in a
/// child process with no privileges), and [`ModuleToCompile::store`] files what it wrote under
/// the digest computed here, of the file itself.
pub struct ModuleToCompile {
    cache: ArtifactCache,
    compat: String,
    digest: Digest,
    kind: WasmKind,
    identity: FileIdentity,
    /// Whether `identity` may go into the stat index ([`identity_is_the_kernels`]).
    indexable: bool,
    size: u64,
    file: File,
}

impl ModuleToCompile {
    /// The module's size in bytes (what the compiler's limits are sized by).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The module file, the very one its digest was computed from, for the compiler's input
    /// (its offset moved back to the start).
    pub fn input(&self) -> io::Result<File> {
        let mut file = self.file.try_clone()?;
        io::Seek::seek(&mut file, io::SeekFrom::Start(0))?;
        Ok(file)
    }

    /// Store the artifact a compiler wrote to `serialized` (read to its end, streamed, not
    /// parsed) and record the module file's identity in the stat index.
    pub fn store(&self, serialized: &mut dyn io::Read) -> Result<(), WasmError> {
        let path = self.cache.path().to_path_buf();
        self.cache
            .store_from(&self.compat, &self.digest, self.kind, serialized)
            .map_err(|source| WasmError::Cache { path, op: "store", source })?;
        tracing::debug!(
            "wasm cache miss {} ({}) compiled (in a child, without privileges), stored",
            self.digest,
            self.kind
        );
        if self.indexable {
            let _ = self.cache.index_store(&self.identity, &self.digest, self.kind);
        }
        Ok(())
    }
}

/// The module file at `path` against the cache at `cache_dir`: `None` when a valid artifact is
/// there (its identity is then recorded in the stat index, so a container that runs this very
/// file, a snapshot's seen through overlayfs with the same inode, finds it by a stat), else
/// what [`ModuleToCompile::store`] needs. A file that is not wasm is an error naming it.
pub fn precompile_check(cache_dir: &Path, path: &Path) -> Result<Option<ModuleToCompile>, WasmError> {
    let open_err = |source| WasmError::Open { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(open_err)?;
    let md = file.metadata().map_err(open_err)?;
    let mut bytes = Vec::with_capacity(md.len() as usize);
    io::Read::read_to_end(&mut &file, &mut bytes).map_err(open_err)?;
    let kind = WasmKind::of(&bytes).ok_or_else(|| WasmError::NotWasm {
        path: path.to_path_buf(),
        what: super::kind::describe_magic(&bytes[..bytes.len().min(8)]),
    })?;
    let cache = ArtifactCache::open(cache_dir)?;
    let engine = super::engine::new_engine().map_err(|e| WasmError::Engine(e.to_string()))?;
    let compat = compat_key(&engine);
    let digest = Digest::of_bytes(&bytes);
    let identity = FileIdentity::of(&md);
    let indexable = rustix::fs::fstatfs(&file).is_ok_and(|fs| identity_is_the_kernels(&fs));
    if cache.open_verified(&compat, &digest, kind).is_some() {
        if indexable {
            let _ = cache.index_store(&identity, &digest, kind);
        }
        return Ok(None);
    }
    Ok(Some(ModuleToCompile { cache, compat, digest, kind, identity, indexable, size: md.len(), file }))
}

/// Compile the module read from `input` (to its end) and write its serialized artifact to
/// `out`: all a compiler child does; it opens no file.
pub fn compile_stream(input: &mut dyn io::Read, out: &mut dyn io::Write) -> Result<(), WasmError> {
    let what = PathBuf::from("(module)");
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes).map_err(|source| WasmError::Open { path: what.clone(), source })?;
    let kind = WasmKind::of(&bytes).ok_or_else(|| WasmError::NotWasm {
        path: what.clone(),
        what: super::kind::describe_magic(&bytes[..bytes.len().min(8)]),
    })?;
    let engine = super::engine::new_engine().map_err(|e| WasmError::Engine(e.to_string()))?;
    let t = Instant::now();
    let compile_err = |e: wasmtime::Error| WasmError::Compile { path: what.clone(), message: super::error_chain(&e) };
    let serialized = precompile_bytes(&engine, &bytes, kind).map_err(compile_err)?;
    tracing::debug!("wasm: {kind} compiled in {} ms", t.elapsed().as_millis());
    out.write_all(&serialized).map_err(|source| WasmError::Open { path: PathBuf::from("(output)"), source })
}

/// A temp file younger than this may be a write in progress (a compile streaming its
/// artifact, from the shim or another command): prune leaves it.
const TEMP_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The digests of the artifacts (of any engine) read within `within`, by their access time:
/// what strata-oci and the shim, which have no image store to tell, still use. Loading an
/// artifact reads it, and the kernel's `relatime` moves the access time at least once a day,
/// so `within` should be longer than a day. (On a `noatime` mount none looks recent.)
pub fn recently_used(cache_dir: &Path, within: std::time::Duration) -> HashSet<Digest> {
    let mut used = HashSet::new();
    let Ok(dirs) = std::fs::read_dir(cache_dir.join(VERSION_DIR)) else { return used };
    for dir in dirs.flatten().filter(|d| d.file_name() != "index") {
        for entry in std::fs::read_dir(dir.path()).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let Some(digest) =
                name.to_str().and_then(|n| n.strip_suffix(ARTIFACT_EXT)).and_then(|h| Digest::from_hex(h).ok())
            else {
                continue;
            };
            let idle = entry.metadata().ok().and_then(|m| m.accessed().ok()).and_then(|t| t.elapsed().ok());
            if idle.is_some_and(|idle| idle < within) {
                used.insert(digest);
            }
        }
    }
    used
}

/// Remove every artifact (with its `.checked` record) and index entry whose module digest is not
/// in `keep`, and temp files left by writes that did not finish (older than [`TEMP_GRACE`]);
/// returns the bytes freed. Artifacts of other engines (compat keys) are judged by digest
/// like ours: another strata version sharing the directory keeps what is still in use.
pub fn prune(cache_dir: &Path, keep: &HashSet<Digest>) -> Result<u64, WasmError> {
    let io_err = |path: &Path, op: &'static str| {
        let path = path.to_path_buf();
        move |source| WasmError::Cache { path, op, source }
    };
    let root = cache_dir.join(VERSION_DIR);
    let mut freed = 0u64;
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(&root, "read")(e)),
    };
    for dir in entries.flatten() {
        let dir_path = dir.path();
        if !dir.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let is_index = dir.file_name() == "index";
        for entry in std::fs::read_dir(&dir_path).map_err(io_err(&dir_path, "read"))?.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let digest = if name.contains(".tmp-") {
                None
            } else if is_index {
                std::fs::read(&path)
                    .ok()
                    .filter(|b| b.len() == 33)
                    .and_then(|b| Digest::from_hex(&hex::encode(&b[..32])).ok())
            } else {
                let stem = name.strip_suffix(ARTIFACT_EXT).or_else(|| name.strip_suffix(CHECKED_EXT));
                stem.and_then(|h| Digest::from_hex(h).ok())
            };
            if digest.is_some_and(|d| keep.contains(&d)) {
                continue;
            }
            let meta = entry.metadata().ok();
            let age = meta.as_ref().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
            if name.contains(".tmp-") && age.is_none_or(|a| a < TEMP_GRACE) {
                continue;
            }
            let size = meta.map(|m| m.len()).unwrap_or(0);
            match std::fs::remove_file(&path) {
                Ok(()) => freed += size,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path, "remove")(e)),
            }
        }
        if !is_index {
            // Empty directories of other engines go too; a racing writer recreates its own.
            let _ = std::fs::remove_dir(&dir_path);
        }
    }
    Ok(freed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::wasm::engine::new_engine;

    const HELLO: &str = r#"(module (func (export "_start")) (memory (export "memory") 1))"#;

    #[test]
    fn a_cache_others_may_write_to_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let made = t.path().join("made/here");
        ArtifactCache::open(&made).unwrap();
        assert_eq!(std::fs::metadata(&made).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o777)).unwrap();
        let Err(e) = ArtifactCache::open(&made) else { panic!("a world-writable cache was used") };
        assert!(e.to_string().contains("others may write to it"), "{e}");
        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o755)).unwrap();
        ArtifactCache::open(&made).unwrap();
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in walk(dir) {
            if e.extension().is_some_and(|x| x == "cwasm") {
                out.push(e);
            }
        }
        out
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    out.extend(walk(&p));
                } else {
                    out.push(p);
                }
            }
        }
        out
    }

    fn run_once(engine: &Engine, cache: &ArtifactCache, bytes: &[u8]) -> CacheOutcome {
        let kind = WasmKind::of(bytes).unwrap();
        load_or_compile(engine, Some(cache), bytes, kind, None).unwrap().1
    }

    #[test]
    fn miss_then_hit() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(tmp.path()).unwrap();
        let engine = new_engine().unwrap();
        let bytes = wat::parse_str(HELLO).unwrap();
        assert_eq!(run_once(&engine, &cache, &bytes), CacheOutcome::Compiled);
        assert_eq!(files(tmp.path()).len(), 1);
        assert_eq!(run_once(&engine, &cache, &bytes), CacheOutcome::Hit);
        // A fresh engine (another process) with the same config hits too.
        assert_eq!(run_once(&new_engine().unwrap(), &cache, &bytes), CacheOutcome::Hit);
    }

    #[test]
    fn a_verified_entry_also_loads_as_a_copy() {
        // The path taken when the cache sits on a noexec mount and mmap refuses PROT_EXEC.
        let tmp = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(tmp.path()).unwrap();
        let engine = new_engine().unwrap();
        for wat in [HELLO, "(component (core module (func (export \"f\"))))"] {
            let bytes = wat::parse_str(wat).unwrap();
            let kind = WasmKind::of(&bytes).unwrap();
            run_once(&engine, &cache, &bytes);
            let name = artifact_name(&compat_key(&engine), &Digest::of_bytes(&bytes));
            let file = cache.open_file(&name).unwrap();
            let len = file.metadata().unwrap().len();
            verify(&file, len, &compat_key(&engine), &Digest::of_bytes(&bytes), kind, Check::Whole).unwrap();
            assert!(deserialize_copy(&engine, &file, kind).is_ok());
        }
    }

    #[test]
    fn components_are_cached_too() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(tmp.path()).unwrap();
        let engine = new_engine().unwrap();
        let bytes = wat::parse_str("(component (core module (func (export \"f\"))))").unwrap();
        assert_eq!(run_once(&engine, &cache, &bytes), CacheOutcome::Compiled);
        assert_eq!(run_once(&engine, &cache, &bytes), CacheOutcome::Hit);
    }

    #[test]
    fn corrupt_or_truncated_entries_are_rebuilt() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(tmp.path()).unwrap();
        let engine = new_engine().unwrap();
        let bytes = wat::parse_str(HELLO).unwrap();
        run_once(&engine, &cache, &bytes);
        let artifact = files(tmp.path()).remove(0);
        let good = std::fs::read(&artifact).unwrap();

        // One flipped bit in the code: only the checksum can see it.
        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 0x10;
        std::fs::write(&artifact, &flipped).unwrap();
        assert_eq!(run_once(&engine, &cache, &bytes), CacheOutcome::Compiled);
        assert_eq!(std::fs::read(&artifact).unwrap(), good);

        // Torn write.
        std::fs::write(&artifact, &good[..good.len() / 3]).unwrap();
        assert_eq!(run_once(&engine, &cache, &bytes), CacheOutcome::Compiled);
        // Garbage, and an empty file.
        std::fs::write(&artifact, b"garbage").unwrap();
        assert_eq!(run_once(&engine, &cache, &bytes), CacheOutcome::Compiled);
        std::fs::write(&artifact, b"").unwrap();
        assert_eq!(run_once(&engine, &cache, &bytes), CacheOutcome::Compiled);
        assert_eq!(run_once(&engine, &cache, &bytes), CacheOutcome::Hit);
    }

    #[test]
    fn an_entry_for_another_module_or_kind_is_not_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(tmp.path()).unwrap();
        let engine = new_engine().unwrap();
        let a = wat::parse_str(HELLO).unwrap();
        let b = wat::parse_str(r#"(module (func (export "_start") nop))"#).unwrap();
        run_once(&engine, &cache, &a);
        run_once(&engine, &cache, &b);
        let compat = compat_key(&engine);
        let (da, db) = (Digest::of_bytes(&a), Digest::of_bytes(&b));
        // Put a's artifact under b's name: the trailer names a, so b is recompiled.
        let dir = tmp.path().join(VERSION_DIR).join(&compat);
        std::fs::copy(dir.join(format!("{}.cwasm", da.hex())), dir.join(format!("{}.cwasm", db.hex()))).unwrap();
        assert_eq!(run_once(&engine, &cache, &b), CacheOutcome::Compiled);
        assert!(cache.load(&engine, &compat, &da, WasmKind::Component).is_none());
    }

    #[test]
    fn stale_compat_key_is_not_used() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(tmp.path()).unwrap();
        let engine = new_engine().unwrap();
        let bytes = wat::parse_str(HELLO).unwrap();
        run_once(&engine, &cache, &bytes);
        // An artifact stored under the current key but written by another engine config (its
        // trailer and wasmtime header say so) is refused and rebuilt.
        let mut other = wasmtime::Config::new();
        other.epoch_interruption(false);
        let other = Engine::new(&other).unwrap();
        let foreign = other.precompile_module(&bytes).unwrap();
        let digest = Digest::of_bytes(&bytes);
        let compat = compat_key(&engine);
        // Same trailer as ours, so only wasmtime's own check can tell.
        cache.store(&compat, &digest, WasmKind::Module, &foreign).unwrap();
        assert!(cache.load(&engine, &compat, &digest, WasmKind::Module).is_none());
        assert_eq!(run_once(&engine, &cache, &bytes), CacheOutcome::Compiled);
        assert_eq!(run_once(&engine, &cache, &bytes), CacheOutcome::Hit);
        // And an artifact under another compat key is simply not looked at.
        assert_ne!(compat_key(&other), compat);
    }

    #[test]
    fn unwritable_cache_compiles_in_memory() {
        // Every write under v1/ fails (ENOTDIR), as writes do on a read-only or foreign-owned
        // cache in a user namespace; permissions alone would not stop root.
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(VERSION_DIR), b"not a directory").unwrap();
        let cache = ArtifactCache::open(tmp.path()).unwrap();
        let engine = new_engine().unwrap();
        let bytes = wat::parse_str(HELLO).unwrap();
        for _ in 0..2 {
            let (compiled, outcome) = load_or_compile(&engine, Some(&cache), &bytes, WasmKind::Module, None).unwrap();
            assert_eq!(outcome, CacheOutcome::Compiled);
            assert!(matches!(compiled, Compiled::Module(_)));
        }
        // A cache directory that cannot even be created is an error for `open` (the caller
        // then runs without a cache).
        assert!(ArtifactCache::open(&tmp.path().join("v1/sub")).is_err());
    }

    #[test]
    fn index_finds_the_digest_by_file_identity() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(tmp.path().join("cache").as_path()).unwrap();
        let engine = new_engine().unwrap();
        let bytes = wat::parse_str(HELLO).unwrap();
        let module = tmp.path().join("m.wasm");
        std::fs::write(&module, &bytes).unwrap();
        let id = FileIdentity::of(&std::fs::metadata(&module).unwrap());
        assert!(load_by_identity(&engine, &cache, &id).is_none());
        load_or_compile(&engine, Some(&cache), &bytes, WasmKind::Module, Some(&id)).unwrap();
        let (compiled, digest) = load_by_identity(&engine, &cache, &id).unwrap();
        assert_eq!(digest, Digest::of_bytes(&bytes));
        assert!(matches!(compiled, Compiled::Module(_)));
        // Rewriting the file changes its identity (ctime), so the old entry is not used.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&module, wat::parse_str("(module)").unwrap()).unwrap();
        let id2 = FileIdentity::of(&std::fs::metadata(&module).unwrap());
        assert_ne!(id, id2);
        assert!(load_by_identity(&engine, &cache, &id2).is_none());
    }

    fn records(dir: &Path) -> Vec<PathBuf> {
        walk(dir).into_iter().filter(|p| p.extension().is_some_and(|x| x == "checked")).collect()
    }

    /// Wait until a file written now gets a later ctime than `than` has (filesystems stamp times
    /// by the clock tick).
    fn a_tick_after(than: &Path) {
        let ctime = |p: &Path| {
            let md = std::fs::metadata(p).unwrap();
            (md.ctime(), md.ctime_nsec())
        };
        let probe = than.with_extension("probe");
        loop {
            std::fs::write(&probe, b"").unwrap();
            if ctime(&probe) > ctime(than) {
                break std::fs::remove_file(&probe).unwrap();
            }
            std::thread::yield_now();
        }
    }

    #[test]
    fn an_artifact_is_read_whole_once_until_it_changes() {
        use std::os::unix::fs::FileExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(tmp.path()).unwrap();
        let boot = cache.boot.clone().expect("this boot's id, on a local filesystem");
        let engine = new_engine().unwrap();
        let bytes = wat::parse_str(HELLO).unwrap();
        let (compat, digest) = (compat_key(&engine), Digest::of_bytes(&bytes));
        assert_eq!(run_once(&engine, &cache, &bytes), CacheOutcome::Compiled);
        let artifact = files(tmp.path()).remove(0);
        let whole = || WHOLE_CHECKS.with(|n| n.get());
        let opens = |cache: &ArtifactCache| cache.open_verified(&compat, &digest, WasmKind::Module).is_some();
        let record = || std::fs::read_to_string(&records(tmp.path())[0]).unwrap();
        let clock = |secs: i64| CLOCK_OFFSET.with(|o| o.set(secs));

        // Just written (the clock as if in the same second): read whole every time, no record,
        // since a write within the same clock tick could leave the file's ctime as it is.
        clock(-3600);
        let n = whole();
        assert!(opens(&cache) && opens(&cache));
        assert_eq!(whole(), n + 2);
        assert!(records(tmp.path()).is_empty());

        // Over a second later: read whole once more and recorded, then only its trailer is read.
        clock(2);
        assert!(opens(&cache));
        assert_eq!(whole(), n + 3);
        assert!(record().starts_with(&format!("{boot} ")), "{}", record());
        assert!(opens(&cache) && opens(&cache));
        assert_eq!(run_once(&engine, &cache, &bytes), CacheOutcome::Hit);
        assert_eq!(whole(), n + 3);

        // A record is only believed in the boot that made it.
        let other_boot = ArtifactCache { boot: Some("0".repeat(36)), ..ArtifactCache::open(tmp.path()).unwrap() };
        assert!(opens(&other_boot));
        assert_eq!(whole(), n + 4);
        assert!(record().starts_with(&"0".repeat(36)));
        assert!(opens(&cache));
        assert_eq!(whole(), n + 5);

        // One flipped bit written in place (same inode, same size): a new ctime, so the file is
        // read whole again, the flip caught and the artifact rebuilt; its record went with it.
        a_tick_after(&artifact);
        let good = std::fs::read(&artifact).unwrap();
        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 0x10;
        std::fs::OpenOptions::new().write(true).open(&artifact).unwrap().write_all_at(&flipped, 0).unwrap();
        assert_eq!(run_once(&engine, &cache, &bytes), CacheOutcome::Compiled);
        assert_eq!(whole(), n + 6);
        assert_eq!(std::fs::read(&artifact).unwrap(), good);
        assert!(records(tmp.path()).is_empty());

        // Prune keeps the record with its artifact, and removes it with it.
        assert!(opens(&cache));
        assert_eq!(records(tmp.path()).len(), 1);
        prune(tmp.path(), &[digest.clone()].into()).unwrap();
        assert_eq!((files(tmp.path()).len(), records(tmp.path()).len()), (1, 1));
        prune(tmp.path(), &HashSet::new()).unwrap();
        assert!(walk(tmp.path()).is_empty(), "{:?}", walk(tmp.path()));
    }

    #[test]
    fn precompile_then_prune() {
        let tmp = tempfile::tempdir().unwrap();
        let a = wat::parse_str(HELLO).unwrap();
        let b = wat::parse_str("(module)").unwrap();
        assert_eq!(precompile(tmp.path(), &a).unwrap(), CacheOutcome::Compiled);
        assert_eq!(precompile(tmp.path(), &a).unwrap(), CacheOutcome::Hit);
        assert_eq!(precompile(tmp.path(), &b).unwrap(), CacheOutcome::Compiled);
        assert!(matches!(precompile(tmp.path(), b"\x7fELF...."), Err(WasmError::NotWasm { .. })));
        let keep: HashSet<Digest> = [Digest::of_bytes(&a)].into();
        // A write in progress stays; one left by a write long gone goes.
        let artifact_dir = files(tmp.path())[0].parent().unwrap().to_path_buf();
        let writing = artifact_dir.join(format!("{}.cwasm.tmp-1-2-3", Digest::of_bytes(&b).hex()));
        let stale = artifact_dir.join(format!("{}.cwasm.tmp-4-5-6", Digest::of_bytes(&b).hex()));
        std::fs::write(&writing, b"partial").unwrap();
        let old = std::time::SystemTime::now() - TEMP_GRACE - std::time::Duration::from_secs(60);
        std::fs::File::create(&stale).unwrap().set_modified(old).unwrap();
        let freed = prune(tmp.path(), &keep).unwrap();
        assert!(freed > 0);
        assert!(writing.exists() && !stale.exists());
        std::fs::remove_file(&writing).unwrap();
        let left = files(tmp.path());
        assert_eq!(left.len(), 1);
        assert!(left[0].to_string_lossy().contains(Digest::of_bytes(&a).hex()));
        assert_eq!(precompile(tmp.path(), &a).unwrap(), CacheOutcome::Hit);
        assert!(prune(tmp.path(), &HashSet::new()).unwrap() > 0);
        assert!(files(tmp.path()).is_empty());
        assert_eq!(prune(&tmp.path().join("missing"), &HashSet::new()).unwrap(), 0);
    }

    #[test]
    fn precompile_in_two_steps_records_the_identity() {
        let tmp = tempfile::tempdir().unwrap();
        let module = tmp.path().join("m.wasm");
        std::fs::write(&module, wat::parse_str(HELLO).unwrap()).unwrap();
        let dir = tmp.path().join("cache");
        let pending = precompile_check(&dir, &module).unwrap().expect("a miss");
        let mut serialized = Vec::new();
        compile_stream(&mut &std::fs::read(&module).unwrap()[..], &mut serialized).unwrap();
        pending.store(&mut &serialized[..]).unwrap();
        assert!(precompile_check(&dir, &module).unwrap().is_none(), "a hit now");
        let cache = ArtifactCache::open(&dir).unwrap();
        let id = FileIdentity::of(&std::fs::metadata(&module).unwrap());
        assert!(load_by_identity(&new_engine().unwrap(), &cache, &id).is_some());
        std::fs::write(&module, b"not wasm").unwrap();
        assert!(matches!(precompile_check(&dir, &module), Err(WasmError::NotWasm { .. })));
        assert!(matches!(compile_stream(&mut &b"not wasm"[..], &mut Vec::new()), Err(WasmError::NotWasm { .. })));
        let invalid = b"\0asm\x01\0\0\0\x0bnot a section";
        assert!(matches!(compile_stream(&mut &invalid[..], &mut Vec::new()), Err(WasmError::Compile { .. })));
    }
}
