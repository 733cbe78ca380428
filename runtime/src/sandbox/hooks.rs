//! OCI hooks: run a hook program with the container's state JSON on stdin, its own env and
//! args, and its timeout (waited for on a pidfd, not by polling).

use oci_spec::runtime::Hook;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

pub fn run_all(kind: &str, hooks: Option<&Vec<Hook>>, state_json: &str) -> Result<(), String> {
    for hook in hooks.into_iter().flatten() {
        run(kind, hook, state_json)?;
    }
    Ok(())
}

pub fn run(kind: &str, hook: &Hook, state_json: &str) -> Result<(), String> {
    let path = hook.path();
    let args = hook.args().clone().unwrap_or_default();
    let mut cmd = Command::new(path);
    if let Some((argv0, rest)) = args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    for kv in hook.env().as_deref().unwrap_or_default() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::inherit()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("{kind} hook {}: {e}", path.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that doesn't read its stdin is not an error.
        let _ = stdin.write_all(state_json.as_bytes());
    }
    if let Some(secs) = hook.timeout() {
        let timeout = std::time::Duration::from_secs(secs.max(0) as u64);
        if !crate::lifecycle::wait_for_exit(child.id() as i32, Some(timeout)) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{kind} hook {} timed out after {secs}s", path.display()));
        }
    }
    let out = child.wait_with_output().map_err(|e| format!("{kind} hook {}: {e}", path.display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{kind} hook {} failed ({}): {}", path.display(), out.status, stderr.trim()));
    }
    Ok(())
}
