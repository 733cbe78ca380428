//! `pull`, `push`, `login`, `logout`: the commands that talk to registries. These are the
//! only ones that start an async runtime and an HTTP client.

use super::args::{LoginArgs, LogoutArgs, PullArgs, PushArgs, TransportArgs};
use super::images::Ctx;
use anyhow::{bail, Context, Result};
use std::io::{IsTerminal, Read};
use strata::image::auth::{AuthFile, Credentials};
use strata::image::manifest::Platform;
use strata::image::progress::Progress;
use strata::image::registry::{self, PullOptions, PushOptions, Transport};
use strata::image::ImageRef;

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn transport(ctx: &Ctx, args: &TransportArgs) -> Result<Transport> {
    Ok(Transport { tls_verify: args.tls_verify, insecure_registries: ctx.root.config()?.insecure_registries })
}

fn credentials(args: &TransportArgs, registry: &str) -> Result<Option<Credentials>> {
    Ok(AuthFile::locate(args.authfile.as_deref()).get(registry)?)
}

pub fn pull(ctx: &Ctx, args: PullArgs) -> Result<i32> {
    let reference = ImageRef::parse(&args.image)?;
    let platform = match &args.platform {
        Some(p) => Platform::parse(p).map_err(anyhow::Error::msg)?,
        None => Platform::host(),
    };
    let opts = PullOptions {
        platform,
        platform_explicit: args.platform.is_some(),
        credentials: credentials(&args.transport, reference.registry())?,
        transport: transport(ctx, &args.transport)?,
        progress: Progress::for_stderr(args.quiet),
        max_parallel: 3,
    };
    let rt = runtime()?;
    let image = rt.block_on(registry::pull(&ctx.store, &reference, &opts))?;
    if !args.no_precompile {
        super::precompile::image(ctx, &image, args.quiet);
    }
    println!("{reference}");
    Ok(0)
}

/// Pull an image that `run`/`create` needs: progress on stderr, nothing on stdout.
pub fn pull_missing(ctx: &Ctx, reference: &ImageRef, platform: Option<&str>, args: &TransportArgs) -> Result<()> {
    let opts = PullOptions {
        platform: match platform {
            Some(p) => Platform::parse(p).map_err(anyhow::Error::msg)?,
            None => Platform::host(),
        },
        platform_explicit: platform.is_some(),
        credentials: credentials(args, reference.registry())?,
        transport: transport(ctx, args)?,
        progress: Progress::for_stderr(false),
        max_parallel: 3,
    };
    runtime()?.block_on(registry::pull(&ctx.store, reference, &opts))?;
    Ok(())
}

pub fn push(ctx: &Ctx, args: PushArgs) -> Result<i32> {
    let image = ctx.store.resolve(&args.image)?;
    let dest = match &args.destination {
        Some(d) => ImageRef::parse(d)?,
        None => match ImageRef::parse(&args.image) {
            Ok(r) if image.names.contains(&r) => r,
            _ => image
                .names
                .first()
                .cloned()
                .with_context(|| format!("image {} has no name to push to; give a destination", args.image))?,
        },
    };
    let opts = PushOptions {
        credentials: credentials(&args.transport, dest.registry())?,
        transport: transport(ctx, &args.transport)?,
        progress: Progress::for_stderr(args.quiet),
    };
    let digest = runtime()?.block_on(registry::push(&ctx.store, &image, &dest, &opts))?;
    if args.quiet {
        println!("{dest}");
    } else {
        println!("{}@{digest}", dest.name());
    }
    Ok(0)
}

fn registry_arg(registry: Option<&str>) -> Result<String> {
    let r = registry.unwrap_or("docker.io");
    let r = r.strip_prefix("https://").or_else(|| r.strip_prefix("http://")).unwrap_or(r);
    let r = r.trim_end_matches('/').split('/').next().unwrap_or(r);
    // Checked as a reference's registry is: a URL made of anything else (`[::1]@host`) could
    // reach another host than the one the http-or-https decision was made for.
    if !strata::image::reference::is_registry_host(r) {
        bail!("invalid registry {r:?}");
    }
    Ok(r.to_string())
}

pub fn login(ctx: &Ctx, args: LoginArgs) -> Result<i32> {
    let registry = registry_arg(args.registry.as_deref())?;
    let username = match args.username {
        Some(u) => u,
        None if std::io::stdin().is_terminal() => {
            eprint!("Username: ");
            let mut u = String::new();
            std::io::stdin().read_line(&mut u)?;
            u.trim().to_string()
        }
        None => bail!("username required: use --username"),
    };
    let password = match (args.password, args.password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => p,
        (None, true) => {
            let mut p = String::new();
            std::io::stdin().read_to_string(&mut p)?;
            p.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => bail!("password required: use --password-stdin (or --password)"),
    };
    if username.is_empty() {
        bail!("username must not be empty");
    }
    let creds = Credentials { username, password };
    runtime()?.block_on(registry::check_login(&registry, &creds, &transport(ctx, &args.transport)?))?;
    AuthFile::locate(args.transport.authfile.as_deref()).set(&registry, &creds)?;
    println!("Login Succeeded");
    Ok(0)
}

pub fn logout(args: LogoutArgs) -> Result<i32> {
    let registry = registry_arg(args.registry.as_deref())?;
    let file = AuthFile::locate(args.authfile.as_deref());
    if file.remove(&registry)? {
        println!("Removing login credentials for {registry}");
        Ok(0)
    } else {
        bail!("not logged in to {registry}")
    }
}
