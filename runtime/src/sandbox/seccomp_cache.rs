//! Compiled seccomp filters kept on disk, so a container whose profile was seen before (docker's
//! default for every `strata run`, Kubernetes' RuntimeDefault) skips libseccomp: compiling
//! docker's profile costs ~11 ms per container on a 2-core VM, reading a cached program well
//! under 0.1 ms.
//!
//! An entry is keyed by SHA-256 over the profile (as JSON), libseccomp's version and API level
//! and the architecture — everything the program depends on — and ends with a SHA-256 of its
//! own contents. One that does not verify is rebuilt, never trusted. Entries are written
//! atomically, in a directory only its owner (root) may write; a directory anyone else could
//! write is not used at all.
//!
//! This module must never hand out a program `compile` did not produce for exactly this key,
//! and never fail a container because of the cache (it falls back to compiling).

use super::seccomp::{compile, program_from_bytes, program_to_bytes, Filter, SeccompError, INSN};
use oci_spec::runtime::LinuxSeccomp;
use sha2::{Digest, Sha256};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 16] = b"STRATA-SECCOMP-1";

/// Where a profile's program is (or will be) cached in `dir`.
fn entry(dir: &Path, spec: &LinuxSeccomp) -> Option<PathBuf> {
    let profile = serde_json::to_vec(spec).ok()?;
    let version = libseccomp::ScmpVersion::current().ok()?;
    let mut h = Sha256::new();
    // v2: programs are search trees (seccomp::compile), no longer lists.
    h.update(b"strata-seccomp-cache-v2\0");
    h.update(&profile);
    h.update(format!(
        "\0{}.{}.{}\0{}\0{}",
        version.major,
        version.minor,
        version.micro,
        libseccomp::get_api(),
        std::env::consts::ARCH
    ));
    Some(dir.join(format!("{}.bpf", hex::encode(h.finalize()))))
}

/// `compile(spec)`, through the cache in `dir`. A debug line says whether it hit.
pub fn compile_cached(spec: &LinuxSeccomp, dir: &Path) -> Result<Filter, SeccompError> {
    let Some(path) = entry(dir, spec).filter(|_| usable_dir(dir)) else {
        return compile(spec);
    };
    if let Some(filter) = std::fs::read(&path).ok().and_then(|bytes| decode(&bytes)) {
        tracing::debug!("seccomp cache hit: {}", path.display());
        return Ok(filter);
    }
    let filter = compile(spec)?;
    tracing::debug!("seccomp cache miss: {}", path.display());
    if let Err(e) = crate::fsutil::write_atomic_unsynced(&path, &encode(&filter)) {
        tracing::debug!("seccomp cache: writing {}: {e}", path.display());
    }
    Ok(filter)
}

/// Create `dir` (0700) if missing; usable only if it is ours and no one else may write it.
fn usable_dir(dir: &Path) -> bool {
    let _ = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir);
    match std::fs::metadata(dir) {
        // SAFETY: geteuid has no preconditions.
        Ok(md) => md.is_dir() && md.uid() == unsafe { libc::geteuid() } && md.permissions().mode() & 0o022 == 0,
        Err(_) => false,
    }
}

fn encode(filter: &Filter) -> Vec<u8> {
    let (program, flags, skipped) = filter.parts();
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(MAGIC);
    #[allow(clippy::useless_conversion)] // c_ulong is u32 on 32-bit targets
    let flags = u64::from(flags);
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&(skipped.len() as u32).to_le_bytes());
    for name in skipped {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
    }
    out.extend_from_slice(&(program.len() as u32).to_le_bytes());
    out.extend_from_slice(&program_to_bytes(program));
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// The filter in `bytes`, if they are a whole entry whose checksum verifies.
fn decode(bytes: &[u8]) -> Option<Filter> {
    let (body, sum) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
    if Sha256::digest(body).as_slice() != sum {
        return None;
    }
    let mut r = Reader(body.strip_prefix(MAGIC.as_slice())?);
    let flags = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
    let mut skipped = Vec::new();
    for _ in 0..r.u32()? {
        let len = r.u32()? as usize;
        skipped.push(String::from_utf8(r.take(len)?.to_vec()).ok()?);
    }
    let count = r.u32()? as usize;
    let program = program_from_bytes(r.take(count.checked_mul(INSN)?)?)?;
    if !r.0.is_empty() {
        return None;
    }
    Filter::from_parts(program, libc::c_ulong::try_from(flags).ok()?, skipped)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(errno: u32) -> LinuxSeccomp {
        serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"names": ["mkdirat", "not_a_syscall_at_all"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno},
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
            ]
        }))
        .unwrap()
    }

    fn same(a: &Filter, b: &Filter) -> bool {
        let ((pa, fa, sa), (pb, fb, sb)) = (a.parts(), b.parts());
        fa == fb
            && sa == sb
            && pa.len() == pb.len()
            && pa.iter().zip(pb).all(|(x, y)| (x.code, x.jt, x.jf, x.k) == (y.code, y.jt, y.jf, y.k))
    }

    fn entries(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_second_compile_reads_the_same_program_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("seccomp");
        let fresh = compile(&profile(1)).unwrap();
        let first = compile_cached(&profile(1), &dir).unwrap();
        assert!(same(&fresh, &first));
        let files = entries(&dir);
        assert_eq!(files.len(), 1);
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        // From the file now: the same program, flags and skipped names.
        let second = compile_cached(&profile(1), &dir).unwrap();
        assert!(same(&fresh, &second));
        assert_eq!(second.skipped_syscalls(), ["not_a_syscall_at_all"]);
        // Another profile is another entry.
        let other = compile_cached(&profile(2), &dir).unwrap();
        assert!(!same(&fresh, &other));
        assert_eq!(entries(&dir).len(), 2);
    }

    #[test]
    fn a_damaged_entry_is_rebuilt_not_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("seccomp");
        let fresh = compile_cached(&profile(1), &dir).unwrap();
        let file = entries(&dir).remove(0);
        let good = std::fs::read(&file).unwrap();
        for damage in [
            good[..good.len() / 2].to_vec(),                         // cut short
            [&good[..40], &[good[40] ^ 0x01], &good[41..]].concat(), // one bit in the program
            Vec::new(),
        ] {
            assert!(decode(&damage).is_none());
            std::fs::write(&file, &damage).unwrap();
            let again = compile_cached(&profile(1), &dir).unwrap();
            assert!(same(&fresh, &again));
            assert_eq!(std::fs::read(&file).unwrap(), good, "rewritten");
        }
    }

    #[test]
    fn a_directory_others_may_write_is_not_used() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("seccomp");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        compile_cached(&profile(1), &dir).unwrap();
        assert!(entries(&dir).is_empty());
    }
}
