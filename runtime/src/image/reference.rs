//! Image references, normalised the way docker does: `busybox` is
//! `docker.io/library/busybox:latest`, `host:port/ns/name:tag` keeps its registry, and
//! `name@sha256:...` pins a digest.

use crate::digest::Digest;
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
    registry: String,
    repository: String,
    tag: Option<String>,
    /// Checked by the grammar and parsed as a [`Digest`] when the reference was made.
    digest: Option<String>,
}

impl ImageRef {
    /// Parse and normalise `input` (the distribution reference grammar, by hand: a regex for
    /// it costs ~80 ms to build, on every command).
    pub fn parse(input: &str) -> Result<ImageRef, ReferenceError> {
        let err = |reason: &str| ReferenceError { input: input.to_string(), reason: reason.to_string() };
        if input.trim() != input || input.is_empty() {
            return Err(err("must be a non-empty name without spaces"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                if !grammar::is_digest(digest) {
                    return Err(err("invalid digest"));
                }
                digest.parse::<Digest>().map_err(|e| err(&e.to_string()))?;
                (rest, Some(digest.to_string()))
            }
            None => (input, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                if !grammar::is_tag(tag) {
                    return Err(err("invalid tag"));
                }
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        let (registry, repository) = grammar::split_name(name).map_err(&err)?;
        if repository.len() > 255 {
            return Err(err("repository name is longer than 255 characters"));
        }
        let tag = if tag.is_none() && digest.is_none() { Some("latest".to_string()) } else { tag };
        Ok(ImageRef { registry, repository, tag, digest })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }
    pub fn repository(&self) -> &str {
        &self.repository
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<Digest> {
        self.digest.as_deref().and_then(|d| d.parse().ok())
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry(), self.repository())
    }

    /// The same name pinned to a digest (drops the tag).
    pub fn with_digest(&self, digest: &Digest) -> ImageRef {
        ImageRef { tag: None, digest: Some(digest.to_string()), ..self.clone() }
    }

    /// The same name with another tag.
    pub fn with_tag(&self, tag: &str) -> ImageRef {
        ImageRef { tag: Some(tag.to_string()), digest: None, ..self.clone() }
    }

    /// The host (and port) to connect to: docker.io lives at index.docker.io.
    pub fn registry_host(&self) -> &str {
        match self.registry.as_str() {
            "docker.io" => "index.docker.io",
            other => other,
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A reference with both keeps only the digest: the tag adds nothing once pinned.
        match (self.tag(), &self.digest) {
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

/// The reference grammar of the distribution spec (`reference/regexp.go`) and docker's
/// normalisation (`reference/normalize.go`).
mod grammar {
    fn is_alnum_lower(c: char) -> bool {
        c.is_ascii_lowercase() || c.is_ascii_digit()
    }

    /// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
    pub fn is_path_component(s: &str) -> bool {
        let b = s.as_bytes();
        if b.is_empty() || !is_alnum_lower(b[0] as char) || !is_alnum_lower(b[b.len() - 1] as char) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            let c = b[i] as char;
            if is_alnum_lower(c) {
                i += 1;
                continue;
            }
            // A separator: one of `.` `_` `__` or a run of `-`, between alphanumerics.
            let start = i;
            match c {
                '.' => i += 1,
                '_' => i += if b.get(i + 1) == Some(&b'_') { 2 } else { 1 },
                '-' => {
                    while b.get(i) == Some(&b'-') {
                        i += 1;
                    }
                }
                _ => return false,
            }
            if i == start || !b.get(i).is_some_and(|c| is_alnum_lower(*c as char)) {
                return false;
            }
        }
        true
    }

    /// `host(:port)?`: domain name components (letters, digits, inner `-`) joined by `.`, or
    /// `[ipv6]`.
    pub fn is_domain(s: &str) -> bool {
        let (host, port) = match s.strip_prefix('[') {
            Some(rest) => match rest.split_once(']') {
                Some((v6, after)) => {
                    if v6.is_empty() || !v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
                        return false;
                    }
                    (None, after.strip_prefix(':').map(Some).unwrap_or(if after.is_empty() { None } else { Some("") }))
                }
                None => return false,
            },
            None => match s.rsplit_once(':') {
                Some((h, p)) => (Some(h), Some(p)),
                None => (Some(s), None),
            },
        };
        if let Some(p) = port {
            if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) {
                return false;
            }
        }
        host.is_none_or(|h| {
            h.split('.').all(|c| {
                !c.is_empty()
                    && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
                    && !c.starts_with('-')
                    && !c.ends_with('-')
            })
        })
    }

    /// `[\w][\w.-]{0,127}`
    pub fn is_tag(s: &str) -> bool {
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let mut chars = s.chars();
        chars.next().is_some_and(word) && s.len() <= 128 && chars.all(|c| word(c) || c == '.' || c == '-')
    }

    /// `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}`
    pub fn is_digest(s: &str) -> bool {
        let Some((algorithm, hex)) = s.split_once(':') else { return false };
        let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|part| {
            let mut c = part.chars();
            c.next().is_some_and(|f| f.is_ascii_alphabetic()) && c.all(|ch| ch.is_ascii_alphanumeric())
        });
        algorithm_ok && hex.len() >= 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
    }

    /// Split a name into (registry, repository) as docker does: the first component is a
    /// registry if it has a `.` or `:`, is `localhost`, or has upper case; else the registry is
    /// docker.io, where one-component names live under `library/`.
    pub fn split_name(name: &str) -> Result<(String, String), &'static str> {
        let (first, rest) = name.split_once('/').unwrap_or(("", name));
        let is_registry = !first.is_empty()
            && (first.contains(['.', ':']) || first == "localhost" || first.chars().any(|c| c.is_ascii_uppercase()));
        let (mut registry, repository) =
            if is_registry { (first.to_string(), rest) } else { ("docker.io".to_string(), name) };
        if is_registry && !is_domain(first) {
            return Err("invalid registry name");
        }
        if repository.is_empty() || repository.split('/').any(|c| c.is_empty()) {
            return Err("repository name has an empty component");
        }
        if !repository.split('/').all(is_path_component) {
            if repository.chars().any(|c| c.is_ascii_uppercase()) {
                return Err("repository name must be lowercase");
            }
            return Err("invalid repository name (lowercase letters, digits and . _ __ - separators)");
        }
        if registry == "index.docker.io" {
            registry = "docker.io".to_string();
        }
        let repository = if registry == "docker.io" && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        Ok((registry, repository))
    }
}

/// Whether a registry host is on loopback (plain http by default, as docker does).
/// Whether `host` is a registry as a reference names one: `host[:port]` or `[v6][:port]`.
pub fn is_registry_host(host: &str) -> bool {
    grammar::is_domain(host)
}

pub fn is_loopback_registry(host: &str) -> bool {
    // Only `name`, `name:port`, `[v6]` or `[v6]:port`: anything after the name (a `@`, a
    // path) would make this name something other than the host a URL made of it reaches.
    let port_ok = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit());
    let hostname = if let Some(rest) = host.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else { return false };
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(port_ok)) {
            return false;
        }
        inside
    } else {
        match host.rsplit_once(':') {
            Some((h, p)) if port_ok(p) => h,
            Some(_) => return false,
            None => host,
        }
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

    /// What distribution's regex parser (as oci-client 0.18 has it) makes of each input: this
    /// test compared the two directly while strata depended on oci-client.
    #[test]
    fn agrees_with_the_regex_parser() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let cases: [(String, Option<String>); 18] = [
            ("busybox".into(), Some("docker.io/library/busybox:latest".into())),
            ("a/b/c".into(), Some("docker.io/a/b/c:latest".into())),
            ("a.b/c".into(), Some("a.b/c:latest".into())),
            ("a_b/c__d/e-f--g.h".into(), Some("docker.io/a_b/c__d/e-f--g.h:latest".into())),
            ("localhost:5000/x:y".into(), Some("localhost:5000/x:y".into())),
            ("registry-1.example.com/ns/app:v1.2_3-rc".into(), Some("registry-1.example.com/ns/app:v1.2_3-rc".into())),
            (format!("app:tag@{d}"), Some(format!("docker.io/library/app@{d}"))),
            (format!("app@{d}"), Some(format!("docker.io/library/app@{d}"))),
            ("index.docker.io/busybox".into(), Some("docker.io/library/busybox:latest".into())),
            ("a-/b".into(), None),
            ("x/-a".into(), None),
            ("x/a_".into(), None),
            ("x/a___b".into(), None),
            ("x:99999999/b".into(), Some("x:99999999/b:latest".into())),
            ("ex-.com/b".into(), None),
            ("app:-tag".into(), None),
            ("app:".into(), None),
            ("a@b".into(), None),
        ];
        for (input, expected) in cases {
            assert_eq!(ImageRef::parse(&input).map(|r| r.to_string()).ok(), expected, "{input}");
        }
        // Newer than that regex: IPv6 registries, as docker takes them.
        assert_eq!(norm("[::1]:5000/x"), "[::1]:5000/x:latest");
        assert_eq!(ImageRef::parse("busybox").unwrap().registry_host(), "index.docker.io");
    }

    #[test]
    fn loopback_registries() {
        for yes in ["localhost", "localhost:5000", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000"] {
            assert!(is_loopback_registry(yes), "{yes}");
        }
        for no in [
            "docker.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[fe80::1]:80",
            "[::1]@evil.example:5000",
            "[::1]x",
            "localhost@evil.example",
            "127.0.0.1:5000@evil.example",
            "localhost:",
        ] {
            assert!(!is_loopback_registry(no), "{no}");
        }
    }
}
