//! Seccomp profile files as docker and podman read them (`--security-opt seccomp=FILE`): the
//! OCI `linux.seccomp` shape plus docker's extensions — `archMap` (architectures chosen by the
//! machine's), `name` (one syscall), `comment`, and `includes`/`excludes` (a rule applies only
//! for some capabilities, architectures or kernels) — and podman's `errno`/`defaultErrno`
//! (errno names). docker's own `default.json` and podman's `seccomp.json` load as they are.
//!
//! [`parse`] checks everything it can when the container is made, and refuses any field it does
//! not know with an error naming it (a misspelt `excludes` must not silently widen a profile);
//! [`Profile::resolve`] then picks the rules for one container at each start.
//!
//! This module must never compile or load a filter (that is `sandbox::seccomp`).

use oci_spec::runtime::{
    Arch, Capabilities, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Why a profile file was refused. One line, naming the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("opening seccomp profile {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("seccomp profile {path}: {field}: {message}")]
    Invalid { path: PathBuf, field: String, message: String },
}

/// A profile file as written (validated). Kept with the container, so a later start does not
/// depend on the file still being there, as with docker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Profile {
    default_action: LinuxSeccompAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default_errno_ret: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default_errno: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    architectures: Option<Vec<Arch>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    arch_map: Option<Vec<ArchMapEntry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    syscalls: Option<Vec<Rule>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ArchMapEntry {
    architecture: Arch,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    names: Option<Vec<String>>,
    action: LinuxSeccompAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    errno_ret: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    errno: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    args: Option<Vec<Arg>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    includes: Option<Filter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    excludes: Option<Filter>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Arg {
    index: usize,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: LinuxSeccompOperator,
}

/// When a rule applies (`includes`: all of these hold; `excludes`: none does).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Filter {
    /// Capability names (`CAP_SYS_ADMIN`), matched against the bounding set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    caps: Option<Vec<String>>,
    /// Go's architecture names (`amd64`, `arm64`, `x86`, …), matched against this machine's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    arches: Option<Vec<String>>,
    /// `MAJOR.MINOR`, matched against the running kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_kernel: Option<String>,
}

/// Read and check a profile file.
pub fn load(path: &Path) -> Result<Profile, ProfileError> {
    let bytes = std::fs::read(path).map_err(|source| ProfileError::Read { path: path.to_owned(), source })?;
    parse(&bytes).map_err(|(field, message)| ProfileError::Invalid { path: path.to_owned(), field, message })
}

/// Parse and check a profile; an error is (field, message).
pub fn parse(bytes: &[u8]) -> Result<Profile, (String, String)> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let profile: Profile = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        (if field == "." { "(document)".into() } else { field }, e.into_inner().to_string())
    })?;
    profile.check()?;
    Ok(profile)
}

impl Profile {
    /// What `parse` checks beyond the shape: conflicting fields, errno names, kernel versions.
    fn check(&self) -> Result<(), (String, String)> {
        let bad = |field: String, message: &str| Err((field, message.to_owned()));
        if self.architectures.as_ref().is_some_and(|a| !a.is_empty())
            && self.arch_map.as_ref().is_some_and(|m| !m.is_empty())
        {
            return bad("archMap".into(), "give either architectures or archMap, not both");
        }
        errno_value(self.default_errno_ret, self.default_errno.as_deref())
            .map_err(|message| ("defaultErrno".to_owned(), message))?;
        for (i, rule) in self.syscalls.iter().flatten().enumerate() {
            let at = |field: &str| format!("syscalls[{i}]{field}");
            let names = rule.names.as_deref().unwrap_or_default();
            match (&rule.name, names.is_empty()) {
                (Some(_), false) => return bad(at(""), "give either name or names, not both"),
                (None, true) => return bad(at(".names"), "no syscall named"),
                _ => {}
            }
            errno_value(rule.errno_ret, rule.errno.as_deref()).map_err(|message| (at(".errno"), message))?;
            for (which, filter) in [(".includes", &rule.includes), (".excludes", &rule.excludes)] {
                if let Some(version) = filter.as_ref().and_then(|f| f.min_kernel.as_deref()) {
                    if KernelVersion::parse(version).is_none() {
                        return bad(at(&format!("{which}.minKernel")), "expected MAJOR.MINOR, e.g. \"4.8\"");
                    }
                }
            }
        }
        Ok(())
    }

    /// The OCI profile for a container with this bounding set, on this machine: the rules whose
    /// `includes` hold and whose `excludes` don't, as docker's daemon picks them.
    pub fn resolve(&self, bounding: &Capabilities) -> LinuxSeccomp {
        let caps: Vec<String> =
            bounding.iter().filter_map(|c| serde_json::to_value(c).ok()?.as_str().map(str::to_owned)).collect();
        let here = Machine { caps, arch: go_arch(), kernel: KernelVersion::running() };

        let mut seccomp = LinuxSeccomp::default();
        seccomp.set_default_action(self.default_action);
        // check() has refused names it does not know.
        seccomp
            .set_default_errno_ret(errno_value(self.default_errno_ret, self.default_errno.as_deref()).ok().flatten());
        let architectures = match (&self.architectures, &self.arch_map) {
            (Some(list), _) if !list.is_empty() => list.clone(),
            (_, Some(map)) => map
                .iter()
                .find(|entry| Some(entry.architecture) == native_arch())
                .map(|entry| {
                    std::iter::once(entry.architecture)
                        .chain(entry.sub_architectures.iter().flatten().copied())
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        seccomp.set_architectures((!architectures.is_empty()).then_some(architectures));
        seccomp.set_flags(self.flags.clone().filter(|f| !f.is_empty()));
        let rules = self.syscalls.iter().flatten().filter(|rule| here.applies(rule)).map(Rule::to_oci).collect();
        seccomp.set_syscalls(Some(rules));
        seccomp
    }
}

impl Rule {
    fn to_oci(&self) -> LinuxSyscall {
        let mut out = LinuxSyscall::default();
        out.set_names(self.name.iter().chain(self.names.iter().flatten()).cloned().collect());
        out.set_action(self.action);
        out.set_errno_ret(errno_value(self.errno_ret, self.errno.as_deref()).ok().flatten());
        let args: Vec<LinuxSeccompArg> = self
            .args
            .iter()
            .flatten()
            .map(|a| {
                LinuxSeccompArgBuilder::default()
                    .index(a.index)
                    .value(a.value)
                    .value_two(a.value_two)
                    .op(a.op)
                    .build()
                    .expect("every field is set")
            })
            .collect();
        out.set_args((!args.is_empty()).then_some(args));
        out
    }
}

/// What `includes`/`excludes` are matched against.
struct Machine {
    caps: Vec<String>,
    arch: &'static str,
    kernel: KernelVersion,
}

impl Machine {
    fn applies(&self, rule: &Rule) -> bool {
        let at_least = |v: &str| KernelVersion::parse(v).is_some_and(|min| self.kernel >= min);
        if let Some(ex) = &rule.excludes {
            // Excluded if any listed capability is held, the arch is listed, or the kernel is new enough.
            if ex.arches.iter().flatten().any(|a| a == self.arch)
                || ex.caps.iter().flatten().any(|c| self.caps.contains(c))
                || ex.min_kernel.as_deref().is_some_and(at_least)
            {
                return false;
            }
        }
        if let Some(inc) = &rule.includes {
            // Included only if the arch is listed (when any is), every capability is held, and the kernel is new enough.
            let arches = inc.arches.as_deref().unwrap_or_default();
            if (!arches.is_empty() && !arches.iter().any(|a| a == self.arch))
                || !inc.caps.iter().flatten().all(|c| self.caps.contains(c))
                || inc.min_kernel.as_deref().is_some_and(|v| !at_least(v))
            {
                return false;
            }
        }
        true
    }
}

/// This machine's architecture by Go's name, which docker's `arches` filters use.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// This machine's seccomp architecture, which picks the `archMap` entry.
fn native_arch() -> Option<Arch> {
    Some(match std::env::consts::ARCH {
        "x86_64" => Arch::ScmpArchX86_64,
        "aarch64" => Arch::ScmpArchAarch64,
        "x86" => Arch::ScmpArchX86,
        "arm" => Arch::ScmpArchArm,
        "riscv64" => Arch::ScmpArchRiscv64,
        "s390x" => Arch::ScmpArchS390x,
        "powerpc64" if cfg!(target_endian = "little") => Arch::ScmpArchPpc64le,
        "powerpc64" => Arch::ScmpArchPpc64,
        "loongarch64" => Arch::ScmpArchLoongarch64,
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct KernelVersion(u32, u32);

impl KernelVersion {
    /// `5.4`, or a release such as `6.1.0-18-amd64`.
    fn parse(s: &str) -> Option<KernelVersion> {
        let mut parts = s.splitn(3, '.');
        let major = parts.next()?.parse().ok()?;
        let minor: String = parts.next()?.chars().take_while(char::is_ascii_digit).collect();
        Some(KernelVersion(major, minor.parse().ok()?))
    }

    /// The running kernel; if its release cannot be read, 0.0, so that rules needing a newer
    /// kernel are left out (a profile only gets stricter).
    fn running() -> KernelVersion {
        let uname = rustix::system::uname();
        KernelVersion::parse(&uname.release().to_string_lossy()).unwrap_or(KernelVersion(0, 0))
    }
}

/// The errno of a rule from `errnoRet` and/or podman's `errno` name (both: they must agree).
fn errno_value(number: Option<u32>, name: Option<&str>) -> Result<Option<u32>, String> {
    let Some(name) = name else { return Ok(number) };
    let value = ERRNO_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, v)| v as u32)
        .ok_or_else(|| format!("unknown errno name {name:?} (use errnoRet with a number)"))?;
    match number {
        Some(n) if n != value => Err(format!("{name} is {value}, but errnoRet says {n}")),
        _ => Ok(Some(value)),
    }
}

/// The errno names profiles use; others can be given as numbers (`errnoRet`).
const ERRNO_NAMES: &[(&str, i32)] = &[
    ("EPERM", libc::EPERM),
    ("ENOENT", libc::ENOENT),
    ("ESRCH", libc::ESRCH),
    ("EINTR", libc::EINTR),
    ("EIO", libc::EIO),
    ("ENXIO", libc::ENXIO),
    ("E2BIG", libc::E2BIG),
    ("ENOEXEC", libc::ENOEXEC),
    ("EBADF", libc::EBADF),
    ("ECHILD", libc::ECHILD),
    ("EAGAIN", libc::EAGAIN),
    ("ENOMEM", libc::ENOMEM),
    ("EACCES", libc::EACCES),
    ("EFAULT", libc::EFAULT),
    ("EBUSY", libc::EBUSY),
    ("EEXIST", libc::EEXIST),
    ("EXDEV", libc::EXDEV),
    ("ENODEV", libc::ENODEV),
    ("ENOTDIR", libc::ENOTDIR),
    ("EISDIR", libc::EISDIR),
    ("EINVAL", libc::EINVAL),
    ("ENFILE", libc::ENFILE),
    ("EMFILE", libc::EMFILE),
    ("ENOTTY", libc::ENOTTY),
    ("ENOSPC", libc::ENOSPC),
    ("ESPIPE", libc::ESPIPE),
    ("EROFS", libc::EROFS),
    ("EPIPE", libc::EPIPE),
    ("ERANGE", libc::ERANGE),
    ("ENOSYS", libc::ENOSYS),
    ("ENOTSUP", libc::ENOTSUP),
    ("EOPNOTSUPP", libc::EOPNOTSUPP),
    ("EAFNOSUPPORT", libc::EAFNOSUPPORT),
    ("EPROTONOSUPPORT", libc::EPROTONOSUPPORT),
    ("ECONNREFUSED", libc::ECONNREFUSED),
];

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::Capability;
    use serde_json::json;

    fn parsed(value: serde_json::Value) -> Profile {
        parse(&serde_json::to_vec(&value).unwrap()).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn refused(value: serde_json::Value) -> (String, String) {
        parse(&serde_json::to_vec(&value).unwrap()).expect_err("the profile is refused")
    }

    fn names(profile: &LinuxSeccomp) -> Vec<String> {
        profile.syscalls().iter().flatten().flat_map(|r| r.names().clone()).collect()
    }

    #[test]
    fn the_oci_shape_loads_as_is() {
        let oci = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [
                { "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13 },
                { "names": ["personality"], "action": "SCMP_ACT_ERRNO",
                  "args": [{ "index": 0, "value": 8, "op": "SCMP_CMP_NE" }] }
            ]
        });
        let resolved = parsed(oci.clone()).resolve(&Capabilities::new());
        let expected: LinuxSeccomp = serde_json::from_value(oci).unwrap();
        assert_eq!(resolved.default_action(), expected.default_action());
        assert_eq!(resolved.architectures(), expected.architectures());
        assert_eq!(resolved.flags(), expected.flags());
        let rules = resolved.syscalls().clone().unwrap();
        assert_eq!(rules[0], expected.syscalls().as_ref().unwrap()[0]);
        assert_eq!(rules[1].args().as_ref().unwrap()[0].value(), 8);
    }

    /// docker's extensions, shaped like its default.json and podman's seccomp.json.
    fn docker_style() -> serde_json::Value {
        json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "archMap": [
                { "architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"] },
                { "architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"] }
            ],
            "syscalls": [
                { "names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": [], "comment": "", "includes": {}, "excludes": {} },
                { "name": "getpid", "action": "SCMP_ACT_ALLOW" },
                { "names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": { "caps": ["CAP_SYS_ADMIN"] } },
                { "names": ["mount"], "action": "SCMP_ACT_ERRNO", "errno": "EPERM", "errnoRet": 1, "excludes": { "caps": ["CAP_SYS_ADMIN"] } },
                { "names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": { "arches": ["amd64", "x32"] } },
                { "names": ["set_tls"], "action": "SCMP_ACT_ALLOW", "includes": { "arches": ["arm", "arm64"] } },
                { "names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": { "minKernel": "4.8" } },
                { "names": ["uselib"], "action": "SCMP_ACT_ALLOW", "includes": { "minKernel": "999.0" } },
                { "names": ["clone"], "action": "SCMP_ACT_ALLOW",
                  "args": [{ "index": 0, "value": 2114060288u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ" }],
                  "excludes": { "caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"] } },
                { "names": ["socket"], "action": "SCMP_ACT_ERRNO", "errno": "EINVAL" }
            ]
        })
    }

    #[test]
    fn docker_extensions_pick_rules_for_the_container() {
        let profile = parsed(docker_style());
        let plain = profile.resolve(&Capabilities::new());
        let admin = profile.resolve(&[Capability::SysAdmin].into_iter().collect());
        assert_eq!(plain.default_errno_ret(), Some(1));

        let (plain_names, admin_names) = (names(&plain), names(&admin));
        assert!(plain_names.starts_with(&["read".into(), "write".into(), "getpid".into(), "mount".into()]));
        assert!(plain_names.contains(&"ptrace".to_string()), "this kernel is newer than 4.8");
        assert!(!plain_names.contains(&"uselib".to_string()), "no kernel 999");
        assert!(plain_names.contains(&"clone".to_string()) && !admin_names.contains(&"clone".to_string()));
        let mount = |p: &LinuxSeccomp| p.syscalls().iter().flatten().find(|r| r.names() == &["mount"]).unwrap().clone();
        assert_eq!((mount(&plain).action(), mount(&plain).errno_ret()), (LinuxSeccompAction::ScmpActErrno, Some(1)));
        assert_eq!(mount(&admin).action(), LinuxSeccompAction::ScmpActAllow);
        let socket = plain.syscalls().iter().flatten().find(|r| r.names() == &["socket"]).unwrap();
        assert_eq!(socket.errno_ret(), Some(libc::EINVAL as u32), "podman's errno names");
        let clone = plain.syscalls().iter().flatten().find(|r| r.names() == &["clone"]).unwrap();
        assert_eq!(clone.args().as_ref().unwrap()[0].value_two(), Some(0));

        if cfg!(target_arch = "x86_64") {
            assert!(plain_names.contains(&"arch_prctl".to_string()) && !plain_names.contains(&"set_tls".to_string()));
            let archs = plain.architectures().clone().unwrap();
            assert_eq!(archs, [Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]);
        }
        // What is resolved compiles.
        crate::sandbox::seccomp::compile(&plain).unwrap();
        crate::sandbox::seccomp::compile(&admin).unwrap();
        // And survives the container record.
        let kept: Profile = serde_json::from_value(serde_json::to_value(&profile).unwrap()).unwrap();
        assert_eq!(kept, profile);
    }

    #[test]
    fn what_is_not_understood_is_refused_by_name() {
        let mut typo = docker_style();
        typo["syscalls"][2]["includes"] = json!({ "capz": ["CAP_SYS_ADMIN"] });
        let (field, message) = refused(typo);
        assert_eq!(field, "syscalls[2].includes.capz");
        assert!(message.contains("unknown field `capz`"), "{message}");

        let (field, message) = refused(json!({ "defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/run/agent.sock" }));
        assert_eq!(field, "listenerPath");
        assert!(message.contains("unknown field"), "{message}");

        let (field, _) = refused(json!({ "defaultAction": "SCMP_ACT_NOPE" }));
        assert_eq!(field, "defaultAction");
        let (field, _) = refused(json!({ "syscalls": [] }));
        assert_eq!(field, "(document)", "defaultAction is required");
        let (field, message) = refused(json!({ "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{ "name": "read", "names": ["write"], "action": "SCMP_ACT_ALLOW" }] }));
        assert_eq!(field, "syscalls[0]");
        assert!(message.contains("either name or names"), "{message}");
        let (field, _) = refused(
            json!({ "defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{ "names": [], "action": "SCMP_ACT_ALLOW" }] }),
        );
        assert_eq!(field, "syscalls[0].names");
        let (field, _) = refused(json!({ "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64"], "archMap": [{ "architecture": "SCMP_ARCH_X86_64" }] }));
        assert_eq!(field, "archMap");
        let (field, message) = refused(json!({ "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{ "names": ["read"], "action": "SCMP_ACT_ERRNO", "errno": "EWHATEVER" }] }));
        assert_eq!(field, "syscalls[0].errno");
        assert!(message.contains("EWHATEVER"), "{message}");
        let (field, _) =
            refused(json!({ "defaultAction": "SCMP_ACT_ERRNO", "defaultErrno": "ENOSYS", "defaultErrnoRet": 1 }));
        assert_eq!(field, "defaultErrno");
        let (field, _) = refused(json!({ "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{ "names": ["read"], "action": "SCMP_ACT_ALLOW", "excludes": { "minKernel": "four" } }] }));
        assert_eq!(field, "syscalls[0].excludes.minKernel");
        let (field, _) = refused(json!({ "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{ "names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{ "index": 0, "value": 1, "op": "SCMP_CMP_EQ", "extra": 1 }] }] }));
        assert_eq!(field, "syscalls[0].args[0].extra");

        let err = load(Path::new("/nonexistent/profile.json")).unwrap_err().to_string();
        assert!(err.starts_with("opening seccomp profile /nonexistent/profile.json: "), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.json");
        std::fs::write(&file, "{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscals\": []}").unwrap();
        let err = load(&file).unwrap_err().to_string();
        assert!(err.starts_with(&format!("seccomp profile {}: syscals: unknown field", file.display())), "{err}");
        assert_eq!(err.lines().count(), 1);
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(KernelVersion::parse("4.8"), Some(KernelVersion(4, 8)));
        assert_eq!(KernelVersion::parse("6.1.0-18-amd64"), Some(KernelVersion(6, 1)));
        assert_eq!(KernelVersion::parse("6.18-rc1"), Some(KernelVersion(6, 18)));
        assert!(KernelVersion(5, 10) > KernelVersion(4, 19));
        assert_eq!(KernelVersion::parse("x.1"), None);
        assert_eq!(KernelVersion::parse("5"), None);
        assert!(KernelVersion::running() >= KernelVersion(4, 8));
    }
}
