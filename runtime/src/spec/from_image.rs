//! The OCI runtime spec of a container made from an image, as docker and podman make it:
//! the image's Entrypoint/Cmd/Env/WorkingDir/User with `strata run`'s overrides on top,
//! docker's default mounts, capabilities, masked and read-only paths, device rules and seccomp
//! profile (chosen in `seccomp`), the
//! resource limits asked for, and namespaces for pid, mount, uts, ipc and (unless the host's
//! network is wanted) net.
//!
//! Pure but for two reads: the user is resolved through the container's own /etc/passwd and
//! /etc/group (see `user`), and `--cap-add ALL` means what this kernel supports.

use super::run_options::{cpu_quota, NetworkMode, RunOptions, INIT_DESTINATION};
use super::user::{self, ExecUser, UserError};
use crate::image::classify::Kind;
use crate::image::manifest::RunConfig;
use crate::sandbox::mounts::is_kernel_filesystem;
use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory,
    LinuxNamespace, LinuxNamespaceType, LinuxPids, LinuxResources, Mount, PosixRlimitBuilder, PosixRlimitType, Process,
    Root, Spec, User,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The annotation the sandbox reads to pick the wasm executor (crun and youki use it too).
pub const HANDLER_ANNOTATION: &str = "run.oci.handler";
pub const KIND_ANNOTATION: &str = "io.strata.image.kind";
pub const KIND_REASON_ANNOTATION: &str = "io.strata.image.kind.reason";

/// docker's default capability set (moby `caps.DefaultCapabilities`).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// docker's masked paths: kernel interfaces that leak host information or allow attacks.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Where and for what the spec is made.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub id: &'a str,
    /// The container's assembled root filesystem (users are resolved in it).
    pub rootfs: &'a Path,
    /// `root.path` as written in the spec (relative to the bundle, or absolute).
    pub root_path: PathBuf,
    pub kind: Kind,
    pub kind_reason: &'a str,
    /// RLIMIT_NOFILE soft and hard: docker asks for 1048576, which a host may not allow.
    pub nofile: u64,
    /// The host's name, which a `--network host` container takes by default.
    pub host_hostname: &'a str,
    /// Files bind-mounted over the image's (`/etc/hosts` and the like): (destination, source).
    pub etc_files: Vec<(String, PathBuf)>,
}

#[derive(Debug, thiserror::Error)]
pub enum FromImageError {
    #[error("no command specified: the image has no Entrypoint or Cmd; give a command after the image name")]
    NoCommand,
    #[error(transparent)]
    User(#[from] UserError),
    #[error("unknown capability: {0:?}")]
    UnknownCapability(String),
    #[error("the working directory {0:?} is invalid, it needs to be an absolute path")]
    RelativeWorkdir(String),
    #[error("--init is for native containers: a wasm module runs as its container's only process")]
    InitInWasm,
}

/// The process's argv: Entrypoint + Cmd, with `--entrypoint` dropping the image's Cmd as
/// docker does.
pub fn command(image: &RunConfig, opts: &RunOptions) -> Result<Vec<String>, FromImageError> {
    let (entrypoint, image_cmd) = match &opts.entrypoint {
        Some(e) => (e.clone(), Vec::new()),
        None => (image.entrypoint.clone().unwrap_or_default(), image.cmd.clone().unwrap_or_default()),
    };
    let cmd = if opts.cmd.is_empty() { image_cmd } else { opts.cmd.clone() };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() || argv[0].is_empty() {
        return Err(FromImageError::NoCommand);
    }
    Ok(argv)
}

/// The hostname a container gets: asked for, the host's with `--network host`, else the
/// short id.
pub fn hostname(opts: &RunOptions, id: &str, host_hostname: &str) -> String {
    match (&opts.hostname, opts.network) {
        _ if opts.uts_host => host_hostname.to_string(),
        (Some(h), _) => h.clone(),
        (None, NetworkMode::Host) => host_hostname.to_string(),
        (None, NetworkMode::None) => id.chars().take(12).collect(),
    }
}

pub fn from_image(image: &RunConfig, opts: &RunOptions, target: &Target) -> Result<Spec, FromImageError> {
    let mut args = command(image, opts)?;
    if opts.init.is_some() {
        if target.kind == Kind::Wasm {
            return Err(FromImageError::InitInWasm);
        }
        // docker's and podman's shape: `INIT -- COMMAND...`.
        args.splice(0..0, [INIT_DESTINATION.to_string(), "--".to_string()]);
    }
    let cwd = opts.workdir.clone().or_else(|| image.working_dir.clone()).filter(|w| !w.is_empty());
    let cwd = cwd.unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(FromImageError::RelativeWorkdir(cwd));
    }
    let user_spec = opts.user.clone().or_else(|| image.user.clone()).unwrap_or_default();
    let mut exec_user = user::resolve(target.rootfs, &user_spec)?;
    for gid in user::resolve_groups(target.rootfs, &opts.group_add)? {
        if !exec_user.additional_gids.contains(&gid) {
            exec_user.additional_gids.push(gid);
        }
    }
    let hostname = hostname(opts, target.id, target.host_hostname);
    let env = environment(image.env.as_deref().unwrap_or_default(), &opts.env, &hostname, opts.tty, &exec_user.home);

    let mut process = Process::default();
    process.set_terminal(Some(opts.tty));
    process.set_args(Some(args));
    process.set_env(Some(env));
    process.set_cwd(cwd.into());
    process.set_user(process_user(&exec_user));
    // docker's --privileged: every capability whatever --cap-drop says, and no seccomp.
    let caps = if opts.privileged {
        privileged_capabilities(exec_user.uid)
    } else {
        capabilities(&opts.cap_add, &opts.cap_drop, exec_user.uid)?
    };
    // docker's profile unlocks syscalls by the bounding set, whatever the user.
    let seccomp = match opts.privileged {
        true => None,
        false => opts.seccomp.for_container(caps.bounding().as_ref().unwrap_or(&Capabilities::new())),
    };
    process.set_capabilities(Some(caps));
    let nofile = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .soft(target.nofile)
        .hard(target.nofile)
        .build()
        .expect("every field is set");
    let mut rlimits = vec![nofile];
    for u in &opts.ulimits {
        let Ok(typ) = serde_json::from_value::<PosixRlimitType>(serde_json::json!(u.name)) else { continue };
        rlimits.retain(|r| r.typ() != typ);
        let limit =
            PosixRlimitBuilder::default().typ(typ).soft(u.soft).hard(u.hard).build().expect("every field is set");
        rlimits.push(limit);
    }
    process.set_rlimits(Some(rlimits));
    process.set_no_new_privileges(Some(super::seccomp::SeccompMode::no_new_privileges(&opts.security_opt)));
    process.set_oom_score_adj(opts.oom_score_adj);

    let mut root = Root::default();
    root.set_path(target.root_path.clone());
    root.set_readonly(Some(opts.read_only));

    let mut mounts = default_mounts();
    let (mut masked, mut readonly) = (MASKED_PATHS, READONLY_PATHS);
    if opts.privileged {
        // docker's: /sys and the cgroup hierarchies writable, nothing masked or read-only.
        for m in mounts.iter_mut().filter(|m| is_kernel_filesystem(m)) {
            let options = m.options().clone().unwrap_or_default().into_iter().filter(|o| o != "ro").collect();
            m.set_options(Some(options));
        }
        (masked, readonly) = (&[], &[]);
    }
    if target.kind == Kind::Wasm {
        // The sandbox detaches kernel filesystems from a wasm container (a guest must not reach
        // /proc/PID/mem of the process running it): not mounting them saves ~20 mounts, and
        // the paths docker masks in them are not there to mask.
        mounts.retain(|m| !is_kernel_filesystem(m));
        (masked, readonly) = (&[], &[]);
    }
    if let Some(size) = opts.shm_size {
        for m in mounts.iter_mut().filter(|m| m.destination() == Path::new("/dev/shm")) {
            let mut options: Vec<String> =
                m.options().clone().unwrap_or_default().into_iter().filter(|o| !o.starts_with("size=")).collect();
            options.push(format!("size={size}"));
            m.set_options(Some(options));
        }
    }
    if opts.ipc_host {
        // docker's: the host's /dev/shm, and no mqueue mount of the host's namespace.
        mounts.retain(|m| m.destination() != Path::new("/dev/shm") && m.destination() != Path::new("/dev/mqueue"));
        mounts.push(bind(Path::new("/dev/shm"), "/dev/shm", false));
    }
    // The /etc files and the volumes together, parents before children, as docker sorts its
    // mounts (a volume at /etc must not hide the hosts and resolv.conf made for the
    // container); at the same depth the user's volume comes last and wins.
    let mut binds: Vec<Mount> = target.etc_files.iter().map(|(dst, src)| bind(src, dst, opts.read_only)).collect();
    binds.extend(opts.volumes.iter().map(|v| bind(&v.source, &v.destination, v.read_only)));
    binds.sort_by_key(|m| m.destination().components().count());
    mounts.extend(binds);
    for t in &opts.tmpfs {
        let options: Vec<&str> = t.options.iter().map(String::as_str).collect();
        mounts.push(mount(&t.destination, "tmpfs", "tmpfs", &options));
    }
    if let Some(init) = &opts.init {
        // Last, so that no tmpfs or volume over /run hides it; read-only, so that the
        // container cannot write the host's binary through it (nor through /proc/1/exe).
        let mut m = bind(init, INIT_DESTINATION, true);
        m.set_options(Some(["bind", "ro", "nosuid", "nodev"].map(String::from).to_vec()));
        mounts.push(m);
    }

    let mut linux = oci_spec::runtime::Linux::default();
    linux.set_namespaces(Some(namespaces(opts)));
    linux.set_resources(Some(resources(opts)));
    linux.set_cgroups_path(Some(PathBuf::from(format!("/strata/{}", target.id))));
    linux.set_masked_paths(Some(masked.iter().map(|s| s.to_string()).collect()));
    linux.set_readonly_paths(Some(readonly.iter().map(|s| s.to_string()).collect()));
    linux.set_uid_mappings(None);
    linux.set_gid_mappings(None);
    linux.set_sysctl(if opts.sysctls.is_empty() { None } else { Some(opts.sysctls.clone().into_iter().collect()) });
    let mut nodes = if opts.privileged { host_devices(Path::new("/dev")) } else { Vec::new() };
    nodes.extend(opts.devices.iter().map(|d| d.node.clone()));
    linux.set_devices(if nodes.is_empty() { None } else { Some(nodes) });
    linux.set_seccomp(seccomp);

    let mut annotations = HashMap::new();
    annotations.insert(KIND_ANNOTATION.to_string(), target.kind.to_string());
    annotations.insert(KIND_REASON_ANNOTATION.to_string(), target.kind_reason.to_string());
    if target.kind == Kind::Wasm {
        annotations.insert(HANDLER_ANNOTATION.to_string(), "wasm".to_string());
    }

    let mut spec = Spec::default();
    spec.set_version("1.0.2".into());
    // The host's own namespace is not ours to name.
    spec.set_hostname((!opts.uts_host).then_some(hostname));
    spec.set_process(Some(process));
    spec.set_root(Some(root));
    spec.set_mounts(Some(mounts));
    spec.set_linux(Some(linux));
    spec.set_annotations(Some(annotations));
    spec.set_hooks(None);
    Ok(spec)
}

fn process_user(u: &ExecUser) -> User {
    let mut user = User::default();
    user.set_uid(u.uid);
    user.set_gid(u.gid);
    user.set_additional_gids(if u.additional_gids.is_empty() { None } else { Some(u.additional_gids.clone()) });
    // What docker's containers get, whatever the umask of the process that starts them.
    user.set_umask(Some(0o022));
    user
}

/// docker's environment: PATH and HOSTNAME defaults (TERM with a tty), replaced or extended
/// by the image's variables, then the user's; HOME from passwd if still unset.
pub fn environment(image_env: &[String], user_env: &[String], hostname: &str, tty: bool, home: &str) -> Vec<String> {
    let mut env = vec![DEFAULT_PATH.to_string(), format!("HOSTNAME={hostname}")];
    if tty {
        env.push("TERM=xterm".into());
    }
    for entry in image_env.iter().chain(user_env) {
        replace_or_append(&mut env, entry);
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={home}"));
    }
    env
}

/// Set `KEY=VALUE` in `env`, replacing an earlier value of `KEY`.
pub fn replace_or_append(env: &mut Vec<String>, entry: &str) {
    let key = entry.split_once('=').map_or(entry, |(k, _)| k);
    match env.iter_mut().find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key) {
        Some(existing) => *existing = entry.to_string(),
        None => env.push(entry.to_string()),
    }
}

/// A capability by name, with or without `CAP_`, in any case (docker's `--cap-add`, runc's
/// `exec --cap`).
pub fn capability(name: &str) -> Result<Capability, FromImageError> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
    serde_json::from_value(serde_json::Value::String(full.clone())).map_err(|_| FromImageError::UnknownCapability(full))
}

fn is_all(name: &str) -> bool {
    name.eq_ignore_ascii_case("ALL") || name.eq_ignore_ascii_case("CAP_ALL")
}

/// Every capability this kernel knows.
fn all_capabilities() -> Capabilities {
    caps::runtime::thread_all_supported().iter().filter_map(|c| capability(&c.to_string()).ok()).collect()
}

/// docker's `TweakCapabilities`: the default set, or all (`--cap-add ALL`) or none
/// (`--cap-drop ALL`), minus drops, plus adds. A non-root process starts with empty
/// effective and permitted sets (it gains them only through file capabilities).
pub fn capabilities(add: &[String], drop: &[String], uid: u32) -> Result<LinuxCapabilities, FromImageError> {
    let adds: Vec<Capability> = add.iter().filter(|c| !is_all(c)).map(|c| capability(c)).collect::<Result<_, _>>()?;
    let drops: Vec<Capability> = drop.iter().filter(|c| !is_all(c)).map(|c| capability(c)).collect::<Result<_, _>>()?;
    let mut set: Capabilities = if add.iter().any(|c| is_all(c)) {
        all_capabilities()
    } else if drop.iter().any(|c| is_all(c)) {
        Capabilities::new()
    } else {
        DEFAULT_CAPABILITIES.iter().map(|c| capability(c).expect("known default")).collect()
    };
    for c in &drops {
        set.remove(c);
    }
    set.extend(adds);
    Ok(process_capabilities(set, uid))
}

/// `--privileged`'s: every capability this process may hand on (its bounding set, as podman
/// takes it: a runtime without some cannot grant them, and asking would fail the container).
fn privileged_capabilities(uid: u32) -> LinuxCapabilities {
    let ours = caps::read(None, caps::CapSet::Bounding).unwrap_or_default();
    process_capabilities(ours.iter().filter_map(|c| capability(&c.to_string()).ok()).collect(), uid)
}

/// `set` as a process's bounding set, and for root its effective and permitted ones too.
fn process_capabilities(set: Capabilities, uid: u32) -> LinuxCapabilities {
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()));
    caps.set_inheritable(None);
    caps.set_ambient(None);
    if uid == 0 {
        caps.set_effective(Some(set.clone()));
        caps.set_permitted(Some(set));
    } else {
        caps.set_effective(Some(Capabilities::new()));
        caps.set_permitted(Some(Capabilities::new()));
    }
    caps
}

fn namespaces(opts: &RunOptions) -> Vec<LinuxNamespace> {
    let mut types = vec![LinuxNamespaceType::Mount];
    for (typ, host) in [
        (LinuxNamespaceType::Pid, opts.pid_host),
        (LinuxNamespaceType::Ipc, opts.ipc_host),
        (LinuxNamespaceType::Uts, opts.uts_host),
        (LinuxNamespaceType::Network, opts.network == NetworkMode::Host),
    ] {
        if !host {
            types.push(typ);
        }
    }
    types
        .into_iter()
        .map(|t| {
            let mut ns = LinuxNamespace::default();
            ns.set_typ(t);
            ns
        })
        .collect()
}

/// The limits `update` writes to a running container's cgroup: those of `opts`, without
/// device rules (they stay as the container started with them).
pub fn update_resources(opts: &RunOptions) -> LinuxResources {
    let mut r = resources(opts);
    r.set_devices(None);
    r
}

fn resources(opts: &RunOptions) -> LinuxResources {
    let mut r = LinuxResources::default();
    // docker's: deny everything, then allow mknod of any node and the usual character devices
    // (the same list a runtime appends to any spec's rules).
    let mut deny_all = LinuxDeviceCgroup::default();
    deny_all.set_allow(false);
    deny_all.set_typ(Some(LinuxDeviceType::A));
    deny_all.set_access(Some("rwm".to_string()));
    if opts.privileged {
        // Every device, as docker's --privileged.
        deny_all.set_allow(true);
    }
    let mut devices = vec![deny_all];
    devices.extend(crate::sandbox::cgroups::default_allowed_devices());
    for d in &opts.devices {
        let mut allow = LinuxDeviceCgroup::default();
        allow.set_allow(true);
        allow.set_typ(Some(d.node.typ()));
        allow.set_major(Some(d.node.major()));
        allow.set_minor(Some(d.node.minor()));
        allow.set_access(Some(d.permissions.clone()));
        devices.push(allow);
    }
    r.set_devices(Some(devices));
    if opts.memory.is_some() || opts.memory_reservation.is_some() {
        let mut mem = LinuxMemory::default();
        if let Some(limit) = opts.memory {
            mem.set_limit(Some(limit));
            mem.set_swap(opts.memory_swap_in_force());
        }
        mem.set_reservation(opts.memory_reservation);
        r.set_memory(Some(mem));
    }
    let cfs = opts.cpu_period.is_some() || opts.cpu_quota.is_some();
    if opts.cpus.is_some()
        || cfs
        || opts.cpu_shares.is_some()
        || opts.cpuset_cpus.is_some()
        || opts.cpuset_mems.is_some()
    {
        let mut cpu = LinuxCpu::default();
        if let Some(cpus) = opts.cpus {
            let (period, quota) = cpu_quota(cpus);
            cpu.set_period(Some(period));
            cpu.set_quota(Some(quota));
        } else if cfs {
            cpu.set_period(opts.cpu_period);
            cpu.set_quota(opts.cpu_quota);
        }
        cpu.set_shares(opts.cpu_shares);
        cpu.set_cpus(opts.cpuset_cpus.clone());
        cpu.set_mems(opts.cpuset_mems.clone());
        r.set_cpu(Some(cpu));
    }
    if let Some(limit) = opts.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(if limit <= 0 { -1 } else { limit });
        r.set_pids(Some(pids));
    }
    r
}

/// The host's device nodes under `dir` (`/dev`), for `--privileged`, as runc lists them: not
/// those of the filesystems the container mounts itself (pts, shm, mqueue) nor the console
/// (the container's is its terminal's), and no symlink.
fn host_devices(dir: &Path) -> Vec<oci_spec::runtime::LinuxDevice> {
    const SKIPPED: [&str; 7] = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(md) = std::fs::symlink_metadata(&path) else { continue };
        if md.is_dir() {
            if !SKIPPED.iter().any(|s| entry.file_name() == *s) {
                found.extend(host_devices(&path));
            }
        } else if path != Path::new("/dev/console") {
            found.extend(super::run_options::host_node(&path, &md));
        }
    }
    found
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(destination.into());
    m.set_typ(Some(typ.into()));
    m.set_source(Some(source.into()));
    m.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

fn bind(source: &Path, destination: &str, read_only: bool) -> Mount {
    let mut options = vec!["rbind", "rprivate"];
    if read_only {
        options.push("ro");
    }
    let mut m = mount(destination, "bind", "", &options);
    m.set_source(Some(source.to_path_buf()));
    m
}

/// docker's default mounts.
pub fn default_mounts() -> Vec<Mount> {
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", &["ro", "nosuid", "noexec", "nodev"]),
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
        mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::run_options::{parse_cpus, parse_memory};

    fn image() -> RunConfig {
        RunConfig {
            user: None,
            env: Some(vec![DEFAULT_PATH.into(), "LANG=C.UTF-8".into(), "FOO=image".into()]),
            entrypoint: Some(vec!["/docker-entrypoint.sh".into()]),
            cmd: Some(vec!["nginx".into(), "-g".into(), "daemon off;".into()]),
            working_dir: Some("/srv".into()),
            labels: None,
            stop_signal: None,
            volumes: None,
            healthcheck: None,
        }
    }

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nweb:x:33:33::/var/www:/bin/sh\n")
            .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nweb:x:33:\nlogs:x:4:web\n").unwrap();
        dir
    }

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn target(rootfs: &Path) -> Target<'_> {
        Target {
            id: ID,
            rootfs,
            root_path: "merged".into(),
            kind: Kind::Native,
            kind_reason: "entrypoint is an ELF binary",
            nofile: 20000,
            host_hostname: "thehost",
            etc_files: vec![("/etc/hosts".into(), "/state/hosts".into())],
        }
    }

    fn spec(opts: &RunOptions) -> Spec {
        let dir = rootfs();
        from_image(&image(), opts, &target(dir.path())).unwrap()
    }

    fn process(spec: &Spec) -> &Process {
        spec.process().as_ref().unwrap()
    }

    fn caps_of(set: &Option<Capabilities>) -> Vec<String> {
        let mut v: Vec<String> =
            set.iter().flatten().map(|c| serde_json::to_value(c).unwrap().as_str().unwrap().to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn command_is_entrypoint_then_cmd() {
        let img = image();
        let argv = |o: RunOptions| command(&img, &o);
        assert_eq!(argv(RunOptions::default()).unwrap(), ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]);
        let o = RunOptions { cmd: vec!["sh".into()], ..Default::default() };
        assert_eq!(argv(o).unwrap(), ["/docker-entrypoint.sh", "sh"]);
        // --entrypoint drops the image's Cmd.
        let o = RunOptions { entrypoint: Some(vec!["/bin/env".into()]), ..Default::default() };
        assert_eq!(argv(o).unwrap(), ["/bin/env"]);
        let o = RunOptions { entrypoint: Some(vec![]), cmd: vec!["id".into()], ..Default::default() };
        assert_eq!(argv(o).unwrap(), ["id"]);
        let o = RunOptions { entrypoint: Some(vec![]), ..Default::default() };
        assert!(matches!(argv(o), Err(FromImageError::NoCommand)));
        assert!(matches!(command(&RunConfig::default(), &RunOptions::default()), Err(FromImageError::NoCommand)));
    }

    #[test]
    fn environment_layers_defaults_image_and_user() {
        let opts = RunOptions { env: vec!["FOO=user".into(), "EXTRA=1".into()], ..Default::default() };
        let s = spec(&opts);
        let env = process(&s).env().clone().unwrap();
        assert_eq!(env, [DEFAULT_PATH, "HOSTNAME=0123456789ab", "LANG=C.UTF-8", "FOO=user", "EXTRA=1", "HOME=/root",]);
        let env = environment(&["PATH=/custom".into()], &["HOME=/h".into()], "h", true, "/root");
        assert_eq!(env, ["PATH=/custom", "HOSTNAME=h", "TERM=xterm", "HOME=/h"]);
    }

    #[test]
    fn cwd_user_and_hostname() {
        let s = spec(&RunOptions::default());
        assert_eq!(process(&s).cwd(), Path::new("/srv"));
        assert_eq!(s.hostname().as_deref(), Some("0123456789ab"));
        let s = spec(&RunOptions { workdir: Some("/tmp/x".into()), user: Some("web".into()), ..Default::default() });
        let p = process(&s);
        assert_eq!(p.cwd(), Path::new("/tmp/x"));
        assert_eq!((p.user().uid(), p.user().gid()), (33, 33));
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[4u32][..]));
        assert!(p.env().as_ref().unwrap().contains(&"HOME=/var/www".to_string()));
        let s = spec(&RunOptions { user: Some("1234:5678".into()), ..Default::default() });
        assert_eq!((process(&s).user().uid(), process(&s).user().gid()), (1234, 5678));
        let dir = rootfs();
        let bad = RunOptions { workdir: Some("relative".into()), ..Default::default() };
        assert!(matches!(from_image(&image(), &bad, &target(dir.path())), Err(FromImageError::RelativeWorkdir(_))));
        let bad = RunOptions { user: Some("nobody".into()), ..Default::default() };
        let e = from_image(&image(), &bad, &target(dir.path())).unwrap_err().to_string();
        assert_eq!(e, "unable to find user nobody: no matching entries in passwd file");
        let s = spec(&RunOptions { hostname: Some("web1".into()), ..Default::default() });
        assert_eq!(s.hostname().as_deref(), Some("web1"));
        let s = spec(&RunOptions { network: NetworkMode::Host, ..Default::default() });
        assert_eq!(s.hostname().as_deref(), Some("thehost"));
    }

    #[test]
    fn namespaces_follow_the_network_mode() {
        let types = |s: &Spec| -> Vec<LinuxNamespaceType> {
            s.linux().as_ref().unwrap().namespaces().as_ref().unwrap().iter().map(|n| n.typ()).collect()
        };
        let s = spec(&RunOptions::default());
        for t in [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Network,
        ] {
            assert!(types(&s).contains(&t), "{t:?}");
        }
        assert!(!types(&s).contains(&LinuxNamespaceType::User));
        let s = spec(&RunOptions { network: NetworkMode::Host, ..Default::default() });
        assert!(!types(&s).contains(&LinuxNamespaceType::Network));
        assert!("bridge".parse::<NetworkMode>().is_err());
    }

    #[test]
    fn docker_defaults() {
        let s = spec(&RunOptions::default());
        let linux = s.linux().as_ref().unwrap();
        assert_eq!(linux.cgroups_path().as_deref(), Some(Path::new(&format!("/strata/{ID}"))));
        assert!(linux.masked_paths().as_ref().unwrap().contains(&"/proc/kcore".to_string()));
        assert!(linux.readonly_paths().as_ref().unwrap().contains(&"/proc/sys".to_string()));
        let dests: Vec<_> =
            s.mounts().as_ref().unwrap().iter().map(|m| m.destination().display().to_string()).collect();
        assert_eq!(
            dests,
            ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm", "/etc/hosts"]
        );
        let caps = process(&s).capabilities().clone().unwrap();
        assert_eq!(caps_of(caps.bounding()).len(), DEFAULT_CAPABILITIES.len());
        assert_eq!(caps_of(caps.effective()), caps_of(caps.bounding()));
        assert!(!caps_of(caps.bounding()).contains(&"CAP_SYS_ADMIN".to_string()));
        let rl = &process(&s).rlimits().clone().unwrap()[0];
        assert_eq!((rl.typ(), rl.soft(), rl.hard()), (PosixRlimitType::RlimitNofile, 20000, 20000));
        let devices = linux.resources().as_ref().unwrap().devices().clone().unwrap();
        assert!(!devices[0].allow() && devices[0].typ() == Some(LinuxDeviceType::A));
        assert_eq!(s.root().as_ref().unwrap().readonly(), Some(false));
        let ann = s.annotations().clone().unwrap();
        assert_eq!(ann.get(KIND_ANNOTATION).map(String::as_str), Some("native"));
        assert!(!ann.contains_key(HANDLER_ANNOTATION));
        assert_eq!(process(&s).terminal(), Some(false));
        // The result is a spec the loader accepts.
        let bytes = serde_json::to_vec(&s).unwrap();
        crate::spec::parse(&bytes).unwrap();
    }

    #[test]
    fn wasm_images_get_the_handler_annotation() {
        let dir = rootfs();
        let t = Target { kind: Kind::Wasm, kind_reason: "layer media type", ..target(dir.path()) };
        let s = from_image(&image(), &RunOptions::default(), &t).unwrap();
        let ann = s.annotations().clone().unwrap();
        assert_eq!(ann.get(HANDLER_ANNOTATION).map(String::as_str), Some("wasm"));
        assert_eq!(ann.get(KIND_ANNOTATION).map(String::as_str), Some("wasm"));
    }

    #[test]
    fn wasm_containers_get_no_kernel_filesystems_to_mask() {
        let dir = rootfs();
        let spec_of =
            |kind| from_image(&image(), &RunOptions::default(), &Target { kind, ..target(dir.path()) }).unwrap();
        let destinations = |s: &Spec| -> Vec<String> {
            s.mounts().clone().unwrap().iter().map(|m| m.destination().display().to_string()).collect()
        };
        let native = spec_of(Kind::Native);
        for d in ["/proc", "/sys", "/sys/fs/cgroup", "/dev", "/dev/pts"] {
            assert!(destinations(&native).contains(&d.to_string()), "native lacks {d}");
        }
        let wasm = spec_of(Kind::Wasm);
        let wasm_mounts = destinations(&wasm);
        for d in ["/proc", "/sys", "/sys/fs/cgroup"] {
            assert!(!wasm_mounts.contains(&d.to_string()), "wasm mounts {d}: {wasm_mounts:?}");
        }
        assert!(wasm_mounts.contains(&"/dev".to_string()) && wasm_mounts.contains(&"/dev/shm".to_string()));
        let linux = wasm.linux().clone().unwrap();
        assert_eq!(linux.masked_paths().as_deref(), Some(&[][..]));
        assert_eq!(linux.readonly_paths().as_deref(), Some(&[][..]));
        assert_eq!(native.linux().clone().unwrap().masked_paths().as_ref().map(Vec::len), Some(MASKED_PATHS.len()));
    }

    #[test]
    fn capability_tweaks() {
        let names = |add: &[&str], drop: &[&str]| {
            let add: Vec<String> = add.iter().map(|s| s.to_string()).collect();
            let drop: Vec<String> = drop.iter().map(|s| s.to_string()).collect();
            caps_of(capabilities(&add, &drop, 0).unwrap().bounding())
        };
        let with_admin = names(&["SYS_ADMIN"], &["chown", "CAP_KILL"]);
        assert!(with_admin.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!with_admin.contains(&"CAP_CHOWN".to_string()) && !with_admin.contains(&"CAP_KILL".to_string()));
        assert_eq!(names(&["NET_ADMIN"], &["ALL"]), ["CAP_NET_ADMIN"]);
        assert!(names(&[], &["all"]).is_empty());
        let all = names(&["ALL"], &["SYS_ADMIN"]);
        assert!(all.len() > DEFAULT_CAPABILITIES.len() && !all.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(matches!(
            capabilities(&["NOPE".into()], &[], 0),
            Err(FromImageError::UnknownCapability(c)) if c == "CAP_NOPE"
        ));
        let non_root = capabilities(&[], &[], 1000).unwrap();
        assert!(caps_of(non_root.effective()).is_empty() && caps_of(non_root.permitted()).is_empty());
        assert_eq!(caps_of(non_root.bounding()).len(), DEFAULT_CAPABILITIES.len());
    }

    #[test]
    fn resources_and_read_only() {
        let opts = RunOptions {
            memory: parse_memory("64m").unwrap(),
            cpus: parse_cpus("1.5").unwrap(),
            pids_limit: Some(20),
            read_only: true,
            volumes: vec!["/data/sub:/mnt/a/b:ro".parse().unwrap(), "/data:/mnt/a".parse().unwrap()],
            ..Default::default()
        };
        let s = spec(&opts);
        let r = s.linux().as_ref().unwrap().resources().clone().unwrap();
        assert_eq!(r.memory().unwrap().limit(), Some(64 << 20));
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(150_000));
        assert_eq!(r.cpu().as_ref().unwrap().period(), Some(100_000));
        assert_eq!(r.pids().unwrap().limit(), 20);
        assert_eq!(s.root().as_ref().unwrap().readonly(), Some(true));
        let mounts = s.mounts().clone().unwrap();
        let tail: Vec<_> = mounts[mounts.len() - 2..]
            .iter()
            .map(|m| (m.destination().display().to_string(), m.options().clone().unwrap().contains(&"ro".into())))
            .collect();
        assert_eq!(tail, [("/mnt/a".to_string(), false), ("/mnt/a/b".to_string(), true)]);
    }

    #[test]
    fn privileged_opens_what_the_defaults_close() {
        let plain = spec(&RunOptions::default());
        let s = spec(&RunOptions { privileged: true, cap_drop: vec!["ALL".into()], ..Default::default() });
        let linux = s.linux().as_ref().unwrap();
        assert!(plain.linux().as_ref().unwrap().seccomp().is_some());
        assert!(linux.seccomp().is_none());
        assert_eq!(linux.masked_paths().as_deref(), Some(&[][..]));
        assert_eq!(linux.readonly_paths().as_deref(), Some(&[][..]));
        let first_rule = &linux.resources().as_ref().unwrap().devices().as_ref().unwrap()[0];
        assert!(first_rule.allow() && first_rule.typ() == Some(LinuxDeviceType::A), "{first_rule:?}");
        let sys = s.mounts().as_ref().unwrap().iter().find(|m| m.destination() == Path::new("/sys")).unwrap();
        assert!(!sys.options().as_ref().unwrap().contains(&"ro".to_string()));
        // --cap-drop does not apply; the host's /dev nodes are listed (/dev/null at least).
        let caps = s.process().as_ref().unwrap().capabilities().clone().unwrap();
        assert!(caps.effective().as_ref().unwrap().len() > DEFAULT_CAPABILITIES.len());
        assert!(linux.devices().as_ref().unwrap().iter().any(|d| d.path() == Path::new("/dev/null")));
    }

    #[test]
    fn init_goes_in_front_of_the_command_and_is_mounted_read_only_last() {
        let tmpfs = crate::spec::run_options::Tmpfs { destination: "/run".into(), options: vec![] };
        let opts = RunOptions { init: Some("/usr/bin/catatonit".into()), tmpfs: vec![tmpfs], ..Default::default() };
        let s = spec(&opts);
        let args = process(&s).args().clone().unwrap();
        assert_eq!(args, [INIT_DESTINATION, "--", "/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]);
        let last = s.mounts().as_ref().unwrap().last().unwrap().clone();
        assert_eq!(last.destination(), Path::new(INIT_DESTINATION));
        assert_eq!(last.source().as_deref(), Some(Path::new("/usr/bin/catatonit")));
        assert_eq!(last.options().clone().unwrap(), ["bind", "ro", "nosuid", "nodev"]);
        let rootfs = rootfs();
        let mut wasm = target(rootfs.path());
        wasm.kind = Kind::Wasm;
        let err = from_image(&image(), &opts, &wasm).unwrap_err();
        assert!(matches!(err, FromImageError::InitInWasm), "{err}");
    }
}
