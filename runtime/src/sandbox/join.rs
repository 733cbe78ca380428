//! A process started inside a running container (`exec`): cloned from the runtime (which has
//! already joined the container's pid namespace, so the clone lands in it), it joins the
//! container's other namespaces, becomes the requested process (user, capabilities,
//! seccomp, cwd, terminal) and execs — or, for a wasm program, runs it in wasmtime.
//!
//! The child runs in a single-threaded copy of the runtime and never returns into the
//! runtime's code. It is not dumpable until execve, so the container's own processes cannot
//! reach the runtime's binary or fds through /proc (CVE-2019-5736).

use super::program::{Executor, Program};
use super::sync::{self, Channel};
use super::{console, identity, namespaces, seccomp};
use crate::executor::wasm::{self, ArtifactCache, Preloaded, WasmJob};
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Everything the exec'd process needs, opened by the runtime before the clone.
pub struct JoinConfig {
    /// The container's spec with `process` replaced by the one to run.
    pub spec: Spec,
    /// Namespaces to join (the user namespace first), as fds of the container init's.
    pub namespaces: Vec<(LinuxNamespaceType, OwnedFd)>,
    /// The container's root, for a container without its own mount namespace (chroot).
    pub chroot: Option<OwnedFd>,
    pub program: Program,
    pub seccomp: Option<seccomp::Filter>,
    pub console: Option<OwnedFd>,
    pub wasm_cache: Option<ArtifactCache>,
    pub preserve_fds: i32,
    /// The container's id: the process joins its session keyring (`keyring`).
    pub session_keyring: Option<String>,
    /// v1 `tasks` files the child writes `0` to, moving itself into the container's cgroup
    /// before it joins any namespace (see `Cgroup::fast_entry`). Empty: the runtime
    /// moves it, or it was cloned into the cgroup.
    pub cgroup_self_attach: Vec<std::path::PathBuf>,
}

/// The runtime's handle on the process it cloned.
pub struct Joined {
    pub pid: i32,
    pub chan: Channel,
    /// Whether it was cloned straight into the v2 cgroup given to [`spawn`].
    pub in_cgroup: bool,
}

/// Clone the process, into the v2 cgroup `cgroup` when given (see `spawn::fork`). The
/// caller must be single-threaded and must already have joined the container's pid
/// namespace (`setns` affects only children).
pub fn spawn(cfg: JoinConfig, cgroup: Option<&OwnedFd>) -> Result<Joined, String> {
    let (parent, child) = sync::pair().map_err(|e| format!("creating sync socket: {e}"))?;
    // SAFETY: single-threaded (our contract); the child never returns into the caller
    // (`main` diverges).
    let (pid, in_cgroup) = unsafe { super::spawn::fork(0, cgroup)? };
    match pid {
        0 => {
            drop(parent);
            main(cfg, child)
        }
        pid => {
            drop(child);
            Ok(Joined { pid, chan: parent, in_cgroup })
        }
    }
}

fn main(mut cfg: JoinConfig, mut chan: Channel) -> ! {
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let mut keep = vec![chan.raw_fd()];
    keep.extend(cfg.namespaces.iter().map(|(_, fd)| fd.as_raw_fd()));
    keep.extend(cfg.chroot.as_ref().map(|fd| fd.as_raw_fd()));
    keep.extend(cfg.console.as_ref().map(|fd| fd.as_raw_fd()));
    keep.extend(cfg.wasm_cache.as_ref().map(|c| c.as_raw_fd()));
    super::init::close_fds_from(3 + cfg.preserve_fds.max(0), &keep);
    match setup(&mut cfg, &mut chan) {
        Ok((preloaded, memory_gauge)) => launch(cfg, preloaded, memory_gauge),
        Err(e) => {
            let _ = chan.send_error(&e);
            // SAFETY: leave without running the runtime's destructors.
            unsafe { libc::_exit(1) }
        }
    }
}

/// Join and become the process; a wasm program is loaded from the cache (or compiled into it)
/// on the way, while still privileged (see `wasm_compile`), and the cache closed; with it
/// the process's memory gauge, opened before /proc goes (see `wasm::open_memory_gauge`).
fn setup(cfg: &mut JoinConfig, chan: &mut Channel) -> Result<(Option<Preloaded>, Option<std::fs::File>), String> {
    // Still the runtime's user namespace and paths: moving our only thread moves the process.
    super::cgroups::attach_self(&cfg.cgroup_self_attach)?;
    // Otherwise the runtime puts us in the container's cgroup first.
    chan.expect(sync::CONTINUE)?;
    if cfg.program.executor == Executor::Wasm {
        // While /proc is still the runtime's (see `title`).
        let args = cfg.spec.process().as_ref().and_then(|p| p.args().clone()).unwrap_or_default();
        super::title::show_program(&args);
    }
    let wasm_in_mount_ns =
        cfg.program.executor == Executor::Wasm && cfg.namespaces.iter().any(|(t, _)| *t == LinuxNamespaceType::Mount);
    // The mount table is read through the runtime's /proc: the container may have none.
    let host_proc = if wasm_in_mount_ns { Some(super::mounts::open_proc()?) } else { None };
    for (typ, fd) in &cfg.namespaces {
        // SAFETY: setns on an fd of the namespace type it names.
        if unsafe { libc::setns(fd.as_raw_fd(), namespaces::clone_flag(*typ)) } != 0 {
            return Err(format!("joining the container's {typ:?} namespace: {}", std::io::Error::last_os_error()));
        }
        if *typ == LinuxNamespaceType::User {
            // SAFETY: become root of the container's user namespace (its mapping decides
            // which host user that is); the process's own user is set below.
            unsafe {
                libc::setresgid(0, 0, 0);
                libc::setresuid(0, 0, 0);
            }
        }
    }
    let memory_gauge = host_proc.as_ref().and_then(|proc| wasm::open_memory_gauge(proc.as_fd()));
    if let Some(proc) = host_proc {
        super::mounts::private_view_without_kernel_filesystems(
            cfg.spec.mounts().as_deref().unwrap_or_default(),
            proc.as_fd(),
        )?;
    }
    if let Some(root) = &cfg.chroot {
        rustix::process::fchdir(root).map_err(|e| format!("entering the container's root: {e}"))?;
        rustix::process::chroot(".").map_err(|e| format!("chroot into the container's root: {e}"))?;
    }
    // SAFETY: a new session, so the process can own a terminal.
    unsafe { libc::setsid() };
    // In the container's root, still root: HOME from its /etc/passwd if the process has none.
    if let Some(with) =
        cfg.spec.process().as_ref().and_then(|p| crate::spec::user::with_home(p, std::path::Path::new("/")))
    {
        cfg.spec.set_process(Some(with));
    }
    let process: &Process = cfg.spec.process().as_ref().ok_or("no process to run")?;
    if let Some(socket) = &cfg.console {
        console::attach_pty(socket.as_fd(), process)?;
    }
    let preloaded = match cfg.program.executor {
        Executor::Wasm => cfg
            .wasm_cache
            .take()
            // Into a running container: no compile on a miss (its processes could reach the
            // compiler; see `wasm_compile`), the guest compiles in memory.
            .and_then(|c| super::wasm_compile::preload(&c, &cfg.program.path, false, process, cfg.seccomp.as_ref())),
        Executor::Native => None,
    };
    if let Some(id) = &cfg.session_keyring {
        let in_user_ns = cfg.namespaces.iter().any(|(t, _)| *t == LinuxNamespaceType::User);
        super::keyring::join_session(id, in_user_ns)?;
    }
    identity::become_process(process, cfg.seccomp.as_ref())?;
    chan.send(sync::READY).map_err(|e| format!("sync: {e}"))?;
    Ok((preloaded, memory_gauge))
}

fn launch(cfg: JoinConfig, preloaded: Option<Preloaded>, memory_gauge: Option<std::fs::File>) -> ! {
    match cfg.program.executor {
        Executor::Native => {
            let process = cfg.spec.process().as_ref().expect("checked in setup");
            super::init::execve(&cfg.program.path, process, cfg.preserve_fds)
        }
        Executor::Wasm => {
            // Nothing of the runtime's stays open while the guest runs (no execve closes it).
            drop(cfg.namespaces);
            drop(cfg.chroot);
            let mut job = WasmJob::from_spec(&cfg.spec, cfg.program.path.clone());
            // As in the init: file mounts are no preopens (they are reached through "/").
            job.preopens.retain(|p| p.host.is_dir());
            job.preloaded = preloaded;
            job.memory_gauge = memory_gauge;
            let code = wasm::run(job);
            // SAFETY: leave without running the runtime's destructors; wasm output is unbuffered.
            unsafe { libc::_exit(code) }
        }
    }
}
