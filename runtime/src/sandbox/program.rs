//! What the container runs: `process.args[0]` found as execvp would (in the container's
//! `PATH`), resolved *inside* the container's root, and which executor runs it — a native
//! `execve`, or the wasm executor when the spec says so (annotations) or the file starts with
//! the wasm magic `\0asm`.
//!
//! Resolution happens in the init before pivot_root (the cache for compiled wasm must be
//! opened while host paths still resolve), through `openat2(RESOLVE_IN_ROOT)` on the rootfs,
//! so a symlink in the image can never point the check at a host file. Error words are runc's:
//! callers map "executable file not found" / "no such file" to 127 and "permission denied"
//! to 126.

use oci_spec::runtime::Spec;
use rustix::fs::{OFlags, ResolveFlags};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const WASM_MAGIC: &[u8; 4] = b"\0asm";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executor {
    Native,
    Wasm,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// The program's path inside the container.
    pub path: PathBuf,
    pub executor: Executor,
}

/// Whether the spec's annotations ask for the wasm executor (the annotations crun, youki
/// and runwasi honour).
pub fn wasm_by_annotation(spec: &Spec) -> bool {
    spec.annotations().as_ref().is_some_and(|a| {
        a.get("run.oci.handler").is_some_and(|v| v == "wasm")
            || a.get("module.wasm.image/variant").is_some_and(|v| v == "compat" || v == "compat-smart")
    })
}

/// Resolve `args[0]` in the root `root` (a directory fd of the container's root filesystem).
pub fn resolve(root: &OwnedFd, args: &[String], env: &[String], wasm_hint: bool) -> Result<Program, String> {
    let name = args.first().ok_or("process.args is empty")?;
    let candidates: Vec<PathBuf> = if name.contains('/') {
        vec![PathBuf::from(name)]
    } else {
        let path = env.iter().rev().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
        path.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join(name)).collect()
    };
    let mut denied = None;
    for candidate in candidates {
        let Ok(fd) = open_in_root(root, &candidate) else { continue };
        let Ok(stat) = rustix::fs::fstat(&fd) else { continue };
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            denied.get_or_insert(candidate);
            continue;
        }
        let executor = if wasm_hint || starts_with_wasm_magic(&fd) { Executor::Wasm } else { Executor::Native };
        // A wasm module needs no exec bit: wasmtime reads it. A native program needs one
        // (the kernel has the last word at execve; this is for runc's error words).
        if executor == Executor::Native && stat.st_mode & 0o111 == 0 {
            denied.get_or_insert(candidate);
            continue;
        }
        let path = if candidate.is_absolute() { candidate } else { Path::new("/").join(candidate) };
        return Ok(Program { path, executor });
    }
    match denied {
        Some(p) => Err(format!("exec: \"{}\": permission denied", p.display())),
        None if name.contains('/') => Err(format!("exec: \"{name}\": stat {name}: no such file or directory")),
        None => Err(format!("exec: \"{name}\": executable file not found in $PATH")),
    }
}

fn open_in_root(root: &OwnedFd, path: &Path) -> rustix::io::Result<OwnedFd> {
    let relative = path.strip_prefix("/").unwrap_or(path);
    crate::fsutil::openat2_retrying(
        root,
        relative,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK,
        ResolveFlags::IN_ROOT,
    )
}

fn starts_with_wasm_magic(fd: &OwnedFd) -> bool {
    let mut head = [0u8; 4];
    matches!(rustix::io::pread(fd, &mut head, 0), Ok(4)) && &head == WASM_MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn root_with(files: &[(&str, &[u8], u32)]) -> (tempfile::TempDir, OwnedFd) {
        let dir = tempfile::tempdir().unwrap();
        for (path, bytes, mode) in files {
            let p = dir.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, bytes).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
        let fd = rustix::fs::open(dir.path(), OFlags::PATH | OFlags::DIRECTORY, rustix::fs::Mode::empty()).unwrap();
        (dir, fd)
    }

    fn args(a: &str) -> Vec<String> {
        vec![a.to_string()]
    }

    #[test]
    fn searches_path_and_tells_wasm_from_native() {
        let (_d, root) =
            root_with(&[("/bin/sh", b"\x7fELF....", 0o755), ("/app/hello.wasm", b"\0asm\x01\0\0\0", 0o644)]);
        let env = vec!["PATH=/usr/bin:/bin".to_string()];
        let sh = resolve(&root, &args("sh"), &env, false).unwrap();
        assert_eq!(sh, Program { path: "/bin/sh".into(), executor: Executor::Native });
        let wasm = resolve(&root, &args("/app/hello.wasm"), &env, false).unwrap();
        assert_eq!(wasm, Program { path: "/app/hello.wasm".into(), executor: Executor::Wasm });
        // The annotation decides even without the magic.
        assert_eq!(resolve(&root, &args("sh"), &env, true).unwrap().executor, Executor::Wasm);
    }

    #[test]
    fn errors_use_runc_words() {
        let (_d, root) = root_with(&[("/bin/data", b"text", 0o644)]);
        let env = vec![];
        let e = resolve(&root, &args("nothere"), &env, false).unwrap_err();
        assert!(e.contains("executable file not found in $PATH"), "{e}");
        let e = resolve(&root, &args("/bin/nothere"), &env, false).unwrap_err();
        assert!(e.contains("no such file or directory"), "{e}");
        let e = resolve(&root, &args("/bin/data"), &env, false).unwrap_err();
        assert!(e.contains("permission denied"), "{e}");
        let e = resolve(&root, &args("/bin"), &env, false).unwrap_err();
        assert!(e.contains("permission denied"), "{e}");
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let (d, root) = root_with(&[("/bin/real", b"\x7fELF", 0o755)]);
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("bin/escape")).unwrap();
        std::os::unix::fs::symlink("/bin/real", d.path().join("bin/link")).unwrap();
        let env = vec![];
        // /etc/passwd exists on the host but not in this root: not found, never the host's.
        assert!(resolve(&root, &args("/bin/escape"), &env, false).is_err());
        assert_eq!(resolve(&root, &args("/bin/link"), &env, false).unwrap().path, PathBuf::from("/bin/link"));
    }
}
