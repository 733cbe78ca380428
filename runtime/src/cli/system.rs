//! `version` and `info`: what this strata is and what it runs on, as docker prints them
//! (`--format` takes a Go template or `json`, as theirs).

use super::args::{InfoArgs, SystemDfArgs, SystemPruneArgs, VersionArgs};
use super::format;
use super::images::Ctx;
use anyhow::Result;
use serde_json::json;
use std::io::Write;
use strata::containers::status::{observe, State};
use strata::containers::Containers;
use strata::sandbox::cgroups::{detect_version, Version};

/// The architecture as OCI and docker name it (`amd64`, `arm64`).
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn version(args: VersionArgs) -> Result<i32> {
    let uname = rustix::system::uname();
    let doc = json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "Os": "linux",
        "Arch": oci_arch(),
        "KernelVersion": uname.release().to_string_lossy(),
        "Runtimes": ["native", "wasm"],
    });
    let text = format!(
        "strata version {}\n OS/Arch:     linux/{}\n Kernel:      {}\n Runtimes:    native (namespaces, cgroups), wasm (wasmtime: WASI p1 modules, p2 components)\n",
        env!("CARGO_PKG_VERSION"),
        oci_arch(),
        uname.release().to_string_lossy()
    );
    print(args.format.as_deref(), &doc, &text)
}

pub fn info(ctx: &Ctx, args: InfoArgs) -> Result<i32> {
    let containers = Containers::open(&ctx.root, ctx.driver)?;
    let (mut running, mut paused, mut stopped) = (0, 0, 0);
    let records = containers.list();
    for record in &records {
        match observe(&containers, record.clone())?.map(|o| o.state) {
            Some(State::Running) => running += 1,
            Some(State::Paused) => paused += 1,
            Some(_) => stopped += 1,
            None => {}
        }
    }
    let images =
        ctx.store.list()?.iter().map(|r| r.descriptor.digest.clone()).collect::<std::collections::HashSet<_>>().len();
    let cgroup = match detect_version(std::path::Path::new("/sys/fs/cgroup")) {
        Ok(Version::V1) => "1",
        Ok(Version::V2) => "2",
        Err(_) => "none",
    };
    let uname = rustix::system::uname();
    let sys = rustix::system::sysinfo();
    let memory = sys.totalram.saturating_mul(u64::from(sys.mem_unit));
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string())))
        .unwrap_or_else(|| "unknown".into());
    let driver = format!("{:?}", ctx.driver).to_lowercase();
    let doc = json!({
        "Containers": records.len(),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": stopped,
        "Images": images,
        "Driver": driver,
        "StrataRootDir": ctx.root.path(),
        "CgroupVersion": cgroup,
        "KernelVersion": uname.release().to_string_lossy(),
        "OperatingSystem": os,
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "NCPU": cpus,
        "MemTotal": memory,
        "Runtimes": ["native", "wasm"],
        "ServerVersion": env!("CARGO_PKG_VERSION"),
    });
    let text = format!(
        "Containers: {}\n Running: {running}\n Paused: {paused}\n Stopped: {stopped}\nImages: {images}\n\
         Server Version: {}\nStorage Driver: {driver}\nCgroup Version: {cgroup}\nRuntimes: native wasm\n\
         Kernel Version: {}\nOperating System: {os}\nOSType: linux\nArchitecture: {}\nCPUs: {cpus}\n\
         Total Memory: {}\nStrata Root Dir: {}\n",
        records.len(),
        env!("CARGO_PKG_VERSION"),
        uname.release().to_string_lossy(),
        std::env::consts::ARCH,
        format::binary_size(memory),
        ctx.root.path().display()
    );
    print(args.format.as_deref(), &doc, &text)
}

/// The text, or with `--format` the document as JSON or through a template.
fn print(format: Option<&str>, doc: &serde_json::Value, text: &str) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    match format {
        None => write!(out, "{text}")?,
        Some("json") => writeln!(out, "{doc}")?,
        Some(template) => super::template::inspected(Some(template), std::slice::from_ref(doc), &mut out)?,
    }
    Ok(0)
}

/// docker's `system prune`: stopped containers, then (with `--volumes`) unused anonymous
/// volumes, then unused image data (`image prune`, with `-a` untagged images too); one total.
pub fn prune(ctx: &Ctx, args: SystemPruneArgs) -> Result<i32> {
    let _ = args.force;
    let (filter, _) = super::filters::PruneFilter::parse(&args.filter, true, &[])?;
    if args.volumes && filter.has_until() {
        anyhow::bail!("ERROR: The \"until\" filter is not supported with \"--volumes\"");
    }
    let containers = Containers::open(&ctx.root, ctx.driver)?;
    let pruned = strata::containers::ops::prune(&containers, |r| super::containers::prune_selects(&filter, r))?;
    let (volumes, volume_bytes) =
        if args.volumes { super::volumes::prune_volumes(ctx, false, &filter)? } else { (vec![], 0) };
    let images = super::images::prune_images(ctx, args.all, &filter)?;
    let mut out = std::io::stdout().lock();
    for (title, names) in [("Containers", &pruned.ids), ("Volumes", &volumes), ("Images", &images.deleted)] {
        format::write_deleted(&mut out, title, names)?;
    }
    writeln!(out, "{}", images.summary)?;
    writeln!(out, "Total reclaimed space: {}", format::size(pruned.bytes + volume_bytes + images.bytes))?;
    Ok(0)
}

/// docker's `system df`: per kind, how many there are, how many are in use, the space they
/// take and what removing the unused ones would free. Images count each snapshot once (layers
/// images share are one snapshot); compiled wasm is strata's own row.
pub fn df(ctx: &Ctx, args: SystemDfArgs) -> Result<i32> {
    use std::collections::{BTreeMap, HashSet};
    let containers = Containers::open(&ctx.root, ctx.driver)?;
    let records = containers.list();
    let used_images: HashSet<String> = records.iter().map(|r| r.image_id.clone()).collect();

    // Images: the snapshots of each, each snapshot counted once; reclaimable is what only
    // unused images hold.
    let mut images = BTreeMap::new();
    for record in ctx.store.list()? {
        if let Ok(image) = ctx.store.load(&record.descriptor) {
            images.insert(image.id().to_string(), image);
        }
    }
    let (mut all_layers, mut used_layers) = (BTreeMap::new(), HashSet::new());
    for (id, image) in &images {
        let Ok(plan) = strata::snapshot::Snapshots::plan(image) else { continue };
        for layer in plan {
            let size = ctx.snapshots.unpacked_size(&layer.chain_id).unwrap_or(0);
            if used_images.contains(id) {
                used_layers.insert(layer.chain_id.clone());
            }
            all_layers.insert(layer.chain_id, size);
        }
    }
    let image_bytes: u64 = all_layers.values().sum();
    let image_free: u64 = all_layers.iter().filter(|(c, _)| !used_layers.contains(*c)).map(|(_, s)| s).sum();
    let images_active = images.keys().filter(|id| used_images.contains(*id)).count();

    // Containers: their writable layers; reclaimable is that of those not running.
    let (mut running, mut container_bytes, mut container_free) = (0, 0, 0);
    for record in &records {
        let size = super::containers::written_size(&containers, record);
        container_bytes += size;
        match observe(&containers, record.clone())? {
            Some(o) if o.is_running() => running += 1,
            _ => container_free += size,
        }
    }

    // Volumes: reclaimable is what the unused ones hold.
    let volumes = strata::volumes::Volumes::open(&ctx.root);
    let all_volumes = volumes.list();
    let (mut volumes_active, mut volume_bytes, mut volume_free) = (0, 0, 0);
    for v in &all_volumes {
        let size = volumes.size(&v.name);
        volume_bytes += size;
        if strata::containers::volumes::users(&containers, &v.name).is_empty() {
            volume_free += size;
        } else {
            volumes_active += 1;
        }
    }

    // Compiled wasm: the whole cache (`image prune -a` empties what no image holds).
    let artifacts = std::fs::read_dir(ctx.root.wasm_cache()).map(|d| d.flatten().count()).unwrap_or(0);
    let wasm_bytes = strata::fsutil::tree_size(&ctx.root.wasm_cache());

    let percent = |part: u64, whole: u64| (part * 100).checked_div(whole).unwrap_or(0);
    let row = |kind: &str, total: usize, active: Option<usize>, size: u64, free: Option<u64>| {
        json!({
            "Type": kind,
            "TotalCount": total.to_string(),
            "Active": active.map_or("-".to_string(), |a| a.to_string()),
            "Size": format::size(size),
            "Reclaimable": free.map_or("-".to_string(), |f| format!("{} ({}%)", format::size(f), percent(f, size))),
        })
    };
    let rows = vec![
        row("Images", images.len(), Some(images_active), image_bytes, Some(image_free)),
        row("Containers", records.len(), Some(running), container_bytes, Some(container_free)),
        row("Local Volumes", all_volumes.len(), Some(volumes_active), volume_bytes, Some(volume_free)),
        // Shared with strata-oci and the shim, whose use no image here records.
        row("Compiled Wasm", artifacts, None, wasm_bytes, None),
    ];
    const TABLE: &str = r"table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}";
    const TITLES: &[(&str, &str)] = &[
        ("Type", "TYPE"),
        ("TotalCount", "TOTAL"),
        ("Active", "ACTIVE"),
        ("Size", "SIZE"),
        ("Reclaimable", "RECLAIMABLE"),
    ];
    super::template::Listing::parse(&args.format, TABLE)?.print(&rows, TITLES, &mut std::io::stdout().lock())?;
    Ok(0)
}
