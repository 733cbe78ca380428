//! `exec`: run another process in a running container. The runtime joins the container's
//! pid namespace itself (that only affects its children), opens the init's other namespaces,
//! resolves the program inside the container's root, clones the process (see
//! `sandbox::join`), puts it in the container's cgroup and lets it go. The caller gets its pid
//! (the process is the caller's child: wait for it, or leave it to a subreaper).
//!
//! After `exec` returns, children the calling process forks land in the container's pid
//! namespace: call it from a process that does nothing else (strata-oci, a monitor).

use super::create::{console_for, seccomp_cache_dir, wasm_cache_dir};
use super::state::Status;
use super::{LifecycleError, Runtime};
use crate::executor::wasm::ArtifactCache;
use crate::sandbox::join::{self, JoinConfig};
use crate::sandbox::program::{self, Executor};
use crate::sandbox::{namespaces, seccomp_cache, sync};
use oci_spec::runtime::{LinuxNamespaceType, Process};
use rustix::fs::{Mode, OFlags};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

#[derive(Debug, Default, Clone)]
pub struct ExecOptions {
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub console_stream: Option<std::sync::Arc<OwnedFd>>,
    pub preserve_fds: i32,
    pub wasm_cache: Option<PathBuf>,
}

/// The `/proc/PID/ns` name of a namespace type.
fn ns_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// Start `process` in container `id`; returns its pid.
pub fn exec(rt: &Runtime, id: &str, process: Process, opts: &ExecOptions) -> Result<i32, LifecycleError> {
    crate::spec::check_user(&process)
        .map_err(|(field, message)| LifecycleError::Setup(format!("the process's {field}: {message}")))?;
    if !process.cwd().is_absolute() {
        // runc's words.
        return Err(LifecycleError::Setup("Cwd must be an absolute path".into()));
    }
    if let Some(bad) = process.env().as_deref().unwrap_or_default().iter().find(|e| !crate::spec::is_env_pair(e)) {
        // runc's words (`exec --env FOO`); a spec's env is checked by `spec::validate`.
        return Err(LifecycleError::Setup(format!("invalid environment variable: {bad:?}")));
    }
    let state = rt.states.load(id)?;
    match rt.status(&state) {
        Status::Running | Status::Created => {}
        Status::Paused => return Err(LifecycleError::Setup("cannot exec in a paused container".into())),
        _ => return Err(LifecycleError::Setup("cannot exec in a stopped container".into())),
    }
    let mut spec = rt
        .saved_spec(id)
        .ok_or_else(|| LifecycleError::Setup(format!("container {id}: its saved config.json is missing")))?;
    let linux = spec.linux().clone().unwrap_or_default();
    let pid = state.pid;
    let open_ns = |t: LinuxNamespaceType| -> Result<OwnedFd, LifecycleError> {
        let path = format!("/proc/{pid}/ns/{}", ns_name(t));
        rustix::fs::open(path.as_str(), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| LifecycleError::Setup(format!("opening {path}: {e}")))
    };
    let types: Vec<LinuxNamespaceType> =
        linux.namespaces().as_deref().unwrap_or_default().iter().map(|n| n.typ()).collect();
    let mut joins = Vec::new();
    // The user namespace first: it grants what joining the others needs.
    for t in
        [LinuxNamespaceType::User].into_iter().chain(types.iter().copied().filter(|t| *t != LinuxNamespaceType::User))
    {
        if types.contains(&t) && t != LinuxNamespaceType::Pid {
            joins.push((t, open_ns(t)?));
        }
    }
    let root = rustix::fs::open(
        format!("/proc/{pid}/root").as_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| LifecycleError::Setup(format!("opening the container's root: {e}")))?;
    let program = program::resolve(
        &root,
        process.args().as_deref().unwrap_or_default(),
        process.env().as_deref().unwrap_or_default(),
        false,
    )
    .map_err(LifecycleError::Setup)?;
    let wasm_cache = match program.executor {
        Executor::Wasm => ArtifactCache::open(&wasm_cache_dir(&opts.wasm_cache)).ok(),
        Executor::Native => None,
    };
    let seccomp = match linux.seccomp() {
        Some(s) => Some(
            seccomp_cache::compile_cached(s, &seccomp_cache_dir(&opts.wasm_cache))
                .map_err(|e| LifecycleError::Setup(format!("seccomp: {e}")))?,
        ),
        None => None,
    };
    let console = console_for(process.terminal().unwrap_or(false), &opts.console_socket, &opts.console_stream)?;
    let chroot = (!types.contains(&LinuxNamespaceType::Mount)).then_some(root);
    if types.contains(&LinuxNamespaceType::Pid) {
        let fd = open_ns(LinuxNamespaceType::Pid)?;
        // SAFETY: setns on a pid namespace fd; only our future children are affected.
        if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&fd), namespaces::clone_flag(LinuxNamespaceType::Pid)) }
            != 0
        {
            return Err(LifecycleError::Setup(format!(
                "joining the container's pid namespace: {}",
                std::io::Error::last_os_error()
            )));
        }
    }
    spec.set_process(Some(process));
    // The child moves itself (v1) before it joins the container's user namespace.
    let cgroup = rt.cgroup(&state)?;
    let entry = cgroup.fast_entry(true).map_err(|e| LifecycleError::Cgroup(e.to_string()))?;
    let mut joined = join::spawn(
        JoinConfig {
            spec,
            namespaces: joins,
            chroot,
            program,
            seccomp,
            console,
            wasm_cache,
            preserve_fds: opts.preserve_fds,
            session_keyring: Some(id.to_string()),
            cgroup_self_attach: entry.self_attach.clone(),
        },
        entry.clone_into.as_ref(),
    )
    .map_err(LifecycleError::Setup)?;
    let child = joined.pid;
    let fail = |e: LifecycleError| {
        // SAFETY: our own child: kill and reap it.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
        e
    };
    if entry.runtime_must_move(joined.in_cgroup) {
        cgroup.add_process(child).map_err(|e| fail(LifecycleError::Cgroup(e.to_string())))?;
    }
    joined.chan.send(sync::CONTINUE).map_err(|e| fail(LifecycleError::Setup(format!("sync: {e}"))))?;
    joined.chan.expect(sync::READY).map_err(|e| fail(LifecycleError::Setup(e)))?;
    if let Some(pid_file) = &opts.pid_file {
        crate::fsutil::write_atomic(pid_file, child.to_string().as_bytes())
            .map_err(|e| fail(LifecycleError::Setup(format!("writing pid file {}: {e}", pid_file.display()))))?;
    }
    Ok(child)
}
