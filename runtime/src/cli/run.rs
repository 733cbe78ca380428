//! `run`, `create`, `start`: make a container from an image (pulling it if missing) and
//! start it through its monitor, either detached (print the ID once it runs) or attached
//! (copy its output, feed it our stdin, forward our signals, exit with its exit code).

use super::args::{ContainerSpecArgs, CreateArgs, RunArgs, StartArgs, StopArgs};
use super::images::Ctx;
use super::{or_125, registry, Failure};
use anyhow::{bail, Context, Result};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use strata::containers::attach::{self, Outcome};
use strata::containers::record::ContainerRecord;
use strata::containers::status::{observe, State};
use strata::containers::{Containers, NewContainer};
use strata::image::classify::classify;
use strata::image::manifest::HealthConfig;
use strata::image::manifest::Platform;
use strata::image::{Image, ImageRef, StoreError};
use strata::sandbox::seccomp;
use strata::spec::from_image;
use strata::spec::run_options::{self, RunOptions};
use strata::spec::seccomp::SeccompMode;

pub fn run(ctx: &Ctx, args: RunArgs, log_level: &str) -> Result<i32> {
    if !args.detach {
        input_is_a_terminal(args.spec.tty && args.spec.interactive)?;
    }
    or_125((|| {
        let containers = Containers::open(&ctx.root, ctx.driver)?;
        let record = make_container(ctx, &containers, &args.spec)?;
        if args.detach {
            start_detached(ctx, &record, log_level)?;
            println!("{}", record.id);
            Ok(0)
        } else {
            start_attached(ctx, &containers, &record, args.spec.interactive, log_level)
        }
    })())
}

pub fn create(ctx: &Ctx, args: CreateArgs) -> Result<i32> {
    or_125((|| {
        let containers = Containers::open(&ctx.root, ctx.driver)?;
        let record = make_container(ctx, &containers, &args.spec)?;
        println!("{}", record.id);
        Ok(0)
    })())
}

pub fn start(ctx: &Ctx, args: StartArgs, log_level: &str) -> Result<i32> {
    if args.attach || args.interactive {
        let containers = Containers::open(&ctx.root, ctx.driver)?;
        if args.containers.len() > 1 {
            bail!("you cannot start and attach multiple containers at once");
        }
        return or_125((|| {
            let record = containers.resolve(&args.containers[0])?;
            input_is_a_terminal(record.options.tty && args.interactive)?;
            if is_running(&containers, &record)? {
                bail!("container {} is already running", args.containers[0]);
            }
            start_attached(ctx, &containers, &record, args.interactive, log_level)
        })());
    }
    super::containers::each(ctx, &args.containers, |containers, record| {
        if !is_running(containers, record)? {
            start_detached(ctx, record, log_level)?;
        }
        Ok(None)
    })
}

/// docker's `restart`: stop each container (the stop signal, then SIGKILL after `-t`) if it
/// runs, and start it again, detached.
pub fn restart(ctx: &Ctx, args: StopArgs, log_level: &str) -> Result<i32> {
    super::containers::each(ctx, &args.containers, |containers, record| {
        let timeout = strata::containers::ops::stop_timeout(record, args.time);
        strata::containers::ops::stop_to_restart(containers, record, timeout)?;
        // Read again: the stop recorded the end of the run.
        start_detached(ctx, &containers.resolve(&record.id)?, log_level)?;
        Ok(None)
    })
}

fn is_running(containers: &Containers, record: &ContainerRecord) -> Result<bool> {
    Ok(observe(containers, record.clone())?
        .is_some_and(|o| o.is_running() || (o.state == State::Created && o.record.monitor.is_some_and(|m| m.alive()))))
}

/// The image, the options, the record: everything but running it. With `--cidfile`, the
/// file is claimed first (it must not exist) and holds the ID once the container is made.
fn make_container(ctx: &Ctx, containers: &Containers, spec: &ContainerSpecArgs) -> Result<ContainerRecord> {
    let Some(path) = &spec.cidfile else { return make_container_only(ctx, containers, spec) };
    let mut file = match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(f) => f,
        // docker's words.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("container ID file found, make sure the other container isn't running or delete {}", path.display())
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("creating the container ID file {}", path.display())))
        }
    };
    let made = make_container_only(ctx, containers, spec).and_then(|record| {
        std::io::Write::write_all(&mut file, record.id.as_bytes())
            .with_context(|| format!("writing the container ID file {}", path.display()))?;
        Ok(record)
    });
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

fn make_container_only(ctx: &Ctx, containers: &Containers, spec: &ContainerSpecArgs) -> Result<ContainerRecord> {
    let options = run_options(spec)?;
    let image = ensure_image(ctx, spec)?;
    let layers = ctx.snapshots.prepare(&ctx.store, &image)?;
    let classification = classify(&image, &layers);
    tracing::info!("image {} is {}: {}", spec.image(), classification.kind, classification.reason);
    let record = containers.create(NewContainer {
        name: spec.name.clone(),
        image: spec.image().to_string(),
        image_id: image.id().to_string(),
        image_config: image.config.config.clone().unwrap_or_default(),
        layers,
        options,
        kind: classification.kind,
        kind_reason: classification.reason,
        auto_remove: spec.rm,
    })?;
    Ok(record)
}

/// The image, pulled first if it is not here (or not for the platform asked for), as
/// `--pull` says: always, missing (the default), never.
fn ensure_image(ctx: &Ctx, spec: &ContainerSpecArgs) -> Result<Image> {
    let wanted = spec.platform.as_deref().map(Platform::parse).transpose().map_err(anyhow::Error::msg)?;
    let policy = spec.pull.as_str();
    if !["always", "missing", "never"].contains(&policy) {
        bail!("invalid pull option: '{policy}': must be one of \"always\", \"missing\" or \"never\"");
    }
    match ctx.store.resolve(spec.image()) {
        Ok(image) if policy != "always" => {
            let have = image.config.platform();
            match &wanted {
                Some(w) if w.os != have.os || w.architecture != have.architecture => {
                    if policy == "never" {
                        bail!("image {} is for platform {have}, not the requested {w}", spec.image());
                    }
                }
                _ => return Ok(image),
            }
        }
        Ok(_) => {}
        Err(StoreError::NoSuchImage(_)) if policy == "never" => bail!("No such image: {}", spec.image()),
        Err(StoreError::NoSuchImage(_)) if policy == "missing" => {
            eprintln!("Unable to find image '{}' locally", spec.image())
        }
        Err(StoreError::NoSuchImage(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let reference = ImageRef::parse(spec.image())?;
    registry::pull_missing(ctx, &reference, spec.platform.as_deref(), &spec.transport)?;
    let image = ctx.store.resolve(spec.image())?;
    if let Some(w) = &wanted {
        let have = image.config.platform();
        if w.os != have.os || w.architecture != have.architecture {
            bail!("image {} is for platform {have}, not the requested {w}", spec.image());
        }
    }
    Ok(image)
}

/// The command line's options as the spec generator takes them; bad values fail here,
/// before anything is made.
fn run_options(a: &ContainerSpecArgs) -> Result<RunOptions> {
    let lookup = |k: &str| std::env::var(k).ok();
    let mut env = Vec::new();
    for file in &a.env_file {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading env file {}", file.display()))?;
        env.extend(run_options::parse_env_file(&text, &lookup)?);
    }
    for arg in &a.env {
        env.extend(run_options::resolve_env_arg(arg, &lookup)?);
    }
    let (volumes, tmpfs) = mount_flags(a)?;
    let (pid_host, ipc_host, uts_host) = namespace_flags(a)?;
    let mut options = RunOptions {
        entrypoint: a.entrypoint.as_ref().map(|e| if e.is_empty() { Vec::new() } else { vec![e.clone()] }),
        cmd: a.command().to_vec(),
        env,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        read_only: a.read_only,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        network: a.network.parse().map_err(anyhow::Error::msg)?,
        volumes,
        tty: a.tty,
        interactive: a.interactive,
        security_opt: a.security_opt.clone(),
        seccomp: SeccompMode::from_security_opts(&a.security_opt)?,
        tmpfs,
        ulimits: parse_each(&a.ulimit, str::parse)?,
        privileged: a.privileged,
        init: a.init.then(|| run_options::find_init(a.init_path.as_deref())).transpose().map_err(anyhow::Error::msg)?,
        restart: match a.restart.parse().map_err(anyhow::Error::msg)? {
            run_options::RestartPolicy::No => run_options::RestartPolicy::No,
            _ if a.rm => bail!("Conflicting options: --restart and --rm"),
            policy => policy,
        },
        shm_size: match a.shm_size.as_deref().map(run_options::parse_bytes).transpose()? {
            Some(size) if size <= 0 => {
                bail!("invalid --shm-size {:?}: must be positive", a.shm_size.as_deref().unwrap_or(""))
            }
            size => size,
        },
        sysctls: a
            .sysctl
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                _ => Err(anyhow::anyhow!("invalid argument {kv:?} for \"--sysctl\" flag: sysctl must be KEY=VALUE")),
            })
            .collect::<Result<_>>()?,
        oom_score_adj: match a.oom_score_adj {
            Some(adj) if !(-1000..=1000).contains(&adj) => {
                bail!("Invalid value {adj}, range for oom score adj is [-1000, 1000]")
            }
            adj => adj,
        },
        stop_timeout: a.stop_timeout,
        group_add: a.group_add.clone(),
        pid_host,
        ipc_host,
        uts_host,
        devices: parse_each(&a.device, run_options::parse_device)?,
        add_hosts: parse_each(&a.add_host, run_options::parse_add_host)?,
        labels: label_lines(a)?
            .iter()
            .map(|l| {
                let (key, value) = l.split_once('=').unwrap_or((l, ""));
                match key.is_empty() {
                    true => Err(anyhow::anyhow!("invalid label {l:?}: empty name")),
                    false => Ok((key.to_string(), value.to_string())),
                }
            })
            .collect::<Result<_>>()?,
        dns: a
            .dns
            .iter()
            .map(|d| d.parse().map_err(|_| anyhow::anyhow!("{d} is not an ip address")))
            .collect::<Result<_>>()?,
        healthcheck: health_flags(a)?,
        stop_signal: match &a.stop_signal {
            Some(s) => {
                strata::lifecycle::kill::parse_signal(s).map_err(|e| anyhow::anyhow!("--stop-signal: {e}"))?;
                Some(s.clone())
            }
            None => None,
        },
        log: run_options::LogConfig::parse(&a.log_driver, &a.log_opt).map_err(anyhow::Error::msg)?,
        ..RunOptions::default()
    };
    super::resources::apply(&a.resources, &mut options)?;
    // Unknown capability names fail now rather than at start.
    let caps = from_image::capabilities(&options.cap_add, &options.cap_drop, 0)?;
    // So does a profile file libseccomp refuses (the builtin one is known to compile).
    if let SeccompMode::Profile { path, .. } = &options.seccomp {
        if let Some(profile) = options.seccomp.for_container(caps.bounding().as_ref().unwrap_or(&Default::default())) {
            seccomp::compile(&profile).with_context(|| path.display().to_string())?;
        }
    }
    Ok(options)
}

/// The labels asked for: each `--label-file`'s lines (docker's: blank lines and `#` comments
/// skipped), then `--label`s, which win.
fn label_lines(a: &ContainerSpecArgs) -> Result<Vec<String>> {
    let mut labels = Vec::new();
    for file in &a.label_file {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading label file {}", file.display()))?;
        labels.extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string));
    }
    labels.extend(a.label.iter().cloned());
    Ok(labels)
}

/// Each value of a repeated flag through `parse`; the first error as the user sees it.
fn parse_each<T>(values: &[String], parse: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>> {
    values.iter().map(|v| parse(v)).collect::<Result<_, String>>().map_err(anyhow::Error::msg)
}

/// `-v` and `--mount type=bind` as binds, `--tmpfs` and `--mount type=tmpfs` as tmpfs mounts.
fn mount_flags(a: &ContainerSpecArgs) -> Result<(Vec<run_options::Volume>, Vec<run_options::Tmpfs>)> {
    use run_options::MountArg;
    let mut all = parse_each(&a.volumes, |v| v.parse().map(MountArg::Bind))?;
    all.extend(parse_each(&a.mount, run_options::parse_mount)?);
    all.extend(parse_each(&a.tmpfs, |t| t.parse().map(MountArg::Tmpfs))?);
    let (mut volumes, mut tmpfs) = (Vec::new(), Vec::new());
    for m in all {
        match m {
            MountArg::Bind(v) => volumes.push(v),
            MountArg::Tmpfs(t) => tmpfs.push(t),
        }
    }
    run_options::check_volumes(&volumes).map_err(anyhow::Error::msg)?;
    Ok((volumes, tmpfs))
}

/// `--pid`, `--ipc`, `--uts`: whether each is the host's.
fn namespace_flags(a: &ContainerSpecArgs) -> Result<(bool, bool, bool)> {
    let mode = |flag: &str, value: &str| run_options::parse_namespace_mode(flag, value).map_err(anyhow::Error::msg);
    let uts = mode("uts", &a.uts)?;
    if uts && a.hostname.is_some() {
        bail!("Conflicting options: hostname and the UTS mode");
    }
    Ok((mode("pid", &a.pid)?, mode("ipc", &a.ipc)?, uts))
}

fn start_detached(ctx: &Ctx, record: &ContainerRecord, log_level: &str) -> Result<()> {
    let (client, ends) = attach::pipes(false, false, false)?;
    spawn_or_discard(ctx, record, ends, log_level)?;
    match attach::wait_started(client.status) {
        Outcome::Started { .. } | Outcome::Exited { .. } => Ok(()),
        Outcome::Failed { code, message } => {
            discard_unstarted(ctx, record);
            Err(Failure { code, message }.into())
        }
        Outcome::MonitorLost => {
            discard_if_auto_remove(ctx, record);
            bail!("the monitor of container {} died while starting it", record.short_id())
        }
    }
}

/// Spawn the monitor; if that fails, an `--rm` container goes (no monitor will remove it).
fn spawn_or_discard(ctx: &Ctx, record: &ContainerRecord, ends: attach::MonitorEnds, log_level: &str) -> Result<()> {
    super::monitor::spawn(ctx, &record.id, ends, log_level).inspect_err(|_| discard_if_auto_remove(ctx, record))
}

fn discard_if_auto_remove(ctx: &Ctx, record: &ContainerRecord) {
    discard(ctx, record, true)
}

/// After a start that failed: an `--rm` container goes (docker's), which its monitor did
/// unless the failure kept it from recording anything (a full disk). Not forced: a container
/// another command started meanwhile stays.
fn discard_unstarted(ctx: &Ctx, record: &ContainerRecord) {
    discard(ctx, record, false)
}

fn discard(ctx: &Ctx, record: &ContainerRecord, force: bool) {
    if record.auto_remove {
        if let Ok(containers) = Containers::open(&ctx.root, ctx.driver) {
            if strata::containers::ops::remove(&containers, record, force).is_ok() {
                let _ = strata::containers::volumes::remove_anonymous(&containers, record);
            }
        }
    }
}

static FORWARD_TO: AtomicI32 = AtomicI32::new(0);
/// A signal that came before there was a process to forward it to (a ^C while the container
/// was being started): sent once there is.
static PENDING_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(signal: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, signal) };
    } else {
        PENDING_SIGNAL.store(signal, Ordering::Relaxed);
    }
}

/// Forward signals to `pid` from now on (0: to no one), and the one that came before it (one
/// arriving in the very instant the pid is stored may still go to no one).
pub(super) fn forward_to(pid: i32) {
    FORWARD_TO.store(pid, Ordering::Relaxed);
    if pid > 0 {
        let pending = PENDING_SIGNAL.swap(0, Ordering::Relaxed);
        if pending > 0 {
            // SAFETY: kill of the process we forward to.
            unsafe { libc::kill(pid, pending) };
        }
    }
}

/// Signals we get while attached go to the container's init, as docker's --sig-proxy does.
pub(super) fn forward_signals() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2] {
        // SAFETY: installing an async-signal-safe handler.
        unsafe { libc::signal(signal, forward_signal as *const () as libc::sighandler_t) };
    }
}

static CONTROL_FD: AtomicI32 = AtomicI32::new(-1);

/// Send our terminal's size to the monitor (a SIGWINCH handler: only async-signal-safe calls).
extern "C" fn send_window_size(_signal: libc::c_int) {
    let fd = CONTROL_FD.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    // SAFETY: winsize is plain data; TIOCGWINSZ fills it; write(2) of 4 bytes from the stack.
    unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut size) != 0 && libc::ioctl(1, libc::TIOCGWINSZ, &mut size) != 0 {
            return;
        }
        let record = attach::encode_window_size(size.ws_row, size.ws_col);
        libc::write(fd, record.as_ptr().cast(), record.len());
    }
}

/// docker's check before relaying our input to a container's terminal (`-it`): that input must
/// be a terminal. Anything else (a file, a pipe, /dev/null) has no way to say "end of input" to
/// a terminal, so the container would wait for input forever. Exit code 1, as docker's.
pub(super) fn input_is_a_terminal(relayed_to_a_terminal: bool) -> Result<()> {
    if relayed_to_a_terminal && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(Failure { code: 1, message: "the input device is not a TTY".into() }.into());
    }
    Ok(())
}

fn start_attached(
    ctx: &Ctx,
    containers: &Containers,
    record: &ContainerRecord,
    interactive: bool,
    log_level: &str,
) -> Result<i32> {
    let tty = record.options.tty;
    let (mut client, ends) = attach::pipes(true, interactive, tty)?;
    // With a terminal: our window size now, and on every SIGWINCH, over the control pipe.
    let control = client.control.take();
    if let Some(fd) = &control {
        CONTROL_FD.store(fd.as_raw_fd(), Ordering::Relaxed);
        send_window_size(libc::SIGWINCH);
    }
    spawn_or_discard(ctx, record, ends, log_level)?;
    forward_signals();
    let stdin = std::io::stdin();
    // Keys go to the container's terminal as typed (^C included) while we relay it.
    let _raw = (tty && interactive).then(|| strata::sandbox::console::RawMode::enter(stdin.as_fd())).flatten();
    if control.is_some() {
        // SAFETY: installing an async-signal-safe handler.
        unsafe { libc::signal(libc::SIGWINCH, send_window_size as *const () as libc::sighandler_t) };
    }
    let input = interactive.then(|| stdin.as_fd());
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let outcome = attach::pump(client, input, &mut out, &mut err, &mut forward_to);
    forward_to(0);
    CONTROL_FD.store(-1, Ordering::Relaxed);
    drop(control);
    match outcome {
        Outcome::Exited { code } => Ok(code),
        Outcome::Failed { code, message } => {
            discard_unstarted(ctx, record);
            Err(Failure { code, message }.into())
        }
        Outcome::Started { .. } | Outcome::MonitorLost => {
            // The monitor died: say what is known now.
            let now = containers.load(&record.id).ok().and_then(|r| observe(containers, r).ok().flatten());
            match now {
                Some(o) if o.state == State::Exited => Ok(o.record.exit_code.unwrap_or(255)),
                Some(o) if o.state == State::Created => {
                    discard_if_auto_remove(ctx, record);
                    bail!("the monitor of container {} died while starting it", record.short_id())
                }
                _ => bail!("lost the monitor of container {}; it may still be running", record.short_id()),
            }
        }
    }
}

/// `--health-*` and `--no-healthcheck` as docker reads them: the values' syntax (when the
/// flags are parsed), a conflict with --no-healthcheck, negative values (the CLI's checks),
/// then the daemon's minimum of 1 ms, each in their words.
fn health_flags(a: &ContainerSpecArgs) -> Result<Option<HealthConfig>> {
    let parse = |flag: &str, value: &Option<String>| -> Result<i64> {
        let Some(text) = value else { return Ok(0) };
        strata::clock::parse_go_duration(text).ok_or_else(|| {
            anyhow::anyhow!("invalid argument {text:?} for \"--{flag}\" flag: time: invalid duration {text:?}")
        })
    };
    let config = HealthConfig {
        test: a
            .health_cmd
            .iter()
            .filter(|c| !c.is_empty())
            .flat_map(|c| ["CMD-SHELL".to_string(), c.clone()])
            .collect(),
        interval: parse("health-interval", &a.health_interval)?,
        timeout: parse("health-timeout", &a.health_timeout)?,
        start_period: parse("health-start-period", &a.health_start_period)?,
        start_interval: parse("health-start-interval", &a.health_start_interval)?,
        retries: a.health_retries.unwrap_or(0),
    };
    if config == HealthConfig::default() {
        return Ok(a.no_healthcheck.then(|| HealthConfig { test: vec!["NONE".into()], ..Default::default() }));
    }
    if a.no_healthcheck {
        bail!("--no-healthcheck conflicts with --health-* options");
    }
    for (flag, value) in [
        ("health-interval", config.interval),
        ("health-timeout", config.timeout),
        ("health-retries", config.retries),
        ("health-start-period", config.start_period),
        ("health-start-interval", config.start_interval),
    ] {
        if value < 0 {
            bail!("--{flag} cannot be negative");
        }
    }
    for (field, value) in [
        ("Interval", config.interval),
        ("Timeout", config.timeout),
        ("StartPeriod", config.start_period),
        ("StartInterval", config.start_interval),
    ] {
        if value > 0 && value < 1_000_000 {
            bail!("{field} in Healthcheck cannot be less than 1ms");
        }
    }
    Ok(Some(config))
}
