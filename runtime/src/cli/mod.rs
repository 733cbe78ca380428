//! The `strata` command line (docker/podman-like). Thin: parse, call the library, print.
//! Errors become one `Error: ...` line on stderr and a non-zero exit (1 for a failed
//! command, 125 for bad usage, as docker does).

pub mod args;
pub mod format;
pub mod images;
pub mod registry;

use anyhow::Result;
use args::{Cli, Command, ImageCommand};
use strata::root::Root;

pub fn run(cli: Cli) -> Result<i32> {
    let root = Root::open(&cli.root)?;
    let ctx = images::Ctx::new(root, cli.storage_driver)?;
    match cli.command {
        Command::Pull(a) => registry::pull(&ctx, a),
        Command::Push(a) => registry::push(&ctx, a),
        Command::Login(a) => registry::login(&ctx, a),
        Command::Logout(a) => registry::logout(a),
        Command::Images(a) => images::list(&ctx, a),
        Command::Inspect(a) => images::inspect(&ctx, a),
        Command::Tag(a) => images::tag(&ctx, a),
        Command::Rmi(a) => images::remove(&ctx, a),
        Command::Load(a) => images::load(&ctx, a),
        Command::Save(a) => images::save(&ctx, a),
        Command::Import(a) => images::import(&ctx, a),
        Command::Image(sub) => match sub {
            ImageCommand::Ls(a) => images::list(&ctx, a),
            ImageCommand::Pull(a) => registry::pull(&ctx, a),
            ImageCommand::Push(a) => registry::push(&ctx, a),
            ImageCommand::Inspect(a) => images::inspect(&ctx, a),
            ImageCommand::Tag(a) => images::tag(&ctx, a),
            ImageCommand::Rm(a) => images::remove(&ctx, a),
            ImageCommand::Prune(a) => images::prune(&ctx, a),
            ImageCommand::Load(a) => images::load(&ctx, a),
            ImageCommand::Save(a) => images::save(&ctx, a),
            ImageCommand::Import(a) => images::import(&ctx, a),
            ImageCommand::Mount(a) => images::mount(&ctx, a),
            ImageCommand::Unmount(a) => images::unmount(&ctx, a),
        },
    }
}
