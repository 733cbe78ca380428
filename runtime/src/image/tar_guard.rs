//! A tar stream passed through unchanged to the tar crate (`load`'s reader of archives),
//! refusing what the crate would hold in memory without a bound: a GNU long name or long
//! link, or a PAX extension header, larger than [`MAX_EXTENSION`] (the crate reads them
//! whole: a 33 kB compressed archive declaring a 1 GiB long name took 1.6 GB), and GNU sparse
//! entries, which no image archive holds.
//!
//! It follows the stream as the crate does (headers every 512 bytes after each entry's data,
//! a PAX `size` overriding the next entry's header), up to the archive's end marker.

use std::io::{self, Read};

/// The largest extension header accepted (layers get the same bound: `ApplyLimits`).
pub const MAX_EXTENSION: u64 = 1 << 20;
const BLOCK: usize = 512;

pub struct ExtensionGuard<R> {
    inner: R,
    header: Vec<u8>,
    /// Data bytes (padding included) before the next header.
    data_left: u64,
    /// The PAX header being read (its data, without padding, still to come).
    pax: Option<(Vec<u8>, u64)>,
    /// The size a PAX header read for the member being described gives it (the crate's
    /// reading: its first `size` record, none if a record before it is malformed).
    pax_size: Option<u64>,
    /// The end marker was seen, or the crate will fail on its own: nothing more to follow.
    done: bool,
}

impl<R: Read> ExtensionGuard<R> {
    pub fn new(inner: R) -> Self {
        ExtensionGuard {
            inner,
            header: Vec::with_capacity(BLOCK),
            data_left: 0,
            pax: None,
            pax_size: None,
            done: false,
        }
    }

    fn follow(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() && !self.done {
            if self.data_left > 0 {
                let n = bytes.len().min(usize::try_from(self.data_left).unwrap_or(usize::MAX));
                if let Some((data, wanted)) = &mut self.pax {
                    let take = n.min(usize::try_from(*wanted).unwrap_or(usize::MAX));
                    data.extend_from_slice(&bytes[..take]);
                    *wanted -= take as u64;
                }
                self.data_left -= n as u64;
                bytes = &bytes[n..];
                if self.data_left == 0 {
                    if let Some((data, _)) = self.pax.take() {
                        self.pax_size = pax_size(&data);
                    }
                }
                continue;
            }
            let n = bytes.len().min(BLOCK - self.header.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() == BLOCK {
                self.at_header()?;
                self.header.clear();
            }
        }
        Ok(())
    }

    /// A header, as tar 0.4's `next_entry`/`next_entry_raw` take it: the typeflags L, K, x
    /// and g are extension headers, whatever the header's format (no PAX size for them); a
    /// GNU or ustar L, K or x is read into memory whole and describes the next member; any
    /// other header is a member returned to the reader, which ends what PAX said.
    fn at_header(&mut self) -> io::Result<()> {
        if self.header.iter().all(|b| *b == 0) {
            self.done = true;
            return Ok(());
        }
        let header = tar::Header::from_byte_slice(&self.header);
        let Ok(declared) = header.entry_size() else {
            // The crate refuses it too.
            self.done = true;
            return Ok(());
        };
        let typeflag = self.header[156];
        let recognized = header.as_gnu().is_some() || header.as_ustar().is_some();
        let extension = matches!(typeflag, b'L' | b'K' | b'x' | b'g');
        let read_whole = recognized && matches!(typeflag, b'L' | b'K' | b'x');
        if recognized && typeflag == b'S' {
            return Err(io::Error::other("a GNU sparse entry, which no image archive holds"));
        }
        if read_whole && declared > MAX_EXTENSION {
            return Err(io::Error::other(format!(
                "an extension header of {declared} bytes (at most {MAX_EXTENSION}) in the archive"
            )));
        }
        let size = match self.pax_size {
            Some(size) if !extension => size,
            _ => declared,
        };
        if !read_whole {
            // A member the crate returns: the extensions before it are spent.
            self.pax_size = None;
        }
        if recognized && typeflag == b'x' {
            self.pax = Some((Vec::with_capacity(declared as usize), declared));
        }
        self.data_left =
            size.checked_next_multiple_of(BLOCK as u64).ok_or_else(|| io::Error::other("size overflow"))?;
        if self.data_left == 0 {
            if let Some((data, _)) = self.pax.take() {
                self.pax_size = pax_size(&data);
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for ExtensionGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.follow(&buf[..n])?;
        Ok(n)
    }
}

/// The `size` PAX data gives the next member, read by the crate's own parser and rule
/// (`pax_extensions_value`: the first `size` record; nothing once a record is malformed).
fn pax_size(data: &[u8]) -> Option<u64> {
    for extension in tar::PaxExtensions::new(data) {
        let extension = extension.ok()?;
        if extension.key() != Ok("size") {
            continue;
        }
        return extension.value().ok()?.parse().ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, kind: tar::EntryType, size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    fn padded(data: &[u8]) -> Vec<u8> {
        let mut v = data.to_vec();
        v.resize(data.len().next_multiple_of(BLOCK), 0);
        v
    }

    /// Everything read through the guard, a few bytes at a time.
    fn through(stream: &[u8]) -> io::Result<Vec<u8>> {
        let mut guard = ExtensionGuard::new(stream);
        let mut out = Vec::new();
        let mut buf = [0u8; 37];
        loop {
            match guard.read(&mut buf)? {
                0 => return Ok(out),
                n => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    #[test]
    fn a_plain_archive_passes_unchanged_and_the_crate_reads_it() {
        let mut b = tar::Builder::new(Vec::new());
        let long = format!("blobs/sha256/{}", "a".repeat(200));
        for (name, data) in [("index.json", &b"{}"[..]), (long.as_str(), &b"long-named"[..])] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, data).unwrap();
        }
        let archive = b.into_inner().unwrap();
        assert_eq!(through(&archive).unwrap(), archive);
        let mut read = tar::Archive::new(ExtensionGuard::new(&archive[..]));
        let names: Vec<String> =
            read.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        assert_eq!(names, ["index.json".to_string(), long]);
    }

    #[test]
    fn a_huge_extension_header_is_refused_before_its_data() {
        let mut stream = header("././@LongLink", tar::EntryType::GNULongName, 1 << 30);
        stream.extend(vec![0u8; 4096]);
        let e = through(&stream).unwrap_err();
        assert!(e.to_string().contains("an extension header of 1073741824 bytes"), "{e}");
        let mut stream = header("pax", tar::EntryType::XHeader, MAX_EXTENSION + 1);
        stream.extend(vec![0u8; 4096]);
        assert!(through(&stream).is_err());
        // A global PAX header is handed to us as an entry, never read whole: allowed.
        let mut stream = header("g", tar::EntryType::XGlobalHeader, 4 << 20);
        stream.extend(vec![0u8; 4 << 20]);
        stream.extend(vec![0u8; 1024]);
        assert!(through(&stream).is_ok());
    }

    #[test]
    fn a_pax_size_moves_the_next_header_as_the_crate_does() {
        // PAX says the next entry has 600 bytes though its header says 0: the header after
        // it is where the crate will look, 1024 bytes on, and a huge long name there is seen.
        let record = b"12 size=600\n";
        let mut stream = header("pax", tar::EntryType::XHeader, record.len() as u64);
        stream.extend(padded(record));
        stream.extend(header("big", tar::EntryType::Regular, 0));
        stream.extend(vec![7u8; 1024]);
        stream.extend(header("././@LongLink", tar::EntryType::GNULongName, 1 << 30));
        let e = through(&stream).unwrap_err();
        assert!(e.to_string().contains("extension header"), "{e}");
        // Wherever the crate looks next, the guard looks too: with two size records (the
        // crate takes the first, 0), after a global header (which PAX does not size), after
        // an old-format x header.
        let records = b"12 size=000\n12 size=600\n";
        let mut stream = header("pax", tar::EntryType::XHeader, records.len() as u64);
        stream.extend(padded(records));
        stream.extend(header("member", tar::EntryType::Regular, 0));
        stream.extend(header("././@LongLink", tar::EntryType::GNULongName, 1 << 30));
        assert!(through(&stream).is_err());
        let record = b"12 size=600\n";
        let mut stream = header("pax", tar::EntryType::XHeader, record.len() as u64);
        stream.extend(padded(record));
        stream.extend(header("global", tar::EntryType::XGlobalHeader, 0));
        stream.extend(header("././@LongLink", tar::EntryType::GNULongName, 1 << 30));
        assert!(through(&stream).is_err());
        assert_eq!(pax_size(b"11 path=ab\n12 size=600\n"), Some(600));
        assert_eq!(pax_size(b"99 size=1\n"), None);
        // The crate's reading: the first size record; a record cut by a newline ends it.
        assert_eq!(pax_size(b"12 size=000\n12 size=600\n"), Some(0));
        assert_eq!(pax_size(b"13 path=a\nbc\n12 size=600\n"), None);
    }
}
