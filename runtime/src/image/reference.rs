//! Image references, normalised the way docker does: `busybox` is
//! `docker.io/library/busybox:latest`, `host:port/ns/name:tag` keeps its registry, and
//! `name@sha256:...` pins a digest.

use crate::digest::Digest;
use oci_client::Reference;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid reference {input:?}: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

/// A normalised image reference: registry, repository, and a tag and/or digest.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    inner: Reference,
}

impl ImageRef {
    pub fn parse(input: &str) -> Result<ImageRef, ReferenceError> {
        let err = |reason: &str| ReferenceError { input: input.to_string(), reason: reason.to_string() };
        if input.trim() != input || input.is_empty() {
            return Err(err("must be a non-empty name without spaces"));
        }
        if input.chars().any(|c| c.is_ascii_uppercase()) {
            // docker's own wording; the registry part may be mixed case but repositories may not.
            let name_part = input.rsplit_once('/').map(|(_, n)| n).unwrap_or(input);
            let repo = name_part.split([':', '@']).next().unwrap_or("");
            if repo.chars().any(|c| c.is_ascii_uppercase()) {
                return Err(err("repository name must be lowercase"));
            }
        }
        let inner = Reference::try_from(input).map_err(|e| err(&e.to_string()))?;
        if let Some(d) = inner.digest() {
            d.parse::<Digest>().map_err(|e| err(&e.to_string()))?;
        }
        Ok(ImageRef { inner })
    }

    pub fn registry(&self) -> &str {
        self.inner.registry()
    }
    pub fn repository(&self) -> &str {
        self.inner.repository()
    }
    pub fn tag(&self) -> Option<&str> {
        self.inner.tag()
    }
    pub fn digest(&self) -> Option<Digest> {
        self.inner.digest().and_then(|d| d.parse().ok())
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry(), self.repository())
    }

    /// The same name pinned to a digest (drops the tag).
    pub fn with_digest(&self, digest: &Digest) -> ImageRef {
        ImageRef { inner: Reference::with_digest(self.registry().into(), self.repository().into(), digest.to_string()) }
    }

    /// The same name with another tag.
    pub fn with_tag(&self, tag: &str) -> ImageRef {
        ImageRef { inner: Reference::with_tag(self.registry().into(), self.repository().into(), tag.into()) }
    }

    /// The host (and port) to connect to: docker.io lives at index.docker.io.
    pub fn registry_host(&self) -> &str {
        self.inner.resolve_registry()
    }

    pub fn oci(&self) -> &Reference {
        &self.inner
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A reference with both keeps only the digest: the tag adds nothing once pinned.
        match (self.tag(), self.inner.digest()) {
            (_, Some(d)) => write!(f, "{}@{}", self.name(), d),
            (Some(t), None) => write!(f, "{}:{}", self.name(), t),
            (None, None) => write!(f, "{}", self.name()),
        }
    }
}

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, ReferenceError> {
        ImageRef::parse(s)
    }
}

/// Whether a registry host is on loopback (plain http by default, as docker does).
pub fn is_loopback_registry(host: &str) -> bool {
    let hostname = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map(|(h, p)| if p.chars().all(|c| c.is_ascii_digit()) { h } else { host }).unwrap_or(host)
    };
    if hostname == "localhost" {
        return true;
    }
    hostname.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        ImageRef::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(norm("quay.io/a/b/c:v1"), "quay.io/a/b/c:v1");
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("127.0.0.1:5000/ns/name:tag"), "127.0.0.1:5000/ns/name:tag");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(norm(&format!("busybox@{d}")), format!("docker.io/library/busybox@{d}"));
        let r = ImageRef::parse("localhost:5000/x:y").unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "x");
        assert_eq!(r.tag(), Some("y"));
        assert_eq!(ImageRef::parse("busybox").unwrap().registry_host(), "index.docker.io");
    }

    #[test]
    fn rejects_bad_references_with_the_reason() {
        for bad in ["", "Busybox", "a b", "busybox:", "busybox@sha256:123", ":tag", "a//b", "-x", "x@md5:00"] {
            let e = ImageRef::parse(bad).unwrap_err();
            assert!(e.to_string().starts_with("invalid reference"), "{bad}: {e}");
        }
        assert!(ImageRef::parse("Busybox").unwrap_err().to_string().contains("lowercase"));
    }

    #[test]
    fn loopback_registries() {
        for yes in ["localhost", "localhost:5000", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000"] {
            assert!(is_loopback_registry(yes), "{yes}");
        }
        for no in ["docker.io", "10.0.0.1:5000", "localhost.example.com", "[fe80::1]:80"] {
            assert!(!is_loopback_registry(no), "{no}");
        }
    }
}
