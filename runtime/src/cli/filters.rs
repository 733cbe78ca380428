//! docker's `--filter KEY=VALUE` lists (`ps`, `images`, `volume ls`): values given for one key
//! are alternatives, different keys must all match; each command names the keys it knows.

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

    /// `dangling=true|false` (also 1|0), checked: docker's error for anything else.
    pub fn dangling(&self) -> Result<Option<bool>> {
        let mut wanted = None;
        for v in self.values("dangling") {
            wanted = Some(match v.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => bail!("invalid filter 'dangling={v}'"),
            });
        }
        Ok(wanted)
    }
}

/// `label=KEY` or `label=KEY=VALUE` against a set of labels.
pub fn label_matches(labels: &BTreeMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((key, value)) => labels.get(key).is_some_and(|l| l == value),
        None => labels.contains_key(filter),
    }
}

/// Go's `path.Match` (what docker's `reference=` uses): `*` is any run of characters but `/`,
/// `?` one such character; everything else matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Positions to go back to when a later match fails: after the last `*`.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' && t[ti] != '/' || p[pi] == t[ti] && p[pi] != '*') {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star.filter(|_| t[mark] != '/') {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_is_go_path_match() {
        assert!(glob("busybox", "busybox"));
        assert!(glob("busy*", "busybox"));
        assert!(glob("*", "busybox"));
        assert!(!glob("*", "library/busybox"));
        assert!(glob("*/*", "library/busybox"));
        assert!(glob("localhost/*:latest", "localhost/app:latest"));
        assert!(!glob("localhost/*:latest", "localhost/app:v1"));
        assert!(glob("b?sybox", "busybox"));
        assert!(!glob("b?sybox", "b/sybox"));
        assert!(!glob("busybox", "busybox2"));
        assert!(glob("*box*", "busybox:latest"));
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
