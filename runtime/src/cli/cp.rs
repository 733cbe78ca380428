//! `cp`: docker's copy between a container and the host (`CONTAINER:PATH` on one side, a host
//! path on the other), through `strata::containers::copy`.

use super::args::CpArgs;
use super::images::Ctx;
use anyhow::{bail, Result};
use std::io::{IsTerminal, Read, Write};
use strata::containers::copy::{self, CopyError, Options, Place};
use strata::containers::{ContainerError, Containers};
use strata::snapshot::apply::{self, Compression};

/// One side of a `cp`: docker's reading, where a path that starts with `/` or `.` is the
/// host's whatever it holds, and otherwise `NAME:PATH` names a container.
enum Side<'a> {
    Host(&'a str),
    Container { name: &'a str, path: String },
}

fn side(arg: &str) -> Side<'_> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return Side::Host(arg);
    }
    match arg.split_once(':') {
        // The container's paths are from its root; the leading slash is optional.
        Some((name, path)) if !name.is_empty() => {
            Side::Container { name, path: if path.starts_with('/') { path.to_string() } else { format!("/{path}") } }
        }
        _ => Side::Host(arg),
    }
}

/// A host path as an absolute one (its trailing `/` or `/.` kept).
fn absolute(path: &str) -> Result<String> {
    if path.starts_with('/') {
        return Ok(path.to_string());
    }
    Ok(format!("{}/{path}", std::env::current_dir()?.display()))
}

pub fn cp(ctx: &Ctx, args: CpArgs) -> Result<i32> {
    let opts = Options { follow_link: args.follow_link, archive: args.archive };
    let host = copy::host_root()?;
    let containers = Containers::open(&ctx.root, ctx.driver)?;
    match (args.source.as_str(), args.destination.as_str()) {
        ("-", "-") => bail!("must specify at least one container source"),
        (_, "-") => return tar_out(&containers, &args),
        ("-", _) => return tar_in(ctx, &containers, &args.destination, opts),
        _ => {}
    }
    match (side(&args.source), side(&args.destination)) {
        (Side::Container { .. }, Side::Container { .. }) => bail!("copying between containers is not supported"),
        (Side::Host(_), Side::Host(_)) => bail!("must specify at least one container source"),
        (Side::Container { name, path }, Side::Host(to)) => {
            let record = containers.resolve(name)?;
            let to = absolute(to)?;
            copy::with_root(&containers, &record, |root| {
                let result = copy::copy(Place { root, path: &path }, Place { root: &host, path: &to }, opts);
                result.map_err(|e| failure(e, name, true))
            })?;
        }
        (Side::Host(from), Side::Container { name, path }) => {
            let record = containers.resolve(name)?;
            let from = absolute(from)?;
            copy::with_root(&containers, &record, |root| {
                let result = copy::copy(Place { root: &host, path: &from }, Place { root, path: &path }, opts);
                result.map_err(|e| failure(e, name, false))
            })?;
        }
    }
    Ok(0)
}

/// `cp CONTAINER:SRC -`: a tar of SRC on standard output.
fn tar_out(containers: &Containers, args: &CpArgs) -> Result<i32> {
    let Side::Container { name, path } = side(&args.source) else {
        bail!("must specify at least one container source");
    };
    if args.follow_link {
        bail!("-L with a tar stream (-) is not supported: the archive holds links as links");
    }
    let stdout = std::io::stdout();
    if stdout.is_terminal() {
        bail!("cowardly refusing to write a tar archive to a terminal: redirect it");
    }
    let record = containers.resolve(name)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    copy::with_root(containers, &record, |root| {
        copy::pack_out(Place { root, path: &path }, &mut out).map_err(|e| failure(e, name, true))
    })?;
    out.flush()?;
    Ok(0)
}

/// `cp - CONTAINER:DEST`: a tar archive (plain, gzip or zstd) from standard input unpacked
/// into the directory DEST. It is unpacked first into a private directory of strata's, with
/// a layer's checks and limits, then copied in with `cp`'s engine, so the archive never
/// writes through anything the container made.
fn tar_in(ctx: &Ctx, containers: &Containers, destination: &str, opts: Options) -> Result<i32> {
    let Side::Container { name, path } = side(destination) else {
        bail!("must specify at least one container source");
    };
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        bail!("requested a tar archive from standard input, but it is a terminal");
    }
    let record = containers.resolve(name)?;
    // docker's words, for a path that is missing or not a directory; checked before the
    // archive is read, and again once it is.
    let not_a_dir = || ContainerError::Copy(format!("destination \"{destination}\" must be a directory"));
    let host = copy::host_root()?;
    copy::with_root(containers, &record, |root| match copy::is_directory(Place { root, path: &path }) {
        true => Ok(()),
        false => Err(not_a_dir()),
    })?;
    // Held so that a prune does not take the staging directory from under us.
    let _content = ctx.root.lock_content()?;
    let staging = tempfile::Builder::new().prefix("cp-").tempdir_in(ctx.root.tmp())?;
    let mut input = stdin.lock();
    // The first bytes, however the pipe delivers them, tell the compression.
    let mut head = Vec::with_capacity(4);
    while head.len() < 4 {
        let mut byte = [0u8; 4];
        let n = input.read(&mut byte[..4 - head.len()])?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&byte[..n]);
    }
    let compression = Compression::detect(&head);
    let reader = std::io::BufReader::with_capacity(1 << 20, std::io::Cursor::new(head).chain(input));
    apply::extract(reader, compression, staging.path(), &apply::ApplyLimits::default())
        .map_err(|e| anyhow::anyhow!("reading the tar archive from standard input: {e}"))?;
    let from = format!("{}/.", staging.path().display());
    copy::with_root(containers, &record, |root| {
        if !copy::is_directory(Place { root, path: &path }) {
            return Err(not_a_dir());
        }
        copy::copy(Place { root: &host, path: &from }, Place { root, path: &path }, opts)
            .map_err(|e| failure(e, name, false))
    })?;
    Ok(0)
}

/// docker's words for what went wrong, naming the container where the path is its.
fn failure(e: CopyError, container: &str, source_in_container: bool) -> ContainerError {
    let message = match e {
        CopyError::NoSource(path) if source_in_container => {
            format!("Could not find the file {path} in container {container}")
        }
        CopyError::NoSource(path) => format!("lstat {path}: no such file or directory"),
        CopyError::NoDestinationDir(path) if !source_in_container => {
            format!("Could not find the file {path} in container {container}")
        }
        e => e.to_string(),
    };
    ContainerError::Copy(message)
}
