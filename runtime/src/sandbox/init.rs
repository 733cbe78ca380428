//! The container's init: the code that runs in the freshly cloned child, inside its new
//! namespaces, and ends in execve. It talks to the runtime over the sync channel and, once
//! set up, blocks opening the exec fifo until `start` opens the other end.
//!
//! It runs in a single-threaded copy of the runtime; it must never return into the
//! runtime's code: every path ends in execve or `_exit`.

use super::identity;
use super::mounts::{self, MountContext};
use super::namespaces::{self, Plan};
use super::program::{self, Executor, Program};
use super::sync::{self, Channel};
use super::{console, devices, hooks, wasm_compile};
use crate::executor::wasm::{self, ArtifactCache, WasmJob};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

/// Everything the init needs, resolved by the runtime before the clone.
pub struct InitConfig {
    pub spec: Spec,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub plan: Plan,
    pub exec_fifo: PathBuf,
    pub no_pivot: bool,
    /// The container's id, for its own session keyring (`keyring`); None keeps the caller's.
    pub session_keyring: Option<String>,
    pub preserve_fds: i32,
    pub cgroup_dirs: Vec<(String, PathBuf)>,
    /// v1 `tasks` files the init writes `0` to, moving itself into the container's cgroup
    /// (the fast way; see `Cgroup::fast_entry`). Empty: the runtime moves it.
    pub cgroup_self_attach: Vec<PathBuf>,
    pub seccomp: Option<super::seccomp::Filter>,
    /// The container's state JSON for createContainer/startContainer hooks.
    pub state_json: String,
    /// Where compiled wasm is cached (opened before pivot_root if the program is wasm).
    pub wasm_cache_dir: PathBuf,
    /// Where to send the terminal's master when `process.terminal` is set.
    pub console: Option<std::os::fd::OwnedFd>,
}

/// What setup ends in: the program to run, and for wasm its compiled code if the cache had
/// it (or it was compiled into the cache at create).
struct Launch {
    program: Program,
    /// The process with `HOME` added, when its environment had none (runc's rule).
    with_home: Option<oci_spec::runtime::Process>,
    preloaded: Option<wasm::Preloaded>,
    /// For wasm in a mount namespace: this process's smaps_rollup, opened before /proc goes.
    memory_gauge: Option<std::fs::File>,
}

/// Whether the rootfs, before anything is mounted on it, shows a wasm program (see `run`).
/// Not with sysctls (written through /proc) or hooks (they may look at the container's
/// /proc), nor when another mount lands inside a kernel filesystem's mount point (made
/// late, the kernel filesystem would cover it).
fn wasm_before_mounts(cfg: &InitConfig, spec_mounts: &[oci_spec::runtime::Mount]) -> bool {
    use rustix::fs::{Mode, OFlags};
    let sysctls = cfg.spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()).is_some_and(|s| !s.is_empty());
    let hooks = cfg.spec.hooks().as_ref().is_some_and(|h| {
        [h.prestart(), h.create_runtime(), h.create_container(), h.start_container(), h.poststart(), h.poststop()]
            .iter()
            .any(|list| list.as_ref().is_some_and(|l| !l.is_empty()))
    });
    let (kernel, other): (Vec<_>, Vec<_>) = spec_mounts.iter().partition(|m| mounts::is_kernel_filesystem(m));
    let nested = other.iter().any(|o| kernel.iter().any(|k| o.destination().starts_with(k.destination())));
    if sysctls || hooks || nested || kernel.is_empty() {
        return false;
    }
    let Some(process) = cfg.spec.process().as_ref() else { return false };
    let Ok(rootfs) = rustix::fs::open(&cfg.rootfs, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
    else {
        return false;
    };
    program::resolve(
        &rootfs,
        process.args().as_deref().unwrap_or_default(),
        process.env().as_deref().unwrap_or_default(),
        program::wasm_by_annotation(&cfg.spec),
    )
    .is_ok_and(|p| p.executor == Executor::Wasm)
}

/// The init's entry point: set up, wait for start, exec. Never returns.
pub fn main(mut cfg: InitConfig, mut chan: Channel) -> ! {
    // The clone copied every fd of the runtime, and some hold state a copy must not keep:
    // a flock on the container's lock file would stay held (by this copy) until the
    // container exits, blocking `start`. Keep stdio, the preserved fds and the channel.
    let mut keep = vec![chan.raw_fd()];
    keep.extend(cfg.console.as_ref().map(|c| c.as_raw_fd()));
    close_fds_from(3 + cfg.preserve_fds.max(0), &keep);
    // Not dumpable until execve: other processes of the container (a joined pid namespace,
    // a later exec) cannot open /proc/PID/exe (the runtime's binary, CVE-2019-5736) or our
    // fds. execve of a native program makes it dumpable again; a wasm container stays so.
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    match run(&cfg, &mut chan) {
        Ok(mut launch) => match launch.program.executor {
            Executor::Native => {
                if let Some(process) = launch.with_home.take() {
                    cfg.spec.set_process(Some(process));
                }
                let process = cfg.spec.process().as_ref().expect("checked in run");
                execve(&launch.program.path, process, cfg.preserve_fds)
            }
            Executor::Wasm => {
                if let Some(process) = launch.with_home.take() {
                    cfg.spec.set_process(Some(process));
                }
                run_wasm(&cfg, launch)
            }
        },
        Err(e) => {
            let _ = chan.send_error(&e);
            // SAFETY: leave without running the runtime's destructors or atexit handlers.
            unsafe { libc::_exit(1) }
        }
    }
}

fn run(cfg: &InitConfig, chan: &mut Channel) -> Result<Launch, String> {
    // Still single-threaded and on the host's paths: moving our only thread moves the process.
    super::cgroups::attach_self(&cfg.cgroup_self_attach)?;
    // The runtime writes id maps (and moves us into the cgroup, unless we did) before we go on.
    chan.expect(sync::CONTINUE)?;
    for (t, path) in &cfg.plan.joins {
        if !matches!(t, LinuxNamespaceType::User | LinuxNamespaceType::Pid) {
            namespaces::join(*t, path)?;
        }
    }
    let in_user_ns = cfg.plan.has(LinuxNamespaceType::User);
    if in_user_ns {
        // SAFETY: become root of the new user namespace (mapped by the runtime).
        unsafe {
            libc::setresgid(0, 0, 0);
            libc::setresuid(0, 0, 0);
        }
    }
    // SAFETY: a new session, so the container is no one's job and can own a terminal.
    unsafe { libc::setsid() };
    if cfg.plan.creates(LinuxNamespaceType::Network) {
        namespaces::loopback_up()?;
    }
    let linux = cfg.spec.linux().clone().unwrap_or_default();
    let new_mount_ns = cfg.plan.has(LinuxNamespaceType::Mount);
    // The exec fifo's directory, held open to reach the fifo after pivot_root by name: not
    // through /proc/self/fd, which a wasm container does not have (see mounts).
    let fifo_name = cfg.exec_fifo.file_name().ok_or("exec fifo path has no file name")?.to_owned();
    let fifo_dir = rustix::fs::open(
        cfg.exec_fifo.parent().unwrap_or(Path::new("/")),
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| format!("opening exec fifo's directory: {e}"))?;

    let ctx = MountContext { rootfs: &cfg.rootfs, bundle: &cfg.bundle, in_user_ns, cgroup_dirs: &cfg.cgroup_dirs };
    // A wasm program runs without kernel filesystems (they are detached before it starts):
    // when the bare rootfs already shows one, its /proc, /sys and cgroup mounts are left
    // out rather than made and undone (~2 ms of a ~10 ms container). Which program runs is
    // settled below, after every mount, as always; if a mount put a native one in its place,
    // they are made then.
    let spec_mounts = cfg.spec.mounts().as_deref().unwrap_or_default();
    let (mounts_now, mounts_if_native): (Vec<_>, Vec<_>) = if new_mount_ns && wasm_before_mounts(cfg, spec_mounts) {
        spec_mounts.iter().cloned().partition(|m| !mounts::is_kernel_filesystem(m))
    } else {
        (spec_mounts.to_vec(), Vec::new())
    };
    let root = if new_mount_ns {
        let root = mounts::mount_all(&ctx, &mounts_now, linux.rootfs_propagation().as_deref())?;
        let mut devs = devices::defaults();
        devs.extend(linux.devices().as_deref().unwrap_or_default().iter().map(devices::from_spec));
        devices::create_all(&root, &devs, in_user_ns)?;
        devices::create_symlinks(&root)?;
        Some(root)
    } else {
        None
    };
    let process = cfg.spec.process().as_ref().ok_or("config.json has no process")?;
    let rootfs_fd;
    let root_fd = match &root {
        Some(fd) => fd,
        None => {
            use rustix::fs::{Mode, OFlags};
            rootfs_fd =
                rustix::fs::open(&cfg.rootfs, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                    .map_err(|e| format!("opening rootfs {}: {e}", cfg.rootfs.display()))?;
            &rootfs_fd
        }
    };
    let program = program::resolve(
        root_fd,
        process.args().as_deref().unwrap_or_default(),
        process.env().as_deref().unwrap_or_default(),
        program::wasm_by_annotation(&cfg.spec),
    )?;
    if matches!(program.executor, Executor::Wasm) {
        // While /proc is still the runtime's (see `title`).
        super::title::show_program(process.args().as_deref().unwrap_or_default());
    }
    if let (Some(root), Executor::Native, false) = (&root, program.executor, mounts_if_native.is_empty()) {
        mounts::mount_more(&ctx, root, &mounts_if_native)?;
    }
    // The cache is a host directory: open it now, while host paths still resolve. Without
    // it (unwritable, missing) the module is compiled in memory.
    let cache = match program.executor {
        Executor::Wasm => ArtifactCache::open(&cfg.wasm_cache_dir).ok(),
        Executor::Native => None,
    };
    // So is /proc, through which the mount table is read once the container's root is ours.
    let host_proc = match program.executor {
        Executor::Wasm if new_mount_ns => Some(mounts::open_proc()?),
        _ => None,
    };
    chan.send(sync::HOOKS).map_err(|e| format!("sync: {e}"))?;
    chan.expect(sync::CONTINUE)?;
    // Now in the container's cgroup: a new cgroup namespace is rooted there.
    if cfg.plan.creates(LinuxNamespaceType::Cgroup) {
        // SAFETY: unshare of the cgroup namespace only, in this single-threaded process.
        if unsafe { libc::unshare(libc::CLONE_NEWCGROUP) } != 0 {
            return Err(format!("creating the cgroup namespace: {}", std::io::Error::last_os_error()));
        }
    }
    let hooks = cfg.spec.hooks().clone().unwrap_or_default();
    // The hooks run in here see the init's own pid, as runc's do (1 in a pid namespace of its own).
    let in_here_state = || with_own_pid(&cfg.state_json);
    if hooks.create_container().as_ref().is_some_and(|h| !h.is_empty()) {
        hooks::run_all("createContainer", hooks.create_container().as_ref(), &in_here_state())?;
    }
    // runc's: a `process.cwd` the root lacks is made (0755, as root), after the mounts and
    // the hooks (which may mount over it) and before a read-only root is sealed: images name
    // a WORKDIR no layer creates. It is made here, resolved inside the root, because after
    // pivot_root the path would resolve through the container's /proc, whose fd links still
    // reach the host.
    mounts::make_missing_dir(root_fd, process.cwd())
        .map_err(|e| format!("cwd {}: cannot make it: {e}", process.cwd().display()))?;

    if new_mount_ns {
        drop(root);
        if cfg.no_pivot {
            mounts::move_root(&cfg.rootfs)?;
        } else {
            mounts::pivot_root(&cfg.rootfs)?;
        }
        // Sysctls first, as runc does: /proc/sys is usually among the read-only paths.
        if let Some(sysctl) = linux.sysctl() {
            identity::set_sysctls(sysctl)?;
        }
        mounts::mask_paths(linux.masked_paths().as_deref().unwrap_or_default())?;
        mounts::readonly_paths(linux.readonly_paths().as_deref().unwrap_or_default(), in_user_ns)?;
        if cfg.spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
            mounts::readonly_root(in_user_ns)?;
        }
    } else {
        rustix::process::chroot(&cfg.rootfs).map_err(|e| format!("chroot: {e}"))?;
        if let Some(sysctl) = linux.sysctl() {
            identity::set_sysctls(sysctl)?;
        }
    }
    if cfg.plan.has(LinuxNamespaceType::Uts) {
        if let Some(h) = cfg.spec.hostname().as_deref().filter(|h| !h.is_empty()) {
            rustix::system::sethostname(h.as_bytes()).map_err(|e| format!("sethostname {h:?}: {e}"))?;
        }
        if let Some(d) = cfg.spec.domainname().as_deref().filter(|d| !d.is_empty()) {
            rustix::system::setdomainname(d.as_bytes()).map_err(|e| format!("setdomainname {d:?}: {e}"))?;
        }
    }

    let memory_gauge = host_proc.as_ref().and_then(|proc| wasm::open_memory_gauge(proc.as_fd()));
    if let Some(proc) = host_proc {
        mounts::detach_kernel_filesystems(cfg.spec.mounts().as_deref().unwrap_or_default(), proc.as_fd())?;
    }
    if let Some(socket) = &cfg.console {
        console::attach_pty(socket.as_fd(), process)?;
    }
    // While still privileged: the cache is root's alone, and the user may be another.
    // A miss is compiled now only where nothing of the container's can reach the compiler
    // (a pid namespace of its own, so far empty): see `wasm_compile`.
    let compile_on_miss = cfg.plan.creates(LinuxNamespaceType::Pid);
    let preloaded = cache
        .as_ref()
        .and_then(|c| wasm_compile::preload(c, &program.path, compile_on_miss, process, cfg.seccomp.as_ref()));
    // The guest has no business with the host's cache directory: closed before it runs.
    drop(cache);
    // Inside the root now, while still root: its /etc/passwd is readable whoever the user is.
    let with_home = crate::spec::user::with_home(process, Path::new("/"));
    if let Some(id) = &cfg.session_keyring {
        super::keyring::join_session(id, in_user_ns)?;
    }
    identity::become_process(process, cfg.seccomp.as_ref())?;

    // From here the container outlives the command that created it.
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    // Waiting for `start`, the init is PID 1 of its namespace, which drops any signal it has no
    // handler for: a created container would ignore `kill ID TERM` (and a stop would wait out
    // its timeout). runc's init dies of it; ours too, until the fifo opens.
    let waiting = DieOnTermination::arm();
    chan.send(sync::READY).map_err(|e| format!("sync: {e}"))?;
    // Block until `start` opens the fifo for reading.
    let w = rustix::fs::openat(
        &fifo_dir,
        fifo_name.as_os_str(),
        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NOFOLLOW,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| format!("opening exec fifo: {e}"))?;
    rustix::io::write(&w, b"0").map_err(|e| format!("writing exec fifo: {e}"))?;
    drop(w);
    drop(waiting);
    drop(fifo_dir);
    if hooks.start_container().as_ref().is_some_and(|h| !h.is_empty()) {
        hooks::run_all("startContainer", hooks.start_container().as_ref(), &in_here_state())?;
    }
    Ok(Launch { program, with_home, preloaded, memory_gauge })
}

/// Run the container's module in wasmtime, in this process (PID 1 of the container), and
/// leave with its exit code.
fn run_wasm(cfg: &InitConfig, launch: Launch) -> ! {
    let mut job = WasmJob::from_spec(&cfg.spec, launch.program.path);
    // A WASI preopen is a directory. A file mounted on its own (CRI's /etc/hosts,
    // /etc/hostname, /etc/resolv.conf, /dev/termination-log) is reached through "/".
    job.preopens.retain(|p| p.host.is_dir());
    job.preloaded = launch.preloaded;
    job.memory_gauge = launch.memory_gauge;
    let code = wasm::run(job);
    // SAFETY: leave without running the runtime's destructors; wasm output is unbuffered.
    unsafe { libc::_exit(code) }
}

/// Replace this process with `path`, given `process`'s args and env; fds from
/// `3 + preserve_fds` up are closed on the way. On failure: a message and exit 127 (not
/// found) or 126 (cannot execute), as a shell would.
pub(crate) fn execve(path: &Path, process: &oci_spec::runtime::Process, preserve_fds: i32) -> ! {
    let Ok(program) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        eprintln!("strata: program path {} has a NUL byte", path.display());
        // SAFETY: leave without running the runtime's destructors.
        unsafe { libc::_exit(127) }
    };
    let args: Vec<CString> = process
        .args()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|a| CString::new(a.replace('\0', "")).expect("no NUL"))
        .collect();
    let env: Vec<CString> = process
        .env()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|a| CString::new(a.replace('\0', "")).expect("no NUL"))
        .collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    close_inherited_fds(3 + preserve_fds.max(0));
    reset_signals();
    // SAFETY: argv/envp are NULL-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    let err = std::io::Error::last_os_error();
    let code = if err.raw_os_error() == Some(libc::ENOENT) { 127 } else { 126 };
    eprintln!("strata: exec {}: {err}", program.to_string_lossy());
    // SAFETY: leave without running the runtime's destructors.
    unsafe { libc::_exit(code) }
}

/// Give the program default signal dispositions and an empty signal mask, as a fresh process
/// has: the runtime ignores SIGPIPE (Rust's default) and may catch others, and an ignored
/// signal would stay ignored across execve.
/// `state_json` with `pid` set to this process's own pid.
fn with_own_pid(state_json: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(state_json) {
        Ok(mut state) => {
            state["pid"] = serde_json::json!(std::process::id());
            state.to_string()
        }
        Err(_) => state_json.to_string(),
    }
}

/// The signals that end a process by default and that a user sends to stop one.
const TERMINATION_SIGNALS: [libc::c_int; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

/// While alive, [`TERMINATION_SIGNALS`] end this process (exit 128+N); dropped, they are back
/// to their default action and the mask to what it was.
struct DieOnTermination {
    mask: libc::sigset_t,
}

extern "C" fn exit_on_signal(sig: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(128 + sig) }
}

impl DieOnTermination {
    fn arm() -> DieOnTermination {
        // SAFETY: dispositions and mask of this single-threaded process; the handler only
        // calls _exit.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in TERMINATION_SIGNALS {
                libc::signal(sig, exit_on_signal as *const () as libc::sighandler_t);
                libc::sigaddset(&mut set, sig);
            }
            let mut mask: libc::sigset_t = std::mem::zeroed();
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, &mut mask);
            DieOnTermination { mask }
        }
    }
}

impl Drop for DieOnTermination {
    fn drop(&mut self) {
        // SAFETY: as in `arm`.
        unsafe {
            for sig in TERMINATION_SIGNALS {
                libc::signal(sig, libc::SIG_DFL);
            }
            libc::sigprocmask(libc::SIG_SETMASK, &self.mask, std::ptr::null_mut());
        }
    }
}

fn reset_signals() {
    // SAFETY: resetting dispositions and the mask of this single-threaded process right
    // before execve; SIGKILL/SIGSTOP (which cannot be changed) just fail.
    unsafe {
        for sig in 1..libc::SIGRTMAX() {
            libc::signal(sig, libc::SIG_DFL);
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

/// Close every fd from `first` up, except those in `keep` (also used by the CLI's forked monitor).
pub fn close_fds_from(first: i32, keep: &[i32]) {
    let mut keep: Vec<u32> = keep.iter().filter(|fd| **fd >= first).map(|fd| *fd as u32).collect();
    keep.sort_unstable();
    let mut lo = first as u32;
    for fd in keep {
        if fd > lo {
            // SAFETY: close_range on fds this process no longer needs.
            unsafe { libc::syscall(libc::SYS_close_range, lo, fd - 1, 0u32) };
        }
        lo = fd + 1;
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, lo, u32::MAX, 0u32) };
}

/// Mark every fd from `first` up close-on-exec, so nothing of the runtime (CVE-2024-21626's
/// leaked directory fds among them) reaches the container's process.
fn close_inherited_fds(first: i32) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        // No /proc: close a generous range instead.
        for fd in first..1024 {
            // SAFETY: closing fds we don't use any more.
            unsafe { libc::close(fd) };
        }
        return;
    };
    let fds: Vec<i32> = dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
    for fd in fds.into_iter().filter(|fd| *fd >= first) {
        // SAFETY: setting FD_CLOEXEC on an fd number is harmless even if it just closed.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

#[allow(dead_code)]
fn raw(fd: &impl AsRawFd) -> i32 {
    fd.as_raw_fd()
}
