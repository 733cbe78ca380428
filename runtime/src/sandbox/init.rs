//! The container's init: the code that runs in the freshly cloned child, inside its new
//! namespaces, and ends in execve. It talks to the runtime over the sync channel and, once
//! set up, blocks opening the exec fifo until `start` opens the other end.
//!
//! It runs in a single-threaded copy of the runtime; it must never return into the
//! runtime's code: every path ends in execve or `_exit`.

use super::identity;
use super::mounts::{self, MountContext};
use super::namespaces::{self, Plan};
use super::sync::{self, Channel};
use super::{devices, hooks};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Everything the init needs, resolved by the runtime before the clone.
pub struct InitConfig {
    pub spec: Spec,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub plan: Plan,
    pub exec_fifo: PathBuf,
    pub no_pivot: bool,
    pub preserve_fds: i32,
    pub cgroup_dirs: Vec<(String, PathBuf)>,
    pub seccomp: Option<super::seccomp::Filter>,
    /// The container's state JSON for createContainer/startContainer hooks.
    pub state_json: String,
}

/// The init's entry point: set up, wait for start, exec. Never returns.
pub fn main(cfg: InitConfig, mut chan: Channel) -> ! {
    // The clone copied every fd of the runtime, and some hold state a copy must not keep:
    // a flock on the container's lock file would stay held (by this copy) until the
    // container exits, blocking `start`. Keep stdio, the preserved fds and the channel.
    close_fds_from(3 + cfg.preserve_fds.max(0), chan.raw_fd());
    match run(&cfg, &mut chan) {
        Ok(program) => exec(&cfg, program),
        Err(e) => {
            let _ = chan.send_error(&e);
            // SAFETY: leave without running the runtime's destructors or atexit handlers.
            unsafe { libc::_exit(1) }
        }
    }
}

fn run(cfg: &InitConfig, chan: &mut Channel) -> Result<CString, String> {
    // The runtime writes id maps and places us in the cgroup before we go on.
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
    let linux = cfg.spec.linux().clone().unwrap_or_default();
    let new_mount_ns = cfg.plan.has(LinuxNamespaceType::Mount);
    let fifo = rustix::fs::open(
        &cfg.exec_fifo,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| format!("opening exec fifo: {e}"))?;

    let root = if new_mount_ns {
        let ctx = MountContext { rootfs: &cfg.rootfs, bundle: &cfg.bundle, in_user_ns, cgroup_dirs: &cfg.cgroup_dirs };
        let root = mounts::mount_all(
            &ctx,
            cfg.spec.mounts().as_deref().unwrap_or_default(),
            linux.rootfs_propagation().as_deref(),
        )?;
        let mut devs = devices::defaults();
        devs.extend(linux.devices().as_deref().unwrap_or_default().iter().map(devices::from_spec));
        devices::create_all(&root, &devs, in_user_ns)?;
        devices::create_symlinks(&root)?;
        Some(root)
    } else {
        None
    };
    chan.send(sync::HOOKS).map_err(|e| format!("sync: {e}"))?;
    chan.expect(sync::CONTINUE)?;
    let hooks = cfg.spec.hooks().clone().unwrap_or_default();
    hooks::run_all("createContainer", hooks.create_container().as_ref(), &cfg.state_json)?;

    if new_mount_ns {
        drop(root);
        if cfg.no_pivot {
            mounts::move_root(&cfg.rootfs)?;
        } else {
            mounts::pivot_root(&cfg.rootfs)?;
        }
        mounts::mask_paths(linux.masked_paths().as_deref().unwrap_or_default())?;
        mounts::readonly_paths(linux.readonly_paths().as_deref().unwrap_or_default(), in_user_ns)?;
        if cfg.spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
            mounts::readonly_root(in_user_ns)?;
        }
    } else {
        rustix::process::chroot(&cfg.rootfs).map_err(|e| format!("chroot: {e}"))?;
    }
    if let Some(sysctl) = linux.sysctl() {
        identity::set_sysctls(sysctl)?;
    }
    if cfg.plan.has(LinuxNamespaceType::Uts) {
        if let Some(h) = cfg.spec.hostname().as_deref().filter(|h| !h.is_empty()) {
            rustix::system::sethostname(h.as_bytes()).map_err(|e| format!("sethostname {h:?}: {e}"))?;
        }
        if let Some(d) = cfg.spec.domainname().as_deref().filter(|d| !d.is_empty()) {
            rustix::system::setdomainname(d.as_bytes()).map_err(|e| format!("setdomainname {d:?}: {e}"))?;
        }
    }

    let process = cfg.spec.process().as_ref().ok_or("config.json has no process")?;
    if process.terminal().unwrap_or(false) {
        return Err("process.terminal is not supported yet by strata-oci".into());
    }
    identity::set_rlimits(process.rlimits().as_deref().unwrap_or_default())?;
    let no_new_privs = process.no_new_privileges().unwrap_or(false);
    if !no_new_privs {
        // Without no_new_privs the filter needs CAP_SYS_ADMIN: load it while we have it.
        if let Some(f) = &cfg.seccomp {
            f.load().map_err(|e| format!("loading seccomp filter: {e}"))?;
        }
    }
    identity::limit_bounding_set(process.capabilities().as_ref())?;
    identity::set_identity(process)?;
    identity::set_capabilities(process.capabilities().as_ref())?;
    let cwd = process.cwd();
    rustix::process::chdir(cwd).map_err(|e| format!("cwd {}: {e}", cwd.display()))?;
    let program =
        resolve_program(process.args().as_deref().unwrap_or_default(), process.env().as_deref().unwrap_or_default())?;
    if no_new_privs {
        identity::set_no_new_privs()?;
        if let Some(f) = &cfg.seccomp {
            f.load().map_err(|e| format!("loading seccomp filter: {e}"))?;
        }
    }

    chan.send(sync::READY).map_err(|e| format!("sync: {e}"))?;
    // Block until `start` opens the fifo for reading.
    let fifo_path = mounts::fd_path(&fifo);
    let w = rustix::fs::open(
        fifo_path.as_str(),
        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| format!("opening exec fifo: {e}"))?;
    rustix::io::write(&w, b"0").map_err(|e| format!("writing exec fifo: {e}"))?;
    drop(w);
    drop(fifo);
    hooks::run_all("startContainer", hooks.start_container().as_ref(), &cfg.state_json)?;
    Ok(program)
}

/// Find `args[0]` as execvp would, in the container's PATH, and check it can run; the
/// error words are runc's (callers map "not found" to 127 and "permission denied" to 126).
fn resolve_program(args: &[String], env: &[String]) -> Result<CString, String> {
    let name = args.first().ok_or("process.args is empty")?;
    let candidates: Vec<PathBuf> = if name.contains('/') {
        vec![PathBuf::from(name)]
    } else {
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        path.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join(name)).collect()
    };
    let mut denied = None;
    for candidate in &candidates {
        match std::fs::metadata(candidate) {
            Ok(md) if md.is_file() => {
                if rustix::fs::access(candidate, rustix::fs::Access::EXEC_OK).is_ok() {
                    return CString::new(candidate.as_os_str().as_encoded_bytes())
                        .map_err(|_| "program path has a NUL byte".to_string());
                }
                denied = Some(candidate.clone());
            }
            Ok(_) => denied = Some(candidate.clone()),
            Err(_) => {}
        }
    }
    match denied {
        Some(p) => Err(format!("exec: \"{}\": permission denied", p.display())),
        None if name.contains('/') => Err(format!("exec: \"{name}\": stat {name}: no such file or directory")),
        None => Err(format!("exec: \"{name}\": executable file not found in $PATH")),
    }
}

fn exec(cfg: &InitConfig, program: CString) -> ! {
    let process = cfg.spec.process().as_ref().expect("checked");
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
    close_inherited_fds(3 + cfg.preserve_fds);
    // SAFETY: argv/envp are NULL-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    let err = std::io::Error::last_os_error();
    let code = if err.raw_os_error() == Some(libc::ENOENT) { 127 } else { 126 };
    eprintln!("strata: exec {}: {err}", program.to_string_lossy());
    // SAFETY: leave without running the runtime's destructors.
    unsafe { libc::_exit(code) }
}

/// Close every fd from `first` up, except `keep`.
fn close_fds_from(first: i32, keep: i32) {
    let close_range = |lo: i32, hi: u32| {
        if lo as u32 <= hi {
            // SAFETY: close_range on fds this process no longer needs.
            unsafe { libc::syscall(libc::SYS_close_range, lo as u32, hi, 0u32) };
        }
    };
    if keep >= first {
        close_range(first, (keep - 1) as u32);
        close_range(keep + 1, u32::MAX);
    } else {
        close_range(first, u32::MAX);
    }
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
