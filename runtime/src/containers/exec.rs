//! `exec`: another process in a running container, as docker makes it: the container's own
//! process settings (environment, user, working directory, capabilities, rlimits) with
//! `-e`, `-u`, `-w` and `-t` on top. A user named by `-u` is looked up in the container's
//! passwd and group files, read inside its rootfs, like the init's. The process is started by
//! `lifecycle::exec` as the caller's child: the caller waits for it (its output is not logged,
//! as docker's exec output is not).

use super::record::ContainerRecord;
use super::status::{observe, State};
use super::{ContainerError, Containers};
use crate::lifecycle::exec::ExecOptions;
use crate::spec::from_image::{self, replace_or_append};
use crate::spec::user;
use oci_spec::runtime::Process;
use std::os::fd::OwnedFd;
use std::sync::Arc;

/// What `exec` was asked to run.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub command: Vec<String>,
    /// `KEY=VALUE`, already resolved.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub tty: bool,
}

/// The process to run: the container's own, with the request on top.
pub fn process(c: &Containers, record: &ContainerRecord, request: &ExecRequest) -> Result<Process, ContainerError> {
    if request.command.first().is_none_or(|a| a.is_empty()) {
        return Err(ContainerError::Monitor("exec: no command given".into()));
    }
    let spec = c.runtime().saved_spec(&record.id).ok_or_else(|| ContainerError::NotRunning(record.name.clone()))?;
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(request.command.clone()));
    process.set_terminal(Some(request.tty));
    if let Some(dir) = &request.workdir {
        if !dir.starts_with('/') {
            return Err(from_image::FromImageError::RelativeWorkdir(dir.clone()).into());
        }
        process.set_cwd(dir.into());
    }
    let mut env = process.env().clone().unwrap_or_default();
    if let Some(name) = &request.user {
        // The names are looked up in the container's root as its init sees it (its mounts: an
        // /etc/passwd bind-mounted over the image's; a root mounted in another mount
        // namespace than ours), falling back to the image's files.
        let state = c.runtime().states.load(&record.id).ok();
        let root = match state.filter(|s| s.pid > 0) {
            Some(s) => std::path::PathBuf::from(format!("/proc/{}/root", s.pid)),
            None => c.paths(&record.id).merged(),
        };
        let who = user::resolve(&root, name).map_err(from_image::FromImageError::from)?;
        let mut u = process.user().clone();
        u.set_uid(who.uid);
        u.set_gid(who.gid);
        u.set_additional_gids((!who.additional_gids.is_empty()).then(|| who.additional_gids.clone()));
        process.set_user(u);
        process.set_capabilities(Some(from_image::capabilities(
            &record.options.cap_add,
            &record.options.cap_drop,
            who.uid,
        )?));
        replace_or_append(&mut env, &format!("HOME={}", who.home));
    }
    if request.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    for entry in &request.env {
        replace_or_append(&mut env, entry);
    }
    process.set_env(Some(env));
    Ok(process)
}

/// Start `process` in the running container; returns its pid (our child). With `console`,
/// the process gets a pty whose master is sent over that socket.
pub fn exec(
    c: &Containers,
    record: &ContainerRecord,
    process: Process,
    console: Option<Arc<OwnedFd>>,
) -> Result<i32, ContainerError> {
    let obs = observe(c, record.clone())?.ok_or_else(|| ContainerError::NoSuchContainer(record.name.clone()))?;
    match obs.state {
        State::Running => {}
        State::Paused => {
            return Err(ContainerError::Monitor(format!("container {} is paused, unpause it first", record.name)))
        }
        _ => return Err(ContainerError::NotRunning(record.name.clone())),
    }
    let opts = ExecOptions { console_stream: console, wasm_cache: Some(c.root().wasm_cache()), ..Default::default() };
    Ok(crate::lifecycle::exec::exec(c.runtime(), &record.id, process, &opts)?)
}
