//! Who a container's process runs as: docker's `--user` / image `User` forms (`name`, `uid`,
//! `name:group`, `uid:gid`, empty for root) resolved through the image's own /etc/passwd and
//! /etc/group, as runc's `GetExecUser` does.
//!
//! The files are read from the container's root filesystem with openat2(RESOLVE_IN_ROOT):
//! an image whose /etc/passwd is a symlink to `/../../etc/shadow` reads its own file of that
//! name, never the host's. Only regular files are read, and only the first few MiB.

use rustix::fs::{Mode, OFlags};
use std::io::Read;
use std::path::Path;

/// The identity the process gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// From passwd, for `HOME` when the environment does not set it.
    pub home: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoSuchUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoSuchGroup(String),
    #[error("invalid user {0:?}")]
    Invalid(String),
    /// docker's words and range (runc's user package): ids past 2^31-1 are refused, the
    /// kernel's "leave unchanged" -1 among them.
    #[error("uids and gids must be in range 0-{MAX_ID}")]
    Range,
    #[error("reading {path} in the container's root filesystem: {detail}")]
    Read { path: String, detail: String },
}

/// The largest uid or gid a `--user` may name or resolve to (docker's limit).
pub const MAX_ID: u32 = i32::MAX as u32;

/// Files bigger than this are not a passwd file anyone means.
const MAX_FILE: u64 = 4 << 20;

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolve `spec` (docker's `--user` syntax) against the files in `rootfs`.
pub fn resolve(rootfs: &Path, spec: &str) -> Result<ExecUser, UserError> {
    let passwd = parse_passwd(&read_in_root(rootfs, "etc/passwd")?);
    let groups = parse_group(&read_in_root(rootfs, "etc/group")?);
    resolve_with(&passwd, &groups, spec)
}

/// docker's `--group-add`: each group (a name in the image's /etc/group, or a gid) as a gid.
pub fn resolve_groups(rootfs: &Path, names: &[String]) -> Result<Vec<u32>, UserError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let groups = parse_group(&read_in_root(rootfs, "etc/group")?);
    names.iter().map(|n| gid_of(&groups, n)).collect()
}

fn gid_of(groups: &[GroupEntry], name: &str) -> Result<u32, UserError> {
    let gid = match name.parse::<u32>() {
        Ok(gid) => gid,
        Err(_) => {
            groups.iter().find(|e| e.name == name).map(|e| e.gid).ok_or_else(|| UserError::NoSuchGroup(name.into()))?
        }
    };
    if gid > MAX_ID {
        return Err(UserError::Range);
    }
    Ok(gid)
}

fn resolve_with(passwd: &[PasswdEntry], groups: &[GroupEntry], spec: &str) -> Result<ExecUser, UserError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if group_part.is_some_and(str::is_empty) {
        return Err(UserError::Invalid(spec.into()));
    }
    // An empty user means root, by name if the image has it.
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entry = match user_part.parse::<u32>() {
        Ok(uid) => passwd.iter().find(|p| p.uid == uid),
        Err(_) => {
            Some(passwd.iter().find(|p| p.name == user_part).ok_or_else(|| UserError::NoSuchUser(user_part.into()))?)
        }
    };
    let uid = match entry {
        Some(e) => e.uid,
        None => user_part.parse::<u32>().map_err(|_| UserError::Invalid(spec.into()))?,
    };
    let (gid, additional_gids) = match group_part {
        Some(g) => (gid_of(groups, g)?, Vec::new()),
        // Without an explicit group: the passwd group, plus every group listing the user.
        None => {
            let gid = entry.map(|e| e.gid).unwrap_or(0);
            let mut extra: Vec<u32> = match entry {
                Some(e) => groups.iter().filter(|g| g.members.contains(&e.name)).map(|g| g.gid).collect(),
                None => Vec::new(),
            };
            extra.retain(|g| *g != gid);
            extra.dedup();
            (gid, extra)
        }
    };
    if uid > MAX_ID || gid > MAX_ID || additional_gids.iter().any(|g| *g > MAX_ID) {
        return Err(UserError::Range);
    }
    let home = entry.map(|e| e.home.clone()).filter(|h| !h.is_empty()).unwrap_or_else(|| "/".into());
    Ok(ExecUser { uid, gid, additional_gids, home })
}

/// runc's HOME for a process whose environment has none: its user's home in the container's
/// /etc/passwd (read through `root`), else `/`.
pub fn home_of(root: &Path, uid: u32) -> String {
    let passwd = read_in_root(root, "etc/passwd").map(|c| parse_passwd(&c)).unwrap_or_default();
    let entry = passwd.into_iter().find(|p| p.uid == uid);
    entry.map(|p| p.home).filter(|h| !h.is_empty()).unwrap_or_else(|| "/".into())
}

/// `process` with `HOME` in its environment: as it is when it has one, else [`home_of`] its user.
pub fn with_home(process: &oci_spec::runtime::Process, root: &Path) -> Option<oci_spec::runtime::Process> {
    let env = process.env().clone().unwrap_or_default();
    if env.iter().any(|e| e.starts_with("HOME=")) {
        return None;
    }
    let mut with = process.clone();
    with.set_env(Some(env.into_iter().chain([format!("HOME={}", home_of(root, process.user().uid()))]).collect()));
    Some(with)
}

/// The content of `path` (relative to the rootfs) read without leaving the rootfs; a missing
/// file reads as empty, as runc treats a missing passwd file.
pub fn read_in_root(rootfs: &Path, path: &str) -> Result<String, UserError> {
    let err = |detail: String| UserError::Read { path: format!("/{path}"), detail };
    let root = rustix::fs::open(rootfs, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| err(format!("opening {}: {e}", rootfs.display())))?;
    // O_NONBLOCK: a FIFO planted at /etc/passwd must not hang us.
    let fd = match crate::fsutil::open_in_root(&root, path, OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => return Ok(String::new()),
        Err(e) => return Err(err(e.to_string())),
    };
    let stat = rustix::fs::fstat(&fd).map_err(|e| err(e.to_string()))?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(err("not a regular file".into()));
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd).take(MAX_FILE).read_to_end(&mut bytes).map_err(|e| err(e.to_string()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn fields(content: &str) -> impl Iterator<Item = Vec<&str>> {
    content.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(|l| l.split(':').collect())
}

fn parse_passwd(content: &str) -> Vec<PasswdEntry> {
    fields(content)
        .filter_map(|f| {
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).map(|h| h.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

fn parse_group(content: &str) -> Vec<GroupEntry> {
    fields(content)
        .filter_map(|f| {
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| m.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n# comment\nalice:x:1000:1000::/home/alice:/bin/sh\nbroken line\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nalice:x:1000:\nwheel:x:10:alice,bob\naudio:x:29:alice\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn forms_docker_accepts() {
        let dir = rootfs();
        let r = |s: &str| resolve(dir.path(), s);
        assert_eq!(r("").unwrap(), ExecUser { uid: 0, gid: 0, additional_gids: vec![], home: "/root".into() });
        assert_eq!(
            r("alice").unwrap(),
            ExecUser { uid: 1000, gid: 1000, additional_gids: vec![10, 29], home: "/home/alice".into() }
        );
        assert_eq!(r("1000").unwrap().additional_gids, vec![10, 29]);
        assert_eq!(
            r("alice:wheel").unwrap(),
            ExecUser { uid: 1000, gid: 10, additional_gids: vec![], home: "/home/alice".into() }
        );
        assert_eq!(
            r("4242:4343").unwrap(),
            ExecUser { uid: 4242, gid: 4343, additional_gids: vec![], home: "/".into() }
        );
        assert_eq!(r("4242").unwrap(), ExecUser { uid: 4242, gid: 0, additional_gids: vec![], home: "/".into() });
        assert_eq!(r("bob"), Err(UserError::NoSuchUser("bob".into())));
        assert_eq!(r("alice:nogroup"), Err(UserError::NoSuchGroup("nogroup".into())));
        assert!(matches!(r("alice:"), Err(UserError::Invalid(_))));
    }

    #[test]
    fn ids_past_docker_range_are_refused() {
        let dir = rootfs();
        let passwd = dir.path().join("etc/passwd");
        let mut content = std::fs::read_to_string(&passwd).unwrap();
        content.push_str("huge:x:4294967295:4294967295::/:/bin/sh\n");
        std::fs::write(&passwd, content).unwrap();
        let r = |s: &str| resolve(dir.path(), s);
        // (uid_t)-1 is "leave unchanged" to setresuid: root would stay root.
        for spec in ["4294967295", "1000:4294967295", "2147483648", "huge", "alice:4294967295"] {
            assert_eq!(r(spec), Err(UserError::Range), "{spec}");
        }
        assert_eq!(r("2147483647:2147483647").unwrap().uid, MAX_ID);
        assert_eq!(UserError::Range.to_string(), "uids and gids must be in range 0-2147483647");
    }

    #[test]
    fn files_are_read_inside_the_root_only() {
        let dir = rootfs();
        let host_secret = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(host_secret.path(), "mallory:x:0:0::/:/bin/sh\n").unwrap();
        std::fs::remove_file(dir.path().join("etc/passwd")).unwrap();
        // An absolute symlink resolves inside the rootfs, where the target does not exist.
        std::os::unix::fs::symlink(host_secret.path(), dir.path().join("etc/passwd")).unwrap();
        assert_eq!(resolve(dir.path(), "mallory"), Err(UserError::NoSuchUser("mallory".into())));
        std::fs::remove_file(dir.path().join("etc/passwd")).unwrap();
        let escape = format!("../../../../../../..{}", host_secret.path().display());
        std::os::unix::fs::symlink(escape, dir.path().join("etc/passwd")).unwrap();
        assert_eq!(resolve(dir.path(), "mallory"), Err(UserError::NoSuchUser("mallory".into())));
        // A FIFO is refused instead of blocking.
        std::fs::remove_file(dir.path().join("etc/passwd")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join("etc/passwd"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        assert!(matches!(resolve(dir.path(), "root"), Err(UserError::Read { .. })));
    }

    #[test]
    fn missing_files_mean_numeric_ids_only() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(resolve(dir.path(), "").unwrap().uid, 0);
        assert_eq!(resolve(dir.path(), "7:8").unwrap().gid, 8);
        assert!(resolve(dir.path(), "root").is_err());
    }
}
