//! `volume create`, `ls`, `inspect`, `rm`, `prune`: docker's volume commands over strata's
//! named volumes (`strata::volumes`), with docker's output shapes and words.

use super::args::{VolumeCreateArgs, VolumeInspectArgs, VolumeLsArgs, VolumePruneArgs, VolumeRmArgs};
use super::filters::{label_matches, Filters, PruneFilter};
use super::images::Ctx;
use super::{format, template};
use anyhow::{bail, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use strata::containers::record::ContainerRecord;
use strata::containers::{volumes as used, Containers};
use strata::volumes::{VolumeRecord, Volumes};

const VOLUMES_TABLE: &str = r"table {{.Driver}}\t{{.Name}}";
const VOLUMES_TITLES: &[(&str, &str)] = &[
    ("Driver", "DRIVER"),
    ("Name", "VOLUME NAME"),
    ("Mountpoint", "MOUNTPOINT"),
    ("Labels", "LABELS"),
    ("Scope", "SCOPE"),
    ("Links", "LINKS"),
];

fn containers(ctx: &Ctx) -> Result<Containers> {
    Ok(Containers::open(&ctx.root, ctx.driver)?)
}

pub fn create(ctx: &Ctx, args: VolumeCreateArgs) -> Result<i32> {
    if args.driver != "local" {
        bail!("volume driver {:?} is not supported: strata has only \"local\"", args.driver);
    }
    let mut labels = BTreeMap::new();
    for l in &args.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        if k.is_empty() {
            bail!("invalid label {l:?}: empty name");
        }
        labels.insert(k.to_string(), v.to_string());
    }
    let volumes = Volumes::open(&ctx.root);
    let _lock = volumes.lock()?;
    // A name already taken is that volume, as docker's (its labels stay as they were).
    let (record, _) = volumes.create(args.name.as_deref(), labels)?;
    println!("{}", record.name);
    Ok(0)
}

/// docker's `volume inspect` object.
fn inspect_json(volumes: &Volumes, r: &VolumeRecord) -> serde_json::Value {
    json!({
        "CreatedAt": r.created_at,
        "Driver": "local",
        "Labels": r.labels,
        "Mountpoint": volumes.data_dir(&r.name),
        "Name": r.name,
        "Options": null,
        "Scope": "local",
    })
}

pub fn inspect(ctx: &Ctx, args: VolumeInspectArgs) -> Result<i32> {
    let volumes = Volumes::open(&ctx.root);
    let mut out = Vec::new();
    let mut failed = false;
    for name in &args.names {
        match volumes.get(name) {
            Ok(r) => out.push(inspect_json(&volumes, &r)),
            Err(e) => {
                eprintln!("Error: {}", strata::report::one_line(&e));
                failed = true;
            }
        }
    }
    template::inspected(args.format.as_deref(), &out, &mut std::io::stdout().lock())?;
    Ok(if failed { 1 } else { 0 })
}

fn links(records: &[ContainerRecord], name: &str) -> usize {
    records.iter().filter(|r| r.options.volumes.iter().any(|v| v.volume.as_deref() == Some(name))).count()
}

pub fn list(ctx: &Ctx, args: VolumeLsArgs) -> Result<i32> {
    let filters = Filters::parse(&args.filter, &["dangling", "name", "label"])?;
    filters.dangling()?;
    let volumes = Volumes::open(&ctx.root);
    let records = containers(ctx)?.list();
    let shown: Vec<VolumeRecord> = volumes
        .list()
        .into_iter()
        .filter(|v| {
            filters.matches(|key, value| match key {
                "dangling" => (links(&records, &v.name) == 0) == matches!(value, "true" | "1"),
                "name" => v.name.contains(value),
                "label" => label_matches(&v.labels, value),
                _ => false,
            })
        })
        .collect();
    let mut out = std::io::stdout().lock();
    if args.quiet {
        for v in &shown {
            writeln!(out, "{}", v.name)?;
        }
        return Ok(0);
    }
    let rows: Vec<serde_json::Value> = shown
        .iter()
        .map(|v| {
            let labels: Vec<String> = v.labels.iter().map(|(k, val)| format!("{k}={val}")).collect();
            json!({
                "Driver": "local",
                "Name": v.name,
                "Mountpoint": volumes.data_dir(&v.name),
                "Labels": labels.join(","),
                "Scope": "local",
                "Links": links(&records, &v.name).to_string(),
            })
        })
        .collect();
    template::Listing::parse(&args.format, VOLUMES_TABLE)?.print(&rows, VOLUMES_TITLES, &mut out)?;
    Ok(0)
}

pub fn remove(ctx: &Ctx, args: VolumeRmArgs) -> Result<i32> {
    let c = containers(ctx)?;
    let mut failed = false;
    for name in &args.names {
        match used::remove(&c, name, args.force) {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("Error: {}", strata::report::one_line(&e));
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// docker's (23 on) `volume prune`: the anonymous volumes no container uses; with `-a` every
/// unused volume.
pub fn prune(ctx: &Ctx, args: VolumePruneArgs) -> Result<i32> {
    let _ = args.force;
    let (filter, filters) = PruneFilter::parse(&args.filter, false, &["all"])?;
    // docker's `--filter all=true` is `-a`.
    let (mut yes, mut no) = (false, false);
    for v in filters.values("all") {
        match v.as_str() {
            "true" | "1" => yes = true,
            "false" | "0" => no = true,
            _ => bail!("invalid filter 'all={v}'"),
        }
    }
    if no && (yes || args.all) {
        bail!("invalid filter 'all': all=false with all=true or --all");
    }
    let all = args.all || yes;
    let (deleted, bytes) = prune_volumes(ctx, all, &filter)?;
    let mut out = std::io::stdout().lock();
    format::write_deleted(&mut out, "Volumes", &deleted)?;
    writeln!(out, "Total reclaimed space: {}", format::size(bytes))?;
    Ok(0)
}

/// Removes the anonymous volumes no container uses (with `all`, every unused volume):
/// their names, and the bytes they held.
pub fn prune_volumes(ctx: &Ctx, all: bool, filter: &PruneFilter) -> Result<(Vec<String>, u64)> {
    let c = containers(ctx)?;
    let volumes = Volumes::open(&ctx.root);
    let (mut deleted, mut bytes) = (Vec::new(), 0);
    for v in volumes.list().into_iter().filter(|v| (all || v.anonymous) && filter.selects(None, &v.labels)) {
        let size = volumes.size(&v.name);
        match used::remove(&c, &v.name, true) {
            Ok(()) => {
                deleted.push(v.name);
                bytes += size;
            }
            Err(strata::containers::ContainerError::Volume(strata::volumes::VolumeError::InUse { .. })) => {}
            Err(e) => return Err(e.into()),
        }
    }
    volumes.clean_leftovers();
    Ok((deleted, bytes))
}
