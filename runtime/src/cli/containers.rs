//! `ps`, `stop`, `kill`, `rm`, `wait`, `top`, `rename`, `container prune`, and `inspect`
//! (containers, then images), printed the way docker prints them.

use super::args::{
    ContainerPruneArgs, ContainersArgs, InspectArgs, KillArgs, PsArgs, RenameArgs, RmArgs, StopArgs, TopArgs,
};
use super::filters::{label_matches, Filters, PruneFilter};
use super::format;
use super::images::{self, Ctx};
use super::template;
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::io::Write;
use strata::containers::record::ContainerRecord;
use strata::containers::status::{observe, Observed, State};
use strata::containers::{health, ops, ContainerError, Containers};
use strata::lifecycle::kill::parse_signal;

/// docker's `HostConfig` of a container: what `run` was asked for.
fn host_config(r: &ContainerRecord) -> serde_json::Value {
    let opts = &r.options;
    json!({
        "AutoRemove": r.auto_remove,
        "LogConfig": { "Type": if opts.log.none { "none" } else { "json-file" }, "Config": opts.log.opts },
        "NetworkMode": opts.network.to_string(),
        "Memory": opts.memory.unwrap_or(0),
        "MemorySwap": opts.memory_swap_in_force().unwrap_or(0),
        "MemoryReservation": opts.memory_reservation.unwrap_or(0),
        "CpuShares": opts.cpu_shares.unwrap_or(0),
        "CpuPeriod": opts.cpu_period.unwrap_or(0),
        "CpuQuota": opts.cpu_quota.unwrap_or(0),
        "CpusetCpus": opts.cpuset_cpus.clone().unwrap_or_default(),
        "CpusetMems": opts.cpuset_mems.clone().unwrap_or_default(),
        "NanoCpus": opts.cpus.map(|c| (c * 1e9) as i64).unwrap_or(0),
        "PidsLimit": opts.pids_limit,
        "ReadonlyRootfs": opts.read_only,
        "Privileged": opts.privileged,
        "Init": opts.init.is_some().then_some(true),
        "RestartPolicy": {
            "Name": opts.restart.docker_name().0,
            "MaximumRetryCount": opts.restart.docker_name().1,
        },
        "ShmSize": opts.shm_size.unwrap_or(67108864),
        "Sysctls": (!opts.sysctls.is_empty()).then_some(&opts.sysctls),
        "OomScoreAdj": opts.oom_score_adj.unwrap_or(0),
        "GroupAdd": (!opts.group_add.is_empty()).then_some(&opts.group_add),
        "PidMode": if opts.pid_host { "host" } else { "" },
        "IpcMode": if opts.ipc_host { "host" } else { "private" },
        "UTSMode": if opts.uts_host { "host" } else { "" },
        "CapAdd": opts.cap_add,
        "CapDrop": opts.cap_drop,
        "SecurityOpt": (!opts.security_opt.is_empty()).then_some(&opts.security_opt),
        // docker's: what -v asked for (a volume by name); anonymous volumes are not binds.
        "Binds": opts.volumes.iter().filter(|v| !v.anonymous).map(|v| format!(
            "{}:{}{}",
            v.volume.clone().unwrap_or_else(|| v.source.display().to_string()),
            v.destination,
            if v.read_only { ":ro" } else { "" }
        )).collect::<Vec<_>>(),
        "Devices": opts.devices.iter().map(|d| serde_json::json!({
            "PathOnHost": d.host, "PathInContainer": d.node.path(), "CgroupPermissions": d.permissions,
        })).collect::<Vec<_>>(),
    })
}

/// docker's IMAGE column: the name the container was made from while that name still means
/// its image; else (the tag removed, or moved to another image) the short image ID.
/// `names_now`: what each name resolves to, looked up once per listing.
fn image_shown(
    store: &strata::image::store::Store,
    r: &ContainerRecord,
    names_now: &mut std::collections::HashMap<String, Option<String>>,
) -> String {
    let now =
        names_now.entry(r.image.clone()).or_insert_with(|| store.resolve(&r.image).ok().map(|i| i.id().to_string()));
    if now.as_deref() == Some(r.image_id.as_str()) {
        return r.image.clone();
    }
    let hex = r.image_id.strip_prefix("sha256:").unwrap_or(&r.image_id);
    hex.chars().take(12).collect()
}

fn open(ctx: &Ctx) -> Result<Containers> {
    Ok(Containers::open(&ctx.root, ctx.driver)?)
}

/// Run `f` on each named container, printing the name on success and one `Error:` line per
/// failure, as docker's multi-container verbs do. Exit 1 if any failed.
pub(super) fn each(
    ctx: &Ctx,
    names: &[String],
    f: impl Fn(&Containers, &ContainerRecord) -> Result<Option<String>>,
) -> Result<i32> {
    each_resolved(ctx, names, |c, resolved| f(c, &resolved?))
}

/// `each`, with `f` also given the containers that do not resolve (`rm -f` removes corrupt ones).
fn each_resolved(
    ctx: &Ctx,
    names: &[String],
    f: impl Fn(&Containers, Result<ContainerRecord, ContainerError>) -> Result<Option<String>>,
) -> Result<i32> {
    let containers = open(ctx)?;
    let mut failed = false;
    for name in names {
        match f(&containers, containers.resolve(name)) {
            Ok(output) => println!("{}", output.unwrap_or_else(|| name.clone())),
            Err(e) => {
                eprintln!("Error: {}", strata::report::one_line(e.as_ref()));
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

pub fn stop(ctx: &Ctx, args: StopArgs) -> Result<i32> {
    each(ctx, &args.containers, |c, r| {
        ops::stop(c, r, ops::stop_timeout(r, args.time))?;
        Ok(None)
    })
}

/// docker's `top`: the host's `ps` (with `-ef`, or the options given), only the lines of
/// the container's processes (those in its cgroup).
pub fn top(ctx: &Ctx, args: TopArgs) -> Result<i32> {
    let containers = open(ctx)?;
    let record = containers.resolve(&args.container)?;
    if !observe(&containers, record.clone())?.is_some_and(|o| o.is_running()) {
        bail!("container {} is not running", args.container);
    }
    let pids = strata::lifecycle::ops::pids(containers.runtime(), &record.id)?;
    let options = if args.ps_options.is_empty() { vec!["-ef".to_string()] } else { args.ps_options };
    let ps = std::process::Command::new("ps").args(&options).output().context("running ps")?;
    if !ps.status.success() {
        bail!("ps {}: {}", options.join(" "), String::from_utf8_lossy(&ps.stderr).trim());
    }
    let text = String::from_utf8_lossy(&ps.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let Some(column) = header.split_whitespace().position(|h| h == "PID") else {
        bail!("Couldn't find PID field in ps output");
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{header}")?;
    for line in lines {
        let pid = line.split_whitespace().nth(column).and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            writeln!(out, "{line}")?;
        }
    }
    Ok(0)
}

/// `rename`: prints nothing, as docker.
pub fn rename(ctx: &Ctx, args: RenameArgs) -> Result<i32> {
    open(ctx)?.rename(&args.container, &args.new_name)?;
    Ok(0)
}

pub fn kill(ctx: &Ctx, args: KillArgs) -> Result<i32> {
    let signal = parse_signal(&args.signal)?;
    // docker's: 0 (runc's "is it there?") is no signal to send a container.
    if signal == 0 {
        anyhow::bail!("invalid signal: {}", args.signal);
    }
    each(ctx, &args.containers, |c, r| {
        ops::kill(c, r, signal).map_err(|e| match e {
            ContainerError::NotRunning(_) => anyhow::anyhow!("cannot kill container {}: {e}", r.name),
            e => e.into(),
        })?;
        Ok(None)
    })
}

pub fn pause(ctx: &Ctx, args: ContainersArgs) -> Result<i32> {
    each(ctx, &args.containers, |c, r| Ok(ops::pause(c, r).map(|()| None)?))
}

pub fn unpause(ctx: &Ctx, args: ContainersArgs) -> Result<i32> {
    each(ctx, &args.containers, |c, r| Ok(ops::unpause(c, r).map(|()| None)?))
}

pub fn rm(ctx: &Ctx, args: RmArgs) -> Result<i32> {
    // As docker's (20.10 on) and podman's: with --force, a container that is not there is
    // already removed: nothing said, not a failure (`rm -f` in cleanup scripts under set -e).
    let names: Vec<String> = match args.force {
        true => {
            let containers = open(ctx)?;
            let exists = |n: &String| !matches!(containers.resolve(n), Err(ContainerError::NoSuchContainer(_)));
            args.containers.iter().filter(|n| exists(n)).cloned().collect()
        }
        false => args.containers.clone(),
    };
    each_resolved(ctx, &names, |c, resolved| {
        match resolved {
            Ok(record) => {
                ops::remove(c, &record, args.force)?;
                if args.volumes {
                    strata::containers::volumes::remove_anonymous(c, &record)?;
                }
            }
            // All that is left of it is its directory and what the system shows of its run.
            Err(ContainerError::Corrupt { id, .. }) if args.force => ops::remove_unreadable(c, &id)?,
            Err(e) => return Err(e.into()),
        }
        Ok(None)
    })
}

pub fn wait(ctx: &Ctx, args: ContainersArgs) -> Result<i32> {
    each(ctx, &args.containers, |c, r| Ok(Some(ops::wait(c, r)?.to_string())))
}

pub fn prune(ctx: &Ctx, args: ContainerPruneArgs) -> Result<i32> {
    let _ = args.force;
    let (filter, _) = PruneFilter::parse(&args.filter, true, &[])?;
    let pruned = ops::prune(&open(ctx)?, |r| prune_selects(&filter, r))?;
    let mut out = std::io::stdout().lock();
    format::write_deleted(&mut out, "Containers", &pruned.ids)?;
    writeln!(out, "Total reclaimed space: {}", format::size(pruned.bytes))?;
    Ok(0)
}

/// Whether a container prune's `--filter`s take `r` (its creation time, its labels).
pub fn prune_selects(filter: &PruneFilter, r: &ContainerRecord) -> bool {
    filter.selects(Some(&r.created), &labels(r))
}

/// Every container as it is now.
fn observe_all(containers: &Containers) -> Result<Vec<Observed>> {
    let mut all = Vec::new();
    for record in containers.list() {
        match observe(containers, record) {
            Ok(Some(o)) => all.push(o),
            Ok(None) => {}
            Err(e) => eprintln!("warning: {e}"),
        }
    }
    Ok(all)
}

/// docker's state word: `restarting` for an exited container its restart policy is about to
/// start again.
fn state_word(o: &Observed) -> String {
    if o.state == State::Exited && o.record.is_restarting() {
        return "restarting".into();
    }
    o.state.to_string()
}

/// docker's STATUS column.
fn status_text(c: &Containers, o: &Observed) -> String {
    let up = || format::human_duration(o.record.started_at.as_deref().map(format::seconds_since).unwrap_or(0));
    match o.state {
        State::Created => "Created".into(),
        State::Running => match health::of(c, o).map(|h| h.status) {
            Some(word) if word == health::STARTING => format!("Up {} (health: starting)", up()),
            Some(word) => format!("Up {} ({word})", up()),
            None => format!("Up {}", up()),
        },
        State::Paused => format!("Up {} (Paused)", up()),
        State::Exited => {
            let code = o.record.exit_code.map_or("unknown".to_string(), |c| c.to_string());
            let ago = o.record.finished_at.as_deref().map(format::seconds_since).unwrap_or(0);
            let word = if o.record.is_restarting() { "Restarting" } else { "Exited" };
            format!("{word} ({code}) {} ago", format::human_duration(ago))
        }
    }
}

fn command_text(record: &ContainerRecord, no_trunc: bool) -> String {
    let command = record.command.join(" ");
    if no_trunc || command.chars().count() <= 20 {
        format!("\"{command}\"")
    } else {
        format!("\"{}…\"", command.chars().take(19).collect::<String>())
    }
}

/// docker's `ps` table.
const PS_TABLE: &str = r"table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

/// The column title of each key of a `ps` row, as docker titles them.
const PS_TITLES: &[(&str, &str)] = &[
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Labels", "LABELS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
    ("Mounts", "MOUNTS"),
    ("Names", "NAMES"),
    ("Networks", "NETWORKS"),
    ("Ports", "PORTS"),
    ("RunningFor", "CREATED"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("ExitCode", "EXIT CODE"),
    ("Kind", "KIND"),
    ("KindReason", "KIND REASON"),
    ("Size", "SIZE"),
];

/// The unpacked size of a container's image (0 if it is gone).
fn image_size(ctx: &Ctx, r: &ContainerRecord) -> u64 {
    ctx.store.resolve(&r.image_id).map(|i| ctx.snapshots.image_size(&i)).unwrap_or(0)
}

/// What a container wrote: its upper dir, or its whole copied root (vfs).
pub fn written_size(c: &Containers, r: &ContainerRecord) -> u64 {
    let paths = c.paths(&r.id);
    match paths.copied_marker().exists() {
        true => strata::fsutil::tree_size(&paths.merged()),
        false => strata::fsutil::tree_size(&paths.upper()),
    }
}

pub fn ps(ctx: &Ctx, args: PsArgs) -> Result<i32> {
    let containers = open(ctx)?;
    let filters = Filters::parse(&args.filter, PS_FILTERS)?;
    if let Some(bad) =
        filters.values("health").iter().find(|v| !["starting", "healthy", "unhealthy", "none"].contains(&v.as_str()))
    {
        bail!("Unrecognised filter value for health: {bad}");
    }
    let last = if args.latest { Some(1) } else { args.last };
    // As docker's: a status filter, -n and -l look at containers in every state.
    let all = args.all || last.is_some() || filters.has("status") || filters.has("exited");
    let mut rows: Vec<Observed> = observe_all(&containers)?.into_iter().filter(|o| all || o.is_running()).collect();
    // Newest first, as docker lists them.
    rows.reverse();
    // Filtered first, then the last N of what is left (docker's order).
    let times = reference_times(&containers, &filters)?;
    rows.retain(|o| ps_matches(&containers, &filters, &times, o));
    if let Some(n) = last {
        rows.truncate(n);
    }
    let id = |r: &ContainerRecord| if args.no_trunc { r.id.clone() } else { r.short_id().to_string() };
    let mut out = std::io::stdout().lock();
    if args.quiet {
        for o in &rows {
            writeln!(out, "{}", id(&o.record))?;
        }
        return Ok(0);
    }
    let table = match args.size {
        true => format!(r"{PS_TABLE}\t{{{{.Size}}}}"),
        false => PS_TABLE.to_string(),
    };
    let listing = template::Listing::parse(&args.format, &table)?;
    let mut image_sizes = std::collections::HashMap::new();
    let mut size = |r: &ContainerRecord| {
        let written = written_size(&containers, r);
        let image = *image_sizes.entry(r.image_id.clone()).or_insert_with(|| image_size(ctx, r));
        format!("{} (virtual {})", format::size(written), format::size(written + image))
    };
    let created = |r: &ContainerRecord| format!("{} ago", format::human_duration(format::seconds_since(&r.created)));
    let mut names_now = std::collections::HashMap::new();
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|o| {
            let r = &o.record;
            let mut row = json!({
                "Command": command_text(r, args.no_trunc),
                "CreatedAt": r.created,
                "ID": id(r),
                "Image": image_shown(&ctx.store, r, &mut names_now),
                "Labels": labels(r).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
                "LocalVolumes": "0",
                "Mounts": r.options.volumes.iter().map(|v| v.destination.clone()).collect::<Vec<_>>().join(","),
                "Names": r.name,
                "Networks": r.options.network.to_string(),
                "Ports": "",
                "RunningFor": created(r),
                "State": state_word(o),
                "Status": status_text(&containers, o),
                "ExitCode": r.exit_code,
                "Kind": r.kind,
                "KindReason": r.kind_reason,
            });
            if args.size {
                row["Size"] = size(r).into();
            }
            row
        })
        .collect();
    listing.print(&rows, PS_TITLES, &mut out)?;
    Ok(0)
}

/// The container's labels: the image's, then `--label`'s over them.
fn labels(r: &ContainerRecord) -> std::collections::BTreeMap<String, String> {
    r.config().labels.unwrap_or_default()
}

/// `ps --filter` keys.
const PS_FILTERS: &[&str] =
    &["id", "name", "status", "exited", "ancestor", "kind", "label", "health", "before", "since", "volume", "network"];

/// When a container was created, in nanoseconds (its record's RFC 3339 time).
fn created_nanos(r: &ContainerRecord) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(&r.created).ok()?.timestamp_nanos_opt()
}

/// The containers `before=` and `since=` name, by the value given: when each was created.
fn reference_times(c: &Containers, filters: &Filters) -> Result<std::collections::HashMap<String, i64>> {
    let mut times = std::collections::HashMap::new();
    for v in filters.values("before").iter().chain(filters.values("since")) {
        let r = c.resolve(v)?;
        times.insert(v.clone(), created_nanos(&r).unwrap_or(0));
    }
    Ok(times)
}

fn ps_matches(c: &Containers, filters: &Filters, times: &std::collections::HashMap<String, i64>, o: &Observed) -> bool {
    let r = &o.record;
    let created = created_nanos(r).unwrap_or(0);
    filters.matches(|key, v| match key {
        "before" => times.get(v).is_some_and(|t| created < *t),
        "since" => times.get(v).is_some_and(|t| created > *t),
        // A mount's destination, or its source: a named volume's name, a bind's host path.
        "volume" => {
            r.options
                .volumes
                .iter()
                .any(|m| m.destination == v || m.volume.as_deref() == Some(v) || m.source == std::path::Path::new(v))
                || r.options.tmpfs.iter().any(|t| t.destination == v)
        }
        "network" => r.options.network.to_string() == v,
        "id" => r.id.starts_with(v),
        "name" => r.name.contains(v.trim_start_matches('/')),
        "status" => state_word(o) == v,
        "exited" => o.state == State::Exited && r.exit_code.is_some_and(|c| c.to_string() == v),
        "ancestor" => r.image == v || r.image.rsplit_once(':').is_some_and(|(name, _)| name == v),
        "kind" => serde_json::to_value(r.kind).is_ok_and(|k| k == v),
        "label" => label_matches(&labels(r), v),
        "health" => health::of(c, o).map_or("none".to_string(), |h| h.status) == v,
        _ => false,
    })
}

/// docker's container inspect document (the parts strata has), plus Kind, KindReason and
/// Seccomp (the profile: builtin, unconfined or the file's path).
fn container_json(c: &Containers, o: &Observed) -> serde_json::Value {
    let r = &o.record;
    let paths = c.paths(&r.id);
    let opts = &r.options;
    let pid = if o.is_running() { o.init.map(|i| i.pid).unwrap_or(0) } else { 0 };
    let config = r.config();
    let copied = paths.copied_marker().exists();
    json!({
        "Id": r.id,
        "Created": r.created,
        "Path": r.command.first(),
        "Args": r.command.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": state_word(o),
            "Running": o.is_running(),
            "Paused": o.state == State::Paused,
            "Restarting": o.state == State::Exited && r.is_restarting(),
            "OOMKilled": r.oom_killed,
            "Dead": false,
            "Pid": pid,
            "ExitCode": r.exit_code.unwrap_or(0),
            "Error": r.error.clone().unwrap_or_default(),
            "StartedAt": r.started_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            "FinishedAt": r.finished_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            "Health": health::of(c, o),
        },
        "Image": r.image_id,
        "Name": format!("/{}", r.name),
        "RestartCount": r.restart_count,
        "Driver": if copied { "vfs" } else { "overlay" },
        "Platform": "linux",
        "LogPath": paths.log(),
        "HostnamePath": paths.etc_file("hostname"),
        "HostsPath": paths.etc_file("hosts"),
        "ResolvConfPath": paths.etc_file("resolv.conf"),
        "HostConfig": host_config(r),
        "GraphDriver": {
            "Name": if copied { "vfs" } else { "overlay" },
            "Data": {
                "LowerDir": r.layers.iter().rev().map(|l| l.display().to_string()).collect::<Vec<_>>().join(":"),
                "UpperDir": paths.upper(),
                "WorkDir": paths.work(),
                "MergedDir": paths.merged(),
            },
        },
        "Config": {
            "Hostname": opts.hostname.clone().unwrap_or_else(|| r.short_id().to_string()),
            "User": config.user.unwrap_or_default(),
            "Env": config.env.unwrap_or_default(),
            "Cmd": config.cmd,
            "Entrypoint": config.entrypoint,
            "WorkingDir": config.working_dir.unwrap_or_default(),
            "Image": r.image,
            "Labels": config.labels.unwrap_or_default(),
            "Tty": opts.tty,
            "OpenStdin": opts.interactive,
            "StopSignal": config.stop_signal,
            "StopTimeout": r.options.stop_timeout,
            "Healthcheck": config.healthcheck,
        },
        "Mounts": opts.volumes.iter().map(|v| match &v.volume {
            Some(name) => json!({
                "Type": "volume", "Name": name, "Source": v.source, "Destination": v.destination,
                "Driver": "local", "RW": !v.read_only,
            }),
            None => json!({
                "Type": "bind", "Source": v.source, "Destination": v.destination, "RW": !v.read_only,
            }),
        }).collect::<Vec<_>>(),
        "Kind": r.kind,
        "KindReason": r.kind_reason,
        "Seccomp": opts.seccomp.describe(),
    })
}

fn inspect_one(
    ctx: &Ctx,
    containers: &Containers,
    name: &str,
    kind: Option<&str>,
    size: bool,
) -> Result<serde_json::Value> {
    if kind != Some("image") {
        match containers.resolve(name) {
            Ok(record) => match observe(containers, record)? {
                Some(o) => {
                    let mut doc = container_json(containers, &o);
                    if size {
                        let written = written_size(containers, &o.record);
                        let image = image_size(ctx, &o.record);
                        doc["SizeRw"] = written.into();
                        doc["SizeRootFs"] = (written + image).into();
                    }
                    return Ok(doc);
                }
                None => bail!("No such container: {name}"),
            },
            Err(ContainerError::NoSuchContainer(_)) if kind.is_none() => {}
            Err(e) => return Err(e.into()),
        }
    }
    match ctx.store.resolve(name) {
        Ok(image) => Ok(images::inspect_json(ctx, &image)),
        Err(strata::image::StoreError::NoSuchImage(_)) if kind.is_none() => bail!("No such object: {name}"),
        Err(e) => Err(e.into()),
    }
}

/// `inspect`: containers first, then images, as docker looks them up.
pub fn inspect(ctx: &Ctx, args: InspectArgs) -> Result<i32> {
    let kind = args.kind.as_deref();
    if let Some(k) = kind {
        if k != "container" && k != "image" {
            bail!("unknown --type {k:?}: expected container or image");
        }
    }
    let containers = open(ctx)?;
    let mut out = Vec::new();
    let mut failed = false;
    for name in &args.names {
        match inspect_one(ctx, &containers, name, kind, args.size) {
            Ok(v) => out.push(v),
            Err(e) => {
                eprintln!("Error: {}", strata::report::one_line(e.as_ref()));
                failed = true;
            }
        }
    }
    template::inspected(args.format.as_deref(), &out, &mut std::io::stdout().lock())?;
    Ok(if failed { 1 } else { 0 })
}

pub fn inspect_containers(ctx: &Ctx, mut args: InspectArgs) -> Result<i32> {
    args.kind = Some("container".into());
    inspect(ctx, args)
}
