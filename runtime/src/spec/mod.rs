//! The OCI runtime spec (a bundle's `config.json`): loading it with errors that name the
//! offending field, and the checks a runtime must make before it starts anything.

pub mod from_image;
pub mod run_options;
pub mod seccomp;
pub mod sysctl;
pub mod user;

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {field}: {message}")]
    Parse { path: PathBuf, field: String, message: String },
    #[error("config.json: {field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: &str, message: impl Into<String>) -> SpecError {
    SpecError::Invalid { field: field.into(), message: message.into() }
}

/// Load `BUNDLE/config.json` and validate it.
pub fn load(bundle: &Path) -> Result<Spec, SpecError> {
    let path = bundle.join("config.json");
    let bytes = std::fs::read(&path).map_err(|source| SpecError::Read { path: path.clone(), source })?;
    parse(&bytes).map_err(|e| match e {
        SpecError::Parse { field, message, .. } => SpecError::Parse { path: path.clone(), field, message },
        other => other,
    })
}

/// Parse and validate config.json bytes.
pub fn parse(bytes: &[u8]) -> Result<Spec, SpecError> {
    // Tracking the path of every field costs more than the parse itself, and only an error
    // needs it: a spec that parses is parsed once, plainly; one that does not, again, tracked.
    let plain = <Spec as serde::Deserialize>::deserialize(&mut serde_json::Deserializer::from_slice(bytes));
    let spec = match plain {
        Ok(spec) => spec,
        Err(_) => match without_unknown_capabilities(bytes) {
            Some(spec) => spec,
            None => parse_tracked(bytes)?,
        },
    };
    validate(&spec)?;
    Ok(spec)
}

/// A spec that failed to parse only for capabilities this runtime does not know (a newer
/// kernel's, or a typo), parsed without them and with runc's warning on stderr.
fn without_unknown_capabilities(bytes: &[u8]) -> Option<Spec> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let dropped = drop_unknown_capabilities(value.get_mut("process")?);
    if dropped.is_empty() {
        return None;
    }
    let spec = serde_json::from_value(value).ok()?;
    warn_unknown_capabilities(&dropped);
    Some(spec)
}

/// Parses a process (an exec's: `strata-oci exec --process`, the shim's Exec) as a spec's:
/// capabilities this runtime does not know are dropped with runc's warning, not fatal.
pub fn parse_process(mut value: serde_json::Value) -> Result<Process, serde_json::Error> {
    // runc's: a process without a user runs as root.
    if let Some(process) = value.as_object_mut() {
        process.entry("user").or_insert_with(|| serde_json::json!({"uid": 0, "gid": 0}));
    }
    let dropped = drop_unknown_capabilities(&mut value);
    let process = serde_json::from_value(value)?;
    warn_unknown_capabilities(&dropped);
    Ok(process)
}

/// Removes from each of `process`'s capability sets the names oci-spec does not know;
/// returns them.
fn drop_unknown_capabilities(process: &mut serde_json::Value) -> Vec<String> {
    let mut dropped = Vec::new();
    let Some(sets) = process.get_mut("capabilities").and_then(|c| c.as_object_mut()) else { return dropped };
    for set in sets.values_mut().filter_map(|s| s.as_array_mut()) {
        // Anything but a string stays, for the parse to name.
        set.retain(|name| match name.as_str() {
            Some(text) if serde_json::from_value::<oci_spec::runtime::Capability>(name.clone()).is_err() => {
                dropped.push(text.to_string());
                false
            }
            _ => true,
        });
    }
    dropped.sort();
    dropped.dedup();
    dropped
}

fn warn_unknown_capabilities(dropped: &[String]) {
    if !dropped.is_empty() {
        // runc's words (it warns and goes on).
        eprintln!("warning: ignoring unknown or unavailable capabilities: [{}]", dropped.join(" "));
    }
}

/// [`parse`]'s error path: the parse again, tracking where in the document it failed.
fn parse_tracked(bytes: &[u8]) -> Result<Spec, SpecError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        SpecError::Parse {
            path: PathBuf::from("config.json"),
            field: if field == "." { "(document)".into() } else { field },
            message: e.into_inner().to_string(),
        }
    })
}

fn validate(spec: &Spec) -> Result<(), SpecError> {
    let root = spec.root().as_ref().ok_or_else(|| invalid("root", "is required"))?;
    if root.path().as_os_str().is_empty() {
        return Err(invalid("root.path", "must not be empty"));
    }
    if let Some(process) = spec.process() {
        let args = process.args().as_deref().unwrap_or_default();
        if args.is_empty() {
            return Err(invalid("process.args", "must name the program to run"));
        }
        if !process.cwd().is_absolute() {
            return Err(invalid("process.cwd", format!("{:?} must be an absolute path", process.cwd())));
        }
        for (i, env) in process.env().as_deref().unwrap_or_default().iter().enumerate() {
            if !is_env_pair(env) {
                return Err(invalid(&format!("process.env[{i}]"), format!("{env:?} is not KEY=VALUE")));
            }
        }
        check_user(process).map_err(|(field, message)| invalid(&format!("process.{field}"), message))?;
    }
    if let Some(hooks) = spec.hooks() {
        let kinds = [
            ("prestart", hooks.prestart()),
            ("createRuntime", hooks.create_runtime()),
            ("createContainer", hooks.create_container()),
            ("startContainer", hooks.start_container()),
            ("poststart", hooks.poststart()),
            ("poststop", hooks.poststop()),
        ];
        for (kind, list) in kinds {
            for (i, hook) in list.as_deref().unwrap_or_default().iter().enumerate() {
                // The spec's rule; a relative one would be looked up through PATH.
                if !hook.path().is_absolute() {
                    let message = format!("{:?} must be an absolute path", hook.path());
                    return Err(invalid(&format!("hooks.{kind}[{i}].path"), message));
                }
            }
        }
    }
    for (i, mount) in spec.mounts().as_deref().unwrap_or_default().iter().enumerate() {
        if !mount.destination().is_absolute() {
            return Err(invalid(
                &format!("mounts[{i}].destination"),
                format!("{:?} must be an absolute path", mount.destination()),
            ));
        }
    }
    if let Some(linux) = spec.linux() {
        let mut seen = Vec::new();
        for (i, ns) in linux.namespaces().as_deref().unwrap_or_default().iter().enumerate() {
            if seen.contains(&ns.typ()) {
                return Err(invalid(&format!("linux.namespaces[{i}]"), format!("{:?} is listed twice", ns.typ())));
            }
            seen.push(ns.typ());
        }
        let has_userns = seen.contains(&LinuxNamespaceType::User);
        let maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty());
        if maps && !has_userns {
            return Err(invalid("linux.uidMappings", "given without a user namespace"));
        }
        if let Some(path) = linux.cgroups_path() {
            if path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
                return Err(invalid("linux.cgroupsPath", format!("{path:?} must not contain \"..\"")));
            }
        }
        sysctl::check(linux).map_err(|(key, message)| invalid(&format!("linux.sysctl[{key:?}]"), message))?;
        if let Some(hostname) = spec.hostname() {
            if !hostname.is_empty() && !seen.contains(&LinuxNamespaceType::Uts) {
                return Err(invalid("hostname", "set without a new uts namespace"));
            }
        }
    }
    Ok(())
}

/// Whether `env` is a `KEY=VALUE` pair with a key: what runc lets into a process's environment.
pub fn is_env_pair(env: &str) -> bool {
    env.split_once('=').is_some_and(|(key, _)| !key.is_empty())
}

/// The ids a process is to take, or the field that is wrong and why. `(uid_t)-1` is not an id:
/// setresuid and setresgid read it as "leave this one unchanged", so a process asked to run as
/// 4294967295 would stay root.
pub fn check_user(process: &Process) -> Result<(), (String, String)> {
    const UNCHANGED: u32 = u32::MAX;
    let user = process.user();
    let not_an_id = |field: String, id: u32| {
        Err((field, format!("{id} is not an id (to the kernel, (uid_t)-1 means \"leave unchanged\")")))
    };
    if user.uid() == UNCHANGED {
        return not_an_id("user.uid".into(), user.uid());
    }
    if user.gid() == UNCHANGED {
        return not_an_id("user.gid".into(), user.gid());
    }
    for (i, gid) in user.additional_gids().as_deref().unwrap_or_default().iter().enumerate() {
        if *gid == UNCHANGED {
            return not_an_id(format!("user.additionalGids[{i}]"), *gid);
        }
    }
    Ok(())
}

/// Container IDs as runc accepts them: letters, digits, `_ + - .`, not starting with `.`.
pub fn validate_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid container id {id:?}: use letters, digits and _ + - . only"))
    }
}

#[cfg(test)]
mod capability_tests {
    use super::*;

    #[test]
    fn unknown_capabilities_are_dropped_not_fatal() {
        let config = serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                "capabilities": {"bounding": ["CAP_CHOWN", "CAP_FOO"], "effective": ["CAP_FOO", "CAP_BAR"]}}
        });
        let spec = parse(&serde_json::to_vec(&config).unwrap()).unwrap();
        let caps = spec.process().as_ref().unwrap().capabilities().clone().unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 1);
        assert!(caps.effective().as_ref().unwrap().is_empty());
        let process = parse_process(config["process"].clone()).unwrap();
        assert_eq!(process.capabilities().as_ref().unwrap().bounding().as_ref().unwrap().len(), 1);
        // An exec's process without a user is root's, as runc has it.
        let process = parse_process(serde_json::json!({"args": ["sh"], "cwd": "/"})).unwrap();
        assert_eq!((process.user().uid(), process.user().gid()), (0, 0));
        // Still an error: a capability that is not a string, named by the parse.
        let mut bad = config.clone();
        bad["process"]["capabilities"]["bounding"] = serde_json::json!([7]);
        assert!(matches!(parse(&serde_json::to_vec(&bad).unwrap()), Err(SpecError::Parse { .. })));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["/bin/true"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}
        })
    }

    #[test]
    fn parse_errors_name_the_field() {
        let mut v = minimal();
        v["process"]["user"]["uid"] = serde_json::json!("root");
        let e = parse(&serde_json::to_vec(&v).unwrap()).unwrap_err().to_string();
        assert!(e.contains("process.user.uid"), "{e}");
        let e = parse(b"{not json").unwrap_err().to_string();
        assert!(e.starts_with("config.json: "), "{e}");
    }

    #[test]
    fn validation_names_the_field() {
        let check = |f: &dyn Fn(&mut serde_json::Value), want: &str| {
            let mut v = minimal();
            f(&mut v);
            let e = parse(&serde_json::to_vec(&v).unwrap()).unwrap_err().to_string();
            assert!(e.contains(want), "{e} should name {want}");
        };
        check(&|v| v["process"]["args"] = serde_json::json!([]), "process.args");
        check(&|v| v["process"]["cwd"] = serde_json::json!("rel"), "process.cwd");
        check(&|v| v["process"]["env"] = serde_json::json!(["NOEQUALS"]), "process.env[0]");
        check(&|v| v["mounts"] = serde_json::json!([{"destination": "proc", "type": "proc"}]), "mounts[0].destination");
        check(
            &|v| v["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}, {"type": "pid"}]),
            "linux.namespaces[1]",
        );
        check(&|v| v["linux"]["cgroupsPath"] = serde_json::json!("/a/../b"), "linux.cgroupsPath");
        check(&|v| v["hostname"] = serde_json::json!("x"), "hostname");
        check(
            &|v| v["hooks"] = serde_json::json!({"poststop": [{"path": "/bin/true"}, {"path": "true"}]}),
            "hooks.poststop[1].path",
        );
        // A sysctl outside the container's own namespaces would be the host's.
        check(
            &|v| v["linux"]["sysctl"] = serde_json::json!({"vm.swappiness": "59"}),
            "linux.sysctl[\"vm.swappiness\"]",
        );
        // (uid_t)-1 would leave the process root: it is refused wherever an id goes.
        check(&|v| v["process"]["user"]["uid"] = serde_json::json!(4294967295u32), "process.user.uid");
        check(&|v| v["process"]["user"]["gid"] = serde_json::json!(4294967295u32), "process.user.gid");
        check(
            &|v| v["process"]["user"]["additionalGids"] = serde_json::json!([5, 4294967295u32]),
            "process.user.additionalGids[1]",
        );
        check(&|v| v.as_object_mut().unwrap().remove("root").map(|_| ()).unwrap(), "root");
        assert!(parse(&serde_json::to_vec(&minimal()).unwrap()).is_ok());
    }

    #[test]
    fn ids() {
        assert!(validate_id("abc-1_2.3+x").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", "../x"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }
}
