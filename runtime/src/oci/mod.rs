//! `strata-oci`: the runc command line over strata's lifecycle library. Output shapes, exit
//! codes and error words follow runc, because podman and containerd's runc shim parse them.

pub mod args;

use anyhow::{anyhow, bail, Context, Result};
use args::{Cli, Command};
use std::io::Write;
use std::sync::atomic::{AtomicI32, Ordering};
use strata::lifecycle::create::{create, CreateOptions};
use strata::lifecycle::state::{StateError, Status};
use strata::lifecycle::{delete::delete, kill, ops, start::start, LifecycleError, Runtime};

pub fn run(cli: Cli) -> Result<i32> {
    let rt = Runtime::new(&cli.root)?;
    match cli.command {
        Command::Create(a) => {
            create(&rt, &a.id, &create_options(&a, cli.systemd_cgroup))?;
            Ok(0)
        }
        Command::Start(a) => {
            start(&rt, &a.id)?;
            Ok(0)
        }
        Command::State(a) => {
            let state = rt.states.load(&a.id)?;
            let json = state.oci_state(rt.status(&state));
            println!("{}", serde_json::to_string_pretty(&json)?);
            Ok(0)
        }
        Command::Kill(a) => {
            let signal = kill::parse_signal(&a.signal)?;
            kill::kill(&rt, &a.id, signal, a.all)?;
            Ok(0)
        }
        Command::Delete(a) => match delete(&rt, &a.id, a.force) {
            // runc's: with --force, a container that does not exist is already deleted.
            Err(LifecycleError::State(StateError::NotFound(_))) if a.force => Ok(0),
            other => other.map(|()| 0).map_err(Into::into),
        },
        Command::Run(a) => run_container(&rt, a, cli.systemd_cgroup),
        Command::List(a) => list(&rt, a),
        Command::Ps(a) => ps(&rt, a),
        Command::Pause(a) => {
            ops::pause(&rt, &a.id)?;
            Ok(0)
        }
        Command::Resume(a) => {
            ops::resume(&rt, &a.id)?;
            Ok(0)
        }
        Command::Update(a) => update(&rt, a),
        Command::Exec(a) => exec(&rt, a),
        Command::Features => {
            println!("{}", serde_json::to_string_pretty(&features())?);
            Ok(0)
        }
        Command::Spec(a) => {
            let path = a.bundle.join("config.json");
            if path.exists() {
                bail!("File {} exists. Remove it first", path.display());
            }
            let mut spec = oci_spec::runtime::Spec::default();
            // oci-spec's default names youki's host.
            spec.set_hostname(Some("strata".into()));
            std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(0)
        }
    }
}

fn create_options(a: &args::CreateArgs, systemd_cgroup: bool) -> CreateOptions {
    CreateOptions {
        systemd_cgroup,
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
        console_stream: None,
        wasm_cache: None,
    }
}

static FORWARD_TO: AtomicI32 = AtomicI32::new(0);
/// A signal that came before we knew whom to forward it to.
static PENDING: AtomicI32 = AtomicI32::new(0);
const FORWARDED: [libc::c_int; 7] =
    [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2, libc::SIGWINCH];

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    } else {
        PENDING.store(sig, Ordering::SeqCst);
    }
}

/// Catch the signals a foreground `run`/`exec` forwards, before the container's process
/// starts (so none kills us while it runs); they are held until [`forward_signals_to`].
fn catch_signals() {
    for sig in FORWARDED {
        // SAFETY: installing an async-signal-safe handler.
        unsafe { libc::signal(sig, forward_signal as *const () as libc::sighandler_t) };
    }
}

/// Forward caught signals to `pid` from now on, and any that came before.
fn forward_signals_to(pid: i32) {
    catch_signals();
    FORWARD_TO.store(pid, Ordering::SeqCst);
    let pending = PENDING.swap(0, Ordering::SeqCst);
    if pending > 0 {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, pending) };
    }
}

/// `run`: create, start, wait (forwarding signals to the container), delete; exit with the
/// container's status (128+N when killed by signal N).
fn run_container(rt: &Runtime, a: args::RunArgs, systemd_cgroup: bool) -> Result<i32> {
    let mut opts = create_options(&a.create, systemd_cgroup);
    // A terminal without --console-socket: like runc, hold the terminal ourselves and relay
    // it to our stdio (only when we stay to wait; detached, the error comes from create).
    let relay = if !a.detach && opts.console_socket.is_none() && bundle_wants_terminal(&opts.bundle) {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().context("creating the console socket pair")?;
        opts.console_stream = Some(std::sync::Arc::new(theirs.into()));
        Some(ours)
    } else {
        None
    };
    let created = create(rt, &a.create.id, &opts)?;
    opts.console_stream = None;
    let pid = created.state.pid;
    let master = match &relay {
        Some(sock) => match strata::sandbox::console::recv_master(std::os::fd::AsFd::as_fd(sock)) {
            Ok(m) => Some(m),
            Err(e) => {
                let _ = delete(rt, &a.create.id, true);
                bail!(e);
            }
        },
        None => None,
    };
    if !a.detach {
        catch_signals();
    }
    if let Err(e) = start(rt, &a.create.id) {
        let _ = delete(rt, &a.create.id, true);
        return Err(e.into());
    }
    if a.detach {
        return Ok(0);
    }
    let code = wait_foreground(pid, master.as_ref());
    if !a.keep {
        delete(rt, &a.create.id, true)?;
    }
    Ok(code)
}

/// Wait for our child `pid` (a container's init or an exec'd process) while forwarding the
/// signals we get to it, relaying its terminal if we hold one; its exit status the way a
/// shell reports it (128+N when killed by signal N).
fn wait_foreground(pid: i32, master: Option<&std::os::fd::OwnedFd>) -> i32 {
    forward_signals_to(pid);
    if let Some(master) = master {
        if let Some(pidfd) = rustix::process::Pid::from_raw(pid)
            .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok())
        {
            strata::sandbox::console::relay(master, &pidfd);
        }
    }
    strata::lifecycle::reap(pid).unwrap_or(255)
}

/// A socket pair for holding a terminal ourselves: our end, and the options' end.
fn relay_pair() -> Result<(std::os::unix::net::UnixStream, std::sync::Arc<std::os::fd::OwnedFd>)> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().context("creating the console socket pair")?;
    Ok((ours, std::sync::Arc::new(theirs.into())))
}

/// `exec`: run a process in a running container (runc's flags; the process comes from
/// `--process FILE` or from the container's own process with the flags' overrides).
fn exec(rt: &Runtime, a: args::ExecArgs) -> Result<i32> {
    let process = exec_process(rt, &a)?;
    let terminal = process.terminal().unwrap_or(false);
    let mut opts = strata::lifecycle::exec::ExecOptions {
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
        ..Default::default()
    };
    let relay = if terminal && !a.detach && opts.console_socket.is_none() {
        let (ours, theirs) = relay_pair()?;
        opts.console_stream = Some(theirs);
        Some(ours)
    } else {
        None
    };
    if !a.detach {
        catch_signals();
    }
    let pid = strata::lifecycle::exec::exec(rt, &a.id, process, &opts)?;
    opts.console_stream = None;
    if a.detach {
        return Ok(0);
    }
    let master = match &relay {
        Some(sock) => {
            Some(strata::sandbox::console::recv_master(std::os::fd::AsFd::as_fd(sock)).map_err(|e| anyhow!(e))?)
        }
        None => None,
    };
    Ok(wait_foreground(pid, master.as_ref()))
}

fn exec_process(rt: &Runtime, a: &args::ExecArgs) -> Result<oci_spec::runtime::Process> {
    if let Some(path) = &a.process {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        if let Ok(process) = strata::spec::parse_process(value) {
            return Ok(process);
        }
        // Again, tracked, for an error that names the field.
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        return serde_path_to_error::deserialize(de)
            .map_err(|e| anyhow!("{}: {}: {}", path.display(), e.path(), e.inner()));
    }
    if a.command.is_empty() {
        bail!("exec: no command given: pass the process as arguments or with --process");
    }
    let spec = rt.saved_spec(&a.id).ok_or_else(|| anyhow!("container \"{}\" does not exist", a.id))?;
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.into());
    }
    if !a.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        for e in &a.env {
            let key = e.split('=').next().unwrap_or(e);
            env.retain(|old| old.split('=').next() != Some(key));
            env.push(e.clone());
        }
        p.set_env(Some(env));
    }
    let mut user = p.user().clone();
    if let Some(u) = &a.user {
        let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
        let parse = |v: &str, what: &str| {
            v.parse::<u32>().map_err(|_| anyhow!("invalid --user {u:?}: {what} must be a number"))
        };
        user.set_uid(parse(uid, "uid")?);
        user.set_gid(parse(gid, "gid")?);
    }
    if !a.additional_gids.is_empty() {
        user.set_additional_gids(Some(a.additional_gids.clone()));
    }
    p.set_user(user);
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let add = |set: Option<oci_spec::runtime::Capabilities>| -> Result<oci_spec::runtime::Capabilities> {
            let mut set = set.unwrap_or_default();
            for c in &a.cap {
                set.insert(strata::spec::from_image::capability(c)?);
            }
            Ok(set)
        };
        caps.set_bounding(Some(add(caps.bounding().clone())?));
        caps.set_effective(Some(add(caps.effective().clone())?));
        caps.set_permitted(Some(add(caps.permitted().clone())?));
        caps.set_inheritable(Some(add(caps.inheritable().clone())?));
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

/// Whether the bundle's config asks for a terminal (a bad config is reported by create).
fn bundle_wants_terminal(bundle: &std::path::Path) -> bool {
    strata::spec::load(bundle).ok().and_then(|s| s.process().as_ref().and_then(|p| p.terminal())).unwrap_or(false)
}

fn list(rt: &Runtime, a: args::ListArgs) -> Result<i32> {
    let mut rows = Vec::new();
    for id in rt.states.ids() {
        let Ok(state) = rt.states.load(&id) else { continue };
        let status = rt.status(&state);
        rows.push((state, status));
    }
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for (s, _) in &rows {
            writeln!(out, "{}", s.id)?;
        }
        return Ok(0);
    }
    match a.format.as_str() {
        "json" => {
            let list: Vec<_> = rows
                .iter()
                .map(|(s, st)| {
                    serde_json::json!({
                        "ociVersion": "1.0.2",
                        "id": s.id,
                        "pid": if *st == Status::Stopped { 0 } else { s.pid },
                        "status": st,
                        "bundle": s.bundle,
                        "rootfs": s.rootfs,
                        "created": s.created,
                        "annotations": s.annotations,
                        "owner": s.owner,
                    })
                })
                .collect();
            // runc prints Go's encoding of an empty list: null.
            let json = if list.is_empty() { "null".to_string() } else { serde_json::to_string(&list)? };
            writeln!(out, "{json}")?;
        }
        "table" => {
            writeln!(out, "{:<12} {:<8} {:<10} {:<40} {:<30} OWNER", "ID", "PID", "STATUS", "BUNDLE", "CREATED")?;
            for (s, st) in &rows {
                let pid = if *st == Status::Stopped { 0 } else { s.pid };
                writeln!(
                    out,
                    "{:<12} {:<8} {:<10} {:<40} {:<30} {}",
                    s.id,
                    pid,
                    st.to_string(),
                    s.bundle.display(),
                    s.created,
                    if s.owner.is_empty() { "root" } else { &s.owner }
                )?;
            }
        }
        other => bail!("invalid format option {other:?}: expected table or json"),
    }
    Ok(0)
}

fn ps(rt: &Runtime, a: args::PsArgs) -> Result<i32> {
    let pids = ops::pids(rt, &a.id)?;
    match a.format.as_str() {
        "json" => {
            // runc prints Go's encoding of an empty list: null.
            println!("{}", if pids.is_empty() { "null".to_string() } else { serde_json::to_string(&pids)? });
            Ok(0)
        }
        "table" => {
            let mut cmd = std::process::Command::new("ps");
            cmd.args(if a.ps_args.is_empty() { vec!["-ef".to_string()] } else { a.ps_args.clone() });
            let out = cmd.output().context("running ps")?;
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or("");
            let pid_col = header
                .split_whitespace()
                .position(|c| c == "PID")
                .ok_or_else(|| anyhow!("ps output has no PID column"))?;
            println!("{header}");
            for line in lines {
                if line
                    .split_whitespace()
                    .nth(pid_col)
                    .and_then(|p| p.parse::<i32>().ok())
                    .is_some_and(|p| pids.contains(&p))
                {
                    println!("{line}");
                }
            }
            Ok(0)
        }
        other => bail!("invalid format option {other:?}: expected table or json"),
    }
}

fn update(rt: &Runtime, a: args::UpdateArgs) -> Result<i32> {
    use oci_spec::runtime::{LinuxPids, LinuxResources};
    let mut resources: LinuxResources = match a.resources.as_deref() {
        Some("-") => serde_json::from_reader(std::io::stdin()).context("reading resources from stdin")?,
        Some(path) => serde_json::from_slice(&std::fs::read(path).with_context(|| format!("reading {path}"))?)
            .with_context(|| format!("parsing {path}"))?,
        None => LinuxResources::default(),
    };
    // The flags go over the file's values, as runc's do.
    if a.memory.is_some() || a.memory_swap.is_some() || a.memory_reservation.is_some() {
        let mut mem = resources.memory().unwrap_or_default();
        if let Some(m) = a.memory {
            mem.set_limit(Some(m));
        }
        if let Some(s) = a.memory_swap {
            mem.set_swap(Some(s));
        }
        if let Some(r) = a.memory_reservation {
            mem.set_reservation(Some(r));
        }
        resources.set_memory(Some(mem));
    }
    if let Some(p) = a.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(p);
        resources.set_pids(Some(pids));
    }
    let cpu_flags = [a.cpu_quota.is_some(), a.cpu_period.is_some(), a.cpu_share.is_some(), a.cpuset_cpus.is_some()];
    let rt_flags = [a.cpuset_mems.is_some(), a.cpu_rt_period.is_some(), a.cpu_rt_runtime.is_some()];
    if cpu_flags.into_iter().chain(rt_flags).any(|given| given) {
        let mut cpu = resources.cpu().clone().unwrap_or_default();
        if let Some(q) = a.cpu_quota {
            cpu.set_quota(Some(q));
        }
        if let Some(p) = a.cpu_period {
            cpu.set_period(Some(p));
        }
        if let Some(s) = a.cpu_share {
            cpu.set_shares(Some(s));
        }
        if let Some(c) = &a.cpuset_cpus {
            cpu.set_cpus(Some(c.clone()));
        }
        if let Some(m) = &a.cpuset_mems {
            cpu.set_mems(Some(m.clone()));
        }
        if let Some(p) = a.cpu_rt_period {
            cpu.set_realtime_period(Some(p));
        }
        if let Some(r) = a.cpu_rt_runtime {
            cpu.set_realtime_runtime(Some(r));
        }
        resources.set_cpu(Some(cpu));
    }
    if let Some(w) = a.blkio_weight {
        let mut blkio = resources.block_io().clone().unwrap_or_default();
        blkio.set_weight(Some(w));
        resources.set_block_io(Some(blkio));
    }
    ops::update(rt, &a.id, &resources)?;
    Ok(0)
}

fn features() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.1.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "sync", "async", "dirsync",
            "remount", "mand", "nomand", "atime", "noatime", "diratime", "nodiratime", "relatime", "norelatime",
            "strictatime", "nostrictatime", "bind", "rbind", "private", "rprivate", "shared", "rshared", "slave",
            "rslave", "unbindable", "runbindable", "rro", "rrw"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": caps::all().iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "cgroup": {"v1": true, "v2": true, "systemd": true, "systemdUser": false},
            "seccomp": {"enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"]},
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
        },
        "annotations": {"io.github.strata.runtime": "strata-oci"},
    })
}
