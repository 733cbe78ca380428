//! The `strata` command line (docker/podman-like). Thin: parse, call the library, print.
//! Errors become one `Error: ...` line on stderr and a non-zero exit: 1 for a failed
//! command, 125 for bad usage and for `run`/`create`/`start` failing in strata itself, 126
//! and 127 when the container's program can't be executed or is not found, as docker does.

pub mod args;
pub mod commit;
pub mod containers;
pub mod cp;
pub mod exec;
pub mod filters;
pub mod format;
pub mod history;
pub mod images;
pub mod logs;
pub mod monitor;
pub mod precompile;
pub mod registry;
pub mod resources;
pub mod run;
pub mod stats;
pub mod system;
pub mod template;
pub mod volumes;

use anyhow::Result;
use args::{Cli, Command, ContainerCommand, ImageCommand, SystemCommand, VolumeCommand};
use strata::root::Root;

/// An error with the exit code it must produce.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The exit code an error asks for (1 unless it is a `Failure`).
pub fn exit_code(e: &anyhow::Error) -> i32 {
    e.downcast_ref::<Failure>().map_or(1, |f| f.code)
}

/// Errors of commands that run containers exit 125 (strata failed), unless they already
/// carry the container's own code.
pub fn or_125<T>(result: Result<T>) -> Result<T> {
    result.map_err(|e| {
        if e.downcast_ref::<Failure>().is_some() {
            e
        } else {
            anyhow::Error::new(Failure { code: 125, message: strata::report::one_line(e.as_ref()) })
        }
    })
}

pub fn run(cli: Cli) -> Result<i32> {
    // Needs no root (and must work where none can be made).
    match cli.command {
        Command::Version(a) => return system::version(a),
        Command::WasmPrecompile(a) => return precompile::one(a),
        _ => {}
    }
    let root = Root::open(&cli.root)?;
    let ctx = images::Ctx::new(root, cli.storage_driver)?;
    let log_level = cli.log_level.clone();
    match cli.command {
        Command::ContainerMonitor(a) => monitor::run(&ctx, a),
        Command::Pull(a) => registry::pull(&ctx, a),
        Command::Push(a) => registry::push(&ctx, a),
        Command::Login(a) => registry::login(&ctx, a),
        Command::Logout(a) => registry::logout(a),
        Command::Images(a) => images::list(&ctx, a),
        Command::Inspect(a) => containers::inspect(&ctx, a),
        Command::Tag(a) => images::tag(&ctx, a),
        Command::Rmi(a) => images::remove(&ctx, a),
        Command::Load(a) => images::load(&ctx, a),
        Command::Save(a) => images::save(&ctx, a),
        Command::Import(a) => images::import(&ctx, a),
        Command::History(a) => history::history(&ctx, a),
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
            ImageCommand::History(a) => history::history(&ctx, a),
            ImageCommand::Mount(a) => images::mount(&ctx, a),
            ImageCommand::Unmount(a) => images::unmount(&ctx, a),
        },
        Command::Run(a) => run::run(&ctx, a, &log_level),
        Command::Create(a) => run::create(&ctx, a),
        Command::Start(a) => run::start(&ctx, a, &log_level),
        Command::Ps(a) => containers::ps(&ctx, a),
        Command::Logs(a) => logs::logs(&ctx, a),
        Command::Stop(a) => containers::stop(&ctx, a),
        Command::Restart(a) => run::restart(&ctx, a, &log_level),
        Command::Rename(a) => containers::rename(&ctx, a),
        Command::Top(a) => containers::top(&ctx, a),
        Command::Stats(a) => stats::stats(&ctx, a),
        Command::Version(_) | Command::WasmPrecompile(_) => unreachable!("handled before the root is opened"),
        Command::Info(a) => system::info(&ctx, a),
        Command::Kill(a) => containers::kill(&ctx, a),
        Command::Pause(a) => containers::pause(&ctx, a),
        Command::Unpause(a) => containers::unpause(&ctx, a),
        Command::Update(a) => resources::update(&ctx, a),
        Command::Rm(a) => containers::rm(&ctx, a),
        Command::Wait(a) => containers::wait(&ctx, a),
        Command::Exec(a) => exec::exec(&ctx, a),
        Command::Cp(a) => cp::cp(&ctx, a),
        Command::Diff(a) => commit::diff(&ctx, a),
        Command::Export(a) => commit::export(&ctx, a),
        Command::Commit(a) => commit::commit(&ctx, a),
        Command::System(sub) => match sub {
            SystemCommand::Df(a) => system::df(&ctx, a),
            SystemCommand::Prune(a) => system::prune(&ctx, a),
            SystemCommand::Info(a) => system::info(&ctx, a),
        },
        Command::Volume(sub) => match sub {
            VolumeCommand::Create(a) => volumes::create(&ctx, a),
            VolumeCommand::Ls(a) => volumes::list(&ctx, a),
            VolumeCommand::Inspect(a) => volumes::inspect(&ctx, a),
            VolumeCommand::Rm(a) => volumes::remove(&ctx, a),
            VolumeCommand::Prune(a) => volumes::prune(&ctx, a),
        },
        Command::Container(sub) => match sub {
            ContainerCommand::Ls(a) => containers::ps(&ctx, a),
            ContainerCommand::Run(a) => run::run(&ctx, a, &log_level),
            ContainerCommand::Create(a) => run::create(&ctx, a),
            ContainerCommand::Start(a) => run::start(&ctx, a, &log_level),
            ContainerCommand::Logs(a) => logs::logs(&ctx, a),
            ContainerCommand::Stop(a) => containers::stop(&ctx, a),
            ContainerCommand::Restart(a) => run::restart(&ctx, a, &log_level),
            ContainerCommand::Rename(a) => containers::rename(&ctx, a),
            ContainerCommand::Top(a) => containers::top(&ctx, a),
            ContainerCommand::Stats(a) => stats::stats(&ctx, a),
            ContainerCommand::Kill(a) => containers::kill(&ctx, a),
            ContainerCommand::Pause(a) => containers::pause(&ctx, a),
            ContainerCommand::Unpause(a) => containers::unpause(&ctx, a),
            ContainerCommand::Update(a) => resources::update(&ctx, a),
            ContainerCommand::Rm(a) => containers::rm(&ctx, a),
            ContainerCommand::Wait(a) => containers::wait(&ctx, a),
            ContainerCommand::Exec(a) => exec::exec(&ctx, a),
            ContainerCommand::Inspect(a) => containers::inspect_containers(&ctx, a),
            ContainerCommand::Prune(a) => containers::prune(&ctx, a),
            ContainerCommand::Cp(a) => cp::cp(&ctx, a),
            ContainerCommand::Diff(a) => commit::diff(&ctx, a),
            ContainerCommand::Export(a) => commit::export(&ctx, a),
            ContainerCommand::Commit(a) => commit::commit(&ctx, a),
        },
    }
}
