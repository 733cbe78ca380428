//! containerd-shim-strata-v1 against Debian's real containerd 1.6 and its `ctr`: wasm and
//! native containers, the task verbs, terminals, stdin, many tasks at once, a shim killed
//! under containerd — and nothing left behind.
//!
//! Needs root and a private mount namespace (`scripts/test` runs the suite in one).

mod support;

use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::*;

#[test]
fn version_flag_prints_the_version() {
    for flag in ["-v", "-version"] {
        let out =
            std::process::Command::new(env!("CARGO_BIN_EXE_containerd-shim-strata-v1")).arg(flag).output().unwrap();
        assert!(out.status.success(), "{flag}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.starts_with("containerd-shim-strata-v1:\n  Version:  "), "{stdout}");
        assert!(stdout.contains(env!("CARGO_PKG_VERSION")) && stdout.contains("io.containerd.strata.v1"), "{stdout}");
    }
}

#[test]
fn run_by_hand_the_shim_says_what_is_wrong_in_one_line() {
    let shim = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_containerd-shim-strata-v1"))
            .args(args)
            .env_remove("TTRPC_ADDRESS")
            .output()
            .unwrap()
    };
    let out = shim(&["-h"]);
    assert!(out.status.success() && text(&out.stdout).starts_with("usage: containerd-shim-strata-v1"));
    for (args, code, says) in [
        (&["-bogus"][..], 2, "flag provided but not defined: -bogus"),
        (&["frobnicate"][..], 2, "unknown action \"frobnicate\""),
        (&["-namespace", "n", "-id", "x", "start"][..], 1, "TTRPC_ADDRESS is not set"),
    ] {
        let out = shim(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.starts_with(&format!("containerd-shim-strata-v1: {says}")), "{args:?}: {stderr}");
    }
}

/// The front door alone (no daemon next to it): it does a `delete` after a container that left
/// no state itself, answering as containerd expects; for anything else, and to start a shim,
/// it needs the daemon and says so in one line.
#[test]
fn the_front_door_deletes_a_stateless_container_and_leaves_the_rest_to_the_daemon() {
    use containerd_shim::protos::protobuf::Message;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    let bundle = dir.path().join("bundle");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(bundle.join("rootfs")).unwrap();
    let front_door = bin.join("containerd-shim-strata-v1");
    std::fs::copy(env!("CARGO_BIN_EXE_containerd-shim-strata-v1"), &front_door).unwrap();
    let run = |args: &[&str]| {
        // Another test's fork between our copy's write and its close holds a writable fd of
        // the new binary until that child execs: exec fails with ETXTBSY meanwhile. Wait it out.
        for _ in 0..500 {
            let out = std::process::Command::new(&front_door)
                .args(args)
                .current_dir(&bundle)
                .env("TTRPC_ADDRESS", dir.path().join("no-containerd.sock"))
                .output();
            match out {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                other => return other.unwrap(),
            }
        }
        panic!("{} stayed busy (ETXTBSY) for 5 s", front_door.display());
    };
    let delete = ["-namespace", "n", "-id", "gone", "-address", "/nonexistent.sock", "delete"];

    let out = run(&delete);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer = containerd_shim::api::DeleteResponse::parse_from_bytes(&out.stdout).unwrap();
    assert_eq!((answer.pid, answer.exit_status), (0, 137));
    assert!(answer.exited_at.seconds > 0, "{answer:?}");

    std::fs::create_dir(bundle.join(".strata")).unwrap();
    let daemon = bin.join("containerd-shim-strata-v1-daemon");
    for args in [&delete[..], &["-v"][..]] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(
            text(&out.stderr),
            format!(
                "containerd-shim-strata-v1: cannot run {}: No such file or directory (os error 2)\n",
                daemon.display()
            )
        );
        assert!(out.stdout.is_empty());
    }
    // `start` with no shim to join starts the daemon itself: without one, it says so.
    let out = run(&["-namespace", "n", "-id", "new", "-address", "/nonexistent.sock", "start"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("containerd-shim-strata-v1: starting {}: No such file or directory (os error 2)\n", daemon.display())
    );
}

#[test]
fn run_rm_wasm_and_native_with_output_and_exit_codes() {
    let c = Containerd::start("strata-t-run");
    c.import_images();
    let out = c.ctr_run(&["--rm"], BUSYBOX, "native", &["sh", "-c", "echo hello native; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}\n{}", text(&out.stderr), c.log_tail());
    assert_eq!(text(&out.stdout), "hello native\n");

    let out = c.ctr_run(&["--rm"], WASM, "wasm", &["/hello.wasm", "one", "exit", "4"]);
    assert_eq!(out.status.code(), Some(4), "{}\n{}", text(&out.stderr), c.log_tail());
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("hello from a wasm container\nargc=4\nargv[0]=/hello.wasm\nargv[1]=one\n"), "{stdout}");

    // The image's entrypoint, no arguments: exit 0.
    let out = c.ctr_run(&["--rm"], WASM, "wasm-default", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("hello from a wasm container"));
    // A working directory the image lacks is made, as runc's shim does (pods' workingDir).
    let out = c.ctr_run(&["--rm", "--cwd", "/made/here"], BUSYBOX, "cwd", &["pwd"]);
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "/made/here\n".to_string()), "{}", text(&out.stderr));
    assert!(c.ctr_ok(&["task", "ls", "-q"]).trim().is_empty());
    c.ctr_ok(&["image", "ls"]);
    c.assert_no_leftovers();
}

#[test]
fn a_wasm_container_run_as_another_user_compiles_its_module_once() {
    // Kubernetes' restricted pods (runAsNonRoot, capabilities dropped): the compiled-code cache
    // is root's alone, so a guest running as user 1000 without CAP_DAC_OVERRIDE could not store
    // what it compiled and compiled at every start. The module is
    // compiled before the container's process takes its user, and stored; the next container
    // only loads it.
    let cache = tempfile::tempdir().unwrap();
    let c = Containerd::start_with_env("strata-t-nonroot", &[("STRATA_WASM_CACHE", cache.path().as_os_str())]);
    c.import_images();
    let artifacts = || -> Vec<(PathBuf, std::time::SystemTime)> {
        walk(cache.path())
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .map(|p| {
                let modified = std::fs::metadata(&p).unwrap().modified().unwrap();
                (p, modified)
            })
            .collect()
    };
    let mut stored = Vec::new();
    for id in ["nonroot-1", "nonroot-2"] {
        let no_override =
            ["--cap-drop", "CAP_DAC_OVERRIDE", "--cap-drop", "CAP_DAC_READ_SEARCH", "--cap-drop", "CAP_FOWNER"];
        let out = c.ctr_run(&[&["--rm"][..], &no_override].concat(), WASM_AS_USER, id, &["/hello.wasm"]);
        assert!(out.status.success(), "{}\n{}", text(&out.stderr), c.log_tail());
        assert!(text(&out.stdout).starts_with("hello from a wasm container\n"), "{}", text(&out.stdout));
        let now = artifacts();
        assert_eq!(now.len(), 1, "{now:?}");
        if stored.is_empty() {
            stored = now;
        } else {
            assert_eq!(now, stored, "the second container loaded the artifact, not compiled it again");
        }
    }
    c.assert_no_leftovers();
}

#[test]
fn a_privileged_container_gets_what_ctr_asks_for() {
    // ctr run --privileged: every capability containerd holds, the host's devices, no
    // seccomp, a device cgroup that allows all; what runc's shim gives it.
    let c = Containerd::start("strata-t-priv");
    c.import_images();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = status.lines().find_map(|l| l.strip_prefix("CapBnd:\t")).unwrap();
    let script =
        "grep CapEff /proc/self/status; test -c /dev/fuse && echo fuse; mount -t tmpfs none /tmp && echo mounted";
    let out = c.ctr_run(&["--rm", "--privileged"], BUSYBOX, "priv", &["sh", "-c", script]);
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), c.log_tail());
    assert_eq!(text(&out.stdout), format!("CapEff:\t{bounding}\nfuse\nmounted\n"));
    // Without it, none of that.
    let out = c.ctr_run(&["--rm"], BUSYBOX, "plain", &["sh", "-c", script]);
    assert!(!out.status.success() && !text(&out.stdout).contains("fuse"), "{}", text(&out.stdout));
    c.assert_no_leftovers();
}

#[test]
fn strata_load_warms_the_shims_cache() {
    // A node warmed before its first pod: `strata pull` or `load` compiles a wasm image's
    // modules into ROOT/cache/wasm, which is the shim's cache for strata's default root
    // (/var/lib/strata). containerd's first container of the image then loads the artifact:
    // the CLI and the shim key it alike (module digest, engine), so nothing is compiled again.
    use std::os::unix::fs::MetadataExt;
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache/wasm");
    let strata = bin_dir().join("strata");
    assert!(strata.exists(), "{} is missing: cargo build -p strata --bin strata", strata.display());
    let out = run(std::process::Command::new(&strata)
        .arg("--root")
        .arg(root.path())
        .args(["load", "-q", "-i"])
        .arg(&images()[0]));
    assert!(out.status.success(), "strata load: {}", text(&out.stderr));
    let artifacts = || -> Vec<(PathBuf, u64, std::time::SystemTime)> {
        let mut found: Vec<_> = walk(&cache)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .map(|p| {
                let md = std::fs::metadata(&p).unwrap();
                (p, md.ino(), md.modified().unwrap())
            })
            .collect();
        found.sort();
        found
    };
    let precompiled = artifacts();
    assert_eq!(precompiled.len(), 2, "hello.wasm and busy-loop.wasm: {precompiled:?}");

    let c = Containerd::start_with_env("strata-t-warm", &[("STRATA_WASM_CACHE", cache.as_os_str())]);
    c.import_images();
    let out = c.ctr_run(&["--rm"], WASM, "warm-1", &["/hello.wasm"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), c.log_tail());
    assert!(text(&out.stdout).starts_with("hello from a wasm container\n"), "{}", text(&out.stdout));
    // The same files: no artifact added under another key, none rewritten (a compile stores
    // through a rename: a new inode).
    assert_eq!(artifacts(), precompiled, "the shim loaded what strata compiled");
    c.assert_no_leftovers();
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn detached_task_verbs() {
    let c = Containerd::start("strata-t-verbs");
    c.import_images();
    let fifo = c.fifo();
    let out = c.ctr_run(&["-d"], BUSYBOX, "d1", &["sleep", "1000"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), c.log_tail());
    let status = |id: &str| {
        let ls = c.ctr_ok(&["task", "ls"]);
        ls.lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .map(|l| l.split_whitespace().nth(2).unwrap_or("").to_string())
    };
    assert_eq!(status("d1").as_deref(), Some("RUNNING"));
    let ls = c.ctr_ok(&["task", "ls"]);
    let pid: i32 =
        ls.lines().find(|l| l.starts_with("d1")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(alive(pid));
    let ps = c.ctr_ok(&["task", "ps", "d1"]);
    assert!(ps.lines().any(|l| l.split_whitespace().next() == Some(&pid.to_string())), "{ps}");

    // exec: output and exit code, and it shows up in ps while it runs.
    let out =
        c.ctr(&["task", "exec", "--fifo-dir", &fifo, "--exec-id", "e1", "d1", "sh", "-c", "echo in exec; exit 5"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "in exec\n");
    let mut bg = c
        .ctr_cmd(&["task", "exec", "--fifo-dir", &fifo, "--exec-id", "e2", "d1", "sleep", "1000"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the exec in ps", Duration::from_secs(10), || c.ctr_ok(&["task", "ps", "d1"]).lines().count() >= 3);
    // As with runc's shim, ps names the exec a pid belongs to.
    let ps = c.ctr_ok(&["task", "ps", "d1"]);
    assert!(ps.lines().any(|l| l.contains("ExecID:e2")), "{ps}");
    c.ctr_ok(&["task", "kill", "--exec-id", "e2", "d1"]);
    let status_e2 = bg.wait().unwrap();
    assert_eq!(status_e2.code(), Some(143), "exec killed with SIGTERM");

    c.ctr_ok(&["task", "pause", "d1"]);
    assert_eq!(status("d1").as_deref(), Some("PAUSED"));
    let again = c.ctr(&["task", "pause", "d1"]);
    assert!(!again.status.success() && text(&again.stderr).contains("cannot pause a paused container"), "{again:?}");
    // gRPC's Unimplemented (containerd: "not implemented"), not the generated NotFound.
    let checkpoint = c.ctr(&["task", "checkpoint", "d1"]);
    let said = text(&checkpoint.stderr);
    assert!(!checkpoint.status.success() && said.contains("not supported by strata"), "{checkpoint:?}");
    assert!(said.contains("not implemented") && !said.contains("not found"), "{said}");
    c.ctr_ok(&["task", "resume", "d1"]);
    assert_eq!(status("d1").as_deref(), Some("RUNNING"));
    let again = c.ctr(&["task", "resume", "d1"]);
    assert!(text(&again.stderr).contains("cannot resume a running container"), "{again:?}");

    // Metrics as runc's shim gives them: memory.stat passed on (kubelet's working set is the
    // usage less the inactive file cache), and the CPU time per CPU.
    let out = c.ctr(&[
        "task",
        "exec",
        "--fifo-dir",
        &fifo,
        "--exec-id",
        "e3",
        "d1",
        "dd",
        "if=/dev/zero",
        "of=/cache-file",
        "bs=1M",
        "count=8",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let metrics = c.ctr_ok(&["task", "metrics", "d1"]);
    let value = |key: &str| {
        let line = metrics.lines().find(|l| l.split_whitespace().next() == Some(key));
        line.unwrap_or_else(|| panic!("{key} in {metrics}")).split_once(char::is_whitespace).unwrap().1.trim()
    };
    let number = |key: &str| value(key).parse::<u64>().unwrap_or_else(|_| panic!("{key} in {metrics}"));
    assert!(number("memory.usage_in_bytes") >= 8 << 20, "{metrics}");
    assert!(number("memory.stat.cache") >= 8 << 20, "the file the exec wrote: {metrics}");
    let per_cpu: Vec<u64> =
        value("cpuacct.usage_percpu").trim_matches(['[', ']']).split_whitespace().map(|n| n.parse().unwrap()).collect();
    assert!(!per_cpu.is_empty() && per_cpu.iter().sum::<u64>() > 0, "{metrics}");
    assert!(per_cpu.iter().sum::<u64>() <= number("cpuacct.usage") + 1_000_000, "{metrics}");
    assert_eq!(number("pids.current"), 1, "{metrics}");

    // kill --all with SIGKILL: the init dies of it, and delete reports 137.
    c.ctr_ok(&["task", "kill", "--all", "--signal", "SIGKILL", "d1"]);
    wait_for("d1 to stop", Duration::from_secs(10), || status("d1").as_deref() == Some("STOPPED"));
    assert!(!alive(pid));
    for verb in ["pause", "resume"] {
        let out = c.ctr(&["task", verb, "d1"]);
        let said = text(&out.stderr);
        assert!(!out.status.success() && said.contains(&format!("cannot {verb} a stopped container")), "{said}");
    }
    let out = c.ctr(&["task", "delete", "d1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("exit code 137"), "{}", text(&out.stderr));
    c.ctr_ok(&["container", "rm", "d1"]);

    // A long-running wasm container: exec runs another module in it.
    let out = c.ctr_run(&["-d"], WASM, "w1", &["/busy-loop.wasm"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Its process is named for its program, not for the shim daemon it was forked from.
    let ls = c.ctr_ok(&["task", "ls"]);
    let w1: i32 = ls.lines().find(|l| l.starts_with("w1")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(std::fs::read_to_string(format!("/proc/{w1}/comm")).unwrap(), "busy-loop.wasm\n");
    let cmdline = std::fs::read_to_string(format!("/proc/{w1}/cmdline")).unwrap();
    assert_eq!(cmdline.trim_end_matches('\0'), "/busy-loop.wasm", "{cmdline:?}");
    let out = c.ctr(&["task", "exec", "--fifo-dir", &fifo, "--exec-id", "we", "w1", "/hello.wasm", "exit", "2"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("hello from a wasm container"));
    let out = c.ctr(&["task", "exec", "--fifo-dir", &fifo, "--exec-id", "wn", "w1", "/bin/sh"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no such file or directory"), "{}", text(&out.stderr));
    // Left alone a second, the shim and the wasm container's process give back the pages of
    // code that created, started and exec'd into it (strata::working_set): a debug build's
    // shim had ~29 MB resident at its peak and kept it (~10 MB after the trim).
    let shim = c.shim_of("w1").expect("w1's shim");
    for (what, pid) in [("the shim", shim), ("w1's process", w1)] {
        wait_for(&format!("{what} to keep under half its peak RSS"), Duration::from_secs(20), || {
            rss_below_half_peak(pid)
        });
    }
    c.ctr_ok(&["task", "kill", "-s", "SIGKILL", "w1"]);
    wait_for("w1 to stop", Duration::from_secs(10), || status("w1").as_deref() == Some("STOPPED"));
    c.ctr_ok(&["task", "delete", "w1"]);
    c.ctr_ok(&["container", "rm", "w1"]);
    c.assert_no_leftovers();
}

/// A container that joins another's pid namespace (as Kubernetes' shareProcessNamespace
/// does) leaves its other processes behind when its init exits: the shim kills what is left
/// in its cgroup before it reports the exit, as runc's does, and `kill --all` still reaches
/// its cgroup after the exit.
#[test]
fn a_container_in_a_shared_pid_namespace_takes_its_processes_along() {
    let c = Containerd::start("strata-t-pidns");
    c.import_images();
    let task_pids = |id: &str| -> Vec<i32> {
        c.ctr_ok(&["task", "ps", id])
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    };
    let out = c.ctr_run(&["-d"], BUSYBOX, "holder", &["sleep", "1000"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), c.log_tail());
    let holder = task_pids("holder")[0];
    let ns = format!("pid:/proc/{holder}/ns/pid");
    let out = c.ctr_run(&["-d", "--with-ns", &ns], BUSYBOX, "joiner", &["sh", "-c", "sleep 77 & sleep 3"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), c.log_tail());
    let mut left = Vec::new();
    wait_for("the joiner's two processes", Duration::from_secs(10), || {
        left = task_pids("joiner");
        left.len() >= 2
    });
    let status = |id: &str| c.ctr_ok(&["task", "ls"]).lines().any(|l| l.starts_with(id) && l.ends_with("STOPPED"));
    wait_for("the joiner's init to exit", Duration::from_secs(20), || status("joiner"));
    assert_eq!(task_pids("joiner"), Vec::<i32>::new(), "processes left in the joiner's cgroup");
    assert!(left.iter().all(|&pid| !alive(pid)), "{left:?}");
    c.ctr_ok(&["task", "kill", "--all", "--signal", "SIGKILL", "joiner"]);
    c.ctr_ok(&["task", "delete", "joiner"]);
    c.ctr_ok(&["container", "rm", "joiner"]);
    assert!(alive(holder), "the holder of the namespace lives on");
    c.ctr_ok(&["task", "kill", "--signal", "SIGKILL", "holder"]);
    wait_for("the holder to exit", Duration::from_secs(10), || status("holder"));
    c.ctr_ok(&["task", "delete", "holder"]);
    c.ctr_ok(&["container", "rm", "holder"]);
    c.assert_no_leftovers();
}

/// `--log-uri binary://...` (nerdctl's `run -d` logs this way): the shim starts the logging
/// binary with the container's stdout and stderr on fds 3 and 4, as containerd's runc shim.
#[test]
fn a_logging_binary_gets_a_detached_containers_output() {
    let c = Containerd::start("strata-t-binlog");
    c.import_images();
    let dir = tempfile::tempdir().unwrap();
    let (logger, out) = (dir.path().join("logger"), dir.path().join("log"));
    let script = format!(
        "#!/bin/sh\nexec 5>&-\ncat <&3 > {out}.1 & cat <&4 > {out}.2; wait\n\
         echo \"$CONTAINER_NAMESPACE/$CONTAINER_ID $*\" >> {out}.2; mv {out}.2 {out}\n",
        out = out.display()
    );
    std::fs::write(&logger, script).unwrap();
    std::fs::set_permissions(&logger, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let uri = format!("binary://{}?tag=t1", logger.display());
    let out_cmd =
        c.ctr_run(&["-d", "--log-uri", &uri], BUSYBOX, "logged", &["sh", "-c", "echo to out; echo to err >&2"]);
    assert!(out_cmd.status.success(), "{}\n{}", text(&out_cmd.stderr), c.log_tail());
    wait_for("the logging binary to finish", Duration::from_secs(20), || out.exists());
    assert_eq!(std::fs::read_to_string(dir.path().join("log.1")).unwrap(), "to out\n");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "to err\nstrata-t-binlog/logged tag t1\n");
    wait_for("the container to stop", Duration::from_secs(10), || {
        c.ctr_ok(&["task", "ls"]).lines().any(|l| l.starts_with("logged") && l.ends_with("STOPPED"))
    });
    c.ctr_ok(&["task", "delete", "logged"]);
    c.ctr_ok(&["container", "rm", "logged"]);
    c.assert_no_leftovers();
}

#[test]
fn stdin_is_delivered() {
    let c = Containerd::start("strata-t-stdin");
    c.import_images();
    // `ctr run` with `input` on its stdin; its stdout.
    let run_with_stdin = |id: &str, cmd: &[&str], input: &[u8]| {
        let a = c.run_args(&["--rm"], BUSYBOX, id, cmd);
        let mut child = c
            .ctr_cmd(&a.iter().map(String::as_str).collect::<Vec<_>>())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{id}: {}", c.log_tail());
        text(&out.stdout)
    };
    assert_eq!(run_with_stdin("in1", &["sh", "-c", "read x; echo got $x"], b"hello stdin\n"), "got hello stdin\n");
    // `cat` reads to EOF: the client closing its end reaches the container (no CloseIO
    // needed: ctr 1.6 never sends it when stdin ends first).
    assert_eq!(run_with_stdin("in2", &["cat"], b"all of it\n"), "all of it\n");
    c.assert_no_leftovers();
}

#[test]
fn terminal_through_a_pty() {
    let c = Containerd::start("strata-t-tty");
    c.import_images();
    let master = rustix::pty::openpt(rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY).unwrap();
    rustix::pty::grantpt(&master).unwrap();
    rustix::pty::unlockpt(&master).unwrap();
    let name = rustix::pty::ptsname(&master, Vec::new()).unwrap();
    let slave = std::fs::OpenOptions::new().read(true).write(true).open(name.to_str().unwrap()).unwrap();
    rustix::termios::tcsetwinsize(
        master.as_fd(),
        rustix::termios::Winsize { ws_row: 33, ws_col: 77, ws_xpixel: 0, ws_ypixel: 0 },
    )
    .unwrap();
    let a = c.run_args(&["--rm", "-t"], BUSYBOX, "tty1", &[
            "sh",
            "-c",
            // ctr sends the size right after Start: wait for it (bounded), then show it.
            "tty; i=0; while ! stty -a | grep -q 'rows [1-9]' && [ $i -lt 20000 ]; do i=$((i+1)); done; stty -a | head -1; exit 6",
        ]);
    let mut child = c
        .ctr_cmd(&a.iter().map(String::as_str).collect::<Vec<_>>())
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    let reader = std::thread::spawn(move || read_all(std::fs::File::from(master)));
    let status = child.wait().unwrap();
    drop(child);
    let output = reader.join().unwrap();
    assert_eq!(status.code(), Some(6), "{output}\n{}", c.log_tail());
    assert!(output.contains("/dev/pts/0"), "the container's own pty: {output}");
    assert!(output.contains("rows 33; columns 77"), "ctr's window size reached the container: {output}");
    c.assert_no_leftovers();
}

/// Task `i` of a crowd (`ctr run FLAGS`): even ones busybox, odd ones the wasm hello, each
/// printing its number.
fn run_numbered(c: &Containerd, flags: &[&str], i: usize) -> std::process::Output {
    let id = format!("task{i}");
    if i.is_multiple_of(2) {
        c.ctr_run(flags, BUSYBOX, &id, &["sh", "-c", &format!("echo task {i}")])
    } else {
        c.ctr_run(flags, WASM, &id, &["/hello.wasm", &format!("task{i}")])
    }
}

/// Every numbered task succeeded and printed its own number.
fn assert_numbered(c: &Containerd, outputs: Vec<(usize, std::process::Output)>) {
    for (i, out) in outputs {
        assert!(out.status.success(), "task {i}: {}{}\n{}", text(&out.stdout), text(&out.stderr), c.log_tail());
        let stdout = text(&out.stdout);
        if i.is_multiple_of(2) {
            assert_eq!(stdout, format!("task {i}\n"));
        } else {
            assert!(stdout.contains(&format!("argv[1]=task{i}")), "{stdout}");
        }
    }
}

#[test]
fn twenty_tasks_at_once() {
    let c = Containerd::start("strata-t-many");
    c.import_images();
    let outputs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let c = &c;
                s.spawn(move || (i, run_numbered(c, &["--rm"], i)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_numbered(&c, outputs);
    c.assert_no_leftovers();
}

#[test]
fn killed_shim_means_an_exited_task() {
    let c = Containerd::start("strata-t-crash");
    c.import_images();
    let out = c.ctr_run(&["-d"], BUSYBOX, "k1", &["sleep", "1000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ls = c.ctr_ok(&["task", "ls"]);
    let pid: i32 =
        ls.lines().find(|l| l.starts_with("k1")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let shim = c.shim_of("k1").expect("k1's shim");
    // SAFETY: the shim of our own private containerd, by pid.
    unsafe { libc::kill(shim, libc::SIGKILL) };
    // containerd sees the shim go, runs its `delete` action (which kills the container), and
    // reports the task exited: it is no longer listed as running.
    wait_for("containerd to drop the task", Duration::from_secs(20), || {
        !c.ctr_ok(&["task", "ls"]).lines().any(|l| l.starts_with("k1") && l.contains("RUNNING"))
    });
    wait_for("the container's process to die", Duration::from_secs(10), || !alive(pid));
    let _ = c.ctr(&["task", "delete", "k1"]);
    c.ctr_ok(&["container", "rm", "k1"]);
    assert!(c.log().contains("cleaning up dead shim"), "{}", c.log_tail());
    c.assert_no_leftovers();
}

#[test]
fn oom_kill_is_exit_137_and_an_oom_event() {
    let c = Containerd::start("strata-t-oom");
    c.import_images();
    let mut events = c.events();
    // The subscription is live once a first container's events come through.
    let out = c.ctr_run(&["--rm"], BUSYBOX, "probe", &["true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let live = events.wait_for(Duration::from_secs(10), &|l| l.contains("/tasks/exit") && l.contains("probe"));

    let limit = (32u64 << 20).to_string();
    let hog = ["dd", "if=/dev/zero", "of=/dev/null", "bs=96M", "count=1"];
    let out = c.ctr_run(&["--rm", "--memory-limit", &limit], BUSYBOX, "hog", &hog);
    assert_eq!(out.status.code(), Some(137), "OOM-killed: {}\n{}", text(&out.stderr), c.log_tail());
    let oom = events.wait_for(Duration::from_secs(10), &|l| l.contains("/tasks/oom") && l.contains("hog"));
    assert!(live && oom, "no /tasks/oom event for hog (stream live: {live}); events seen:\n{}", events.seen.join("\n"));
    drop(events);
    // Within the limit the same program runs.
    let fits = ["dd", "if=/dev/zero", "of=/dev/null", "bs=4M", "count=1"];
    let out = c.ctr_run(&["--rm", "--memory-limit", &limit], BUSYBOX, "fits", &fits);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    c.assert_no_leftovers();
}

/// After containerd restarts, a running task's shim publishes its next events in order: the
/// first one, whose connection was to the old containerd, is not sent after the ones behind
/// it (the shim library's publisher requeued it for a second).
#[test]
fn events_stay_in_order_across_a_containerd_restart() {
    let mut c = Containerd::start("strata-t-restart");
    c.import_images();
    let out = c.ctr_run(&["-d"], BUSYBOX, "lives-on", &["sleep", "1000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    c.restart();
    let mut events = c.events();
    // The stream is live once an event of a new container comes through.
    let out = c.ctr_run(&["--rm"], BUSYBOX, "probe", &["true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(events.wait_for(Duration::from_secs(10), &|l| l.contains("/tasks/exit") && l.contains("probe")));
    c.ctr_ok(&["task", "exec", "--exec-id", "x1", "lives-on", "true"]);
    let exited = |l: &str| l.contains("/tasks/exit") && l.contains("\"x1\"");
    assert!(events.wait_for(Duration::from_secs(10), &exited), "no exit of exec x1:\n{}", events.seen.join("\n"));
    let order: Vec<&str> = events
        .seen
        .iter()
        .filter(|l| l.contains("x1"))
        .filter_map(|l| ["/tasks/exec-added", "/tasks/exec-started", "/tasks/exit"].into_iter().find(|t| l.contains(t)))
        .collect();
    assert_eq!(order, ["/tasks/exec-added", "/tasks/exec-started", "/tasks/exit"], "{}", events.seen.join("\n"));
    drop(events);
    c.ctr_ok(&["task", "delete", "--force", "lives-on"]);
    c.ctr_ok(&["container", "rm", "lives-on"]);
    c.assert_no_leftovers();
}

/// A private containerd with the images, for a test of shim group `group` (whose socket
/// `assert_no_leftovers` then checks too).
fn for_group(namespace: &str, group: &str) -> Containerd {
    let c = Containerd::start(namespace);
    c.import_images();
    c.ids.lock().unwrap().push(format!("io.strata.shim.group={group}"));
    c
}

/// Whether a process's resident set is under half its peak (VmRSS against VmHWM): what
/// giving back the code that started it does, whatever size the kernel maps code in.
fn rss_below_half_peak(pid: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |key: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    kb("VmRSS:") * 2 < kb("VmHWM:")
}

/// Serving shim processes of this instance (not their zygotes).
fn serving_shims(c: &Containerd) -> Vec<i32> {
    c.shim_pids().into_iter().filter(|p| c.shim_of_pid_is_serving(*p)).collect()
}

fn kill_and_remove(c: &Containerd, id: &str) {
    c.ctr_ok(&["task", "kill", "-s", "SIGKILL", id]);
    wait_for(&format!("{id} to stop"), Duration::from_secs(10), || {
        c.ctr_ok(&["task", "ls"]).lines().any(|l| l.starts_with(id) && l.contains("STOPPED"))
    });
    c.ctr_ok(&["task", "delete", id]);
    c.ctr_ok(&["container", "rm", id]);
}

#[test]
fn one_shim_serves_a_shim_group() {
    let c = for_group("strata-t-group", "g1");
    let group = ["-d", "--annotation", "io.strata.shim.group=g1"];
    let out = c.ctr_run(&group, BUSYBOX, "g-native", &["sleep", "1000"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), c.log_tail());
    let out = c.ctr_run(&group, WASM, "g-wasm", &["/busy-loop.wasm"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), c.log_tail());
    let out = c.ctr_run(&["-d"], BUSYBOX, "solo", &["sleep", "1000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let running = |id: &str| c.ctr_ok(&["task", "ls"]).lines().any(|l| l.starts_with(id) && l.contains("RUNNING"));
    assert!(running("g-native") && running("g-wasm") && running("solo"), "{}", c.ctr_ok(&["task", "ls"]));
    // The group's two containers share one shim; `solo` has its own.
    let shims = serving_shims(&c);
    assert_eq!(shims.len(), 2, "serving shims: {shims:?}");
    let group_shim = c.shim_of("g-native").expect("the group's shim started with g-native");
    // A shim that serves one container lets its zygote go once that container is created
    // (an exec is re-exec'd); a group's shim keeps its zygote for the members to come.
    let init_of = |id: &str| -> i32 {
        let ls = c.ctr_ok(&["task", "ls"]);
        let line = ls.lines().find(|l| l.split_whitespace().next() == Some(id)).expect("in task ls");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let solo_shim = c.shim_of("solo").expect("solo's shim");
    wait_for("the solo shim's zygote to exit", Duration::from_secs(10), || children(solo_shim) == [init_of("solo")]);
    let members = [init_of("g-native"), init_of("g-wasm")];
    let others: Vec<i32> = children(group_shim).into_iter().filter(|p| !members.contains(p)).collect();
    assert_eq!(others.len(), 1, "the group's shim has its zygote besides its members: {others:?}");
    let fifo = c.fifo();
    let out = c.ctr(&["task", "exec", "--fifo-dir", &fifo, "--exec-id", "e0", "solo", "echo", "in solo"]);
    assert_eq!((out.status.code(), text(&out.stdout).as_str()), (Some(0), "in solo\n"), "{}", text(&out.stderr));
    // Every verb reaches each member through the shared shim: an exec in the native one.
    let out = c.ctr(&["task", "exec", "--fifo-dir", &fifo, "--exec-id", "e1", "g-native", "echo", "in group"]);
    assert_eq!((out.status.code(), text(&out.stdout).as_str()), (Some(0), "in group\n"), "{}", text(&out.stderr));

    // One member goes: the shim keeps serving the other, and a newcomer joins it.
    kill_and_remove(&c, "g-native");
    assert!(running("g-wasm"));
    let joined = ["--rm", "--annotation", "io.strata.shim.group=g1"];
    let out = c.ctr_run(&joined, BUSYBOX, "g-late", &["echo", "late"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), c.log_tail());
    assert_eq!(text(&out.stdout), "late\n");
    assert_eq!(serving_shims(&c).len(), 2, "g-late joined the group's shim");
    assert!(alive(group_shim));
    // The shim's log reaches containerd's (it writes to a member's log FIFO, which containerd
    // reads while that member exists): also once the member that started it is gone.
    for id in ["g-native", "g-late"] {
        let line = format!("msg=\"start {id} \"");
        wait_for(&format!("the shim's log of {id}'s start"), Duration::from_secs(5), || c.log().contains(&line));
    }
    // A member that cannot be created fails alone: the shim goes on serving the group.
    let out = c.ctr_run(&joined, BUSYBOX, "g-broken", &["/no/such/program"]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("/no/such/program"), "{}", text(&out.stderr));
    let _ = c.ctr(&["container", "rm", "g-broken"]);
    assert!(alive(group_shim) && running("g-wasm"));
    let out = c.ctr_run(&joined, BUSYBOX, "g-after", &["echo", "after"]);
    assert_eq!((out.status.code(), text(&out.stdout).as_str()), (Some(0), "after\n"), "{}", text(&out.stderr));

    // The last member goes: so does the group's shim (and its socket), after its linger.
    kill_and_remove(&c, "g-wasm");
    wait_for("the group's shim to exit", Duration::from_secs(10), || !alive(group_shim));
    kill_and_remove(&c, "solo");

    // A linger that is no number of seconds: the container does not start, and says why.
    let bad = ["--rm", "--annotation", "io.strata.shim.group=g2", "--annotation", "io.strata.shim.group.linger=soon"];
    let out = c.ctr_run(&bad, BUSYBOX, "g-bad", &["true"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("io.strata.shim.group.linger: \"soon\" is not a number of seconds"), "{stderr}");
    let _ = c.ctr(&["container", "rm", "g-bad"]);
    c.assert_no_leftovers();
}

#[test]
fn a_shim_group_comes_and_goes_under_load() {
    // Members start while others end, 4 at a time: a `start` must never join a shim that is
    // exiting (its container would fail to be created). No linger, so the group's shim does
    // exit whenever it runs out of members.
    let c = for_group("strata-t-group-load", "busy");
    let next = std::sync::atomic::AtomicUsize::new(0);
    let outputs: Vec<_> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (c, next) = (&c, &next);
                s.spawn(move || {
                    let mut outs = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if i >= 24 {
                            return outs;
                        }
                        let flags = [
                            "--rm",
                            "--annotation",
                            "io.strata.shim.group=busy",
                            "--annotation",
                            "io.strata.shim.group.linger=0",
                        ];
                        outs.push((i, run_numbered(c, &flags, i)));
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    assert_numbered(&c, outputs);
    // Members joined running shims rather than each starting its own, and shims came and went.
    let started = c.log().matches("Shim successfully started").count();
    eprintln!("{started} shims served 24 containers");
    assert!((2..24).contains(&started), "{started} shims for 24 containers of one group");
    c.assert_no_leftovers();
}

#[test]
fn killing_a_group_shim_ends_every_member() {
    // A shim group shares a fate, as a pod does: containerd reports each member exited.
    let c = for_group("strata-t-group-kill", "doomed");
    let group = ["-d", "--annotation", "io.strata.shim.group=doomed"];
    let mut pids = Vec::new();
    for (image, id, cmd) in [(BUSYBOX, "k-native", &["sleep", "1000"][..]), (WASM, "k-wasm", &["/busy-loop.wasm"][..])]
    {
        let out = c.ctr_run(&group, image, id, cmd);
        assert!(out.status.success(), "{id}: {}\n{}", text(&out.stderr), c.log_tail());
        let ls = c.ctr_ok(&["task", "ls"]);
        let line = ls.lines().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("{id} not in\n{ls}"));
        pids.push(line.split_whitespace().nth(1).unwrap().parse::<i32>().unwrap());
    }
    assert_eq!(serving_shims(&c).len(), 1);
    let shim = c.shim_of("k-native").expect("the group's shim");
    // SAFETY: the shim of our own private containerd, by pid.
    unsafe { libc::kill(shim, libc::SIGKILL) };
    for id in ["k-native", "k-wasm"] {
        wait_for(&format!("containerd to drop {id}"), Duration::from_secs(20), || {
            !c.ctr_ok(&["task", "ls"]).lines().any(|l| l.starts_with(id) && l.contains("RUNNING"))
        });
    }
    for pid in pids {
        wait_for("the member's process to die", Duration::from_secs(10), || !alive(pid));
    }
    for id in ["k-native", "k-wasm"] {
        let _ = c.ctr(&["task", "delete", id]);
        c.ctr_ok(&["container", "rm", id]);
    }
    c.assert_no_leftovers();
}
