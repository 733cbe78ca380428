//! The container's session keyring, as runc makes it: the init joins a new one named
//! `_ses.<id>` (an exec'd process joins the same), so nothing in the container inherits the
//! session keyring of whoever started the runtime (containerd's, a user's shell's) and the keys
//! in it. The keyring is made searchable by its owner (by anyone in a user namespace, where
//! the owner is not the container's root), as runc does.

use std::ffi::CString;

const KEYCTL_JOIN_SESSION_KEYRING: libc::c_int = 1;
const KEYCTL_SETPERM: libc::c_int = 5;
const KEYCTL_DESCRIBE: libc::c_int = 6;
/// KEY_USR_SEARCH and KEY_OTH_SEARCH.
const USER_SEARCH: u32 = 0x0008_0000;
const OTHER_SEARCH: u32 = 0x0000_0008;

/// Joins the keyring `_ses.<id>`, making it if it is not there. A kernel without keyrings
/// (ENOSYS) is not an error, as in runc; nor is a runtime whose own seccomp filter forbids
/// keyctl (EPERM: strata-oci inside a container), whose containers inherit that filter and
/// cannot reach any keyring either.
pub fn join_session(id: &str, in_user_namespace: bool) -> Result<(), String> {
    let name = CString::new(format!("_ses.{id}")).map_err(|_| "container id has a NUL byte".to_string())?;
    // SAFETY: keyctl with a NUL-terminated name that outlives the call.
    let serial = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if serial < 0 {
        let e = std::io::Error::last_os_error();
        if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)) {
            return Ok(());
        }
        return Err(format!("unable to join session keyring: {e}"));
    }
    let search = if in_user_namespace { OTHER_SEARCH } else { USER_SEARCH };
    let perm = permissions(serial).ok_or("unable to read the session keyring's permissions")? | search;
    // SAFETY: keyctl with integer arguments.
    if unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_SETPERM, serial, perm) } < 0 {
        return Err(format!("unable to mod keyring permissions: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The keyring's permission bits, from its description (`type;uid;gid;perm;name`).
fn permissions(serial: libc::c_long) -> Option<u32> {
    let mut buf = [0u8; 512];
    // SAFETY: the kernel writes at most `buf.len()` bytes into our buffer.
    let n = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_DESCRIBE, serial, buf.as_mut_ptr(), buf.len()) };
    let text = std::str::from_utf8(buf.get(..usize::try_from(n).ok()?)?).ok()?;
    parse_perm(text)
}

fn parse_perm(description: &str) -> Option<u32> {
    u32::from_str_radix(description.split(';').nth(3)?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_permissions_are_the_descriptions_fourth_field() {
        assert_eq!(parse_perm("keyring;0;0;3f010000;_ses.abc\0"), Some(0x3f01_0000));
        assert_eq!(parse_perm("keyring;0;0"), None);
    }
}
