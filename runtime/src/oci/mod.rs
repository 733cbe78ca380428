//! `strata-oci`: the runc command line over strata's lifecycle library. Output shapes, exit
//! codes and error words follow runc, because podman and containerd's runc shim parse them.

pub mod args;

use anyhow::{anyhow, bail, Context, Result};
use args::{Cli, Command};
use std::io::Write;
use strata::lifecycle::create::{create, CreateOptions};
use strata::lifecycle::state::Status;
use strata::lifecycle::{delete::delete, kill, ops, start::start, Runtime};

pub fn run(cli: Cli) -> Result<i32> {
    if cli.systemd_cgroup {
        bail!("--systemd-cgroup is not supported: strata manages cgroups through cgroupfs (use a cgroupfs cgroup manager)");
    }
    let rt = Runtime::new(&cli.root)?;
    match cli.command {
        Command::Create(a) => {
            create(&rt, &a.id, &create_options(&a))?;
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
        Command::Delete(a) => {
            delete(&rt, &a.id, a.force)?;
            Ok(0)
        }
        Command::Run(a) => run_container(&rt, a),
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
        Command::Exec(_) => bail!("exec is not implemented yet in strata-oci"),
        Command::Features => {
            println!("{}", serde_json::to_string_pretty(&features())?);
            Ok(0)
        }
        Command::Spec(a) => {
            let path = a.bundle.join("config.json");
            if path.exists() {
                bail!("File {} exists. Remove it first", path.display());
            }
            let spec = oci_spec::runtime::Spec::default();
            std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(0)
        }
    }
}

fn create_options(a: &args::CreateArgs) -> CreateOptions {
    CreateOptions {
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        no_pivot: a.no_pivot,
        preserve_fds: a.preserve_fds,
        wasm_cache: None,
    }
}

static FORWARD_TO: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = FORWARD_TO.load(std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// `run`: create, start, wait (forwarding signals to the container), delete; exit with the
/// container's status (128+N when killed by signal N).
fn run_container(rt: &Runtime, a: args::RunArgs) -> Result<i32> {
    let created = create(rt, &a.create.id, &create_options(&a.create))?;
    let pid = created.state.pid;
    if let Err(e) = start(rt, &a.create.id) {
        let _ = delete(rt, &a.create.id, true);
        return Err(e.into());
    }
    if a.detach {
        return Ok(0);
    }
    FORWARD_TO.store(pid, std::sync::atomic::Ordering::Relaxed);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2, libc::SIGWINCH]
    {
        // SAFETY: installing an async-signal-safe handler.
        unsafe { libc::signal(sig, forward_signal as *const () as libc::sighandler_t) };
    }
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child (the init).
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        if rc == -1 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    };
    if !a.keep {
        delete(rt, &a.create.id, true)?;
    }
    Ok(code)
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
            writeln!(out, "{}", serde_json::to_string(&list)?)?;
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
            println!("{}", serde_json::to_string(&pids)?);
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
    if let Some(m) = a.memory {
        let mut mem = resources.memory().unwrap_or_default();
        mem.set_limit(Some(m));
        resources.set_memory(Some(mem));
    }
    if let Some(p) = a.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(p);
        resources.set_pids(Some(pids));
    }
    if a.cpu_quota.is_some() || a.cpu_period.is_some() || a.cpu_share.is_some() {
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
        resources.set_cpu(Some(cpu));
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
            "rslave", "unbindable", "runbindable"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": caps::all().iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
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
