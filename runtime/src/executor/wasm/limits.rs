//! Resource limits inside the engine: memory through a `ResourceLimiter` with one budget for
//! all of a guest's memories and tables, CPU quota and signal interruption through epoch
//! deadlines.
//!
//! The epoch deadline is always one tick away; the epoch only moves when the CPU ticker runs
//! (a CPU limit is set) or a signal arrives, so a guest without a CPU limit pays nothing until
//! then. This module must never stop a guest for any reason but a received signal.

use super::CpuLimit;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::{Engine, ResourceLimiter, UpdateDeadline};

/// How often the CPU ticker advances the epoch: the granularity of CPU throttling.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// Memory kept back from the guest for what the host side allocates while it runs (WASI I/O
/// buffers, thread stacks, the signal thread): a quarter of the limit, at least
/// [`MIN_HOST_RESERVE`] and at most this. (A running hello's whole cgroup holds ~0.5 MiB, so a
/// fixed 8 MiB would leave nothing to a guest under docker's smallest limit, 6 MiB.)
pub(crate) const HOST_RESERVE: u64 = 8 << 20;
pub(crate) const MIN_HOST_RESERVE: u64 = 1 << 20;

/// How much of the container's memory limit (which its cgroup enforces on the whole process)
/// the guest's linear memories may use: the limit minus what the executor already uses
/// (after the engine and the module are loaded) and the host's reserve, so the guest's
/// allocation fails inside the guest before the cgroup's OOM killer ends the process. Zero
/// when nothing is left: then even a guest's initial memory is refused, with a message.
/// `gauge` is this process's smaps_rollup opened while /proc was still there (a wasm
/// container's kernel filesystems are detached before its guest runs); without it,
/// /proc/self/smaps_rollup is read by name.
pub(crate) fn guest_memory_limit(container_limit: Option<u64>, gauge: Option<&std::fs::File>) -> Option<u64> {
    let limit = container_limit.filter(|l| *l > 0)?;
    Some(guest_share(limit, host_memory_in_use(gauge)))
}

/// The guest's share of `limit` when the host already uses `in_use` bytes.
fn guest_share(limit: u64, in_use: u64) -> u64 {
    let reserve = (limit / 4).clamp(MIN_HOST_RESERVE, HOST_RESERVE);
    limit.saturating_sub(in_use + reserve)
}

/// Memory this process holds for itself, as the memory cgroup charges it: its private dirty
/// pages (heap, stacks, compiled code, copied-on-write pages; not the pages it shares with
/// the process it was forked from, which are charged where they were first written), from
/// smaps_rollup. 0 when it cannot be read (no /proc and no gauge): the reserve then has to
/// cover it. (Peak RSS, used before, counted every page of the binary ever touched: it left a
/// guest nothing under limits below ~18 MiB.)
fn host_memory_in_use(gauge: Option<&std::fs::File>) -> u64 {
    let rollup = match gauge {
        Some(file) => read_from_start(file),
        None => std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default(),
    };
    let kb = rollup
        .lines()
        .find_map(|l| l.strip_prefix("Private_Dirty:"))
        .and_then(|v| v.trim().strip_suffix("kB").and_then(|n| n.trim().parse::<u64>().ok()));
    kb.unwrap_or(0) * 1024
}

/// A proc file's text as of now: read from offset 0, which makes the kernel generate it anew.
fn read_from_start(file: &std::fs::File) -> String {
    use std::os::unix::fs::FileExt;
    let mut text = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        match file.read_at(&mut buf, text.len() as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// Open this process's smaps_rollup under `proc` (a procfs directory), for
/// [`guest_memory_limit`] once /proc is gone.
pub fn open_memory_gauge(proc: std::os::fd::BorrowedFd) -> Option<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::openat(proc, "self/smaps_rollup", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .ok()
        .map(std::fs::File::from)
}

/// The guest's memory budget, in bytes, over all its linear memories and tables (a table
/// element counted as 8 bytes): growth that would take the total past it fails inside the
/// guest (`memory.grow` returns -1), it never traps. wasmtime's `StoreLimits` caps each
/// memory on its own: two memories could each take the whole budget, and the cgroup's OOM
/// killer would end the process instead of the guest seeing the failure.
pub(crate) struct GuestLimits {
    budget: Option<usize>,
    used: usize,
}

impl GuestLimits {
    fn take(&mut self, bytes: usize) -> bool {
        match self.budget {
            Some(budget) if self.used.saturating_add(bytes) > budget => false,
            _ => {
                self.used = self.used.saturating_add(bytes);
                true
            }
        }
    }
}

impl ResourceLimiter for GuestLimits {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|max| desired <= max) && self.take(desired.saturating_sub(current)))
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|max| desired <= max) && self.take(desired.saturating_sub(current).saturating_mul(8)))
    }
}

/// The limiter for a guest's budget in bytes (none: no cap; zero: no memory at all).
pub(crate) fn store_limits(memory_limit: Option<u64>) -> GuestLimits {
    let budget = memory_limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX));
    GuestLimits { budget, used: 0 }
}

/// The guest was stopped by a signal (SIGTERM, SIGINT, SIGHUP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by signal {0}")]
pub(crate) struct Interrupted(pub i32);

/// What the epoch-deadline callback decides at each tick.
pub(crate) struct Deadline {
    signal: Arc<AtomicI32>,
    throttle: Option<Throttle>,
}

impl Deadline {
    pub(crate) fn new(signal: Arc<AtomicI32>, cpu: Option<CpuLimit>) -> Deadline {
        Deadline { signal, throttle: cpu.and_then(Throttle::new) }
    }

    /// Called on the guest's thread each time its epoch deadline passes.
    pub(crate) fn on_tick(&mut self) -> Result<UpdateDeadline, Interrupted> {
        self.check_signal()?;
        if let Some(t) = &mut self.throttle {
            if let Some(pause) = t.over_quota() {
                // Sleep out the period in slices, so a signal still stops us within one tick.
                let until = Instant::now() + pause;
                while let Some(left) = until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
                    std::thread::sleep(left.min(TICK));
                    self.check_signal()?;
                }
                if let Some(t) = &mut self.throttle {
                    t.start_period();
                }
            }
        }
        Ok(UpdateDeadline::Continue(1))
    }

    fn check_signal(&self) -> Result<(), Interrupted> {
        match self.signal.load(Ordering::SeqCst) {
            0 => Ok(()),
            sig => Err(Interrupted(sig)),
        }
    }
}

/// CFS-like accounting of the guest thread's CPU time per period.
struct Throttle {
    quota: Duration,
    period: Duration,
    period_start: Instant,
    cpu_at_start: Duration,
}

impl Throttle {
    fn new(cpu: CpuLimit) -> Option<Throttle> {
        if cpu.quota <= 0 || cpu.period == 0 {
            return None;
        }
        let mut t = Throttle {
            quota: Duration::from_micros(cpu.quota as u64),
            period: Duration::from_micros(cpu.period),
            period_start: Instant::now(),
            cpu_at_start: Duration::ZERO,
        };
        t.start_period();
        Some(t)
    }

    fn start_period(&mut self) {
        self.period_start = Instant::now();
        self.cpu_at_start = thread_cpu_time();
    }

    /// How long to pause if the quota of the current period is used up.
    fn over_quota(&mut self) -> Option<Duration> {
        let elapsed = self.period_start.elapsed();
        if elapsed >= self.period {
            self.start_period();
            return None;
        }
        let used = thread_cpu_time().saturating_sub(self.cpu_at_start);
        (used >= self.quota).then(|| self.period - elapsed)
    }
}

fn thread_cpu_time() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Advances the epoch every [`TICK`] while a CPU limit is in force; stops when dropped.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    pub(crate) fn start(engine: &Engine) -> std::io::Result<Ticker> {
        let stop = Arc::new(AtomicBool::new(false));
        let (engine, flag) = (engine.clone(), stop.clone());
        std::thread::Builder::new().name("strata-wasm-tick".into()).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(TICK);
                engine.increment_epoch();
            }
        })?;
        Ok(Ticker { stop })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROWER: &str = r#"(module (memory (export "m") 1)
        (func (export "grow") (param i32) (result i32) local.get 0 memory.grow))"#;

    fn grower(limit: Option<u64>) -> (wasmtime::Store<GuestLimits>, wasmtime::TypedFunc<i32, i32>) {
        let engine = super::super::engine::new_engine().unwrap();
        let module = wasmtime::Module::new(&engine, wat::parse_str(GROWER).unwrap()).unwrap();
        let mut store = wasmtime::Store::new(&engine, store_limits(limit));
        store.limiter(|l| l);
        store.set_epoch_deadline(1);
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let grow = instance.get_typed_func::<i32, i32>(&mut store, "grow").unwrap();
        (store, grow)
    }

    #[test]
    fn memory_limit_caps_growth_without_trapping() {
        let (mut store, grow) = grower(Some(4 * 65536));
        assert_eq!(grow.call(&mut store, 2).unwrap(), 1); // 1 -> 3 pages
        assert_eq!(grow.call(&mut store, 2).unwrap(), -1); // 5 pages > 4: refused
        assert_eq!(grow.call(&mut store, 1).unwrap(), 3); // exactly 4 is fine
    }

    #[test]
    fn the_limit_is_one_budget_for_all_memories() {
        let engine = super::super::engine::new_engine().unwrap();
        let two = r#"(module (memory $a (export "a") 1) (memory $b (export "b") 1)
            (func (export "grow_a") (param i32) (result i32) local.get 0 memory.grow $a)
            (func (export "grow_b") (param i32) (result i32) local.get 0 memory.grow $b))"#;
        let module = wasmtime::Module::new(&engine, wat::parse_str(two).unwrap()).unwrap();
        let mut store = wasmtime::Store::new(&engine, store_limits(Some(6 * 65536)));
        store.limiter(|l| l);
        store.set_epoch_deadline(1);
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let grow_a = instance.get_typed_func::<i32, i32>(&mut store, "grow_a").unwrap();
        let grow_b = instance.get_typed_func::<i32, i32>(&mut store, "grow_b").unwrap();
        assert_eq!(grow_a.call(&mut store, 3).unwrap(), 1); // 4 + 1 pages of 6
        assert_eq!(grow_b.call(&mut store, 2).unwrap(), -1); // 4 + 3 > 6: refused
        assert_eq!(grow_b.call(&mut store, 1).unwrap(), 1); // 4 + 2 = 6
        assert_eq!(grow_a.call(&mut store, 1).unwrap(), -1);
    }

    #[test]
    fn the_guest_gets_the_limit_minus_the_host_share() {
        assert_eq!(guest_memory_limit(None, None), None);
        assert_eq!(guest_memory_limit(Some(0), None), None);
        let used = host_memory_in_use(None);
        assert!(used > 0);
        let limit = 1 << 30;
        let guest = guest_memory_limit(Some(limit), None).unwrap();
        assert!(guest < limit - HOST_RESERVE && guest > limit / 2, "{guest}");
        // A small limit keeps a quarter back, not 8 MiB: docker's smallest (6 MiB) leaves the
        // guest what the host does not use.
        assert_eq!(guest_share(6 << 20, 1 << 20), (6 << 20) - (1 << 20) - (6 << 20) / 4);
        assert_eq!(guest_share(2 << 20, 0), 1 << 20, "at least 1 MiB kept back");
        assert_eq!(guest_share(1 << 30, 0), (1 << 30) - HOST_RESERVE, "at most 8 MiB kept back");
        // A limit below what the host uses leaves the guest nothing, never an underflow.
        assert_eq!(guest_memory_limit(Some(1 << 20), None), Some(0));
    }

    /// The gauge is read anew each time (it does not keep the first reading): growing the
    /// heap by 16 MiB of written pages shows.
    #[test]
    fn the_memory_gauge_reads_the_present() {
        let proc = rustix::fs::open("/proc", rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).unwrap();
        let gauge = open_memory_gauge(std::os::fd::AsFd::as_fd(&proc)).unwrap();
        let before = host_memory_in_use(Some(&gauge));
        assert!(before > 0);
        let held = std::hint::black_box(vec![1u8; 16 << 20]);
        let after = host_memory_in_use(Some(&gauge));
        assert!(after >= before + (12 << 20), "{before} -> {after}");
        drop(held);
    }

    /// A container limit too small to leave the guest anything is a budget of zero, not "no
    /// cap": the guest's initial memory is refused (a clear error at instantiation), where
    /// before it grew until the cgroup's OOM killer ended the container with no word.
    #[test]
    fn a_zero_budget_is_no_memory_not_no_cap() {
        let engine = super::super::engine::new_engine().unwrap();
        let module = wasmtime::Module::new(&engine, wat::parse_str(GROWER).unwrap()).unwrap();
        let mut store = wasmtime::Store::new(&engine, store_limits(Some(0)));
        store.limiter(|l| l);
        assert!(wasmtime::Instance::new(&mut store, &module, &[]).is_err());
    }

    #[test]
    fn no_limit_means_no_cap() {
        let (mut store, grow) = grower(None);
        assert_eq!(grow.call(&mut store, 100).unwrap(), 1);
    }

    #[test]
    fn a_signal_interrupts_at_the_next_tick() {
        let flag = Arc::new(AtomicI32::new(0));
        let mut d = Deadline::new(flag.clone(), None);
        assert!(matches!(d.on_tick(), Ok(UpdateDeadline::Continue(1))));
        flag.store(15, Ordering::SeqCst);
        assert_eq!(d.on_tick().err(), Some(Interrupted(15)));
    }

    #[test]
    fn throttle_pauses_once_the_quota_is_used() {
        let mut t = Throttle::new(CpuLimit { quota: 1_000, period: 1_000_000 }).unwrap();
        let start = thread_cpu_time();
        while thread_cpu_time() - start < Duration::from_millis(3) {
            std::hint::black_box(0u64);
        }
        let pause = t.over_quota().expect("over quota");
        assert!(pause <= Duration::from_secs(1));
        assert!(Throttle::new(CpuLimit { quota: -1, period: 100_000 }).is_none());
    }
}
