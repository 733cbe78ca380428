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
    let mut walk = Walk { page: page_size(), vdso: vdso(), advise: true, ranges: None, bytes: 0, refused: None };
    // SAFETY: the callback matches dl_iterate_phdr's signature and only uses `walk`.
    unsafe { libc::dl_iterate_phdr(Some(each_object), &mut walk as *mut Walk as *mut libc::c_void) };
    walk.refused.map_or(Ok(walk.bytes), Err)
}

/// The ranges `trim_code` would advise, for tests: each object's read-only segments.
#[cfg(test)]
fn read_only_ranges() -> Vec<Range> {
    let mut walk =
        Walk { page: page_size(), vdso: vdso(), advise: false, ranges: Some(Vec::new()), bytes: 0, refused: None };
    // SAFETY: as in trim_code.
    unsafe { libc::dl_iterate_phdr(Some(each_object), &mut walk as *mut Walk as *mut libc::c_void) };
    walk.ranges.unwrap_or_default()
}

fn page_size() -> usize {
    // SAFETY: sysconf only reads.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

fn vdso() -> usize {
    // SAFETY: getauxval only reads.
    unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) as usize }
}

struct Walk {
    page: usize,
    vdso: usize,
    advise: bool,
    ranges: Option<Vec<Range>>,
    bytes: usize,
    refused: Option<io::Error>,
}

/// One loaded object: its read-only segments advised here, under the loader's lock, so no
/// `dlclose` can unmap them (and something else be mapped there) in between. Allocates
/// nothing (but the tests' list).
unsafe extern "C" fn each_object(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: dl_iterate_phdr hands us a valid info and our own `data`.
    let (info, walk) = unsafe { (&*info, &mut *(data as *mut Walk)) };
    if info.dlpi_phdr.is_null() {
        return 0;
    }
    // SAFETY: dlpi_phdr points at dlpi_phnum program headers, valid during the callback.
    let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    let base = info.dlpi_addr as usize;
    let page = walk.page;
    // The vDSO's pages are the kernel's, not a file's.
    if base == walk.vdso || headers.iter().any(|h| h.p_type == libc::PT_LOAD && base + h.p_vaddr as usize == walk.vdso)
    {
        return 0;
    }
    // Text relocations: the loader patched private copies of "read-only" pages.
    // SAFETY: the object's dynamic section, mapped while it is loaded.
    if unsafe { has_text_relocations(base, headers) } {
        return 0;
    }
    let loads = || headers.iter().filter(|h| h.p_type == libc::PT_LOAD && h.p_memsz > 0);
    let whole_pages = |h: &libc::Elf64_Phdr| {
        let start = base + h.p_vaddr as usize;
        Range { start: start & !(page - 1), end: (start + h.p_memsz as usize).next_multiple_of(page) }
    };
    for h in loads().filter(|h| h.p_flags & libc::PF_W == 0) {
        let mut range = whole_pages(h);
        // A segment longer in memory than in the file: the loader zeroed the rest of its last
        // file page in a private copy. Only the pages wholly from the file.
        if h.p_memsz > h.p_filesz {
            range.end = (base + h.p_vaddr as usize + h.p_filesz as usize) & !(page - 1);
        }
        let mut kept = Some(range);
        for w in loads().filter(|h| h.p_flags & libc::PF_W != 0) {
            kept = kept.and_then(|r| without(r, whole_pages(w)));
        }
        let Some(r) = kept.filter(|r| r.start < r.end) else { continue };
        if let Some(list) = walk.ranges.as_mut() {
            list.push(r);
        }
        if !walk.advise {
            continue;
        }
        // SAFETY: whole pages of a read-only file mapping of a loaded object (never written:
        // no private copies to lose); MADV_DONTNEED only drops page table entries, which the
        // next access refills from the page cache.
        let rc = unsafe { libc::madvise(r.start as *mut libc::c_void, r.end - r.start, libc::MADV_DONTNEED) };
        if rc == 0 {
            walk.bytes += r.end - r.start;
        } else if walk.refused.is_none() {
            walk.refused = Some(io::Error::last_os_error());
        }
    }
    0
}

/// Whether the object's dynamic section asks for text relocations (DT_TEXTREL, DF_TEXTREL).
///
/// # Safety
/// `headers` must be a loaded object's program headers and `base` its load bias.
unsafe fn has_text_relocations(base: usize, headers: &[libc::Elf64_Phdr]) -> bool {
    const DT_NULL: i64 = 0;
    const DT_TEXTREL: i64 = 22;
    const DT_FLAGS: i64 = 30;
    const DF_TEXTREL: u64 = 0x4;
    let Some(dynamic) = headers.iter().find(|h| h.p_type == libc::PT_DYNAMIC) else { return false };
    let mut entry = (base + dynamic.p_vaddr as usize) as *const [u64; 2];
    let end = (base + dynamic.p_vaddr as usize + dynamic.p_memsz as usize) as *const [u64; 2];
    while entry < end {
        // SAFETY: within the mapped dynamic section, entries of two 64-bit words.
        let [tag, value] = unsafe { entry.read() };
        match tag as i64 {
            DT_NULL => break,
            DT_TEXTREL => return true,
            DT_FLAGS if value & DF_TEXTREL != 0 => return true,
            _ => {}
        }
        // SAFETY: the next entry, checked against `end` above.
        entry = unsafe { entry.add(1) };
    }
    false
}

/// `range` shrunk so that it shares no page with `writable` (None if nothing is left; a
/// writable range inside it, which linkers never make, drops it whole).
fn without(mut range: Range, w: Range) -> Option<Range> {
    if w.end <= range.start || w.start >= range.end {
        return Some(range);
    }
    if w.start <= range.start {
        range.start = w.end.max(range.start);
    } else if w.end >= range.end {
        range.end = w.start;
    } else {
        return None;
    }
    (range.start < range.end).then_some(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_pages_are_never_in_a_range() {
        let r = |start, end| Range { start, end };
        // Apart: kept whole.
        assert_eq!(without(r(0x1000, 0x5000), r(0x5000, 0x6000)), Some(r(0x1000, 0x5000)));
        // Sharing the last page: that page goes.
        assert_eq!(without(r(0x1000, 0x5000), r(0x4000, 0x6000)), Some(r(0x1000, 0x4000)));
        // Sharing the first page.
        assert_eq!(without(r(0x1000, 0x5000), r(0x0, 0x2000)), Some(r(0x2000, 0x5000)));
        // Inside, or covering it: nothing.
        assert_eq!(without(r(0x1000, 0x5000), r(0x2000, 0x3000)), None);
        assert_eq!(without(r(0x1000, 0x2000), r(0x0, 0x3000)), None);
    }

    #[test]
    fn trimming_keeps_this_process_running_and_unmaps_its_code() {
        let resident_file_kb = || -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("RssFile:")).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        };
        let ranges = read_only_ranges();
        // This test binary's own code is among them, and none is writable.
        let here = trimming_keeps_this_process_running_and_unmaps_its_code as *const () as usize;
        assert!(ranges.iter().any(|r| r.start <= here && here < r.end), "{ranges:x?}");
        // No mapping they touch holds a private page (RELRO's relocated pointers, a written
        // page of any kind): those could not be fetched from the file again.
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut current = None;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((a, b)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
                let (a, b) = (usize::from_str_radix(a, 16).unwrap(), usize::from_str_radix(b, 16).unwrap());
                current = Some((a, b, line.to_string()));
            } else if let (Some(kb), Some((a, b, header))) = (line.strip_prefix("Anonymous:"), &current) {
                let private_kb: u64 = kb.trim().trim_end_matches(" kB").trim().parse().unwrap();
                let touched = ranges.iter().any(|r| r.start < *b && *a < r.end);
                assert!(
                    !(touched && private_kb > 0),
                    "{header} holds {private_kb} kB of private pages and is in {ranges:x?}"
                );
            }
        }
        let before = resident_file_kb();
        let advised = trim_code().unwrap();
        assert!(advised > 0);
        // The code reading the count runs again (faulted back in), and the count fell.
        let after = resident_file_kb();
        assert!(after < before, "RSS {before} kB -> {after} kB");
    }
}
