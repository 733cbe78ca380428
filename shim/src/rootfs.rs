//! The container's root filesystem from containerd's mounts (`CreateTaskRequest.rootfs`): each
//! mounted in order onto `<bundle>/rootfs` (what runc's shim does), and all of them unmounted
//! again on delete. Mounting happens in the spawn worker, which is single-threaded and may
//! chdir for overlay options too long for one page; unmounting in the shim.

use crate::spawn::job::RootfsMount;
use std::path::Path;
use strata::sandbox::mounts;

/// Mount `list` onto `target`, in order; on failure unmount what was mounted.
pub fn mount_all(list: &[RootfsMount], target: &Path) -> Result<(), String> {
    let target_str = target.to_str().ok_or_else(|| format!("rootfs path {} is not UTF-8", target.display()))?;
    for (i, m) in list.iter().enumerate() {
        if let Err(e) = mount_one(m, target_str) {
            if i > 0 {
                let _ = unmount_all(target);
            }
            return Err(format!("mounting the rootfs: {e}"));
        }
    }
    Ok(())
}

fn mount_one(m: &RootfsMount, target: &str) -> Result<(), String> {
    let opts = mounts::parse_options(&m.options);
    let mut data = opts.data.join(",");
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    // Many layers make overlay's lowerdir longer than a page (mount(2)'s limit): mount from
    // the layers' common parent with relative paths instead.
    let mut chdir_back = None;
    if m.fs_type == "overlay" && data.len() > page - 512 {
        if let Some((dir, short)) = compact_overlay(&opts.data) {
            chdir_back = Some(std::env::current_dir().map_err(|e| format!("getcwd: {e}"))?);
            std::env::set_current_dir(&dir).map_err(|e| format!("chdir {dir}: {e}"))?;
            data = short;
        }
    }
    let mut flags = opts.flags;
    if opts.bind {
        flags |= libc::MS_BIND | if opts.recursive { libc::MS_REC } else { 0 };
    }
    let fstype = (!m.fs_type.is_empty() && !opts.bind).then_some(m.fs_type.as_str());
    let result = mounts::mount(Some(&m.source), target, fstype, flags, (!data.is_empty()).then_some(data.as_str()));
    // A read-only bind needs a remount to take effect.
    let result = result.and_then(|()| {
        if opts.bind && flags & libc::MS_RDONLY != 0 {
            mounts::mount(None, target, None, flags | libc::MS_REMOUNT, None)
        } else {
            Ok(())
        }
    });
    if let Some(dir) = chdir_back {
        let _ = std::env::set_current_dir(dir);
    }
    result
}

/// Overlay data with the lowerdirs relative to their common parent, and that parent.
fn compact_overlay(data: &[String]) -> Option<(String, String)> {
    let lower = data.iter().find_map(|d| d.strip_prefix("lowerdir="))?;
    let dirs: Vec<&str> = lower.split(':').collect();
    let first = Path::new(dirs.first()?);
    let common = first.ancestors().skip(1).find(|a| dirs.iter().all(|d| Path::new(d).starts_with(a)))?;
    let rel: Vec<String> = dirs
        .iter()
        .map(|d| Path::new(d).strip_prefix(common).map(|p| p.display().to_string()))
        .collect::<Result<_, _>>()
        .ok()?;
    let out: Vec<String> = data
        .iter()
        .map(|d| if d.starts_with("lowerdir=") { format!("lowerdir={}", rel.join(":")) } else { d.clone() })
        .collect();
    Some((common.display().to_string(), out.join(",")))
}

/// Unmount everything mounted on `target` (stacked mounts too). Not mounted is fine.
pub fn unmount_all(target: &Path) -> Result<(), String> {
    for _ in 0..64 {
        match rustix::mount::unmount(target, rustix::mount::UnmountFlags::empty()) {
            Ok(()) => continue,
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(rustix::io::Errno::BUSY) => {
                // Something still holds it (a process being torn down): detach it lazily.
                rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH)
                    .map_err(|e| format!("unmounting {}: {e}", target.display()))?;
            }
            Err(e) => return Err(format!("unmounting {}: {e}", target.display())),
        }
    }
    Err(format!("unmounting {}: still mounted after 64 unmounts", target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_overlay_options_become_relative() {
        let data = vec![
            "index=off".to_string(),
            "lowerdir=/var/lib/c/snapshots/3/fs:/var/lib/c/snapshots/2/fs:/var/lib/c/snapshots/1/fs".to_string(),
            "upperdir=/var/lib/c/snapshots/4/fs".to_string(),
        ];
        let (dir, short) = compact_overlay(&data).unwrap();
        assert_eq!(dir, "/var/lib/c/snapshots");
        assert_eq!(short, "index=off,lowerdir=3/fs:2/fs:1/fs,upperdir=/var/lib/c/snapshots/4/fs");
    }
}
