//! Content digests (`sha256:<hex>`): parsing, computing, and verifying streams against them.
//!
//! Everything strata stores is addressed by digest, and every byte that enters the store is
//! hashed on the way in. This module must never accept a digest it cannot verify.

use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

/// A sha256 content digest. Other algorithms are refused when parsed: we could not verify them.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex digits>")]
    Invalid(String),
    #[error("unsupported digest algorithm in {0:?}: only sha256 is supported")]
    Unsupported(String),
}

impl Digest {
    pub fn from_hex(hex: &str) -> Result<Self, DigestError> {
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Digest { hex: hex.to_string() })
        } else {
            Err(DigestError::Invalid(hex.to_string()))
        }
    }

    pub fn of_bytes(data: &[u8]) -> Self {
        Digest { hex: hex::encode(Sha256::digest(data)) }
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex digits, as docker shows image IDs.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, DigestError> {
        match s.split_once(':') {
            Some(("sha256", hex)) => Digest::from_hex(hex).map_err(|_| DigestError::Invalid(s.to_string())),
            Some((alg, _)) if !alg.is_empty() => Err(DigestError::Unsupported(s.to_string())),
            _ => Err(DigestError::Invalid(s.to_string())),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Incremental sha256 that also counts bytes.
#[derive(Default, Clone)]
pub struct Hasher {
    inner: Sha256,
    len: u64,
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
        self.len += data.len() as u64;
    }
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn finish(self) -> Digest {
        Digest { hex: hex::encode(self.inner.finalize()) }
    }
}

/// A writer that hashes everything written through it.
pub struct HashingWriter<W> {
    pub inner: W,
    pub hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Hasher::default() }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes everything read through it.
pub struct HashingReader<R> {
    pub inner: R,
    pub hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Hasher::default() }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The chain ID of a layer stack (OCI image spec): the identity of "these layers, in this
/// order", which is what a snapshot directory is keyed by.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match out.last() {
            None => diff.clone(),
            Some(parent) => Digest::of_bytes(format!("{parent} {diff}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse().unwrap();
        assert_eq!(d, Digest::of_bytes(b""));
        assert_eq!(d.short(), "e3b0c44298fc");
        assert!("sha256:abc".parse::<Digest>().is_err());
        assert!("sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855".parse::<Digest>().is_err());
        assert!(matches!("sha512:00".parse::<Digest>(), Err(DigestError::Unsupported(_))));
        assert!("nocolon".parse::<Digest>().is_err());
    }

    #[test]
    fn chain_id_follows_the_image_spec() {
        let a = Digest::of_bytes(b"a");
        let b = Digest::of_bytes(b"b");
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], Digest::of_bytes(format!("{a} {b}").as_bytes()));
    }
}
