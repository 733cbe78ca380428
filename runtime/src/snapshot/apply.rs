//! Layer apply: unpack one OCI image layer (a tar stream, plain, gzip or zstd) into an empty
//! staging directory, in overlayfs lower-dir form (whiteouts become 0/0 char devices, opaque
//! markers become `trusted.overlay.opaque=y`), hashing the uncompressed stream for the diff_id.
//!
//! Layers are hostile input. This module must never create, chmod, chown, link or delete
//! anything outside `dest`, never follow a symlink while extracting, never take a `trusted.*`
//! xattr from the tar (that would let a layer forge overlayfs metadata), never hold a whole
//! layer or an unbounded header in memory, and never panic on any input.
//!
//! The tar format is parsed here rather than by `tar::Archive`, because the tar crate reads GNU
//! long names and PAX headers into memory without a bound, and in raw mode loses PAX `size`
//! (which Go's archive/tar, the producer of most layers, uses for files over 8 GiB).
//! `tar::Header` still decodes the fixed header fields.

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Compression by magic number; anything unrecognised is taken as a plain tar.
    pub fn detect(first_bytes: &[u8]) -> Compression {
        if first_bytes.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if first_bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Bounds on what one layer may cost; crossing any of them fails the layer.
#[derive(Debug, Clone)]
pub struct ApplyLimits {
    /// Total bytes of the uncompressed tar stream (defeats decompression bombs).
    pub max_unpacked_bytes: u64,
    /// Longest entry name or link target, in bytes, as written in the tar.
    pub max_path_len: usize,
    /// Largest GNU long-name/long-link or PAX extension header held in memory for one entry.
    pub max_header_bytes: u64,
}

impl Default for ApplyLimits {
    fn default() -> Self {
        ApplyLimits { max_unpacked_bytes: 64 << 30, max_path_len: 4096, max_header_bytes: 1 << 20 }
    }
}

#[derive(Debug, Clone)]
pub struct ApplyOutcome {
    /// `sha256:<hex>` of the whole uncompressed tar stream, trailing padding included.
    pub diff_id: String,
    /// Length of the uncompressed tar stream.
    pub unpacked_bytes: u64,
}

/// Which part of the layer an error is about: a named entry, or a header before any name is
/// known.
#[derive(Debug, Clone)]
pub enum Location {
    Entry(String),
    Header { offset: u64 },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Debug quoting keeps hostile names (newlines, escapes) on one line.
            Location::Entry(name) => write!(f, "layer entry {name:?}"),
            Location::Header { offset } => write!(f, "layer tar header at byte {offset}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{entry}: path escapes the layer root")]
    Escapes { entry: Location },
    #[error("{entry}: a {kind} cannot replace the layer root")]
    NamesRoot { entry: Location, kind: &'static str },
    #[error("{entry}: writes through a symlink at {component:?}")]
    ThroughSymlink { entry: Location, component: String },
    #[error("{entry}: {component:?} is not a directory")]
    ParentNotDir { entry: Location, component: String },
    #[error("{entry}: hardlink target {target:?} {reason}")]
    BadHardlink { entry: Location, target: String, reason: &'static str },
    #[error("{entry}: invalid whiteout: {reason}")]
    BadWhiteout { entry: Location, reason: &'static str },
    #[error("{entry}: {what} is {len} bytes, over the limit of {limit}")]
    TooLong { entry: Location, what: &'static str, len: u64, limit: u64 },
    #[error("{entry}: the layer unpacks to more than {limit} bytes (decompression bomb?)")]
    TooLarge { entry: Location, limit: u64 },
    #[error("{entry}: unsupported entry type {kind}")]
    Unsupported { entry: Location, kind: String },
    #[error("{entry}: malformed tar: {reason}")]
    Malformed { entry: Location, reason: String },
    #[error("{entry}: {op}: {source}")]
    Io { entry: Location, op: String, source: io::Error },
    #[error("opening layer destination {path}: {source}")]
    Dest { path: String, source: io::Error },
}

/// Unpack one layer from `reader` into `dest`, an existing empty directory.
///
/// On error `dest` holds a partial layer and must be deleted by the caller; nothing outside it
/// has been touched.
pub fn apply_layer<R: Read>(
    reader: R,
    compression: Compression,
    dest: &Path,
    limits: &ApplyLimits,
) -> Result<ApplyOutcome, ApplyError> {
    unpack(reader, compression, dest, limits, true)
}

/// Unpack a plain tar archive (`cp - CONTAINER:DEST`'s) into `dest`, a new private directory:
/// a layer's checks and limits, but `.wh.` names are files like any other.
pub fn extract<R: Read>(
    reader: R,
    compression: Compression,
    dest: &Path,
    limits: &ApplyLimits,
) -> Result<ApplyOutcome, ApplyError> {
    unpack(reader, compression, dest, limits, false)
}

fn unpack<R: Read>(
    reader: R,
    compression: Compression,
    dest: &Path,
    limits: &ApplyLimits,
    layer: bool,
) -> Result<ApplyOutcome, ApplyError> {
    let dest_err = |source: io::Error| ApplyError::Dest { path: dest.display().to_string(), source };
    let decoded: Box<dyn Read + '_> =
        match compression {
            Compression::None => Box::new(reader),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(reader).map_err(|source| {
                ApplyError::Io { entry: Location::Header { offset: 0 }, op: "starting the zstd decoder".into(), source }
            })?),
        };
    let root = rfs::openat(rfs::CWD, dest, at::DIR_FLAGS, Mode::empty()).map_err(|e| dest_err(e.into()))?;
    let mut unpacker = Unpacker {
        stream: TarStream {
            inner: decoded,
            hasher: Sha256::new(),
            pos: 0,
            limit: limits.max_unpacked_bytes,
            over: false,
        },
        root: Rc::new(root),
        limits,
        is_root: rustix::process::geteuid().is_root(),
        layer,
        dir_stack: Vec::new(),
        dir_times: BTreeMap::new(),
        buf: vec![0; 256 << 10],
    };
    unpacker.entries()?;
    unpacker.drain()?;
    unpacker.set_dir_times()?;
    let stream = unpacker.stream;
    Ok(ApplyOutcome {
        diff_id: format!("sha256:{}", hex::encode(stream.hasher.finalize())),
        unpacked_bytes: stream.pos,
    })
}

const BLOCK: u64 = 512;
/// How deep an entry of a plain archive may be (`cp`'s engine's bound).
const MAX_PLAIN_DEPTH: usize = 256;
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// The uncompressed tar stream: every byte that passes is hashed and counted, so the diff_id
/// covers exactly what was parsed and the size limit holds however the data is compressed.
struct TarStream<R> {
    inner: R,
    hasher: Sha256,
    pos: u64,
    limit: u64,
    over: bool,
}

impl<R: Read> Read for TarStream<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.over {
            return Err(io::Error::other("layer size limit exceeded"));
        }
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.pos += n as u64;
        if self.pos > self.limit {
            self.over = true;
            return Err(io::Error::other("layer size limit exceeded"));
        }
        Ok(n)
    }
}

/// Extension headers seen since the last real entry; they describe the next one.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Pax>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.long_name.is_none() && self.long_link.is_none() && self.pax.is_none()
    }
}

#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<Timespec>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    sparse: bool,
}

/// One real (non-extension) tar entry with its extensions applied.
struct Entry {
    name: Vec<u8>,
    typeflag: u8,
    link: Vec<u8>,
    size: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timespec,
    device: Option<(u32, u32)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    fn loc(&self) -> Location {
        Location::Entry(String::from_utf8_lossy(&self.name).into_owned())
    }

    fn io(&self, op: impl Into<String>) -> impl FnOnce(Errno) -> ApplyError + '_ {
        let op = op.into();
        move |e| ApplyError::Io { entry: self.loc(), op, source: e.into() }
    }
}

/// Entry types whose size field does not announce data blocks (Go's archive/tar rule, which is
/// what docker and containerd both parse with).
fn is_header_only(typeflag: u8) -> bool {
    matches!(typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6')
}

fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

struct Unpacker<'l, R> {
    stream: TarStream<R>,
    root: Rc<OwnedFd>,
    limits: &'l ApplyLimits,
    is_root: bool,
    /// A layer: `.wh.` names are whiteouts (a plain archive's are files).
    layer: bool,
    /// Open directories along the last parent path. Tar entries come grouped by directory, so
    /// most lookups reuse all or most of it instead of walking from the root. Cleared whenever
    /// a directory is removed, since an fd could then name a directory no longer in the tree.
    dir_stack: Vec<(Vec<u8>, Rc<OwnedFd>)>,
    /// Directory mtimes, set last: writing children changes a directory's mtime.
    dir_times: BTreeMap<Vec<Vec<u8>>, Timespec>,
    buf: Vec<u8>,
}

impl<R: Read> Unpacker<'_, R> {
    fn read_error(&self, entry: Location, err: io::Error) -> ApplyError {
        if self.stream.over {
            ApplyError::TooLarge { entry, limit: self.limits.max_unpacked_bytes }
        } else if err.kind() == io::ErrorKind::UnexpectedEof {
            ApplyError::Malformed { entry, reason: "the archive is truncated".into() }
        } else {
            ApplyError::Io { entry, op: "reading the layer stream".into(), source: err }
        }
    }

    /// Read one 512-byte block; `false` on a clean end of stream before it.
    fn read_block(&mut self, block: &mut [u8; BLOCK as usize], loc: &Location) -> Result<bool, ApplyError> {
        let mut filled = 0;
        while filled < block.len() {
            match self.stream.read(&mut block[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => return Err(self.read_error(loc.clone(), io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_error(loc.clone(), e)),
            }
        }
        Ok(true)
    }

    /// Consume `n` bytes of the stream (still hashed and counted).
    fn skip(&mut self, mut n: u64, loc: &Location) -> Result<(), ApplyError> {
        while n > 0 {
            let want = n.min(self.buf.len() as u64) as usize;
            match self.stream.read(&mut self.buf[..want]) {
                Ok(0) => return Err(self.read_error(loc.clone(), io::ErrorKind::UnexpectedEof.into())),
                Ok(got) => n -= got as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_error(loc.clone(), e)),
            }
        }
        Ok(())
    }

    /// Read what follows the end-of-archive marker: the diff_id covers the whole stream.
    fn drain(&mut self) -> Result<(), ApplyError> {
        let loc = Location::Header { offset: self.stream.pos };
        loop {
            match self.stream.read(&mut self.buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_error(loc, e)),
            }
        }
    }

    /// Read an extension header's body, whose size was checked against the limit already.
    fn read_extension(&mut self, size: u64, loc: &Location) -> Result<Vec<u8>, ApplyError> {
        let mut data = Vec::with_capacity(size as usize);
        match (&mut self.stream).take(size).read_to_end(&mut data) {
            Ok(_) if data.len() as u64 == size => {}
            Ok(_) => return Err(self.read_error(loc.clone(), io::ErrorKind::UnexpectedEof.into())),
            Err(e) => return Err(self.read_error(loc.clone(), e)),
        }
        self.skip(padding(size), loc)?;
        Ok(data)
    }

    fn entries(&mut self) -> Result<(), ApplyError> {
        let mut block = [0u8; BLOCK as usize];
        let mut pending = Pending::default();
        loop {
            let here = Location::Header { offset: self.stream.pos };
            let dangling = || ApplyError::Malformed {
                entry: here.clone(),
                reason: "extension header without an entry after it".into(),
            };
            if !self.read_block(&mut block, &here)? {
                return if pending.is_empty() { Ok(()) } else { Err(dangling()) };
            }
            if block.iter().all(|&b| b == 0) {
                // End of archive is two zero blocks; one zero block then a header is corrupt.
                if self.read_block(&mut block, &here)? && block.iter().any(|&b| b != 0) {
                    return Err(ApplyError::Malformed {
                        entry: here,
                        reason: "a header follows an end-of-archive block".into(),
                    });
                }
                return if pending.is_empty() { Ok(()) } else { Err(dangling()) };
            }
            let header = tar::Header::from_byte_slice(&block);
            if !checksum_ok(header) {
                return Err(ApplyError::Malformed { entry: here, reason: "header checksum mismatch".into() });
            }
            let typeflag = block[156];
            let size = unsigned(&header.as_old().size)
                .ok_or_else(|| ApplyError::Malformed { entry: here.clone(), reason: "bad size field".into() })?;
            if let Some(what) = extension_kind(typeflag) {
                if size > self.limits.max_header_bytes {
                    return Err(ApplyError::TooLong {
                        entry: here,
                        what,
                        len: size,
                        limit: self.limits.max_header_bytes,
                    });
                }
                let data = self.read_extension(size, &here)?;
                match typeflag {
                    b'L' => pending.long_name = Some(until_nul(data)),
                    b'K' => pending.long_link = Some(until_nul(data)),
                    _ => {
                        let pax =
                            parse_pax(&data).map_err(|reason| ApplyError::Malformed { entry: here.clone(), reason })?;
                        pending.pax = Some(pax);
                    }
                }
                continue;
            }
            if typeflag == b'g' {
                // Global PAX headers carry archive comments (git archive writes one); docker
                // and containerd ignore them too.
                self.skip(size.saturating_add(padding(size)), &here)?;
                continue;
            }
            let entry = self.entry(header, typeflag, std::mem::take(&mut pending))?;
            let data_len = if is_header_only(entry.typeflag) { 0 } else { entry.size };
            let mut remaining = data_len;
            self.apply(&entry, &mut remaining)?;
            // Saturating: a PAX size near u64::MAX must end as "truncated", never as an overflow.
            self.skip(remaining.saturating_add(padding(data_len)), &entry.loc())?;
        }
    }

    /// Decode a header and its extensions. Precedence follows Go's archive/tar: header fields,
    /// then PAX records, then GNU long names.
    fn entry(&self, header: &tar::Header, typeflag: u8, pending: Pending) -> Result<Entry, ApplyError> {
        let mut pax = pending.pax.unwrap_or_default();
        let name = pending.long_name.or(pax.path.take()).unwrap_or_else(|| header.path_bytes().into_owned());
        let link = pending
            .long_link
            .or(pax.linkpath.take())
            .unwrap_or_else(|| header.link_name_bytes().map(|l| l.into_owned()).unwrap_or_default());
        let loc = Location::Entry(String::from_utf8_lossy(&name).into_owned());
        let malformed = |reason: String| ApplyError::Malformed { entry: loc.clone(), reason };
        let max_path = self.limits.max_path_len;
        if name.len() > max_path {
            return Err(ApplyError::TooLong {
                entry: loc,
                what: "the path",
                len: name.len() as u64,
                limit: max_path as u64,
            });
        }
        if link.len() > max_path {
            return Err(ApplyError::TooLong {
                entry: loc,
                what: "the link target",
                len: link.len() as u64,
                limit: max_path as u64,
            });
        }
        if name.contains(&0) || link.contains(&0) {
            return Err(malformed("NUL byte in a name".into()));
        }
        if pax.sparse {
            return Err(ApplyError::Unsupported { entry: loc, kind: "GNU sparse file (PAX)".into() });
        }
        let typeflag = match typeflag {
            // V7 tar marked directories only by a trailing slash.
            0 if name.ends_with(b"/") => b'5',
            0 | b'7' => b'0',
            t => t,
        };
        let old = header.as_old();
        let size = match pax.size {
            Some(size) => size,
            None => unsigned(&old.size).ok_or_else(|| malformed("bad size field".into()))?,
        };
        let mode = unsigned(&old.mode).ok_or_else(|| malformed("bad mode field".into()))? as u32 & 0o7777;
        let id = |pax_value: Option<u64>, field: &[u8], what: &str| -> Result<u32, ApplyError> {
            let value = match pax_value {
                Some(v) => v,
                None => unsigned(field).ok_or_else(|| malformed(format!("bad {what} field")))?,
            };
            // u32::MAX is the "no change" sentinel of chown: never a real owner.
            u32::try_from(value)
                .ok()
                .filter(|v| *v != u32::MAX)
                .ok_or_else(|| malformed(format!("{what} {value} out of range")))
        };
        let uid = id(pax.uid, &old.uid, "uid")?;
        let gid = id(pax.gid, &old.gid, "gid")?;
        let mtime = match pax.mtime {
            Some(t) => t,
            None => {
                Timespec { tv_sec: numeric(&old.mtime).ok_or_else(|| malformed("bad mtime field".into()))?, tv_nsec: 0 }
            }
        };
        let device = if matches!(typeflag, b'3' | b'4') {
            // V7 headers have no device fields; ustar and GNU keep them at the same offsets.
            let (major, minor) = match (header.as_ustar(), header.as_gnu()) {
                (Some(h), _) => (&h.dev_major, &h.dev_minor),
                (None, Some(h)) => (&h.dev_major, &h.dev_minor),
                (None, None) => return Err(malformed("device entry in a pre-POSIX header".into())),
            };
            let number = |field: &[u8]| unsigned(field).and_then(|n| u32::try_from(n).ok());
            Some((
                number(major).ok_or_else(|| malformed("bad device major".into()))?,
                number(minor).ok_or_else(|| malformed("bad device minor".into()))?,
            ))
        } else {
            None
        };
        Ok(Entry { name, typeflag, link, size, mode, uid, gid, mtime, device, xattrs: pax.xattrs })
    }

    fn apply(&mut self, e: &Entry, remaining: &mut u64) -> Result<(), ApplyError> {
        let comps = normalize(&e.name).ok_or_else(|| ApplyError::Escapes { entry: e.loc() })?;
        if !self.layer && comps.len() > MAX_PLAIN_DEPTH {
            // What `cp` copies on from here goes no deeper.
            return Err(ApplyError::TooLong {
                entry: e.loc(),
                what: "the entry's depth",
                len: comps.len() as u64,
                limit: MAX_PLAIN_DEPTH as u64,
            });
        }
        if self.layer && comps.iter().rev().skip(1).any(|c| c.starts_with(WHITEOUT_PREFIX)) {
            return Err(ApplyError::BadWhiteout { entry: e.loc(), reason: "a whiteout name used as a directory" });
        }
        let Some((name, parent)) = comps.split_last() else {
            return self.apply_root(e);
        };
        if self.layer && name.starts_with(WHITEOUT_PREFIX) {
            return self.whiteout(e, parent, name);
        }
        match e.typeflag {
            b'0' => self.regular(e, parent, name, remaining),
            b'5' => self.directory(e, &comps),
            b'2' => self.symlink(e, parent, name),
            b'1' => self.hardlink(e, parent, name),
            b'3' | b'4' | b'6' => self.node(e, parent, name),
            t => Err(ApplyError::Unsupported { entry: e.loc(), kind: type_name(t) }),
        }
    }

    /// The directory at `comps`, walked from the root without following symlinks.
    fn dir(&mut self, e: &Entry, comps: &[Vec<u8>], create: bool) -> Result<Rc<OwnedFd>, ApplyError> {
        self.open_dir_cached(comps, create).map_err(|err| walk_error(e, comps, err))
    }

    fn open_dir_cached(&mut self, comps: &[Vec<u8>], create: bool) -> Result<Rc<OwnedFd>, at::WalkError> {
        let common = self.dir_stack.iter().zip(comps).take_while(|((cached, _), c)| cached == *c).count();
        self.dir_stack.truncate(common);
        for (i, c) in comps.iter().enumerate().skip(common) {
            let parent = self.dir_stack.last().map_or(&self.root, |(_, fd)| fd);
            let fd = at::step(parent.as_fd(), c, create, i)?;
            self.dir_stack.push((c.clone(), Rc::new(fd)));
        }
        Ok(self.dir_stack.last().map_or(&self.root, |(_, fd)| fd).clone())
    }

    /// Make room for a new entry at `name` (a later tar entry replaces an earlier one).
    /// Returns true if an existing directory was kept because the new entry is one too.
    fn clear_slot(
        &mut self,
        e: &Entry,
        (parent, parent_comps): (BorrowedFd<'_>, &[Vec<u8>]),
        name: &[u8],
        keep_dir: bool,
    ) -> Result<bool, ApplyError> {
        let st = match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(false),
            Err(err) => return Err(e.io("inspecting the existing entry")(err)),
        };
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            if keep_dir {
                return Ok(true);
            }
            self.dir_stack.clear();
            at::remove_tree(parent, name).map_err(|source| ApplyError::Io {
                entry: e.loc(),
                op: "removing the directory it replaces".into(),
                source,
            })?;
            // Recorded times of the removed subtree must not land on what is created there later.
            let removed: Vec<Vec<u8>> = parent_comps.iter().cloned().chain([name.to_vec()]).collect();
            self.dir_times.retain(|path, _| !path.starts_with(&removed));
        } else {
            rfs::unlinkat(parent, name, AtFlags::empty()).map_err(e.io("removing the entry it replaces"))?;
        }
        Ok(false)
    }

    /// Create something at `name` with `make`, replacing what a previous entry left there.
    fn create<T>(
        &mut self,
        e: &Entry,
        parent: (BorrowedFd<'_>, &[Vec<u8>]),
        name: &[u8],
        op: &str,
        make: impl Fn() -> rustix::io::Result<T>,
    ) -> Result<T, ApplyError> {
        match make() {
            Err(Errno::EXIST) => {
                self.clear_slot(e, parent, name, false)?;
                make().map_err(e.io(op))
            }
            other => other.map_err(e.io(op)),
        }
    }

    fn regular(&mut self, e: &Entry, parent: &[Vec<u8>], name: &[u8], remaining: &mut u64) -> Result<(), ApplyError> {
        let dir = self.dir(e, parent, true)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = self.create(e, (dir.as_fd(), parent), name, "creating the file", || {
            rfs::openat(dir.as_fd(), name, flags, Mode::from_raw_mode(0o600))
        })?;
        let mut file = File::from(fd);
        while *remaining > 0 {
            let want = (*remaining).min(self.buf.len() as u64) as usize;
            let n = match self.stream.read(&mut self.buf[..want]) {
                Ok(0) => return Err(self.read_error(e.loc(), io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(self.read_error(e.loc(), err)),
            };
            file.write_all(&self.buf[..n]).map_err(|source| ApplyError::Io {
                entry: e.loc(),
                op: "writing the file".into(),
                source,
            })?;
            *remaining -= n as u64;
        }
        // chown clears setuid/setgid bits and file capabilities, so it goes first.
        self.chown(e, at::Node::Fd(file.as_fd()))?;
        rfs::fchmod(&file, Mode::from_raw_mode(e.mode)).map_err(e.io("setting the mode"))?;
        self.set_xattrs(e, at::Node::Fd(file.as_fd()))?;
        rfs::futimens(&file, &times(e.mtime)).map_err(e.io("setting the mtime"))
    }

    fn directory(&mut self, e: &Entry, comps: &[Vec<u8>]) -> Result<(), ApplyError> {
        let Some((name, parent)) = comps.split_last() else {
            return self.apply_root(e);
        };
        let pdir = self.dir(e, parent, true)?;
        let p = pdir.as_fd();
        match rfs::mkdirat(p, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                if !self.clear_slot(e, (p, parent), name, true)? {
                    rfs::mkdirat(p, name, Mode::from_raw_mode(0o700)).map_err(e.io("creating the directory"))?;
                }
            }
            Err(err) => return Err(e.io("creating the directory")(err)),
        }
        let fd = at::open_dir(p, name).map_err(e.io("opening the directory"))?;
        self.chown(e, at::Node::Fd(fd.as_fd()))?;
        rfs::fchmod(&fd, Mode::from_raw_mode(e.mode)).map_err(e.io("setting the mode"))?;
        self.set_xattrs(e, at::Node::Fd(fd.as_fd()))?;
        self.dir_times.insert(comps.to_vec(), e.mtime);
        Ok(())
    }

    /// A directory entry naming the root ("./") carries the root's metadata; nothing else may
    /// name it.
    fn apply_root(&mut self, e: &Entry) -> Result<(), ApplyError> {
        if e.typeflag != b'5' {
            return Err(ApplyError::NamesRoot { entry: e.loc(), kind: type_label(e.typeflag) });
        }
        let root = self.root.clone();
        self.chown(e, at::Node::Fd(root.as_fd()))?;
        rfs::fchmod(&root, Mode::from_raw_mode(e.mode)).map_err(e.io("setting the mode"))?;
        self.set_xattrs(e, at::Node::Fd(root.as_fd()))?;
        self.dir_times.insert(Vec::new(), e.mtime);
        Ok(())
    }

    fn symlink(&mut self, e: &Entry, parent: &[Vec<u8>], name: &[u8]) -> Result<(), ApplyError> {
        if e.link.is_empty() {
            return Err(ApplyError::Malformed { entry: e.loc(), reason: "symlink with an empty target".into() });
        }
        let dir = self.dir(e, parent, true)?;
        // The target is stored as-is: it is data, since nothing here ever follows a symlink.
        self.create(e, (dir.as_fd(), parent), name, "creating the symlink", || {
            rfs::symlinkat(e.link.as_slice(), dir.as_fd(), name)
        })?;
        self.finish_at(e, dir.as_fd(), name, false)
    }

    fn node(&mut self, e: &Entry, parent: &[Vec<u8>], name: &[u8]) -> Result<(), ApplyError> {
        let (kind, (major, minor)) = match e.typeflag {
            b'3' => (FileType::CharacterDevice, e.device.unwrap_or((0, 0))),
            b'4' => (FileType::BlockDevice, e.device.unwrap_or((0, 0))),
            _ => (FileType::Fifo, (0, 0)),
        };
        let dir = self.dir(e, parent, true)?;
        let dev = rfs::makedev(major, minor);
        self.create(e, (dir.as_fd(), parent), name, "creating the device node", || {
            rfs::mknodat(dir.as_fd(), name, kind, Mode::from_raw_mode(0o600), dev)
        })?;
        self.finish_at(e, dir.as_fd(), name, true)
    }

    /// Owner, mode, xattrs and mtime of something just created at `parent/name` that has no
    /// open fd (symlinks, nodes).
    fn finish_at(&mut self, e: &Entry, parent: BorrowedFd<'_>, name: &[u8], chmod: bool) -> Result<(), ApplyError> {
        self.chown(e, at::Node::At(parent, name))?;
        if chmod {
            // Follows a final symlink, but the name was created by us an instant ago in a
            // staging directory nobody else writes to.
            rfs::chmodat(parent, name, Mode::from_raw_mode(e.mode), AtFlags::empty())
                .map_err(e.io("setting the mode"))?;
        }
        self.set_xattrs(e, at::Node::At(parent, name))?;
        rfs::utimensat(parent, name, &times(e.mtime), AtFlags::SYMLINK_NOFOLLOW).map_err(e.io("setting the mtime"))
    }

    fn hardlink(&mut self, e: &Entry, parent: &[Vec<u8>], name: &[u8]) -> Result<(), ApplyError> {
        let target_str = String::from_utf8_lossy(&e.link).into_owned();
        let bad = |reason| ApplyError::BadHardlink { entry: e.loc(), target: target_str.clone(), reason };
        let target = normalize(&e.link).ok_or_else(|| bad("escapes the layer root"))?;
        let Some((tname, tparent)) = target.split_last() else {
            return Err(bad("is the layer root"));
        };
        if tparent == parent && tname == name {
            return Err(bad("is the entry itself"));
        }
        let tdir = match at::walk(self.root.as_fd(), tparent, false) {
            Ok(fd) => fd,
            Err(at::WalkError::Symlink(_)) => return Err(bad("resolves through a symlink")),
            Err(at::WalkError::Missing(_) | at::WalkError::NotDir(_)) => {
                return Err(bad("does not exist in this layer"))
            }
            Err(at::WalkError::Io(_, source)) => {
                return Err(ApplyError::Io { entry: e.loc(), op: "resolving the hardlink target".into(), source })
            }
        };
        match rfs::statat(&tdir, tname.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => return Err(bad("is a directory")),
            Ok(_) => {}
            Err(Errno::NOENT) => return Err(bad("does not exist in this layer")),
            Err(err) => return Err(e.io("resolving the hardlink target")(err)),
        }
        let dir = self.dir(e, parent, true)?;
        // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
        self.create(e, (dir.as_fd(), parent), name, "creating the hardlink", || {
            rfs::linkat(&tdir, tname.as_slice(), dir.as_fd(), name, AtFlags::empty())
        })?;
        // The inode's metadata came with its first entry; a link entry doesn't own it.
        Ok(())
    }

    fn whiteout(&mut self, e: &Entry, parent: &[Vec<u8>], name: &[u8]) -> Result<(), ApplyError> {
        if name == OPAQUE_MARKER {
            let dir = self.dir(e, parent, true)?;
            // Per the image spec the marker hides lower layers only: this layer's own entries
            // in the directory stay, which is exactly overlayfs' opaque semantics.
            return rfs::fsetxattr(&*dir, OPAQUE_XATTR, b"y", rfs::XattrFlags::empty())
                .map_err(e.io("marking the directory opaque"));
        }
        let target = &name[WHITEOUT_PREFIX.len()..];
        if target.starts_with(WHITEOUT_PREFIX) {
            return Err(ApplyError::BadWhiteout { entry: e.loc(), reason: "reserved .wh..wh. name" });
        }
        if target.is_empty() || target == b"." || target == b".." {
            return Err(ApplyError::BadWhiteout {
                entry: e.loc(),
                reason: "names the layer root or a parent directory",
            });
        }
        let dir = self.dir(e, parent, true)?;
        self.clear_slot(e, (dir.as_fd(), parent), target, false)?;
        rfs::mknodat(dir.as_fd(), target, FileType::CharacterDevice, Mode::empty(), rfs::makedev(0, 0))
            .map_err(e.io("creating the whiteout device"))
    }

    fn chown(&self, e: &Entry, node: at::Node<'_>) -> Result<(), ApplyError> {
        if !self.is_root {
            return Ok(());
        }
        let uid = Some(rfs::Uid::from_raw(e.uid));
        let gid = Some(rfs::Gid::from_raw(e.gid));
        match node {
            at::Node::Fd(fd) => rfs::fchown(fd, uid, gid),
            at::Node::At(parent, name) => rfs::chownat(parent, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW),
        }
        .map_err(e.io("setting the owner"))
    }

    fn set_xattrs(&self, e: &Entry, node: at::Node<'_>) -> Result<(), ApplyError> {
        for (key, value) in &e.xattrs {
            // trusted.* from a tar could forge overlayfs opaque dirs, redirects or metacopy;
            // only this module's own whiteout handling may write them.
            if key.starts_with(b"trusted.") {
                tracing::debug!(entry = %e.loc(), key = %String::from_utf8_lossy(key), "ignoring trusted.* xattr from a layer");
                continue;
            }
            match node.set_xattr(key, value) {
                Ok(()) => {}
                // Like docker: not every filesystem or file type takes every namespace
                // (user.* on symlinks and devices is EPERM by design).
                Err(err @ (Errno::NOTSUP | Errno::PERM)) => {
                    tracing::debug!(entry = %e.loc(), key = %String::from_utf8_lossy(key), %err, "xattr not supported here");
                }
                Err(err) => return Err(e.io(format!("setting xattr {:?}", String::from_utf8_lossy(key)))(err)),
            }
        }
        Ok(())
    }

    fn set_dir_times(&mut self) -> Result<(), ApplyError> {
        let records = std::mem::take(&mut self.dir_times);
        for (comps, mtime) in records {
            let loc = Location::Entry(at::display(&comps));
            let io = |op: &str| {
                let op = op.to_string();
                let loc = loc.clone();
                move |e: Errno| ApplyError::Io { entry: loc, op, source: e.into() }
            };
            let Some((name, parent)) = comps.split_last() else {
                rfs::futimens(&*self.root, &times(mtime)).map_err(io("setting the mtime"))?;
                continue;
            };
            // A directory removed or replaced by a later entry has nothing left to date.
            let Ok(dir) = self.open_dir_cached(parent, false) else {
                continue;
            };
            match rfs::statat(&dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                    rfs::utimensat(&dir, name.as_slice(), &times(mtime), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(io("setting the mtime"))?;
                }
                _ => continue,
            }
        }
        Ok(())
    }
}

fn walk_error(e: &Entry, comps: &[Vec<u8>], err: at::WalkError) -> ApplyError {
    let upto = |i: usize| at::display(&comps[..(i + 1).min(comps.len())]);
    match err {
        at::WalkError::Symlink(i) => ApplyError::ThroughSymlink { entry: e.loc(), component: upto(i) },
        at::WalkError::NotDir(i) | at::WalkError::Missing(i) => {
            ApplyError::ParentNotDir { entry: e.loc(), component: upto(i) }
        }
        at::WalkError::Io(i, source) => {
            ApplyError::Io { entry: e.loc(), op: format!("opening directory {:?}", upto(i)), source }
        }
    }
}

fn times(mtime: Timespec) -> Timestamps {
    Timestamps { last_access: mtime, last_modification: mtime }
}

/// A numeric header field as Go's archive/tar reads it: octal text padded with spaces or NULs
/// (all padding reads as 0), or base-256 binary (high bit set), possibly negative.
fn numeric(field: &[u8]) -> Option<i64> {
    let first = *field.first()?;
    if first & 0x80 != 0 {
        let invert = if first & 0x40 != 0 { 0xff } else { 0 };
        let mut x: u64 = 0;
        for (i, &b) in field.iter().enumerate() {
            let byte = if i == 0 { (b ^ invert) & 0x7f } else { b ^ invert };
            if x >> 56 != 0 {
                return None;
            }
            x = (x << 8) | u64::from(byte);
        }
        let x = i64::try_from(x).ok()?;
        return Some(if invert != 0 { !x } else { x });
    }
    let start = field.iter().position(|b| *b != b' ' && *b != 0).unwrap_or(field.len());
    let end = field.iter().rposition(|b| *b != b' ' && *b != 0).map_or(start, |i| i + 1);
    let text = &field[start..end];
    if text.is_empty() {
        return Some(0);
    }
    if !text.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return None;
    }
    i64::from_str_radix(std::str::from_utf8(text).ok()?, 8).ok()
}

fn unsigned(field: &[u8]) -> Option<u64> {
    numeric(field).and_then(|n| u64::try_from(n).ok())
}

fn checksum_ok(header: &tar::Header) -> bool {
    let Some(stored) = unsigned(&header.as_old().cksum) else {
        return false;
    };
    let (mut sum, mut signed_sum) = (0u32, 0i32);
    for (i, &b) in header.as_bytes().iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        sum += u32::from(b);
        signed_sum += i32::from(b as i8);
    }
    // Some old tars summed signed bytes; Go accepts both, so must we.
    stored == u64::from(sum) || i64::try_from(stored).is_ok_and(|s| s == i64::from(signed_sum))
}

fn extension_kind(typeflag: u8) -> Option<&'static str> {
    match typeflag {
        b'L' => Some("the GNU long-name header"),
        b'K' => Some("the GNU long-link header"),
        b'x' => Some("the PAX extended header"),
        _ => None,
    }
}

fn until_nul(mut data: Vec<u8>) -> Vec<u8> {
    if let Some(i) = data.iter().position(|&b| b == 0) {
        data.truncate(i);
    }
    data
}

fn type_label(typeflag: u8) -> &'static str {
    match typeflag {
        b'0' => "regular file",
        b'1' => "hardlink",
        b'2' => "symlink",
        b'3' => "character device",
        b'4' => "block device",
        b'5' => "directory",
        b'6' => "FIFO",
        _ => "non-directory entry",
    }
}

fn type_name(typeflag: u8) -> String {
    let what = match typeflag {
        b'S' => "GNU sparse file",
        b'D' => "GNU dump directory",
        b'M' => "GNU multi-volume continuation",
        b'V' => "GNU volume label",
        b'N' => "old GNU long name",
        _ => "unknown",
    };
    format!("{:?} ({what})", typeflag as char)
}

/// Lexically resolve a tar name to components under the root: leading `/` and `.` are
/// dropped, `..` pops. `None` if the name climbs above the root.
fn normalize(name: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            c => out.push(c.to_vec()),
        }
    }
    Some(out)
}

/// Parse PAX records (`"<len> <key>=<value>\n"`). Values may hold any byte, newlines
/// included (xattr values are binary), so records are cut by their length, never by `\n`.
fn parse_pax(mut data: &[u8]) -> Result<Pax, String> {
    let mut pax = Pax::default();
    while !data.is_empty() {
        let space = data.iter().take(21).position(|&b| b == b' ').ok_or("PAX record without a length")?;
        let digits = &data[..space];
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err("bad PAX record length".into());
        }
        let len = digits.iter().try_fold(0usize, |n, d| n.checked_mul(10)?.checked_add(usize::from(d - b'0')));
        let len = len.ok_or("bad PAX record length")?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err("bad PAX record length".into());
        }
        let record = &data[space + 1..len - 1];
        data = &data[len..];
        let eq = record.iter().position(|&b| b == b'=').ok_or("PAX record without '='")?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        let number = |what: &str| -> Result<u64, String> {
            std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()).ok_or_else(|| format!("bad PAX {what}"))
        };
        // An empty value deletes the keyword (POSIX): the header field applies again.
        let set = !value.is_empty();
        match key {
            b"path" => pax.path = set.then(|| value.to_vec()),
            b"linkpath" => pax.linkpath = set.then(|| value.to_vec()),
            b"size" => pax.size = if set { Some(number("size")?) } else { None },
            b"uid" => pax.uid = if set { Some(number("uid")?) } else { None },
            b"gid" => pax.gid = if set { Some(number("gid")?) } else { None },
            b"mtime" => pax.mtime = if set { Some(parse_pax_time(value).ok_or("bad PAX mtime")?) } else { None },
            k if k.starts_with(b"SCHILY.xattr.") => {
                let name = &k[b"SCHILY.xattr.".len()..];
                pax.xattrs.retain(|(n, _)| n != name);
                pax.xattrs.push((name.to_vec(), value.to_vec()));
            }
            k if k.starts_with(b"GNU.sparse.") => pax.sparse = true,
            _ => {}
        }
    }
    Ok(pax)
}

/// PAX times are decimal seconds with an optional fraction, possibly negative.
fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
    let text = std::str::from_utf8(value).ok()?;
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, d) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(d - b'0') * 10i64.pow(8 - i as u32);
    }
    if !negative {
        return Some(Timespec { tv_sec: secs, tv_nsec: nanos });
    }
    if nanos == 0 {
        return Some(Timespec { tv_sec: secs.checked_neg()?, tv_nsec: 0 });
    }
    Some(Timespec { tv_sec: secs.checked_neg()?.checked_sub(1)?, tv_nsec: 1_000_000_000 - nanos })
}

/// fd-relative filesystem steps shared with `flatten`: every one of them resolves names
/// inside a directory fd and never follows a symlink.
pub(crate) mod at {
    use super::*;
    use std::ffi::OsStr;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    use std::path::PathBuf;

    pub(crate) const DIR_FLAGS: OFlags =
        OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

    pub(crate) fn display(comps: &[Vec<u8>]) -> String {
        String::from_utf8_lossy(&comps.join(&b'/')).into_owned()
    }

    /// Why a walk stopped, with the index of the component at fault.
    #[derive(Debug)]
    pub(crate) enum WalkError {
        Symlink(usize),
        NotDir(usize),
        Missing(usize),
        Io(usize, io::Error),
    }

    pub(crate) fn open_dir(parent: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<OwnedFd> {
        rfs::openat(parent, name, DIR_FLAGS, Mode::empty())
    }

    /// Open the directory `comps` below `root` one component at a time, refusing symlinks and
    /// non-directories on the way, and creating missing directories (0755) when asked.
    pub(crate) fn walk(root: BorrowedFd<'_>, comps: &[Vec<u8>], create: bool) -> Result<OwnedFd, WalkError> {
        let mut cur = rfs::openat(root, c".", DIR_FLAGS, Mode::empty()).map_err(|e| WalkError::Io(0, e.into()))?;
        for (i, c) in comps.iter().enumerate() {
            cur = step(cur.as_fd(), c, create, i)?;
        }
        Ok(cur)
    }

    /// One step of a walk: open the directory `name` in `parent` (component `i` of the path).
    pub(crate) fn step(parent: BorrowedFd<'_>, name: &[u8], create: bool, i: usize) -> Result<OwnedFd, WalkError> {
        match open_dir(parent, name) {
            Ok(fd) => Ok(fd),
            Err(Errno::NOENT) if create => {
                match rfs::mkdirat(parent, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(WalkError::Io(i, e.into())),
                }
                let fd = open_dir(parent, name).map_err(|e| classify(parent, name, i, e))?;
                // mkdir's mode went through the umask.
                rfs::fchmod(&fd, Mode::from_raw_mode(0o755)).map_err(|e| WalkError::Io(i, e.into()))?;
                Ok(fd)
            }
            Err(e) => Err(classify(parent, name, i, e)),
        }
    }

    fn classify(parent: BorrowedFd<'_>, name: &[u8], i: usize, err: Errno) -> WalkError {
        match err {
            Errno::NOENT => WalkError::Missing(i),
            Errno::LOOP | Errno::NOTDIR => match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => WalkError::Symlink(i),
                Ok(_) => WalkError::NotDir(i),
                Err(e) => WalkError::Io(i, e.into()),
            },
            e => WalkError::Io(i, e.into()),
        }
    }

    /// Names in a directory, without `.` and `..`.
    pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<(Vec<u8>, FileType)>> {
        let mut d = rfs::Dir::read_from(dir)?;
        let mut out = Vec::new();
        while let Some(ent) = d.read() {
            let ent = ent?;
            let name = ent.file_name().to_bytes();
            if name != b"." && name != b".." {
                out.push((name.to_vec(), ent.file_type()));
            }
        }
        Ok(out)
    }

    /// Remove `name` in `parent` whatever it is (a directory recursively); missing is fine.
    /// Returns whether a directory was removed.
    pub(crate) fn remove(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<bool> {
        match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(e.into()),
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                remove_tree(parent, name).map(|()| true)
            }
            Ok(_) => rfs::unlinkat(parent, name, AtFlags::empty()).map(|()| false).map_err(Into::into),
        }
    }

    pub(crate) fn remove_tree(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
        let dir = open_dir(parent, name)?;
        clear_dir(dir.as_fd())?;
        drop(dir);
        Ok(rfs::unlinkat(parent, name, AtFlags::REMOVEDIR)?)
    }

    /// Empty a directory without following any symlink inside it.
    pub(crate) fn clear_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
        for (name, kind) in list_dir(dir)? {
            match kind {
                FileType::Directory => remove_tree(dir, &name)?,
                FileType::Unknown => {
                    remove(dir, &name)?;
                }
                _ => rfs::unlinkat(dir, name.as_slice(), AtFlags::empty())?,
            }
        }
        Ok(())
    }

    /// Something to read or write xattrs on: an open fd, or a name in a directory for things
    /// that can't be opened for that (symlinks, device nodes, FIFOs).
    #[derive(Clone, Copy)]
    pub(crate) enum Node<'a> {
        Fd(BorrowedFd<'a>),
        At(BorrowedFd<'a>, &'a [u8]),
    }

    /// `/proc/self/fd/N/name`: the kernel resolves the magic link to the directory itself, and
    /// the l*xattr calls don't follow the final name; there is no *xattrat before Linux 6.13.
    fn proc_path(parent: BorrowedFd<'_>, name: &[u8]) -> PathBuf {
        let mut path = PathBuf::from(format!("/proc/self/fd/{}", parent.as_raw_fd()));
        path.push(OsStr::from_bytes(name));
        path
    }

    impl Node<'_> {
        pub(crate) fn set_xattr(&self, key: &[u8], value: &[u8]) -> rustix::io::Result<()> {
            let flags = rfs::XattrFlags::empty();
            match *self {
                Node::Fd(fd) => rfs::fsetxattr(fd, key, value, flags),
                Node::At(parent, name) => rfs::lsetxattr(proc_path(parent, name), key, value, flags),
            }
        }

        pub(crate) fn remove_xattr(&self, key: &[u8]) -> rustix::io::Result<()> {
            match *self {
                Node::Fd(fd) => rfs::fremovexattr(fd, key),
                Node::At(parent, name) => rfs::lremovexattr(proc_path(parent, name), key),
            }
        }

        /// The value of `key`, or `None` if it is not set.
        pub(crate) fn get_xattr(&self, key: &[u8]) -> rustix::io::Result<Option<Vec<u8>>> {
            // The value may change between the size query and the read: retry on ERANGE.
            for _ in 0..8 {
                let size = match *self {
                    Node::Fd(fd) => rfs::fgetxattr_query(fd, key),
                    Node::At(parent, name) => rfs::lgetxattr_query(proc_path(parent, name), key),
                };
                let size = match size {
                    Ok(size) => size,
                    Err(Errno::NODATA) => return Ok(None),
                    Err(e) => return Err(e),
                };
                let mut value = vec![0u8; size];
                if size == 0 {
                    return Ok(Some(value));
                }
                let got = match *self {
                    Node::Fd(fd) => rfs::fgetxattr(fd, key, &mut value[..]),
                    Node::At(parent, name) => rfs::lgetxattr(proc_path(parent, name), key, &mut value[..]),
                };
                match got {
                    Ok(n) => {
                        value.truncate(n);
                        return Ok(Some(value));
                    }
                    Err(Errno::RANGE) => continue,
                    Err(Errno::NODATA) => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
            Err(Errno::RANGE)
        }

        pub(crate) fn list_xattrs(&self) -> rustix::io::Result<Vec<Vec<u8>>> {
            for _ in 0..8 {
                let size = match *self {
                    Node::Fd(fd) => rfs::flistxattr_query(fd),
                    Node::At(parent, name) => rfs::llistxattr_query(proc_path(parent, name)),
                }?;
                if size == 0 {
                    return Ok(Vec::new());
                }
                let mut list = vec![0u8; size];
                let got = match *self {
                    Node::Fd(fd) => rfs::flistxattr(fd, &mut list[..]),
                    Node::At(parent, name) => rfs::llistxattr(proc_path(parent, name), &mut list[..]),
                };
                match got {
                    Ok(n) => {
                        list.truncate(n);
                        return Ok(list.split(|&b| b == 0).filter(|k| !k.is_empty()).map(<[u8]>::to_vec).collect());
                    }
                    Err(Errno::RANGE) => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(Errno::RANGE)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use std::path::PathBuf;
    use tar::{EntryType, Header};

    /// A tar stream built entry by entry. Names and link targets are written into the header
    /// bytes directly, so hostile names reach the extractor exactly as a hostile layer has them.
    pub(crate) struct Tar {
        b: tar::Builder<Vec<u8>>,
    }

    pub(crate) const MTIME: u64 = 1_600_000_000;

    impl Tar {
        pub(crate) fn new() -> Tar {
            Tar { b: tar::Builder::new(Vec::new()) }
        }

        pub(crate) fn header(name: &[u8], kind: EntryType, size: u64, mode: u32) -> Header {
            let mut h = Header::new_gnu();
            assert!(name.len() <= 100, "test names fit the old name field");
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_entry_type(kind);
            h.set_size(size);
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(MTIME);
            h
        }

        pub(crate) fn push(&mut self, mut h: Header, data: &[u8]) -> &mut Self {
            h.set_cksum();
            self.b.append(&h, data).unwrap();
            self
        }

        pub(crate) fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
            self.push(Self::header(name.as_bytes(), EntryType::Regular, data.len() as u64, 0o644), data)
        }

        pub(crate) fn file_with(&mut self, name: &str, data: &[u8], mode: u32, owner: u64, mtime: u64) -> &mut Self {
            let mut h = Self::header(name.as_bytes(), EntryType::Regular, data.len() as u64, mode);
            h.set_uid(owner);
            h.set_gid(owner);
            h.set_mtime(mtime);
            self.push(h, data)
        }

        pub(crate) fn dir(&mut self, name: &str) -> &mut Self {
            self.push(Self::header(name.as_bytes(), EntryType::Directory, 0, 0o755), b"")
        }

        pub(crate) fn dir_with(&mut self, name: &str, mode: u32, mtime: u64) -> &mut Self {
            let mut h = Self::header(name.as_bytes(), EntryType::Directory, 0, mode);
            h.set_mtime(mtime);
            self.push(h, b"")
        }

        fn link_entry(&mut self, name: &str, target: &[u8], kind: EntryType) -> &mut Self {
            let mut h = Self::header(name.as_bytes(), kind, 0, 0o777);
            h.as_old_mut().linkname[..target.len()].copy_from_slice(target);
            self.push(h, b"")
        }

        pub(crate) fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
            self.link_entry(name, target.as_bytes(), EntryType::Symlink)
        }

        pub(crate) fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
            self.link_entry(name, target.as_bytes(), EntryType::Link)
        }

        pub(crate) fn node(&mut self, name: &str, kind: EntryType, major: u32, minor: u32) -> &mut Self {
            let mut h = Self::header(name.as_bytes(), kind, 0, 0o666);
            h.set_device_major(major).unwrap();
            h.set_device_minor(minor).unwrap();
            self.push(h, b"")
        }

        /// A PAX extended header for the next entry.
        pub(crate) fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
            let mut data = Vec::new();
            for (key, value) in records {
                let body = key.len() + value.len() + 3; // ' ', '=', '\n'
                let mut len = body + 1;
                while len != body + len.to_string().len() {
                    len = body + len.to_string().len();
                }
                data.extend_from_slice(format!("{len} {key}=").as_bytes());
                data.extend_from_slice(value);
                data.push(b'\n');
            }
            self.push(Self::header(b"././@PaxHeader", EntryType::XHeader, data.len() as u64, 0o644), &data)
        }

        pub(crate) fn bytes(self) -> Vec<u8> {
            self.b.into_inner().unwrap()
        }
    }

    /// A temp dir holding `layer/dest` (where layers go) and `outside/sentinel`, which no
    /// layer may reach.
    pub(crate) struct Sandbox {
        pub(crate) tmp: tempfile::TempDir,
        pub(crate) dest: PathBuf,
        pub(crate) outside: PathBuf,
    }

    pub(crate) fn sandbox() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("layer/dest");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(&dest).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("sentinel"), b"keep").unwrap();
        fs::set_permissions(outside.join("sentinel"), fs::Permissions::from_mode(0o644)).unwrap();
        Sandbox { tmp, dest, outside }
    }

    impl Sandbox {
        pub(crate) fn apply(&self, tar: &[u8]) -> Result<ApplyOutcome, ApplyError> {
            apply_layer(tar, Compression::None, &self.dest, &ApplyLimits::default())
        }

        /// Nothing outside dest was created, removed, or changed.
        pub(crate) fn untouched(&self) {
            self.untouched_except(&[]);
        }

        /// Like `untouched`, with top-level names a test made on purpose left out.
        pub(crate) fn untouched_except(&self, made: &[&str]) {
            let mut seen = Vec::new();
            let mut stack = vec![self.tmp.path().to_path_buf()];
            while let Some(dir) = stack.pop() {
                for entry in fs::read_dir(&dir).unwrap() {
                    let path = entry.unwrap().path();
                    let rel = path.strip_prefix(self.tmp.path()).unwrap().to_string_lossy().into_owned();
                    if made.contains(&rel.as_str()) {
                        continue;
                    }
                    if path.symlink_metadata().unwrap().is_dir() && path != self.dest {
                        stack.push(path.clone());
                    }
                    seen.push(rel);
                }
            }
            seen.sort();
            assert_eq!(seen, ["layer", "layer/dest", "outside", "outside/sentinel"]);
            let sentinel = self.outside.join("sentinel");
            let meta = sentinel.symlink_metadata().unwrap();
            assert!(meta.is_file());
            assert_eq!(meta.nlink(), 1, "sentinel was hardlinked");
            assert_eq!(meta.mode() & 0o7777, 0o644);
            assert_eq!(fs::read(sentinel).unwrap(), b"keep");
        }
    }

    fn fails(sb: &Sandbox, tar: &[u8], entry: &str) -> ApplyError {
        let err = sb.apply(tar).expect_err("hostile layer must fail");
        let msg = err.to_string();
        assert!(msg.contains(&format!("{entry:?}")), "error {msg:?} does not name {entry:?}");
        assert!(!msg.contains('\n'));
        sb.untouched();
        err
    }

    pub(crate) fn xattr(path: &Path, key: &str) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 4096];
        match rfs::lgetxattr(path, key, &mut buf[..]) {
            Ok(n) => Some(buf[..n].to_vec()),
            Err(Errno::NODATA) => None,
            Err(e) => panic!("lgetxattr {}: {e}", path.display()),
        }
    }

    #[test]
    fn dotdot_name_is_refused() {
        let sb = sandbox();
        let mut t = Tar::new();
        t.file("../x", b"evil");
        let err = fails(&sb, &t.bytes(), "../x");
        assert!(matches!(err, ApplyError::Escapes { .. }));
        assert_eq!(err.to_string(), r#"layer entry "../x": path escapes the layer root"#);
    }

    #[test]
    fn inner_dotdot_escape_is_refused() {
        let sb = sandbox();
        let mut t = Tar::new();
        t.dir("a/").file("a/../../x", b"evil");
        let err = fails(&sb, &t.bytes(), "a/../../x");
        assert!(matches!(err, ApplyError::Escapes { .. }));
    }

    #[test]
    fn absolute_names_are_clamped_inside() {
        let sb = sandbox();
        let mut t = Tar::new();
        t.file("/etc/x", b"inside").file("/a/./b/../c", b"c");
        sb.apply(&t.bytes()).unwrap();
        assert_eq!(fs::read(sb.dest.join("etc/x")).unwrap(), b"inside");
        assert_eq!(fs::read(sb.dest.join("a/c")).unwrap(), b"c");
        sb.untouched();
    }

    #[test]
    fn absolute_symlink_out_then_file_through_it_is_refused() {
        let sb = sandbox();
        let mut t = Tar::new();
        t.symlink("evil", sb.outside.to_str().unwrap()).file("evil/pwned", b"evil");
        let err = fails(&sb, &t.bytes(), "evil/pwned");
        assert!(matches!(err, ApplyError::ThroughSymlink { .. }));
        assert!(err.to_string().contains("writes through a symlink at \"evil\""), "{err}");
    }

    #[test]
    fn relative_symlink_out_then_file_through_it_is_refused() {
        let sb = sandbox();
        let tmp_name = sb.tmp.path().file_name().unwrap().to_str().unwrap().to_string();
        // dest/evil -> ../../.. is the temp dir's parent, so a follow would land in outside/.
        let through = format!("evil/{tmp_name}/outside/pwned");
        let mut t = Tar::new();
        t.symlink("evil", "../../..").file(&through, b"evil");
        let err = fails(&sb, &t.bytes(), &through);
        assert!(matches!(err, ApplyError::ThroughSymlink { .. }));
    }

    #[test]
    fn directory_entry_through_a_symlink_is_refused() {
        let sb = sandbox();
        let mut t = Tar::new();
        t.symlink("evil", sb.outside.to_str().unwrap()).dir("evil/sub/");
        fails(&sb, &t.bytes(), "evil/sub/");
    }

    #[test]
    fn hardlink_to_outside_is_refused() {
        for target in ["../../etc/passwd", "../../outside/sentinel"] {
            let sb = sandbox();
            let mut t = Tar::new();
            t.hardlink("l", target);
            let err = fails(&sb, &t.bytes(), "l");
            assert!(matches!(err, ApplyError::BadHardlink { reason: "escapes the layer root", .. }), "{err}");
        }
    }

    #[test]
    fn hardlink_through_a_symlink_is_refused() {
        let sb = sandbox();
        let mut t = Tar::new();
        t.symlink("evil", sb.outside.to_str().unwrap()).hardlink("l", "evil/sentinel");
        let err = fails(&sb, &t.bytes(), "l");
        assert!(matches!(err, ApplyError::BadHardlink { reason: "resolves through a symlink", .. }), "{err}");
    }

    #[test]
    fn hardlink_to_missing_entry_is_refused() {
        for target in ["nothing", "/etc/passwd", "d"] {
            let sb = sandbox();
            let mut t = Tar::new();
            t.dir("d/").hardlink("l", target);
            let err = fails(&sb, &t.bytes(), "l");
            let reason = if target == "d" { "is a directory" } else { "does not exist in this layer" };
            assert!(matches!(err, ApplyError::BadHardlink { reason: r, .. } if r == reason), "{err}");
        }
    }

    #[test]
    fn whiteout_escaping_is_refused() {
        let sb = sandbox();
        let mut t = Tar::new();
        t.file("../.wh.x", b"").file("../../outside/.wh.sentinel", b"");
        let err = fails(&sb, &t.bytes(), "../.wh.x");
        assert!(matches!(err, ApplyError::Escapes { .. }));
        let sb = sandbox();
        let mut t = Tar::new();
        t.file("../../outside/.wh.sentinel", b"");
        fails(&sb, &t.bytes(), "../../outside/.wh.sentinel");
    }

    #[test]
    fn whiteout_naming_root_or_parent_is_refused() {
        for name in [".wh..", "a/.wh..", ".wh...", ".wh."] {
            let sb = sandbox();
            let mut t = Tar::new();
            t.file(name, b"");
            let err = fails(&sb, &t.bytes(), name);
            assert!(matches!(err, ApplyError::BadWhiteout { .. }), "{err}");
        }
    }

    #[test]
    fn reserved_whiteout_names_are_refused() {
        let sb = sandbox();
        let mut t = Tar::new();
        t.file(".wh..wh.plnk", b"");
        let err = fails(&sb, &t.bytes(), ".wh..wh.plnk");
        assert!(err.to_string().contains("reserved"), "{err}");
        let sb = sandbox();
        let mut t = Tar::new();
        t.file(".wh.dir/file", b"");
        fails(&sb, &t.bytes(), ".wh.dir/file");
    }

    #[test]
    fn symlink_then_file_of_same_name_replaces_the_symlink() {
        let sb = sandbox();
        let sentinel = sb.outside.join("sentinel");
        let mut t = Tar::new();
        t.symlink("s", sentinel.to_str().unwrap()).file("s", b"new");
        sb.apply(&t.bytes()).unwrap();
        let meta = sb.dest.join("s").symlink_metadata().unwrap();
        assert!(meta.is_file());
        assert_eq!(fs::read(sb.dest.join("s")).unwrap(), b"new");
        sb.untouched();
    }

    #[test]
    fn symlink_then_directory_of_same_name_replaces_the_symlink() {
        let sb = sandbox();
        let mut t = Tar::new();
        t.symlink("d", sb.outside.to_str().unwrap()).dir("d/").file("d/f", b"inside");
        sb.apply(&t.bytes()).unwrap();
        assert!(sb.dest.join("d").symlink_metadata().unwrap().is_dir());
        assert_eq!(fs::read(sb.dest.join("d/f")).unwrap(), b"inside");
        sb.untouched();
    }

    #[test]
    fn directory_replaced_by_file_and_back() {
        let sb = sandbox();
        let mut t = Tar::new();
        t.dir("d/").file("d/x", b"x").file("d", b"file now").file("f", b"f").dir("f/").file("f/y", b"y");
        sb.apply(&t.bytes()).unwrap();
        assert_eq!(fs::read(sb.dest.join("d")).unwrap(), b"file now");
        assert!(sb.dest.join("f").symlink_metadata().unwrap().is_dir());
        assert_eq!(fs::read(sb.dest.join("f/y")).unwrap(), b"y");
    }

    #[test]
    fn directory_over_directory_keeps_children_and_takes_new_metadata() {
        let sb = sandbox();
        let mut t = Tar::new();
        t.dir("d/").file("d/x", b"x").dir_with("d/", 0o700, MTIME);
        sb.apply(&t.bytes()).unwrap();
        assert_eq!(fs::read(sb.dest.join("d/x")).unwrap(), b"x");
        assert_eq!(sb.dest.join("d").metadata().unwrap().mode() & 0o7777, 0o700);
    }

    #[test]
    fn device_nodes_and_fifos_are_created() {
        let sb = sandbox();
        let mut t = Tar::new();
        t.dir("dev/").node("dev/null", EntryType::Char, 1, 3).node("dev/loop0", EntryType::Block, 7, 0).node(
            "pipe",
            EntryType::Fifo,
            0,
            0,
        );
        sb.apply(&t.bytes()).unwrap();
        let null = sb.dest.join("dev/null").symlink_metadata().unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), rfs::makedev(1, 3));
        assert_eq!(null.mode() & 0o7777, 0o666);
        let lp = sb.dest.join("dev/loop0").symlink_metadata().unwrap();
        assert!(lp.file_type().is_block_device());
        assert_eq!(lp.rdev(), rfs::makedev(7, 0));
        assert!(sb.dest.join("pipe").symlink_metadata().unwrap().file_type().is_fifo());
        sb.untouched();
    }

    #[test]
    fn setuid_bits_and_owner_survive() {
        let sb = sandbox();
        let mut t = Tar::new();
        t.file_with("su", b"x", 0o4755, 0, MTIME).file_with("mine", b"y", 0o6755, 1000, MTIME);
        sb.apply(&t.bytes()).unwrap();
        let su = sb.dest.join("su").metadata().unwrap();
        assert_eq!(su.mode() & 0o7777, 0o4755);
        let mine = sb.dest.join("mine").metadata().unwrap();
        assert_eq!(mine.mode() & 0o7777, 0o6755, "chmod must come after chown");
        assert_eq!((mine.uid(), mine.gid()), (1000, 1000));
    }

    #[test]
    fn huge_pax_header_is_refused_before_it_is_read() {
        let sb = sandbox();
        let mut t = Tar::new();
        t.file("ok", b"ok");
        let mut bytes = t.bytes();
        bytes.truncate(bytes.len() - 1024);
        // Declares a terabyte and then stops: reading it would fail as truncated, not as too big.
        let mut h = Tar::header(b"././@PaxHeader", EntryType::XHeader, 1 << 40, 0o644);
        h.set_cksum();
        bytes.extend_from_slice(h.as_bytes());
        let err = sb.apply(&bytes).unwrap_err();
        assert!(
            matches!(err, ApplyError::TooLong { what: "the PAX extended header", len, .. } if len == 1 << 40),
            "{err}"
        );
        assert!(err.to_string().starts_with("layer tar header at byte 1024: "), "{err}");
        sb.untouched();
    }

    #[test]
    fn huge_gnu_long_name_is_refused() {
        let sb = sandbox();
        let mut h = Tar::header(b"././@LongLink", EntryType::GNULongName, 2 << 20, 0o644);
        h.set_cksum();
        let err = sb.apply(h.as_bytes()).unwrap_err();
        assert!(matches!(err, ApplyError::TooLong { what: "the GNU long-name header", .. }), "{err}");
    }

    #[test]
    fn decompression_bomb_is_refused() {
        let sb = sandbox();
        let zeros = vec![0u8; 8 << 20];
        let mut t = Tar::new();
        t.file("zeros", &zeros);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&t.bytes()).unwrap();
        let blob = gz.finish().unwrap();
        assert!(blob.len() < 64 << 10);
        let limits = ApplyLimits { max_unpacked_bytes: 1 << 20, ..ApplyLimits::default() };
        let err = apply_layer(&blob[..], Compression::Gzip, &sb.dest, &limits).unwrap_err();
        assert!(matches!(err, ApplyError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("\"zeros\""), "{err}");
        assert!(sb.dest.join("zeros").metadata().unwrap().len() <= 1 << 20);
        sb.untouched();
    }

    #[test]
    fn too_long_paths_are_refused() {
        let long = format!("{}f", "a/".repeat(2100));
        let sb = sandbox();
        let mut t = Tar::new();
        t.pax(&[("path", long.as_bytes())]).file("short", b"");
        let err = sb.apply(&t.bytes()).unwrap_err();
        assert!(matches!(err, ApplyError::TooLong { what: "the path", len: 4201, .. }), "{err}");
        assert!(err.to_string().contains(&long[..64]), "{err}");
        let sb = sandbox();
        let mut t = Tar::new();
        t.pax(&[("linkpath", long.as_bytes())]).symlink("s", "x");
        let err = sb.apply(&t.bytes()).unwrap_err();
        assert!(matches!(err, ApplyError::TooLong { what: "the link target", .. }), "{err}");
        sb.untouched();
    }

    #[test]
    fn long_names_from_gnu_and_pax_headers_work() {
        let sb = sandbox();
        let gnu_name = format!("{}/gnu", "g".repeat(200));
        let pax_name = format!("{}/pax", "p".repeat(200));
        let mut b = tar::Builder::new(Vec::new());
        let mut h = Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_entry_type(EntryType::Regular);
        b.append_data(&mut h, &gnu_name, &b"gnu"[..]).unwrap();
        let mut bytes = b.into_inner().unwrap();
        bytes.truncate(bytes.len() - 1024);
        let mut t = Tar::new();
        t.pax(&[("path", pax_name.as_bytes()), ("mtime", b"1234567890.5")]).file("ignored", b"pax");
        bytes.extend_from_slice(&t.bytes());
        sb.apply(&bytes).unwrap();
        assert_eq!(fs::read(sb.dest.join(&gnu_name)).unwrap(), b"gnu");
        let meta = sb.dest.join(&pax_name).metadata().unwrap();
        assert_eq!((meta.mtime(), meta.mtime_nsec()), (1234567890, 500_000_000));
        assert!(!sb.dest.join("ignored").exists());
    }

    #[test]
    fn trusted_xattrs_from_the_tar_are_ignored() {
        let sb = sandbox();
        let mut t = Tar::new();
        t.pax(&[("SCHILY.xattr.trusted.overlay.opaque", b"y"), ("SCHILY.xattr.user.note", b"kept\nwith newline")])
            .dir("d/")
            .pax(&[("SCHILY.xattr.trusted.overlay.redirect", b"/etc"), ("SCHILY.xattr.trusted.other", b"x")])
            .file("f", b"f");
        sb.apply(&t.bytes()).unwrap();
        assert_eq!(xattr(&sb.dest.join("d"), "trusted.overlay.opaque"), None);
        assert_eq!(xattr(&sb.dest.join("d"), "user.note").as_deref(), Some(&b"kept\nwith newline"[..]));
        assert_eq!(xattr(&sb.dest.join("f"), "trusted.overlay.redirect"), None);
        assert_eq!(xattr(&sb.dest.join("f"), "trusted.other"), None);
    }

    fn sha256_hex(data: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(data)))
    }

    fn sample_layer() -> Vec<u8> {
        let mut t = Tar::new();
        t.dir("etc/").file("etc/hosts", b"127.0.0.1 localhost\n").symlink("link", "etc/hosts");
        let mut bytes = t.bytes();
        // GNU tar pads archives to 10 KiB records: the diff_id covers that too.
        bytes.resize(10240, 0);
        bytes
    }

    #[test]
    fn diff_id_of_plain_tar() {
        let sb = sandbox();
        let tar = sample_layer();
        let out = sb.apply(&tar).unwrap();
        assert_eq!(out.diff_id, sha256_hex(&tar));
        assert_eq!(out.unpacked_bytes, tar.len() as u64);
    }

    #[test]
    fn diff_id_of_gzip_layer() {
        let sb = sandbox();
        let tar = sample_layer();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        let blob = gz.finish().unwrap();
        assert_eq!(Compression::detect(&blob), Compression::Gzip);
        let out = apply_layer(&blob[..], Compression::Gzip, &sb.dest, &ApplyLimits::default()).unwrap();
        assert_eq!(out.diff_id, sha256_hex(&tar));
        assert_eq!(fs::read(sb.dest.join("etc/hosts")).unwrap(), b"127.0.0.1 localhost\n");
    }

    #[test]
    fn diff_id_of_zstd_layer() {
        let sb = sandbox();
        let tar = sample_layer();
        let blob = zstd::encode_all(&tar[..], 3).unwrap();
        assert_eq!(Compression::detect(&blob), Compression::Zstd);
        let out = apply_layer(&blob[..], Compression::Zstd, &sb.dest, &ApplyLimits::default()).unwrap();
        assert_eq!(out.diff_id, sha256_hex(&tar));
        assert_eq!(fs::read_link(sb.dest.join("link")).unwrap(), Path::new("etc/hosts"));
    }

    #[test]
    fn whiteouts_become_char_devices_and_opaque_markers_xattrs() {
        let sb = sandbox();
        let mut t = Tar::new();
        t.dir("a/")
            .file("a/keep", b"k")
            .file("a/.wh.gone", b"")
            .file("a/old", b"o")
            .file("a/.wh.old", b"")
            .dir("c/")
            .file("c/.wh..wh..opq", b"")
            .file("c/mine", b"m")
            .file("x/.wh.y", b"");
        sb.apply(&t.bytes()).unwrap();
        for path in ["a/gone", "a/old", "x/y"] {
            let meta = sb.dest.join(path).symlink_metadata().unwrap();
            assert!(meta.file_type().is_char_device(), "{path}");
            assert_eq!(meta.rdev(), 0, "{path}");
        }
        assert_eq!(fs::read(sb.dest.join("a/keep")).unwrap(), b"k");
        assert_eq!(xattr(&sb.dest.join("c"), OPAQUE_XATTR).as_deref(), Some(&b"y"[..]));
        assert_eq!(fs::read(sb.dest.join("c/mine")).unwrap(), b"m");
        assert_eq!(xattr(&sb.dest.join("a"), OPAQUE_XATTR), None);
        let mut stack = vec![sb.dest.clone()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(dir).unwrap() {
                let entry = entry.unwrap();
                assert!(!entry.file_name().to_string_lossy().starts_with(".wh."), "{:?}", entry.path());
                if entry.file_type().unwrap().is_dir() {
                    stack.push(entry.path());
                }
            }
        }
    }

    #[test]
    fn whiteout_replaces_an_earlier_directory_of_this_layer() {
        let sb = sandbox();
        let mut t = Tar::new();
        t.dir("d/").file("d/f", b"f").file(".wh.d", b"");
        sb.apply(&t.bytes()).unwrap();
        assert!(sb.dest.join("d").symlink_metadata().unwrap().file_type().is_char_device());
    }

    #[test]
    fn hardlink_within_a_layer_shares_the_inode() {
        let sb = sandbox();
        let mut t = Tar::new();
        t.file_with("bin/sh", b"shell", 0o755, 0, MTIME).hardlink("bin/ash", "bin/sh").hardlink("/usr/sh", "./bin/sh");
        sb.apply(&t.bytes()).unwrap();
        let a = sb.dest.join("bin/sh").metadata().unwrap();
        let b = sb.dest.join("bin/ash").metadata().unwrap();
        let c = sb.dest.join("usr/sh").metadata().unwrap();
        assert_eq!(a.ino(), b.ino());
        assert_eq!(a.ino(), c.ino());
        assert_eq!(a.nlink(), 3);
    }

    #[test]
    fn mtimes_of_files_dirs_and_symlinks_are_preserved() {
        let sb = sandbox();
        let mut t = Tar::new();
        t.dir_with("./", 0o755, 1_000_000_000)
            .dir_with("d/", 0o755, 1_111_111_111)
            .file_with("d/f", b"f", 0o644, 0, 1_234_567_890)
            .dir_with("d/sub/", 0o755, 1_222_222_222)
            .file("d/sub/late", b"written after its dir")
            .symlink("d/l", "f");
        sb.apply(&t.bytes()).unwrap();
        let mtime = |p: &str| sb.dest.join(p).symlink_metadata().unwrap().mtime();
        assert_eq!(mtime("d/f"), 1_234_567_890);
        assert_eq!(mtime("d"), 1_111_111_111);
        assert_eq!(mtime("d/sub"), 1_222_222_222);
        assert_eq!(mtime("d/l"), MTIME as i64);
        assert_eq!(sb.dest.metadata().unwrap().mtime(), 1_000_000_000);
    }

    #[test]
    fn root_entry_sets_root_metadata_and_nothing_else_may_name_it() {
        let sb = sandbox();
        let mut t = Tar::new();
        t.dir_with("./", 0o750, MTIME);
        sb.apply(&t.bytes()).unwrap();
        assert_eq!(sb.dest.metadata().unwrap().mode() & 0o7777, 0o750);
        for name in ["/", ".", "a/.."] {
            let sb = sandbox();
            let mut t = Tar::new();
            t.file(name, b"x");
            let err = fails(&sb, &t.bytes(), name);
            assert!(matches!(err, ApplyError::NamesRoot { .. }), "{err}");
        }
    }

    #[test]
    fn unsupported_entry_types_are_named() {
        let sb = sandbox();
        let mut t = Tar::new();
        t.push(Tar::header(b"sparse", EntryType::GNUSparse, 0, 0o644), b"");
        let err = fails(&sb, &t.bytes(), "sparse");
        assert!(err.to_string().contains("GNU sparse"), "{err}");
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let sb = sandbox();
        let mut x: u32 = 0x1234_5678;
        let garbage: Vec<u8> = (0..8192)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        assert!(matches!(sb.apply(&garbage).unwrap_err(), ApplyError::Malformed { .. }));
        for compression in [Compression::Gzip, Compression::Zstd] {
            assert!(apply_layer(&garbage[..], compression, &sb.dest, &ApplyLimits::default()).is_err());
        }
        let mut t = Tar::new();
        t.file("big", &[7u8; 4000]);
        let bytes = t.bytes();
        let sb = sandbox();
        let err = sb.apply(&bytes[..2000]).unwrap_err();
        assert!(err.to_string().contains("\"big\"") && err.to_string().contains("truncated"), "{err}");
        // Every prefix of a valid layer fails cleanly or succeeds; none panics.
        for cut in (0..bytes.len()).step_by(97) {
            let sb = sandbox();
            let _ = sb.apply(&bytes[..cut]);
        }
    }

    #[test]
    fn absurd_pax_size_on_an_unread_entry_is_an_error_not_an_overflow() {
        let sb = sandbox();
        let mut t = Tar::new();
        t.pax(&[("size", b"18446744073709551615")]).file(".wh.x", b"");
        let err = fails(&sb, &t.bytes(), ".wh.x");
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn parse_pax_handles_binary_values_and_rejects_bad_lengths() {
        let pax = parse_pax(b"29 SCHILY.xattr.user.a=x\ny\nz\n12 uid=1000\n").unwrap();
        assert_eq!(pax.xattrs, vec![(b"user.a".to_vec(), b"x\ny\nz".to_vec())]);
        assert_eq!(pax.uid, Some(1000));
        for bad in [&b"99 path=x\n"[..], b"x path=y\n", b"3 a\n", b"99999999999999999999999 a=b\n", b"7 path\n"] {
            assert!(parse_pax(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_pax_time(b"-1.5"), Some(Timespec { tv_sec: -2, tv_nsec: 500_000_000 }));
        assert_eq!(parse_pax_time(b"12"), Some(Timespec { tv_sec: 12, tv_nsec: 0 }));
        assert_eq!(parse_pax_time(b"1.x"), None);
    }

    #[test]
    fn numeric_fields_read_like_go() {
        assert_eq!(numeric(b"0000644\0"), Some(0o644));
        assert_eq!(numeric(b" 644 \0\0"), Some(0o644));
        assert_eq!(numeric(b"\0\0\0\0\0\0\0\0"), Some(0));
        assert_eq!(numeric(b"0009"), None);
        assert_eq!(numeric(&[0x80, 0, 0, 0, 0, 0, 0, 1]), Some(1));
        assert_eq!(numeric(&[0xff; 8]), Some(-1));
        assert_eq!(numeric(&[0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(unsigned(&[0xff; 8]), None);
    }
}
