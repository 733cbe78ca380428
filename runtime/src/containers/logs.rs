//! Container logs in docker's json-file format: one JSON object a line,
//! `{"log":"hello\n","stream":"stdout","time":"2024-05-01T12:00:00.123456789Z"}`.
//!
//! The monitor writes them (`LogWriter`: output is cut into lines, a line longer than 16 KiB
//! or left unterminated at the end becomes an entry of its own without the newline, as
//! docker does); `logs` reads them (`read_entries`, `Follower` for `-f`). Each entry is one
//! append-mode write, so a reader sees whole lines, at worst a last one still incomplete,
//! which it leaves for the next read.
//!
//! With docker's `max-size`, a file about to grow past it is rotated as docker rotates it:
//! `LOG` becomes `LOG.1`, `LOG.1` becomes `LOG.2`, ..., `max-file` files in all, the oldest
//! dropped. A follower finishes the file it has open, then goes on with the new one.

use crate::spec::run_options::LogConfig;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Longest line kept whole; longer ones are split, as docker's 16 KiB buffer splits them.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub log: String,
    pub stream: Stream,
    pub time: String,
}

pub struct LogWriter {
    path: PathBuf,
    file: File,
    /// The current file's size.
    size: u64,
    config: LogConfig,
    /// An unterminated line per stream, waiting for its end.
    pending: [Vec<u8>; 2],
}

fn open_log(path: &Path) -> io::Result<File> {
    // 0600: a container's output is for its owner (and `logs`) only.
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

/// The `n`th rotated file of `path` (`LOG.n`).
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The log's files, oldest first: the rotated ones there are, then `path` itself.
/// A rotation in progress may leave one number missing for an instant: the search goes on
/// past a single gap.
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut n = 1;
    while rotated(path, n).exists() || rotated(path, n + 1).exists() {
        if rotated(path, n).exists() {
            files.push(rotated(path, n));
        }
        n += 1;
    }
    files.reverse();
    files.push(path.to_path_buf());
    files
}

/// The log's files opened at once, oldest first, each file once (a rotation while they are
/// listed can show one file under two names): the last one, the current, follows rotations.
pub fn open_all(path: &Path) -> io::Result<Vec<Follower>> {
    use std::os::unix::fs::MetadataExt;
    let mut opened: Vec<Follower> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let names = files(path);
    let last = names.len() - 1;
    for (i, name) in names.into_iter().enumerate() {
        let follower = match Follower::open(&name) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound && i < last => continue,
            Err(e) => return Err(e),
        };
        let meta = follower.file.metadata()?;
        if !seen.insert((meta.dev(), meta.ino())) {
            // The same file as an older name: keep it in its newest place.
            opened.retain(|f: &Follower| {
                f.file.metadata().map(|m| (m.dev(), m.ino())).ok() != Some((meta.dev(), meta.ino()))
            });
        }
        opened.push(follower);
    }
    let count = opened.len();
    for (i, f) in opened.iter_mut().enumerate() {
        f.follow_rotation = i + 1 == count;
        f.path = path.to_path_buf();
    }
    Ok(opened)
}

impl LogWriter {
    pub fn open(path: &Path, config: &LogConfig) -> io::Result<LogWriter> {
        let file = open_log(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            config: config.clone(),
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// docker's rotation: every file moves one up, the oldest kept one is dropped, and a new
    /// file starts.
    fn rotate(&mut self) -> io::Result<()> {
        let files = self.config.files();
        let gone = |r: io::Result<()>| match r {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        for n in (1..files.saturating_sub(1)).rev() {
            gone(std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1)))?;
        }
        match files {
            1 => gone(std::fs::remove_file(&self.path))?,
            _ => gone(std::fs::rename(&self.path, rotated(&self.path, 1)))?,
        }
        self.file = open_log(&self.path)?;
        self.size = 0;
        Ok(())
    }

    /// Log output of one stream: every completed line becomes an entry.
    pub fn write(&mut self, stream: Stream, mut data: &[u8]) -> io::Result<()> {
        let slot = stream as usize;
        while !data.is_empty() {
            let room = MAX_LINE - self.pending[slot].len();
            let take = match data.iter().position(|b| *b == b'\n') {
                Some(nl) if nl < room => nl + 1,
                _ => data.len().min(room),
            };
            self.pending[slot].extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending[slot].ends_with(b"\n") || self.pending[slot].len() >= MAX_LINE {
                let line = std::mem::take(&mut self.pending[slot]);
                self.entry(stream, &line)?;
            }
        }
        Ok(())
    }

    /// Write out unterminated lines (the stream ended).
    pub fn flush(&mut self) -> io::Result<()> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let line = std::mem::take(&mut self.pending[stream as usize]);
            if !line.is_empty() {
                self.entry(stream, &line)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, stream: Stream, line: &[u8]) -> io::Result<()> {
        let entry =
            Entry { log: String::from_utf8_lossy(line).into_owned(), stream, time: crate::lifecycle::now_rfc3339() };
        let mut bytes = serde_json::to_vec(&entry).expect("entry serialises");
        bytes.push(b'\n');
        if let Some(max) = self.config.max_size {
            if self.size > 0 && self.size + bytes.len() as u64 > max {
                // A rotation that fails costs the limit, never the output: the entry goes
                // to whichever file is open.
                if let Err(e) = self.rotate() {
                    tracing::warn!("rotating the log {}: {e}", self.path.display());
                }
            }
        }
        self.file.write_all(&bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }
}

/// Every entry of a log file (a missing file has none); damaged lines are skipped.
pub fn read_entries(path: &Path) -> io::Result<Vec<Entry>> {
    let mut follower = match Follower::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    follower.read_new()
}

/// Reads a log file incrementally, for `logs -f`; once the file it reads has been rotated
/// away and read to its end, it goes on with the new one.
pub struct Follower {
    path: PathBuf,
    file: File,
    partial: Vec<u8>,
    /// Go on with the file that takes the name once this one is rotated away.
    follow_rotation: bool,
    /// Read no further than this offset (`logs` without `-f`: what the file held when asked).
    end: Option<u64>,
}

impl Follower {
    pub fn open(path: &Path) -> io::Result<Follower> {
        Ok(Follower {
            path: path.to_path_buf(),
            file: File::open(path)?,
            partial: Vec::new(),
            follow_rotation: true,
            end: None,
        })
    }

    /// Read only what the file holds now, and not on into the files written after it: docker's
    /// `logs` without `-f` ends, however fast the container writes.
    pub fn stop_at_current_end(&mut self) -> io::Result<()> {
        self.end = Some(self.file.metadata()?.len());
        self.follow_rotation = false;
        Ok(())
    }

    /// The file to go on with once the open one is read to its end, opened: None while the
    /// open one is still the log's current file (or a rotation is still moving files); after
    /// rotations, the file that came next (the newer neighbour among `LOG.n`, ..., `LOG.1`,
    /// `LOG`), or the oldest one left if the open one was dropped meanwhile.
    fn next_file(&self) -> Option<File> {
        use std::os::unix::fs::MetadataExt;
        if !self.follow_rotation {
            return None;
        }
        let open = self.file.metadata().ok()?;
        let open = (open.dev(), open.ino());
        let id = |m: std::fs::Metadata| (m.dev(), m.ino());
        let listing = || {
            let files = files(&self.path);
            let ids: Vec<_> = files.iter().map(|f| std::fs::metadata(f).ok().map(id)).collect();
            (files, ids)
        };
        // A rotation renames the files one at a time, and a listing is made a name at a
        // time: one made meanwhile can show the open file under two names, or under none, or
        // next to a file that is not its neighbour. Only a listing that a second one agrees
        // with is used, and the file picked is opened and checked to be the one listed.
        for _ in 0..100 {
            let first = listing();
            if listing() != first {
                std::thread::yield_now();
                continue;
            }
            let (files, ids) = first;
            let at = match ids.iter().position(|i| *i == Some(open)) {
                Some(last) if last + 1 == files.len() => return None,
                Some(at) => at + 1,
                // Dropped: the oldest there is.
                None => ids.iter().position(Option::is_some)?,
            };
            // Not there (yet): its creation wakes a later call.
            let file = File::open(&files[at]).ok()?;
            if file.metadata().ok().map(id) == ids[at] {
                return Some(file);
            }
        }
        None
    }

    /// Start after what is there now.
    pub fn skip_to_end(&mut self) -> io::Result<()> {
        self.file.seek(SeekFrom::End(0))?;
        self.partial.clear();
        Ok(())
    }

    /// Start at the last `n` complete entries, found by reading the file backwards from its
    /// end: `logs --tail N` of a large log reads only what it prints. Returns how many
    /// entries that is (fewer than `n` when the file has fewer).
    pub fn seek_to_last(&mut self, n: usize) -> io::Result<usize> {
        let mut pos = match self.end {
            Some(end) => end,
            None => self.file.seek(SeekFrom::End(0))?,
        };
        let mut newlines = 0;
        let mut buf = vec![0u8; 64 * 1024];
        let start = 'search: loop {
            if pos == 0 {
                break 0;
            }
            let len = (buf.len() as u64).min(pos) as usize;
            pos -= len as u64;
            self.file.seek(SeekFrom::Start(pos))?;
            self.file.read_exact(&mut buf[..len])?;
            // The last newline ends the last complete entry; the (n+1)th from the end ends the
            // entry before the last n.
            for i in (0..len).rev() {
                if buf[i] == b'\n' {
                    newlines += 1;
                    if newlines == n + 1 {
                        break 'search pos + i as u64 + 1;
                    }
                }
            }
        };
        self.file.seek(SeekFrom::Start(start))?;
        self.partial.clear();
        // The newlines after `start`: all found when the file has fewer than n + 1.
        Ok(if start == 0 { newlines } else { n })
    }

    /// Entries completed since the last call, handed to `each` a chunk of the file at a time
    /// (a large log is never all in memory).
    pub fn read_new_each(&mut self, mut each: impl FnMut(Entry) -> io::Result<()>) -> io::Result<()> {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let room = match self.end {
                Some(end) => usize::try_from(end.saturating_sub(self.file.stream_position()?)).unwrap_or(usize::MAX),
                None => usize::MAX,
            };
            let want = room.min(buf.len());
            let n = if want == 0 { 0 } else { self.file.read(&mut buf[..want])? };
            if n == 0 {
                let Some(next) = self.next_file() else { return Ok(()) };
                // Rotated: what was written to it before the rotation is read first (the
                // end just seen may be older than the rotation).
                if self.file.read(&mut buf[..1]).map(|n| n > 0).unwrap_or(false) {
                    self.partial.push(buf[0]);
                    continue;
                }
                // Read to its end: on with the file written after it.
                self.file = next;
                self.partial.clear();
                continue;
            }
            self.partial.extend_from_slice(&buf[..n]);
            let Some(last_nl) = self.partial.iter().rposition(|b| *b == b'\n') else { continue };
            let complete: Vec<u8> = self.partial.drain(..=last_nl).collect();
            for line in complete.split(|b| *b == b'\n') {
                if let Ok(entry) = serde_json::from_slice(line) {
                    each(entry)?;
                }
            }
        }
    }

    /// The entries of this file (a rotated one) to its end, without going on to another.
    pub fn read_file_each(&mut self, each: impl FnMut(Entry) -> io::Result<()>) -> io::Result<()> {
        self.follow_rotation = false;
        self.read_new_each(each)
    }

    /// Entries completed since the last call.
    pub fn read_new(&mut self) -> io::Result<Vec<Entry>> {
        let mut entries = Vec::new();
        self.read_new_each(|e| {
            entries.push(e);
            Ok(())
        })?;
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_found_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut w = LogWriter::open(&path, &LogConfig::default()).unwrap();
        // Long enough that the search crosses its 64 KiB blocks.
        for i in 0..5000 {
            w.write(Stream::Stdout, format!("line {i:04} {}\n", "x".repeat(40)).as_bytes()).unwrap();
        }
        w.flush().unwrap();
        drop(w);
        // The monitor in the middle of writing an entry: not one yet.
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"log":"half"#).unwrap();
        let tail = |n| {
            let mut f = Follower::open(&path).unwrap();
            f.seek_to_last(n).unwrap();
            f.read_new().unwrap().iter().map(|e| e.log[..9].to_string()).collect::<Vec<_>>()
        };
        assert_eq!(tail(3), ["line 4997", "line 4998", "line 4999"]);
        assert_eq!(tail(0), Vec::<String>::new());
        assert_eq!(tail(4999).first().map(String::as_str), Some("line 0001"));
        assert_eq!(tail(9999).len(), 5000);
    }

    #[test]
    fn lines_become_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut w = LogWriter::open(&path, &LogConfig::default()).unwrap();
        w.write(Stream::Stdout, b"hello\nwor").unwrap();
        w.write(Stream::Stderr, b"oops\n").unwrap();
        w.write(Stream::Stdout, b"ld\n\xffend").unwrap();
        w.flush().unwrap();
        let entries = read_entries(&path).unwrap();
        let got: Vec<(Stream, &str)> = entries.iter().map(|e| (e.stream, e.log.as_str())).collect();
        assert_eq!(
            got,
            [
                (Stream::Stdout, "hello\n"),
                (Stream::Stderr, "oops\n"),
                (Stream::Stdout, "world\n"),
                (Stream::Stdout, "\u{fffd}end")
            ]
        );
        let raw = std::fs::read_to_string(&path).unwrap();
        let first: serde_json::Value = serde_json::from_str(raw.lines().next().unwrap()).unwrap();
        assert_eq!(first["log"], "hello\n");
        assert_eq!(first["stream"], "stdout");
        let time = first["time"].as_str().unwrap();
        assert!(time.ends_with('Z') && time.len() == 30, "{time}");
    }

    #[test]
    fn long_lines_are_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut w = LogWriter::open(&path, &LogConfig::default()).unwrap();
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        w.write(Stream::Stdout, &long).unwrap();
        w.write(Stream::Stdout, b"\n").unwrap();
        let entries = read_entries(&path).unwrap();
        let lens: Vec<usize> = entries.iter().map(|e| e.log.len()).collect();
        assert_eq!(lens, [MAX_LINE, MAX_LINE, 11]);
    }

    #[test]
    fn follower_sees_only_complete_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut w = LogWriter::open(&path, &LogConfig::default()).unwrap();
        w.write(Stream::Stdout, b"one\n").unwrap();
        let mut f = Follower::open(&path).unwrap();
        assert_eq!(f.read_new().unwrap().len(), 1);
        // Half an entry on disk: nothing yet.
        let mut raw = OpenOptions::new().append(true).open(&path).unwrap();
        raw.write_all(br#"{"log":"two\n","stream":"stdout","#).unwrap();
        assert!(f.read_new().unwrap().is_empty());
        raw.write_all(b"\"time\":\"2024-01-01T00:00:00.000000000Z\"}\n").unwrap();
        assert_eq!(f.read_new().unwrap()[0].log, "two\n");
        assert!(read_entries(&dir.path().join("missing")).unwrap().is_empty());
    }

    #[test]
    fn a_follower_goes_through_rotations_in_order() {
        // Several rotations between two reads, then the follower's own file dropped: each
        // line once, in order, as far as the kept files go.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let config = |files| LogConfig { max_size: Some(200), max_file: Some(files), ..Default::default() };
        let lines = |f: &mut Follower| f.read_new().unwrap().into_iter().map(|e| e.log).collect::<String>();
        let mut w = LogWriter::open(&path, &config(4)).unwrap();
        w.write(Stream::Stdout, b"0\n").unwrap();
        let mut f = Follower::open(&path).unwrap();
        assert_eq!(lines(&mut f), "0\n");
        // ~80 bytes an entry, 200 a file: a rotation every other line; three files' worth
        // (of the four kept) while the follower waits.
        for i in 1..7 {
            w.write(Stream::Stdout, format!("{i}\n").as_bytes()).unwrap();
        }
        assert_eq!(lines(&mut f), "1\n2\n3\n4\n5\n6\n");
        // Now more than are kept: the follower's file is dropped; on from the oldest left.
        for i in 7..20 {
            w.write(Stream::Stdout, format!("{i}\n").as_bytes()).unwrap();
        }
        // What its open file still held, then all four kept files (12..19); 8..11 went with
        // the dropped ones.
        assert_eq!(lines(&mut f), "7\n12\n13\n14\n15\n16\n17\n18\n19\n");
    }
}
