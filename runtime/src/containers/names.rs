//! Container IDs (64 random hex digits, as docker's) and names: `--name` checked against
//! docker's rules, or a generated `adjective_scientist` one.

use std::io::Read;

const ADJECTIVES: &[&str] = &[
    "admiring",
    "agitated",
    "amazing",
    "bold",
    "brave",
    "busy",
    "calm",
    "charming",
    "clever",
    "cool",
    "dazzling",
    "determined",
    "eager",
    "ecstatic",
    "elastic",
    "elegant",
    "epic",
    "festive",
    "focused",
    "friendly",
    "gallant",
    "gifted",
    "goofy",
    "gracious",
    "happy",
    "hopeful",
    "inspiring",
    "jolly",
    "keen",
    "kind",
    "laughing",
    "lucid",
    "magical",
    "modest",
    "nervous",
    "nice",
    "nifty",
    "nostalgic",
    "optimistic",
    "peaceful",
    "pensive",
    "practical",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "silly",
    "stoic",
    "sweet",
    "tender",
    "trusting",
    "upbeat",
    "vibrant",
    "vigilant",
    "wizardly",
    "wonderful",
    "youthful",
    "zealous",
    "zen",
];

const SCIENTISTS: &[&str] = &[
    "agnesi",
    "albattani",
    "archimedes",
    "babbage",
    "bardeen",
    "bell",
    "bohr",
    "booth",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euclid",
    "euler",
    "faraday",
    "fermat",
    "feynman",
    "franklin",
    "galileo",
    "gauss",
    "goldberg",
    "goodall",
    "hamilton",
    "hawking",
    "heisenberg",
    "hodgkin",
    "hopper",
    "hypatia",
    "johnson",
    "kepler",
    "knuth",
    "lamarr",
    "leakey",
    "liskov",
    "lovelace",
    "maxwell",
    "mayer",
    "mccarthy",
    "meitner",
    "mendel",
    "newton",
    "noether",
    "pascal",
    "pasteur",
    "perlman",
    "poincare",
    "ritchie",
    "shannon",
    "sinoussi",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "wiles",
    "wozniak",
    "wright",
    "yalow",
    "yonath",
];

/// Random bytes from the kernel.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // SAFETY: getrandom writes at most N bytes into the buffer we own.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), N, 0) };
    if n == N as isize {
        return buf;
    }
    // getrandom(2) is always there on the kernels we run on; /dev/urandom is the fallback.
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    buf
}

/// A new container ID: 64 hex digits.
pub fn new_id() -> String {
    hex::encode(random_bytes::<32>())
}

/// A docker-like name; `taken` says which are in use. After a few collisions a number is
/// appended, as docker does.
pub fn generate(taken: &dyn Fn(&str) -> bool) -> String {
    for attempt in 0..20u32 {
        let r = random_bytes::<4>();
        let adjective = ADJECTIVES[r[0] as usize % ADJECTIVES.len()];
        let scientist = SCIENTISTS[r[1] as usize % SCIENTISTS.len()];
        let name = if attempt < 10 {
            format!("{adjective}_{scientist}")
        } else {
            format!("{adjective}_{scientist}{}", u16::from_le_bytes([r[2], r[3]]) % 10)
        };
        if !taken(&name) {
            return name;
        }
    }
    // Astronomically unlikely: fall back to something unique by construction.
    format!("strata_{}", &new_id()[..12])
}

/// docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (a leading `/` is accepted and dropped).
pub fn validate(name: &str) -> Result<String, String> {
    let name = name.strip_prefix('/').unwrap_or(name);
    let mut chars = name.chars();
    let ok = name.len() >= 2
        && name.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(name.to_string())
    } else {
        Err(format!("Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_differ() {
        let (a, b) = (new_id(), new_id());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn generated_names_avoid_taken_ones() {
        let name = generate(&|_| false);
        assert!(name.contains('_') && validate(&name).is_ok(), "{name}");
        // Everything of the plain form is taken: a numbered one comes out.
        let numbered = generate(&|n: &str| !n.chars().last().unwrap().is_ascii_digit());
        assert!(numbered.chars().last().unwrap().is_ascii_digit(), "{numbered}");
        let fallback = generate(&|n: &str| !n.starts_with("strata_"));
        assert!(fallback.starts_with("strata_"));
    }

    #[test]
    fn name_rules() {
        assert_eq!(validate("/web-1").unwrap(), "web-1");
        assert!(validate("a").is_err());
        assert!(validate("-x").is_err());
        assert!(validate("a b").is_err());
        assert!(validate("a/b").is_err());
        assert!(validate("ok_name.2").is_ok());
    }
}
