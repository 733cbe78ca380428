//! Local image commands: images, inspect, tag, rmi, prune, load, save, image mount/unmount.

use super::args::{ImagesArgs, ImportArgs, InspectArgs, LoadArgs, MountArgs, PruneArgs, RmiArgs, SaveArgs, TagArgs};
use super::filters::{glob, label_matches, Filters, PruneFilter};
use super::format;
use super::template;
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::io::{IsTerminal, Write};
use strata::fsutil::unique_name;
use strata::image::classify::classify;
use strata::image::manifest::Platform;
use strata::image::store::ImageRecord;
use strata::image::{archive, gc, Image, ImageRef, Store};
use strata::root::Root;
use strata::snapshot::rootfs::{self, Driver};
use strata::snapshot::Snapshots;

pub struct Ctx {
    pub root: Root,
    pub store: Store,
    pub snapshots: Snapshots,
    pub driver: Driver,
}

impl Ctx {
    pub fn new(root: Root, driver: Driver) -> Result<Ctx> {
        let store = Store::open(&root)?;
        let snapshots = Snapshots::new(&root);
        Ok(Ctx { root, store, snapshots, driver })
    }

    /// Snapshot dirs of an image that exist now (inspect must not unpack as a side effect).
    fn present_layers(&self, image: &Image) -> Vec<std::path::PathBuf> {
        Snapshots::plan(image)
            .map(|plan| {
                plan.iter()
                    .filter(|p| self.snapshots.exists(&p.chain_id))
                    .map(|p| self.snapshots.fs_dir(&p.chain_id))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// docker's `images` table.
const IMAGES_TABLE: &str = r"table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";

/// The column title of each key of an `images` row, as docker titles them.
const IMAGES_TITLES: &[(&str, &str)] = &[
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("ID", "IMAGE ID"),
    ("Digest", "DIGEST"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedSince", "CREATED"),
    ("Size", "SIZE"),
    ("SizeBytes", "SIZE BYTES"),
    ("Platform", "PLATFORM"),
];

/// `images --filter`, docker's keys.
fn filtered(ctx: &Ctx, rows: Vec<(ImageRecord, Image)>, given: &[String]) -> Result<Vec<(ImageRecord, Image)>> {
    let filters = Filters::parse(given, &["dangling", "reference", "label", "before", "since"])?;
    filters.dangling()?;
    for pattern in filters.values("reference") {
        glob(pattern, "")?;
    }
    let created = |image: &Image| image.config.created.as_deref().and_then(strata::clock::parse_rfc3339);
    let mut bounds = Vec::new();
    for key in ["before", "since"] {
        for v in filters.values(key) {
            let image = ctx.store.resolve(v)?;
            bounds.push((key, v.clone(), created(&image)));
        }
    }
    let named: Vec<_> =
        rows.iter().filter(|(r, _)| r.name.is_some()).map(|(r, _)| r.descriptor.digest.clone()).collect();
    Ok(rows
        .into_iter()
        .filter(|(record, image)| {
            filters.matches(|key, v| match key {
                "dangling" => !named.contains(&record.descriptor.digest) == matches!(v, "true" | "1"),
                "reference" => record.name.as_ref().is_some_and(|n| {
                    let tag = n.tag().unwrap_or("latest");
                    let full = n.name();
                    // docker's short forms too: `busybox` for docker.io/library/busybox.
                    let short = full
                        .strip_prefix("docker.io/library/")
                        .or_else(|| full.strip_prefix("docker.io/"))
                        .unwrap_or(&full)
                        .to_string();
                    [&full, &short].iter().any(|name| {
                        glob(v, name).unwrap_or(false) || glob(v, &format!("{name}:{tag}")).unwrap_or(false)
                    })
                }),
                "label" => {
                    label_matches(&image.config.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default(), v)
                }
                "before" | "since" => {
                    let Some((_, _, Some(bound))) = bounds.iter().find(|(k, b, _)| *k == key && b == v) else {
                        return false;
                    };
                    match created(image) {
                        Some(t) if key == "before" => t < *bound,
                        Some(t) => t > *bound,
                        None => false,
                    }
                }
                _ => false,
            })
        })
        .collect())
}

pub fn list(ctx: &Ctx, args: ImagesArgs) -> Result<i32> {
    let filter = args.reference.as_deref().map(ImageRef::parse).transpose()?;
    let filter_has_tag =
        args.reference.as_deref().is_some_and(|r| r.rsplit('/').next().is_some_and(|n| n.contains(':')));
    let mut rows = Vec::new();
    for record in ctx.store.list()? {
        if let Some(f) = &filter {
            let Some(name) = &record.name else { continue };
            if name.name() != f.name() || (filter_has_tag && name.tag() != f.tag()) {
                continue;
            }
        }
        let image = match ctx.store.load(&record.descriptor) {
            Ok(i) => i,
            Err(e) => {
                eprintln!("warning: skipping damaged image {}: {e}", record.descriptor.digest);
                continue;
            }
        };
        rows.push((record, image));
    }
    if !args.filter.is_empty() {
        rows = filtered(ctx, rows, &args.filter)?;
    }
    let id = |image: &Image| if args.no_trunc { image.id().to_string() } else { image.id().short().to_string() };
    let mut out = std::io::stdout().lock();
    if args.quiet {
        let mut seen = Vec::new();
        for (_, image) in &rows {
            let i = id(image);
            if !seen.contains(&i) {
                writeln!(out, "{i}")?;
                seen.push(i);
            }
        }
        return Ok(0);
    }
    let columns = |record: &ImageRecord| match &record.name {
        Some(n) => (n.name(), n.tag().map(str::to_string).unwrap_or_else(|| "<none>".into())),
        None => ("<none>".to_string(), "<none>".to_string()),
    };
    let listing = template::Listing::parse(&args.format, IMAGES_TABLE)?;
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|(record, image)| {
            let (repo, tag) = columns(record);
            json!({
                "Repository": repo,
                "Tag": tag,
                "ID": id(image),
                "Digest": image.digest().to_string(),
                "CreatedAt": image.config.created,
                "CreatedSince": format::since(image.config.created.as_deref()),
                "Size": format::size(ctx.snapshots.image_size(image)),
                "SizeBytes": ctx.snapshots.image_size(image),
                "Platform": image.descriptor.platform.clone().unwrap_or_else(|| image.config.platform()).to_string(),
            })
        })
        .collect();
    listing.print(&rows, IMAGES_TITLES, &mut out)?;
    Ok(0)
}

pub fn inspect(ctx: &Ctx, args: InspectArgs) -> Result<i32> {
    let mut out = Vec::new();
    let mut failed = false;
    for name in &args.names {
        match ctx.store.resolve(name) {
            Ok(image) => out.push(inspect_json(ctx, &image)),
            Err(e) => {
                eprintln!("Error: {}", strata::report::one_line(&e));
                failed = true;
            }
        }
    }
    template::inspected(args.format.as_deref(), &out, &mut std::io::stdout().lock())?;
    Ok(if failed { 1 } else { 0 })
}

pub fn inspect_json(ctx: &Ctx, image: &Image) -> serde_json::Value {
    let layers = ctx.present_layers(image);
    let classification = classify(image, &layers);
    let diff_ids = image.config.diff_ids();
    let plan = Snapshots::plan(image).unwrap_or_default();
    let layer_info: Vec<_> = image
        .manifest
        .layers
        .iter()
        .map(|l| {
            let p = plan.iter().find(|p| p.blob == l.digest);
            json!({
                "Digest": l.digest,
                "MediaType": l.media_type,
                "Size": l.size,
                "DiffID": p.map(|p| p.diff_id.to_string()),
                "ChainID": p.map(|p| p.chain_id.to_string()),
                "Unpacked": p.map(|p| ctx.snapshots.exists(&p.chain_id)),
            })
        })
        .collect();
    let platform = image.descriptor.platform.clone().unwrap_or_else(|| image.config.platform());
    json!({
        "Id": image.id(),
        "Digest": image.digest(),
        "RepoTags": image.names.iter().filter(|n| n.digest().is_none()).map(|n| n.to_string()).collect::<Vec<_>>(),
        "RepoDigests": image.names.iter().map(|n| format!("{}@{}", n.name(), image.digest())).collect::<Vec<_>>(),
        "Created": image.config.created,
        "Author": image.config.author,
        "Os": platform.os,
        "Architecture": platform.architecture,
        "Variant": platform.variant,
        "Platform": platform.to_string(),
        "Size": ctx.snapshots.image_size(image),
        "MediaType": image.descriptor.media_type,
        "Config": image.config.config,
        "RootFS": { "Type": "layers", "Layers": diff_ids },
        "Layers": layer_info,
        "Manifest": serde_json::from_slice::<serde_json::Value>(&image.manifest_bytes).unwrap_or_default(),
        "ConfigMediaType": image.manifest.config.media_type,
        "Kind": classification.kind,
        "KindReason": classification.reason,
    })
}

pub fn tag(ctx: &Ctx, args: TagArgs) -> Result<i32> {
    let image = ctx.store.resolve(&args.source)?;
    let target = ImageRef::parse(&args.target)?;
    if target.digest().is_some() {
        bail!("refusing to create a tag with a digest reference: {}", args.target);
    }
    ctx.store.record(Some(&target), &image.descriptor)?;
    Ok(0)
}

/// Containers that use an image (by image ID), from ROOT/containers/*/container.json.
fn containers_using(root: &Root, image: &Image) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root.containers()) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("container.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|v| v["image_id"].as_str() == Some(&image.id().to_string()))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn mount_dir(ctx: &Ctx, image: &Image) -> std::path::PathBuf {
    ctx.root.mounts().join(format!("image-{}", image.id().hex()))
}

pub fn remove(ctx: &Ctx, args: RmiArgs) -> Result<i32> {
    let mut failed = false;
    for input in &args.images {
        if let Err(e) = remove_one(ctx, input, args.force) {
            eprintln!("Error: {}", strata::report::one_line(e.as_ref()));
            failed = true;
        }
    }
    gc::collect(&ctx.store, &Default::default())?;
    Ok(if failed { 1 } else { 0 })
}

fn remove_one(ctx: &Ctx, input: &str, force: bool) -> Result<()> {
    let image = ctx.store.resolve(input)?;
    let by_name = ImageRef::parse(input).ok().filter(|r| image.names.contains(r));
    let users = containers_using(&ctx.root, &image);
    if let Some(name) = &by_name {
        if image.names.len() > 1 {
            ctx.store.remove_entries(|r| r.name.as_ref() == Some(name))?;
            println!("Untagged: {name}");
            return Ok(());
        }
    } else if image.names.len() > 1 && !force {
        bail!(
            "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
            image.id().short()
        );
    }
    if !users.is_empty() && !force {
        bail!(
            "conflict: unable to remove image {} - image is in use by container {}",
            by_name.map(|n| n.to_string()).unwrap_or_else(|| image.id().short().to_string()),
            users.join(", ")
        );
    }
    let mount = mount_dir(ctx, &image);
    if mount.exists() {
        if !force {
            bail!(
                "image {} is mounted at {}; run `strata image unmount` first or use -f",
                input,
                mount.join("merged").display()
            );
        }
        rootfs::disassemble(&mount)?;
    }
    let digest = image.digest().clone();
    let removed = ctx.store.remove_entries(|r| r.descriptor.digest == digest)?;
    for r in removed.iter().filter_map(|r| r.name.as_ref()) {
        println!("Untagged: {r}");
    }
    if !users.is_empty() {
        // Forced while containers use it: keep the image, unnamed, as docker does.
        ctx.store.record(None, &image.descriptor)?;
    } else {
        println!("Deleted: {}", image.id());
    }
    Ok(())
}

/// How long `image prune` (without -a) keeps compiled wasm that no image holds after its last
/// use (more than the day by which `relatime` may lag).
const WASM_KEPT_WHILE_USED: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

pub fn prune(ctx: &Ctx, args: PruneArgs) -> Result<i32> {
    let _ = args.force;
    let (filter, _) = PruneFilter::parse(&args.filter, true, &[])?;
    let pruned = prune_images(ctx, args.all, &filter)?;
    let mut out = std::io::stdout().lock();
    format::write_deleted(&mut out, "Images", &pruned.deleted)?;
    writeln!(out, "{}\nTotal reclaimed space: {}", pruned.summary, format::size(pruned.bytes))?;
    Ok(0)
}

/// What an image prune removed.
pub struct PrunedImages {
    /// docker's lines for the images removed: `untagged: NAME`, `deleted: sha256:ID`.
    pub deleted: Vec<String>,
    /// "Removed N blobs, N snapshots and SIZE of compiled wasm".
    pub summary: String,
    pub bytes: u64,
}

/// As docker's: untagged images no container uses (with `all`, every image no container
/// uses), then unreferenced blobs and snapshots, and compiled wasm no image holds and
/// nothing read this week (with `all`, all such compiled wasm).
pub fn prune_images(ctx: &Ctx, all: bool, filter: &PruneFilter) -> Result<PrunedImages> {
    let mut deleted = Vec::new();
    let records = ctx.store.list()?;
    let mut digests = Vec::new();
    for r in records.iter().filter(|r| all || r.name.is_none()) {
        if !digests.contains(&r.descriptor.digest) {
            digests.push(r.descriptor.digest.clone());
        }
    }
    for digest in digests {
        let Some(record) = records.iter().find(|r| r.descriptor.digest == digest) else { continue };
        let Ok(image) = ctx.store.load(&record.descriptor) else { continue };
        let labels = image.config.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default();
        if !filter.selects(image.config.created.as_deref(), &labels) || !containers_using(&ctx.root, &image).is_empty()
        {
            continue;
        }
        let removed = ctx.store.remove_entries(|r| r.descriptor.digest == digest && (all || r.name.is_none()))?;
        deleted.extend(removed.iter().filter_map(|r| r.name.as_ref()).map(|n| format!("untagged: {n}")));
        if !ctx.store.list()?.iter().any(|r| r.descriptor.digest == digest) {
            deleted.push(format!("deleted: {}", image.id()));
        }
    }
    let report = gc::collect(&ctx.store, &Default::default())?;
    // Without -a, compiled wasm read in the last week stays: strata-oci's and the shim's
    // containers use this cache too, and no image here tells of their modules.
    // With filters, it is some images that go, not all compiled wasm: the week's rule holds.
    let keep_used_within = (!all || filter.is_filtered()).then_some(WASM_KEPT_WHILE_USED);
    let wasm_freed = gc::collect_wasm_cache(&ctx.store, &ctx.root.wasm_cache(), keep_used_within)?;
    let summary = format!(
        "Removed {} blobs, {} snapshots and {} of compiled wasm",
        report.blobs_removed,
        report.snapshots_removed,
        format::size(wasm_freed)
    );
    Ok(PrunedImages { deleted, summary, bytes: report.bytes_freed + wasm_freed })
}

pub fn load(ctx: &Ctx, args: LoadArgs) -> Result<i32> {
    let platform = match &args.platform {
        Some(p) => Platform::parse(p).map_err(anyhow::Error::msg)?,
        None => Platform::host(),
    };
    let reader: Box<dyn std::io::Read> = match &args.input {
        Some(path) => Box::new(std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?),
        None => {
            if std::io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is a terminal; use -i FILE");
            }
            Box::new(std::io::stdin())
        }
    };
    let loaded = archive::load(&ctx.store, reader, &platform).with_context(|| match &args.input {
        Some(p) => format!("loading {}", p.display()),
        None => "loading from stdin".into(),
    })?;
    for l in &loaded {
        if l.names.is_empty() {
            println!("Loaded image ID: {}", l.image.id());
        }
        for name in &l.names {
            println!("Loaded image: {name}");
        }
    }
    if !args.no_precompile {
        for l in &loaded {
            super::precompile::image(ctx, &l.image, args.quiet);
        }
    }
    Ok(0)
}

pub fn save(ctx: &Ctx, args: SaveArgs) -> Result<i32> {
    let mut images = Vec::new();
    for input in &args.images {
        let image = ctx.store.resolve(input)?;
        let name =
            ImageRef::parse(input).ok().filter(|r| image.names.contains(r)).or_else(|| image.names.first().cloned());
        images.push((image, name));
    }
    match &args.output {
        Some(path) => {
            // Write beside the target and rename, so a failed save leaves no partial archive.
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            let tmp = unique_name(dir, ".strata-save-");
            let result = (|| -> Result<()> {
                let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", path.display()))?;
                let mut w = std::io::BufWriter::new(file);
                archive::save(&ctx.store, &images, &mut w)?;
                w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
                Ok(())
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result?;
        }
        None => {
            if std::io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal; use -o FILE or redirect stdout");
            }
            let mut out = std::io::stdout().lock();
            archive::save(&ctx.store, &images, &mut out)?;
        }
    }
    Ok(0)
}

pub fn mount(ctx: &Ctx, args: MountArgs) -> Result<i32> {
    let image = ctx.store.resolve(&args.image)?;
    let dir = mount_dir(ctx, &image);
    if rootfs::is_mounted(&dir.join("merged")) || (dir.join("merged").exists() && dir.join("copied").exists()) {
        println!("{}", dir.join("merged").display());
        return Ok(0);
    }
    let layers = ctx.snapshots.prepare(&ctx.store, &image)?;
    let result = rootfs::assemble(&layers, &dir, ctx.driver, rootfs::UpperSync::Synced);
    match result {
        Ok(assembled) => {
            if matches!(assembled, rootfs::Assembled::Copy { .. }) {
                std::fs::write(dir.join("copied"), b"")?;
            }
            println!("{}", assembled.path().display());
            Ok(0)
        }
        Err(e) => {
            let _ = rootfs::disassemble(&dir);
            Err(e.into())
        }
    }
}

pub fn unmount(ctx: &Ctx, args: MountArgs) -> Result<i32> {
    let image = ctx.store.resolve(&args.image)?;
    let dir = mount_dir(ctx, &image);
    if !dir.exists() {
        bail!("image {} is not mounted", args.image);
    }
    rootfs::disassemble(&dir)?;
    println!("{}", image.id());
    Ok(0)
}

pub fn import(ctx: &Ctx, args: ImportArgs) -> Result<i32> {
    let name = args.reference.as_deref().map(ImageRef::parse).transpose()?;
    let platform = match &args.platform {
        Some(p) => Platform::parse(p).map_err(anyhow::Error::msg)?,
        None => Platform::host(),
    };
    let mut annotations = std::collections::BTreeMap::new();
    for a in &args.annotation {
        let (k, v) = a.split_once('=').with_context(|| format!("invalid --annotation {a:?}: expected KEY=VALUE"))?;
        annotations.insert(k.to_string(), v.to_string());
    }
    let opts = strata::image::import::ImportOptions { platform, changes: args.change, annotations };
    let reader: Box<dyn std::io::Read> = if args.file == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(&args.file).with_context(|| format!("opening {}", args.file))?)
    };
    let image = strata::image::import::import(&ctx.store, reader, name.as_ref(), &opts)?;
    println!("{}", image.id());
    Ok(0)
}
