//! Reading a file through a stack of snapshot directories without mounting them: the same
//! answer overlayfs would give (whiteouts hide, opaque directories stop the descent, symlinks
//! resolve inside the image root). Used to classify an image by its entrypoint's first bytes.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};

const MAX_SYMLINK_HOPS: usize = 40;

fn is_whiteout(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    let mut buf = [0u8; 4];
    matches!(rustix::fs::lgetxattr(dir, "trusted.overlay.opaque", &mut buf), Ok(1) if buf[0] == b'y')
}

/// Where a path of the merged view lives: the layer dir holding it, and its metadata.
fn find(layers: &[PathBuf], parent: &Path, name: &str) -> Option<(PathBuf, fs::Metadata)> {
    for layer in layers.iter().rev() {
        let candidate = layer.join(parent).join(name);
        match fs::symlink_metadata(&candidate) {
            Ok(meta) if is_whiteout(&meta) => return None,
            Ok(meta) => return Some((candidate, meta)),
            Err(_) => {
                let parent_dir = layer.join(parent);
                match fs::symlink_metadata(&parent_dir) {
                    // The parent was replaced by a non-directory here: lower layers are hidden.
                    Ok(meta) if !meta.is_dir() => return None,
                    Ok(_) if is_opaque(&parent_dir) => return None,
                    _ => {}
                }
            }
        }
    }
    None
}

/// Resolve `path` (absolute inside the image) to the host path of the file it names,
/// following symlinks within the image root. None if it does not exist.
pub fn resolve(layers: &[PathBuf], path: &str) -> Option<PathBuf> {
    let mut pending: Vec<String> = components(path);
    pending.reverse();
    let mut current = PathBuf::new();
    let mut hops = 0;
    let mut found: Option<PathBuf> = None;
    while let Some(name) = pending.pop() {
        if name == ".." {
            current.pop();
            found = None;
            continue;
        }
        let (host, meta) = find(layers, &current, &name)?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return None;
            }
            let target = fs::read_link(&host).ok()?;
            let target = target.to_string_lossy().into_owned();
            if target.starts_with('/') {
                current = PathBuf::new();
            }
            let mut parts = components(&target);
            parts.reverse();
            pending.extend(parts);
            found = None;
            continue;
        }
        current.push(&name);
        found = Some(host);
        if !meta.is_dir() && !pending.is_empty() {
            return None;
        }
    }
    found
}

fn components(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// The first bytes of a file in the merged view.
pub fn read_head(layers: &[PathBuf], path: &str, n: usize) -> Option<Vec<u8>> {
    let host = resolve(layers, path)?;
    let file = File::open(host).ok()?;
    let mut buf = Vec::with_capacity(n);
    file.take(n as u64).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// Find a command the way execvp would, through PATH, in the merged view.
pub fn which(layers: &[PathBuf], command: &str, path_env: &str) -> Option<String> {
    if command.contains('/') {
        return resolve(layers, command).map(|_| command.to_string());
    }
    path_env
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| format!("{}/{command}", d.trim_end_matches('/')))
        .find(|candidate| resolve(layers, candidate).is_some_and(|p| p.is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn follows_overlay_rules() {
        let t = tempfile::tempdir().unwrap();
        let (l1, l2, l3) = (t.path().join("1"), t.path().join("2"), t.path().join("3"));
        for l in [&l1, &l2, &l3] {
            fs::create_dir_all(l.join("bin")).unwrap();
        }
        fs::write(l1.join("bin/busybox"), b"\x7fELF....").unwrap();
        symlink("busybox", l1.join("bin/sh")).unwrap();
        symlink("/bin/busybox", l1.join("bin/abs")).unwrap();
        fs::write(l1.join("bin/gone"), b"x").unwrap();
        fs::create_dir_all(l1.join("opq")).unwrap();
        fs::write(l1.join("opq/old"), b"x").unwrap();
        // layer 2 deletes bin/gone (whiteout) and makes opq opaque
        rustix::fs::mknodat(
            rustix::fs::CWD,
            l2.join("bin/gone"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .unwrap();
        fs::create_dir_all(l2.join("opq")).unwrap();
        rustix::fs::setxattr(l2.join("opq"), "trusted.overlay.opaque", b"y", rustix::fs::XattrFlags::empty()).unwrap();
        fs::write(l2.join("opq/new"), b"y").unwrap();
        fs::write(l3.join("bin/top.wasm"), b"\0asm\x01\0\0\0").unwrap();
        symlink("../../../../bin/top.wasm", l3.join("escape")).unwrap();
        let layers = vec![l1.clone(), l2, l3.clone()];

        assert_eq!(read_head(&layers, "/bin/sh", 4).unwrap(), b"\x7fELF");
        assert_eq!(read_head(&layers, "/bin/abs", 4).unwrap(), b"\x7fELF");
        assert_eq!(read_head(&layers, "/escape", 4).unwrap(), b"\0asm");
        assert!(resolve(&layers, "/bin/gone").is_none());
        assert!(resolve(&layers, "/opq/old").is_none());
        assert!(resolve(&layers, "/opq/new").is_some());
        assert_eq!(which(&layers, "sh", "/usr/bin:/bin").as_deref(), Some("/bin/sh"));
        assert_eq!(which(&layers, "gone", "/usr/bin:/bin"), None);
        assert_eq!(resolve(&layers, "/bin/busybox/x"), None);
    }
}
