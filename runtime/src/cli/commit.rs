//! `strata diff`, `export` and `commit`: a container's changes listed, its root filesystem
//! as a tar, and a new image from it, as docker's.

use super::args::{CommitArgs, DiffArgs, ExportArgs};
use super::images::Ctx;
use anyhow::{bail, Context, Result};
use std::io::{IsTerminal, Write};
use strata::containers::commit::{self, CommitRequest};
use strata::containers::Containers;
use strata::image::ImageRef;

pub fn diff(ctx: &Ctx, args: DiffArgs) -> Result<i32> {
    let containers = Containers::open(&ctx.root, ctx.driver)?;
    let record = containers.resolve(&args.container)?;
    let mut out = std::io::stdout().lock();
    for change in commit::diff(&containers, &record)? {
        writeln!(out, "{} {}", change.kind.letter(), change.path)?;
    }
    Ok(0)
}

pub fn export(ctx: &Ctx, args: ExportArgs) -> Result<i32> {
    let containers = Containers::open(&ctx.root, ctx.driver)?;
    let record = containers.resolve(&args.container)?;
    let Some(path) = &args.output else {
        let stdout = std::io::stdout();
        if stdout.is_terminal() {
            // docker's words.
            bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
        }
        let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        commit::export(&containers, &record, &mut out)?;
        out.flush()?;
        return Ok(0);
    };
    // Written next to its name and renamed into place: no half-written archive is left.
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, tmp);
    commit::export(&containers, &record, &mut out)?;
    let tmp = out.into_inner().map_err(|e| e.into_error()).with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path).with_context(|| format!("writing {}", path.display()))?;
    Ok(0)
}

pub fn commit(ctx: &Ctx, args: CommitArgs) -> Result<i32> {
    let name = args.repository.as_deref().map(ImageRef::parse).transpose()?;
    if name.as_ref().is_some_and(|n| n.digest().is_some()) {
        bail!("refusing to create a tag with a digest reference: {}", args.repository.unwrap_or_default());
    }
    let containers = Containers::open(&ctx.root, ctx.driver)?;
    let record = containers.resolve(&args.container)?;
    let request = CommitRequest { author: args.author, message: args.message, changes: args.change, pause: args.pause };
    let image = commit::commit(&containers, &ctx.store, &record, name.as_ref(), request)?;
    println!("{}", image.id());
    Ok(0)
}
