//! `cp`: docker's copy between a container and the host (`CONTAINER:PATH` on one side, a host
//! path on the other), through `strata::containers::copy`.

use super::args::CpArgs;
use super::images::Ctx;
use anyhow::{bail, Result};
use strata::containers::copy::{self, CopyError, Options, Place};
use strata::containers::{ContainerError, Containers};

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
    if args.source == "-" || args.destination == "-" {
        bail!("copying a tar stream (-) is not supported: give a path on the host");
    }
    let opts = Options { follow_link: args.follow_link, archive: args.archive };
    let host = copy::host_root()?;
    let containers = Containers::open(&ctx.root, ctx.driver)?;
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
