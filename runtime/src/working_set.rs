//! Giving back the pages of code a long-lived process touched while it started.
//!
//! A process maps each page of its binaries' code it runs, and the kernel maps the 64 KB around
//! it too (fault-around). Starting a container runs code all over a 35 MB binary (argument and
//! spec parsing, the sandbox, wasmtime's loader, tokio, ttrpc), and those pages stay in the
//! resident set of a shim or a wasm container's process for as long as it lives, though it
//! then runs a small part of them. [`trim_code`] unmaps the pages of every loaded object's
//! read-only segments (code, read-only data) from this process: they stay in the page cache,
//! shared with every other process running the binary, and a page the process needs again comes
//! back as a minor fault. The writable segments are never touched: the loader's relocations
//! (RELRO) live there, in private copies that cannot be fetched again from the file.
//!
//! What it changes is RSS (what `ps`, `top` and per-process monitoring count), not PSS: the
//! pages were shared anyway. One cost besides the faults: a breakpoint a debugger or a uprobe
//! wrote into our code lives in a private copy of its page, which trimming drops.

use std::io;
use std::time::Duration;

/// How long a process waits, with nothing to do, before it trims: a container that lives
/// this long is worth it; a `run --rm` of a hello never pays the faults.
pub const IDLE: Duration = Duration::from_secs(1);

/// One page range of a loaded object that holds no private copy of anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    start: usize,
    end: usize,
}

/// Unmap from this process the resident pages of every loaded object's read-only segments
/// (the vDSO's excepted). Returns the bytes of address space advised. Safe to call from any
/// thread at any time: another thread running that code just faults it back in.
/// A range the kernel refuses is skipped; the first refusal is the error.
pub fn trim_code() -> io::Result<usize> {
    let (mut bytes, mut refused) = (0, None);
    for range in read_only_ranges() {
        // SAFETY: the range is whole pages of a read-only file mapping of a loaded object
        // (never written: no private copies to lose); MADV_DONTNEED only drops page table
        // entries, which the next access refills from the page cache.
        let rc =
            unsafe { libc::madvise(range.start as *mut libc::c_void, range.end - range.start, libc::MADV_DONTNEED) };
        if rc == 0 {
            bytes += range.end - range.start;
        } else if refused.is_none() {
            refused = Some(io::Error::last_os_error());
        }
    }
    refused.map_or(Ok(bytes), Err)
}

/// Each loaded object's non-writable PT_LOAD segments as whole pages, minus any page a
/// writable segment of the same object shares (linkers give them pages of their own, but a
/// page wrongly dropped would lose relocations).
fn read_only_ranges() -> Vec<Range> {
    struct Collect {
        page: usize,
        vdso: usize,
        ranges: Vec<Range>,
    }
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: dl_iterate_phdr hands us a valid info and our own `data`.
        let (info, out) = unsafe { (&*info, &mut *(data as *mut Collect)) };
        if info.dlpi_phdr.is_null() {
            return 0;
        }
        // SAFETY: dlpi_phdr points at dlpi_phnum program headers, valid during the callback.
        let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        let base = info.dlpi_addr as usize;
        let loads = headers.iter().filter(|h| h.p_type == libc::PT_LOAD && h.p_memsz > 0);
        let span = |h: &libc::Elf64_Phdr, page: usize| {
            let start = base + h.p_vaddr as usize;
            Range { start: start & !(page - 1), end: (start + h.p_memsz as usize).next_multiple_of(page) }
        };
        // The vDSO's pages are the kernel's, not a file's.
        if loads.clone().any(|h| span(h, out.page).start == out.vdso) {
            return 0;
        }
        let writable: Vec<Range> =
            loads.clone().filter(|h| h.p_flags & libc::PF_W != 0).map(|h| span(h, out.page)).collect();
        for h in loads.filter(|h| h.p_flags & libc::PF_W == 0) {
            if let Some(r) = without(span(h, out.page), &writable, out.page) {
                out.ranges.push(r);
            }
        }
        0
    }
    // SAFETY: sysconf and getauxval only read.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let vdso = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) } as usize;
    let mut collect = Collect { page, vdso, ranges: Vec::new() };
    // SAFETY: the callback matches dl_iterate_phdr's signature and only uses `collect`.
    unsafe { libc::dl_iterate_phdr(Some(each), &mut collect as *mut Collect as *mut libc::c_void) };
    collect.ranges
}

/// `range` shrunk so that it shares no page with `writable` (dropped if nothing is left; a
/// writable range inside it, which linkers never make, drops it whole).
fn without(mut range: Range, writable: &[Range], page: usize) -> Option<Range> {
    for w in writable {
        if w.end <= range.start || w.start >= range.end {
            continue;
        }
        if w.start <= range.start {
            range.start = w.end.max(range.start);
        } else if w.end >= range.end {
            range.end = w.start;
        } else {
            return None;
        }
    }
    debug_assert!(range.start.is_multiple_of(page) && range.end.is_multiple_of(page));
    (range.start < range.end).then_some(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_pages_are_never_in_a_range() {
        let r = |start, end| Range { start, end };
        // Apart: kept whole.
        assert_eq!(without(r(0x1000, 0x5000), &[r(0x5000, 0x6000)], 0x1000), Some(r(0x1000, 0x5000)));
        // Sharing the last page: that page goes.
        assert_eq!(without(r(0x1000, 0x5000), &[r(0x4000, 0x6000)], 0x1000), Some(r(0x1000, 0x4000)));
        // Sharing the first page.
        assert_eq!(without(r(0x1000, 0x5000), &[r(0x0, 0x2000)], 0x1000), Some(r(0x2000, 0x5000)));
        // Inside, or covering it: nothing.
        assert_eq!(without(r(0x1000, 0x5000), &[r(0x2000, 0x3000)], 0x1000), None);
        assert_eq!(without(r(0x1000, 0x2000), &[r(0x0, 0x3000)], 0x1000), None);
    }

    #[test]
    fn trimming_keeps_this_process_running_and_unmaps_its_code() {
        let ranges = read_only_ranges();
        // This test binary's own code is among them, and none is writable.
        let here = trimming_keeps_this_process_running_and_unmaps_its_code as *const () as usize;
        assert!(ranges.iter().any(|r| r.start <= here && here < r.end), "{ranges:x?}");
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        for line in maps.lines() {
            let mut fields = line.split_whitespace();
            let (span, perms) = (fields.next().unwrap(), fields.next().unwrap());
            let (a, b) = span.split_once('-').unwrap();
            let (a, b) = (usize::from_str_radix(a, 16).unwrap(), usize::from_str_radix(b, 16).unwrap());
            if perms.contains('w') {
                assert!(!ranges.iter().any(|r| r.start < b && a < r.end), "{line} is writable and in {ranges:x?}");
            }
        }
        let before = resident_kb();
        let advised = trim_code().unwrap();
        assert!(advised > 0);
        // The code reading the count runs again (faulted back in), and the count fell.
        let after = resident_kb();
        assert!(after < before, "RSS {before} kB -> {after} kB");
    }

    fn resident_kb() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("RssFile:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}
