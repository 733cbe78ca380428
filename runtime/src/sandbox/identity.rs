//! Who the container's process is and what it may do: rlimits, supplementary groups,
//! uid/gid, capabilities (all five sets), no_new_privs, umask. Applied in the init in the
//! order the kernel needs: limits, then identity (keeping capabilities across setuid), then
//! the capability sets, then no_new_privs.

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::{LinuxCapabilities, PosixRlimit, PosixRlimitType, Process};
use std::str::FromStr;

pub type Result<T> = std::result::Result<T, String>;

fn rlimit_resource(t: PosixRlimitType) -> (libc::__rlimit_resource_t, &'static str) {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => (libc::RLIMIT_CPU, "RLIMIT_CPU"),
        RlimitFsize => (libc::RLIMIT_FSIZE, "RLIMIT_FSIZE"),
        RlimitData => (libc::RLIMIT_DATA, "RLIMIT_DATA"),
        RlimitStack => (libc::RLIMIT_STACK, "RLIMIT_STACK"),
        RlimitCore => (libc::RLIMIT_CORE, "RLIMIT_CORE"),
        RlimitRss => (libc::RLIMIT_RSS, "RLIMIT_RSS"),
        RlimitNproc => (libc::RLIMIT_NPROC, "RLIMIT_NPROC"),
        RlimitNofile => (libc::RLIMIT_NOFILE, "RLIMIT_NOFILE"),
        RlimitMemlock => (libc::RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK"),
        RlimitAs => (libc::RLIMIT_AS, "RLIMIT_AS"),
        RlimitLocks => (libc::RLIMIT_LOCKS, "RLIMIT_LOCKS"),
        RlimitSigpending => (libc::RLIMIT_SIGPENDING, "RLIMIT_SIGPENDING"),
        RlimitMsgqueue => (libc::RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE"),
        RlimitNice => (libc::RLIMIT_NICE, "RLIMIT_NICE"),
        RlimitRtprio => (libc::RLIMIT_RTPRIO, "RLIMIT_RTPRIO"),
        RlimitRttime => (libc::RLIMIT_RTTIME, "RLIMIT_RTTIME"),
    }
}

/// Turn the calling process into `process` (the container's init, or an exec'd process):
/// rlimits, bounding set, user and groups, capabilities, cwd, no_new_privs and the seccomp
/// filter, in the order the kernel needs. The filter is loaded last when no_new_privs is set
/// (then it needs no privilege), else while we still hold CAP_SYS_ADMIN.
pub fn become_process(process: &Process, seccomp: Option<&super::seccomp::Filter>) -> Result<()> {
    let load = |f: &super::seccomp::Filter| f.load().map_err(|e| format!("loading seccomp filter: {e}"));
    set_rlimits(process.rlimits().as_deref().unwrap_or_default())?;
    let no_new_privs = process.no_new_privileges().unwrap_or(false);
    if !no_new_privs {
        seccomp.map(load).transpose()?;
    }
    limit_bounding_set(process.capabilities().as_ref())?;
    set_identity(process)?;
    set_capabilities(process.capabilities().as_ref())?;
    let cwd = process.cwd();
    rustix::process::chdir(cwd).map_err(|e| {
        // runc's words, which callers match.
        let words = crate::report::os_words(&std::io::Error::from(e));
        format!("chdir to cwd ({:?}) set in config.json failed: {words}", cwd.display().to_string())
    })?;
    ensure_cwd_inside_root(cwd)?;
    if no_new_privs {
        set_no_new_privs()?;
        seccomp.map(load).transpose()?;
    }
    Ok(())
}

/// CVE-2024-21626: a cwd such as `/proc/self/fd/3` names, through the container's own /proc,
/// a directory the runtime still holds open outside the root (the exec fifo's, a cgroup's),
/// and the process would start there, on the host's filesystem. Whatever path led to the
/// working directory, it must be reachable from the container's root: the kernel's getcwd
/// says `(unreachable)/...` (or fails) when it is not.
fn ensure_cwd_inside_root(cwd: &std::path::Path) -> Result<()> {
    match rustix::process::getcwd(Vec::new()) {
        Ok(path) if path.as_bytes().starts_with(b"/") => Ok(()),
        _ => Err(format!("cwd {} is outside the container's root filesystem", cwd.display())),
    }
}

pub fn set_rlimits(rlimits: &[PosixRlimit]) -> Result<()> {
    for r in rlimits {
        let (resource, name) = rlimit_resource(r.typ());
        let limit = libc::rlimit { rlim_cur: r.soft(), rlim_max: r.hard() };
        // SAFETY: setrlimit with a valid resource and struct.
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            return Err(format!("setrlimit {name} ({}:{}): {}", r.soft(), r.hard(), std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn parse_caps(names: Option<&oci_spec::runtime::Capabilities>) -> CapsHashSet {
    // The caps crate wants "CAP_CHOWN"; oci-spec displays "CHOWN" but serialises "CAP_CHOWN".
    let name = |c: &oci_spec::runtime::Capability| serde_json::to_value(c).ok()?.as_str().map(str::to_owned);
    names.map(|set| set.iter().filter_map(|c| Capability::from_str(&name(c)?).ok()).collect()).unwrap_or_default()
}

/// Switch to the process's uid/gid/groups, keeping capabilities for `set_capabilities`.
pub fn set_identity(process: &Process) -> Result<()> {
    let user = process.user();
    let groups: Vec<libc::gid_t> = user.additional_gids().clone().unwrap_or_default();
    // Checked with the spec already; here too, since -1 would silently keep root's ids.
    crate::spec::check_user(process).map_err(|(field, message)| format!("process.{field}: {message}"))?;
    // SAFETY: plain syscalls with valid arguments.
    unsafe {
        if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
            return Err(format!("prctl(PR_SET_KEEPCAPS): {}", std::io::Error::last_os_error()));
        }
        // setgroups is denied in a user namespace whose setgroups file says "deny".
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0 && !groups.is_empty() {
            return Err(format!("setgroups {groups:?}: {}", std::io::Error::last_os_error()));
        }
        if libc::setresgid(user.gid(), user.gid(), user.gid()) != 0 {
            return Err(format!("setgid {}: {}", user.gid(), std::io::Error::last_os_error()));
        }
        if libc::setresuid(user.uid(), user.uid(), user.uid()) != 0 {
            return Err(format!("setuid {}: {}", user.uid(), std::io::Error::last_os_error()));
        }
        libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
        if let Some(umask) = user.umask() {
            libc::umask(umask as libc::mode_t);
        }
    }
    Ok(())
}

/// Drop the bounding set to what the spec allows (needs CAP_SETPCAP: call before setuid).
pub fn limit_bounding_set(caps: Option<&LinuxCapabilities>) -> Result<()> {
    let keep = parse_caps(caps.and_then(|c| c.bounding().as_ref()));
    for cap in caps::all() {
        if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| format!("dropping {cap} from the bounding set: {e}"))?;
        }
    }
    Ok(())
}

/// Set effective, permitted, inheritable and ambient sets exactly as the spec lists them.
pub fn set_capabilities(caps: Option<&LinuxCapabilities>) -> Result<()> {
    let effective = parse_caps(caps.and_then(|c| c.effective().as_ref()));
    let permitted = parse_caps(caps.and_then(|c| c.permitted().as_ref()));
    let inheritable = parse_caps(caps.and_then(|c| c.inheritable().as_ref()));
    let ambient = parse_caps(caps.and_then(|c| c.ambient().as_ref()));
    // The kernel checks each capset against the current sets: inheritable may only grow within
    // the permitted set, effective must stay within permitted. With permitted still full
    // (root, or kept across setuid by PR_SET_KEEPCAPS) this order always satisfies both, and
    // lowering permitted last never leaves effective outside it.
    caps::set(None, CapSet::Inheritable, &inheritable).map_err(|e| format!("setting inheritable capabilities: {e}"))?;
    caps::set(None, CapSet::Effective, &effective).map_err(|e| format!("setting effective capabilities: {e}"))?;
    caps::set(None, CapSet::Permitted, &permitted).map_err(|e| format!("setting permitted capabilities: {e}"))?;
    caps::clear(None, CapSet::Ambient).ok();
    // The kernel raises an ambient capability only if it is also permitted and inheritable.
    // runc's own default spec lists ambient capabilities without inheritable ones, and runc
    // skips those it cannot raise; do the same rather than refuse a config runc runs.
    for cap in ambient.into_iter().filter(|c| inheritable.contains(c) && permitted.contains(c)) {
        caps::raise(None, CapSet::Ambient, cap).map_err(|e| format!("raising ambient {cap}: {e}"))?;
    }
    Ok(())
}

pub fn set_no_new_privs() -> Result<()> {
    // SAFETY: prctl with constant arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(format!("prctl(PR_SET_NO_NEW_PRIVS): {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The user and group a wasm compiler child of `strata pull`/`load` runs as: one no account
/// and no other process uses (not `nobody`, whose other processes it could signal or read).
pub const COMPILER_ID: u32 = 0x7fff_fffe;

/// Become [`COMPILER_ID`], with no supplementary groups, and [`give_up_privileges`]: for a
/// process that handles untrusted input and needs no file of its own.
pub fn become_compiler() -> Result<()> {
    // SAFETY: plain syscalls with valid arguments.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setresgid(COMPILER_ID, COMPILER_ID, COMPILER_ID) != 0
            || libc::setresuid(COMPILER_ID, COMPILER_ID, COMPILER_ID) != 0
        {
            return Err(format!("becoming the compiler's user: {}", std::io::Error::last_os_error()));
        }
    }
    give_up_privileges()
}

/// Clear all four capability sets, set no_new_privs, and stop being dumpable (no process of
/// the same user may ptrace this one): what a compiler child does, whatever its user.
pub fn give_up_privileges() -> Result<()> {
    for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable, CapSet::Ambient] {
        caps::clear(None, set).map_err(|e| format!("dropping capabilities: {e}"))?;
    }
    set_no_new_privs()?;
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    Ok(())
}

/// Be killed when `parent` dies, or fail now if it already has. (A change of uid or gid clears
/// the parent-death signal: set it again after one.)
pub fn die_with_parent(parent: libc::pid_t) -> Result<()> {
    // SAFETY: prctl with constant arguments, getppid.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 || libc::getppid() != parent } {
        return Err("the parent is gone".into());
    }
    Ok(())
}

/// Load the seccomp profile of a compiler child into the calling process (no_new_privs must be
/// set): see `spec::seccomp::compiler`.
pub fn confine_compiler() -> Result<()> {
    let profile = crate::spec::seccomp::compiler::profile(std::process::id());
    let filter = super::seccomp::compile(&profile).map_err(|e| format!("the compiler's seccomp filter: {e}"))?;
    filter.load().map_err(|e| format!("loading the compiler's seccomp filter: {e}"))
}

/// One line on what the calling process may do: its ids, capability sets, no_new_privs,
/// dumpable and seccomp mode (for a compiler child's debug log; read without opening a file).
pub fn describe_self() -> String {
    let count = |set| caps::read(None, set).map(|c| c.len().to_string()).unwrap_or_else(|_| "?".into());
    // SAFETY: getters with no preconditions.
    let (uid, gid, nnp, dumpable, seccomp) = unsafe {
        (
            libc::getuid(),
            libc::getgid(),
            libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),
            libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0),
            libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0),
        )
    };
    format!(
        "uid {uid} gid {gid}, capabilities effective {} permitted {} inheritable {} ambient {}, \
         no_new_privs {nnp}, dumpable {dumpable}, seccomp {seccomp}",
        count(CapSet::Effective),
        count(CapSet::Permitted),
        count(CapSet::Inheritable),
        count(CapSet::Ambient),
    )
}

/// Write `linux.sysctl` values through /proc/sys (inside the container, after pivot_root).
pub fn set_sysctls(sysctl: &std::collections::HashMap<String, String>) -> Result<()> {
    for (key, value) in sysctl {
        if key.contains("..") || key.contains('/') && key.contains('.') {
            return Err(format!("invalid sysctl name {key:?}"));
        }
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|e| format!("sysctl {key}={value}: {e}"))?;
    }
    Ok(())
}
