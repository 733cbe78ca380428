//! Which seccomp profile a container made by `strata run`/`create` gets: docker's default
//! (`default`, the builtin), none (`--security-opt seccomp=unconfined`), or a profile file in
//! docker's format (`--security-opt seccomp=FILE`, see `docker`); and the `linux.seccomp` of
//! its spec, chosen for its capabilities.
//!
//! This module picks policy only: `sandbox::seccomp` compiles and loads whatever it picks.

pub mod compiler;
pub mod default;
pub mod docker;

use oci_spec::runtime::{Capabilities, LinuxSeccomp};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The seccomp choice of a container, kept in its record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "mode")]
pub enum SeccompMode {
    /// docker's default profile.
    #[default]
    Builtin,
    /// No filter.
    Unconfined,
    /// A profile file, read when the container was made.
    Profile { path: PathBuf, profile: docker::Profile },
}

/// `no-new-privileges` alone or with a value: Some(what it asks), None for another option.
fn no_new_privileges_opt(opt: &str) -> Option<bool> {
    match opt.strip_prefix("no-new-privileges")? {
        "" | "=true" | ":true" => Some(true),
        "=false" | ":false" => Some(false),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecurityOptError {
    #[error(
        "invalid --security-opt {0:?}: strata supports seccomp=unconfined, seccomp=builtin, seccomp=PROFILE.json and no-new-privileges[=true|false]"
    )]
    Unsupported(String),
    #[error(transparent)]
    Profile(#[from] docker::ProfileError),
}

impl SeccompMode {
    /// From `--security-opt` values, as docker reads them (`seccomp=X` or the older `seccomp:X`;
    /// the last one wins). A profile file is read now, relative to the current directory.
    pub fn from_security_opts(opts: &[String]) -> Result<SeccompMode, SecurityOptError> {
        let mut mode = SeccompMode::Builtin;
        for opt in opts {
            if no_new_privileges_opt(opt).is_some() {
                continue;
            }
            let value = opt
                .strip_prefix("seccomp=")
                .or_else(|| opt.strip_prefix("seccomp:"))
                .filter(|v| !v.is_empty())
                .ok_or_else(|| SecurityOptError::Unsupported(opt.clone()))?;
            mode = match value {
                "unconfined" => SeccompMode::Unconfined,
                "builtin" => SeccompMode::Builtin,
                file => {
                    let profile = docker::load(file.as_ref())?;
                    let path = std::path::absolute(file).unwrap_or_else(|_| file.into());
                    SeccompMode::Profile { path, profile }
                }
            };
        }
        Ok(mode)
    }

    /// docker's `--security-opt no-new-privileges[=|:true|false]`: whether the last such option
    /// asks for it (errors are `from_security_opts`'s).
    pub fn no_new_privileges(opts: &[String]) -> bool {
        opts.iter().filter_map(|o| no_new_privileges_opt(o)).next_back().unwrap_or(false)
    }

    /// The `linux.seccomp` for a container whose bounding set is `bounding` (None: unconfined).
    pub fn for_container(&self, bounding: &Capabilities) -> Option<LinuxSeccomp> {
        match self {
            SeccompMode::Builtin => Some(default::profile(bounding)),
            SeccompMode::Unconfined => None,
            SeccompMode::Profile { profile, .. } => Some(profile.resolve(bounding)),
        }
    }

    /// For `inspect`: `builtin`, `unconfined`, or the profile's path (docker's `docker info`
    /// calls the default profile "builtin").
    pub fn describe(&self) -> String {
        match self {
            SeccompMode::Builtin => "builtin".into(),
            SeccompMode::Unconfined => "unconfined".into(),
            SeccompMode::Profile { path, .. } => path.display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(opts: &[&str]) -> Result<SeccompMode, SecurityOptError> {
        SeccompMode::from_security_opts(&opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn security_opts_as_docker_reads_them() {
        assert_eq!(mode(&[]).unwrap(), SeccompMode::Builtin);
        assert_eq!(mode(&["seccomp=unconfined"]).unwrap(), SeccompMode::Unconfined);
        assert_eq!(mode(&["seccomp:unconfined"]).unwrap(), SeccompMode::Unconfined);
        assert_eq!(mode(&["seccomp=unconfined", "seccomp=builtin"]).unwrap(), SeccompMode::Builtin, "the last wins");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("profile.json");
        std::fs::write(
            &file,
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        let chosen = mode(&[&format!("seccomp={}", file.display())]).unwrap();
        assert!(matches!(&chosen, SeccompMode::Profile { path, .. } if path == &file), "{chosen:?}");
        assert_eq!(chosen.describe(), file.display().to_string());
        let spec = chosen.for_container(&Capabilities::new()).unwrap();
        assert_eq!(spec.syscalls().as_ref().unwrap()[0].names(), &["mkdir"]);

        for bad in ["apparmor=unconfined", "no-new-privileges=maybe", "seccomp=", "seccomp"] {
            let err = mode(&[bad]).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")) && err.contains("seccomp=unconfined"), "{err}");
        }
        // no-new-privileges is docker's too: it leaves the seccomp mode alone; the last one says.
        assert!(matches!(mode(&["no-new-privileges", "seccomp=unconfined"]).unwrap(), SeccompMode::Unconfined));
        let nnp =
            |opts: &[&str]| SeccompMode::no_new_privileges(&opts.iter().map(|o| o.to_string()).collect::<Vec<_>>());
        assert!(nnp(&["no-new-privileges"]) && nnp(&["no-new-privileges:true"]) && !nnp(&[]));
        assert!(!nnp(&["no-new-privileges", "no-new-privileges=false"]));
        let err = mode(&["seccomp=/no/such.json"]).unwrap_err().to_string();
        assert!(err.contains("/no/such.json"), "{err}");
    }

    #[test]
    fn the_mode_decides_the_spec() {
        let caps = Capabilities::new();
        assert!(SeccompMode::Unconfined.for_container(&caps).is_none());
        let builtin = SeccompMode::Builtin.for_container(&caps).unwrap();
        assert_eq!(builtin, default::profile(&caps));
        assert_eq!(SeccompMode::Builtin.describe(), "builtin");
        // The record of a container made before this field existed reads as the builtin.
        let old: crate::spec::run_options::RunOptions = serde_json::from_str(r#"{"cmd": ["sh"]}"#).unwrap();
        assert_eq!(old.seccomp, SeccompMode::Builtin);
    }
}
