//! `create`: validate the bundle, make the cgroup, clone the init into its namespaces, run
//! the createRuntime/prestart hooks at the point the spec says, and leave the init blocked on
//! the exec fifo. Any failure undoes everything: no process, cgroup or state is left.

use super::state::ContainerState;
use super::{now_rfc3339, LifecycleError, Runtime};
use crate::sandbox::cgroups::Cgroup;
use crate::sandbox::init::InitConfig;
use crate::sandbox::namespaces::Plan;
use crate::sandbox::{hooks, seccomp_cache, spawn, sync};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    /// runc's `--no-new-keyring`: the container keeps the caller's session keyring.
    pub no_new_keyring: bool,
    pub preserve_fds: i32,
    /// An already connected console socket (what `strata-oci run` uses to relay a terminal
    /// itself); `console_socket` names one to connect to instead.
    pub console_stream: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
    /// The compiled-wasm cache; default `$STRATA_WASM_CACHE`, else the shared default.
    pub wasm_cache: Option<PathBuf>,
    /// runc's `--systemd-cgroup`: `linux.cgroupsPath` must be systemd's `slice:prefix:name`
    /// (empty means `system.slice:strata:<id>`). The cgroup is made where systemd would make
    /// it, through cgroupfs; no unit is registered with systemd.
    pub systemd_cgroup: bool,
}

/// Compiled seccomp programs: next to the compiled-wasm cache (`ROOT/cache/seccomp` for
/// `strata`, `/var/lib/strata/cache/seccomp` for `strata-oci` and the shim).
pub(crate) fn seccomp_cache_dir(wasm_cache: &Option<PathBuf>) -> PathBuf {
    let wasm = wasm_cache_dir(wasm_cache);
    wasm.parent().unwrap_or(&wasm).join("seccomp")
}

pub(crate) fn wasm_cache_dir(configured: &Option<PathBuf>) -> PathBuf {
    use crate::executor::wasm::{CACHE_DIR_ENV, DEFAULT_CACHE_DIR};
    configured
        .clone()
        .or_else(|| std::env::var_os(CACHE_DIR_ENV).filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR))
}

/// What a successful create leaves: the state, and (for `run`) the init's pid, which is our
/// child and can be waited for.
pub struct Created {
    pub state: ContainerState,
}

pub fn create(rt: &Runtime, id: &str, opts: &CreateOptions) -> Result<Created, LifecycleError> {
    crate::spec::validate_id(id).map_err(LifecycleError::InvalidId)?;
    let bundle = std::path::absolute(&opts.bundle)
        .map_err(|e| LifecycleError::Setup(format!("bundle {}: {e}", opts.bundle.display())))?;
    let spec = crate::spec::load(&bundle)?;
    // Creating the directory is what claims the id (atomically); then lock it like any verb.
    let dir = rt.states.create_dir(id)?;
    let _lock = rt.states.lock(id)?;
    let mut undo = Undo { rt, id, pid: 0, cgroup: None, armed: true };
    let result = create_inner(rt, id, opts, &bundle, &spec, &dir, &mut undo);
    if result.is_ok() {
        undo.armed = false;
    }
    result
}

/// Reverts a half-made container when dropped armed.
struct Undo<'a> {
    rt: &'a Runtime,
    id: &'a str,
    pid: i32,
    cgroup: Option<Cgroup>,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.pid > 0 {
            // SAFETY: the init is our child; kill and reap it.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
        if let Some(cg) = &self.cgroup {
            if let Ok(pids) = cg.pids() {
                for p in pids {
                    // SAFETY: signalling processes of the container's own cgroup.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                    super::wait_for_exit(p, Some(std::time::Duration::from_secs(5)));
                }
            }
            let _ = cg.delete();
        }
        let _ = self.rt.states.remove(self.id);
    }
}

/// The container's cgroup: `linux.cgroupsPath` made absolute (see `cgroups::absolute_path`),
/// else `/strata/<id>`.
fn cgroup_path(spec: &Spec, id: &str, systemd: bool) -> Result<String, LifecycleError> {
    let path = match spec.linux().as_ref().and_then(|l| l.cgroups_path().clone()) {
        Some(p) if !p.as_os_str().is_empty() => p.display().to_string(),
        _ if systemd => format!("system.slice:strata:{id}"),
        _ => id.to_string(),
    };
    if systemd && (path.starts_with('/') || path.matches(':').count() != 2) {
        // runc's words.
        return Err(LifecycleError::Cgroup(format!(
            "expected cgroupsPath to be of format \"slice:prefix:name\" for systemd cgroups, got {path:?} instead"
        )));
    }
    crate::sandbox::cgroups::absolute_path(&path).map_err(|e| LifecycleError::Cgroup(e.to_string()))
}

/// The container's cgroup dir in each mounted hierarchy, for `cgroup` mounts. A hybrid host's
/// unified hierarchy is left out, as runc leaves it: the container sees the v1 hierarchies
/// (systemd's named one among them) as the host's processes do.
fn cgroup_dirs(root: &Path, path: &str) -> Vec<(String, PathBuf)> {
    let rel = path.trim_start_matches('/');
    if root.join("cgroup.controllers").exists() {
        return vec![(String::new(), root.join(rel))];
    }
    let Ok(entries) = std::fs::read_dir(root) else { return Vec::new() };
    let mut dirs: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter(|e| e.file_name() != crate::sandbox::cgroups::UNIFIED_HIERARCHY)
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path().join(rel)))
        .filter(|(_, dir)| dir.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The resources to write: the spec's, with the device rules completed as runc's spec
/// conversion does: after the spec's own rules, the devices every container needs. A node of
/// `linux.devices` gets no rule of its own: what the spec's rules allow of it is all the
/// container may do with it (a node given read-only stays so, as under runc).
/// A rule already in force is not repeated (docker's specs list the same defaults): each one
/// is a write to the cgroup, and the result is the same.
fn effective_resources(linux: &oci_spec::runtime::Linux) -> oci_spec::runtime::LinuxResources {
    use crate::sandbox::cgroups::default_allowed_devices;
    let mut resources = linux.resources().clone().unwrap_or_default();
    // As runc: the spec's rules apply to a cgroup that allows nothing to begin with (a spec
    // with no rules, or `devices: []`, must not leave every host device open); its own
    // "all devices" rule, if any, resets that.
    let mut rules = resources.devices().clone().unwrap_or_default();
    let whole = |r: &oci_spec::runtime::LinuxDeviceCgroup| {
        matches!(r.typ(), None | Some(oci_spec::runtime::LinuxDeviceType::A))
            && r.major().unwrap_or(-1) == -1
            && r.minor().unwrap_or(-1) == -1
    };
    if !rules.first().is_some_and(whole) {
        let mut deny_all = oci_spec::runtime::LinuxDeviceCgroup::default();
        deny_all.set_allow(false);
        deny_all.set_access(Some("rwm".into()));
        rules.insert(0, deny_all);
    }
    for rule in default_allowed_devices() {
        if !in_force(&rules, &rule) {
            rules.push(rule);
        }
    }
    resources.set_devices(Some(rules));
    resources
}

/// Whether appending the allow rule `rule` to `rules` would change nothing: the same rule is
/// there with no deny rule after it (rules apply in order; a later allow only adds).
fn in_force(rules: &[oci_spec::runtime::LinuxDeviceCgroup], rule: &oci_spec::runtime::LinuxDeviceCgroup) -> bool {
    let after_last_deny = rules.iter().rposition(|r| !r.allow()).map_or(0, |i| i + 1);
    rule.allow() && rules[after_last_deny..].contains(rule)
}

/// The socket the container sends its terminal over, when `process.terminal` asks for one
/// (runc's rules and words).
pub(crate) fn console_for(
    terminal: bool,
    console_socket: &Option<PathBuf>,
    console_stream: &Option<std::sync::Arc<std::os::fd::OwnedFd>>,
) -> Result<Option<std::os::fd::OwnedFd>, LifecycleError> {
    match (terminal, console_socket, console_stream) {
        (false, None, None) => Ok(None),
        (false, _, _) => {
            Err(LifecycleError::Setup("cannot use console socket if runc will not detach or allocate tty".into()))
        }
        (true, Some(path), _) => crate::sandbox::console::connect(path).map(Some).map_err(LifecycleError::Setup),
        (true, None, Some(stream)) => stream
            .try_clone()
            .map(Some)
            .map_err(|e| LifecycleError::Setup(format!("duplicating the console socket: {e}"))),
        (true, None, None) => {
            Err(LifecycleError::Setup("cannot allocate tty if runc will detach without setting console socket".into()))
        }
    }
}

fn create_inner(
    rt: &Runtime,
    id: &str,
    opts: &CreateOptions,
    bundle: &Path,
    spec: &Spec,
    dir: &Path,
    undo: &mut Undo,
) -> Result<Created, LifecycleError> {
    let root = spec.root().as_ref().expect("validated");
    let rootfs = bundle.join(root.path());
    let rootfs =
        rootfs.canonicalize().map_err(|e| LifecycleError::Setup(format!("rootfs {}: {e}", rootfs.display())))?;
    let terminal = spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false);
    let console = console_for(terminal, &opts.console_socket, &opts.console_stream)?;
    std::fs::write(dir.join("config.json"), serde_json::to_vec(spec).expect("spec serialises"))
        .map_err(|e| LifecycleError::Setup(format!("saving config: {e}")))?;
    let linux = spec.linux().clone().unwrap_or_default();
    let plan = Plan::from_spec(linux.namespaces().as_deref().unwrap_or_default());
    let seccomp = match linux.seccomp() {
        Some(s) => Some(
            seccomp_cache::compile_cached(s, &seccomp_cache_dir(&opts.wasm_cache))
                .map_err(|e| LifecycleError::Setup(format!("seccomp: {e}")))?,
        ),
        None => None,
    };

    let cg_path = cgroup_path(spec, id, opts.systemd_cgroup)?;
    let cgroup = Cgroup::new(&rt.cgroup_root, &cg_path).map_err(|e| LifecycleError::Cgroup(e.to_string()))?;
    cgroup.create().map_err(|e| LifecycleError::Cgroup(e.to_string()))?;
    undo.cgroup = Some(Cgroup::new(&rt.cgroup_root, &cg_path).map_err(|e| LifecycleError::Cgroup(e.to_string()))?);
    cgroup.apply(&effective_resources(&linux)).map_err(|e| LifecycleError::Cgroup(e.to_string()))?;

    let fifo = rt.states.exec_fifo(id);
    rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o622), 0)
        .map_err(|e| LifecycleError::Setup(format!("creating exec fifo: {e}")))?;
    // mknod applied the umask; the init may run as any user and must be able to open it.
    std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .map_err(|e| LifecycleError::Setup(format!("creating exec fifo: {e}")))?;

    let mut state = ContainerState {
        id: id.to_string(),
        bundle: bundle.to_path_buf(),
        rootfs: rootfs.clone(),
        pid: 0,
        pid_start: 0,
        created: now_rfc3339(),
        annotations: spec.annotations().clone().unwrap_or_default().into_iter().collect(),
        cgroup_path: cg_path.clone(),
        owner: String::new(),
        started: false,
    };
    rt.states.save(&state)?;

    let creates_userns = plan.creates(LinuxNamespaceType::User);
    let entry = cgroup.fast_entry(!creates_userns).map_err(|e| LifecycleError::Cgroup(e.to_string()))?;
    let cfg = InitConfig {
        spec: spec.clone(),
        bundle: bundle.to_path_buf(),
        rootfs,
        plan,
        exec_fifo: fifo,
        no_pivot: opts.no_pivot,
        session_keyring: (!opts.no_new_keyring).then(|| id.to_string()),
        preserve_fds: opts.preserve_fds,
        cgroup_dirs: cgroup_dirs(&rt.cgroup_root, &cg_path),
        cgroup_self_attach: entry.self_attach.clone(),
        seccomp,
        state_json: state.oci_state(super::state::Status::Creating).to_string(),
        wasm_cache_dir: wasm_cache_dir(&opts.wasm_cache),
        console,
    };
    let mut spawned = spawn::spawn(cfg, entry.clone_into.as_ref()).map_err(LifecycleError::Setup)?;
    if spawned.in_cgroup {
        tracing::debug!("init {} started in its cgroup (clone3 CLONE_INTO_CGROUP)", spawned.pid);
    }
    undo.pid = spawned.pid;
    let pid = spawned.pid;
    // Record the init at once: if we are killed from here on, `delete --force` finds it (and
    // until it hears from us, the init exits by itself when our end of the channel closes).
    state.pid = pid;
    state.pid_start = super::state::process_start_time(pid).unwrap_or(0);
    rt.states.save(&state)?;
    if creates_userns {
        spawn::write_id_maps(
            pid,
            linux.uid_mappings().as_deref().unwrap_or_default(),
            linux.gid_mappings().as_deref().unwrap_or_default(),
        )
        .map_err(LifecycleError::Setup)?;
    }
    let chan = &mut spawned.chan;
    chan.send(sync::CONTINUE).map_err(|e| LifecycleError::Setup(format!("sync: {e}")))?;
    // The init builds its mounts meanwhile: moving another process into a cgroup can wait a
    // whole RCU grace period, and nothing the init does before HOOKS needs it there (it
    // unshares its cgroup namespace only after the next CONTINUE).
    if entry.runtime_must_move(spawned.in_cgroup) {
        cgroup.add_process(pid).map_err(|e| LifecycleError::Cgroup(e.to_string()))?;
    }
    if let Some(adj) = spec.process().as_ref().and_then(|p| p.oom_score_adj()) {
        std::fs::write(format!("/proc/{pid}/oom_score_adj"), adj.to_string())
            .map_err(|e| LifecycleError::Setup(format!("oom_score_adj {adj}: {e}")))?;
    }
    chan.expect(sync::HOOKS).map_err(LifecycleError::Setup)?;
    let hooks = spec.hooks().clone().unwrap_or_default();
    let state_json = state.oci_state(super::state::Status::Creating).to_string();
    hooks::run_all("prestart", hooks.prestart().as_ref(), &state_json).map_err(LifecycleError::Setup)?;
    hooks::run_all("createRuntime", hooks.create_runtime().as_ref(), &state_json).map_err(LifecycleError::Setup)?;
    chan.send(sync::CONTINUE).map_err(|e| LifecycleError::Setup(format!("sync: {e}")))?;
    chan.expect(sync::READY).map_err(LifecycleError::Setup)?;

    if let Some(pid_file) = &opts.pid_file {
        crate::fsutil::write_atomic_unsynced(pid_file, pid.to_string().as_bytes())
            .map_err(|e| LifecycleError::Setup(format!("writing pid file {}: {e}", pid_file.display())))?;
    }
    Ok(Created { state })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::cgroups::default_allowed_devices;
    use oci_spec::runtime::{Linux, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

    fn rules_written(spec_rules: Option<Vec<LinuxDeviceCgroup>>) -> Vec<LinuxDeviceCgroup> {
        rules_written_with(spec_rules, Vec::new())
    }

    fn rules_written_with(
        spec_rules: Option<Vec<LinuxDeviceCgroup>>,
        nodes: Vec<LinuxDevice>,
    ) -> Vec<LinuxDeviceCgroup> {
        let mut linux = Linux::default();
        linux.set_resources(spec_rules.map(|rules| {
            let mut r = LinuxResources::default();
            r.set_devices(Some(rules));
            r
        }));
        linux.set_devices(Some(nodes));
        effective_resources(&linux).devices().clone().unwrap_or_default()
    }

    fn fuse() -> (LinuxDevice, LinuxDeviceCgroup) {
        let mut node = LinuxDevice::default();
        node.set_path("/dev/fuse".into());
        node.set_typ(LinuxDeviceType::C);
        node.set_major(10);
        node.set_minor(229);
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(LinuxDeviceType::C));
        rule.set_major(Some(10));
        rule.set_minor(Some(229));
        rule.set_access(Some("rwm".into()));
        (node, rule)
    }

    fn deny(typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>) -> LinuxDeviceCgroup {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(false);
        rule.set_typ(Some(typ));
        rule.set_major(major);
        rule.set_minor(minor);
        rule.set_access(Some("rwm".into()));
        rule
    }

    #[test]
    fn device_rules_already_in_force_are_not_written_twice() {
        let defaults = default_allowed_devices();
        // A spec without rules, or with none, gets a deny-all and the defaults (as runc), not
        // every device the cgroup's parent allows.
        let mut deny_all = deny(LinuxDeviceType::A, None, None);
        deny_all.set_typ(None);
        assert_eq!(rules_written(None), [vec![deny_all.clone()], defaults.clone()].concat());
        assert_eq!(rules_written(Some(Vec::new())), [vec![deny_all], defaults.clone()].concat());
        // A spec that starts from "all devices" (allowed or not) keeps its own start.
        let mut allow_all = LinuxDeviceCgroup::default();
        allow_all.set_allow(true);
        assert_eq!(rules_written(Some(vec![allow_all.clone()])), [vec![allow_all], defaults.clone()].concat());
        // docker's spec (deny all, then the defaults) already has them: nothing is added.
        let docker = [vec![deny(LinuxDeviceType::A, None, None)], defaults.clone()].concat();
        assert_eq!(rules_written(Some(docker.clone())), docker);
        // A deny after them takes /dev/null away again: the defaults follow it, as runc writes them.
        let denies_null = [docker.clone(), vec![deny(LinuxDeviceType::C, Some(1), Some(3))]].concat();
        assert_eq!(rules_written(Some(denies_null.clone())), [denies_null, defaults].concat());
        // A node in linux.devices gets no rule of its own, as under runc: the spec's rules say
        // what the container may do with it (read only stays read only).
        let (node, mut read_fuse) = fuse();
        read_fuse.set_access(Some("r".into()));
        assert_eq!(rules_written_with(Some(docker.clone()), vec![node.clone()]), docker);
        let with_fuse = [docker.clone(), vec![read_fuse]].concat();
        assert_eq!(rules_written_with(Some(with_fuse.clone()), vec![node]), with_fuse);
    }
}
