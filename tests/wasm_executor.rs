//! The wasm executor end to end: every example guest through `executor::wasm::run`, each in
//! its own process (the `strata-wasm-run` binary, which is what the sandbox's init does minus
//! the sandbox), asserting output, args, env, exit codes, files through preopens, limits,
//! signals, the compiled-code cache and the errors for what cannot run.
//!
//! The guests are built here from `wasm-examples/` (clang + wasi-libc, wat2wasm) and the
//! component is made in-process with wit-component, so a clean clone is enough.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const RUNNER: &str = env!("CARGO_BIN_EXE_strata-wasm-run");

fn guest(name: &str) -> String {
    support::wasm::guest(name).to_string_lossy().into_owned()
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn finish(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run a job given as JSON (written to a file beside it), with optional cache and debug log.
fn run_job(job: serde_json::Value, cache: Option<&Path>) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.json");
    std::fs::write(&file, job.to_string()).unwrap();
    let mut cmd = Command::new(RUNNER);
    cmd.arg("--debug");
    if let Some(c) = cache {
        cmd.arg("--cache").arg(c);
    }
    finish(cmd.arg(&file).stdin(Stdio::null()).output().unwrap())
}

/// The common job: root preopen "/" and the given module and args.
fn job(module: &str, args: &[&str]) -> serde_json::Value {
    let mut argv = vec![module.to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    serde_json::json!({
        "module": module,
        "args": argv,
        "env": ["PATH=/bin", "HELLO_NAME=strata"],
        "preopens": [{"guest": "/", "host": "/"}],
    })
}

#[test]
fn hello_prints_args_and_env_and_exits_zero() {
    let r = run_job(job(&guest("hello"), &["one", "two words"]), None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "hello from a wasm container");
    assert!(lines.contains(&"argc=3"), "{}", r.stdout);
    assert!(lines.contains(&"argv[1]=one"));
    assert!(lines.contains(&"argv[2]=two words"));
    assert!(lines.contains(&"env HELLO_NAME=strata"));
    assert!(lines.contains(&"env PATH=/bin"));
}

#[test]
fn proc_exit_code_is_the_exit_code() {
    let r = run_job(job(&guest("hello"), &["exit", "3"]), None);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stdout.starts_with("hello from a wasm container\n"));
    // A WAT guest calling proc_exit(0) directly.
    let r = run_job(job(&guest("hello-wat"), &[]), None);
    assert_eq!((r.code, r.stdout.as_str()), (0, "hello from a wasm container\n"), "{}", r.stderr);
}

#[test]
fn component_runs_through_wasi_cli_run() {
    let r = run_job(job(&guest("hello-component"), &["p2"]), None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("hello from a wasm container\n"));
    assert!(r.stdout.contains("argv[1]=p2\n"));
    assert!(r.stdout.contains("env HELLO_NAME=strata\n"));
    assert!(r.stderr.contains("component, wasi:cli/run"), "{}", r.stderr);
    // Through the preview1 adapter any non-zero exit code comes out as 1.
    let r = run_job(job(&guest("hello-component"), &["exit", "3"]), None);
    assert_eq!(r.code, 1, "{}", r.stderr);
}

#[test]
fn trap_reports_message_and_backtrace_and_exits_134() {
    let r = run_job(job(&guest("trap"), &[]), None);
    assert_eq!(r.code, 134, "{}", r.stderr);
    assert_eq!(r.stdout, "trap: about to hit unreachable\n");
    assert!(r.stderr.contains("wasm trap:") && r.stderr.contains("unreachable"), "{}", r.stderr);
    // The backtrace names the functions (from the name section), innermost first.
    let explode = r.stderr.find("explode").expect("backtrace names $explode");
    let deeper = r.stderr.find("deeper").expect("backtrace names $deeper");
    assert!(explode < deeper, "{}", r.stderr);
}

/// A guest that fails other than by a trap (here WASI's proc_exit with a code it refuses): one
/// line naming the cause, then the backtrace once.
#[test]
fn a_failed_guest_names_the_cause_then_the_backtrace_once() {
    let dir = tempfile::tempdir().unwrap();
    let module = wat::parse_str(
        r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
            (memory (export "memory") 1)
            (func (export "_start") i32.const 200 call $exit))"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("exit200.wasm"), module).unwrap();
    let r = run_job(job(&dir.path().join("exit200.wasm").to_string_lossy(), &[]), None);
    assert_eq!(r.code, 134, "{}", r.stderr);
    let first = r.stderr.lines().find(|l| l.starts_with("strata: ")).expect("an error line");
    assert!(first.ends_with("wasm guest failed: exit with invalid exit status outside of [0..126)"), "{}", r.stderr);
    assert_eq!(r.stderr.matches("wasm backtrace").count(), 1, "{}", r.stderr);
}

#[test]
fn files_through_preopens_and_read_only_volumes() {
    let image = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(image.path().join("etc")).unwrap();
    std::fs::write(image.path().join("etc/greeting.txt"), "greetings from the image\n").unwrap();
    let volume = tempfile::tempdir().unwrap();
    let ro = tempfile::tempdir().unwrap();
    std::fs::write(ro.path().join("kept.txt"), "kept\n").unwrap();
    let preopens = serde_json::json!([
        {"guest": "/", "host": image.path()},
        {"guest": "/data", "host": volume.path()},
        {"guest": "/ro", "host": ro.path(), "read_only": true},
    ]);
    let files = guest("files");
    let mut j = job(&files, &["read", "/etc/greeting.txt", "write", "/data/out.txt", "written", "ls", "/data"]);
    j["preopens"] = preopens.clone();
    let r = run_job(j, None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "greetings from the image\nwrote 8 bytes to /data/out.txt\nls /data: out.txt\n");
    assert_eq!(std::fs::read_to_string(volume.path().join("out.txt")).unwrap(), "written\n");

    // Reading a read-only volume works; writing to it is refused inside the guest.
    let mut j = job(&files, &["read", "/ro/kept.txt", "write", "/ro/new.txt", "x"]);
    j["preopens"] = preopens.clone();
    let r = run_job(j, None);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.stdout, "kept\n");
    assert!(r.stderr.contains("files: write /ro/new.txt:"), "{}", r.stderr);
    assert!(!ro.path().join("new.txt").exists());

    // Nothing outside the preopens is reachable, not even through "..".
    let mut j = job(&files, &["read", "/../../../../etc/hostname"]);
    j["preopens"] = preopens;
    let r = run_job(j, None);
    assert_eq!(r.code, 1, "{}", r.stderr);
}

#[test]
fn a_mount_that_is_a_file_is_reachable_through_the_root() {
    // docker's /etc/hosts is a file bind mount: not a WASI preopen, but there under "/".
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(root.path().join("etc/hosts"), "127.0.0.1\tlocalhost\n").unwrap();
    let mut j = job(&guest("files"), &["read", "/etc/hosts"]);
    j["preopens"] = serde_json::json!([
        {"guest": "/", "host": root.path()},
        {"guest": "/etc/hosts", "host": root.path().join("etc/hosts")},
    ]);
    let r = run_job(j, None);
    assert_eq!((r.code, r.stdout.as_str()), (0, "127.0.0.1\tlocalhost\n"), "{}", r.stderr);
}

#[test]
fn memory_limit_makes_allocation_fail_inside_the_guest() {
    let mut j = job(&guest("grow"), &["256"]);
    j["memory_limit"] = serde_json::json!(16 * 1024 * 1024);
    let r = run_job(j, None);
    assert_eq!(r.code, 42, "{}{}", r.stdout, r.stderr);
    let n = support::wasm::grow_failed_after(&r.stdout);
    // The guest's share is the limit less the executor's own memory and its reserve.
    assert!(n < 16, "allocated {n} MiB under a 16 MiB limit");
    // Without a limit the same growth succeeds.
    let r = run_job(job(&guest("grow"), &["64"]), None);
    assert_eq!((r.code, r.stdout.as_str()), (0, "grow: allocated 64 MiB\n"), "{}", r.stderr);
}

/// Start a guest, wait until the executor says it is running, signal it, and return its exit
/// code and the time from the signal to its exit. Its stdin is a pipe we never write to.
fn signal_running_guest(module: &str, signal: i32) -> (i32, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.json");
    std::fs::write(&file, job(module, &[]).to_string()).unwrap();
    let mut child = Command::new(RUNNER)
        .arg("--debug")
        .arg(&file)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "guest never started");
        if line.contains("starting") {
            break;
        }
    }
    let sent = Instant::now();
    // SAFETY: signalling our own child by pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    drop(child.stdin.take());
    (status.code().unwrap_or(-1), sent.elapsed())
}

#[test]
fn sigterm_interrupts_a_tight_loop() {
    for module in [guest("busy-loop"), guest("busy")] {
        let (code, took) = signal_running_guest(&module, libc::SIGTERM);
        assert_eq!(code, 143, "{module}");
        assert!(took < Duration::from_secs(1), "{module}: took {took:?}");
    }
    let (code, _) = signal_running_guest(&guest("busy-loop"), libc::SIGINT);
    assert_eq!(code, 130);
}

#[test]
fn sigterm_ends_a_guest_blocked_in_a_host_call() {
    // Waiting in fd_read on stdin, the guest never reaches an epoch check; the signal thread
    // ends the process after its grace period, still with 128+SIGTERM.
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("reader.wasm");
    let wasm = wat::parse_str(
        r#"(module
             (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
             (memory (export "memory") 1)
             (func (export "_start")
               (i32.store (i32.const 0) (i32.const 64))
               (i32.store (i32.const 4) (i32.const 64))
               (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
    )
    .unwrap();
    std::fs::write(&module, wasm).unwrap();
    let (code, took) = signal_running_guest(&module.to_string_lossy(), libc::SIGTERM);
    assert_eq!(code, 143);
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[test]
// The child is reaped by wait4 (for its rusage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn cpu_quota_slows_the_guest_down() {
    let mut j = job(&guest("busy"), &["150"]);
    j["cpu"] = serde_json::json!({"quota": 25_000, "period": 100_000});
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.json");
    std::fs::write(&file, j.to_string()).unwrap();
    let start = Instant::now();
    let child = Command::new(RUNNER).arg(&file).stdout(Stdio::null()).spawn().unwrap();
    let mut status = 0;
    // SAFETY: plain wait4 on our child; the rusage out-param is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    let wall = start.elapsed().as_secs_f64();
    let cpu = usage.ru_utime.tv_sec as f64 + usage.ru_utime.tv_usec as f64 / 1e6;
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    // A 25% quota: the guest may use well under all of the wall time (generous bound).
    assert!(cpu < 0.6 * wall, "cpu {cpu:.3}s of wall {wall:.3}s under a 25% quota");
}

#[test]
fn second_run_hits_the_cache_and_a_corrupt_entry_is_rebuilt() {
    let cache = tempfile::tempdir().unwrap();
    // A private copy of the module, so other tests' runs don't share its file identity.
    let module_dir = tempfile::tempdir().unwrap();
    let module = module_dir.path().join("hello.wasm");
    std::fs::copy(guest("hello"), &module).unwrap();
    let j = job(&module.to_string_lossy(), &[]);

    let first = run_job(j.clone(), Some(cache.path()));
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(first.stderr.contains("wasm cache miss sha256:"), "{}", first.stderr);
    let second = run_job(j.clone(), Some(cache.path()));
    assert_eq!(second.code, 0);
    assert!(second.stderr.contains("wasm cache hit sha256:"), "{}", second.stderr);
    assert!(second.stderr.contains("by file identity"), "{}", second.stderr);
    assert_eq!(first.stdout, second.stdout);

    // Flip a byte in the middle of the artifact: detected, rebuilt, and the run still works.
    let artifact = find_artifacts(cache.path()).pop().expect("an artifact");
    let mut bytes = std::fs::read(&artifact).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&artifact, &bytes).unwrap();
    let third = run_job(j.clone(), Some(cache.path()));
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert!(third.stderr.contains("invalid (checksum mismatch); rebuilding"), "{}", third.stderr);
    assert!(third.stderr.contains("wasm cache miss"), "{}", third.stderr);
    assert_eq!(third.stdout, first.stdout);
    let fourth = run_job(j, Some(cache.path()));
    assert!(fourth.stderr.contains("wasm cache hit"), "{}", fourth.stderr);

    // The same module at another path (a new identity) still hits by content digest.
    let copy = module_dir.path().join("copy.wasm");
    std::fs::copy(&module, &copy).unwrap();
    let fifth = run_job(job(&copy.to_string_lossy(), &[]), Some(cache.path()));
    assert!(fifth.stderr.contains("wasm cache hit sha256:"), "{}", fifth.stderr);
    assert!(!fifth.stderr.contains("by file identity"), "{}", fifth.stderr);
}

fn find_artifacts(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(find_artifacts(&p));
        } else if p.extension().is_some_and(|x| x == "cwasm") {
            out.push(p);
        }
    }
    out
}

/// The one line (besides debug log lines) the executor printed on stderr.
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| !l.contains("DEBUG")).collect()
}

#[test]
fn bytes_that_are_not_wasm_give_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("app.wasm");
    std::fs::write(&bad, "#!/bin/sh\necho not wasm\n").unwrap();
    let r = run_job(job(&bad.to_string_lossy(), &[]), None);
    assert_eq!(r.code, 126);
    let lines = error_lines(&r.stderr);
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert!(lines[0].contains("is not a WebAssembly module or component"), "{}", lines[0]);
    assert!(lines[0].contains("app.wasm"));

    // Wasm magic but garbage after it: invalid, also 126 with one line.
    std::fs::write(&bad, b"\0asm\x01\0\0\0\xff\xff\xff").unwrap();
    let r = run_job(job(&bad.to_string_lossy(), &[]), None);
    assert_eq!(r.code, 126);
    assert_eq!(error_lines(&r.stderr).len(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("invalid WebAssembly"), "{}", r.stderr);

    let r = run_job(job(&dir.path().join("missing.wasm").to_string_lossy(), &[]), None);
    assert_eq!(r.code, 127);
    assert!(r.stderr.contains("cannot open wasm module"), "{}", r.stderr);
}

#[test]
fn an_import_we_do_not_provide_is_named() {
    let dir = tempfile::tempdir().unwrap();
    // A component that needs an interface no WASI host has.
    let component = support::wasm::component_with_missing_import();
    std::fs::write(dir.path().join("needs.wasm"), component).unwrap();
    let r = run_job(job(&dir.path().join("needs.wasm").to_string_lossy(), &[]), None);
    assert_eq!(r.code, 126, "{}", r.stderr);
    let lines = error_lines(&r.stderr);
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert!(lines[0].contains(support::wasm::MISSING_IMPORT), "{}", lines[0]);

    // A core module importing a function that is not WASI.
    let module = wat::parse_str(r#"(module (import "env" "missing_fn" (func)) (func (export "_start")))"#).unwrap();
    std::fs::write(dir.path().join("core.wasm"), module).unwrap();
    let r = run_job(job(&dir.path().join("core.wasm").to_string_lossy(), &[]), None);
    assert_eq!(r.code, 126, "{}", r.stderr);
    let lines = error_lines(&r.stderr);
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert!(lines[0].contains("env::missing_fn"), "{}", lines[0]);
}

#[test]
fn stdout_reaches_a_pipe_while_the_guest_still_runs() {
    // busy prints "busy: spinning\n" then never returns: the line must already be in the pipe.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.json");
    std::fs::write(&file, job(&guest("busy"), &[]).to_string()).unwrap();
    let mut child = Command::new(RUNNER).arg(&file).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "busy: spinning\n");
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(143));
}
