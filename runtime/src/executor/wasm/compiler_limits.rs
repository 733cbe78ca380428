//! What compiling one module from an image may use. The module is untrusted input and a small
//! one can make the compiler take gigabytes (3.5 kB gzipped of nested blocks: ~1.1 GB) or
//! minutes; legitimate modules need ~35× their size in memory. So every compile strata does
//! outside a running guest (`strata pull`/`load`, and a container's create on a cache miss)
//! runs in a child process under these limits.

/// Memory a compile may always use, and how much more per byte of module.
const MEMORY_BASE: u64 = 256 << 20;
const MEMORY_PER_BYTE: u64 = 100;
/// CPU seconds a compile may always use, and how many more per MiB of module.
const CPU_BASE_SECS: u64 = 60;
const CPU_SECS_PER_MIB: u64 = 10;
/// Fixed limits instead (an operator whose modules need more, or a test that wants less).
pub const MEMORY_ENV: &str = "STRATA_PRECOMPILE_MEMORY_MIB";
pub const CPU_ENV: &str = "STRATA_PRECOMPILE_CPU_SECS";

/// What one compile may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompilerLimits {
    /// Bytes of private writable memory (`RLIMIT_DATA`).
    pub memory: u64,
    /// CPU seconds (`RLIMIT_CPU`).
    pub cpu_secs: u64,
}

impl CompilerLimits {
    /// The limits a compile of a module of `size` bytes runs under, from [`MEMORY_ENV`] and
    /// [`CPU_ENV`] when set.
    pub fn for_module(size: u64) -> CompilerLimits {
        let from_env = |name| std::env::var(name).ok().and_then(|v| v.trim().parse::<u64>().ok()).filter(|&n| n > 0);
        CompilerLimits {
            memory: from_env(MEMORY_ENV).map_or_else(
                || MEMORY_BASE.saturating_add(size.saturating_mul(MEMORY_PER_BYTE)),
                |mib| mib.saturating_mul(1 << 20),
            ),
            cpu_secs: from_env(CPU_ENV)
                .unwrap_or_else(|| CPU_BASE_SECS.saturating_add(size / (1 << 20) * CPU_SECS_PER_MIB)),
        }
    }

    /// How long to wait for the compiler in wall-clock time: CPU time does not pass while a
    /// process sleeps.
    pub fn wall_clock(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.cpu_secs.saturating_mul(2).saturating_add(10))
    }

    /// Apply the limits to the calling process (a compiler child, before it compiles): only
    /// ever lowered, never above a hard limit it already has. Async-signal-safe.
    pub fn apply(&self) -> std::io::Result<()> {
        // Private writable memory (heap and anonymous maps): what the compiler allocates.
        lower_rlimit(libc::RLIMIT_DATA, self.memory, self.memory)?;
        // Its output (a memfd) cannot be larger than what it could hold in memory.
        lower_rlimit(libc::RLIMIT_FSIZE, self.memory, self.memory)?;
        // SIGXCPU at the soft limit, SIGKILL a second later.
        lower_rlimit(libc::RLIMIT_CPU, self.cpu_secs, self.cpu_secs.saturating_add(1))
    }
}

/// What a compiler child wrote to `output` (a memfd made with `MFD_ALLOW_SEALING`), made
/// immutable before anyone reads it: sealed against writes and size changes (a process it
/// passed the memfd to cannot change or grow it while it is stored), no larger than `limits`
/// allow, and an ELF file, as wasmtime's artifacts are. Returns a reader of exactly those
/// bytes, from the start whatever the file's offset; nothing of them is parsed.
pub fn sealed_output<'a>(
    output: &'a std::fs::File,
    limits: &CompilerLimits,
) -> Result<impl std::io::Read + 'a, String> {
    use std::os::fd::AsRawFd;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on an fd we own.
    if unsafe { libc::fcntl(output.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(format!("sealing the compiler's output: {}", std::io::Error::last_os_error()));
    }
    let len = output.metadata().map_err(|e| format!("the compiler's output: {e}"))?.len();
    if len > limits.memory {
        return Err(format!("the compiler's output is {len} bytes, over its {} byte limit", limits.memory));
    }
    let mut magic = [0u8; 4];
    let elf = std::os::unix::fs::FileExt::read_exact_at(output, &mut magic, 0).is_ok() && &magic == b"\x7fELF";
    if !elf {
        return Err("the compiler's output is not an artifact (no ELF header)".into());
    }
    Ok(std::io::Read::take(std::io::BufReader::new(ReadFromStart { file: output, offset: 0 }), len))
}

/// Reads a file from offset 0 whatever its position (the child's writes moved it).
struct ReadFromStart<'a> {
    file: &'a std::fs::File,
    offset: u64,
}

impl std::io::Read for ReadFromStart<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

fn lower_rlimit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> std::io::Result<()> {
    let mut now = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid resource and struct.
    unsafe {
        if libc::getrlimit(resource, &mut now) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let hard = hard.min(now.rlim_max);
        let limit = libc::rlimit { rlim_cur: soft.min(hard), rlim_max: hard };
        if libc::setrlimit(resource, &limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The only test that reads the environment: the variables are not set in `cargo test`.
    #[test]
    fn limits_grow_with_the_module() {
        assert_eq!(CompilerLimits::for_module(0), CompilerLimits { memory: 256 << 20, cpu_secs: 60 });
        // A 3 MB module of nested blocks needs ~1.1 GB to compile: over its limit.
        let memory = CompilerLimits::for_module(3_000_000).memory;
        assert!(memory < 600 << 20, "{memory}");
        // A 25 MB interpreter (~35x its size in practice) fits.
        let CompilerLimits { memory, cpu_secs } = CompilerLimits::for_module(25 << 20);
        assert!(memory > 35 * (25 << 20), "{memory}");
        assert_eq!(cpu_secs, 60 + 250);
        assert_eq!(CompilerLimits::for_module(u64::MAX).memory, u64::MAX);
        assert_eq!(CompilerLimits::for_module(0).wall_clock().as_secs(), 130);
    }
}
