//! Wasm containers end to end through the front doors: every example of `wasm-examples/`
//! through `strata run` (each image form: compat, wasm artifact, multi-platform index; p1
//! modules and p2 components) and through `strata-oci run` (bundles), asserting output, exit
//! codes, args, env, files and volumes, limits, stop/kill, the compiled-code cache (hits seen
//! in `--log-level debug` output, never by timing), and the errors for what cannot run.
//!
//! The images are built here by `wasm-examples/build.sh` (see `support::wasm`), so a clean
//! clone is enough. Each test has its own root; run as root inside `unshare -m` (what CI does).

mod cli;
mod support;

use cli::{Outcome, Strata};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::bundle::{cgroup_leftovers, Bundle, Runtime};
use support::wasm::{archive, guest};
use support::*;

const EXAMPLES: &str = "localhost/strata-examples/wasm-examples";
const HELLO: &str = "localhost/strata-examples/hello-wasm";
const BUSYBOX: &str = "localhost/strata-examples/busybox";
const GREETING: &str = "hello from a wasm container\n";

/// A root with some of the example archives loaded; removes its containers when dropped.
struct Env {
    s: Strata,
}

impl Env {
    /// Loaded without precompiling, so a first run compiles (what the cache tests look at);
    /// `load_precompiles_a_wasm_image` covers the default.
    fn new(archives: &[&str]) -> Env {
        let s = Strata::new();
        for name in archives {
            s.ok(&["load", "-q", "--no-precompile", "-i", archive(name).to_str().unwrap()]);
        }
        Env { s }
    }

    fn run(&self, args: &[&str]) -> Outcome {
        self.s.run(args)
    }

    fn ok(&self, args: &[&str]) -> String {
        self.s.ok(args)
    }

    /// `run --rm ARGS...` with the debug log on (the executor's cache messages among it).
    fn run_debug(&self, args: &[&str]) -> Outcome {
        let mut all = vec!["--log-level", "debug", "run", "--rm"];
        all.extend_from_slice(args);
        self.run(&all)
    }

    fn inspect(&self, name: &str) -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(&self.ok(&["inspect", name])).unwrap()[0].clone()
    }

    fn cache_dir(&self) -> PathBuf {
        self.s.root().join("cache/wasm")
    }

    /// The compiled artifacts in this root's cache.
    fn artifacts(&self) -> Vec<PathBuf> {
        files_with_extension(&self.cache_dir(), "cwasm")
    }

    /// No container is left in this root, nor anything a run holds.
    fn assert_empty(&self) {
        assert!(self.s.ps(true).is_empty(), "containers left: {:?}", self.s.ps(true));
        let left: Vec<_> = std::fs::read_dir(self.s.root().join("containers"))
            .map(|d| d.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "container dirs left: {left:?}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = self.s.root().canonicalize().unwrap();
        assert!(!mounts.contains(root.to_str().unwrap()), "a mount under the root is left");
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.s.remove_all_containers();
    }
}

fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_with_extension(&p, ext));
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
    out
}

/// A run's output without the line that differs from run to run (the generated hostname).
fn stable(stdout: &str) -> String {
    stdout.lines().filter(|l| !l.starts_with("env HOSTNAME=")).map(|l| format!("{l}\n")).collect()
}

fn sha256_file(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).unwrap())
}

/// Pack a layout's image into an archive `strata load` takes, named `name`.
fn to_archive(layout: &Path, tag: &str, name: &str, dir: &Path) -> PathBuf {
    let out = dir.join(format!("{}.tar", name.replace(['/', ':'], "_")));
    skopeo_copy(&oci_ref(layout, tag), &format!("oci-archive:{}:{name}", out.display()));
    out
}

#[test]
fn every_example_through_strata_run() {
    let e = Env::new(&["wasm-examples"]);
    // hello: args, env, the exit code of proc_exit.
    let o = e.run(&["run", "--rm", "-e", "GREETING=hi", EXAMPLES, "one", "two words", "exit", "3"]);
    assert_eq!(o.code, 3, "{}", o.stderr);
    assert!(o.stdout.starts_with(GREETING), "{}", o.stdout);
    for line in ["argc=5", "argv[0]=/hello.wasm", "argv[1]=one", "argv[2]=two words", "env GREETING=hi", "env HOME=/"] {
        assert!(o.stdout.lines().any(|l| l == line), "{line} missing:\n{}", o.stdout);
    }
    assert_eq!(o.stderr, "");
    assert_eq!(e.run(&["run", "--rm", EXAMPLES]).code, 0);

    // The p2 component: the same program through wasi:cli/run; a non-zero exit becomes 1.
    let o = e.run(&["run", "--rm", "--entrypoint", "/hello-component.wasm", EXAMPLES, "p2"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.starts_with(GREETING) && o.stdout.contains("argv[1]=p2\n"), "{}", o.stdout);
    let o = e.run(&["run", "--rm", "--entrypoint", "/hello-component.wasm", EXAMPLES, "exit", "3"]);
    assert_eq!(o.code, 1, "{}", o.stderr);

    // A trap: its message and wasm backtrace on stderr, exit 134.
    let o = e.run(&["run", "--rm", "--entrypoint", "/trap.wasm", EXAMPLES]);
    assert_eq!(o.code, 134, "{}", o.stderr);
    assert_eq!(o.stdout, "trap: about to hit unreachable\n");
    assert!(o.stderr.contains("wasm trap") && o.stderr.contains("unreachable"), "{}", o.stderr);
    assert!(o.stderr.contains("explode") && o.stderr.contains("deeper"), "backtrace: {}", o.stderr);

    // busy with a bound ends by itself.
    let o = e.run(&["run", "--rm", "--entrypoint", "/busy.wasm", EXAMPLES, "1"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "busy: spinning\nbusy: done\n"), "{}", o.stderr);
    e.assert_empty();
}

#[test]
fn files_from_the_image_a_volume_and_tmp() {
    let e = Env::new(&["wasm-examples"]);
    let vol = tempfile::tempdir().unwrap();
    let ro = tempfile::tempdir().unwrap();
    std::fs::write(ro.path().join("kept.txt"), "kept\n").unwrap();
    let (v, r) = (format!("{}:/data", vol.path().display()), format!("{}:/ro:ro", ro.path().display()));
    let o = e.run(&[
        "run",
        "--rm",
        "-v",
        &v,
        "-v",
        &r,
        "--entrypoint",
        "/files.wasm",
        EXAMPLES,
        "read",
        "/etc/greeting.txt",
        "write",
        "/data/out.txt",
        "to the volume",
        "write",
        "/tmp/t.txt",
        "to tmp",
        "read",
        "/tmp/t.txt",
        "read",
        "/ro/kept.txt",
        "ls",
        "/etc",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(
        o.stdout,
        "greetings from the image\nwrote 14 bytes to /data/out.txt\nwrote 7 bytes to /tmp/t.txt\nto tmp\nkept\n\
         ls /etc: greeting.txt hostname hosts resolv.conf\n"
    );
    assert_eq!(std::fs::read_to_string(vol.path().join("out.txt")).unwrap(), "to the volume\n");
    // The container's /etc files are docker's, as for a native container.
    let o = e.run(&[
        "run",
        "--rm",
        "--hostname",
        "wasmhost",
        "--entrypoint",
        "/files.wasm",
        EXAMPLES,
        "read",
        "/etc/hostname",
    ]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "wasmhost\n"), "{}", o.stderr);
    // A read-only volume refuses writes inside the guest.
    let o = e.run(&["run", "--rm", "-v", &r, "--entrypoint", "/files.wasm", EXAMPLES, "write", "/ro/new.txt", "x"]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("files: write /ro/new.txt:"), "{}", o.stderr);
    assert!(!ro.path().join("new.txt").exists());
    // A named volume is a directory like any other to the guest: what one container writes
    // there, the next reads; the image's files at its destination come with a new one.
    let o = e.run(&[
        "run",
        "--rm",
        "-v",
        "wasmdata:/etc",
        "--entrypoint",
        "/files.wasm",
        EXAMPLES,
        "write",
        "/etc/n.txt",
        "named",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = e.run(&[
        "run",
        "--rm",
        "-v",
        "wasmdata:/v:ro",
        "--entrypoint",
        "/files.wasm",
        EXAMPLES,
        "read",
        "/v/n.txt",
        "read",
        "/v/greeting.txt",
    ]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "named\ngreetings from the image\n"), "{}", o.stderr);
    e.ok(&["volume", "rm", "wasmdata"]);
    e.assert_empty();
}

#[test]
fn init_is_refused_for_a_wasm_container() {
    // A wasm module is its container's only process: there is nothing to put an init in
    // front of. Refused at create, nothing made.
    let e = Env::new(&["hello-wasm"]);
    let o = e.run(&["run", "--rm", "--init", HELLO]);
    assert_eq!(o.code, 125, "{}", o.stderr);
    assert_eq!(
        o.stderr,
        "Error: --init is for native containers: a wasm module runs as its container's only process\n"
    );
    e.assert_empty();
}

#[test]
fn a_guest_cannot_reach_proc_or_sys() {
    // Through /proc/1/mem a guest could write into the process running it: a wasm container
    // has no kernel filesystems (its spec mounts none, and the sandbox detaches any that a
    // bundle mounts), while its /dev and the rest of the root stay.
    let e = Env::new(&["wasm-examples"]);
    let o = e.run(&["run", "--rm", "--entrypoint", "/files.wasm", EXAMPLES, "ls", "/dev"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.starts_with("ls /dev:") && o.stdout.contains(" null "), "{}", o.stdout);
    for path in ["/proc/1/mem", "/proc/self/status", "/sys/kernel/mm/transparent_hugepage/enabled"] {
        let o = e.run(&["run", "--rm", "--entrypoint", "/files.wasm", EXAMPLES, "read", path]);
        assert_eq!(o.code, 1, "{path}: {}", o.stderr);
        assert!(o.stderr.contains(&format!("files: read {path}: No such file or directory")), "{}", o.stderr);
    }
    // Nor through a volume that brings them along: a recursive bind of the host's root holds
    // its /proc and /sys (the container has no /proc of its own to list its mounts with).
    let host =
        |path: &str| e.run(&["run", "--rm", "-v", "/:/host", "--entrypoint", "/files.wasm", EXAMPLES, "read", path]);
    for path in ["/host/proc/self/status", "/host/proc/1/mem", "/host/sys/kernel/mm/transparent_hugepage/enabled"] {
        let o = host(path);
        assert_eq!(o.code, 1, "{path}: {}{}", o.stdout, o.stderr);
        assert!(o.stderr.contains(&format!("files: read {path}: No such file or directory")), "{}", o.stderr);
    }
    let o = host("/host/etc/hostname");
    assert_eq!((o.code, o.stdout), (0, std::fs::read_to_string("/etc/hostname").unwrap()), "{}", o.stderr);
    e.assert_empty();
}

#[test]
fn memory_limit_makes_the_guests_allocation_fail() {
    let e = Env::new(&["wasm-examples"]);
    let o = e.run(&["run", "--rm", "--memory", "64m", "--entrypoint", "/grow.wasm", EXAMPLES]);
    assert_eq!(o.code, 42, "allocation fails inside the guest, no OOM kill: {}{}", o.stdout, o.stderr);
    let mib = support::wasm::grow_failed_after(&o.stdout);
    assert!((16..64).contains(&mib), "allocated {mib} MiB under a 64 MiB limit");
    // Without a limit the same growth succeeds.
    let o = e.run(&["run", "--rm", "--entrypoint", "/grow.wasm", EXAMPLES, "96"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "grow: allocated 96 MiB\n"), "{}", o.stderr);
    // Limits down to docker's smallest: the guest's allocation fails, or (where the executor
    // itself leaves the guest nothing) its start does, with a message; never an OOM kill.
    for limit in ["6m", "10m", "16m"] {
        let o = e.run(&["run", "--rm", "--memory", limit, "--entrypoint", "/grow.wasm", EXAMPLES]);
        match o.code {
            42 => assert!(o.stdout.starts_with("grow: allocation failed after "), "{limit}: {}", o.stdout),
            _ => assert!(
                o.code != 137 && o.stderr.contains("exceeds memory limits") && o.stderr.contains("memory limit"),
                "{limit}: exit {}: {}{}",
                o.code,
                o.stdout,
                o.stderr
            ),
        }
    }
    e.assert_empty();
}

#[test]
fn rm_leaves_nothing_behind() {
    let e = Env::new(&["hello-wasm"]);
    let id = e.ok(&["run", "-d", "--rm", "--name", "gone", HELLO]).trim().to_string();
    // `wait` returns once the monitor has released the run; the record may already be gone.
    let o = e.run(&["wait", "gone"]);
    assert!(o.code == 0 || o.stderr.contains("No such container"), "{}", o.stderr);
    e.s.assert_no_trace(&id);
    e.assert_empty();
}

#[test]
fn each_image_form_runs() {
    let e = Env::new(&["hello-wasm", "hello-artifact", "hello-component", "hello-component-artifact"]);
    let forms = [
        ("hello-wasm", "/hello.wasm", "image platform is wasi/wasm"),
        ("hello-artifact", "/hello.wasm", "media type application/wasm"),
        ("hello-component", "/hello-component.wasm", "image platform is wasi/wasm"),
        ("hello-component-artifact", "/hello-component.wasm", "bytecodealliance.wasm.component.layer"),
    ];
    for (name, argv0, reason) in forms {
        let image = format!("localhost/strata-examples/{name}");
        let info = e.inspect(&image);
        assert_eq!(info["Kind"], "wasm", "{name}");
        assert!(info["KindReason"].as_str().unwrap().contains(reason), "{name}: {}", info["KindReason"]);
        let o = e.run(&["run", "--rm", "-e", "FORM=x", &image, "arg"]);
        assert_eq!(o.code, 0, "{name}: {}", o.stderr);
        assert!(o.stdout.starts_with(GREETING), "{name}: {}", o.stdout);
        assert!(o.stdout.contains(&format!("argv[0]={argv0}\nargv[1]=arg\n")), "{name}: {}", o.stdout);
        assert!(o.stdout.contains("env FORM=x\n"), "{name}: {}", o.stdout);
    }
    // The artifact's module sits in the rootfs under its layer's title; its entrypoint
    // defaults to it (the wasm config has none).
    let info = e.inspect("localhost/strata-examples/hello-artifact");
    assert_eq!(info["Config"]["Entrypoint"], serde_json::json!(["/hello.wasm"]));

    // (3) one index, two platforms: each root takes the one it asks for.
    let multi = archive("hello-multi");
    e.ok(&["load", "-q", "--platform", "wasi/wasm", "-i", multi.to_str().unwrap()]);
    let o = e.run(&["run", "--rm", "--platform", "wasi/wasm", "localhost/strata-examples/hello-multi"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.starts_with(GREETING), "{}", o.stdout);
    let native = Env::new(&[]);
    native.ok(&["load", "-q", "--platform", "linux/amd64", "-i", multi.to_str().unwrap()]);
    let o = native.run(&["run", "--rm", "localhost/strata-examples/hello-multi", "echo", "native side"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "native side\n"), "{}", o.stderr);
    assert_eq!(native.inspect("localhost/strata-examples/hello-multi")["Kind"], "native");
    e.assert_empty();
}

#[test]
fn pull_precompiles_so_the_first_run_is_warm() {
    let reg = Registry::start();
    let publisher = Env::new(&["hello-wasm", "wasm-examples"]);
    let hello = reg.reference("examples/hello-wasm", "v1");
    let examples = reg.reference("examples/wasm-examples", "v1");
    for (local, remote) in [(HELLO, &hello), (EXAMPLES, &examples)] {
        publisher.ok(&["tag", local, remote]);
        publisher.ok(&["push", "-q", remote]);
    }
    let multi = reg.reference("examples/hello-multi", "v1");
    skopeo_copy_with(
        &["--all", "--quiet"],
        &format!("oci-archive:{}:latest", archive("hello-multi").display()),
        &format!("docker://{multi}"),
    );

    // Pulled and precompiled: the first run loads the artifact (by the file's identity, not
    // even reading the module).
    let e = Env::new(&[]);
    let o = e.run(&["pull", &hello]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("Precompiled 1 wasm module"), "{}", o.stderr);
    let digest = sha256_file(&guest("hello"));
    let artifacts = e.artifacts();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    assert!(artifacts[0].to_string_lossy().contains(&digest), "{artifacts:?}");
    let o = e.run_debug(&[&hello]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.starts_with(GREETING));
    assert!(o.stderr.contains("wasm cache hit") && o.stderr.contains("by file identity"), "{}", o.stderr);
    assert!(!o.stderr.contains("wasm cache miss"), "{}", o.stderr);
    // Every module of an image is compiled, not only its entrypoint.
    let o = e.run(&["pull", &examples]);
    assert!(o.stderr.contains("Precompiled 7 wasm modules"), "{}", o.stderr);
    let o = e.run_debug(&["--entrypoint", "/trap.wasm", &examples]);
    assert_eq!(o.code, 134);
    assert!(o.stderr.contains("wasm cache hit") && !o.stderr.contains("wasm cache miss"), "{}", o.stderr);
    // The index: the platform asked for is pulled and precompiled.
    let o = e.run(&["pull", "--platform", "wasi/wasm", &multi]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = e.run_debug(&[&multi]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.starts_with(GREETING));
    assert!(o.stderr.contains("wasm cache hit"), "{}", o.stderr);

    // Opted out: the first run compiles, the second hits.
    let lazy = Env::new(&[]);
    let o = lazy.run(&["pull", "--no-precompile", &hello]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(!o.stderr.contains("Precompiled"), "{}", o.stderr);
    assert!(lazy.artifacts().is_empty());
    let first = lazy.run_debug(&[&hello]);
    assert!(first.stderr.contains("wasm cache miss") && first.stderr.contains("stored"), "{}", first.stderr);
    let second = lazy.run_debug(&[&hello]);
    assert!(second.stderr.contains("wasm cache hit"), "{}", second.stderr);
    assert!(!second.stderr.contains("wasm cache miss"), "{}", second.stderr);
    assert_eq!(stable(&first.stdout), stable(&second.stdout));
}

#[test]
fn load_precompiles_a_wasm_image() {
    // Like pull: every module of the image is compiled, and the first run only loads it.
    let e = Env::new(&[]);
    let o = e.run(&["load", "-i", archive("wasm-examples").to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout, format!("Loaded image: {EXAMPLES}:latest\n"));
    assert!(o.stderr.contains("Precompiled 7 wasm modules"), "{}", o.stderr);
    assert_eq!(e.artifacts().len(), 7);
    let o = e.run_debug(&["--entrypoint", "/hello.wasm", EXAMPLES]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.starts_with(GREETING), "{}", o.stdout);
    assert!(o.stderr.contains("wasm cache hit") && !o.stderr.contains("wasm cache miss"), "{}", o.stderr);
    // As another user too: the cache is root's alone (0700), so the artifact is loaded while
    // the container's process is still root, before it becomes user 1000.
    let o = e.run_debug(&["--user", "1000:1000", "--entrypoint", "/hello.wasm", EXAMPLES]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.starts_with(GREETING), "{}", o.stdout);
    assert!(o.stderr.contains("wasm cache hit") && !o.stderr.contains("compiled"), "{}", o.stderr);

    // A native image has nothing to compile; -q keeps the count quiet; a module compiled
    // before (hello-wasm holds the same hello.wasm) is not compiled again.
    let o = e.run(&["load", "-q", "-i", archive("busybox").to_str().unwrap()]);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""), "{}", o.stderr);
    let o = e.run(&["load", "-q", "-i", archive("hello-wasm").to_str().unwrap()]);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""), "{}", o.stderr);
    assert_eq!(e.artifacts().len(), 7);

    // A module that does not compile is a warning; the image is loaded.
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("not-wasm");
    wasm_artifact_image_with(&layout, "latest", b"this is not wasm\n");
    let bad = to_archive(&layout, "latest", "localhost/not-wasm:latest", tmp.path());
    let o = e.run(&["load", "-i", bad.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("warning: not precompiling") && o.stderr.contains("not a WebAssembly"), "{}", o.stderr);
    assert_eq!(o.stdout, "Loaded image: localhost/not-wasm:latest\n");
    assert_eq!(e.artifacts().len(), 7);
}

#[test]
fn the_precompile_child_compiles_without_privileges() {
    // The module comes from an image: the compiler never runs as root on the host. Before it
    // reads the module (from its stdin) its child takes a user of its own without any
    // capability, and a seccomp filter; it gets none of strata's fds (here one strata inherited
    // without close-on-exec, fd 7). strata stores what it wrote.
    use std::os::unix::process::CommandExt;
    let e = Env::new(&[]);
    let mut cmd = e.s.command(&["--log-level", "debug", "load", "-i", archive("hello-wasm").to_str().unwrap()]);
    // SAFETY: dup2 in the forked child before exec.
    unsafe {
        cmd.pre_exec(|| match libc::dup2(2, 7) {
            -1 => Err(std::io::Error::last_os_error()),
            _ => Ok(()),
        });
    }
    let o = Outcome::from(cmd.output().unwrap());
    assert_eq!(o.code, 0, "{}", o.stderr);
    let jailed = "wasm-precompile: compiling as uid 2147483646 gid 2147483646, capabilities effective 0 \
                  permitted 0 inheritable 0 ambient 0, no_new_privs 1, dumpable 0, seccomp 2, open fds 0 1 2\n";
    assert!(o.stderr.contains(jailed), "{}", o.stderr);
    assert!(o.stderr.contains("compiled (in a child, without privileges), stored"), "{}", o.stderr);
    assert_eq!(e.artifacts().len(), 1);
    let o = e.run_debug(&[HELLO]);
    assert!(o.stderr.contains("wasm cache hit") && !o.stderr.contains("compiled"), "{}", o.stderr);
}

#[test]
fn a_precompile_failure_is_a_warning_not_a_failed_pull() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    wasm_artifact_image_with(&layout, "v1", b"this is not wasm\n");
    push_layout(&reg, &layout, "v1", "examples/not-wasm");
    let e = Env::new(&[]);
    let reference = reg.reference("examples/not-wasm", "v1");
    let o = e.run(&["pull", &reference]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("warning: not precompiling") && o.stderr.contains("not a WebAssembly"), "{}", o.stderr);
    assert!(e.artifacts().is_empty());
}

/// A valid module whose one function nests `depth` blocks: ~3 bytes of module per level, but
/// ~1.1 kB of compiler memory per level.
fn nested_blocks_module(depth: usize) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
        out.push(id);
        leb(body.len(), out);
        out.extend_from_slice(body);
    }
    let mut body = vec![0u8]; // no locals
    for _ in 0..depth {
        body.extend_from_slice(&[0x02, 0x40]); // block (no result)
    }
    body.extend(std::iter::repeat_n(0x0b, depth + 1)); // the ends, and the function's
    let mut code = vec![1u8];
    leb(body.len(), &mut code);
    code.extend_from_slice(&body);
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut m); // type 0: () -> ()
    section(3, &[1, 0], &mut m); // function 0 has type 0
    section(7, &[1, 6, b'_', b's', b't', b'a', b'r', b't', 0, 0], &mut m); // export "_start"
    section(10, &code, &mut m);
    m
}

#[test]
fn a_module_that_would_take_the_compiler_a_gigabyte_is_not_precompiled() {
    // A few hundred kB (a few kB gzipped) that the compiler would need gigabytes and minutes
    // for, as root on the host: load compiles each module in a child process under a memory
    // and CPU limit (256 MiB + 100x the module's size, 60 s + 10 s per MiB; set lower here
    // through the operator's variables, since the test build compiles ~50x slower), says
    // which limit it hit, and still loads the image. The unit test of the limits shows the
    // defaults refuse a 1.1 GB compile of 3 MB.
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("bomb");
    wasm_artifact_image_with(&layout, "latest", &nested_blocks_module(300_000));
    let bomb = to_archive(&layout, "latest", "localhost/bomb:latest", tmp.path());
    let e = Env::new(&[]);
    let load = |env: (&str, &str)| {
        let out = e.s.command(&["load", "-i", bomb.to_str().unwrap()]).env(env.0, env.1).output().unwrap();
        Outcome::from(out)
    };
    let o = load(("STRATA_PRECOMPILE_CPU_SECS", "1"));
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout, "Loaded image: localhost/bomb:latest\n");
    assert!(
        o.stderr.contains("warning: not precompiling") && o.stderr.contains("compiling took more than 1 s of CPU"),
        "{}",
        o.stderr
    );
    assert!(!o.stderr.contains("Precompiled"), "{}", o.stderr);
    let o = load(("STRATA_PRECOMPILE_MEMORY_MIB", "48"));
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("compiling needs more than 48 MiB of memory"), "{}", o.stderr);
    assert!(e.artifacts().is_empty());
    // A small module of the same shape compiles within the default limits; the child's log
    // (even at trace, megabytes of compiler chatter) never stalls it.
    let layout = tmp.path().join("nested");
    wasm_artifact_image_with(&layout, "latest", &nested_blocks_module(1000));
    let nested = to_archive(&layout, "latest", "localhost/nested:latest", tmp.path());
    let o = e.run(&["--log-level", "trace", "load", "-i", nested.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("Precompiled 1 wasm module"), "{}", o.stderr);
    assert_eq!(e.artifacts().len(), 1);
}

#[test]
fn a_guest_run_as_another_user_compiles_its_module_once() {
    // The cache is root's alone (0700): a guest run as user 1000 could not store what it
    // compiled, so it compiled its module at every start. The module is now compiled before
    // the container's process takes its user (in a child that becomes that user) and stored.
    let e = Env::new(&["wasm-examples"]);
    let run = || e.run_debug(&["--user", "1000:1000", "--entrypoint", "/hello.wasm", EXAMPLES]);
    let o = run();
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.starts_with(GREETING), "{}", o.stdout);
    assert!(
        o.stderr.contains("wasm cache miss") && o.stderr.contains("as the container's user), stored"),
        "{}",
        o.stderr
    );
    assert_eq!(e.artifacts().len(), 1);
    let o = run();
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("wasm cache hit") && !o.stderr.contains("compiled"), "{}", o.stderr);

    // A module that does not compile: the child fails, nothing is stored, and the guest's own
    // load says what is wrong, as before.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("bad.wasm"), b"\0asm\x01\0\0\0\x0bnot a section").unwrap();
    let vol = format!("{}:/mods:ro", tmp.path().display());
    let o = e.run_debug(&["--user", "1000:1000", "-v", &vol, "--entrypoint", "/mods/bad.wasm", EXAMPLES]);
    assert_eq!(o.code, 126, "{}", o.stderr);
    assert!(o.stderr.contains("/mods/bad.wasm: invalid WebAssembly"), "{}", o.stderr);
    assert_eq!(e.artifacts().len(), 1);
}

#[test]
fn a_module_over_the_compilers_limits_at_create_is_compiled_by_the_guest() {
    // The compile at create runs under the same limits as at load (here 1 MiB of memory, set
    // through the operator's variable): over them, nothing is stored and the guest compiles
    // the module in memory, inside its own cgroup, as it would without a cache.
    let e = Env::new(&["hello-wasm"]);
    let out =
        e.s.command(&["--log-level", "debug", "run", "--rm", HELLO])
            .env("STRATA_PRECOMPILE_MEMORY_MIB", "1")
            .output()
            .unwrap();
    let o = Outcome::from(out);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.starts_with(GREETING), "{}", o.stdout);
    assert!(o.stderr.contains("ahead of the guest: the compiler was killed"), "{}", o.stderr);
    assert!(e.artifacts().is_empty());
    let o = e.run_debug(&[HELLO]);
    assert!(o.stderr.contains("as the container's user), stored"), "{}", o.stderr);
    assert_eq!(e.artifacts().len(), 1);
}

#[test]
fn oci_a_bundle_run_as_another_user_compiles_its_module_once() {
    // The same through strata-oci (the runtime podman and containerd's runc shim drive): a
    // bundle whose process.user is not root fills the cache at its first run.
    let rt = Runtime::strata();
    let cache = tempfile::tempdir().unwrap();
    let b = wasm_bundle(&["/hello-component.wasm", "p2"]);
    b.edit(|c| c["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000}));
    let o = oci_run(&rt, &b, cache.path(), true);
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.starts_with(GREETING) && o.stdout.contains("argv[1]=p2\n"), "{o}");
    assert!(o.stderr.contains("wasm cache miss") && o.stderr.contains("stored"), "{o}");
    assert_eq!(files_with_extension(cache.path(), "cwasm").len(), 1);
    let o = oci_run(&rt, &b, cache.path(), true);
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stderr.contains("wasm cache hit") && !o.stderr.contains("compiled"), "{o}");
    assert!(cgroup_leftovers(&b.cgroup()).is_empty());
}

#[test]
fn a_module_loaded_while_root_runs_only_if_its_user_may_read_it() {
    // The sandbox loads the artifact before it becomes the container's user (the cache is
    // root's alone), but the user opens the module itself at start: one it may not read is
    // refused with or without a warm cache.
    use std::os::unix::fs::PermissionsExt;
    let e = Env::new(&["hello-wasm"]);
    let tmp = tempfile::tempdir().unwrap();
    let mods = tmp.path().join("mods");
    std::fs::create_dir(&mods).unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let app = mods.join("app.wasm");
    std::fs::copy(guest("hello"), &app).unwrap();
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o600)).unwrap();
    let vol = format!("{}:/mods", mods.display());
    let run = |user: &str| e.run_debug(&["--user", user, "-v", &vol, "--entrypoint", "/mods/app.wasm", HELLO]);
    // Root compiles it and records the file in the cache's index.
    let o = run("0");
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = run("1000:1000");
    assert_eq!(o.code, 126, "{}", o.stderr);
    assert!(o.stderr.contains("cannot open wasm module /mods/app.wasm: Permission denied"), "{}", o.stderr);
    // Readable (a chmod is a new file identity: root's run records it again): a cache hit.
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(run("0").code, 0);
    let o = run("1000:1000");
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("wasm cache hit") && !o.stderr.contains("compiled"), "{}", o.stderr);
}

#[test]
fn a_module_on_a_filesystem_that_chooses_its_inodes_is_found_by_digest_only() {
    // The stat index maps a file's identity (inode, size, times) to a module digest for every
    // container of the host; a FUSE or network volume can show any identity, and could point
    // another image's module at its own. Modules on filesystems other than the kernel's local
    // ones (here ramfs) are cached but looked up by digest, never indexed.
    let e = Env::new(&["hello-wasm"]);
    let tmp = tempfile::tempdir().unwrap();
    let mods = tmp.path().join("mods");
    std::fs::create_dir(&mods).unwrap();
    support::run(std::process::Command::new("mount").args(["-t", "ramfs", "ramfs"]).arg(&mods));
    std::fs::copy(guest("hello"), mods.join("app.wasm")).unwrap();
    let vol = format!("{}:/mods:ro", mods.display());
    let index = e.cache_dir().join("v1/index");
    let entries = || std::fs::read_dir(&index).map(|d| d.count()).unwrap_or(0);
    let run = || e.run_debug(&["-v", &vol, "--entrypoint", "/mods/app.wasm", HELLO]);
    let o = run();
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("stored"), "{}", o.stderr);
    assert_eq!(entries(), 0);
    let o = run();
    assert!(o.stderr.contains("wasm cache hit") && !o.stderr.contains("by file identity"), "{}", o.stderr);
    assert_eq!(entries(), 0);
    support::run(std::process::Command::new("umount").arg(&mods));
    // The image's own module (overlayfs over strata's snapshot) is indexed.
    assert_eq!(e.run_debug(&[HELLO]).code, 0);
    assert_eq!(entries(), 1);
}

#[test]
fn a_module_replaced_between_create_and_start_is_the_one_that_runs() {
    // The artifact is loaded at create (while root); start runs whatever file is there then,
    // as runc runs the binary it finds at start.
    let rt = Runtime::strata();
    let cache = tempfile::tempdir().unwrap();
    let b = wasm_bundle(&["/app.wasm"]);
    let app = b.rootfs().join("app.wasm");
    std::fs::copy(guest("hello"), &app).unwrap();
    assert_eq!(oci_run(&rt, &b, cache.path(), false).code, 0);
    let out = tempfile::NamedTempFile::new().unwrap();
    let status = rt
        .command(&["create", "--bundle", b.path().to_str().unwrap(), &b.id])
        .env("STRATA_WASM_CACHE", cache.path())
        .stdout(out.reopen().unwrap())
        .stderr(out.reopen().unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    let pid = rt.state(&b.id)["pid"].as_i64().unwrap() as i32;
    std::fs::copy(guest("trap"), b.rootfs().join("app.wasm.new")).unwrap();
    std::fs::rename(b.rootfs().join("app.wasm.new"), &app).unwrap();
    rt.ok(&["start", &b.id]);
    assert!(support::bundle::wait_exit(pid, Duration::from_secs(10)));
    let output = std::fs::read_to_string(out.path()).unwrap();
    assert!(output.contains("wasm trap") && !output.contains(GREETING), "{output}");
    rt.ok(&["delete", &b.id]);
}

#[test]
fn a_corrupted_cache_file_is_rebuilt() {
    let e = Env::new(&["hello-wasm"]);
    let first = e.run_debug(&[HELLO]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let artifact = e.artifacts().pop().expect("an artifact after the first run");
    let mut bytes = std::fs::read(&artifact).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&artifact, &bytes).unwrap();
    let o = e.run_debug(&[HELLO]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(stable(&o.stdout), stable(&first.stdout));
    assert!(o.stderr.contains("invalid (checksum mismatch); rebuilding"), "{}", o.stderr);
    assert!(o.stderr.contains("wasm cache miss"), "{}", o.stderr);
    assert_ne!(std::fs::read(&artifact).unwrap(), bytes, "the entry was rewritten");
    let o = e.run_debug(&[HELLO]);
    assert!(o.stderr.contains("wasm cache hit") && !o.stderr.contains("invalid"), "{}", o.stderr);
}

#[test]
fn image_prune_removes_artifacts_no_image_needs() {
    let e = Env::new(&["hello-wasm", "hello-component"]);
    let component = "localhost/strata-examples/hello-component";
    assert_eq!(e.run(&["run", "--rm", HELLO]).code, 0);
    assert_eq!(e.run(&["run", "--rm", component]).code, 0);
    let (hello_digest, component_digest) = (sha256_file(&guest("hello")), sha256_file(&guest("hello-component")));
    let names = |e: &Env| {
        e.artifacts().iter().map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect::<Vec<_>>()
    };
    let mut before = names(&e);
    before.sort();
    let mut want = vec![hello_digest.clone(), component_digest.clone()];
    want.sort();
    assert_eq!(before, want);

    // Nothing unused yet: prune keeps both.
    e.ok(&["image", "prune"]);
    assert_eq!(e.artifacts().len(), 2);
    e.ok(&["rmi", component]);
    // Without -a, what was read this week stays (strata-oci and the shim share the cache, and
    // no image here tells of their modules); -a removes it at once.
    e.ok(&["image", "prune"]);
    assert_eq!(e.artifacts().len(), 2);
    // -a, as docker's, takes every image no container uses (a created one keeps hello's).
    e.ok(&["create", "--name", "keeps-hello", HELLO]);
    let out = e.ok(&["image", "prune", "-a"]);
    assert!(out.contains("of compiled wasm"), "{out}");
    assert_eq!(names(&e), std::slice::from_ref(&hello_digest));
    assert_eq!(e.run(&["image", "inspect", HELLO]).code, 0, "the image a container uses stays: {out}");
    e.ok(&["rm", "keeps-hello"]);
    let o = e.run_debug(&[HELLO]);
    assert!(o.stderr.contains("wasm cache hit"), "{}", o.stderr);

    // A module only strata-oci runs, from the same cache: kept while used, removed once it has
    // not been read for more than a week.
    let rt = Runtime::strata();
    let b = wasm_bundle(&["/files.wasm", "read", "/etc/greeting.txt"]);
    let o = oci_run(&rt, &b, &e.cache_dir(), false);
    assert_eq!((o.code, o.stdout.as_str()), (0, "greetings from the bundle\n"), "{o}");
    let files_digest = sha256_file(&guest("files"));
    e.ok(&["image", "prune"]);
    let mut kept = names(&e);
    kept.sort();
    let mut both = vec![hello_digest.clone(), files_digest.clone()];
    both.sort();
    assert_eq!(kept, both, "in use by strata-oci");
    let artifact = e.artifacts().into_iter().find(|p| p.to_string_lossy().contains(&files_digest)).unwrap();
    let eight_days_ago = std::time::SystemTime::now() - Duration::from_secs(8 * 24 * 3600);
    let times = std::fs::FileTimes::new().set_accessed(eight_days_ago);
    std::fs::File::open(&artifact).unwrap().set_times(times).unwrap();
    e.ok(&["image", "prune"]);
    assert_eq!(names(&e), [hello_digest]);
}

#[test]
fn stop_ends_a_busy_loop_promptly() {
    let e = Env::new(&["wasm-examples"]);
    let id = e.ok(&["run", "-d", "--name", "spin", "--entrypoint", "/busy-loop.wasm", EXAMPLES]).trim().to_string();
    assert_eq!(e.s.ps(false).len(), 1, "running");
    // Paused first (the freezer stops the guest's thread as any process's), then stopped:
    // stop thaws it and the epoch still interrupts the loop.
    e.ok(&["pause", "spin"]);
    assert_eq!(e.inspect("spin")["State"]["Status"], "paused");
    let started = Instant::now();
    assert_eq!(e.ok(&["stop", "spin"]).trim(), "spin");
    // The epoch interrupts the loop at once; generous bounds, no tight timing.
    assert!(started.elapsed() < Duration::from_secs(5), "stop took {:?}", started.elapsed());
    let code = e.inspect("spin")["State"]["ExitCode"].as_i64().unwrap();
    assert!(code == 143 || code == 137, "exit code {code}");
    e.s.assert_run_released(&id);

    // kill (SIGKILL) ends one too.
    e.ok(&["run", "-d", "--name", "spin2", "--entrypoint", "/busy.wasm", EXAMPLES]);
    e.ok(&["kill", "spin2"]);
    assert_eq!(e.ok(&["wait", "spin2"]).trim(), "137");
    e.ok(&["rm", "spin", "spin2"]);
    e.s.assert_no_trace(&id);
}

/// A wasm container that runs on keeps only the code it runs: a second in, its process and its
/// monitor give back the pages of code that started them (strata::working_set): their RSS
/// falls under half its peak (a debug build's wasm process ~29 MB at its peak, ~6 MB after).
#[test]
fn a_running_wasm_container_and_its_monitor_give_back_the_code_that_started_them() {
    let e = Env::new(&["wasm-examples"]);
    e.ok(&["run", "-d", "--name", "lean", "--entrypoint", "/busy-loop.wasm", EXAMPLES]);
    let pid = e.inspect("lean")["State"]["Pid"].as_i64().unwrap() as i32;
    // The monitor cloned the container's init.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let monitor: i32 = stat.rsplit(") ").next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(std::fs::read_to_string(format!("/proc/{monitor}/comm")).unwrap(), "strata-monitor\n");
    for (what, p) in [("the wasm container's process", pid), ("its monitor", monitor)] {
        wait_for(&format!("{what} to keep under half its peak RSS"), Duration::from_secs(20), || {
            rss_below_half_peak(p)
        });
    }
    // Both go on: the guest spins, and stop still reaches it through the monitor.
    assert_eq!(e.inspect("lean")["State"]["Status"], "running");
    assert_eq!(e.ok(&["stop", "lean"]).trim(), "lean");
    let code = e.inspect("lean")["State"]["ExitCode"].as_i64().unwrap();
    assert!(code == 143 || code == 137, "exit code {code}");
    e.ok(&["rm", "lean"]);
}

/// A wasm container's health check is a module run in it as an exec is: an image's
/// `HEALTHCHECK CMD ["/hello.wasm"]` (set here by commit -c) makes it healthy, with the
/// module's output in the probe's log; docker's shell form needs a /bin/sh the image lacks,
/// and its failure makes the container unhealthy.
#[test]
fn a_wasm_containers_health_check_runs_a_module_in_it() {
    let e = Env::new(&["wasm-examples"]);
    e.ok(&["run", "-d", "--name", "base", "--entrypoint", "/busy-loop.wasm", EXAMPLES]);
    let check = r#"HEALTHCHECK --interval=200ms --retries=1 CMD ["/hello.wasm"]"#;
    e.ok(&["commit", "-c", check, "base", "localhost/checked-wasm:latest"]);
    e.ok(&["rm", "-f", "base"]);
    e.ok(&["run", "-d", "--name", "good", "localhost/checked-wasm:latest"]);
    let health = |name: &str| e.inspect(name)["State"]["Health"].clone();
    wait_for("good to be healthy", Duration::from_secs(20), || health("good")["Status"] == "healthy");
    let probe = health("good")["Log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(probe["ExitCode"], 0, "{probe}");
    assert!(probe["Output"].as_str().unwrap().contains(GREETING.trim()), "{probe}");
    e.ok(&["run", "-d", "--name", "shell", "--health-cmd", "true", "localhost/checked-wasm:latest"]);
    wait_for("shell to be unhealthy", Duration::from_secs(20), || health("shell")["Status"] == "unhealthy");
    let probe = health("shell")["Log"].as_array().unwrap().last().unwrap().clone();
    assert_ne!(probe["ExitCode"], 0, "{probe}");
    assert!(probe["Output"].as_str().unwrap().contains("/bin/sh"), "{probe}");
    e.ok(&["rm", "-f", "good", "shell"]);
}

#[test]
fn what_cannot_run_is_named_in_one_line() {
    let e = Env::new(&[]);
    let tmp = tempfile::tempdir().unwrap();

    // A wasm layer holding bytes that are not wasm.
    let layout = tmp.path().join("not-wasm");
    let built = wasm_artifact_image_with(&layout, "latest", b"this is not wasm\n");
    let file = format!("{}.wasm", &built.layers[0].digest["sha256:".len()..]);
    e.ok(&[
        "load",
        "-q",
        "-i",
        to_archive(&layout, "latest", "localhost/not-wasm:latest", tmp.path()).to_str().unwrap(),
    ]);
    let o = e.run(&["run", "--rm", "localhost/not-wasm"]);
    assert_eq!(o.code, 126, "{}", o.stderr);
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
    assert!(o.stderr.contains(&file) && o.stderr.contains("is not a WebAssembly module or component"), "{}", o.stderr);

    // A component that needs an interface no WASI host provides.
    let component = support::wasm::component_with_missing_import();
    let mut layer = LayerTar::new();
    layer.file("needs.wasm", &component, 0o644);
    let layout = tmp.path().join("needs");
    ImageBuilder::new()
        .platform("wasi", "wasm")
        .entrypoint(&["/needs.wasm"])
        .layer(layer.into_bytes(), Compression::Gzip)
        .write(&layout, "latest");
    e.ok(&["load", "-q", "-i", to_archive(&layout, "latest", "localhost/needs:latest", tmp.path()).to_str().unwrap()]);
    let o = e.run(&["run", "--rm", "localhost/needs"]);
    assert_eq!(o.code, 126, "{}", o.stderr);
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
    assert!(o.stderr.contains(support::wasm::MISSING_IMPORT), "{}", o.stderr);
    e.assert_empty();
}

#[test]
fn wasm_and_native_containers_side_by_side() {
    let e = Env::new(&["wasm-examples", "busybox"]);
    let wasm = e.ok(&["run", "-d", "--name", "spinner", "--entrypoint", "/busy.wasm", EXAMPLES]).trim().to_string();
    let guests = format!("{}:/guests:ro", guest("files").parent().unwrap().display());
    let native = e
        .ok(&["run", "-d", "--name", "sleeper", "-v", &guests, BUSYBOX, "sh", "-c", "echo native up; exec sleep 100"])
        .trim()
        .to_string();
    let running = e.s.ps(false);
    assert_eq!(running.len(), 2, "{running:?}");
    for (name, kind) in [("spinner", "wasm"), ("sleeper", "native")] {
        let c = running.iter().find(|c| c["Names"] == name).unwrap_or_else(|| panic!("{name} not listed"));
        assert_eq!(c["Kind"], kind, "{c}");
        assert_eq!(c["State"], "running", "{c}");
        assert!(!c["KindReason"].as_str().unwrap_or_default().is_empty(), "{c}");
        assert_eq!(e.inspect(name)["Kind"], kind);
    }
    for (kind, name) in [("wasm", "spinner\n"), ("native", "sleeper\n")] {
        assert_eq!(e.ok(&["ps", "--filter", &format!("kind={kind}"), "--format", "{{.Names}}"]), name);
    }
    let wasm_reason = running.iter().find(|c| c["Names"] == "spinner").unwrap()["KindReason"].clone();
    assert_eq!(wasm_reason, "image platform is wasi/wasm");
    // Both log through their monitors (poll briefly: a detached start returns at exec time).
    for (name, want) in [("spinner", "busy: spinning\n"), ("sleeper", "native up\n")] {
        let mut logs = e.ok(&["logs", name]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while logs != want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            logs = e.ok(&["logs", name]);
        }
        assert_eq!(logs, want, "{name}");
    }
    // The guest's process: its own thread, the signal thread and one I/O worker for WASI's
    // host calls (which printed the line above), however many CPUs the host has.
    let pid = e.inspect("spinner")["State"]["Pid"].as_i64().unwrap();
    let mut threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).unwrap().trim().to_string())
        .filter(|name| name.starts_with("strata-wasm") || name.starts_with("tokio"))
        .collect();
    threads.sort();
    assert_eq!(threads, ["strata-wasm-io", "strata-wasm-sig"], "threads of the wasm container's process {pid}");
    assert_eq!(std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count(), 3, "threads of {pid}");
    // ps shows the container's program, as for a native one, not the command line the
    // process was forked from.
    for (name, comm, args) in [("spinner", "busy.wasm", "/busy.wasm"), ("sleeper", "sleep", "sleep 100")] {
        let top = e.ok(&["top", name, "-o", "pid,comm,args"]);
        let row: Vec<&str> = top.lines().nth(1).unwrap_or_default().split_whitespace().collect();
        assert_eq!((row.get(1).copied(), row[2.min(row.len())..].join(" ")), (Some(comm), args.to_string()), "{top}");
    }
    // No directory of strata's root stays open while the guest runs (its preopens, the
    // container's own directories, do): the compiled-code cache's would lead a process of
    // the container that may ptrace this one to the host's filesystem via /proc/PID/fd/N/..
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let target = std::fs::read_link(fd.path()).unwrap_or_default();
        let is_dir = std::fs::metadata(fd.path()).map(|m| m.is_dir()).unwrap_or(false);
        let host = is_dir && target.starts_with(e.s.root());
        assert!(!host, "fd {:?} of the guest's process: {}", fd.file_name(), target.display());
    }
    // exec runs a module inside the running wasm container (its namespaces and cgroup).
    let o = e.run(&["exec", "spinner", "/hello.wasm", "via-exec"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.starts_with(GREETING) && o.stdout.contains("argv[1]=via-exec\n"), "{}", o.stdout);
    assert_eq!(e.run(&["exec", "spinner", "/trap.wasm"]).code, 134);
    // A module not in the cache is compiled by the exec'd process itself, in memory, and not
    // stored: a compiler child in a running container could be reached by its processes.
    let o = e.run(&["--log-level", "debug", "exec", "-u", "1000", "spinner", "/hello.wasm"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("compiled in memory") && !o.stderr.contains("stored"), "{}", o.stderr);
    // Once a container of the image has run it, exec'd as another user, it comes from the
    // cache (the sandbox finds it while still root; the cache is root's alone).
    assert_eq!(e.run(&["run", "--rm", "--entrypoint", "/hello.wasm", EXAMPLES]).code, 0);
    let o = e.run(&["--log-level", "debug", "exec", "-u", "1000", "spinner", "/hello.wasm"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("wasm cache hit") && !o.stderr.contains("compiled"), "{}", o.stderr);
    assert_eq!(e.ok(&["exec", "sleeper", "echo", "native exec"]), "native exec\n");
    // A module exec'd into the native container (from a volume) gets its own view without
    // the kernel's filesystems; the container keeps its /proc.
    let o = e.run(&["exec", "sleeper", "/guests/files.wasm", "ls", "/proc", "ls", "/sys"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "ls /proc:\nls /sys:\n"), "{}", o.stderr);
    assert_eq!(e.ok(&["exec", "sleeper", "cat", "/proc/1/comm"]), "sleep\n");
    e.ok(&["stop", "-t", "1", "spinner", "sleeper"]);
    assert!(e.s.ps(false).is_empty());
    e.ok(&["rm", "spinner", "sleeper"]);
    e.s.assert_no_trace(&wasm);
    e.s.assert_no_trace(&native);
}

// --- strata-oci: bundles -----------------------------------------------------------------

/// A bundle whose rootfs holds every guest, /etc/greeting.txt and /tmp, running `args`,
/// with the cache of `cache`.
fn wasm_bundle(args: &[&str]) -> Bundle {
    let b = Bundle::empty(args);
    let rootfs = b.rootfs();
    for name in ["hello", "files", "busy", "busy-loop", "grow", "trap", "hello-component"] {
        std::fs::copy(guest(name), rootfs.join(format!("{name}.wasm"))).unwrap();
    }
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/greeting.txt"), "greetings from the bundle\n").unwrap();
    std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
    b
}

/// `strata-oci [--debug] run` with a private compiled-code cache.
fn oci_run(rt: &Runtime, b: &Bundle, cache: &Path, debug: bool) -> support::bundle::Outcome {
    let mut args = vec![];
    if debug {
        args.push("--debug");
    }
    args.extend(["run", "--bundle", b.path().to_str().unwrap(), &b.id]);
    rt.command(&args).env("STRATA_WASM_CACHE", cache).output().expect("spawn strata-oci").into()
}

#[test]
fn oci_bundles_run_every_example() {
    let rt = Runtime::strata();
    let cache = tempfile::tempdir().unwrap();
    let b = wasm_bundle(&["/hello.wasm", "one", "exit", "3"]);
    let o = oci_run(&rt, &b, cache.path(), true);
    assert_eq!(o.code, 3, "{o}");
    assert!(o.stdout.starts_with(GREETING) && o.stdout.contains("argv[1]=one\n"), "{o}");
    assert!(o.stdout.contains("env TERM=xterm\n"), "{o}");
    assert!(o.stderr.contains("wasm cache miss"), "{o}");
    // Again: the cache hits.
    let o = oci_run(&rt, &b, cache.path(), true);
    assert_eq!(o.code, 3, "{o}");
    assert!(o.stderr.contains("wasm cache hit") && !o.stderr.contains("wasm cache miss"), "{o}");
    assert!(cgroup_leftovers(&b.cgroup()).is_empty());

    b.edit(|c| c["process"]["args"] = serde_json::json!(["/hello-component.wasm", "p2"]));
    let o = oci_run(&rt, &b, cache.path(), false);
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.starts_with(GREETING) && o.stdout.contains("argv[1]=p2\n"), "{o}");

    b.edit(|c| c["process"]["args"] = serde_json::json!(["/trap.wasm"]));
    let o = oci_run(&rt, &b, cache.path(), false);
    assert_eq!(o.code, 134, "{o}");
    assert!(o.stderr.contains("wasm trap"), "{o}");

    // Files: from the rootfs, to a bind-mounted volume and to /tmp.
    let vol = tempfile::tempdir().unwrap();
    b.edit(|c| {
        c["process"]["args"] = serde_json::json!([
            "/files.wasm",
            "read",
            "/etc/greeting.txt",
            "write",
            "/data/v.txt",
            "vol",
            "write",
            "/tmp/t.txt",
            "tmp"
        ]);
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!(
            {"destination": "/data", "type": "bind", "source": vol.path(), "options": ["rbind", "rw"]}
        ));
    });
    let o = oci_run(&rt, &b, cache.path(), false);
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(o.stdout, "greetings from the bundle\nwrote 4 bytes to /data/v.txt\nwrote 4 bytes to /tmp/t.txt\n");
    assert_eq!(std::fs::read_to_string(vol.path().join("v.txt")).unwrap(), "vol\n");
    assert_eq!(std::fs::read_to_string(b.rootfs().join("tmp/t.txt")).unwrap(), "tmp\n");

    // The spec mounts /proc and /sys (runc's defaults); the guest sees neither, and the
    // container's sysctls (written through /proc before it goes) still apply.
    b.edit(|c| {
        c["process"]["args"] = serde_json::json!(["/files.wasm", "ls", "/proc", "ls", "/sys"]);
        c["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1"});
    });
    let o = oci_run(&rt, &b, cache.path(), false);
    assert_eq!((o.code, o.stdout.as_str()), (0, "ls /proc:\nls /sys:\n"), "{o}");
    b.edit(|c| {
        c["linux"].as_object_mut().unwrap().remove("sysctl");
    });

    // The spec's memory limit: the guest's allocation fails, no OOM kill.
    b.edit(|c| {
        c["process"]["args"] = serde_json::json!(["/grow.wasm"]);
        c["linux"]["resources"]["memory"] = serde_json::json!({"limit": 64 << 20});
    });
    let o = oci_run(&rt, &b, cache.path(), false);
    assert_eq!(o.code, 42, "{o}");
    assert!(o.stdout.starts_with("grow: allocation failed after "), "{o}");
    assert!(cgroup_leftovers(&b.cgroup()).is_empty());
}

/// A wasm program never sees /proc, /sys or the cgroup hierarchies, so a wasm container does
/// not mount them (here a /proc mount the kernel refuses does not stop it) — unless a mount
/// puts a native program where the image had the module: then they are mounted after all.
#[test]
fn oci_wasm_mounts_no_kernel_filesystems_unless_a_mount_makes_it_native() {
    let rt = Runtime::strata();
    let cache = tempfile::tempdir().unwrap();
    let b = Bundle::busybox(&["/app/prog", "one"]);
    std::fs::create_dir(b.rootfs().join("app")).unwrap();
    std::fs::copy(guest("hello"), b.rootfs().join("app/prog")).unwrap();
    let proc_options = |options: serde_json::Value| {
        b.edit(|c| {
            for m in c["mounts"].as_array_mut().unwrap() {
                if m["destination"] == "/proc" {
                    m["options"] = options.clone();
                }
            }
        });
    };
    proc_options(serde_json::json!(["nosuid", "no-such-proc-option=1"]));
    let o = oci_run(&rt, &b, cache.path(), false);
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.starts_with(GREETING) && o.stdout.contains("argv[1]=one\n"), "{o}");

    // A volume over /app holds a shell script by the module's name: the container is native.
    let vol = tempfile::tempdir().unwrap();
    std::fs::write(
        vol.path().join("prog"),
        "#!/bin/sh\nhead -1 /proc/self/status\nls /sys/fs/cgroup/pids >/dev/null && echo cgroups\n",
    )
    .unwrap();
    std::fs::set_permissions(vol.path().join("prog"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!(
            {"destination": "/app", "type": "bind", "source": vol.path(), "options": ["rbind", "ro"]}
        ));
    });
    let o = oci_run(&rt, &b, cache.path(), false);
    assert_eq!(o.code, 1, "{o}");
    assert!(o.stderr.contains("mounting /proc"), "{o}");
    proc_options(serde_json::json!(["nosuid"]));
    let o = oci_run(&rt, &b, cache.path(), false);
    assert_eq!((o.code, o.stdout.as_str()), (0, "Name:\thead\ncgroups\n"), "{o}");
    assert!(cgroup_leftovers(&b.cgroup()).is_empty());
}

#[test]
fn oci_a_wasm_container_in_a_shared_pid_namespace_stores_nothing_it_compiled() {
    // The processes of a pid namespace it joins (a pod's) could reach a compiler child and
    // rewrite what it compiles, which every container running the module would then load: so
    // a miss is compiled by the guest itself, in memory, and nothing is stored.
    let rt = Runtime::strata();
    let cache = tempfile::tempdir().unwrap();
    let mut holder = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "sleep", "1000"])
        .spawn()
        .unwrap();
    let children = format!("/proc/{0}/task/{0}/children", holder.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&children).map_or(true, |c| c.trim().is_empty()) {
        assert!(Instant::now() < deadline, "unshare started no process");
        std::thread::sleep(Duration::from_millis(10));
    }
    let ns = format!("/proc/{}/ns/pid_for_children", holder.id());
    let b = wasm_bundle(&["/hello.wasm"]);
    b.edit(|c| {
        for n in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if n["type"] == "pid" {
                n["path"] = serde_json::json!(ns);
            }
        }
    });
    let o = oci_run(&rt, &b, cache.path(), true);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.starts_with(GREETING), "{o}");
    assert!(o.stderr.contains("compiled in memory") && !o.stderr.contains("stored"), "{o}");
    assert!(files_with_extension(cache.path(), "cwasm").is_empty());
    // Its own pid namespace again: compiled ahead and stored.
    b.edit(|c| {
        for n in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if n["type"] == "pid" {
                n.as_object_mut().unwrap().remove("path");
            }
        }
    });
    let o = oci_run(&rt, &b, cache.path(), true);
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stderr.contains("stored"), "{o}");
    assert_eq!(files_with_extension(cache.path(), "cwasm").len(), 1);
}

#[test]
fn oci_kill_ends_a_busy_wasm_container_promptly() {
    let rt = Runtime::strata();
    let cache = tempfile::tempdir().unwrap();
    let b = wasm_bundle(&["/busy.wasm"]);
    let mut child = rt
        .command(&["run", "--bundle", b.path().to_str().unwrap(), &b.id])
        .env("STRATA_WASM_CACHE", cache.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "busy: spinning\n");
    assert_eq!(rt.status(&b.id), "running");
    let sent = Instant::now();
    rt.ok(&["kill", &b.id, "TERM"]);
    let status = child.wait().unwrap();
    assert!(sent.elapsed() < Duration::from_secs(5), "took {:?}", sent.elapsed());
    assert_eq!(status.code(), Some(143));
    let o = rt.run(&["state", &b.id]);
    assert!(o.stderr.contains("does not exist"), "run deletes the container: {o}");
    assert!(cgroup_leftovers(&b.cgroup()).is_empty());
}

/// In a user namespace, a kernel filesystem that comes in with a recursive bind is locked to
/// that bind: it cannot be detached, so it is covered, and the guest cannot read the host's
/// /proc through it. The rest of the bind stays readable.
#[test]
fn oci_a_locked_proc_under_a_recursive_bind_is_covered() {
    let rt = Runtime::strata();
    let cache = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    std::fs::create_dir(host.path().join("proc")).unwrap();
    std::fs::write(host.path().join("visible.txt"), "seen\n").unwrap();
    let run = |path: &str| {
        let b = wasm_bundle(&["/files.wasm", "read", path]);
        b.edit(|c| {
            c["linux"]["namespaces"].as_array_mut().unwrap().push(serde_json::json!({"type": "user"}));
            c["linux"]["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            c["linux"]["gidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            c["mounts"].as_array_mut().unwrap().push(serde_json::json!(
                {"destination": "/host", "type": "bind", "source": host.path(), "options": ["rbind"]}));
        });
        // The mapped root must be able to use its rootfs.
        support::run(std::process::Command::new("chown").args(["-R", "100000:100000"]).arg(b.rootfs()));
        // procfs under the bound directory, in a mount namespace of this run's own.
        let prelude = format!(
            "mount -t proc proc {}/proc && export STRATA_WASM_CACHE={};",
            host.path().display(),
            cache.path().display()
        );
        let o = rt.run_after(
            &["unshare", "-m", "--propagation", "private"],
            &prelude,
            &["run", "--bundle", b.path().to_str().unwrap(), &b.id],
        );
        assert!(cgroup_leftovers(&b.cgroup()).is_empty());
        o
    };
    let o = run("/host/proc/self/status");
    assert_eq!(o.code, 1, "{o}");
    assert!(o.stderr.contains("files: read /host/proc/self/status: No such file or directory"), "{o}");
    let o = run("/host/visible.txt");
    assert_eq!((o.code, o.stdout.as_str()), (0, "seen\n"), "{o}");
}
