//! The name a wasm container's process shows in `ps`, `top` and `strata top`: its program's
//! argv, where a native container's execve would have put it. Without this the process keeps
//! what it was forked from: the `strata run ...` command line, or the shim daemon's.
//!
//! The name (`PR_SET_NAME`) anyone may set. The command line is pointed at a new buffer
//! (`PR_SET_MM_ARG_START`/`END`) where the process holds CAP_SYS_RESOURCE in the host's user
//! namespace; elsewhere the old argv strings are written over, as setproctitle(3) does: the
//! args joined by spaces, cut to the old length. Must run while /proc is still the runtime's
//! (it reads where the old argv lies from /proc/self/stat), single-threaded, before the
//! program runs.

use std::path::Path;

/// Longest name the kernel keeps (`TASK_COMM_LEN` less the NUL).
const COMM_MAX: usize = 15;

/// Show `args` as this process's command line, and the program's file name as its name.
/// Best effort: nothing here may stop the container from starting.
pub fn show_program(args: &[String]) {
    let Some(program) = args.first() else { return };
    set_name(&comm(program));
    if !point_cmdline_at(&cmdline(args)) {
        overwrite_argv(&args.join(" ").into_bytes());
    }
}

/// The file name of `program`, cut to what the kernel keeps, as execve would set it.
fn comm(program: &str) -> Vec<u8> {
    let name = Path::new(program).file_name().map(|n| n.as_encoded_bytes()).unwrap_or(program.as_bytes());
    name.iter().copied().filter(|&b| b != 0).take(COMM_MAX).collect()
}

/// `args` as /proc/PID/cmdline holds them: each followed by a NUL.
fn cmdline(args: &[String]) -> Vec<u8> {
    let mut buf = Vec::new();
    for arg in args {
        buf.extend(arg.bytes().filter(|&b| b != 0));
        buf.push(0);
    }
    buf
}

fn set_name(name: &[u8]) {
    let mut comm = [0u8; COMM_MAX + 1];
    comm[..name.len()].copy_from_slice(name);
    // SAFETY: a NUL-terminated buffer the kernel copies.
    unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr(), 0, 0, 0) };
}

/// Points the kernel's idea of our argv at a copy of `text`; false where not allowed.
fn point_cmdline_at(text: &[u8]) -> bool {
    let set = |field: libc::c_int, value: libc::c_ulong| {
        // SAFETY: prctl with plain integer arguments; the kernel checks the address is mapped.
        unsafe { libc::prctl(libc::PR_SET_MM, field, value, 0 as libc::c_ulong, 0 as libc::c_ulong) == 0 }
    };
    let buffer = text.to_vec().into_boxed_slice();
    let start = buffer.as_ptr() as libc::c_ulong;
    let end = start + buffer.len() as libc::c_ulong;
    // The kernel keeps start <= end after every single change: which field moves first depends
    // on whether the new buffer lies below the old one (the stack is high, the heap low).
    let pointed = (set(libc::PR_SET_MM_ARG_START, start) && set(libc::PR_SET_MM_ARG_END, end))
        || (set(libc::PR_SET_MM_ARG_END, end) && set(libc::PR_SET_MM_ARG_START, start));
    if pointed {
        // The kernel reads it whenever /proc/PID/cmdline is read: it lives as long as we do.
        Box::leak(buffer);
    }
    pointed
}

/// setproctitle(3)'s way: `title` over the argv strings the kernel wrote at exec, cut to
/// their length. A last byte that is no longer NUL tells the kernel to show the area as one
/// string, up to the first NUL.
fn overwrite_argv(title: &[u8]) {
    let Some((start, end)) = argv_area() else { return };
    let Some(len) = end.checked_sub(start).filter(|&l| l > 0) else { return };
    // SAFETY: [start, end) holds this process's own argv strings, written by the kernel at
    // exec on our stack and read by nothing of ours from here on (std's args are not asked
    // for in a container's process).
    let area = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, len) };
    apply_title(area, title);
}

fn apply_title(area: &mut [u8], title: &[u8]) {
    let n = title.len().min(area.len() - 1);
    area[..n].copy_from_slice(&title[..n]);
    area[n..].fill(0);
    if n + 1 < area.len() {
        area[area.len() - 1] = b' ';
    }
}

/// Where the argv strings lie: fields 48 and 49 of /proc/self/stat (proc(5)).
fn argv_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // After the name in parentheses (which may hold anything), fields count from 3.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some((fields.get(48 - 3)?.parse().ok()?, fields.get(49 - 3)?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_is_the_programs_file_name_cut_as_the_kernel_cuts_it() {
        assert_eq!(comm("/busy-loop.wasm"), b"busy-loop.wasm");
        assert_eq!(comm("/app/a-very-long-module-name.wasm"), b"a-very-long-mod");
        assert_eq!(comm("hello.wasm"), b"hello.wasm");
        assert_eq!(cmdline(&["/hello.wasm".into(), "a b".into(), String::new()]), b"/hello.wasm\0a b\0\0");
    }

    #[test]
    fn a_title_over_the_old_argv_ends_at_its_nul_or_is_cut() {
        let mut area = *b"strata\0run\0-d\0img\0";
        apply_title(&mut area, b"/x.wasm a");
        assert_eq!(&area, b"/x.wasm a\0\0\0\0\0\0\0\0 ");
        let mut area = *b"oci\0run\0";
        apply_title(&mut area, b"/busy-loop.wasm");
        assert_eq!(&area, b"/busy-l\0", "cut, the last byte still NUL");
    }

    #[test]
    fn the_argv_area_is_read_from_our_own_stat() {
        let (start, end) = argv_area().unwrap();
        assert!(start < end, "{start:#x}..{end:#x}");
        // SAFETY: our own argv strings, read only.
        let area = unsafe { std::slice::from_raw_parts(start as *const u8, end - start) };
        let first = area.split(|&b| b == 0).next().unwrap();
        assert_eq!(first, std::env::args().next().unwrap().as_bytes());
    }
}
