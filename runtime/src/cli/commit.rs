//! `strata diff`, `export` and `commit`: a container's changes listed, its root filesystem
//! as a tar, and a new image from it, as docker's.

use super::args::{CommitArgs, DiffArgs, ExportArgs};
use super::images::Ctx;
use anyhow::{bail, Context, Result};
use std::io::{IsTerminal, Write};
use std::os::unix::fs::PermissionsExt;
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
    let existing = std::fs::metadata(path).ok();
    if existing.as_ref().is_some_and(|m| !m.is_file()) {
        // A device or a pipe (`-o /dev/stdout`): written to, as docker does, never replaced.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        commit::export(&containers, &record, &mut out)?;
        out.flush().with_context(|| format!("writing {}", path.display()))?;
        return Ok(0);
    }
    // A file is written next to its name and renamed into place: no half-written archive is
    // left, and a failed export leaves an existing file as it was.
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("creating {}", path.display()))?;
    // The mode a new file would get (tempfile makes it 0600).
    let mode = existing.map(|m| m.permissions().mode() & 0o7777).unwrap_or_else(|| 0o666 & !current_umask());
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, tmp);
    commit::export(&containers, &record, &mut out)?;
    let tmp = out.into_inner().map_err(|e| e.into_error()).with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path).with_context(|| format!("writing {}", path.display()))?;
    Ok(0)
}

/// This process's umask (read by setting it and setting it back).
fn current_umask() -> u32 {
    // SAFETY: umask only swaps the process's mask; it is put back at once.
    unsafe {
        let mask = libc::umask(0o022);
        libc::umask(mask);
        mask as u32
    }
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
