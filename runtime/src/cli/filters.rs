//! docker's `--filter KEY=VALUE` lists (`ps`, `images`, `volume ls`, the prunes): values given
//! for one key are alternatives, different keys must all match (`label!=` excepted: none of
//! its values may); each command names the keys it knows.

use anyhow::{bail, Result};
use std::collections::BTreeMap;

pub struct Filters(Vec<(String, Vec<String>)>);

impl Filters {
    pub fn parse(given: &[String], keys: &[&str]) -> Result<Filters> {
        let mut filters: Vec<(String, Vec<String>)> = Vec::new();
        for filter in given {
            let Some((key, value)) = filter.split_once('=') else {
                bail!("bad format of filter (expected name=value): {filter}");
            };
            // `label!=KEY`: the key is `label!`.
            let key = key.trim().to_ascii_lowercase();
            if !keys.contains(&key.as_str()) {
                bail!("invalid filter '{key}'");
            }
            match filters.iter_mut().find(|(k, _)| *k == key) {
                Some((_, values)) => values.push(value.to_string()),
                None => filters.push((key, vec![value.to_string()])),
            }
        }
        Ok(Filters(filters))
    }

    /// The values given for `key`.
    pub fn values(&self, key: &str) -> &[String] {
        self.0.iter().find(|(k, _)| k == key).map_or(&[], |(_, v)| v.as_slice())
    }

    pub fn has(&self, key: &str) -> bool {
        !self.values(key).is_empty()
    }

    /// `test(key, value)` holds for some value of every key.
    pub fn matches(&self, test: impl Fn(&str, &str) -> bool) -> bool {
        self.0.iter().all(|(key, values)| values.iter().any(|v| test(key, v)))
    }

    /// `dangling=true|false` (also 1|0), checked: docker's error for anything else, and for
    /// both at once.
    pub fn dangling(&self) -> Result<Option<bool>> {
        let mut wanted = None;
        for v in self.values("dangling") {
            let this = match v.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => bail!("invalid filter 'dangling={v}'"),
            };
            if wanted.is_some_and(|w| w != this) {
                bail!("invalid filter 'dangling': true and false at once");
            }
            wanted = Some(this);
        }
        Ok(wanted)
    }
}

/// A prune's `until=` and `label=`/`label!=` (docker's): what a thing created at `created`
/// with `labels` must be to go.
pub struct PruneFilter {
    until: Option<chrono::DateTime<chrono::Utc>>,
    labels: Vec<String>,
    not_labels: Vec<String>,
}

impl PruneFilter {
    /// From `--filter`s, `extra` naming further keys the caller reads itself.
    pub fn parse(given: &[String], with_until: bool, extra: &[&str]) -> Result<(PruneFilter, Filters)> {
        let mut keys = vec!["label", "label!"];
        if with_until {
            keys.push("until");
        }
        keys.extend_from_slice(extra);
        let filters = Filters::parse(given, &keys)?;
        let until = match filters.values("until") {
            [] => None,
            [one] => Some(super::logs::time_bound("until", one)?),
            _ => bail!("more than one until filter specified"),
        };
        let prune = PruneFilter {
            until,
            labels: filters.values("label").to_vec(),
            not_labels: filters.values("label!").to_vec(),
        };
        Ok((prune, filters))
    }

    pub fn has_until(&self) -> bool {
        self.until.is_some()
    }

    /// Whether any filter was given.
    pub fn is_filtered(&self) -> bool {
        self.until.is_some() || !self.labels.is_empty() || !self.not_labels.is_empty()
    }

    /// Whether it goes: created (RFC 3339) no later than `until` (unknown: kept), every
    /// `label=` and none of the `label!=` (with several, docker keeps only what carries them
    /// all, moby/moby#40286; strata keeps what carries any, removing less).
    pub fn selects(&self, created: Option<&str>, labels: &BTreeMap<String, String>) -> bool {
        let created = || chrono::DateTime::parse_from_rfc3339(created?).ok();
        self.until.is_none_or(|u| created().is_some_and(|c| c <= u))
            && self.labels.iter().all(|l| label_matches(labels, l))
            && !self.not_labels.iter().any(|l| label_matches(labels, l))
    }
}

/// `label=KEY` or `label=KEY=VALUE` against a set of labels.
pub fn label_matches(labels: &BTreeMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((key, value)) => labels.get(key).is_some_and(|l| l == value),
        None => labels.contains_key(filter),
    }
}

/// Go's `path.Match` (what docker's `reference=` uses): `*` is any run of characters but
/// `/`, `?` one such character, `[...]` a class (`^` negates, `a-z` ranges), `\\` quotes the
/// next character. A malformed pattern is Go's "syntax error in pattern".
pub fn glob(pattern: &str, text: &str) -> Result<bool> {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    glob_at(&p, &t).ok_or_else(|| anyhow::anyhow!("syntax error in pattern: {pattern}"))
}

/// None: a malformed pattern.
fn glob_at(p: &[char], t: &[char]) -> Option<bool> {
    let Some((&first, rest)) = p.split_first() else { return Some(t.is_empty()) };
    match first {
        '*' => {
            // As few characters as will do, never a `/`.
            for skip in 0..=t.len() {
                if glob_at(rest, &t[skip..])? {
                    return Some(true);
                }
                if t.get(skip) == Some(&'/') {
                    break;
                }
            }
            // The rest of the pattern must still be well formed.
            check(rest)?;
            Some(false)
        }
        _ => {
            let (matched, len) = one(p, t.first().copied())?;
            if !matched {
                check(&p[len..])?;
                return Some(false);
            }
            glob_at(&p[len..], &t[1..])
        }
    }
}

/// Whether the pattern's first element (not `*`) matches `c`, and how many pattern
/// characters it took.
fn one(p: &[char], c: Option<char>) -> Option<(bool, usize)> {
    match p[0] {
        '?' => Some((c.is_some_and(|c| c != '/'), 1)),
        '\\' => {
            let quoted = *p.get(1)?;
            Some((c == Some(quoted), 2))
        }
        '[' => {
            let mut i = 1;
            let negated = p.get(i) == Some(&'^');
            if negated {
                i += 1;
            }
            let mut hit = false;
            let mut first = true;
            loop {
                let ch = *p.get(i)?;
                if ch == ']' && !first {
                    i += 1;
                    break;
                }
                first = false;
                let (low, used) = class_char(&p[i..])?;
                i += used;
                let high = if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|c| *c != ']') {
                    let (high, used) = class_char(&p[i + 1..])?;
                    i += 1 + used;
                    high
                } else {
                    low
                };
                if c.is_some_and(|c| low <= c && c <= high) {
                    hit = true;
                }
            }
            Some((c.is_some_and(|c| c != '/') && hit != negated, i))
        }
        literal => Some((c == Some(literal), 1)),
    }
}

fn class_char(p: &[char]) -> Option<(char, usize)> {
    match p.first()? {
        '\\' => Some((*p.get(1)?, 2)),
        '-' | ']' => None,
        c => Some((*c, 1)),
    }
}

/// The pattern is well formed (Go checks the whole of it even when a match failed early).
fn check(p: &[char]) -> Option<()> {
    let mut i = 0;
    while i < p.len() {
        i += match p[i] {
            '*' => 1,
            _ => one(&p[i..], None)?.1,
        };
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_is_go_path_match() {
        let g = |p: &str, t: &str| glob(p, t).unwrap();
        assert!(g("busybox", "busybox"));
        assert!(g("busy*", "busybox"));
        assert!(g("*", "busybox"));
        assert!(!g("*", "library/busybox"));
        assert!(g("*/*", "library/busybox"));
        assert!(g("localhost/*:latest", "localhost/app:latest"));
        assert!(!g("localhost/*:latest", "localhost/app:v1"));
        assert!(g("b?sybox", "busybox"));
        assert!(!g("b?sybox", "b/sybox"));
        assert!(!g("busybox", "busybox2"));
        assert!(g("*box*", "busybox:latest"));
        assert!(g("busybox:[0-9]*", "busybox:1.36"));
        assert!(!g("busybox:[0-9]*", "busybox:latest"));
        assert!(g("busybox:[^0-9]*", "busybox:latest"));
        assert!(g("a[bc]d", "acd"));
        assert!(g("a\\*", "a*"));
        assert!(!g("a\\*", "ab"));
        for bad in ["a[", "[]a]", "a\\", "[a-]"] {
            assert!(glob(bad, "x").is_err(), "{bad}");
        }
    }

    #[test]
    fn values_of_a_key_are_alternatives_keys_all_apply() {
        let f = Filters::parse(&["a=1".into(), "a=2".into(), "b=x".into()], &["a", "b"]).unwrap();
        assert!(f.matches(|k, v| (k == "a" && v == "2") || (k == "b" && v == "x")));
        assert!(!f.matches(|k, v| k == "a" && v == "2"));
        assert!(Filters::parse(&["c=1".into()], &["a"]).is_err());
        assert!(Filters::parse(&["nokey".into()], &["a"]).is_err());
        let d = Filters::parse(&["dangling=maybe".into()], &["dangling"]).unwrap();
        assert!(d.dangling().is_err());
    }
}
